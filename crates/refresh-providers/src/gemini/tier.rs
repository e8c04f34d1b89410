//! Gemini tier ids: canonical names and the stored-value check.

use refresh_core::Credentials;

/// `gcp_standard`.
pub(crate) const GCP_STANDARD: &str = "gcp_standard";
/// `gcp_enterprise`.
pub(crate) const GCP_ENTERPRISE: &str = "gcp_enterprise";
/// `google_one_free`.
pub(crate) const GOOGLE_ONE_FREE: &str = "google_one_free";
/// `google_ai_pro`.
pub(crate) const GOOGLE_AI_PRO: &str = "google_ai_pro";
/// `google_ai_ultra`.
pub(crate) const GOOGLE_AI_ULTRA: &str = "google_ai_ultra";
/// `google_one_unknown`.
pub(crate) const GOOGLE_ONE_UNKNOWN: &str = "google_one_unknown";

/// The canonical tier id of a stored or reported one (lower-cased;
/// legacy names mapped): `ai_premium` → `google_ai_pro`,
/// `google_one_unlimited` → `google_ai_ultra`, `free` /
/// `google_one_basic` / `google_one_standard` → `google_one_free`,
/// `standard` / `pro` / `legacy` → `gcp_standard`, `enterprise` / `ultra`
/// → `gcp_enterprise`; anything else lower-cased as is.
pub(crate) fn canonical(raw: &str) -> String {
    let lower = raw.trim().to_ascii_lowercase();
    match lower.as_str() {
        "ai_premium" => GOOGLE_AI_PRO.to_owned(),
        "google_one_unlimited" => GOOGLE_AI_ULTRA.to_owned(),
        "free" | "google_one_basic" | "google_one_standard" => GOOGLE_ONE_FREE.to_owned(),
        "standard" | "pro" | "legacy" => GCP_STANDARD.to_owned(),
        "enterprise" | "ultra" => GCP_ENTERPRISE.to_owned(),
        _ => lower,
    }
}

/// The Code Assist tier to keep: the stored one when it canonicalizes to
/// `gcp_standard` or `gcp_enterprise`, else `gcp_standard`.
pub(crate) fn code_assist(stored: &str) -> &'static str {
    match canonical(stored).as_str() {
        GCP_ENTERPRISE => GCP_ENTERPRISE,
        _ => GCP_STANDARD,
    }
}

/// The stored Google One tier when it is one of the Google One family.
pub(crate) fn google_one_family(stored: &str) -> Option<&'static str> {
    match canonical(stored).as_str() {
        GOOGLE_ONE_FREE => Some(GOOGLE_ONE_FREE),
        GOOGLE_AI_PRO => Some(GOOGLE_AI_PRO),
        GOOGLE_AI_ULTRA => Some(GOOGLE_AI_ULTRA),
        _ => None,
    }
}

/// Removes `tier_id` from `credentials` when it may not be stored.
pub(crate) fn drop_unstorable(credentials: &mut Credentials) {
    if credentials
        .get("tier_id")
        .and_then(|v| v.as_str())
        .is_some_and(|t| !is_storable(t))
    {
        credentials.remove("tier_id");
    }
}

/// Whether a tier id may be stored: `[A-Za-z0-9_/-]{1,64}`.
pub(crate) fn is_storable(tier: &str) -> bool {
    (1..=64).contains(&tier.len())
        && tier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'/' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_names_and_legacy_mapping() {
        for (raw, want) in [
            ("GCP_STANDARD", GCP_STANDARD),
            ("AI_PREMIUM", GOOGLE_AI_PRO),
            ("GOOGLE_ONE_UNLIMITED", GOOGLE_AI_ULTRA),
            ("FREE", GOOGLE_ONE_FREE),
            ("google_one_basic", GOOGLE_ONE_FREE),
            ("LEGACY", GCP_STANDARD),
            ("enterprise", GCP_ENTERPRISE),
            (" something-else ", "something-else"),
        ] {
            assert_eq!(canonical(raw), want, "{raw}");
        }
        assert_eq!(code_assist("enterprise"), GCP_ENTERPRISE);
        assert_eq!(code_assist("google_ai_pro"), GCP_STANDARD);
        assert_eq!(code_assist(""), GCP_STANDARD);
        assert_eq!(google_one_family("AI_PREMIUM"), Some(GOOGLE_AI_PRO));
        assert_eq!(google_one_family("gcp_standard"), None);
    }

    #[test]
    fn storable_tier_ids() {
        assert!(is_storable("gcp_standard"));
        assert!(is_storable("a/b-c_9"));
        assert!(!is_storable(""));
        assert!(!is_storable("has space"));
        assert!(!is_storable(&"x".repeat(65)));
    }
}
