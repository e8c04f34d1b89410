//! [`TokenGrant`]: a parsed token-endpoint response and how it becomes
//! credentials.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::credentials::keys;
use super::{Credentials, Secret};
use super::{add_duration, sub_duration};
use crate::error::ProviderError;

/// The fields every OAuth token response shares.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenGrant {
    /// New access token; `None` when a 2xx answer rotated the refresh
    /// token without a usable access token: the rotation is still the only
    /// copy of the new refresh token and must be stored (invariant 2); the
    /// flow stores it and reports `FlowError::EmptyCredentials`.
    pub access_token: Option<Secret>,
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

/// Which optional keys [`TokenGrant::to_credentials`] writes besides
/// `access_token`, `expires_at` and a non-blank `refresh_token` (always
/// written).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct GrantFields {
    /// Also store the grant's `expires_in` under the `expires_in` key, as a
    /// decimal string (Claude). `expires_at` is derived from it either way.
    pub write_expires_in: bool,
    /// Also store `token_type` and `scope`, each when non-blank.
    pub write_type_and_scope: bool,
}

impl TokenGrant {
    /// The largest token-endpoint body [`from_json`](Self::from_json)
    /// accepts (1 MiB). An executor should stop reading a body at this
    /// size rather than buffer whatever the upstream sends.
    pub const MAX_BODY_BYTES: usize = 1 << 20;

    /// Parses a 2xx token-endpoint body, the one parser every executor
    /// shares:
    /// - `access_token`: a non-blank string (trimmed); required unless the
    ///   body carries a `refresh_token` (a rotation without a usable access
    ///   token is `access_token: None`, never thrown away);
    /// - `refresh_token`: a non-blank string (trimmed), or absent / `null`
    ///   / blank → `None` (the merge then keeps the stored one);
    /// - `expires_in`: a JSON number (a fraction is truncated) or a numeric
    ///   string; absent, `null` or unreadable → `None` (the tokens are kept
    ///   and the expiry is unknown, which is due, rather than throwing away
    ///   a rotation over a cosmetic field);
    /// - `token_type`, `scope`: non-blank strings, else `None`.
    ///
    /// Unknown keys are ignored.
    ///
    /// # Errors
    /// [`ProviderError::InvalidResponse`] when the body is larger than
    /// [`MAX_BODY_BYTES`](Self::MAX_BODY_BYTES), is not JSON, is not a JSON
    /// object, has neither a usable `access_token` nor a `refresh_token`,
    /// or carries a `refresh_token`
    /// that is neither a string nor `null` (a rotation that cannot be
    /// read). The reason names the problem only: no body text, no token.
    pub fn from_json(body: &[u8]) -> Result<Self, ProviderError> {
        fn invalid(reason: &str) -> ProviderError {
            ProviderError::InvalidResponse {
                reason: reason.to_owned(),
            }
        }
        if body.len() > Self::MAX_BODY_BYTES {
            return Err(invalid("token response larger than 1 MiB"));
        }
        let map = lenient_object(body)?;
        let refresh_token = match map.get(keys::REFRESH_TOKEN) {
            None | Some(Value::Null) => None,
            Some(Value::String(rt)) if rt.trim().is_empty() => None,
            Some(Value::String(rt)) => Some(Secret::from(rt.trim())),
            Some(_) => return Err(invalid("token response refresh_token is not a string")),
        };
        let access_token = match map.get(keys::ACCESS_TOKEN) {
            Some(Value::String(at)) if !at.trim().is_empty() => Some(Secret::from(at.trim())),
            // A rotation without a usable access token is still a rotation.
            _ if refresh_token.is_some() => None,
            None | Some(Value::Null) => return Err(invalid("token response has no access_token")),
            Some(Value::String(_)) => {
                return Err(invalid("token response has a blank access_token"));
            }
            Some(_) => return Err(invalid("token response access_token is not a string")),
        };
        Ok(Self {
            access_token,
            refresh_token,
            token_type: non_blank_string(&map, keys::TOKEN_TYPE),
            expires_in: map.get(keys::EXPIRES_IN).and_then(seconds),
            scope: non_blank_string(&map, keys::SCOPE),
        })
    }

    /// Classifies a whole token-endpoint response: a 2xx body is parsed by
    /// [`from_json`](Self::from_json); any other status becomes
    /// [`ProviderError::from_response`], with `retry_after` the raw
    /// `Retry-After` header value (delta-seconds; an HTTP-date is not
    /// read and counts as absent).
    ///
    /// # Errors
    /// As [`from_json`](Self::from_json) for a 2xx; the classified error
    /// otherwise.
    pub fn from_token_response(
        status: u16,
        retry_after: Option<&str>,
        body: &[u8],
    ) -> Result<Self, ProviderError> {
        if (200..300).contains(&status) {
            Self::from_json(body)
        } else {
            let retry_after = retry_after
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            Err(ProviderError::from_response(status, body, retry_after))
        }
    }

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
        let mut creds = Credentials::new();
        if let Some(at) = &self.access_token {
            creds.insert(keys::ACCESS_TOKEN, at.expose());
        }
        if let Some(rt) = self.refresh_token.as_ref().filter(|rt| !rt.is_blank()) {
            creds.insert(keys::REFRESH_TOKEN, rt.expose());
        }
        // An expiry belongs to the access token it came with.
        if let Some(expires_in) = self.expires_in.filter(|_| self.access_token.is_some()) {
            creds.set_expires_at(rule.expires_at(now, expires_in));
            if fields.write_expires_in {
                creds.insert(keys::EXPIRES_IN, expires_in.to_string());
            }
        }
        if fields.write_type_and_scope {
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

/// The top-level object of `body`, each value parsed on its own: a value
/// that is valid JSON syntax but not representable (a number out of `f64`
/// range, like `"expires_in": 1e400`) is dropped as unreadable instead of
/// failing the whole body, which would throw away a rotated refresh token
/// over a cosmetic field.
fn lenient_object(body: &[u8]) -> Result<Map<String, Value>, ProviderError> {
    use std::collections::BTreeMap;

    use serde_json::value::RawValue;

    let invalid = |reason: &str| ProviderError::InvalidResponse {
        reason: reason.to_owned(),
    };
    let raw: BTreeMap<String, Box<RawValue>> = match serde_json::from_slice(body) {
        Ok(raw) => raw,
        Err(_) => {
            return Err(
                match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                    Ok(_) => invalid("token response is not a JSON object"),
                    Err(_) => invalid("token response is not JSON"),
                },
            );
        }
    };
    Ok(raw
        .into_iter()
        .filter_map(|(key, value)| {
            serde_json::from_str::<Value>(value.get())
                .ok()
                .map(|value| (key, value))
        })
        .collect())
}

/// `map[key]` when it is a non-blank string, trimmed.
fn non_blank_string(map: &Map<String, Value>, key: &str) -> Option<String> {
    map.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// Whole seconds from a JSON number or a numeric string; `None` otherwise.
fn seconds(value: &Value) -> Option<i64> {
    fn from_f64(f: f64) -> Option<i64> {
        // `as` saturates; clamping to 10 years happens in `ExpiryRule`.
        f.is_finite().then(|| f.trunc() as i64)
    }
    match value {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().and_then(from_f64)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i64>()
                .ok()
                .or_else(|| s.parse::<f64>().ok().and_then(from_f64))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CLAUDE: GrantFields = GrantFields {
        write_expires_in: true,
        write_type_and_scope: true,
    };

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    #[test]
    fn a_number_out_of_range_never_throws_the_rotation_away() {
        for body in [
            &br#"{"access_token":"at","refresh_token":"rt-2","expires_in":1e400}"#[..],
            br#"{"access_token":"at","refresh_token":"rt-2","expires_in":-1e400,"x":{"y":1e999}}"#,
        ] {
            let grant = TokenGrant::from_json(body).expect("the tokens are kept");
            assert_eq!(grant.refresh_token.unwrap().expose(), "rt-2");
            assert_eq!(grant.expires_in, None, "an unreadable expiry is unknown");
        }
        for (body, reason) in [
            (&b"[1,2]"[..], "not a JSON object"),
            (b"1e400", "not a JSON object"),
            (b"{\"access_token\":", "not JSON"),
            (b"<html>", "not JSON"),
        ] {
            let error = TokenGrant::from_json(body).unwrap_err();
            assert!(error.to_string().contains(reason), "{error}");
        }
    }

    #[test]
    fn build_claude_credentials_full_has_six_keys_with_decimal_strings() {
        let grant = TokenGrant {
            access_token: Some("at".into()),
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
            access_token: Some("at".into()),
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

#[cfg(test)]
mod from_json_tests {
    use super::*;

    fn parse(body: &str) -> Result<TokenGrant, ProviderError> {
        TokenGrant::from_json(body.as_bytes())
    }

    fn reason_of(body: &[u8]) -> String {
        match TokenGrant::from_json(body) {
            Err(ProviderError::InvalidResponse { reason }) => reason,
            other => panic!("expected InvalidResponse, got {other:?}"),
        }
    }

    #[test]
    fn from_json_reads_every_field_of_a_full_response() {
        let grant = parse(
            r#"{"access_token":" at-1 ","refresh_token":"rt-1","token_type":"Bearer",
                "expires_in":3600,"scope":"user:inference","id_token":"ignored"}"#,
        )
        .unwrap();
        assert_eq!(
            grant.access_token.as_ref().map(Secret::expose),
            Some("at-1"),
            "trimmed"
        );
        assert_eq!(
            grant.refresh_token.as_ref().map(Secret::expose),
            Some("rt-1")
        );
        assert_eq!(grant.token_type.as_deref(), Some("Bearer"));
        assert_eq!(grant.expires_in, Some(3600));
        assert_eq!(grant.scope.as_deref(), Some("user:inference"));
    }

    #[test]
    fn a_rotation_without_a_usable_access_token_is_kept_not_thrown_away() {
        for body in [
            r#"{"refresh_token":"rt-2","expires_in":3600}"#,
            r#"{"access_token":null,"refresh_token":"rt-2"}"#,
            r#"{"access_token":"  ","refresh_token":"rt-2"}"#,
            r#"{"access_token":42,"refresh_token":"rt-2"}"#,
        ] {
            let grant = parse(body).expect(body);
            assert_eq!(grant.access_token, None, "{body}");
            assert_eq!(
                grant.refresh_token.as_ref().map(Secret::expose),
                Some("rt-2")
            );
            let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
            let creds = grant.to_credentials(now, ExpiryRule::EXACT, GrantFields::default());
            assert!(creds.access_token().is_none(), "{body}");
            assert_eq!(
                creds.expires_at().ok().flatten(),
                None,
                "no expiry without its token"
            );
            assert_eq!(creds.refresh_token().unwrap().expose(), "rt-2");
        }
    }

    #[test]
    fn from_json_accepts_an_access_token_alone() {
        let grant = parse(r#"{"access_token":"at"}"#).unwrap();
        assert_eq!(grant.refresh_token, None);
        assert_eq!(grant.expires_in, None);
        assert_eq!(grant.token_type, None);
        assert_eq!(grant.scope, None);
    }

    #[test]
    fn from_json_rejects_non_json_and_non_object_bodies() {
        for body in [
            "<html>502 Bad Gateway</html>",
            "",
            "not json",
            "{\"access_token\":",
        ] {
            assert!(reason_of(body.as_bytes()).contains("not JSON"), "{body:?}");
        }
        for body in [r#"["access_token"]"#, r#""at""#, "42", "null"] {
            assert!(
                reason_of(body.as_bytes()).contains("not a JSON object"),
                "{body:?}"
            );
        }
    }

    #[test]
    fn from_json_rejects_a_missing_blank_or_non_string_access_token() {
        for body in [r#"{}"#, r#"{"access_token":null,"refresh_token":null}"#] {
            assert!(
                reason_of(body.as_bytes()).contains("no access_token"),
                "{body}"
            );
        }
        for body in [r#"{"access_token":""}"#, r#"{"access_token":"  \t"}"#] {
            assert!(reason_of(body.as_bytes()).contains("blank"), "{body}");
        }
        for body in [r#"{"access_token":42}"#, r#"{"access_token":{"v":"x"}}"#] {
            assert!(
                reason_of(body.as_bytes()).contains("not a string"),
                "{body}"
            );
        }
    }

    #[test]
    fn from_json_rejects_a_body_over_one_mebibyte_and_accepts_one_at_the_limit() {
        let prefix = r#"{"access_token":"at","pad":""#;
        let suffix = r#""}"#;
        let pad = TokenGrant::MAX_BODY_BYTES - prefix.len() - suffix.len();
        let at_limit = format!("{prefix}{}{suffix}", "x".repeat(pad));
        assert_eq!(at_limit.len(), TokenGrant::MAX_BODY_BYTES);
        assert!(TokenGrant::from_json(at_limit.as_bytes()).is_ok());
        let over = format!("{prefix}{}{suffix}", "x".repeat(pad + 1));
        assert!(reason_of(over.as_bytes()).contains("1 MiB"));
    }

    #[test]
    fn from_json_treats_a_blank_or_null_refresh_token_as_absent() {
        for body in [
            r#"{"access_token":"at","refresh_token":""}"#,
            r#"{"access_token":"at","refresh_token":"   "}"#,
            r#"{"access_token":"at","refresh_token":null}"#,
        ] {
            assert_eq!(parse(body).unwrap().refresh_token, None, "{body}");
        }
        assert_eq!(
            parse(r#"{"access_token":"at","refresh_token":" rt-2 "}"#)
                .unwrap()
                .refresh_token
                .map(|rt| rt.expose().to_owned()),
            Some("rt-2".to_owned())
        );
    }

    #[test]
    fn from_json_rejects_a_refresh_token_that_is_not_a_string() {
        for body in [
            r#"{"access_token":"at","refresh_token":7}"#,
            r#"{"access_token":"at","refresh_token":["rt"]}"#,
        ] {
            assert!(
                reason_of(body.as_bytes()).contains("refresh_token"),
                "{body}"
            );
        }
    }

    #[test]
    fn from_json_reads_expires_in_as_a_number_or_a_numeric_string() {
        for (raw, want) in [
            ("3600", Some(3600)),
            (r#""3600""#, Some(3600)),
            (r#"" 60 ""#, Some(60)),
            ("3599.9", Some(3599)),
            (r#""3599.9""#, Some(3599)),
            ("-5", Some(-5)),
            ("1e300", Some(i64::MAX)),
            ("null", None),
            (r#""soon""#, None),
            (r#""NaN""#, None),
            ("true", None),
            ("{}", None),
        ] {
            let body = format!(r#"{{"access_token":"at","expires_in":{raw}}}"#);
            assert_eq!(parse(&body).unwrap().expires_in, want, "expires_in {raw}");
        }
    }

    #[test]
    fn from_json_drops_blank_or_non_string_token_type_and_scope() {
        let grant = parse(r#"{"access_token":"at","token_type":" ","scope":["a"]}"#).unwrap();
        assert_eq!(grant.token_type, None);
        assert_eq!(grant.scope, None);
    }

    #[test]
    fn from_json_errors_carry_no_body_text_or_token() {
        let bodies: [&[u8]; 3] = [
            br#"<html>SECRETAT1234567890abcdef</html>"#,
            br#"{"access_token":{"v":"SECRETAT1234567890abcdef"},"scope":"SECRETSC"}"#,
            br#"{"access_token":"SECRETAT1234567890abcdef","refresh_token":5}"#,
        ];
        for body in bodies {
            let err = TokenGrant::from_json(body).unwrap_err();
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains("SECRET"), "{shown}");
        }
    }

    #[test]
    fn from_token_response_parses_2xx_and_classifies_everything_else() {
        let ok = TokenGrant::from_token_response(201, None, br#"{"access_token":"at"}"#).unwrap();
        assert_eq!(ok.access_token.as_ref().map(Secret::expose), Some("at"));
        assert!(matches!(
            TokenGrant::from_token_response(200, None, b"<html></html>"),
            Err(ProviderError::InvalidResponse { .. })
        ));
        assert!(matches!(
            TokenGrant::from_token_response(400, None, br#"{"error":"invalid_grant"}"#),
            Err(ProviderError::InvalidGrant { .. })
        ));
        assert_eq!(
            TokenGrant::from_token_response(429, Some(" 7 "), b""),
            Err(ProviderError::RateLimited {
                retry_after: Some(Duration::from_secs(7))
            })
        );
        assert_eq!(
            TokenGrant::from_token_response(429, Some("Wed, 21 Oct 2015 07:28:00 GMT"), b""),
            Err(ProviderError::RateLimited { retry_after: None }),
            "an HTTP-date is not read"
        );
        assert!(matches!(
            TokenGrant::from_token_response(503, None, b"<html>down</html>"),
            Err(ProviderError::ServerError {
                status: Some(503),
                ..
            })
        ));
    }
}
