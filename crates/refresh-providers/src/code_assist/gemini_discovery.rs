//! Gemini's project discovery (REFERENCE.md §7.1).
#![cfg_attr(not(feature = "gemini"), allow(dead_code))]

use serde_json::{Value, json};

use super::caller::{CallError, Caller};
use super::responses::{companion_project, is_registered, onboarding, pick_project, tier};
use super::timing::DiscoveryTiming;
use crate::config::join;

/// Where Gemini discovery calls go.
pub(crate) struct GeminiEndpoints<'a> {
    /// Code Assist base (`https://cloudcode-pa.googleapis.com`).
    pub(crate) code_assist_base: &'a str,
    /// Resource Manager projects list URL.
    pub(crate) resource_manager_url: &'a str,
}

/// What a discovery found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Discovered {
    pub(crate) project_id: String,
    /// The tier `loadCodeAssist` reported.
    pub(crate) tier: String,
}

/// The metadata Gemini sends (`ideType` is `ANTIGRAVITY`, as Go does).
fn metadata() -> Value {
    json!({"ideType": "ANTIGRAVITY", "platform": "PLATFORM_UNSPECIFIED", "pluginType": "GEMINI"})
}

/// §7.1: `loadCodeAssist`; its project if any; else the Resource Manager
/// for a registered user; else `onboardUser` (polled while not `done`),
/// then the Resource Manager as a fallback.
///
/// # Errors
/// A short reason (no body, no token) when no project was found.
pub(crate) async fn discover_project(
    caller: &Caller<'_>,
    endpoints: &GeminiEndpoints<'_>,
    timing: &DiscoveryTiming,
) -> Result<Discovered, String> {
    let load_url = join(endpoints.code_assist_base, "/v1internal:loadCodeAssist");
    let loaded = caller
        .post(&load_url, &json!({ "metadata": metadata() }))
        .await
        .map_err(|e| format!("loadCodeAssist: {}", e.describe()))?;
    let tier = tier(&loaded);
    if let Some(project_id) = companion_project(&loaded) {
        return Ok(Discovered { project_id, tier });
    }
    let found = if is_registered(&loaded) {
        None
    } else {
        onboard(caller, endpoints, &tier, timing).await
    };
    let project_id = match found {
        Some(project) => project,
        None => resource_manager(caller, endpoints).await.map_err(|e| {
            format!("no project from loadCodeAssist or onboardUser; Resource Manager: {e}")
        })?,
    };
    Ok(Discovered { project_id, tier })
}

/// `onboardUser` up to `onboard_polls` times while not `done`.
async fn onboard(
    caller: &Caller<'_>,
    endpoints: &GeminiEndpoints<'_>,
    tier: &str,
    timing: &DiscoveryTiming,
) -> Option<String> {
    let url = join(endpoints.code_assist_base, "/v1internal:onboardUser");
    let body = json!({ "tierId": tier, "metadata": metadata() });
    for poll in 0..timing.onboard_polls {
        if poll > 0 && caller.pause(timing.onboard_interval).await.is_err() {
            return None;
        }
        let answer = caller.post(&url, &body).await.ok()?;
        let op = onboarding(&answer);
        if op.done {
            return op.project;
        }
    }
    None
}

async fn resource_manager(
    caller: &Caller<'_>,
    endpoints: &GeminiEndpoints<'_>,
) -> Result<String, String> {
    let list = caller
        .get(endpoints.resource_manager_url)
        .await
        .map_err(|e: CallError| e.describe())?;
    pick_project(&list)
        .ok_or_else(|| "no ACTIVE project; set project_id on the account manually".to_owned())
}

/// `loadCodeAssist` for the tier only (a login given its project): the
/// tier of §7.1 step 2.
///
/// # Errors
/// A short reason (no body, no token).
pub(crate) async fn detect_tier(
    caller: &Caller<'_>,
    endpoints: &GeminiEndpoints<'_>,
) -> Result<String, String> {
    let load_url = join(endpoints.code_assist_base, "/v1internal:loadCodeAssist");
    caller
        .post(&load_url, &json!({ "metadata": metadata() }))
        .await
        .map(|loaded| tier(&loaded))
        .map_err(|e| format!("loadCodeAssist: {}", e.describe()))
}
