//! Reading `loadCodeAssist`, `onboardUser` and Resource Manager answers.

use serde_json::Value;

/// A non-blank string field.
fn text(value: Option<&Value>) -> Option<String> {
    value
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// `cloudaicompanionProject`, given as a string or as an object with `id`.
pub(crate) fn companion_project(answer: &Value) -> Option<String> {
    let project = answer.get("cloudaicompanionProject")?;
    text(Some(project)).or_else(|| text(project.get("id")))
}

/// The tier id of `loadCodeAssist` (§7.1 step 2), first match wins:
/// `paidTier.id`, `currentTier.id`, the default allowed tier, the first
/// non-empty allowed tier, `LEGACY`.
pub(crate) fn tier(answer: &Value) -> String {
    text(answer.get("paidTier").and_then(|t| t.get("id")))
        .or_else(|| text(answer.get("currentTier").and_then(|t| t.get("id"))))
        .or_else(|| default_allowed_tier(answer))
        .or_else(|| allowed_tiers(answer).iter().find_map(|t| text(t.get("id"))))
        .unwrap_or_else(|| "LEGACY".to_owned())
}

/// Whether `loadCodeAssist` shows a registered user (a paid or current
/// tier): such a user is not onboarded again (§7.1 step 4).
pub(crate) fn is_registered(answer: &Value) -> bool {
    text(answer.get("paidTier").and_then(|t| t.get("id"))).is_some()
        || text(answer.get("currentTier").and_then(|t| t.get("id"))).is_some()
}

/// The id of the `allowedTiers` entry with `isDefault`.
pub(crate) fn default_allowed_tier(answer: &Value) -> Option<String> {
    allowed_tiers(answer)
        .iter()
        .find(|t| t.get("isDefault").and_then(Value::as_bool) == Some(true))
        .and_then(|t| text(t.get("id")))
}

fn allowed_tiers(answer: &Value) -> &[Value] {
    answer
        .get("allowedTiers")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// An `onboardUser` long-running operation.
pub(crate) struct Onboarding {
    pub(crate) done: bool,
    pub(crate) project: Option<String>,
}

pub(crate) fn onboarding(answer: &Value) -> Onboarding {
    Onboarding {
        done: answer.get("done").and_then(Value::as_bool) == Some(true),
        project: answer.get("response").and_then(companion_project),
    }
}

/// The Resource Manager project to use (§7.1 step 4): among ACTIVE
/// projects, one whose id or name suggests Cloud AI Companion / Code
/// Assist, else one containing "default", else the first.
pub(crate) fn pick_project(answer: &Value) -> Option<String> {
    let projects: Vec<(String, String)> = answer
        .get("projects")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .filter(|p| {
            p.get("lifecycleState")
                .and_then(Value::as_str)
                .is_none_or(|s| s.eq_ignore_ascii_case("ACTIVE"))
        })
        .filter_map(|p| {
            let id = text(p.get("projectId"))?;
            let name = text(p.get("name")).unwrap_or_default();
            Some((id, name))
        })
        .collect();
    let matches = |needles: &[&str]| {
        projects.iter().find(|(id, name)| {
            let (id, name) = (id.to_ascii_lowercase(), name.to_ascii_lowercase());
            needles.iter().any(|n| id.contains(n) || name.contains(n))
        })
    };
    matches(&["cloud-ai-companion", "cloud ai companion", "code assist"])
        .or_else(|| matches(&["default"]))
        .or_else(|| projects.first())
        .map(|(id, _)| id.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn project_as_string_or_object() {
        assert_eq!(
            companion_project(&json!({"cloudaicompanionProject": " p-1 "})).as_deref(),
            Some("p-1")
        );
        assert_eq!(
            companion_project(&json!({"cloudaicompanionProject": {"id": "p-2", "name": "x"}}))
                .as_deref(),
            Some("p-2")
        );
        assert_eq!(
            companion_project(&json!({"cloudaicompanionProject": ""})),
            None
        );
        assert_eq!(companion_project(&json!({})), None);
    }

    #[test]
    fn tier_first_match_wins() {
        let all = json!({
            "paidTier": {"id": "g1-pro-tier"},
            "currentTier": {"id": "standard-tier"},
            "allowedTiers": [{"id": "free-tier"}, {"id": "legacy-tier", "isDefault": true}]
        });
        assert_eq!(tier(&all), "g1-pro-tier");
        assert_eq!(
            tier(
                &json!({"currentTier": {"id": "standard-tier"}, "allowedTiers": [{"id": "a", "isDefault": true}]})
            ),
            "standard-tier"
        );
        assert_eq!(
            tier(
                &json!({"allowedTiers": [{"id": "free-tier"}, {"id": "legacy-tier", "isDefault": true}]})
            ),
            "legacy-tier"
        );
        assert_eq!(
            tier(&json!({"allowedTiers": [{"id": ""}, {"id": "free-tier"}]})),
            "free-tier"
        );
        assert_eq!(tier(&json!({})), "LEGACY");
        assert!(is_registered(&json!({"currentTier": {"id": "x"}})));
        assert!(!is_registered(&json!({"allowedTiers": [{"id": "x"}]})));
    }

    #[test]
    fn resource_manager_pick_order() {
        let list = |ps: Value| json!({ "projects": ps });
        assert_eq!(
            pick_project(&list(json!([
                {"projectId": "first", "lifecycleState": "ACTIVE"},
                {"projectId": "my-default", "lifecycleState": "ACTIVE"},
                {"projectId": "x-cloud-ai-companion", "lifecycleState": "DELETE_REQUESTED"},
                {"projectId": "p-9", "name": "Code Assist project", "lifecycleState": "ACTIVE"}
            ])))
            .as_deref(),
            Some("p-9")
        );
        assert_eq!(
            pick_project(&list(json!([
                {"projectId": "first", "lifecycleState": "ACTIVE"},
                {"projectId": "my-default", "lifecycleState": "ACTIVE"}
            ])))
            .as_deref(),
            Some("my-default")
        );
        assert_eq!(
            pick_project(&list(
                json!([{"projectId": "first", "lifecycleState": "ACTIVE"}])
            ))
            .as_deref(),
            Some("first")
        );
        assert_eq!(pick_project(&list(json!([]))), None);
        assert_eq!(pick_project(&json!({})), None);
    }
}
