//! Project discovery after the token call: Antigravity's base-URL fallback
//! order (§7.2) and Gemini's loadCodeAssist → onboardUser → Resource
//! Manager chain (§7.1), against the emulator and recording stubs; a
//! failing discovery never loses the new tokens and records that it is
//! pending.

mod common;

use common::*;
use refresh_core::plugin::*;
use refresh_core::testing::{ScriptedReply, TokenEndpoint};
use refresh_providers::PROJECT_DISCOVERY_PENDING;
use refresh_providers::emulator::{EmulatedProvider, Emulator, GcpProject, GrantSpec, paths};
use refresh_providers::{HttpClients, ProvidersConfig};
use serde_json::json;

fn google_answer() -> ScriptedReply {
    ScriptedReply::json(
        200,
        &json!({"access_token": "AT-new-Google-Vw1Ty6", "expires_in": 3599, "token_type": "Bearer"}),
    )
}

/// Antigravity with its token endpoint at `token` and Code Assist bases.
fn antigravity(token: &str, bases: Vec<String>) -> std::sync::Arc<dyn RefreshExecutor> {
    let mut config: ProvidersConfig = config_at(token);
    config.antigravity.code_assist_base_urls = bases;
    executor_with(&Platform::Antigravity, config, HttpClients::default())
}

#[tokio::test]
async fn antigravity_moves_to_the_next_base_on_5xx_404_429_and_connection_errors() {
    for first_failure in [
        Some(ScriptedReply::html(503, "<html>down</html>")),
        Some(ScriptedReply::json(404, &json!({"error": {"code": 404}}))),
        Some(ScriptedReply::status(429)),
        Some(ScriptedReply::status(408)),
        None, // nothing listens on the first base
    ] {
        let token = TokenEndpoint::start().await.unwrap();
        token.push(google_answer());
        let first = TokenEndpoint::start().await.unwrap();
        let first_url = match first_failure {
            Some(reply) => {
                first.push(reply);
                first.url()
            }
            None => format!("http://{}", closed_port()),
        };
        let second = TokenEndpoint::start().await.unwrap();
        second.push(ScriptedReply::json(
            200,
            &json!({"cloudaicompanionProject": "from-second"}),
        ));
        let executor = antigravity(&token.url(), vec![first_url, second.url()]);
        let account = account(&Platform::Antigravity, 1, "RT-stored");
        let creds = executor
            .refresh(&account, &ctx("RT-claimed-1"))
            .await
            .unwrap();
        assert_eq!(creds.get("project_id"), Some(&json!("from-second")));
        let second_requests = second.requests();
        assert_eq!(second_requests.len(), 1);
        assert_eq!(second_requests[0].path, paths::LOAD_CODE_ASSIST);
        assert!(first.request_count() <= 1);
    }
}

#[tokio::test]
async fn antigravity_stays_on_a_base_that_refuses_and_retries_it_next_round() {
    let token = TokenEndpoint::start().await.unwrap();
    token.push(google_answer());
    let first = TokenEndpoint::start().await.unwrap();
    first.push(ScriptedReply::json(403, &json!({"error": {"code": 403}})));
    first.push(ScriptedReply::json(
        200,
        &json!({"cloudaicompanionProject": "from-first-round-2"}),
    ));
    let second = TokenEndpoint::start().await.unwrap();
    let executor = antigravity(&token.url(), vec![first.url(), second.url()]);
    let creds = executor
        .refresh(
            &account(&Platform::Antigravity, 2, "RT"),
            &ctx("RT-claimed-2"),
        )
        .await
        .unwrap();
    assert_eq!(creds.get("project_id"), Some(&json!("from-first-round-2")));
    assert_eq!(
        second.request_count(),
        0,
        "a 403 does not move to the next base"
    );
    assert_eq!(
        first.request_count(),
        2,
        "the next round starts at the first base again"
    );
}

#[tokio::test]
async fn antigravity_onboards_with_the_default_tier_and_polls_until_done() {
    let emu = Emulator::start().await.unwrap();
    let grant = emu.seed(GrantSpec {
        onboard_project: Some("onboarded-ag".into()),
        onboard_pending_polls: 2,
        project_as_object: true,
        ..GrantSpec::new(EmulatedProvider::Antigravity)
    });
    let executor = executor_at(&Platform::Antigravity, &emu.url());
    let account = account(&Platform::Antigravity, 3, grant.refresh_token.expose());
    let creds = executor
        .refresh(&account, &ctx(grant.refresh_token.expose()))
        .await
        .unwrap();
    assert_eq!(creds.get("project_id"), Some(&json!("onboarded-ag")));
    let stats = emu.stats();
    assert_eq!(stats.requests(paths::LOAD_CODE_ASSIST), 1);
    assert_eq!(
        stats.requests(paths::ONBOARD_USER),
        3,
        "two pending polls, then done"
    );
}

#[tokio::test]
async fn antigravity_keeps_tokens_and_the_stored_project_when_every_base_fails() {
    let token = TokenEndpoint::start().await.unwrap();
    token.set_fallback(ScriptedReply::html(503, "<html>down</html>"));
    token.push(google_answer());
    let executor = antigravity(
        &token.url(),
        vec![token.url(), format!("http://{}", closed_port())],
    );
    let mut with_project = account(&Platform::Antigravity, 4, "RT");
    with_project.credentials.insert("project_id", "stored-ag");
    let creds = executor
        .refresh(&with_project, &ctx("RT-claimed-4"))
        .await
        .unwrap();
    assert_eq!(
        creds.get("access_token"),
        Some(&json!("AT-new-Google-Vw1Ty6"))
    );
    assert_eq!(
        creds.get("project_id"),
        Some(&json!("stored-ag")),
        "never blanked"
    );
    assert_eq!(creds.get(PROJECT_DISCOVERY_PENDING), None);

    token.push(google_answer());
    let without = account(&Platform::Antigravity, 5, "RT");
    let creds = executor
        .refresh(&without, &ctx("RT-claimed-5"))
        .await
        .unwrap();
    assert_eq!(
        creds.get("access_token"),
        Some(&json!("AT-new-Google-Vw1Ty6"))
    );
    assert_eq!(creds.get("project_id"), None);
    assert_eq!(creds.get(PROJECT_DISCOVERY_PENDING), Some(&json!(true)));
}

/// A Gemini code_assist account without a project, on grant `rt`.
fn gemini_without_project(id: i64, rt: &str) -> Account {
    let mut account = account(&Platform::Gemini, id, rt);
    account.credentials.remove("project_id");
    account
}

#[tokio::test]
async fn gemini_takes_the_project_loadcodeassist_reports() {
    let emu = Emulator::start().await.unwrap();
    let grant = emu.seed(GrantSpec {
        project_id: Some("known-project".into()),
        ..GrantSpec::new(EmulatedProvider::Gemini)
    });
    let executor = executor_at(&Platform::Gemini, &emu.url());
    let rt = grant.refresh_token.expose();
    let creds = executor
        .refresh(&gemini_without_project(6, rt), &ctx(rt))
        .await
        .unwrap();
    assert_eq!(creds.get("project_id"), Some(&json!("known-project")));
    assert_eq!(creds.get("tier_id"), Some(&json!("gcp_standard")));
    assert_eq!(emu.stats().requests(paths::ONBOARD_USER), 0);
}

#[tokio::test]
async fn gemini_onboards_a_new_user_and_polls_until_done() {
    let emu = Emulator::start().await.unwrap();
    let grant = emu.seed(GrantSpec {
        onboard_project: Some("onboarded-gemini".into()),
        onboard_pending_polls: 1,
        ..GrantSpec::new(EmulatedProvider::Gemini)
    });
    let executor = executor_at(&Platform::Gemini, &emu.url());
    let rt = grant.refresh_token.expose();
    let creds = executor
        .refresh(&gemini_without_project(7, rt), &ctx(rt))
        .await
        .unwrap();
    assert_eq!(creds.get("project_id"), Some(&json!("onboarded-gemini")));
    let stats = emu.stats();
    assert_eq!(stats.requests(paths::ONBOARD_USER), 2);
    assert_eq!(stats.requests(paths::PROJECTS), 0);
}

#[tokio::test]
async fn gemini_asks_resource_manager_for_a_registered_user_without_a_project() {
    let emu = Emulator::start().await.unwrap();
    let grant = emu.seed(GrantSpec {
        current_tier: Some("standard-tier".into()),
        gcp_projects: vec![
            GcpProject {
                project_id: "first".into(),
                name: "First".into(),
                lifecycle_state: "ACTIVE".into(),
            },
            GcpProject {
                project_id: "my-default-1".into(),
                name: "d".into(),
                lifecycle_state: "ACTIVE".into(),
            },
            GcpProject {
                project_id: "gen-lang-client".into(),
                name: "Code Assist".into(),
                lifecycle_state: "ACTIVE".into(),
            },
        ],
        ..GrantSpec::new(EmulatedProvider::Gemini)
    });
    let executor = executor_at(&Platform::Gemini, &emu.url());
    let rt = grant.refresh_token.expose();
    let creds = executor
        .refresh(&gemini_without_project(8, rt), &ctx(rt))
        .await
        .unwrap();
    assert_eq!(creds.get("project_id"), Some(&json!("gen-lang-client")));
    let stats = emu.stats();
    assert_eq!(
        stats.requests(paths::ONBOARD_USER),
        0,
        "a registered user is not onboarded"
    );
    assert_eq!(stats.requests(paths::PROJECTS), 1);
}

#[tokio::test]
async fn gemini_falls_back_to_resource_manager_when_onboarding_gives_no_project() {
    let emu = Emulator::start().await.unwrap();
    let grant = emu.seed(GrantSpec {
        gcp_projects: vec![GcpProject {
            project_id: "only-one".into(),
            name: String::new(),
            lifecycle_state: "ACTIVE".into(),
        }],
        ..GrantSpec::new(EmulatedProvider::Gemini)
    });
    let executor = executor_at(&Platform::Gemini, &emu.url());
    let rt = grant.refresh_token.expose();
    let creds = executor
        .refresh(&gemini_without_project(9, rt), &ctx(rt))
        .await
        .unwrap();
    assert_eq!(creds.get("project_id"), Some(&json!("only-one")));
    let stats = emu.stats();
    assert_eq!(stats.requests(paths::ONBOARD_USER), 1);
    assert_eq!(stats.requests(paths::PROJECTS), 1);
}

#[tokio::test]
async fn gemini_discovery_failure_keeps_the_tokens_marks_pending_and_heals_later() {
    let emu = Emulator::start().await.unwrap();
    let grant = emu.seed(GrantSpec::new(EmulatedProvider::Gemini));
    let executor = executor_at(&Platform::Gemini, &emu.url());
    let rt = grant.refresh_token.expose();
    let account = gemini_without_project(10, rt);
    let creds = executor.refresh(&account, &ctx(rt)).await.unwrap();
    assert!(creds.access_token().is_some());
    assert_ne!(creds.access_token(), account.credentials.access_token());
    assert_eq!(creds.get("project_id"), None);
    assert_eq!(creds.get(PROJECT_DISCOVERY_PENDING), Some(&json!(true)));

    // An operator sets the project; the next refresh clears the marker.
    let mut next = account.clone();
    next.set_credentials(creds);
    next.credentials.insert("project_id", "set-by-operator");
    let creds = executor.refresh(&next, &ctx(rt)).await.unwrap();
    assert_eq!(creds.get(PROJECT_DISCOVERY_PENDING), Some(&json!(false)));
    assert_eq!(creds.get("project_id"), Some(&json!("set-by-operator")));
}

#[tokio::test]
async fn discovery_never_outlives_the_refresh_deadline() {
    // loadCodeAssist hangs: discovery gives up before ctx.deadline minus
    // the reserve and the tokens come back in time.
    let token = TokenEndpoint::start().await.unwrap();
    token.push(google_answer());
    token.push(ScriptedReply::hold());
    let executor = executor_at(&Platform::Gemini, &token.url());
    let ctx = ctx_for("RT-claimed-11", std::time::Duration::from_secs(3));
    // As the flow does: the call is aborted at ctx.deadline.
    let creds = tokio::time::timeout_at(
        ctx.deadline,
        executor.refresh(&gemini_without_project(11, "RT"), &ctx),
    )
    .await
    .expect("the executor returned before the flow's deadline")
    .unwrap();
    assert_eq!(creds.get(PROJECT_DISCOVERY_PENDING), Some(&json!(true)));
}
