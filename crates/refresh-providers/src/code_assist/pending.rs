//! The project id and the "discovery pending" marker written with the new
//! tokens.

use refresh_core::Credentials;
use serde_json::Value;

/// The credential key of the project id.
pub(crate) const PROJECT_ID: &str = "project_id";

/// Credential key set to `true` when a refresh obtained new tokens but no
/// project id could be found (discovery failed or ran out of time); the
/// next refresh tries again and sets it to `false` once a project is
/// known. Written with the tokens, through the flow's fenced write.
pub const PROJECT_DISCOVERY_PENDING: &str = "project_discovery_pending";

/// Writes `project` (when non-blank; an existing one is never blanked) and
/// the pending marker into `issued`: `true` when neither `project` nor
/// `old` holds a project id, `false` when `old` had the marker set and a
/// project is now known, nothing otherwise. Returns whether discovery is
/// pending.
pub(crate) fn apply_project(
    issued: &mut Credentials,
    old: &Credentials,
    project: Option<String>,
) -> bool {
    if let Some(project) = project.filter(|p| !p.trim().is_empty()) {
        issued.insert(PROJECT_ID, project.trim());
    }
    let known = !issued.string_view(PROJECT_ID).trim().is_empty()
        || !old.string_view(PROJECT_ID).trim().is_empty();
    if !known {
        issued.insert(PROJECT_DISCOVERY_PENDING, true);
    } else if old
        .get(PROJECT_DISCOVERY_PENDING)
        .is_some_and(|v| v != &Value::Bool(false))
    {
        issued.insert(PROJECT_DISCOVERY_PENDING, false);
    }
    !known
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn creds(v: Value) -> Credentials {
        Credentials::try_from(v).unwrap()
    }

    #[test]
    fn marker_set_when_no_project_cleared_when_found() {
        let mut issued = Credentials::new();
        assert!(apply_project(&mut issued, &Credentials::new(), None));
        assert_eq!(issued.get(PROJECT_DISCOVERY_PENDING), Some(&json!(true)));

        let old = creds(json!({ PROJECT_DISCOVERY_PENDING: true }));
        let mut issued = Credentials::new();
        assert!(!apply_project(&mut issued, &old, Some("p-1".into())));
        assert_eq!(issued.get(PROJECT_ID), Some(&json!("p-1")));
        assert_eq!(issued.get(PROJECT_DISCOVERY_PENDING), Some(&json!(false)));

        let old = creds(json!({ PROJECT_ID: "p-old" }));
        let mut issued = Credentials::new();
        assert!(!apply_project(&mut issued, &old, Some("  ".into())));
        assert_eq!(
            issued.get(PROJECT_ID),
            None,
            "a blank project never overwrites"
        );
        assert_eq!(issued.get(PROJECT_DISCOVERY_PENDING), None);
    }
}
