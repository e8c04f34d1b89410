//! [`Credentials`]: the JSON credential map with typed accessors.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::expiry::{canonical_expiry, json_kind, parse_expiry};
use super::secret::Secret;
use crate::error::CredentialsError;

/// Well-known credential keys.
pub mod keys {
    /// The OAuth access token.
    pub const ACCESS_TOKEN: &str = "access_token";
    /// The OAuth refresh token.
    pub const REFRESH_TOKEN: &str = "refresh_token";
    /// Access-token expiry (canonical: decimal unix seconds).
    pub const EXPIRES_AT: &str = "expires_at";
    /// Seconds of validity from the last grant.
    pub const EXPIRES_IN: &str = "expires_in";
    /// Token type, e.g. `Bearer`.
    pub const TOKEN_TYPE: &str = "token_type";
    /// Granted scope.
    pub const SCOPE: &str = "scope";
    /// Legacy Go version stamp (unix milliseconds); superseded by
    /// `Account::credentials_version`.
    pub const LEGACY_TOKEN_VERSION: &str = "_token_version";
    /// Static API key (Antigravity `upstream` accounts).
    pub const API_KEY: &str = "api_key";
}

/// Keys whose values are shown by `Debug`; every other value is redacted.
const SHOWN_KEYS: &[&str] = &[
    keys::EXPIRES_AT,
    keys::EXPIRES_IN,
    keys::TOKEN_TYPE,
    keys::SCOPE,
    keys::LEGACY_TOKEN_VERSION,
    "project_id",
    "oauth_type",
    "tier_id",
    "plan_type",
];

/// The credential map of an account (`credentials` column, a JSON object).
///
/// Token values are read through [`Secret`]-returning accessors; `Debug`
/// shows the keys and only non-secret values, so a credentials value can be
/// logged by mistake without leaking anything (invariant 9).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Credentials(Map<String, Value>);

impl Credentials {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Wraps a JSON object.
    pub fn from_map(map: Map<String, Value>) -> Self {
        Self(map)
    }

    /// Parses stored JSON text.
    ///
    /// # Errors
    /// [`CredentialsError::InvalidJson`] when the text is not JSON,
    /// [`CredentialsError::NotAnObject`] when it is JSON but not an object.
    pub fn from_json_str(text: &str) -> Result<Self, CredentialsError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| CredentialsError::InvalidJson {
                line: e.line(),
                column: e.column(),
            })?;
        Self::try_from(value)
    }

    /// The underlying map.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// Consumes into the underlying map.
    pub fn into_map(self) -> Map<String, Value> {
        self.0
    }

    /// Whether the map has no keys.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A raw value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// Sets a raw value; returns `self` for chaining.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.insert(key, value);
        self
    }

    /// Sets a raw value.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        self.0.insert(key.into(), value.into());
    }

    /// Removes a key.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        self.0.remove(key)
    }

    /// The string view of a value (REFERENCE.md §2.3): missing or null → "",
    /// string as is, integer as decimal, float truncated to an integer, any
    /// other type → "".
    pub fn string_view(&self, key: &str) -> String {
        match self.0.get(key) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(i) => i.to_string(),
                None => n
                    .as_u64()
                    .map(|u| u.to_string())
                    .or_else(|| n.as_f64().map(|f| (f.trunc() as i64).to_string()))
                    .unwrap_or_default(),
            },
            _ => String::new(),
        }
    }

    /// A non-blank secret value, trimmed.
    pub fn secret(&self, key: &str) -> Option<Secret> {
        match self.0.get(key) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(Secret::from(s.trim())),
            _ => None,
        }
    }

    /// The access token, if present and non-blank.
    pub fn access_token(&self) -> Option<Secret> {
        self.secret(keys::ACCESS_TOKEN)
    }

    /// The refresh token, if present and non-blank.
    pub fn refresh_token(&self) -> Option<Secret> {
        self.secret(keys::REFRESH_TOKEN)
    }

    /// The access-token expiry; `Ok(None)` when unknown.
    ///
    /// # Errors
    /// See [`parse_expiry`](super::parse_expiry): millisecond-looking numbers
    /// and unparseable values are typed errors.
    pub fn expires_at(&self) -> Result<Option<DateTime<Utc>>, CredentialsError> {
        parse_expiry(self.0.get(keys::EXPIRES_AT))
    }

    /// Writes `expires_at` in the canonical encoding.
    pub fn set_expires_at(&mut self, at: DateTime<Utc>) {
        self.0
            .insert(keys::EXPIRES_AT.to_owned(), canonical_expiry(at));
    }

    /// Rewrites `expires_at` in the canonical encoding, if it is set.
    ///
    /// # Errors
    /// As [`Credentials::expires_at`]; the map is left unchanged on error.
    pub fn canonicalize(&mut self) -> Result<(), CredentialsError> {
        if let Some(at) = self.expires_at()? {
            self.set_expires_at(at);
        }
        Ok(())
    }

    /// The legacy `_token_version` stamp: an integer as is, a float
    /// truncated, a numeric string trimmed and parsed, anything else 0.
    pub fn legacy_token_version(&self) -> u64 {
        match self.0.get(keys::LEGACY_TOKEN_VERSION) {
            Some(Value::Number(n)) => n
                .as_u64()
                .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f.trunc() as u64))
                .unwrap_or(0),
            Some(Value::String(s)) => {
                let s = s.trim();
                s.parse::<u64>()
                    .ok()
                    .or_else(|| {
                        s.parse::<f64>()
                            .ok()
                            .filter(|f| f.is_finite() && *f >= 0.0)
                            .map(|f| f.trunc() as u64)
                    })
                    .unwrap_or(0)
            }
            _ => 0,
        }
    }

    /// Merges `new` over `old` (REFERENCE.md §3.6): start from `new`, copy
    /// every key of `old` that `new` lacks. New keys win; an omitted refresh
    /// token keeps the old one; unrelated keys survive. A token value of
    /// `new` that is blank (`""`, whitespace, `null`, not a string) counts as
    /// omitted, so an answer can never wipe a stored token. A missing `new`
    /// counts as empty; a missing `old` returns `new` unchanged.
    pub fn merge(old: Option<&Credentials>, new: Option<Credentials>) -> Credentials {
        let mut merged = new.unwrap_or_default();
        if let Some(old) = old {
            for key in [keys::ACCESS_TOKEN, keys::REFRESH_TOKEN] {
                if merged.secret(key).is_none() {
                    merged.0.remove(key);
                }
            }
            for (k, v) in &old.0 {
                merged.0.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        merged
    }

    /// The keys whose values `self` changed relative to `base`: what a
    /// refresh contributed, to be re-applied over a newer stored map
    /// without reverting another writer's keys.
    pub fn changed_since(&self, base: &Credentials) -> Credentials {
        Self(
            self.0
                .iter()
                .filter(|(k, v)| base.get(k) != Some(*v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    }

    /// `self` merged over `old`; see [`Credentials::merge`].
    pub fn merged_over(self, old: &Credentials) -> Credentials {
        Self::merge(Some(old), Some(self))
    }
}

impl TryFrom<Value> for Credentials {
    type Error = CredentialsError;

    fn try_from(value: Value) -> Result<Self, Self::Error> {
        match value {
            Value::Object(map) => Ok(Self(map)),
            other => Err(CredentialsError::NotAnObject {
                found: json_kind(&other),
            }),
        }
    }
}

impl From<Credentials> for Value {
    fn from(value: Credentials) -> Self {
        Value::Object(value.0)
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (k, v) in &self.0 {
            if SHOWN_KEYS.contains(&k.as_str()) {
                map.entry(k, v);
            } else {
                map.entry(k, &format_args!("[redacted]"));
            }
        }
        map.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn creds(v: Value) -> Credentials {
        Credentials::try_from(v).unwrap()
    }

    #[test]
    fn merge_new_keys_win_and_missing_old_keys_are_copied() {
        let old = creds(
            json!({"access_token": "old", "refresh_token": "r1", "intercept_warmup_requests": true}),
        );
        let new = creds(json!({"access_token": "new", "scope": "s"}));
        let merged = Credentials::merge(Some(&old), Some(new));
        assert_eq!(merged.get("access_token"), Some(&json!("new")));
        assert_eq!(merged.get("scope"), Some(&json!("s")));
        assert_eq!(merged.get("intercept_warmup_requests"), Some(&json!(true)));
    }

    #[test]
    fn merge_never_lets_a_blank_token_win() {
        let old = creds(json!({"access_token": "a1", "refresh_token": "r1"}));
        for blank in [json!(""), json!("   "), json!(null), json!(5)] {
            let new = creds(json!({"access_token": "a2", "refresh_token": blank}));
            let merged = new.merged_over(&old);
            assert_eq!(merged.refresh_token().unwrap().expose(), "r1", "{blank}");
            assert_eq!(merged.access_token().unwrap().expose(), "a2");
        }
    }

    #[test]
    fn changed_since_keeps_only_what_changed() {
        let base = creds(json!({"access_token": "a1", "refresh_token": "r1", "project_id": ""}));
        let issued = creds(json!({"access_token": "a2", "refresh_token": "r2", "project_id": ""}));
        let delta = issued.changed_since(&base);
        assert_eq!(delta.as_map().len(), 2);
        let stored =
            creds(json!({"access_token": "a1", "refresh_token": "r1", "project_id": "p-9"}));
        let merged = delta.merged_over(&stored);
        assert_eq!(merged.get("project_id"), Some(&json!("p-9")));
        assert_eq!(merged.refresh_token().unwrap().expose(), "r2");
    }

    #[test]
    fn merge_missing_new_map_yields_old_keys() {
        let old = creds(json!({"a": 1, "b": "x"}));
        assert_eq!(Credentials::merge(Some(&old), None), old);
    }

    #[test]
    fn merge_missing_old_map_returns_new_unchanged() {
        let new = creds(json!({"a": 1}));
        assert_eq!(Credentials::merge(None, Some(new.clone())), new);
    }

    #[test]
    fn merge_both_missing_is_empty() {
        assert!(Credentials::merge(None, None).is_empty());
    }

    #[test]
    fn merge_replaces_access_token_and_keeps_omitted_refresh_token() {
        let old = creds(json!({"access_token": "a1", "refresh_token": "r1"}));
        let merged = creds(json!({"access_token": "a2"})).merged_over(&old);
        assert_eq!(merged.access_token().unwrap().expose(), "a2");
        assert_eq!(merged.refresh_token().unwrap().expose(), "r1");
    }

    #[test]
    fn version_parsed_from_integer_float_numeric_string_and_garbage() {
        let v = |x: Value| creds(json!({ "_token_version": x })).legacy_token_version();
        assert_eq!(v(json!(1_700_000_000_123_u64)), 1_700_000_000_123);
        assert_eq!(v(json!(1_700_000_000_123.0)), 1_700_000_000_123);
        assert_eq!(v(json!(" 42 ")), 42);
        assert_eq!(v(json!("42.9")), 42);
        assert_eq!(v(json!("garbage")), 0);
        assert_eq!(v(json!({"x": 1})), 0);
        assert_eq!(Credentials::new().legacy_token_version(), 0);
    }

    #[test]
    fn string_view_follows_reference_rules() {
        let c = creds(json!({"s": "x", "i": 12, "f": 12.9, "b": true, "n": null}));
        assert_eq!(c.string_view("s"), "x");
        assert_eq!(c.string_view("i"), "12");
        assert_eq!(c.string_view("f"), "12");
        assert_eq!(c.string_view("b"), "");
        assert_eq!(c.string_view("n"), "");
        assert_eq!(c.string_view("missing"), "");
    }

    #[test]
    fn canonicalize_writes_one_encoding() {
        let mut c = creds(json!({"expires_at": "2023-11-15T06:13:20+08:00"}));
        c.canonicalize().unwrap();
        assert_eq!(c.get("expires_at"), Some(&json!("1700000000")));
        let mut bad = creds(json!({"expires_at": 1_700_000_000_000_i64}));
        assert!(bad.canonicalize().is_err());
        assert_eq!(bad.get("expires_at"), Some(&json!(1_700_000_000_000_i64)));
    }

    #[test]
    fn invariant_10_non_object_credentials_are_typed_errors() {
        assert!(matches!(
            Credentials::from_json_str("[1,2]"),
            Err(CredentialsError::NotAnObject { found: "an array" })
        ));
        assert!(matches!(
            Credentials::from_json_str("{not json"),
            Err(CredentialsError::InvalidJson { .. })
        ));
    }

    #[test]
    fn invariant_9_debug_redacts_token_values() {
        let c = creds(json!({
            "access_token": "at-secret", "refresh_token": "rt-secret", "id_token": "idt-secret",
            "client_secret": "cs-secret", "expires_at": "1700000000", "email": "a@b.c"
        }));
        let shown = format!("{c:?}");
        for s in ["at-secret", "rt-secret", "idt-secret", "cs-secret", "a@b.c"] {
            assert!(!shown.contains(s), "{shown}");
        }
        assert!(shown.contains("1700000000"));
        assert!(shown.contains("refresh_token"));
    }

    #[test]
    fn blank_tokens_read_as_missing() {
        let c = creds(json!({"access_token": "  ", "refresh_token": 5}));
        assert!(c.access_token().is_none());
        assert!(c.refresh_token().is_none());
    }
}
