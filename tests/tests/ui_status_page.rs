//! The operator status page in headless Chromium (Debian's `chromium` and
//! `chromium-driver`) against a real `oauth-refresh serve` on SQLite with
//! the OAuth emulator: log in, the accounts table, the status filter, an
//! account's page, "refresh now" and its event, logout; "re-login" through
//! the emulator's authorize endpoint (an identity change refused unless
//! allowed); a wrong key, POSTs without the CSRF token, and an account
//! named `<script>` shown as text. Every page visited is scanned for token
//! values, PKCE verifiers and authorization codes; each test saves PNG
//! screenshots under `<CARGO_TARGET_TMPDIR>/ui/<test>/`.

mod ui_support;

use std::time::Duration;

use fantoccini::Locator;
use refresh_facade::providers::emulator::{EmulatedProvider, GrantSpec};
use ui_support::{ALICE, KEY, SCRIPT_NAME, Stage, eventually};

/// The names in the accounts table's rows, in order.
async fn row_names(stage: &Stage) -> Vec<String> {
    let mut names = Vec::new();
    for row in stage
        .browser()
        .find_all(Locator::Css("table tbody tr td:first-child a"))
        .await
        .expect("rows")
    {
        names.push(row.text().await.expect("text"));
    }
    names
}

/// Waits (bounded) until the browser is on a page whose path and query
/// contain `part`.
async fn arrived(stage: &Stage, part: &str) {
    eventually(part, Duration::from_secs(10), || async {
        let url = stage.browser().current_url().await.expect("url");
        let here = format!("{}?{}", url.path(), url.query().unwrap_or_default());
        here.contains(part)
    })
    .await;
}

async fn click(stage: &Stage, css: &str) {
    stage
        .browser()
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .expect("click");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn an_operator_logs_in_filters_opens_an_account_refreshes_it_and_logs_out() {
    let stage = Stage::new("operator_journey").await;
    let b = stage.browser();

    // Not logged in: every page leads to the login form.
    stage.visit("/accounts").await;
    assert_eq!(stage.path().await, "/login");
    stage.screenshot("01-login").await;

    stage.log_in(KEY).await;
    assert_eq!(stage.path().await, "/");
    let overview = stage.scan_page().await;
    assert!(overview.contains("Accounts by status"), "{overview}");

    // The accounts table lists the imported accounts.
    stage.visit("/accounts").await;
    let names = row_names(&stage).await;
    assert_eq!(
        names,
        ["team-claude", "team-openai", "broken-account", SCRIPT_NAME],
        "the imported accounts, by id"
    );
    // The embedded script runs under the CSP and keeps "expires" relative.
    eventually("app.js ran", Duration::from_secs(10), || async {
        b.find(Locator::Css("html[data-rel-updated]")).await.is_ok()
    })
    .await;
    let expires = b
        .find(Locator::Css("tr[data-account='2'] time[data-rel]"))
        .await
        .expect("team-openai's expiry")
        .text()
        .await
        .unwrap();
    assert!(expires.starts_with("in "), "{expires}");
    stage.screenshot("02-accounts").await;

    // Phone width: the page itself does not scroll sideways (the table
    // scrolls inside its own box).
    b.set_window_size(390, 844).await.expect("resize");
    stage.visit("/accounts").await;
    let fits = b
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth",
            Vec::new(),
        )
        .await
        .expect("measure");
    assert_eq!(
        fits,
        serde_json::Value::Bool(true),
        "no sideways scroll at 390 px"
    );
    stage.screenshot("02-accounts-phone").await;
    b.set_window_size(1280, 900).await.expect("resize");

    // Filter by status.
    b.find(Locator::Css("select[name=status]"))
        .await
        .unwrap()
        .select_by_value("error")
        .await
        .unwrap();
    click(&stage, "form.filters button[type=submit]").await;
    arrived(&stage, "status=error").await;
    stage.scan_page().await;
    assert_eq!(row_names(&stage).await, ["broken-account"]);
    let url = b.current_url().await.unwrap();
    assert!(
        url.query().unwrap_or_default().contains("status=error"),
        "{url}"
    );
    stage.screenshot("03-filtered").await;

    // Open an account: no event yet.
    stage.visit("/accounts").await;
    b.find(Locator::LinkText("team-claude"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    arrived(&stage, "/accounts/1").await;
    let page = stage.scan_page().await;
    assert!(page.contains("No refresh recorded yet."), "{page}");
    assert_eq!(stage.emulator.stats().refreshes, 0);

    // Refresh now: one upstream refresh, and its event on the page.
    click(&stage, "form[action='/accounts/1/refresh'] button").await;
    arrived(&stage, "notice=").await;
    let page = stage.scan_page().await;
    assert!(
        page.contains("Refreshed: new credentials are stored."),
        "{page}"
    );
    assert_eq!(stage.emulator.stats().refreshes, 1);
    let cells = b
        .find_all(Locator::Css("#event-table tbody tr td"))
        .await
        .unwrap();
    let mut texts = Vec::new();
    for cell in &cells {
        texts.push(cell.text().await.unwrap());
    }
    assert_eq!(texts.len(), 5, "one event row: {texts:?}");
    assert_eq!(texts[1], "refreshed");
    assert_eq!(texts[3], "database", "the lease layer of a SQLite stack");
    assert_eq!(texts[4], "1", "one upstream request");
    let version = b
        .find(Locator::XPath(
            "//dt[.='Credentials version']/following-sibling::dd[1]",
        ))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(version, "1");
    stage.screenshot("04-refreshed").await;

    // The overview counts it.
    stage.visit("/").await;
    let chart = b
        .find(Locator::Css("svg.chart"))
        .await
        .unwrap()
        .attr("aria-label")
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(chart.contains(": 1 in all"), "{chart}");
    stage.screenshot("05-overview").await;

    // Log out: the pages lead to the login form again.
    click(&stage, "form[action='/logout'] button").await;
    arrived(&stage, "/login").await;
    stage.scan_page().await;
    stage.visit("/accounts/1").await;
    assert_eq!(stage.path().await, "/login");
    stage.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn a_wrong_key_is_refused() {
    let stage = Stage::new("wrong_key").await;
    stage.log_in("not-the-key").await;
    assert_eq!(stage.path().await, "/login");
    let page = stage.scan_page().await;
    assert!(page.contains("That key is not accepted."), "{page}");
    stage.screenshot("refused").await;
    assert!(
        stage
            .browser()
            .get_named_cookie("oauth_refresh_session")
            .await
            .is_err(),
        "no session cookie"
    );
    stage.visit("/").await;
    assert_eq!(stage.path().await, "/login", "still logged out");
    stage.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn a_post_without_the_csrf_token_is_refused() {
    let stage = Stage::new("csrf").await;
    stage.log_in(KEY).await;
    let session = stage
        .browser()
        .get_named_cookie("oauth_refresh_session")
        .await
        .expect("a session cookie");
    assert_eq!(session.http_only(), Some(true));
    assert_eq!(
        session.same_site().map(|s| s.to_string()),
        Some("Strict".to_owned())
    );
    let cookie = format!("oauth_refresh_session={}", session.value());
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for (path, body) in ["refresh", "relogin", "relogin/complete"]
        .into_iter()
        .flat_map(|path| {
            [
                "",
                "csrf=",
                "csrf=0000000000000000000000000000000000000000000000000000000000000000",
                "csrf=0000000000000000000000000000000000000000000000000000000000000000&session_id=x&pasted=y",
            ]
            .map(|body| (path, body))
        })
    {
        let response = http
            .post(format!("{}/accounts/1/{path}", stage.url))
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{path} body {body:?}");
        let headers = response.headers().clone();
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["referrer-policy"], "no-referrer");
        let text = response.text().await.unwrap();
        stage.assert_no_secret(&text, "the refusal");
        assert!(
            text.contains("security token is missing or wrong"),
            "{text}"
        );
    }
    // Behind a TLS proxy the cookies are `Secure`.
    let form = http
        .get(format!("{}/login", stage.url))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    let timing = form.headers()["server-timing"].to_str().unwrap().to_owned();
    assert!(timing.starts_with("app;dur="), "{timing}");
    let set = form.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set.ends_with("; Secure"), "{set}");
    let token = set
        .split(';')
        .next()
        .and_then(|c| c.split_once('='))
        .map(|(_, v)| v.to_owned())
        .unwrap();
    let login = http
        .post(format!("{}/login", stage.url))
        .header("x-forwarded-proto", "https")
        .header("cookie", format!("oauth_refresh_login={token}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={token}&key={KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303);
    let session_cookie = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("oauth_refresh_session="))
        .expect("a session cookie");
    assert!(
        session_cookie.contains("HttpOnly")
            && session_cookie.contains("SameSite=Strict")
            && session_cookie.ends_with("; Secure"),
        "{session_cookie}"
    );

    // Logout without the token is refused too: the session stays.
    let response = http
        .post(format!("{}/logout", stage.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(stage.emulator.stats().refreshes, 0, "nothing was refreshed");
    let logins = stage.emulator.login_stats();
    assert_eq!(
        (logins.exchanges, stage.verifiers().len()),
        (0, 0),
        "no login was completed"
    );

    // The account page shows no event; the browser's own form still works.
    stage.visit("/accounts/1").await;
    assert!(stage.scan_page().await.contains("No refresh recorded yet."));
    stage.screenshot("no-event").await;
    click(&stage, "form[action='/accounts/1/refresh'] button").await;
    arrived(&stage, "notice=refreshed").await;
    assert!(stage.scan_page().await.contains("Refreshed"));
    assert_eq!(stage.emulator.stats().refreshes, 1);
    stage.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn an_account_named_script_shows_as_text() {
    let stage = Stage::new("script_name").await;
    stage.log_in(KEY).await;
    let source = stage.visit("/accounts").await;
    assert!(
        !source.contains(SCRIPT_NAME),
        "the name is escaped in the markup"
    );
    assert!(source.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    let link = stage
        .browser()
        .find(Locator::Css("tr[data-account='4'] td a"))
        .await
        .expect("the row");
    assert_eq!(link.text().await.unwrap(), SCRIPT_NAME, "shown as text");
    assert!(
        stage.browser().get_alert_text().await.is_err(),
        "no alert opened"
    );
    link.click().await.unwrap();
    stage.scan_page().await;
    let title = stage
        .browser()
        .find(Locator::Css("main h1"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(title, SCRIPT_NAME);
    assert!(stage.browser().get_alert_text().await.is_err());
    stage.screenshot("script-name").await;
    stage.finish().await;
}

/// The text of the account page's "Credentials version".
async fn credentials_version(stage: &Stage) -> String {
    stage
        .browser()
        .find(Locator::XPath(
            "//dt[.='Credentials version']/following-sibling::dd[1]",
        ))
        .await
        .expect("the version")
        .text()
        .await
        .expect("text")
}

/// On a re-login page: follows its authorize link like a browser (the
/// emulator's authorize endpoint, which redirects to the provider's code
/// page), pastes what Claude's code page shows (`code#state`), ticks
/// "allow identity change" when `allow`, and submits. The code joins the
/// values no page may show.
async fn paste_code(stage: &Stage, allow: bool) {
    let b = stage.browser();
    let link = b
        .find(Locator::Css("a#authorize"))
        .await
        .expect("the authorize link");
    assert_eq!(
        link.attr("target").await.unwrap().as_deref(),
        Some("_blank")
    );
    let rel = link.attr("rel").await.unwrap().unwrap_or_default();
    assert!(
        rel.contains("noopener") && rel.contains("noreferrer"),
        "{rel}"
    );
    let href = link.attr("href").await.unwrap().expect("href");
    let authorize = url::Url::parse(&href).expect("an absolute URL");
    assert!(
        href.starts_with(&stage.emulator.url()),
        "the emulator's authorize endpoint: {href}"
    );
    let params: Vec<String> = authorize
        .query_pairs()
        .map(|(k, _)| k.into_owned())
        .collect();
    for needed in ["state", "code_challenge", "code_challenge_method"] {
        assert!(params.iter().any(|k| k == needed), "{needed}: {href}");
    }
    assert!(!params.iter().any(|k| k == "code_verifier"), "{href}");
    let answer = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap()
        .get(&href)
        .send()
        .await
        .expect("authorize");
    assert_eq!(
        answer.status(),
        302,
        "authorize answered {}",
        answer.status()
    );
    let location = url::Url::parse(answer.headers()["location"].to_str().unwrap()).unwrap();
    let q: std::collections::HashMap<String, String> =
        location.query_pairs().into_owned().collect();
    stage.forbid(&q["code"]);
    let paste = format!("{}#{}", q["code"], q["state"]);
    b.find(Locator::Css("form.relogin input[name=pasted]"))
        .await
        .expect("the paste field")
        .send_keys(&paste)
        .await
        .expect("paste");
    if allow {
        click(stage, "form.relogin input[name=allow_identity_change]").await;
    }
    click(stage, "form.relogin button[type=submit]").await;
}

fn claude_user(email: &str) -> GrantSpec {
    GrantSpec {
        provider: Some(EmulatedProvider::Claude),
        email: Some(email.to_owned()),
        ..GrantSpec::default()
    }
}

/// Re-login from the account page, three times: as the same upstream user
/// (the credentials version bumps, the new grant refreshes), as another
/// one without "allow identity change" (refused, nothing replaced), and as
/// that one with it ticked (replaced; it is the account's identity now).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn an_operator_relogs_in_an_account_through_the_emulator() {
    let stage = Stage::new("relogin").await;
    stage.log_in(KEY).await;
    stage.visit("/accounts/1").await;
    assert_eq!(credentials_version(&stage).await, "0");

    // As the same user.
    stage.emulator.queue_login(claude_user(ALICE));
    click(&stage, "form[action='/accounts/1/relogin'] button").await;
    arrived(&stage, "/accounts/1/relogin").await;
    let page = stage.scan_page().await;
    assert!(page.contains("Re-login: team-claude"), "{page}");
    stage.screenshot("01-relogin-form").await;
    paste_code(&stage, false).await;
    arrived(&stage, "notice=relogged_in").await;
    let page = stage.scan_page().await;
    assert!(page.contains("Re-logged in"), "{page}");
    assert_eq!(credentials_version(&stage).await, "1", "a credential write");
    assert_eq!(stage.emulator.login_stats().exchanges, 1);
    stage.screenshot("02-relogged-in").await;
    // The new grant refreshes.
    click(&stage, "form[action='/accounts/1/refresh'] button").await;
    arrived(&stage, "notice=refreshed").await;
    stage.scan_page().await;
    assert_eq!(credentials_version(&stage).await, "2");

    // As someone else, not allowed: refused with its code, nothing replaced.
    stage.emulator.queue_login(claude_user("bob@example.com"));
    click(&stage, "form[action='/accounts/1/relogin'] button").await;
    arrived(&stage, "/accounts/1/relogin").await;
    stage.scan_page().await;
    paste_code(&stage, false).await;
    eventually("the refusal", Duration::from_secs(10), || async {
        stage
            .browser()
            .find(Locator::Css("p.notice.bad"))
            .await
            .is_ok()
    })
    .await;
    let page = stage.scan_page().await;
    assert!(page.contains("identity_changed"), "{page}");
    assert!(!page.contains("bob@"), "no identity value: {page}");
    stage.screenshot("03-identity-refused").await;

    // Start again, allowing it.
    stage.emulator.queue_login(claude_user("bob@example.com"));
    click(&stage, "form[action='/accounts/1/relogin'] button").await;
    eventually("a new re-login form", Duration::from_secs(10), || async {
        stage
            .browser()
            .find(Locator::Css("form.relogin"))
            .await
            .is_ok()
    })
    .await;
    stage.scan_page().await;
    paste_code(&stage, true).await;
    arrived(&stage, "notice=relogged_in_warnings").await;
    stage.scan_page().await;
    assert_eq!(credentials_version(&stage).await, "3");
    assert_eq!(stage.emulator.login_stats().exchanges, 3);
    stage.screenshot("04-identity-changed").await;
    stage.finish().await;
}

/// A re-login session is bound to the account it was begun on: completing
/// it on another account's page, or as a new account over the JSON API,
/// is refused (and uses it up) before anything is sent to the provider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs services: cargo xtask test"]
async fn a_relogin_session_completes_only_for_its_account() {
    let stage = Stage::new("relogin-bound").await;
    stage.log_in(KEY).await;
    let cookie = stage
        .browser()
        .get_named_cookie("oauth_refresh_session")
        .await
        .expect("a session cookie");
    let cookie = format!("oauth_refresh_session={}", cookie.value());
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    let hidden = |name: &'static str| {
        let b = stage.browser().clone();
        async move {
            b.find(Locator::Css(&format!("form.relogin input[name={name}]")))
                .await
                .expect("a hidden field")
                .attr("value")
                .await
                .unwrap()
                .expect("a value")
        }
    };

    // Begun on account 1, completed on account 2's page.
    stage.visit("/accounts/1").await;
    click(&stage, "form[action='/accounts/1/relogin'] button").await;
    arrived(&stage, "/accounts/1/relogin").await;
    stage.scan_page().await;
    let (csrf, session) = (hidden("csrf").await, hidden("session_id").await);
    let response = http
        .post(format!("{}/accounts/2/relogin/complete", stage.url))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "csrf={csrf}&session_id={session}&pasted=code%23state"
        ))
        .send()
        .await
        .unwrap();
    let text = response.text().await.unwrap();
    stage.assert_no_secret(&text, "the mismatch page");
    assert!(text.contains("login_session_mismatch"), "{text}");
    // Used up: account 1 cannot complete it either now.
    let response = http
        .post(format!("{}/accounts/1/relogin/complete", stage.url))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "csrf={csrf}&session_id={session}&pasted=code%23state"
        ))
        .send()
        .await
        .unwrap();
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("login_session_gone"),
        "single use"
    );

    // Begun on account 1, completed as a new account over the API.
    stage.visit("/accounts/1").await;
    click(&stage, "form[action='/accounts/1/relogin'] button").await;
    arrived(&stage, "/accounts/1/relogin").await;
    stage.scan_page().await;
    let session = hidden("session_id").await;
    let response = http
        .post(format!("{}/v1/logins/{session}/complete", stage.url))
        .bearer_auth(KEY)
        .json(&serde_json::json!({"pasted": "code#state"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 409);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "login_session_mismatch", "{body}");

    assert_eq!(
        stage.emulator.login_stats().exchanges,
        0,
        "nothing was sent to the provider"
    );
    stage.finish().await;
}
