//! Antigravity's project load (REFERENCE.md §7.2).
#![cfg_attr(not(feature = "antigravity"), allow(dead_code))]

use serde_json::{Value, json};

use super::caller::{CallError, Caller};
use super::responses::{companion_project, default_allowed_tier, onboarding};
use super::timing::DiscoveryTiming;
use crate::config::join;

/// §7.2: up to `attempts` rounds over `bases` in order; at each base
/// `loadCodeAssist` (with `load_metadata`), and when it names no project,
/// `onboardUser` with the default allowed tier, polled while not `done`.
/// A connection error, 408, 404, 429 or 5xx moves to the next base; other
/// failures end the round. Rounds are separated by the doubling backoff.
///
/// # Errors
/// A short reason (no body, no token) when no project was found.
pub(crate) async fn load_project(
    caller: &Caller<'_>,
    bases: &[String],
    load_metadata: &Value,
    timing: &DiscoveryTiming,
) -> Result<String, String> {
    let mut last = "no Code Assist base URL configured".to_owned();
    for round in 0..timing.attempts.max(1) {
        if round > 0
            && let Err(e) = caller.pause(timing.backoff_after(round - 1)).await
        {
            return Err(format!("{last}; then {}", e.describe()));
        }
        for base in bases {
            match at_base(caller, base, load_metadata, timing).await {
                Ok(project) => return Ok(project),
                Err(e) => {
                    last = format!("{}: {}", e.0, e.1.describe());
                    if e.1 == CallError::OutOfTime {
                        return Err(last);
                    }
                    if !e.1.tries_next_base() {
                        break;
                    }
                }
            }
        }
    }
    Err(last)
}

/// One base: load, then onboard. The error names the call.
async fn at_base(
    caller: &Caller<'_>,
    base: &str,
    load_metadata: &Value,
    timing: &DiscoveryTiming,
) -> Result<String, (&'static str, CallError)> {
    let loaded = caller
        .post(
            &join(base, "/v1internal:loadCodeAssist"),
            &json!({ "metadata": load_metadata }),
        )
        .await
        .map_err(|e| ("loadCodeAssist", e))?;
    if let Some(project) = companion_project(&loaded) {
        return Ok(project);
    }
    let tier = default_allowed_tier(&loaded).unwrap_or_else(|| "free-tier".to_owned());
    let body = json!({
        "tierId": tier,
        "metadata": {"ideType": "ANTIGRAVITY", "platform": "PLATFORM_UNSPECIFIED", "pluginType": "GEMINI"},
    });
    let url = join(base, "/v1internal:onboardUser");
    for poll in 0..timing.onboard_polls.max(1) {
        if poll > 0 {
            caller
                .pause(timing.onboard_interval)
                .await
                .map_err(|e| ("onboardUser", e))?;
        }
        let op = onboarding(
            &caller
                .post(&url, &body)
                .await
                .map_err(|e| ("onboardUser", e))?,
        );
        if op.done {
            return op.project.ok_or(("onboardUser", CallError::Invalid));
        }
    }
    Err(("onboardUser", CallError::NotDone))
}
