//! The account import format (`oauth-refresh accounts import FILE`): a JSON
//! array of `{name, platform, type, credentials, extra, proxy}` objects
//! (plus optional `status` and `priority`), checked entry by entry before
//! anything is stored.
//!
//! ```json
//! [
//!   {
//!     "name": "team-claude-1",
//!     "platform": "anthropic",
//!     "type": "oauth",
//!     "credentials": {"access_token": "...", "refresh_token": "...", "expires_at": "1767225600"},
//!     "extra": {},
//!     "proxy": null
//!   }
//! ]
//! ```
//!
//! - `platform`: `anthropic` (or `claude`), `openai`, `gemini`,
//!   `antigravity`, or a plugin platform the stack has an executor for.
//! - `type`: `oauth` accounts are refreshed; `setup-token`, `apikey`,
//!   `upstream` and `bedrock` are stored and served as they are.
//! - `credentials`: an object (or a string holding one); an `oauth` entry
//!   needs `access_token`, `refresh_token` and `expires_at` (unix seconds as
//!   a number or a string, or RFC 3339 with any offset).
//! - Errors name the entry's index and the field, never a value.

use std::fmt;

use refresh_core::{
    AccountStatus, AccountType, ClaimKey, ClaimState, ClaimStore, Credentials, ExecutorRegistry,
    Fingerprint, Platform, ProxyUrl, RefreshTokenTaken, StorageError, TokenHolder,
};
use refresh_core::{NewAccount, ports::MAX_NAME_CHARS};
use serde_json::{Map, Value};

/// The keys an entry may have.
const FIELDS: [&str; 8] = [
    "name",
    "platform",
    "type",
    "credentials",
    "extra",
    "proxy",
    "status",
    "priority",
];

/// The largest import file read, in bytes.
pub const MAX_IMPORT_BYTES: usize = 64 * 1024 * 1024;

/// Why an import file was refused. Never quotes a value from the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ImportError {
    /// The entry's index in the array; `None` for the file as a whole.
    pub index: Option<usize>,
    /// The field at fault (`credentials.refresh_token`), or empty.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.index, self.field.is_empty()) {
            (Some(index), false) => {
                write!(f, "entry {index}, field `{}`: {}", self.field, self.reason)
            }
            (Some(index), true) => write!(f, "entry {index}: {}", self.reason),
            (None, false) => write!(f, "field `{}`: {}", self.field, self.reason),
            (None, true) => write!(f, "{}", self.reason),
        }
    }
}

impl ImportError {
    fn entry(index: usize, field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            index: Some(index),
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The error of an entry whose refresh token another account (or an
    /// earlier entry) holds: names the entry, the field and the holder.
    pub fn taken(taken: RefreshTokenTaken) -> Self {
        let reason = match taken.holder {
            TokenHolder::Account(id) => format!("already held by account {id}"),
            TokenHolder::Entry(entry) => format!("the same refresh token as entry {entry}"),
        };
        Self {
            index: taken.entry,
            field: "credentials.refresh_token".into(),
            reason: format!(
                "{reason} (two accounts sharing one rotating refresh token lose each other's rotations)"
            ),
        }
    }

    fn file(reason: impl Into<String>) -> Self {
        Self {
            index: None,
            field: String::new(),
            reason: reason.into(),
        }
    }
}

/// Parses and checks an import file. `executors` decides which platforms
/// are known (the four built-ins always are).
///
/// # Errors
/// [`ImportError`] for the first problem: not JSON, not an array, an entry
/// that is not an object, an unknown or missing field, a value of the wrong
/// kind, an `oauth` entry without `access_token`, `refresh_token` or a
/// readable `expires_at`, an entry repeating an earlier entry's refresh
/// token.
pub fn parse_import(
    bytes: &[u8],
    executors: &ExecutorRegistry,
) -> Result<Vec<NewAccount>, ImportError> {
    if bytes.len() > MAX_IMPORT_BYTES {
        return Err(ImportError::file(format!(
            "the file is larger than {MAX_IMPORT_BYTES} bytes"
        )));
    }
    let document: Value = serde_json::from_slice(bytes).map_err(|error| {
        ImportError::file(format!(
            "not valid JSON (line {}, column {}): {}",
            error.line(),
            error.column(),
            json_error_category(&error)
        ))
    })?;
    let Value::Array(entries) = document else {
        return Err(ImportError::file(
            "expected a JSON array of accounts at the top level",
        ));
    };
    let accounts = entries
        .into_iter()
        .enumerate()
        .map(|(index, entry)| parse_entry(index, entry, executors))
        .collect::<Result<Vec<_>, _>>()?;
    refresh_core::ports::duplicate_refresh_tokens("import", &accounts).map_err(|e| {
        e.taken_refresh_token()
            .map_or_else(|| ImportError::file(e.to_string()), ImportError::taken)
    })?;
    Ok(accounts)
}

/// serde_json's message without the part that may quote the input.
fn json_error_category(error: &serde_json::Error) -> &'static str {
    match error.classify() {
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected data",
        serde_json::error::Category::Eof => "unexpected end of file",
    }
}

fn parse_entry(
    index: usize,
    entry: Value,
    executors: &ExecutorRegistry,
) -> Result<NewAccount, ImportError> {
    let err = |field: &str, reason: &str| ImportError::entry(index, field, reason);
    let Value::Object(mut object) = entry else {
        return Err(ImportError::entry(index, "", "expected a JSON object"));
    };
    if let Some(unknown) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(ImportError::entry(
            index,
            sanitize_key(unknown),
            format!("unknown field (expected one of {})", FIELDS.join(", ")),
        ));
    }
    let name = required_string(index, &mut object, "name")?;
    if name.trim().is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(err(
            "name",
            &format!("must be 1 to {MAX_NAME_CHARS} characters, not blank"),
        ));
    }
    let platform_name = required_string(index, &mut object, "platform")?;
    let platform: Platform = platform_name.parse().map_err(|_| {
        err(
            "platform",
            "unknown platform (expected anthropic, openai, gemini or antigravity)",
        )
    })?;
    if matches!(platform, Platform::Other(_)) && executors.get(&platform).is_none() {
        return Err(err(
            "platform",
            "unknown platform (expected anthropic, openai, gemini or antigravity)",
        ));
    }
    let type_name = required_string(index, &mut object, "type")?;
    let account_type: AccountType = type_name.parse().map_err(|_| {
        err(
            "type",
            "unknown type (expected oauth, setup-token, apikey, upstream or bedrock)",
        )
    })?;
    let credentials = match object.remove("credentials") {
        Some(Value::Object(map)) => Credentials::from_map(map),
        Some(Value::String(text)) => Credentials::from_json_str(&text)
            .map_err(|_| err("credentials", "a string that does not hold a JSON object"))?,
        Some(Value::Null) | None => return Err(err("credentials", "missing")),
        Some(_) => return Err(err("credentials", "expected a JSON object")),
    };
    if account_type == AccountType::OAuth {
        for key in ["access_token", "refresh_token", "expires_at"] {
            let present = match key {
                "access_token" => credentials.access_token().is_some_and(|t| !t.is_blank()),
                "refresh_token" => credentials.refresh_token().is_some_and(|t| !t.is_blank()),
                _ => !credentials.string_view(key).trim().is_empty(),
            };
            if !present {
                return Err(ImportError::entry(
                    index,
                    format!("credentials.{key}"),
                    "missing or blank (an oauth account needs access_token, refresh_token and expires_at)",
                ));
            }
        }
    }
    if let Err(error) = credentials.expires_at() {
        return Err(ImportError::entry(
            index,
            "credentials.expires_at",
            error.to_string(),
        ));
    }
    let extra = match object.remove("extra") {
        Some(Value::Object(map)) => map,
        Some(Value::Null) | None => Map::new(),
        Some(_) => return Err(err("extra", "expected a JSON object")),
    };
    let proxy = match object.remove("proxy") {
        Some(Value::String(text)) if text.trim().is_empty() => None,
        Some(Value::String(text)) => Some(ProxyUrl::parse(&text).map_err(|_| {
            err(
                "proxy",
                "not a usable proxy URL (http, https, socks5 or socks5h with a host and port)",
            )
        })?),
        Some(Value::Null) | None => None,
        Some(_) => return Err(err("proxy", "expected a string or null")),
    };
    let status = match object.remove("status") {
        Some(Value::String(text)) => text
            .parse::<AccountStatus>()
            .map_err(|_| err("status", "expected active, disabled or error"))?,
        Some(Value::Null) | None => AccountStatus::Active,
        Some(_) => return Err(err("status", "expected a string")),
    };
    let priority = match object.remove("priority") {
        Some(Value::Number(n)) => n
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| err("priority", "expected a 32-bit integer"))?,
        Some(Value::Null) | None => 0,
        Some(_) => return Err(err("priority", "expected an integer")),
    };
    let account = NewAccount {
        status,
        extra,
        proxy,
        priority,
        ..NewAccount::new(name, platform, account_type, credentials)
    };
    account
        .validate()
        .map_err(|error| ImportError::entry(index, "", error.to_string()))?;
    Ok(account)
}

fn required_string(
    index: usize,
    object: &mut Map<String, Value>,
    field: &str,
) -> Result<String, ImportError> {
    match object.remove(field) {
        Some(Value::String(text)) => Ok(text),
        Some(Value::Null) | None => Err(ImportError::entry(index, field, "missing")),
        Some(_) => Err(ImportError::entry(index, field, "expected a string")),
    }
}

/// A key from the file, shortened and stripped of control characters (it
/// is echoed in the error).
fn sanitize_key(key: &str) -> String {
    key.chars().filter(|c| !c.is_control()).take(64).collect()
}

/// Refuses entries whose refresh token already has a generation claim that
/// is open, quarantined or consumed: presenting it again could redeem a
/// generation twice (core README, "Residual risks"). An answered claim is
/// fine: the first flow applies its answer.
///
/// # Errors
/// [`CheckError::Claimed`] naming the entry; [`CheckError::Store`] when the
/// claim store cannot be asked.
pub async fn check_claims(
    accounts: &[NewAccount],
    claims: &dyn ClaimStore,
) -> Result<(), CheckError> {
    for (index, account) in accounts.iter().enumerate() {
        let Some(token) = account.credentials.refresh_token() else {
            continue;
        };
        if token.is_blank() {
            continue;
        }
        let key = ClaimKey::new(account.platform.clone(), Fingerprint::of(&token));
        let Some(claim) = claims.get(&key).await.map_err(CheckError::Store)? else {
            continue;
        };
        let reason = match claim.state {
            ClaimState::Answered => continue,
            ClaimState::Open => "is being redeemed right now (an open generation claim)",
            ClaimState::Quarantined => {
                "may already have been redeemed (its generation claim is quarantined)"
            }
            ClaimState::Consumed => "was already redeemed (its generation claim is consumed)",
            _ => "has a generation claim",
        };
        return Err(CheckError::Claimed(ImportError::entry(
            index,
            "credentials.refresh_token",
            format!(
                "this refresh token {reason}; export the account's current credentials and import those"
            ),
        )));
    }
    Ok(())
}

/// Why [`check_claims`] refused.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// An entry's refresh token has a claim.
    #[error(transparent)]
    Claimed(ImportError),
    /// The claim store could not be asked.
    #[error("cannot check generation claims: {0}")]
    Store(#[source] StorageError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> ExecutorRegistry {
        ExecutorRegistry::new()
    }

    fn parse(text: &str) -> Result<Vec<NewAccount>, ImportError> {
        parse_import(text.as_bytes(), &registry())
    }

    const GOOD: &str = r#"{"name":"a","platform":"anthropic","type":"oauth",
        "credentials":{"access_token":"at-secret","refresh_token":"rt-secret","expires_at":1767225600}}"#;

    #[test]
    fn a_good_entry_parses_with_defaults() {
        let accounts = parse(&format!("[{GOOD}]")).unwrap();
        assert_eq!(accounts.len(), 1);
        assert_eq!(accounts[0].platform, Platform::Anthropic);
        assert_eq!(accounts[0].status, AccountStatus::Active);
        assert!(accounts[0].proxy.is_none());
    }

    #[test]
    fn every_expiry_encoding_is_read() {
        for expires in [
            "1767225600",
            r#""1767225600""#,
            r#""2026-01-01T08:00:00+08:00""#,
        ] {
            let entry = GOOD.replace("1767225600", "X").replace("X", expires);
            parse(&format!("[{entry}]")).unwrap_or_else(|e| panic!("{expires}: {e}"));
        }
    }

    #[test]
    fn errors_name_the_entry_and_the_field_and_never_a_value() {
        let cases = [
            (
                GOOD.replace(r#""refresh_token":"rt-secret","#, ""),
                "credentials.refresh_token",
            ),
            (GOOD.replace("anthropic", "myspace"), "platform"),
            (GOOD.replace(r#""oauth""#, r#""nope""#), "type"),
            (
                GOOD.replace("1767225600", "1767225600000"),
                "credentials.expires_at",
            ),
            (
                GOOD.replace(r#""name":"a","#, r#""name":"a","nmae":"x","#),
                "nmae",
            ),
            (GOOD.replace(r#""name":"a""#, r#""name":5"#), "name"),
            (
                GOOD.replace(
                    r#""type":"oauth","#,
                    r#""type":"oauth","proxy":"ftp://u:pw-secret@h:1","#,
                ),
                "proxy",
            ),
        ];
        for (bad, field) in cases {
            let error = parse(&format!("[{GOOD},{bad}]")).unwrap_err();
            assert_eq!(error.index, Some(1), "{error}");
            assert_eq!(error.field, field, "{error}");
            let text = error.to_string();
            assert!(text.starts_with("entry 1, field"), "{text}");
            for secret in ["at-secret", "rt-secret", "pw-secret"] {
                assert!(!text.contains(secret), "{text}");
            }
        }
    }

    #[test]
    fn a_file_that_is_not_an_array_of_objects_is_refused() {
        assert!(
            parse("{")
                .unwrap_err()
                .to_string()
                .contains("not valid JSON")
        );
        assert!(parse("{}").unwrap_err().to_string().contains("JSON array"));
        assert_eq!(parse("[1]").unwrap_err().index, Some(0));
        assert!(parse("[]").unwrap().is_empty());
    }

    #[test]
    fn other_types_need_no_refresh_token() {
        let entry =
            r#"[{"name":"k","platform":"openai","type":"apikey","credentials":{"api_key":"sk"}}]"#;
        assert_eq!(parse(entry).unwrap()[0].account_type, AccountType::ApiKey);
    }
}
