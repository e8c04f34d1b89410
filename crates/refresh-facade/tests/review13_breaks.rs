//! Hostile review of issue 13 (the operator status page): plain HTTP
//! against a real `serve` subprocess on SQLite with the OAuth emulator.
//! Tests named for a break fail on the reviewed code; the others pin down
//! what held.

mod common;

use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, COOKIE, HeaderMap, LOCATION, SET_COOKIE};
use serde_json::Value;

const KEY: &str = "review13-key-0123456789";
const OTHER_KEY: &str = "review13-other-key-0123456789";
const FORM: &str = "application/x-www-form-urlencoded";

async fn sandbox(extra: &str) -> Sandbox {
    let sb = Sandbox::new().await;
    let text = format!(
        "[serve]\napi_keys = [\"{KEY}\", \"{OTHER_KEY}\"]\n{extra}\n[providers]\nbase_url = \"{}\"\n",
        sb.emulator.url()
    );
    std::fs::write(sb.path().join("oauth-refresh.toml"), text).expect("write config");
    sb.run(&["migrate"]).await.ok();
    sb
}

async fn import(sb: &Sandbox, entries: Vec<Value>) {
    let file = sb.write_import("import.json", &Value::Array(entries));
    sb.run(&["accounts", "import", &file]).await.ok();
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// The value `name` is set to by a response's `Set-Cookie` headers, and the
/// whole header.
fn set_cookie(headers: &HeaderMap, name: &str) -> Option<(String, String)> {
    headers.get_all(SET_COOKIE).iter().find_map(|v| {
        let text = v.to_str().ok()?;
        let value = text.strip_prefix(&format!("{name}="))?.split(';').next()?;
        Some((value.to_owned(), text.to_owned()))
    })
}

/// The first `name="csrf" value="…"` of a page.
fn csrf_in(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..].split('"').next().expect("value").to_owned()
}

/// A logged-in session: its cookie value and CSRF token.
struct Session {
    cookie: String,
    csrf: String,
    set_cookie: String,
}

async fn log_in_with(url: &str, key: &str, extra: &[(&str, &str)]) -> reqwest::Response {
    let c = browser();
    let mut get = c.get(format!("{url}/login"));
    for (k, v) in extra {
        get = get.header(*k, *v);
    }
    let page = get.send().await.expect("login page");
    let (token, _) = set_cookie(page.headers(), "oauth_refresh_login").expect("login cookie");
    let body = page.text().await.unwrap();
    let form_token = csrf_in(&body);
    assert_eq!(form_token, token);
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("csrf", &form_token)
        .append_pair("key", key)
        .finish();
    let mut post = c
        .post(format!("{url}/login"))
        .header(CONTENT_TYPE, FORM)
        .header(COOKIE, format!("oauth_refresh_login={token}"))
        .body(form);
    for (k, v) in extra {
        post = post.header(*k, *v);
    }
    post.send().await.expect("login")
}

async fn log_in(url: &str) -> Session {
    let answer = log_in_with(url, KEY, &[]).await;
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    let (cookie, set_cookie) =
        set_cookie(answer.headers(), "oauth_refresh_session").expect("session cookie");
    let page = get(url, "/accounts", &cookie).await;
    assert_eq!(page.status(), StatusCode::OK);
    let csrf = csrf_in(&page.text().await.unwrap());
    Session {
        cookie,
        csrf,
        set_cookie,
    }
}

async fn get(url: &str, path: &str, cookie: &str) -> reqwest::Response {
    browser()
        .get(format!("{url}{path}"))
        .header(COOKIE, format!("oauth_refresh_session={cookie}"))
        .send()
        .await
        .expect("get")
}

async fn post(url: &str, path: &str, cookie: &str, form: &str) -> reqwest::Response {
    browser()
        .post(format!("{url}{path}"))
        .header(CONTENT_TYPE, FORM)
        .header(COOKIE, format!("oauth_refresh_session={cookie}"))
        .body(form.to_owned())
        .send()
        .await
        .expect("post")
}

fn to_login(answer: &reqwest::Response) -> bool {
    answer.status().is_redirection()
        && answer.headers().get(LOCATION).and_then(|v| v.to_str().ok()) == Some("/login")
}

fn assert_security_headers(headers: &HeaderMap, what: &str) {
    let csp = headers
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("{what}: no Content-Security-Policy"));
    assert!(csp.contains("default-src 'none'"), "{what}: {csp}");
    assert_eq!(
        headers.get("x-content-type-options").map(|v| v.as_bytes()),
        Some(&b"nosniff"[..]),
        "{what}: X-Content-Type-Options"
    );
    assert!(
        headers.get("referrer-policy").is_some(),
        "{what}: Referrer-Policy"
    );
}

// ---------------------------------------------------------------- breaks

/// BREAK: logout only asks the browser to drop the cookie; a copy taken
/// before (a shared machine, a proxy log, malware) stays a full operator
/// session for the rest of `session_ttl` (8 h by default), including
/// "refresh now" with the CSRF token printed on every page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_cookie_replayed_after_logout_is_refused() {
    let sb = sandbox("").await;
    let served = sb.serve(&["--no-worker"]).await;
    let s = log_in(&served.url).await;
    let out = post(
        &served.url,
        "/logout",
        &s.cookie,
        &format!("csrf={}", s.csrf),
    )
    .await;
    assert!(to_login(&out), "logout answered {}", out.status());
    let (cleared, _) = set_cookie(out.headers(), "oauth_refresh_session").expect("cleared");
    assert!(cleared.is_empty());
    let replay = get(&served.url, "/accounts", &s.cookie).await;
    assert!(
        to_login(&replay),
        "the logged-out session still opens /accounts ({})",
        replay.status()
    );
}

/// BREAK: with `sort=expiry`, the platform filter is applied after the
/// page is read, so a page of other platforms' accounts shows "0 accounts
/// on this page" although matching accounts exist (on a 10 000-account
/// installation: hundreds of empty pages before the first match).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_expiry_order_filtered_by_platform_shows_the_matching_accounts_first() {
    let sb = sandbox("").await;
    let soon = now() + 3600;
    let mut entries: Vec<Value> = (0..60)
        .map(|i| {
            entry(
                &format!("claude-{i}"),
                "anthropic",
                &format!("rt-claude-{i}"),
                soon + i,
            )
        })
        .collect();
    entries.push(entry(
        "lone-openai",
        "openai",
        "rt-lone-openai",
        now() + 30 * 86_400,
    ));
    import(&sb, entries).await;
    let served = sb.serve(&["--no-worker"]).await;
    let s = log_in(&served.url).await;
    let page = get(
        &served.url,
        "/accounts?platform=openai&sort=expiry",
        &s.cookie,
    )
    .await;
    assert_eq!(page.status(), StatusCode::OK);
    let body = page.text().await.unwrap();
    assert!(
        body.contains("lone-openai"),
        "the only openai account is not on the first page of the openai filter"
    );
}

/// BREAK (low): the security headers are a `route_layer` of the page
/// routes, so an unknown path or a wrong method under the page's own
/// paths answers without Content-Security-Policy / nosniff /
/// Referrer-Policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_the_security_headers() {
    let sb = sandbox("").await;
    let served = sb.serve(&["--no-worker"]).await;
    let s = log_in(&served.url).await;
    let u = &served.url;
    let c = browser();
    // Held: pages, assets, login, the 404 page of an account.
    for path in [
        "/",
        "/accounts",
        "/accounts/424242",
        "/accounts/x",
        "/ui/style.css",
        "/ui/app.js",
    ] {
        let a = get(u, path, &s.cookie).await;
        assert_security_headers(a.headers(), path);
    }
    let a = c.get(format!("{u}/login")).send().await.unwrap();
    assert_security_headers(a.headers(), "/login");
    // The errors.
    let mut missing = Vec::new();
    for (path, status) in [
        ("/accounts/1/refresh", StatusCode::METHOD_NOT_ALLOWED),
        ("/no-such-page", StatusCode::NOT_FOUND),
        ("/accounts/1/extra", StatusCode::NOT_FOUND),
    ] {
        let a = get(u, path, &s.cookie).await;
        assert_eq!(a.status(), status, "{path}");
        if a.headers().get("content-security-policy").is_none()
            || a.headers().get("x-content-type-options").is_none()
        {
            missing.push(format!("GET {path} ({status})"));
        }
    }
    assert!(missing.is_empty(), "no security headers on {missing:?}");
}

// ---------------------------------------------------------------- held

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tampered_and_foreign_cookies_are_refused() {
    let sb = sandbox("").await;
    let served = sb.serve(&["--no-worker"]).await;
    let s = log_in(&served.url).await;
    let parts: Vec<&str> = s.cookie.split('.').collect();
    assert_eq!(parts.len(), 4, "{}", s.cookie);
    let later = format!("v1.{}.{}.{}", 4_000_000_000_i64, parts[2], parts[3]);
    let other_nonce = format!("v1.{}.{}.{}", parts[1], "0".repeat(32), parts[3]);
    let flipped = {
        let mut m = parts[3].to_owned();
        let last = if m.ends_with('0') { "1" } else { "0" };
        m.pop();
        format!("v1.{}.{}.{m}{last}", parts[1], parts[2])
    };
    let short_mac = format!("v1.{}.{}.{}", parts[1], parts[2], &parts[3][..10]);
    let empty_mac = format!("v1.{}.{}.", parts[1], parts[2]);
    let v2 = s.cookie.replacen("v1", "v2", 1);
    // The same cookie from a deployment with other keys.
    let foreign = {
        let sb2 = Sandbox::new().await;
        std::fs::write(
            sb2.path().join("oauth-refresh.toml"),
            format!(
                "[serve]\napi_keys = [\"another-deployment-key-0123\"]\n[providers]\nbase_url = \"{}\"\n",
                sb2.emulator.url()
            ),
        )
        .unwrap();
        sb2.run(&["migrate"]).await.ok();
        let served2 = sb2.serve(&["--no-worker"]).await;
        let answer = log_in_with(&served2.url, "another-deployment-key-0123", &[]).await;
        set_cookie(answer.headers(), "oauth_refresh_session")
            .unwrap()
            .0
    };
    for (what, cookie) in [
        ("later expiry", later.as_str()),
        ("other nonce", &other_nonce),
        ("flipped mac", &flipped),
        ("short mac", &short_mac),
        ("empty mac", &empty_mac),
        ("v2", &v2),
        ("foreign", &foreign),
        ("empty", ""),
        ("garbage", "%00%ff..."),
        ("huge", &"a".repeat(6000)),
    ] {
        let a = get(&served.url, "/accounts", cookie).await;
        assert!(to_login(&a), "{what}: {}", a.status());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_is_refused() {
    let sb = sandbox("[serve.ui]\nsession_ttl = \"2s\"").await;
    let served = sb.serve(&["--no-worker"]).await;
    let s = log_in(&served.url).await;
    assert!(s.set_cookie.contains("Max-Age=2"), "{}", s.set_cookie);
    let url = served.url.clone();
    let cookie = s.cookie.clone();
    eventually("the session expires", Duration::from_secs(20), || {
        let (url, cookie) = (url.clone(), cookie.clone());
        async move { to_login(&get(&url, "/accounts", &cookie).await) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_flags_and_secure_behind_tls() {
    let sb = sandbox("").await;
    let served = sb.serve(&["--no-worker"]).await;
    let plain = log_in(&served.url).await;
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(plain.set_cookie.contains(flag), "{}", plain.set_cookie);
    }
    assert!(!plain.set_cookie.contains("Secure"));
    let tls = log_in_with(&served.url, KEY, &[("x-forwarded-proto", "https")]).await;
    let (_, header) = set_cookie(tls.headers(), "oauth_refresh_session").unwrap();
    assert!(header.contains("; Secure"), "{header}");

    let sb = sandbox("[serve.ui]\nsecure_cookie = true").await;
    let served = sb.serve(&["--no-worker"]).await;
    let s = log_in(&served.url).await;
    assert!(s.set_cookie.contains("; Secure"), "{}", s.set_cookie);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_empty_partial_keys_and_missing_login_token_are_refused() {
    let sb = sandbox("").await;
    let served = sb.serve(&["--no-worker"]).await;
    let u = &served.url;
    for key in [
        "",
        "x",
        &KEY[..KEY.len() - 1],
        &format!("{KEY}x"),
        &KEY.to_uppercase(),
        "review13",
    ] {
        let a = log_in_with(u, key, &[]).await;
        assert_eq!(a.status(), StatusCode::UNAUTHORIZED, "{key:?}");
        assert!(set_cookie(a.headers(), "oauth_refresh_session").is_none());
    }
    // A login POST without the form's double-submit cookie (a foreign page).
    let a = browser()
        .post(format!("{u}/login"))
        .header(CONTENT_TYPE, FORM)
        .header("origin", "https://evil.example")
        .body(format!("csrf=abc&key={KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(a.status(), StatusCode::FORBIDDEN);
    assert!(set_cookie(a.headers(), "oauth_refresh_session").is_none());
    assert!(!served.logs().contains(KEY), "the key is logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csrf_is_checked_on_every_post() {
    let sb = sandbox("").await;
    import(
        &sb,
        vec![entry("csrf-target", "anthropic", "rt-csrf", now() + 86_400)],
    )
    .await;
    let served = sb.serve(&["--no-worker"]).await;
    let u = &served.url;
    let one = log_in(u).await;
    let two = log_in(u).await;
    assert_ne!(one.csrf, two.csrf);
    for (what, body) in [
        ("none", String::new()),
        ("empty", "csrf=".to_owned()),
        ("wrong", format!("csrf={}", "0".repeat(64))),
        ("another session's", format!("csrf={}", two.csrf)),
        ("prefix", format!("csrf={}", &one.csrf[..63])),
    ] {
        for path in ["/accounts/1/refresh", "/logout"] {
            let a = post(u, path, &one.cookie, &body).await;
            assert_eq!(a.status(), StatusCode::FORBIDDEN, "{what} on {path}");
        }
    }
    // Without a session: to the login page, nothing done.
    let a = browser()
        .post(format!("{u}/accounts/1/refresh"))
        .header(CONTENT_TYPE, FORM)
        .body(format!("csrf={}", one.csrf))
        .send()
        .await
        .unwrap();
    assert!(to_login(&a));
    assert!(
        !sb.emulator
            .issued_tokens()
            .iter()
            .any(|t| t.expose().contains("csrf-target"))
    );
    // GET does not refresh.
    let a = get(
        u,
        &format!("/accounts/1/refresh?csrf={}", one.csrf),
        &one.cookie,
    )
    .await;
    assert_eq!(a.status(), StatusCode::METHOD_NOT_ALLOWED);
    // The right token works.
    let a = post(
        u,
        "/accounts/1/refresh",
        &one.cookie,
        &format!("csrf={}", one.csrf),
    )
    .await;
    assert!(a.status().is_redirection(), "{}", a.status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markup_in_names_and_query_parameters_renders_as_text() {
    let sb = sandbox("").await;
    import(
        &sb,
        vec![entry(
            "<script>alert(1)</script>\"><img src=x onerror=alert(2)>",
            "anthropic",
            "rt-xss",
            now() + 86_400,
        )],
    )
    .await;
    let served = sb.serve(&["--no-worker"]).await;
    let s = log_in(&served.url).await;
    let listed = get(&served.url, "/accounts", &s.cookie)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        listed.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "the name shows as text"
    );
    for path in [
        "/accounts",
        "/accounts/1",
        "/accounts?platform=%3Cscript%3Ealert(3)%3C/script%3E",
        "/accounts?platform=x%22%3E%3Cscript%3Ealert(3)%3C/script%3E",
        "/accounts?status=%3Cscript%3Ealert(3)%3C/script%3E&sort=%3Cscript%3E",
        "/accounts?after=%22%3E%3Cscript%3Ealert(3)%3C/script%3E",
        "/accounts/1?notice=failed&stage=%3Cscript%3Ealert(3)%3C/script%3E",
        "/accounts/1?notice=%3Cscript%3Ealert(3)%3C/script%3E",
    ] {
        let a = get(&served.url, path, &s.cookie).await;
        let body = a.text().await.unwrap();
        if let Some(i) = body.find("<script>alert") {
            panic!(
                "{path}: {}",
                &body[i.saturating_sub(300)..(i + 100).min(body.len())]
            );
        }
        for bad in ["<img src=x", "<script>alert(3)"] {
            if let Some(i) = body.find(bad) {
                panic!(
                    "{path}: {}",
                    &body[i.saturating_sub(200)..(i + 100).min(body.len())]
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_key_or_proxy_password_on_any_page_or_in_the_logs() {
    let sb = sandbox("").await;
    let mut with_proxy = entry("proxied", "anthropic", "rt-secret-proxied", now() + 86_400);
    with_proxy["proxy"] = serde_json::json!("http://user:proxy-pass-secret@127.0.0.1:9");
    import(
        &sb,
        vec![
            entry("plain", "anthropic", "rt-secret-plain", now() - 60),
            with_proxy,
        ],
    )
    .await;
    let served = sb.serve(&["--no-worker"]).await;
    let s = log_in(&served.url).await;
    let _ = post(
        &served.url,
        "/accounts/1/refresh",
        &s.cookie,
        &format!("csrf={}", s.csrf),
    )
    .await;
    let mut seen = String::new();
    for path in [
        "/",
        "/accounts",
        "/accounts?sort=expiry",
        "/accounts/1",
        "/accounts/2",
        "/login",
    ] {
        let a = get(&served.url, path, &s.cookie).await;
        seen.push_str(&format!("{:?}", a.headers()));
        seen.push_str(&a.text().await.unwrap());
    }
    seen.push_str(&served.logs());
    for secret in [
        "rt-secret-plain",
        "rt-secret-proxied",
        "at-initial-plain",
        "at-initial-proxied",
        "proxy-pass-secret",
        KEY,
        OTHER_KEY,
    ] {
        assert!(!seen.contains(secret), "{secret} appears");
    }
    assert_no_secret(&sb.emulator, &seen, "the pages and logs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_cursors_and_huge_queries_answer_a_page() {
    let sb = sandbox("").await;
    import(
        &sb,
        vec![entry("one", "anthropic", "rt-one", now() + 86_400)],
    )
    .await;
    let served = sb.serve(&["--no-worker"]).await;
    let s = log_in(&served.url).await;
    let huge = format!("/accounts?platform={}", "a".repeat(7000));
    let many = format!("/accounts?{}", "status=active&".repeat(600));
    for path in [
        "/accounts?after=abc",
        "/accounts?after=-1",
        "/accounts?after=99999999999999999999999999",
        "/accounts?after=9223372036854775807",
        "/accounts?sort=expiry&after=abc_def",
        "/accounts?sort=expiry&after=99999999999999999999_1",
        "/accounts?sort=expiry&after=-9223372036854775808_-9223372036854775808",
        "/accounts?sort=expiry&after=none_-1",
        "/accounts?%ff%fe=%ff",
        "/accounts/99999999999999999999",
        "/accounts/-1",
        huge.as_str(),
        many.as_str(),
    ] {
        let a = get(&served.url, path, &s.cookie).await;
        assert!(
            !a.status().is_server_error(),
            "{} answered {}",
            &path[..path.len().min(80)],
            a.status()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_v1_api_is_unaffected_and_a_session_is_not_a_bearer() {
    let sb = sandbox("").await;
    import(
        &sb,
        vec![entry("api", "anthropic", "rt-api", now() + 86_400)],
    )
    .await;
    let served = sb.serve(&["--no-worker"]).await;
    let s = log_in(&served.url).await;
    let c = browser();
    let ok = c
        .get(format!("{}/v1/accounts", served.url))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let by_cookie = get(&served.url, "/v1/accounts/1/access-token", &s.cookie).await;
    assert_eq!(by_cookie.status(), StatusCode::UNAUTHORIZED);
    let by_cookie = post(&served.url, "/v1/accounts/1/refresh", &s.cookie, "").await;
    assert_eq!(by_cookie.status(), StatusCode::UNAUTHORIZED);
    // A session cookie value is not a Bearer either.
    let a = c
        .get(format!("{}/v1/accounts", served.url))
        .bearer_auth(&s.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(a.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_accounts_are_paged_not_loaded_whole() {
    let sb = sandbox("").await;
    let entries: Vec<Value> = (0..10_000)
        .map(|i| {
            entry(
                &format!("bulk-{i:05}"),
                "anthropic",
                &format!("rt-bulk-{i}"),
                now() + 3600 + i,
            )
        })
        .collect();
    import(&sb, entries).await;
    let served = sb.serve(&["--no-worker"]).await;
    let s = log_in(&served.url).await;
    for path in ["/accounts", "/accounts?sort=expiry"] {
        let body = get(&served.url, path, &s.cookie)
            .await
            .text()
            .await
            .unwrap();
        let rows = body.matches("<tr data-account=").count();
        assert_eq!(rows, 50, "{path}");
        assert!(body.contains("rel=\"next\""), "{path}");
        assert!(body.len() < 200_000, "{path}: {} bytes", body.len());
    }
    // Walking the expiry order through its cursor reaches later accounts
    // without repeats.
    let mut path = "/accounts?sort=expiry".to_owned();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..4 {
        let body = get(&served.url, &path, &s.cookie)
            .await
            .text()
            .await
            .unwrap();
        for part in body.split("<tr data-account=\"").skip(1) {
            let id = part.split('"').next().unwrap().to_owned();
            assert!(seen.insert(id), "a row repeats across pages");
        }
        let at = body.find("rel=\"next\"").expect("next");
        let href_start = body[..at].rfind("href=\"").unwrap() + 6;
        path = body[href_start..]
            .split('"')
            .next()
            .unwrap()
            .replace("&amp;", "&");
    }
    assert_eq!(seen.len(), 200);
}
