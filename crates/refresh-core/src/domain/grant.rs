//! [`TokenGrant`]: a parsed token-endpoint response and how it becomes
//! credentials.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::credentials::keys;
use super::{Credentials, Secret};
use super::{add_duration, sub_duration};

/// The fields every OAuth token response shares.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenGrant {
    /// New access token.
    pub access_token: Secret,
    /// New refresh token, when the upstream rotated it.
    pub refresh_token: Option<Secret>,
    /// Token type, e.g. `Bearer`.
    pub token_type: Option<String>,
    /// Validity in seconds from now.
    pub expires_in: Option<i64>,
    /// Granted scope.
    pub scope: Option<String>,
}

/// How a platform turns `expires_in` into `expires_at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ExpiryRule {
    /// Subtracted from `now + expires_in` (Google: 300 s).
    pub margin: Duration,
    /// Lower bound `now + floor` (Google: 30 s; prevents refresh storms).
    pub floor: Duration,
}

impl ExpiryRule {
    /// `now + expires_in`, no margin (Claude, OpenAI).
    pub const EXACT: Self = Self {
        margin: Duration::ZERO,
        floor: Duration::ZERO,
    };
    /// `max(now + expires_in − 300 s, now + 30 s)` (Gemini, Antigravity).
    pub const GOOGLE: Self = Self {
        margin: Duration::from_secs(300),
        floor: Duration::from_secs(30),
    };

    /// The expiry of a grant of `expires_in` seconds received at `now`.
    /// `expires_in` is clamped to `0..=10 years`, so a hostile or garbled
    /// response cannot overflow the arithmetic or produce an expiry the
    /// parser would later reject.
    pub fn expires_at(self, now: DateTime<Utc>, expires_in: i64) -> DateTime<Utc> {
        let lifetime = Duration::from_secs(expires_in.clamp(0, MAX_EXPIRES_IN) as u64);
        let exact = add_duration(now, lifetime);
        sub_duration(exact, self.margin).max(add_duration(now, self.floor))
    }
}

/// Ten years: the longest `expires_in` taken at face value.
const MAX_EXPIRES_IN: i64 = 10 * 365 * 24 * 3600;

/// Which optional keys [`TokenGrant::to_credentials`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct GrantFields {
    /// Write `expires_in` as a decimal string (Claude).
    pub expires_in: bool,
    /// Write `token_type` and `scope` when non-empty.
    pub type_and_scope: bool,
}

impl TokenGrant {
    /// The credentials this grant produces (before merging over the old
    /// ones): `access_token`, canonical `expires_at`, and `refresh_token`,
    /// `token_type`, `expires_in`, `scope` as `fields` asks, each only when
    /// non-empty so the merge keeps the old value.
    pub fn to_credentials(
        &self,
        now: DateTime<Utc>,
        rule: ExpiryRule,
        fields: GrantFields,
    ) -> Credentials {
        let mut creds = Credentials::new().with(keys::ACCESS_TOKEN, self.access_token.expose());
        if let Some(rt) = self.refresh_token.as_ref().filter(|rt| !rt.is_blank()) {
            creds.insert(keys::REFRESH_TOKEN, rt.expose());
        }
        if let Some(expires_in) = self.expires_in {
            creds.set_expires_at(rule.expires_at(now, expires_in));
            if fields.expires_in {
                creds.insert(keys::EXPIRES_IN, expires_in.to_string());
            }
        }
        if fields.type_and_scope {
            for (key, value) in [
                (keys::TOKEN_TYPE, &self.token_type),
                (keys::SCOPE, &self.scope),
            ] {
                if let Some(v) = value.as_deref().filter(|v| !v.trim().is_empty()) {
                    creds.insert(key, v);
                }
            }
        }
        creds
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CLAUDE: GrantFields = GrantFields {
        expires_in: true,
        type_and_scope: true,
    };

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    #[test]
    fn build_claude_credentials_full_has_six_keys_with_decimal_strings() {
        let grant = TokenGrant {
            access_token: "at".into(),
            refresh_token: Some("rt".into()),
            token_type: Some("Bearer".into()),
            expires_in: Some(3600),
            scope: Some("user:inference".into()),
        };
        let creds = grant.to_credentials(now(), ExpiryRule::EXACT, CLAUDE);
        assert_eq!(creds.as_map().len(), 6);
        assert_eq!(creds.get("expires_in"), Some(&json!("3600")));
        assert_eq!(creds.get("expires_at"), Some(&json!("1700003600")));
        assert_eq!(creds.get("token_type"), Some(&json!("Bearer")));
        assert_eq!(creds.get("scope"), Some(&json!("user:inference")));
        assert_eq!(creds.refresh_token().unwrap().expose(), "rt");
    }

    #[test]
    fn build_claude_credentials_minimal_omits_empty_refresh_token_and_scope() {
        let grant = TokenGrant {
            access_token: "at".into(),
            refresh_token: Some("".into()),
            token_type: Some("Bearer".into()),
            expires_in: Some(60),
            scope: None,
        };
        let creds = grant.to_credentials(now(), ExpiryRule::EXACT, CLAUDE);
        assert!(creds.get("refresh_token").is_none());
        assert!(creds.get("scope").is_none());
        assert_eq!(creds.as_map().len(), 4);
    }

    #[test]
    fn google_rule_subtracts_margin_and_clamps_to_floor() {
        assert_eq!(
            ExpiryRule::GOOGLE.expires_at(now(), 3600),
            now() + chrono::Duration::seconds(3300)
        );
        // Antigravity defect 17: a short expires_in must not land in the past.
        assert_eq!(
            ExpiryRule::GOOGLE.expires_at(now(), i64::MAX),
            now() + chrono::Duration::seconds(MAX_EXPIRES_IN - 300),
            "invariant 10: absurd expires_in is clamped, not a panic"
        );
        assert_eq!(ExpiryRule::EXACT.expires_at(now(), -5), now());
        assert_eq!(
            ExpiryRule::GOOGLE.expires_at(now(), 100),
            now() + chrono::Duration::seconds(30)
        );
    }
}
