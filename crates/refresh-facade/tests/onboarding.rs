//! End-to-end account onboarding (issue 12) with the built binary against
//! the OAuth emulator (in this process; every provider URL overridden by
//! `providers.base_url`) and a SQLite file:
//!
//! - per provider, `accounts login` with the code pasted on stdin (the test
//!   follows the authorize redirect like a browser) → stored → `refresh
//!   --force` succeeds; `--listen` receives the browser's redirect;
//! - `accounts relogin` replaces the credentials and bumps the version;
//! - HTTP logins begun on one `serve` process and completed on another,
//!   single use, expiry by the database clock, a wrong state sends no
//!   exchange, typed JSON errors;
//! - no code, verifier or token in any output, answer or log;
//! - `accounts import-cli` with sample files written here.

mod common;

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use refresh_providers::emulator::{EmulatedProvider, GrantSpec};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const KEY: &str = "onboarding-key-0123456789";

/// A sandbox whose every provider URL is the emulator's, migrated.
async fn sandbox(extra: &str) -> Sandbox {
    sandbox_with("", extra).await
}

/// [`sandbox`] with top-level keys (`database_url`).
async fn sandbox_with(top: &str, extra: &str) -> Sandbox {
    let sb = Sandbox::new().await;
    let text = format!(
        "{top}\n[serve]\napi_keys = [\"{KEY}\"]\n[providers]\nbase_url = \"{}\"\n{extra}",
        sb.emulator.url()
    );
    std::fs::write(sb.path().join("oauth-refresh.toml"), text).expect("write config");
    sb.run(&["migrate"]).await.ok();
    sb.emulator.record_requests(true);
    sb
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .expect("client")
}

/// Opens the authorize URL like a browser; returns where it redirects.
async fn follow(url: &str) -> url::Url {
    let answer = browser().get(url).send().await.expect("authorize");
    assert_eq!(
        answer.status(),
        302,
        "authorize answered {}",
        answer.status()
    );
    let location = answer.headers()["location"].to_str().expect("location");
    url::Url::parse(location).expect("a URL")
}

fn query(url: &url::Url) -> HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

/// What a user pastes: Claude's page shows `code#state`, Google's code
/// page the code alone (Gemini); otherwise the address-bar URL.
fn paste_for(platform: &str, location: &url::Url) -> String {
    let q = query(location);
    match platform {
        "anthropic" => format!("{}#{}", q["code"], q["state"]),
        "gemini" => q["code"].clone(),
        _ => location.to_string(),
    }
}

/// Runs an interactive `accounts login|relogin`: reads stderr up to the
/// authorize URL, follows it, then either writes `paste(location)` on
/// stdin or (with `paste` = None) opens the redirect like the browser
/// would (`--listen`). Returns the output and the redirect location.
async fn interactive(
    sb: &Sandbox,
    args: &[&str],
    paste: Option<&dyn Fn(&url::Url) -> String>,
) -> (Out, url::Url) {
    let mut cmd = sb.command(args);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn oauth-refresh");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut seen = String::new();
    let url = loop {
        let line = tokio::time::timeout(Duration::from_secs(60), stderr.next_line())
            .await
            .expect("the authorize URL within 60 s")
            .expect("read stderr")
            .unwrap_or_else(|| panic!("stderr ended before the authorize URL: {seen}"));
        seen.push_str(&line);
        seen.push('\n');
        if line.trim_start().starts_with("http") {
            break line.trim().to_owned();
        }
    };
    let location = follow(&url).await;
    let mut stdin = child.stdin.take().expect("stdin");
    match paste {
        Some(paste) => {
            stdin
                .write_all(format!("{}\n", paste(&location)).as_bytes())
                .await
                .expect("write stdin");
        }
        None => {
            // `--listen`: wait for the listener's line, then the browser
            // lands on the redirect.
            loop {
                let line = stderr.next_line().await.expect("read").expect("a line");
                seen.push_str(&line);
                seen.push('\n');
                if line.starts_with("Waiting for the browser") {
                    break;
                }
            }
            let landed = browser()
                .get(location.as_str())
                .send()
                .await
                .expect("the loopback listener answers");
            assert_eq!(landed.status(), 200);
            let page = landed.text().await.expect("page");
            assert!(page.contains("Login received"), "{page}");
        }
    }
    drop(stdin);
    let mut stdout = String::new();
    let mut out_pipe = child.stdout.take().expect("stdout");
    let rest = async {
        let mut rest = String::new();
        while let Ok(Some(line)) = stderr.next_line().await {
            rest.push_str(&line);
            rest.push('\n');
        }
        rest
    };
    let (rest, _) = tokio::time::timeout(
        Duration::from_secs(60),
        futures_join(rest, out_pipe.read_to_string(&mut stdout)),
    )
    .await
    .expect("the login finishes within 60 s");
    let status = child.wait().await.expect("wait");
    seen.push_str(&rest);
    (
        Out {
            status,
            stdout,
            stderr: seen,
        },
        location,
    )
}

async fn futures_join<A: std::future::Future, B: std::future::Future>(
    a: A,
    b: B,
) -> (A::Output, B::Output) {
    tokio::join!(a, b)
}

/// The account id a login printed: stdout is exactly one number.
fn printed_id(out: &Out) -> i64 {
    out.stdout
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("stdout is not only an account id: {out:?}"))
}

/// Every code verifier the emulator received in an exchange body.
fn verifiers(sb: &Sandbox) -> Vec<String> {
    sb.emulator
        .recorded_requests()
        .iter()
        .flat_map(|r| {
            let body = String::from_utf8_lossy(&r.body).into_owned();
            let mut found: Vec<String> = url::form_urlencoded::parse(body.as_bytes())
                .filter(|(k, _)| k == "code_verifier")
                .map(|(_, v)| v.into_owned())
                .collect();
            if let Ok(json) = serde_json::from_str::<Value>(&body)
                && let Some(v) = json["code_verifier"].as_str()
            {
                found.push(v.to_owned());
            }
            found
        })
        .collect()
}

/// Asserts that `text` holds no issued token, no verifier and none of
/// `codes`.
#[track_caller]
fn assert_clean(sb: &Sandbox, codes: &[String], text: &str, what: &str) {
    assert_no_secret(&sb.emulator, text, what);
    for verifier in verifiers(sb) {
        assert!(
            !text.contains(&verifier),
            "a PKCE verifier appears in {what}"
        );
    }
    for code in codes {
        assert!(
            !text.contains(code.as_str()),
            "an authorization code appears in {what}"
        );
    }
}

async fn show(sb: &Sandbox, id: i64) -> Value {
    sb.run(&["accounts", "show", &id.to_string(), "--json"])
        .await
        .ok()
        .json()
}

// ------------------------------------------------------------------ CLI

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_login_per_provider_stores_an_account_that_refreshes() {
    let sb = sandbox("").await;
    let mut codes = Vec::new();
    let mut texts = Vec::new();
    for platform in ["anthropic", "openai", "gemini", "antigravity"] {
        let exchanges = sb.emulator.login_stats().exchanges;
        let paste = |location: &url::Url| paste_for(platform, location);
        let (out, location) = interactive(
            &sb,
            &[
                "--log-level",
                "debug",
                "accounts",
                "login",
                platform,
                "--name",
                &format!("login-{platform}"),
            ],
            Some(&paste),
        )
        .await;
        assert!(out.status.success(), "{platform}: {out:?}");
        let id = printed_id(&out);
        assert!(
            out.stderr.contains(&format!("added account {id}")),
            "{platform}: {out:?}"
        );
        assert_eq!(
            sb.emulator.login_stats().exchanges,
            exchanges + 1,
            "{platform}: one code exchange"
        );
        codes.push(query(&location)["code"].clone());
        let account = show(&sb, id).await;
        assert_eq!(account["platform"], platform);
        assert_eq!(account["name"], format!("login-{platform}"));
        assert_eq!(account["type"], "oauth");
        assert_eq!(account["credentials_version"], 0);

        let refreshes = sb.emulator.stats().refreshes;
        let refreshed = sb
            .run(&[
                "refresh",
                &id.to_string(),
                "--force",
                "--log-level",
                "debug",
            ])
            .await;
        refreshed.ok();
        assert!(refreshed.stdout.contains("refreshed"), "{refreshed:?}");
        assert_eq!(
            sb.emulator.stats().refreshes,
            refreshes + 1,
            "{platform}: the stored grant refreshed upstream"
        );
        assert_eq!(show(&sb, id).await["credentials_version"], 1);
        texts.push(format!("{}{}", out.stdout, out.stderr));
        texts.push(format!("{}{}", refreshed.stdout, refreshed.stderr));
    }
    let all = texts.join("\n");
    assert_clean(&sb, &codes, &all, "the login and refresh output and logs");
    assert!(verifiers(&sb).len() >= 4, "the scan knew the verifiers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_login_with_listen_receives_the_loopback_redirect() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let sb = sandbox(&format!(
        "[providers.claude.login]\nloopback_redirect_uri = \"http://localhost:{port}/callback\"\n"
    ))
    .await;
    let (out, location) =
        interactive(&sb, &["accounts", "login", "claude", "--listen"], None).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        location.port(),
        Some(port),
        "the loopback redirect was used"
    );
    let id = printed_id(&out);
    assert_eq!(show(&sb, id).await["platform"], "anthropic");
    sb.run(&["refresh", &id.to_string(), "--force"]).await.ok();
    assert_clean(
        &sb,
        &[query(&location)["code"].clone()],
        &format!("{}{}", out.stdout, out.stderr),
        "the --listen login output",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relogin_replaces_the_credentials_and_bumps_the_version() {
    let sb = sandbox("").await;
    let paste = |location: &url::Url| paste_for("openai", location);
    let (out, _) = interactive(&sb, &["accounts", "login", "openai"], Some(&paste)).await;
    let id = printed_id(&out);
    sb.run(&["accounts", "set-status", &id.to_string(), "error"])
        .await
        .ok();
    let before = show(&sb, id).await;
    assert_eq!(before["credentials_version"], 0);

    let (out, location) =
        interactive(&sb, &["accounts", "relogin", &id.to_string()], Some(&paste)).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(printed_id(&out), id, "the same account");
    let after = show(&sb, id).await;
    assert_eq!(after["credentials_version"], 1, "a credential write");
    assert_eq!(
        after["status"], "active",
        "an errored account is usable again"
    );
    assert_eq!(after["name"], before["name"], "metadata kept");
    assert_eq!(sb.emulator.login_stats().exchanges, 2);
    // The new grant refreshes.
    let refreshes = sb.emulator.stats().refreshes;
    sb.run(&["refresh", &id.to_string(), "--force"]).await.ok();
    assert_eq!(sb.emulator.stats().refreshes, refreshes + 1);
    assert_eq!(show(&sb, id).await["credentials_version"], 2);
    assert_clean(
        &sb,
        &[query(&location)["code"].clone()],
        &format!("{}{}", out.stdout, out.stderr),
        "the relogin output",
    );

    // A relogin of an unknown account fails before anything is begun.
    let missing = sb.run(&["accounts", "relogin", "999"]).await;
    assert_eq!(missing.code(), 1, "{missing:?}");
    assert!(
        missing.stderr.contains("account 999 not found"),
        "{missing:?}"
    );
}

/// A relogin as another upstream user is refused before anything is
/// replaced (one line naming the differing fields and the flag); with
/// `--allow-identity-change` it goes through and the new identity is
/// recorded, so the next relogin compares against it. Claude keeps its
/// identity only in `extra`: a relogin as bob passing afterwards shows
/// `extra` was updated.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relogin_as_another_identity_needs_allow_identity_change() {
    let sb = sandbox("").await;
    let paste = |location: &url::Url| paste_for("anthropic", location);
    let user = |email: &str| GrantSpec {
        provider: Some(EmulatedProvider::Claude),
        email: Some(email.to_owned()),
        ..GrantSpec::default()
    };
    sb.emulator.queue_login(user("alice@example.com"));
    let (out, _) = interactive(&sb, &["accounts", "login", "claude"], Some(&paste)).await;
    let id = printed_id(&out);
    let relogin = ["accounts", "relogin", &id.to_string()];
    let allowing = [&relogin[..], &["--allow-identity-change"]].concat();

    sb.emulator.queue_login(user("bob@example.com"));
    let (refused, location) = interactive(&sb, &relogin, Some(&paste)).await;
    assert_eq!(refused.code(), 1, "{refused:?}");
    assert!(refused.stdout.is_empty(), "{refused:?}");
    let error = refused
        .stderr
        .lines()
        .filter(|l| l.contains("error"))
        .collect::<Vec<_>>();
    assert_eq!(error.len(), 1, "{refused:?}");
    for needle in [
        "--allow-identity-change",
        "email_address",
        "account_uuid",
        "not replaced",
    ] {
        assert!(error[0].contains(needle), "{needle}: {refused:?}");
    }
    assert!(!error[0].contains("bob@"), "no identity value: {refused:?}");
    assert_eq!(show(&sb, id).await["credentials_version"], 0);
    assert_clean(
        &sb,
        &[query(&location)["code"].clone()],
        &format!("{}{}", refused.stdout, refused.stderr),
        "the refused relogin",
    );

    sb.emulator.queue_login(user("bob@example.com"));
    let (allowed, _) = interactive(&sb, &allowing, Some(&paste)).await;
    assert!(allowed.status.success(), "{allowed:?}");
    assert!(allowed.stderr.contains("identity changed"), "{allowed:?}");
    assert_eq!(show(&sb, id).await["credentials_version"], 1);

    sb.emulator.queue_login(user("bob@example.com"));
    let (same, _) = interactive(&sb, &relogin, Some(&paste)).await;
    assert!(same.status.success(), "bob is the account now: {same:?}");
    assert_eq!(show(&sb, id).await["credentials_version"], 2);

    sb.emulator.queue_login(user("alice@example.com"));
    let (back, _) = interactive(&sb, &relogin, Some(&paste)).await;
    assert_eq!(back.code(), 1, "{back:?}");
    assert_eq!(show(&sb, id).await["credentials_version"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cli_login_with_a_wrong_state_sends_no_exchange_and_stores_nothing() {
    let sb = sandbox("").await;
    let tamper = |location: &url::Url| {
        let mut wrong = location.clone();
        let pairs: Vec<(String, String)> = location
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "state" {
                    format!("{v}x")
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        wrong.query_pairs_mut().clear().extend_pairs(pairs);
        wrong.to_string()
    };
    let (out, _) = interactive(&sb, &["accounts", "login", "openai"], Some(&tamper)).await;
    assert_eq!(out.code(), 1, "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(out.stderr.contains("state does not match"), "{out:?}");
    let stats = sb.emulator.login_stats();
    assert_eq!(
        stats.exchanges + stats.exchange_rejections,
        0,
        "nothing sent"
    );
    assert!(
        !sb.emulator
            .recorded_requests()
            .iter()
            .any(|r| r.contains("authorization_code")),
        "no exchange request reached the token endpoint"
    );
    let list = sb.run(&["accounts", "list", "--json"]).await.json();
    assert_eq!(list, json!([]), "nothing stored");

    // Garbage is a typed one-line error; an unknown platform exits 2.
    let garbage = |_: &url::Url| "not a code at all !!".to_owned();
    let (out, _) = interactive(&sb, &["accounts", "login", "openai"], Some(&garbage)).await;
    assert_eq!(out.code(), 1, "{out:?}");
    assert!(
        out.stderr.contains("oauth-refresh: error: login failed"),
        "{out:?}"
    );
    let out = sb.run(&["accounts", "login", "acme"]).await;
    assert_eq!(out.code(), 2, "{out:?}");
}

// ----------------------------------------------------------------- HTTP

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_http_login_begun_on_one_serve_completes_on_another_once() {
    let sb = sandbox("").await;
    let mut first = sb.serve(&["--no-worker"]).await;
    let mut second = sb.serve(&["--no-worker"]).await;
    let client = http();
    let mut bodies = Vec::new();

    // Unauthenticated: 401, like every /v1 route.
    let anonymous = client
        .post(format!("{}/v1/logins", first.url))
        .json(&json!({"platform": "claude"}))
        .send()
        .await
        .expect("post");
    assert_eq!(anonymous.status(), 401);

    let begun = client
        .post(format!("{}/v1/logins", first.url))
        .bearer_auth(KEY)
        .json(&json!({"platform": "claude", "name": "over-http"}))
        .send()
        .await
        .expect("begin");
    assert_eq!(begun.status(), 201);
    let begun: Value = begun.json().await.expect("json");
    let session = begun["session_id"].as_str().expect("session id").to_owned();
    let expires_in = begun["expires_at"].as_i64().expect("expires_at") - now();
    assert!(
        (9 * 60..=31 * 60).contains(&expires_in),
        "a 10–30 min session: {begun}"
    );
    let location = follow(begun["authorize_url"].as_str().expect("url")).await;
    let code = query(&location)["code"].clone();
    let pasted = paste_for("anthropic", &location);

    let complete = |base: &str| format!("{base}/v1/logins/{session}/complete");
    let done = client
        .post(complete(&second.url))
        .bearer_auth(KEY)
        .json(&json!({"pasted": pasted}))
        .send()
        .await
        .expect("complete");
    assert_eq!(done.status(), 201);
    let account: Value = done.json().await.expect("json");
    bodies.push(account.to_string());
    assert_eq!(account["name"], "over-http");
    assert_eq!(account["platform"], "anthropic");
    assert!(
        account.get("credentials").is_none(),
        "no secrets: {account}"
    );
    let id = account["id"].as_i64().expect("id");

    // Single use: again, on either process, is 410.
    for base in [&first.url, &second.url] {
        let again = client
            .post(complete(base))
            .bearer_auth(KEY)
            .json(&json!({"pasted": pasted}))
            .send()
            .await
            .expect("again");
        assert_eq!(again.status(), 410);
        let body: Value = again.json().await.expect("json");
        assert_eq!(body["error"]["code"], "login_session_gone");
        bodies.push(body.to_string());
    }
    assert_eq!(sb.emulator.login_stats().exchanges, 1, "one exchange");
    // The account refreshes.
    let refreshed = client
        .post(format!("{}/v1/accounts/{id}/refresh?force=true", first.url))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("refresh");
    assert_eq!(refreshed.status(), 200);

    first.signal("-TERM");
    second.signal("-TERM");
    first.wait().await;
    second.wait().await;
    let logs = format!("{}\n{}", first.logs(), second.logs());
    assert!(logs.contains("login completed"), "the completion is logged");
    assert_clean(
        &sb,
        &[code],
        &format!("{logs}\n{}", bodies.join("\n")),
        "serve logs and answers",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs services: cargo xtask test"]
async fn on_postgres_an_http_login_completes_on_another_serve_exactly_once() {
    let db = PgDatabase::create("onboarding").await;
    let sb = sandbox_with(&format!("database_url = \"{}\"", db.url), "").await;
    let mut servers = vec![
        sb.serve(&["--no-worker"]).await,
        sb.serve(&["--no-worker"]).await,
    ];
    let client = http();
    let begun: Value = client
        .post(format!("{}/v1/logins", servers[0].url))
        .bearer_auth(KEY)
        .json(&json!({"platform": "openai"}))
        .send()
        .await
        .expect("begin")
        .json()
        .await
        .expect("json");
    let session = begun["session_id"].as_str().expect("session").to_owned();
    let location = follow(begun["authorize_url"].as_str().expect("url")).await;
    // Both processes race to complete it: exactly one wins.
    let attempt = |base: &str| {
        client
            .post(format!("{base}/v1/logins/{session}/complete"))
            .bearer_auth(KEY)
            .json(&json!({"pasted": location.to_string()}))
            .send()
    };
    let (a, b) = tokio::join!(attempt(&servers[0].url), attempt(&servers[1].url));
    let mut statuses = vec![
        a.expect("complete").status().as_u16(),
        b.expect("complete").status().as_u16(),
    ];
    statuses.sort_unstable();
    assert_eq!(statuses, vec![201, 410], "one completion wins");
    assert_eq!(sb.emulator.login_stats().exchanges, 1);
    for served in &mut servers {
        served.signal("-TERM");
        served.wait().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_login_errors_are_typed_and_a_wrong_state_sends_nothing() {
    let sb = sandbox("").await;
    let mut served = sb.serve(&["--no-worker"]).await;
    let client = http();
    let base = served.url.clone();
    let post = |path: String, body: Value| {
        let client = client.clone();
        async move {
            let answer = client
                .post(path)
                .bearer_auth(KEY)
                .json(&body)
                .send()
                .await
                .expect("post");
            let status = answer.status().as_u16();
            let body: Value = answer.json().await.expect("a JSON answer");
            (status, body)
        }
    };
    let begin = |platform: &str| post(format!("{base}/v1/logins"), json!({"platform": platform}));

    let (status, body) = begin("acme").await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, json!("login_unsupported"))
    );
    let (status, body) = begin("not a platform!").await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, json!("bad_request"))
    );
    let (status, body) = post(
        format!("{base}/v1/logins"),
        json!({"platform": "openai", "bogus": 1}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, json!("bad_request"))
    );
    let (status, body) = post(
        format!("{base}/v1/logins"),
        json!({"platform": "openai", "type": "setup-token"}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, json!("invalid_option")),
        "{body}"
    );

    // Wrong state: 400 state_mismatch, no exchange sent.
    let (_, begun) = begin("openai").await;
    let session = begun["session_id"].as_str().unwrap().to_owned();
    let location = follow(begun["authorize_url"].as_str().unwrap()).await;
    let mut tampered = location.clone();
    let pairs: Vec<(String, String)> = location
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                "forged".to_owned()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    tampered.query_pairs_mut().clear().extend_pairs(pairs);
    let (status, body) = post(
        format!("{base}/v1/logins/{session}/complete"),
        json!({"pasted": tampered.to_string()}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, json!("state_mismatch"))
    );
    let stats = sb.emulator.login_stats();
    assert_eq!(
        stats.exchanges + stats.exchange_rejections,
        0,
        "nothing sent"
    );
    assert!(
        !sb.emulator
            .recorded_requests()
            .iter()
            .any(|r| r.contains("authorization_code")),
        "no exchange request"
    );
    // The session is used up by the attempt.
    let (status, _) = post(
        format!("{base}/v1/logins/{session}/complete"),
        json!({"pasted": location.to_string()}),
    )
    .await;
    assert_eq!(status, 410);

    // Garbage: 400 invalid_paste. Unknown session: 410.
    let (_, begun) = begin("openai").await;
    let session = begun["session_id"].as_str().unwrap().to_owned();
    let (status, body) = post(
        format!("{base}/v1/logins/{session}/complete"),
        json!({"pasted": "%%% nonsense"}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, json!("invalid_paste")),
        "{body}"
    );
    let (status, _) = post(
        format!("{base}/v1/logins/no-such-session/complete"),
        json!({"pasted": "abc"}),
    )
    .await;
    assert_eq!(status, 410);
    let (status, _) = post(
        format!("{base}/v1/logins/x/complete"),
        json!({"paste": "abc"}),
    )
    .await;
    assert_eq!(status, 400, "a body without `pasted` is a 400");

    // Expiry is the database's: a session whose row expired is 410.
    let (_, begun) = begin("openai").await;
    let session = begun["session_id"].as_str().unwrap().to_owned();
    let location = follow(begun["authorize_url"].as_str().unwrap()).await;
    expire_sessions(&sb).await;
    let (status, body) = post(
        format!("{base}/v1/logins/{session}/complete"),
        json!({"pasted": location.to_string()}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (410, json!("login_session_expired"))
    );
    assert_eq!(
        sb.emulator.login_stats().exchanges,
        0,
        "an expired session sends nothing"
    );

    // An exchange the token endpoint refuses: 502. Google's code page
    // shows the code alone, so a used code pasted into a new Gemini
    // session is sent, and refused (used code, foreign verifier).
    let (_, begun) = begin("gemini").await;
    let session = begun["session_id"].as_str().unwrap().to_owned();
    let location = follow(begun["authorize_url"].as_str().unwrap()).await;
    let code = query(&location)["code"].clone();
    let (status, body) = post(
        format!("{base}/v1/logins/{session}/complete"),
        json!({"pasted": code}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (_, begun) = begin("gemini").await;
    let session = begun["session_id"].as_str().unwrap().to_owned();
    let (status, body) = post(
        format!("{base}/v1/logins/{session}/complete"),
        json!({"pasted": code}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (502, json!("exchange_rejected")),
        "{body}"
    );
    assert!(
        !body.to_string().contains(&code),
        "the answer does not echo the code"
    );
    served.signal("-TERM");
    served.wait().await;
}

/// Moves every stored login session's expiry into the past (the store
/// judges expiry by the database clock).
async fn expire_sessions(sb: &Sandbox) {
    use sea_orm::{ConnectionTrait, Database, Statement};
    let url = format!("sqlite://{}", sb.path().join("oauth-refresh.db").display());
    let conn = Database::connect(url.as_str())
        .await
        .expect("open the database");
    conn.execute(Statement::from_string(
        conn.get_database_backend(),
        "UPDATE login_sessions SET expires_at = 0",
    ))
    .await
    .expect("expire");
    let _ = conn.close().await;
}

// ----------------------------------------------------------- import-cli

fn jwt(claims: &Value) -> String {
    let enc = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.c2ln",
        enc(&json!({"alg": "RS256", "typ": "JWT"})),
        enc(claims)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn import_cli_reads_each_format_warns_and_the_accounts_refresh() {
    let sb = sandbox("").await;
    let home = sb.path().join("home");
    let expires_ms = (now() + 1800) * 1000 + 123;

    // Claude Code at its default location under HOME, ms `expiresAt`.
    let claude = sb.seed(EmulatedProvider::Claude);
    std::fs::create_dir_all(home.join(".claude")).unwrap();
    std::fs::write(
        home.join(".claude/.credentials.json"),
        json!({"claudeAiOauth": {
            "accessToken": "sk-ant-oat01-imported",
            "refreshToken": claude.refresh_token.expose(),
            "expiresAt": expires_ms,
            "scopes": ["user:inference", "user:profile"],
            "subscriptionType": "max"
        }})
        .to_string(),
    )
    .unwrap();
    let home_env = home.display().to_string();
    let run_with_home = |args: Vec<String>| {
        let mut cmd = sb.command(&args.iter().map(String::as_str).collect::<Vec<_>>());
        cmd.env("HOME", &home_env)
            .env_remove("CLAUDE_CONFIG_DIR")
            .env_remove("CODEX_HOME");
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        async move {
            let output = cmd.output().await.expect("run");
            Out {
                status: output.status,
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            }
        }
    };
    let out = run_with_home(vec![
        "accounts".into(),
        "import-cli".into(),
        "claude-code".into(),
    ])
    .await;
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stderr.contains("belongs to oauth-refresh"),
        "the warning: {out:?}"
    );
    let claude_id = printed_id(&out);
    let shown = show(&sb, claude_id).await;
    assert_eq!(shown["platform"], "anthropic");
    assert_eq!(shown["expires_at"], expires_ms / 1000, "ms read as ms");

    // Codex auth.json at an explicit path; the expiry is the JWT's.
    let openai = sb.seed(EmulatedProvider::OpenAi);
    let exp = now() + 900;
    let codex = sb.path().join("auth.json");
    std::fs::write(
        &codex,
        json!({
            "OPENAI_API_KEY": null,
            "tokens": {
                "id_token": jwt(&json!({"email": "dev@example.com", "exp": exp})),
                "access_token": jwt(&json!({"exp": exp})),
                "refresh_token": openai.refresh_token.expose(),
                "account_id": "acct-1"
            },
            "last_refresh": "2026-12-01T00:00:00Z"
        })
        .to_string(),
    )
    .unwrap();
    let out = sb
        .run(&[
            "accounts",
            "import-cli",
            "codex",
            &codex.display().to_string(),
        ])
        .await;
    out.ok();
    let codex_id = printed_id(&out);
    let shown = show(&sb, codex_id).await;
    assert_eq!(shown["platform"], "openai");
    assert_eq!(shown["expires_at"], exp);

    // Gemini CLI oauth_creds.json, ms `expiry_date`.
    let gemini = sb.seed(EmulatedProvider::Gemini);
    let creds = sb.path().join("oauth_creds.json");
    std::fs::write(
        &creds,
        json!({
            "access_token": "ya29.imported",
            "refresh_token": gemini.refresh_token.expose(),
            "scope": "https://www.googleapis.com/auth/cloud-platform",
            "token_type": "Bearer",
            "expiry_date": expires_ms
        })
        .to_string(),
    )
    .unwrap();
    let out = sb
        .run(&[
            "accounts",
            "import-cli",
            "gemini-cli",
            &creds.display().to_string(),
            "--name",
            "g",
        ])
        .await;
    out.ok();
    let gemini_id = printed_id(&out);
    assert_eq!(show(&sb, gemini_id).await["name"], "g");

    for id in [claude_id, codex_id, gemini_id] {
        let refreshed = sb.run(&["refresh", &id.to_string(), "--force"]).await;
        refreshed.ok();
        assert!(refreshed.stdout.contains("refreshed"), "{refreshed:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn import_cli_without_a_refresh_token_is_one_typed_line_and_stores_nothing() {
    let sb = sandbox("").await;
    let file = sb.path().join("creds.json");
    std::fs::write(
        &file,
        json!({"claudeAiOauth": {"accessToken": "sk-ant-oat01-x", "expiresAt": 1_900_000_000_000_i64}})
            .to_string(),
    )
    .unwrap();
    let out = sb
        .run(&[
            "accounts",
            "import-cli",
            "claude-code",
            &file.display().to_string(),
        ])
        .await;
    assert_eq!(out.code(), 2, "{out:?}");
    assert_eq!(out.stderr.trim().lines().count(), 1, "one line: {out:?}");
    assert!(out.stderr.contains("no refresh token"), "{out:?}");
    assert!(
        !out.stderr.contains("sk-ant-oat01-x"),
        "no value from the file"
    );
    assert!(out.stdout.is_empty());
    let bad = sb
        .run(&[
            "accounts",
            "import-cli",
            "vscode",
            &file.display().to_string(),
        ])
        .await;
    assert_eq!(bad.code(), 2, "{bad:?}");
    let missing = sb
        .run(&["accounts", "import-cli", "codex", "/nonexistent/auth.json"])
        .await;
    assert_eq!(missing.code(), 2, "{missing:?}");
    let list = sb.run(&["accounts", "list", "--json"]).await.json();
    assert_eq!(list, json!([]), "nothing stored");
}
