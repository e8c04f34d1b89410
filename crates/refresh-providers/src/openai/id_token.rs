//! The claims read from OpenAI's `id_token` (decoded without signature
//! verification, as every peer does: it only labels the account).

use chrono::{DateTime, Utc};
use refresh_core::Credentials;
use serde_json::Value;

use crate::jwt;

/// `exp` may be this many seconds in the past.
const EXP_TOLERANCE_SECS: i64 = 120;
/// The namespace of OpenAI's custom claims.
const AUTH_CLAIMS: &str = "https://api.openai.com/auth";

/// The identity claims kept in the credentials; empty ones are not
/// written.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct IdClaims {
    pub(crate) email: Option<String>,
    pub(crate) chatgpt_account_id: Option<String>,
    pub(crate) chatgpt_user_id: Option<String>,
    pub(crate) organization_id: Option<String>,
    pub(crate) plan_type: Option<String>,
}

/// Why an `id_token` was not used (never its text).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum IdTokenProblem {
    /// Not three dot-separated base64url parts with a JSON object payload.
    Malformed,
    /// `exp` is more than 120 s in the past.
    Expired,
}

impl IdTokenProblem {
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Expired => "expired",
        }
    }
}

/// Decodes the payload of `token` and reads its claims at `now`.
pub(crate) fn parse(token: &str, now: DateTime<Utc>) -> Result<IdClaims, IdTokenProblem> {
    let token = token.trim();
    if token.split('.').count() != 3 {
        return Err(IdTokenProblem::Malformed);
    }
    let claims = jwt::claims(token).ok_or(IdTokenProblem::Malformed)?;
    if let Some(exp) = claims.get("exp").and_then(Value::as_i64)
        && exp.saturating_add(EXP_TOLERANCE_SECS) < now.timestamp()
    {
        return Err(IdTokenProblem::Expired);
    }
    let text = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let auth = claims.get(AUTH_CLAIMS);
    let auth_field = |name: &str| text(auth.and_then(|a| a.get(name)));
    let organization_id = auth
        .and_then(|a| a.get("organizations"))
        .and_then(Value::as_array)
        .and_then(|orgs| {
            orgs.iter()
                .find(|o| o.get("is_default").and_then(Value::as_bool) == Some(true))
                .or_else(|| orgs.first())
        })
        .and_then(|o| text(o.get("id")));
    Ok(IdClaims {
        email: text(claims.get("email")).or_else(|| {
            text(
                claims
                    .get("https://api.openai.com/profile")
                    .and_then(|p| p.get("email")),
            )
        }),
        chatgpt_account_id: auth_field("chatgpt_account_id"),
        chatgpt_user_id: auth_field("chatgpt_user_id").or_else(|| auth_field("user_id")),
        organization_id,
        plan_type: auth_field("chatgpt_plan_type"),
    })
}

/// Writes `token` into `credentials` under `id_token`, preceded by its
/// claims when it decodes at `now`; returns its email claim, or why the
/// claims were skipped.
pub(crate) fn write_identity(
    credentials: &mut Credentials,
    token: String,
    now: DateTime<Utc>,
) -> Result<Option<String>, IdTokenProblem> {
    let email = parse(&token, now).map(|claims| {
        let email = claims.email.clone();
        for (key, value) in [
            ("email", claims.email),
            ("chatgpt_account_id", claims.chatgpt_account_id),
            ("chatgpt_user_id", claims.chatgpt_user_id),
            ("organization_id", claims.organization_id),
            ("plan_type", claims.plan_type),
        ] {
            if let Some(value) = value {
                credentials.insert(key, value);
            }
        }
        email
    });
    credentials.insert("id_token", token);
    email
}

#[cfg(test)]
pub(crate) mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;
    use serde_json::json;

    /// An unsigned JWT with `claims` (the shape the emulator issues).
    pub(crate) fn jwt(claims: &Value) -> String {
        let enc = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
        format!(
            "{}.{}.c2lnbmF0dXJl",
            enc(&json!({"alg": "RS256", "typ": "JWT"})),
            enc(claims)
        )
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    #[test]
    fn reads_every_claim_and_the_default_organization() {
        let token = jwt(&json!({
            "email": "dev@example.com",
            "exp": 1_700_003_600,
            AUTH_CLAIMS: {
                "chatgpt_account_id": "acct-1",
                "chatgpt_user_id": "user-1",
                "chatgpt_plan_type": "plus",
                "organizations": [
                    {"id": "org-a", "is_default": false},
                    {"id": "org-b", "is_default": true}
                ]
            }
        }));
        assert_eq!(
            parse(&token, now()).unwrap(),
            IdClaims {
                email: Some("dev@example.com".into()),
                chatgpt_account_id: Some("acct-1".into()),
                chatgpt_user_id: Some("user-1".into()),
                organization_id: Some("org-b".into()),
                plan_type: Some("plus".into()),
            }
        );
    }

    #[test]
    fn falls_back_to_user_id_the_first_organization_and_the_profile_email() {
        let token = jwt(&json!({
            "https://api.openai.com/profile": {"email": "p@example.com"},
            AUTH_CLAIMS: {"user_id": "u-2", "organizations": [{"id": "org-first"}, {"id": "org-2"}]}
        }));
        let claims = parse(&token, now()).unwrap();
        assert_eq!(claims.chatgpt_user_id.as_deref(), Some("u-2"));
        assert_eq!(claims.organization_id.as_deref(), Some("org-first"));
        assert_eq!(claims.email.as_deref(), Some("p@example.com"));
        assert_eq!(claims.plan_type, None);
    }

    #[test]
    fn expired_and_malformed_tokens_are_typed_problems() {
        let expired = jwt(&json!({"email": "x@example.com", "exp": 1_700_000_000 - 121}));
        assert_eq!(parse(&expired, now()), Err(IdTokenProblem::Expired));
        let within = jwt(&json!({"email": "x@example.com", "exp": 1_700_000_000 - 119}));
        assert!(parse(&within, now()).is_ok());
        for bad in [
            "",
            "a.b",
            "a.b.c.d",
            "a.!!!.c",
            "a.bm90IGpzb24.c",
            "a.WzFd.c",
        ] {
            assert_eq!(parse(bad, now()), Err(IdTokenProblem::Malformed), "{bad}");
        }
    }
}
