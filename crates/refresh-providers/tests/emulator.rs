//! The emulator on its own: rotation, reuse detection revoking the grant,
//! the real request checks and error shapes, Code Assist, every fault
//! kind, and the admin API over HTTP.

use std::time::Duration;

use refresh_providers::emulator::{
    EmulatedProvider, Emulator, Fault, FaultKind, FaultRates, GcpProject, GrantSpec, paths,
};
use serde_json::{Value, json};

const CLAUDE_CLIENT: &str = "9d1c250a-e61b-44d9-88ed-5944d1962f5e";
const OPENAI_CLIENT: &str = "app_EMoamEEZ73f0CkXaXp7hrann";
const GEMINI_CLIENT: (&str, &str) = (
    "681255809395-oo8ft2oprdrnp9e3aqf6av3hmdib135j.apps.googleusercontent.com",
    "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",
);
const AG_CLIENT: (&str, &str) = (
    "1071006060591-tmhssin2h21lcre235vtolojh4g403ep.apps.googleusercontent.com",
    "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",
);

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// A status, headers and JSON (or `Value::Null` for a non-JSON body).
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
    json: Value,
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        text,
        json,
    }
}

async fn json_post(emu: &Emulator, path: &str, body: &Value) -> Answer {
    answer(
        http()
            .post(format!("{}{path}", emu.url()))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn claude(emu: &Emulator, refresh_token: &str) -> Answer {
    let body = json!({"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": CLAUDE_CLIENT});
    json_post(emu, paths::CLAUDE_TOKEN, &body).await
}

async fn form(emu: &Emulator, path: &str, fields: &[(&str, &str)]) -> Answer {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    answer(
        http()
            .post(format!("{}{path}", emu.url()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn openai(emu: &Emulator, refresh_token: &str) -> Answer {
    form(
        emu,
        paths::OPENAI_TOKEN,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", OPENAI_CLIENT),
            ("scope", "openid profile email"),
        ],
    )
    .await
}

async fn google(emu: &Emulator, refresh_token: &str, client: (&str, &str)) -> Answer {
    form(
        emu,
        paths::GOOGLE_TOKEN,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", client.0),
            ("client_secret", client.1),
        ],
    )
    .await
}

fn rt(a: &Answer) -> String {
    a.json["refresh_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn claude_rotates_and_a_reused_token_revokes_the_grant() {
    let emu = Emulator::start().await.unwrap();
    let grant = emu.seed(GrantSpec::new(EmulatedProvider::Claude).refresh_token("rt-c-0"));
    let first = claude(&emu, "rt-c-0").await;
    assert_eq!(first.status, 200, "{}", first.text);
    let rt1 = rt(&first);
    assert_ne!(rt1, "rt-c-0", "rotated");
    assert_eq!(first.json["expires_in"], 28_800);
    assert_eq!(first.json["token_type"], "Bearer");
    let second = claude(&emu, &rt1).await;
    assert_eq!(second.status, 200);
    let rt2 = rt(&second);

    // The token rotated out two refreshes ago is presented again.
    let reuse = claude(&emu, &rt1).await;
    assert_eq!(reuse.status, 400);
    assert_eq!(reuse.json["error"], "invalid_grant");
    let stats = emu.grant(grant.grant_id).unwrap();
    assert!(stats.revoked);
    assert_eq!(
        (stats.refreshes, stats.reuse_attempts, stats.generation),
        (2, 1, 3)
    );
    // The grant is dead: even its current token fails now.
    let after = claude(&emu, &rt2).await;
    assert_eq!(after.status, 400);
    assert_eq!(after.json["error"], "invalid_grant");
    let stats = emu.stats();
    assert_eq!(stats.revoked_grants, vec![grant.grant_id]);
    assert_eq!(stats.requests(paths::CLAUDE_TOKEN), 4);
}

#[tokio::test]
async fn openai_rotates_answers_reuse_with_the_nested_shape_and_revokes() {
    let emu = Emulator::start().await.unwrap();
    let grant = emu.seed(GrantSpec::new(EmulatedProvider::OpenAi).refresh_token("rt-o-0"));
    let first = openai(&emu, "rt-o-0").await;
    assert_eq!(first.status, 200, "{}", first.text);
    let rt1 = rt(&first);
    let id_token = first.json["id_token"].as_str().unwrap();
    assert_eq!(id_token.split('.').count(), 3, "a JWT");
    let reuse = openai(&emu, "rt-o-0").await;
    assert_eq!(reuse.status, 401);
    assert_eq!(reuse.json["error"]["code"], "refresh_token_reused");
    let after = openai(&emu, &rt1).await;
    assert_eq!(after.status, 401);
    assert_eq!(after.json["error"]["code"], "refresh_token_invalidated");
    assert!(emu.grant(grant.grant_id).unwrap().revoked);
}

#[tokio::test]
async fn google_keeps_the_refresh_token_and_checks_its_client() {
    let emu = Emulator::start().await.unwrap();
    emu.seed(GrantSpec::new(EmulatedProvider::Gemini).refresh_token("rt-g-0"));
    emu.seed(GrantSpec::new(EmulatedProvider::Antigravity).refresh_token("rt-a-0"));
    for _ in 0..2 {
        let ok = google(&emu, "rt-g-0", GEMINI_CLIENT).await;
        assert_eq!(ok.status, 200, "{}", ok.text);
        assert!(ok.json.get("refresh_token").is_none(), "Google omits it");
        assert_eq!(ok.json["expires_in"], 3_599);
    }
    assert_eq!(google(&emu, "rt-a-0", AG_CLIENT).await.status, 200);
    let wrong_client = google(&emu, "rt-g-0", AG_CLIENT).await;
    assert_eq!(
        (wrong_client.status, wrong_client.json["error"].as_str()),
        (401, Some("unauthorized_client"))
    );
    let bad_secret = google(&emu, "rt-g-0", (GEMINI_CLIENT.0, "GOCSPX-wrong")).await;
    assert_eq!(
        (bad_secret.status, bad_secret.json["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let unknown_client = google(&emu, "rt-g-0", ("nobody.apps", "x")).await;
    assert_eq!(unknown_client.json["error"], "invalid_client");
    let unknown = google(&emu, "rt-never-issued", GEMINI_CLIENT).await;
    assert_eq!(
        (unknown.status, unknown.json["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let missing = form(
        &emu,
        paths::GOOGLE_TOKEN,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", GEMINI_CLIENT.0),
        ],
    )
    .await;
    assert_eq!(missing.status, 400);
    assert_eq!(missing.json["error"], "invalid_request");
}

#[tokio::test]
async fn token_endpoints_refuse_wrong_formats_clients_and_missing_fields() {
    let emu = Emulator::start().await.unwrap();
    emu.seed(GrantSpec::new(EmulatedProvider::Claude).refresh_token("rt-c-1"));
    emu.seed(GrantSpec::new(EmulatedProvider::OpenAi).refresh_token("rt-o-1"));
    // Claude wants JSON.
    let as_form = form(
        &emu,
        paths::CLAUDE_TOKEN,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", "rt-c-1"),
            ("client_id", CLAUDE_CLIENT),
        ],
    )
    .await;
    assert_eq!(
        (as_form.status, as_form.json["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let no_client = json_post(
        &emu,
        paths::CLAUDE_TOKEN,
        &json!({"grant_type": "refresh_token", "refresh_token": "rt-c-1"}),
    )
    .await;
    assert_eq!(no_client.status, 400);
    let wrong_client = json_post(
        &emu,
        paths::CLAUDE_TOKEN,
        &json!({"grant_type": "refresh_token", "refresh_token": "rt-c-1", "client_id": "x"}),
    )
    .await;
    assert_eq!(
        (wrong_client.status, wrong_client.json["error"].as_str()),
        (401, Some("invalid_client"))
    );
    // OpenAI wants a form and a known client.
    let unknown_client = form(
        &emu,
        paths::OPENAI_TOKEN,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", "rt-o-1"),
            ("client_id", "app_other"),
        ],
    )
    .await;
    assert_eq!(unknown_client.json["error"]["code"], "invalid_client");
    let no_token = form(
        &emu,
        paths::OPENAI_TOKEN,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", OPENAI_CLIENT),
        ],
    )
    .await;
    assert_eq!(
        (no_token.status, no_token.json["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );
    let wrong_grant = form(
        &emu,
        paths::OPENAI_TOKEN,
        &[
            ("grant_type", "password"),
            ("client_id", OPENAI_CLIENT),
            ("refresh_token", "rt-o-1"),
        ],
    )
    .await;
    assert_eq!(wrong_grant.json["error"]["code"], "unsupported_grant_type");
    // Nothing was consumed by the refused requests.
    assert_eq!(emu.stats().refreshes, 0);
    assert_eq!(openai(&emu, "rt-o-1").await.status, 200);
    assert_eq!(claude(&emu, "rt-c-1").await.status, 200);
}

async fn bearer_post(emu: &Emulator, path: &str, token: &str, body: Value) -> Answer {
    answer(
        http()
            .post(format!("{}{path}", emu.url()))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn bearer_get(emu: &Emulator, path: &str, token: &str) -> Answer {
    answer(
        http()
            .get(format!("{}{path}", emu.url()))
            .bearer_auth(token)
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn code_assist_onboarding_projects_and_drive_follow_the_seed() {
    let emu = Emulator::start().await.unwrap();
    emu.seed(GrantSpec {
        onboard_project: Some("onboarded-1".into()),
        onboard_pending_polls: 2,
        project_as_object: true,
        gcp_projects: vec![GcpProject {
            project_id: "p-1".into(),
            name: "p".into(),
            lifecycle_state: "ACTIVE".into(),
        }],
        drive_limit: Some(2 << 40),
        drive_usage: 7,
        ..GrantSpec::new(EmulatedProvider::Gemini).refresh_token("rt-g-ca")
    });
    let at = google(&emu, "rt-g-ca", GEMINI_CLIENT).await.json["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let unauth = bearer_post(&emu, paths::LOAD_CODE_ASSIST, "ya29.forged", json!({})).await;
    assert_eq!(
        (unauth.status, unauth.json["error"]["status"].as_str()),
        (401, Some("UNAUTHENTICATED"))
    );
    let load = bearer_post(&emu, paths::LOAD_CODE_ASSIST, &at, json!({"metadata": {}})).await;
    assert_eq!(load.status, 200);
    assert!(load.json.get("cloudaicompanionProject").is_none());
    assert_eq!(load.json["allowedTiers"][0]["isDefault"], true);
    let body = json!({"tierId": "free-tier", "metadata": {}});
    for _ in 0..2 {
        let op = bearer_post(&emu, paths::ONBOARD_USER, &at, body.clone()).await;
        assert_eq!(op.json["done"], false);
    }
    let done = bearer_post(&emu, paths::ONBOARD_USER, &at, body).await;
    assert_eq!(done.json["done"], true);
    assert_eq!(
        done.json["response"]["cloudaicompanionProject"]["id"],
        "onboarded-1"
    );
    let load = bearer_post(&emu, paths::LOAD_CODE_ASSIST, &at, json!({})).await;
    assert_eq!(
        load.json["cloudaicompanionProject"], "onboarded-1",
        "the grant holds it now"
    );
    let projects = bearer_get(&emu, paths::PROJECTS, &at).await;
    assert_eq!(projects.json["projects"][0]["projectId"], "p-1");
    let drive = bearer_get(&emu, "/drive/v3/about?fields=storageQuota", &at).await;
    assert_eq!(
        drive.json["storageQuota"]["limit"],
        (2_i64 << 40).to_string()
    );
}

async fn refresh_with_fault(emu: &Emulator, kind: FaultKind) -> Result<Answer, reqwest::Error> {
    emu.push_fault(Fault::new(kind).on(paths::CLAUDE_TOKEN));
    let body = json!({"grant_type": "refresh_token", "refresh_token": "rt-never", "client_id": CLAUDE_CLIENT});
    let response = http()
        .post(format!("{}{}", emu.url(), paths::CLAUDE_TOKEN))
        .timeout(Duration::from_secs(5))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await?;
    Ok(answer(response).await)
}

#[tokio::test]
async fn every_fault_kind_answers_as_described() {
    let emu = Emulator::start().await.unwrap();
    let server = refresh_with_fault(&emu, FaultKind::ServerError)
        .await
        .unwrap();
    assert_eq!(server.status, 503);
    assert!(server.text.starts_with("<html>"));
    let limited = refresh_with_fault(
        &emu,
        FaultKind::RateLimited {
            retry_after: "Wed, 21 Oct 2015 07:28:00 GMT".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(limited.status, 429);
    assert_eq!(
        limited.headers["retry-after"],
        "Wed, 21 Oct 2015 07:28:00 GMT"
    );
    let malformed = refresh_with_fault(&emu, FaultKind::MalformedJson)
        .await
        .unwrap();
    assert_eq!(malformed.status, 200);
    assert_eq!(malformed.json, Value::Null, "not JSON: {}", malformed.text);
    let html = refresh_with_fault(&emu, FaultKind::HtmlError)
        .await
        .unwrap();
    assert_eq!(html.status, 502);
    assert!(html.text.contains("Bad Gateway"));
    let announced = refresh_with_fault(
        &emu,
        FaultKind::Oversized {
            bytes: 3_000_000,
            announce_length: true,
        },
    )
    .await
    .unwrap();
    assert_eq!(announced.text.len(), 3_000_000);
    assert_eq!(announced.headers["content-length"], "3000000");
    let streamed = refresh_with_fault(
        &emu,
        FaultKind::Oversized {
            bytes: 3_000_000,
            announce_length: false,
        },
    )
    .await
    .unwrap();
    assert_eq!(streamed.text.len(), 3_000_000);
    assert!(streamed.headers.get("content-length").is_none());
    assert_eq!(emu.stats().oversized_bytes_sent, 6_000_000);

    let reset = refresh_with_fault(&emu, FaultKind::Reset)
        .await
        .err()
        .unwrap();
    assert!(!reset.is_timeout(), "a reset, not a timeout: {reset:?}");
    assert!(reset.is_request(), "{reset:?}");

    emu.push_fault(Fault::new(FaultKind::Hang).on(paths::CLAUDE_TOKEN));
    let hung = http()
        .post(format!("{}{}", emu.url(), paths::CLAUDE_TOKEN))
        .timeout(Duration::from_millis(300))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .err()
        .unwrap();
    assert!(hung.is_timeout(), "{hung:?}");
    let stats = emu.stats();
    assert_eq!(stats.faults_injected, 8);
    assert_eq!(
        stats.requests(paths::CLAUDE_TOKEN),
        8,
        "every faulted request was read"
    );
}

#[tokio::test]
async fn a_processed_fault_consumes_the_token_before_failing_the_answer() {
    let emu = Emulator::start().await.unwrap();
    let grant = emu.seed(GrantSpec::new(EmulatedProvider::Claude).refresh_token("rt-p-0"));
    emu.push_fault(Fault::new(FaultKind::Reset).after_processing());
    let body = json!({"grant_type": "refresh_token", "refresh_token": "rt-p-0", "client_id": CLAUDE_CLIENT});
    let err = http()
        .post(format!("{}{}", emu.url(), paths::CLAUDE_TOKEN))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect_err("the connection is reset");
    assert!(!err.is_timeout());
    let stats = emu.grant(grant.grant_id).unwrap();
    assert_eq!(
        (stats.refreshes, stats.generation),
        (1, 2),
        "rotated although unanswered"
    );
    // The client retries blindly with the consumed token: reuse, revoked.
    assert_eq!(claude(&emu, "rt-p-0").await.json["error"], "invalid_grant");
    assert!(emu.grant(grant.grant_id).unwrap().revoked);
}

#[tokio::test]
async fn fault_rates_apply_to_every_request_until_cleared_and_faults_match_paths() {
    let emu = Emulator::start().await.unwrap();
    emu.seed(GrantSpec::new(EmulatedProvider::Claude).refresh_token("rt-r-0"));
    emu.set_fault_rates(FaultRates {
        server_error: 1.0,
        ..FaultRates::default()
    });
    for _ in 0..3 {
        assert_eq!(claude(&emu, "rt-r-0").await.status, 503);
    }
    emu.clear_faults();
    // A fault for another path does not touch this one.
    emu.push_fault(Fault::new(FaultKind::ServerError).on(paths::GOOGLE_TOKEN));
    assert_eq!(claude(&emu, "rt-r-0").await.status, 200);
    assert_eq!(emu.stats().faults_injected, 3);
}

#[tokio::test]
async fn the_admin_api_seeds_reads_revokes_and_configures_over_http() {
    let emu = Emulator::start().await.unwrap();
    let base = emu.url();
    let client = http();
    let seeded = client
        .post(format!("{base}/admin/grants"))
        .json(&json!({"provider": "openai", "email": "a@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(seeded.status(), 201);
    let seeded: Value = seeded.json().await.unwrap();
    let (id, token) = (
        seeded["grant_id"].as_u64().unwrap(),
        seeded["refresh_token"].as_str().unwrap().to_owned(),
    );
    let bad = client
        .post(format!("{base}/admin/grants"))
        .json(&json!({"refresh_token": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400, "a provider is required");

    let lifetime = client
        .put(format!("{base}/admin/token-lifetime"))
        .json(&json!({"expires_in": 120}))
        .send()
        .await
        .unwrap();
    assert_eq!(lifetime.status(), 204);
    let latency = client
        .put(format!("{base}/admin/latency"))
        .json(&json!({"fixed_ms": 0, "jitter_ms": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(latency.status(), 204);
    let first = openai(&emu, &token).await;
    assert_eq!(first.json["expires_in"], 120);

    let fault = client
        .post(format!("{base}/admin/faults"))
        .json(&json!({"kind": "rate_limited", "retry_after": "9", "path": paths::OPENAI_TOKEN}))
        .send()
        .await
        .unwrap();
    assert_eq!(fault.status(), 204);
    let limited = openai(&emu, &rt(&first)).await;
    assert_eq!(
        (
            limited.status,
            limited.headers["retry-after"].to_str().unwrap()
        ),
        (429, "9")
    );
    let rates = client
        .put(format!("{base}/admin/fault-rates"))
        .json(&json!({"html_error": 1.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(rates.status(), 204);
    assert_eq!(openai(&emu, &rt(&first)).await.status, 502);
    let cleared = client
        .delete(format!("{base}/admin/faults"))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), 204);

    let revoked = client
        .post(format!("{base}/admin/grants/{id}/revoke"))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    assert_eq!(
        openai(&emu, &rt(&first)).await.json["error"]["code"],
        "refresh_token_invalidated"
    );
    let grant: Value = client
        .get(format!("{base}/admin/grants/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(grant["revoked"], true);
    assert_eq!(grant["refreshes"], 1);
    assert!(
        grant.get("refresh_token").is_none(),
        "counters carry no token"
    );
    // The current refresh token and the issued tokens, for tests in
    // other processes.
    let current: Value = client
        .get(format!("{base}/admin/grants/{id}/refresh-token"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let current = current["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(current, rt(&first));
    let issued: Value = client
        .get(format!("{base}/admin/issued-tokens"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let issued = issued["tokens"].as_array().unwrap();
    assert!(issued.iter().any(|t| t.as_str() == Some(current.as_str())));
    assert_eq!(
        client
            .get(format!("{base}/admin/grants/999/refresh-token"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let missing = client
        .get(format!("{base}/admin/grants/999"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let stats: Value = client
        .get(format!("{base}/admin/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["requests_by_path"][paths::OPENAI_TOKEN], 4);
    assert_eq!(stats["revoked_grants"], json!([id]));
    assert!(!stats.to_string().contains(&token), "stats carry no token");
}

#[tokio::test]
async fn the_binary_prints_its_url_and_serves() {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_oauth-emulator"))
        .args(["--port", "0"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let url = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the emulator printed its URL")
        .unwrap()
        .unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let stats = http()
        .get(format!("{url}/admin/stats"))
        .send()
        .await
        .unwrap();
    assert_eq!(stats.status(), 200);
    child.kill().await.unwrap();
}
