//! Rows to [`Account`]s and back: parsing every column into its typed form
//! (a row that does not parse is `InvalidData`, never a panic or a default),
//! and sealing the secret columns.

use chrono::{DateTime, Utc};
use sea_orm::{FromQueryResult, QueryResult};
use serde_json::{Map, Value as Json};

use crate::db::Db;
use crate::entity::account::Model;
use crate::seal::{Sealing, context};
use refresh_core::{
    Account, AccountId, AccountStatus, AccountType, Credentials, Fingerprint, Platform, ProxyUrl,
    StorageError,
};

/// Every column of `accounts`, in entity order.
pub(crate) const ACCOUNT_COLUMNS: &str = "id, name, platform, account_type, status, error_message, credentials, refresh_fingerprint, extra, proxy_url, priority, credentials_version, expires_at, temp_unschedulable_until, temp_unschedulable_reason, created_at, updated_at";

/// The prefix of a sealed envelope; plaintext JSON never starts with it.
const SEALED: &str = "s1.";

/// Unix milliseconds of `at` (floored).
pub(crate) fn to_ms(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

/// The instant of `ms`.
pub(crate) fn from_ms(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
}

/// The `refresh_fingerprint` column of `credentials`: hex SHA-256 of the
/// refresh token as [`Credentials::refresh_token`] reads it, `""` for none.
pub(crate) fn fingerprint_column(credentials: &Credentials) -> String {
    credentials
        .refresh_token()
        .map(|t| Fingerprint::of(&t).to_hex())
        .unwrap_or_default()
}

/// The `expires_at` column of `credentials` (unknown or unreadable: NULL).
pub(crate) fn expiry_column(credentials: &Credentials) -> Option<i64> {
    credentials.expires_at().ok().flatten().map(to_ms)
}

/// `plaintext` as stored: sealed under `context`, or as is in plaintext
/// mode.
pub(crate) fn seal_text(
    sealing: &Sealing,
    op: &'static str,
    plaintext: &str,
    context: &[u8],
) -> Result<String, StorageError> {
    match sealing {
        Sealing::Plaintext => Ok(plaintext.to_owned()),
        Sealing::Sealed(sealer) => sealer
            .seal(plaintext.as_bytes(), context)
            .map_err(|e| StorageError::other(op, e.to_string())),
    }
}

/// A stored secret column back as text. Sealed values need a key; plaintext
/// values are read in either mode (a database from before sealing was
/// switched on; `rekey` seals them).
pub(crate) fn open_text(
    sealing: &Sealing,
    op: &'static str,
    column: &str,
    stored: &str,
    context: &[u8],
) -> Result<String, StorageError> {
    if !is_sealed(stored) {
        return Ok(stored.to_owned());
    }
    let Sealing::Sealed(sealer) = sealing else {
        return Err(StorageError::invalid_data(
            op,
            format!("{column} is sealed and no encryption key is configured"),
        ));
    };
    let bytes = sealer
        .open(stored, context)
        .map_err(|e| StorageError::invalid_data(op, format!("{column}: {e}")))?;
    String::from_utf8(bytes)
        .map_err(|_| StorageError::invalid_data(op, format!("{column} is not UTF-8")))
}

/// Whether a stored secret column holds a sealed envelope (else plaintext).
pub(crate) fn is_sealed(stored: &str) -> bool {
    stored.starts_with(SEALED)
}

/// Whether a stored secret column is plaintext or sealed under an old key.
pub(crate) fn needs_reseal(sealing: &Sealing, stored: &str) -> bool {
    match sealing {
        Sealing::Plaintext => false,
        Sealing::Sealed(sealer) => !sealer.is_current(stored),
    }
}

/// The `credentials` column of an account.
pub(crate) fn encode_credentials(
    sealing: &Sealing,
    op: &'static str,
    id: AccountId,
    platform: &Platform,
    credentials: &Credentials,
) -> Result<String, StorageError> {
    let json = serde_json::to_string(credentials.as_map())
        .map_err(|_| StorageError::other(op, "credentials cannot be serialized"))?;
    seal_text(sealing, op, &json, &context::credentials(id, platform))
}

/// The `proxy_url` column of an account.
pub(crate) fn encode_proxy(
    sealing: &Sealing,
    op: &'static str,
    id: AccountId,
    proxy: Option<&ProxyUrl>,
) -> Result<Option<String>, StorageError> {
    proxy
        .map(|p| seal_text(sealing, op, p.expose(), &context::proxy(id)))
        .transpose()
}

/// The `extra` column.
pub(crate) fn encode_extra(extra: &Map<String, Json>) -> String {
    Json::Object(extra.clone()).to_string()
}

/// Decodes a row read with [`ACCOUNT_COLUMNS`]. `credentials`, when given,
/// are what the statement just wrote (no need to open them again).
///
/// # Errors
/// `InvalidData` (with the row's id when it can be read) naming the column
/// that does not parse; the error never holds a value of a secret column.
pub(crate) fn decode_account(
    db: &Db,
    op: &'static str,
    row: &QueryResult,
    credentials: Option<&Credentials>,
) -> Result<Account, (Option<AccountId>, StorageError)> {
    let id = row.try_get::<i64>("", "id").ok().map(AccountId);
    let model = Model::from_query_result(row, "").map_err(|_| {
        (
            id,
            StorageError::invalid_data(op, "a column holds a value of the wrong type"),
        )
    })?;
    let id = AccountId(model.id);
    decode_model(db, op, model, credentials).map_err(|e| (Some(id), e))
}

/// A stored name read back only when it is stored exactly as its canonical
/// spelling: statements compare these columns with the canonical text
/// (`platform = 'anthropic'` in every credential write, `status = 'active'`
/// in the due listing), so a row spelled otherwise (`claude`, ` active`)
/// would read fine and never match a write.
///
/// # Errors
/// Why the text is refused (no secret: these columns hold names).
pub(crate) fn canonical<T>(stored: &str) -> Result<T, String>
where
    T: std::str::FromStr + std::fmt::Display,
    T::Err: std::fmt::Display,
{
    let value: T = stored.parse().map_err(|e: T::Err| e.to_string())?;
    if value.to_string() == stored {
        Ok(value)
    } else {
        Err(format!("not stored as its canonical name '{value}'"))
    }
}

fn decode_model(
    db: &Db,
    op: &'static str,
    m: Model,
    credentials: Option<&Credentials>,
) -> Result<Account, StorageError> {
    let id = AccountId(m.id);
    let bad = |column: &str, reason: String| {
        StorageError::invalid_data(op, format!("account {id}: {column}: {reason}"))
    };
    let platform: Platform = canonical(&m.platform).map_err(|e| bad("platform", e))?;
    let account_type: AccountType =
        canonical(&m.account_type).map_err(|e| bad("account_type", e))?;
    let status: AccountStatus = canonical(&m.status).map_err(|e| bad("status", e))?;
    if m.expires_at.is_some_and(|ms| from_ms(ms).is_none()) {
        return Err(bad("expires_at", "out of range".into()));
    }
    let credentials = match credentials {
        Some(c) => c.clone(),
        None => {
            let sealing = db.sealing();
            let context = context::credentials(id, &platform);
            let text = open_text(sealing, op, "credentials", &m.credentials, &context)
                .map_err(|e| bad("credentials", e.to_string()))?;
            Credentials::from_json_str(&text).map_err(|e| bad("credentials", e.to_string()))?
        }
    };
    // Every credential write compares this column with the fingerprint of
    // the credentials it read: a row where they differ could be refreshed
    // upstream but never written back, so it is not handed out at all.
    if m.refresh_fingerprint != fingerprint_column(&credentials) {
        return Err(bad(
            "refresh_fingerprint",
            "does not match the stored refresh token".into(),
        ));
    }
    let extra = match serde_json::from_str::<Json>(&m.extra) {
        Ok(Json::Object(map)) => map,
        Ok(_) => return Err(bad("extra", "not a JSON object".into())),
        Err(_) => return Err(bad("extra", "not JSON".into())),
    };
    let proxy = match &m.proxy_url {
        None => None,
        Some(stored) => {
            let text = open_text(db.sealing(), op, "proxy_url", stored, &context::proxy(id))
                .map_err(|e| bad("proxy_url", e.to_string()))?;
            Some(ProxyUrl::parse(&text).map_err(|e| bad("proxy_url", e.to_string()))?)
        }
    };
    let credentials_version = u64::try_from(m.credentials_version)
        .map_err(|_| bad("credentials_version", "negative".into()))?;
    db.remember_platform(id, &platform);
    let mut account = Account::new(id, platform, account_type, credentials);
    account.name = m.name;
    account.status = status;
    account.error_message = m.error_message;
    account.extra = extra;
    account.proxy = proxy;
    account.priority = m.priority;
    account.credentials_version = credentials_version;
    account.temp_unschedulable_until = m.temp_unschedulable_until.and_then(from_ms);
    account.temp_unschedulable_reason = m.temp_unschedulable_reason;
    Ok(account)
}
