//! End-to-end: the built `oauth-refresh` binary against a SQLite file and
//! the OAuth emulator (in this process). No server needed.

mod common;

use std::time::Duration;

use common::*;
use refresh_providers::emulator::{EmulatedProvider, Latency, paths};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrate_import_list_show_token_refresh_on_sqlite() {
    let sb = Sandbox::new().await;
    sb.write_config("");
    // Before migrate: no key yet, a clear one-line error.
    let out = sb.run(&["accounts", "list"]).await;
    assert_eq!(out.code(), 2, "{out:?}");
    assert!(
        out.stderr.contains("run `oauth-refresh migrate`"),
        "{out:?}"
    );
    assert_eq!(out.stderr.trim().lines().count(), 1, "{out:?}");

    let out = sb.run(&["migrate"]).await;
    out.ok();
    assert!(
        out.stderr.contains("generated a new sealing key"),
        "{out:?}"
    );
    let key = sb.path().join("oauth-refresh.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // A second migrate reads the key it generated and changes nothing.
    let again = sb.run(&["migrate"]).await;
    again.ok();
    assert!(!again.stderr.contains("generated"), "{again:?}");

    let claude = sb.seed(EmulatedProvider::Claude);
    let openai = sb.seed(EmulatedProvider::OpenAi);
    let expired = now() - 3600;
    let file = sb.write_import(
        "accounts.json",
        &json!([
            entry(
                "team-claude",
                "anthropic",
                claude.refresh_token.expose(),
                expired
            ),
            entry(
                "team-openai",
                "openai",
                openai.refresh_token.expose(),
                now() + 7200
            ),
        ]),
    );
    let out = sb.run(&["accounts", "import", &file]).await;
    out.ok();
    assert!(out.stdout.contains("imported 2 accounts"), "{out:?}");

    let list = sb.run(&["accounts", "list"]).await;
    list.ok();
    assert!(list.stdout.contains("team-claude") && list.stdout.contains("team-openai"));
    let rows = sb.run(&["accounts", "list", "--json"]).await.json();
    let rows = rows.as_array().expect("an array");
    assert_eq!(rows.len(), 2);
    for field in [
        "id",
        "name",
        "platform",
        "type",
        "status",
        "expires_at",
        "credentials_version",
        "error_message",
    ] {
        assert!(rows[0].get(field).is_some(), "{field} missing in {rows:?}");
    }
    assert_eq!(rows[0]["platform"], "anthropic");
    assert_eq!(rows[0]["credentials_version"], 0);
    let id = rows[0]["id"].as_i64().unwrap().to_string();
    let openai_id = rows[1]["id"].as_i64().unwrap().to_string();

    let show = sb.run(&["accounts", "show", &id, "--json"]).await.json();
    assert_eq!(show["name"], "team-claude");
    assert_eq!(show["expires_at"], expired);
    let human = sb.run(&["accounts", "show", &id]).await;
    human.ok();
    assert!(human.stdout.contains("credential keys:"), "{human:?}");

    // `token` refreshes the expired account once and prints only the token.
    let token = sb.run(&["token", &id]).await;
    token.ok();
    let printed = token.stdout.trim().to_owned();
    assert_eq!(token.stdout.lines().count(), 1, "{token:?}");
    assert!(printed.starts_with("sk-ant-"), "{printed}");
    assert_eq!(sb.emulator.stats().refreshes, 1);
    let again = sb.run(&["token", &id]).await;
    assert_eq!(
        again.stdout.trim(),
        printed,
        "a fresh token is not refreshed again"
    );
    assert_eq!(sb.emulator.stats().refreshes, 1);
    // The OpenAI account is fresh: its stored token, no refresh.
    let fresh = sb.run(&["token", &openai_id]).await;
    assert_eq!(fresh.stdout.trim(), "at-initial-team-openai");
    assert_eq!(sb.emulator.stats().refreshes, 1);

    let show = sb.run(&["accounts", "show", &id, "--json"]).await.json();
    assert_eq!(show["credentials_version"], 1);
    assert!(show["expires_at"].as_i64().unwrap() > now());

    let refresh = sb.run(&["refresh", &id]).await;
    refresh.ok();
    assert!(refresh.stdout.contains("still fresh"), "{refresh:?}");
    let forced = sb.run(&["refresh", &id, "--force"]).await;
    forced.ok();
    assert!(forced.stdout.contains("refreshed"), "{forced:?}");
    assert_eq!(sb.emulator.stats().refreshes, 2);
    let newer = sb.run(&["token", &id]).await;
    assert_ne!(
        newer.stdout.trim(),
        printed,
        "the forced refresh's token is served"
    );
    let stats = sb.emulator.stats();
    assert_eq!(stats.reuse_attempts, 0);
    assert!(stats.revoked_grants.is_empty());

    let status = sb
        .run(&["accounts", "set-status", &openai_id, "disabled"])
        .await;
    status.ok();
    let row = sb
        .run(&["accounts", "show", &openai_id, "--json"])
        .await
        .json();
    assert_eq!(row["status"], "disabled");
    sb.run(&["accounts", "remove", &openai_id]).await.ok();
    let gone = sb.run(&["accounts", "show", &openai_id]).await;
    assert_eq!(gone.code(), 1);
    assert_eq!(
        gone.stderr.trim(),
        format!("oauth-refresh: error: account {openai_id} not found")
    );
    let unknown = sb.run(&["token", "999"]).await;
    assert_eq!(unknown.code(), 1);
    assert!(
        unknown.stderr.contains("account 999 not found"),
        "{unknown:?}"
    );

    // Nothing but `token` ever printed a token.
    for args in [
        vec!["accounts", "list"],
        vec!["accounts", "list", "--json"],
        vec!["accounts", "show", &id],
        vec!["config"],
        vec!["refresh", &id, "--force"],
    ] {
        let out = sb.run(&args).await;
        assert_no_secret(&sb.emulator, &out.stdout, "stdout");
        assert_no_secret(&sb.emulator, &out.stderr, "stderr");
    }
    // The database file holds no token text (credentials are sealed).
    let db = std::fs::read(sb.path().join("oauth-refresh.db")).unwrap();
    let db = String::from_utf8_lossy(&db);
    assert_no_secret(&sb.emulator, &db, "the SQLite file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_add_reads_credentials_from_stdin_and_names_a_bad_field() {
    let sb = Sandbox::new().await;
    sb.write_config("");
    sb.run(&["migrate"]).await.ok();
    let grant = sb.seed(EmulatedProvider::OpenAi);
    let credentials = json!({
        "access_token": "at-0",
        "refresh_token": grant.refresh_token.expose(),
        "expires_at": "2020-01-01T00:00:00+08:00",
    })
    .to_string();
    let out = sb
        .run_with_stdin(
            &[
                "accounts",
                "add",
                "--name",
                "o1",
                "--platform",
                "openai",
                "--json",
            ],
            Some(&credentials),
        )
        .await;
    out.ok();
    assert_eq!(out.json()["platform"], "openai");
    let bad = sb
        .run_with_stdin(
            &["accounts", "add", "--name", "o2", "--platform", "openai"],
            Some(r#"{"access_token": "a", "expires_at": 1}"#),
        )
        .await;
    assert_eq!(bad.code(), 2, "{bad:?}");
    assert!(bad.stderr.contains("credentials.refresh_token"), "{bad:?}");
    assert_eq!(bad.stderr.trim().lines().count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_with_one_bad_entry_imports_nothing_and_names_the_entry() {
    let sb = Sandbox::new().await;
    sb.write_config("");
    sb.run(&["migrate"]).await.ok();
    let mut bad = entry("bad", "openai", "rt-x", now());
    bad["credentials"]
        .as_object_mut()
        .unwrap()
        .remove("refresh_token");
    let file = sb.write_import(
        "accounts.json",
        &json!([
            entry("a", "anthropic", "rt-a", now()),
            entry("b", "anthropic", "rt-b", now()),
            bad,
        ]),
    );
    let out = sb.run(&["accounts", "import", &file]).await;
    assert_eq!(out.code(), 2, "{out:?}");
    let line = out.stderr.trim();
    assert_eq!(line.lines().count(), 1, "{out:?}");
    assert!(
        line.contains("entry 2") && line.contains("credentials.refresh_token"),
        "{line}"
    );
    assert!(line.contains("nothing was imported"), "{line}");
    let rows = sb.run(&["accounts", "list", "--json"]).await.json();
    assert_eq!(rows, json!([]), "nothing was imported");

    // Not JSON: one line with the position; an unknown platform: the field.
    std::fs::write(sb.path().join("broken.json"), "[{\"name\": ").unwrap();
    let out = sb.run(&["accounts", "import", "broken.json"]).await;
    assert_eq!(out.code(), 2);
    assert!(out.stderr.contains("not valid JSON (line 1"), "{out:?}");
    let file = sb.write_import(
        "platform.json",
        &json!([entry("p", "myspace", "rt-p", now())]),
    );
    let out = sb.run(&["accounts", "import", &file]).await;
    assert!(out.stderr.contains("entry 0, field `platform`"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_of_a_redeemed_refresh_token_is_refused() {
    let sb = Sandbox::new().await;
    sb.write_config("");
    sb.run(&["migrate"]).await.ok();
    let grant = sb.seed(EmulatedProvider::Claude);
    let old = grant.refresh_token.expose().to_owned();
    let file = sb.write_import(
        "a.json",
        &json!([entry("a", "anthropic", &old, now() - 10)]),
    );
    sb.run(&["accounts", "import", &file]).await.ok();
    sb.run(&["token", "1"]).await.ok(); // rotates: `old` is now consumed
    assert_eq!(sb.emulator.stats().refreshes, 1);
    // An old export of the same grant, imported again.
    let file = sb.write_import(
        "old.json",
        &json!([
            entry("fresh", "openai", "rt-unrelated", now()),
            entry("old-export", "anthropic", &old, now() - 10),
        ]),
    );
    let out = sb.run(&["accounts", "import", &file]).await;
    assert_eq!(out.code(), 2, "{out:?}");
    assert!(
        out.stderr
            .contains("entry 1, field `credentials.refresh_token`")
            && out.stderr.contains("already redeemed"),
        "{out:?}"
    );
    let rows = sb.run(&["accounts", "list", "--json"]).await.json();
    assert_eq!(rows.as_array().unwrap().len(), 1, "nothing was imported");
    assert_eq!(sb.emulator.stats().reuse_attempts, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_configuration_gives_one_line_naming_the_problem() {
    let sb = Sandbox::new().await;
    let cases: [(&str, &[&str]); 6] = [
        (
            "databse_url = \"x\"\n",
            &["unknown key `databse_url`", "oauth-refresh.toml"],
        ),
        (
            "[serve]\nlisten = \"127.0.0.1:1\"\napi_key = [\"k\"]\n",
            &["unknown key `serve.api_key`"],
        ),
        (
            "[flow]\nupstream_timeout = \"soon\"\n",
            &["`flow.upstream_timeout`", "duration"],
        ),
        (
            "[background]\nconcurrency = \"many\"\n",
            &["`background.concurrency`"],
        ),
        (
            "[log\nlevel = 1\n",
            &["invalid TOML at line", "oauth-refresh.toml"],
        ),
        ("[flow]\nlease_ttl = \"10s\"\n", &["flow", "lease ttl"]),
    ];
    for (text, expected) in cases {
        std::fs::write(sb.path().join("oauth-refresh.toml"), text).unwrap();
        let out = sb.run(&["--config", "oauth-refresh.toml", "migrate"]).await;
        assert_eq!(out.code(), 2, "{text}: {out:?}");
        let line = out.stderr.trim();
        assert_eq!(line.lines().count(), 1, "{text}: {line}");
        for word in expected {
            assert!(line.contains(word), "{text}: {word:?} not in {line}");
        }
    }
    // An unknown variable is named as such; a missing --config file too.
    std::fs::remove_file(sb.path().join("oauth-refresh.toml")).unwrap();
    let sb = sb.env("OAUTH_REFRESH_DATABSE_URL", "sqlite::memory:");
    let out = sb.run(&["migrate"]).await;
    assert_eq!(out.code(), 2);
    assert!(
        out.stderr
            .contains("environment variable OAUTH_REFRESH_DATABSE_URL")
            && out.stderr.contains("unknown key"),
        "{out:?}"
    );
    let out = sb.run(&["--config", "nope.toml", "config"]).await;
    assert_eq!(out.code(), 2);
    assert!(out.stderr.contains("nope.toml: not found"), "{out:?}");
    // --verbose adds the cause chain of a runtime failure.
    let sb = Sandbox::new()
        .await
        .env("OAUTH_REFRESH_ALLOW_PLAINTEXT", "true");
    let out = sb
        .run(&[
            "--database-url",
            "postgres://u:pw-secret@127.0.0.1:1/x",
            "accounts",
            "list",
        ])
        .await;
    assert_eq!(out.code(), 1, "{out:?}");
    assert!(
        out.stderr.contains("database_url") && !out.stderr.contains("pw-secret"),
        "{out:?}"
    );
    assert_eq!(out.stderr.trim().lines().count(), 1);
    let verbose = sb
        .run(&[
            "--verbose",
            "--database-url",
            "postgres://u:pw-secret@127.0.0.1:1/x",
            "accounts",
            "list",
        ])
        .await;
    assert!(verbose.stderr.trim().lines().count() > 1, "{verbose:?}");
    assert!(verbose.stderr.contains("caused by") && !verbose.stderr.contains("pw-secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_texts_are_complete() {
    let sb = Sandbox::new().await;
    let top = sb.run(&["--help"]).await;
    top.ok();
    for command in [
        "migrate", "accounts", "token", "refresh", "run", "serve", "demo", "config",
    ] {
        assert!(
            top.stdout.contains(command),
            "{command} missing from --help"
        );
    }
    for flag in [
        "--config",
        "--database-url",
        "--redis-url",
        "--log-level",
        "--verbose",
    ] {
        assert!(top.stdout.contains(flag), "{flag} missing from --help");
    }
    let commands: [(&[&str], &[&str]); 13] = [
        (&["migrate"], &["oauth-refresh.key"]),
        (
            &["accounts"],
            &["add", "import", "list", "show", "remove", "set-status"],
        ),
        (
            &["accounts", "add"],
            &[
                "--name",
                "--platform",
                "--type",
                "--credentials-file",
                "--proxy",
                "--extra",
            ],
        ),
        (
            &["accounts", "import"],
            &["<FILE>", "all or nothing", "--json"],
        ),
        (&["accounts", "list"], &["--json", "--platform", "--status"]),
        (&["accounts", "show"], &["<ID>", "--json"]),
        (&["accounts", "remove"], &["<ID>"]),
        (
            &["accounts", "set-status"],
            &["<ID>", "<STATUS>", "disabled"],
        ),
        (&["token"], &["<ID>", "nothing else"]),
        (&["refresh"], &["<ID>", "--force"]),
        (&["run"], &["SIGTERM", "--once"]),
        (
            &["serve"],
            &[
                "--listen",
                "--no-worker",
                "--insecure-loopback",
                "/v1/accounts/{id}/access-token",
            ],
        ),
        (
            &["demo"],
            &["--json", "--accounts", "--callers", "--instances"],
        ),
    ];
    for (command, words) in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let out = sb.run(&args).await;
        out.ok();
        for word in words {
            assert!(
                out.stdout.contains(word),
                "{command:?} --help lacks {word}:\n{}",
                out.stdout
            );
        }
    }
    let config = sb.run(&["config", "--help"]).await;
    assert!(config.stdout.contains("redacted"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_prints_the_effective_configuration_with_secrets_redacted() {
    let sb = Sandbox::new()
        .await
        .env(
            "OAUTH_REFRESH_ENCRYPTION_KEY",
            "q0gkYJ8pVo0fXZ8v0xqS5bu1b0h0hJ6oEJQ8c3p5vXg=",
        )
        .env(
            "OAUTH_REFRESH_SERVE__API_KEYS",
            "key-one-secret,key-two-secret",
        )
        .env("OAUTH_REFRESH_BACKGROUND__INTERVAL", "90s");
    sb.write_config("database_url = \"postgres://app:pw-secret@db.invalid/x\"\n");
    let out = sb
        .run(&[
            "config",
            "--redis-url",
            "redis://:redis-secret@127.0.0.1:1/",
        ])
        .await;
    out.ok();
    for secret in [
        "pw-secret",
        "key-one-secret",
        "redis-secret",
        "q0gkYJ8p",
        "GOCSPX",
    ] {
        assert!(
            !out.stdout.contains(secret),
            "{secret} shown:\n{}",
            out.stdout
        );
    }
    let table: toml::Table = out.stdout.parse().expect("TOML");
    assert_eq!(table["encryption_key"].as_str(), Some("[redacted]"));
    assert_eq!(table["serve"]["api_keys"].as_array().unwrap().len(), 2);
    assert_eq!(table["background"]["interval"].as_str(), Some("1m 30s"));
    assert!(table["redis_url"].as_str().unwrap().starts_with("redis://"));
    assert!(
        table["providers"]["gemini"]["code_assist_url"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_checks_keys_answers_json_errors_and_never_lists_a_secret() {
    let sb = Sandbox::new().await;
    sb.write_config("[serve]\napi_keys = [\"right-key-0123456789\"]\n");
    sb.run(&["migrate"]).await.ok();
    let grant = sb.seed(EmulatedProvider::Claude);
    let file = sb.write_import(
        "a.json",
        &json!([entry(
            "c",
            "anthropic",
            grant.refresh_token.expose(),
            now() - 60
        )]),
    );
    sb.run(&["accounts", "import", &file]).await.ok();
    let mut served = sb.serve(&["--no-worker"]).await;
    let url = &served.url;
    let client = http();
    let token_url = format!("{url}/v1/accounts/1/access-token");

    let none = client.get(&token_url).send().await.unwrap();
    assert_eq!(none.status(), 401);
    let wrong = client
        .get(&token_url)
        .bearer_auth("wrong-key")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let body: serde_json::Value = wrong.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": {"code": "unauthorized", "message": "unauthorized"}})
    );
    assert_eq!(
        sb.emulator.stats().refreshes,
        0,
        "a refused request refreshes nothing"
    );

    let right = client
        .get(&token_url)
        .bearer_auth("right-key-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    let body: serde_json::Value = right.json().await.unwrap();
    assert!(
        body["access_token"]
            .as_str()
            .unwrap()
            .starts_with("sk-ant-")
    );
    assert!(body["expires_at"].as_i64().unwrap() > now());
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(sb.emulator.stats().refreshes, 1);

    let missing = client
        .get(format!("{url}/v1/accounts/424242/access-token"))
        .bearer_auth("right-key-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "account_not_found");
    let missing = client
        .get(format!("{url}/v1/accounts/424242"))
        .bearer_auth("right-key-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let list = client
        .get(format!("{url}/v1/accounts"))
        .bearer_auth("right-key-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
    let text = list.text().await.unwrap();
    assert_no_secret(&sb.emulator, &text, "GET /v1/accounts");
    assert!(!text.contains("at-initial"), "{text}");
    let list: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(list["accounts"][0]["credentials_version"], 1);
    let one = client
        .get(format!("{url}/v1/accounts/1"))
        .bearer_auth("right-key-0123456789")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_no_secret(&sb.emulator, &one, "GET /v1/accounts/1");

    let refresh = client
        .post(format!("{url}/v1/accounts/1/refresh?force=true"))
        .bearer_auth("right-key-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(refresh.status(), 200);
    let body: serde_json::Value = refresh.json().await.unwrap();
    assert_eq!(body["outcome"], "refreshed");
    assert_eq!(body["account"]["credentials_version"], 2);

    assert_eq!(
        client
            .get(format!("{url}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let ready = client.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    // The upstream refuses: 502 with the kind, no detail from the body.
    sb.emulator.revoke(refresh_providers::emulator::GrantId(1));
    let rejected = client
        .post(format!("{url}/v1/accounts/1/refresh?force=true"))
        .bearer_auth("right-key-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(rejected.status(), 502);
    let body: serde_json::Value = rejected.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_rejected");

    served.signal("-TERM");
    assert!(served.wait().await.success(), "{}", served.logs());
    assert_no_secret(&sb.emulator, &served.logs(), "the serve log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_to_start_without_keys_unless_insecure_loopback() {
    let sb = Sandbox::new().await;
    sb.write_config("");
    sb.run(&["migrate"]).await.ok();
    let out = sb.run(&["serve", "--listen", "127.0.0.1:0"]).await;
    assert_eq!(out.code(), 2, "{out:?}");
    assert!(out.stderr.contains("serve needs API keys"), "{out:?}");
    let out = sb
        .run(&["serve", "--listen", "0.0.0.0:0", "--insecure-loopback"])
        .await;
    assert_eq!(out.code(), 2, "{out:?}");
    assert!(out.stderr.contains("loopback"), "{out:?}");
    let mut served = sb.serve(&["--insecure-loopback", "--no-worker"]).await;
    let listed = http()
        .get(format!("{}/v1/accounts", served.url))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    served.signal("-TERM");
    let status = served.wait().await;
    assert!(status.success(), "{status:?} {}", served.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn warm_token_reads_touch_no_store_and_metrics_parse_and_move() {
    let sb = Sandbox::new().await;
    sb.write_config("[serve]\napi_keys = [\"key-0123456789abcdef\"]\n");
    sb.run(&["migrate"]).await.ok();
    let grant = sb.seed(EmulatedProvider::OpenAi);
    let file = sb.write_import(
        "a.json",
        &json!([entry(
            "o",
            "openai",
            grant.refresh_token.expose(),
            now() - 60
        )]),
    );
    sb.run(&["accounts", "import", &file]).await.ok();
    let mut served = sb.serve(&["--no-worker"]).await;
    let url = served.url.clone();
    let client = http();
    let before = scrape(&url).await;
    assert_eq!(
        metric(
            &before,
            "oauth_refresh_refreshes_total",
            &[("outcome", "refreshed")]
        ),
        0.0
    );
    // Cold read: one refresh, counted.
    let first: serde_json::Value = client
        .get(format!("{url}/v1/accounts/1/access-token"))
        .bearer_auth("key-0123456789abcdef")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let after = scrape(&url).await;
    assert_eq!(
        metric(
            &after,
            "oauth_refresh_refreshes_total",
            &[("outcome", "refreshed"), ("platform", "openai")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &after,
            "oauth_refresh_upstream_requests_total",
            &[("outcome", "ok"), ("platform", "openai")]
        ),
        1.0
    );
    assert_eq!(
        metric(&after, "oauth_refresh_upstream_latency_seconds_count", &[]),
        1.0
    );
    assert_eq!(
        metric(&after, "oauth_refresh_accounts", &[("status", "active")]),
        1.0
    );
    assert_eq!(
        metric(
            &after,
            "oauth_refresh_lock_acquisitions_total",
            &[("layer", "database")]
        ),
        1.0
    );
    let store = |s: &[Sample], store: &str| {
        metric(s, "oauth_refresh_store_calls_total", &[("store", store)])
    };
    let hits = |s: &[Sample]| {
        metric(
            s,
            "oauth_refresh_cache_lookups_total",
            &[("layer", "process"), ("result", "hit")],
        )
    };
    let (db_before, hits_before) = (store(&after, "database"), hits(&after));
    assert!(db_before >= 1.0, "the cold read read the database");
    // 200 warm reads: the same token, no database call, 200 local hits.
    for _ in 0..200 {
        let warm: serde_json::Value = client
            .get(format!("{url}/v1/accounts/1/access-token"))
            .bearer_auth("key-0123456789abcdef")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(warm["access_token"], first["access_token"]);
    }
    let warm = scrape(&url).await;
    assert_eq!(
        store(&warm, "database"),
        db_before,
        "a warm read touched the database"
    );
    assert_eq!(store(&warm, "redis"), 0.0);
    assert_eq!(hits(&warm) - hits_before, 200.0);
    assert_eq!(sb.emulator.stats().refreshes, 1);
    for sample in &warm {
        for (_, value) in &sample.labels {
            assert!(
                !value.contains("sk-") && value != "o",
                "label {value} in {sample:?}"
            );
        }
    }
    served.signal("-TERM");
    assert!(served.wait().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_during_a_refresh_persists_it_before_exit() {
    let sb = Sandbox::new().await;
    sb.write_config("[serve]\napi_keys = [\"key-0123456789abcdef\"]\n");
    sb.run(&["migrate"]).await.ok();
    let grant = sb.seed(EmulatedProvider::Claude);
    let file = sb.write_import(
        "a.json",
        &json!([entry(
            "c",
            "anthropic",
            grant.refresh_token.expose(),
            now() - 60
        )]),
    );
    sb.run(&["accounts", "import", &file]).await.ok();
    let mut served = sb.serve(&["--no-worker"]).await;
    // The emulator rotates the grant on arrival and answers 3 s later: a
    // process that exits before the answer loses the rotation.
    sb.emulator
        .set_latency(Latency::fixed(Duration::from_secs(3)));
    // The caller gives up long before the upstream answers: the refresh
    // goes on, detached.
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let gave_up = impatient
        .get(format!("{}/v1/accounts/1/access-token", served.url))
        .bearer_auth("key-0123456789abcdef")
        .send()
        .await;
    assert!(gave_up.is_err(), "the client timed out");
    let emulator = &sb.emulator;
    eventually(
        "the token request reached the upstream",
        Duration::from_secs(30),
        || async { emulator.stats().requests(paths::CLAUDE_TOKEN) >= 1 },
    )
    .await;
    served.signal("-TERM");
    let status = served.wait().await;
    assert!(status.success(), "{status:?}: {}", served.logs());
    let logs = served.logs();
    assert!(
        logs.contains("refreshes in flight persisted") && logs.contains("waited_for=1"),
        "the shutdown waited for the refresh in flight: {logs}"
    );
    assert_eq!(emulator.stats().refreshes, 1);
    // Persisted: version 1, and `token` serves the new token with no new call.
    sb.emulator.set_latency(Latency::default());
    let show = sb.run(&["accounts", "show", "1", "--json"]).await.json();
    assert_eq!(show["credentials_version"], 1, "{show}");
    let token = sb.run(&["token", "1"]).await;
    token.ok();
    assert!(token.stdout.trim().starts_with("sk-ant-"));
    let stats = sb.emulator.stats();
    assert_eq!(stats.refreshes, 1);
    assert_eq!(stats.reuse_attempts, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_refreshes_due_accounts_logs_its_cycles_and_stops_on_sigterm() {
    let sb = Sandbox::new().await;
    sb.write_config("[background]\ninterval = \"1h\"\nwindow = \"30m\"\n");
    sb.run(&["migrate"]).await.ok();
    let due = sb.seed(EmulatedProvider::Claude);
    let fresh = sb.seed(EmulatedProvider::OpenAi);
    let file = sb.write_import(
        "a.json",
        &json!([
            entry("due", "anthropic", due.refresh_token.expose(), now() + 600),
            entry(
                "fresh",
                "openai",
                fresh.refresh_token.expose(),
                now() + 7200
            ),
        ]),
    );
    sb.run(&["accounts", "import", &file]).await.ok();
    let once = sb.run(&["run", "--once"]).await;
    once.ok();
    assert!(once.stdout.contains("refreshed 1"), "{once:?}");
    assert_eq!(sb.emulator.stats().refreshes, 1);

    // `run` as a service: the cycle report is logged; SIGTERM stops it.
    let log = sb.path().join("run.log");
    let mut cmd = sb.command(&["run"]);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut child = cmd.spawn().unwrap();
    eventually(
        "a cycle report is logged",
        Duration::from_secs(30),
        || async {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("background cycle")
        },
    )
    .await;
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("run stopped")
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("listed=") && text.contains("refreshed="),
        "{text}"
    );
    assert_no_secret(&sb.emulator, &text, "the run log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn demo_reports_one_refresh_per_expiry_as_json() {
    let sb = Sandbox::new().await;
    let out = sb
        .run(&[
            "demo",
            "--json",
            "--accounts",
            "4",
            "--callers",
            "16",
            "--instances",
            "3",
            "--rounds",
            "2",
            "--latency-ms",
            "20",
        ])
        .await;
    out.ok();
    let report = out.json();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["expiries"], 8);
    assert_eq!(report["upstream_refreshes"], 8);
    assert_eq!(report["reuse_attempts"], 0);
    assert_eq!(report["revoked_grants"], 0);
    assert_eq!(report["callers"], 2 * 4 * 3 * 16);
    assert_eq!(report["callers_served_a_stale_token"], 0);
    for (_, n) in report["refreshes_per_account"].as_object().unwrap() {
        assert_eq!(n, 2);
    }
    assert!(
        report["latency_ms"]["p99"].as_f64().unwrap()
            >= report["latency_ms"]["p50"].as_f64().unwrap()
    );
}
