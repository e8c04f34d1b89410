//! [`OAuthErrorCode`] and parsing of upstream error bodies.

use std::fmt;

use serde_json::Value;

/// A normalized OAuth `error` code (`invalid_grant`, `refresh_token_reused`,
/// ...): trimmed, lower-cased, limited to `[a-z0-9_.-]` and 64 characters.
/// Anything else normalizes to `unrecognized`, so a code can never carry
/// token material into a log line.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct OAuthErrorCode(String);

impl OAuthErrorCode {
    /// Normalizes a raw code.
    pub fn new(raw: &str) -> Self {
        let code = raw.trim().to_ascii_lowercase();
        let valid = !code.is_empty()
            && code.len() <= 64
            && code.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
            });
        Self(if valid {
            code
        } else {
            "unrecognized".to_owned()
        })
    }

    /// The normalized text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The refresh token itself was refused: `invalid_grant`,
    /// `refresh_token_reused`, `refresh_token_invalidated`,
    /// `refresh_token_expired`. Race recovery applies (invariant 6).
    pub fn is_grant_rejected(&self) -> bool {
        matches!(
            self.0.as_str(),
            "invalid_grant"
                | "refresh_token_reused"
                | "refresh_token_invalidated"
                | "refresh_token_expired"
        )
    }

    /// `invalid_client` or `unauthorized_client`.
    pub fn is_client_rejected(&self) -> bool {
        matches!(self.0.as_str(), "invalid_client" | "unauthorized_client")
    }

    /// `access_denied`.
    pub fn is_access_denied(&self) -> bool {
        self.0 == "access_denied"
    }

    /// `slow_down`, `rate_limit_exceeded`, `too_many_requests`.
    pub fn is_rate_limited(&self) -> bool {
        matches!(
            self.0.as_str(),
            "slow_down" | "rate_limit_exceeded" | "too_many_requests"
        )
    }

    /// `temporarily_unavailable`, `server_error`.
    pub fn is_transient(&self) -> bool {
        matches!(self.0.as_str(), "temporarily_unavailable" | "server_error")
    }
}

impl fmt::Display for OAuthErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for OAuthErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OAuthErrorCode({})", self.0)
    }
}

/// The code and a sanitized description found in an error body.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct OAuthErrorBody {
    /// The `error` code, flat (`{"error": "invalid_grant"}`) or nested
    /// (`{"error": {"code": "refresh_token_reused"}}`, or the nested
    /// `status` when `code` is numeric).
    pub code: Option<OAuthErrorCode>,
    /// `error_description` or the nested `message`, sanitized.
    pub description: Option<String>,
}

impl OAuthErrorBody {
    /// Parses a body; non-JSON bodies (HTML error pages) yield `None`.
    pub fn parse(body: &[u8]) -> Option<Self> {
        let value: Value = serde_json::from_slice(body).ok()?;
        let error = value.get("error")?;
        let (code, description) = match error {
            Value::String(code) => (
                Some(code.as_str()),
                value.get("error_description").and_then(Value::as_str),
            ),
            Value::Object(nested) => (
                nested
                    .get("code")
                    .and_then(Value::as_str)
                    .or_else(|| nested.get("status").and_then(Value::as_str)),
                nested.get("message").and_then(Value::as_str),
            ),
            _ => (None, None),
        };
        Some(Self {
            code: code.map(OAuthErrorCode::new),
            description: description
                .map(sanitize_description)
                .filter(|d| !d.is_empty()),
        })
    }
}

/// Longest description kept.
const MAX_DESCRIPTION: usize = 160;
/// Words at least this long without spaces are treated as possible tokens.
const TOKEN_LIKE_LEN: usize = 16;

/// Shortens an upstream description and blanks anything that could be token
/// material (see [`redact_token_like`]), so it can be logged and stored
/// (invariant 9).
pub fn sanitize_description(raw: &str) -> String {
    let mut out = redact_token_like(raw);
    if out.chars().count() > MAX_DESCRIPTION {
        out = out.chars().take(MAX_DESCRIPTION).collect();
        out.push('…');
    }
    out
}

/// Replaces every word that could be token material with `[redacted]` and
/// drops control characters; whitespace is folded to single spaces. A word
/// is token-like when it is at least 16 characters long and is not made of
/// lower-case letters and `_-.:()` alone (OAuth codes such as
/// `refresh_token_reused` stay readable). Used for upstream descriptions
/// and for every reason that reaches an account's `error_message`.
pub fn redact_token_like(raw: &str) -> String {
    let mut out = String::new();
    for word in raw.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        let identifier = word
            .chars()
            .all(|c| c.is_ascii_lowercase() || "_-.:()".contains(c));
        if word.chars().count() >= TOKEN_LIKE_LEN && !identifier {
            out.push_str("[redacted]");
        } else {
            out.extend(word.chars().filter(|c| !c.is_control()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flat_rfc6749_shape() {
        let b = OAuthErrorBody::parse(br#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#).unwrap();
        assert!(b.code.unwrap().is_grant_rejected());
        assert_eq!(
            b.description.as_deref(),
            Some("Token has been expired or revoked.")
        );
    }

    #[test]
    fn parses_nested_shapes() {
        let openai = OAuthErrorBody::parse(br#"{"error":{"message":"reused","type":"invalid_request_error","code":"refresh_token_reused"}}"#).unwrap();
        assert_eq!(openai.code.unwrap().as_str(), "refresh_token_reused");
        let google = OAuthErrorBody::parse(
            br#"{"error":{"code":400,"message":"bad","status":"INVALID_GRANT"}}"#,
        )
        .unwrap();
        assert!(google.code.unwrap().is_grant_rejected());
    }

    #[test]
    fn html_and_garbage_bodies_are_not_oauth_errors() {
        assert!(OAuthErrorBody::parse(b"<html><body>502 Bad Gateway</body></html>").is_none());
        assert!(OAuthErrorBody::parse(b"").is_none());
        assert_eq!(
            OAuthErrorBody::parse(br#"{"error": 5}"#).unwrap().code,
            None
        );
    }

    #[test]
    fn codes_are_normalized_and_cannot_carry_secrets() {
        assert_eq!(
            OAuthErrorCode::new(" INVALID_GRANT ").as_str(),
            "invalid_grant"
        );
        assert_eq!(
            OAuthErrorCode::new("rt_secret value with spaces").as_str(),
            "unrecognized"
        );
    }

    #[test]
    fn invariant_9_descriptions_are_sanitized() {
        let d = sanitize_description(
            "refresh token sk-ant-ort01-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA is invalid\u{7}",
        );
        assert!(!d.contains("AAAAAAAA"), "{d}");
        assert!(d.contains("[redacted]"));
        assert!(sanitize_description(&"word ".repeat(100)).chars().count() <= MAX_DESCRIPTION + 1);
    }
}
