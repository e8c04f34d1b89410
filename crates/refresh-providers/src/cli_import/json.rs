//! Reading fields of a credential file.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::CliImportError;

/// Milliseconds below this (1973-03-03) are taken to be seconds written
/// where the format has milliseconds: refused rather than guessed.
const MIN_MILLIS: f64 = 1e11;

/// The JSON object in `bytes`.
pub(crate) fn object(bytes: &[u8]) -> Result<Map<String, Value>, CliImportError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(CliImportError::MissingField {
            field: "top-level object",
        }),
        Err(e) => Err(CliImportError::InvalidJson {
            line: e.line(),
            column: e.column(),
        }),
    }
}

/// A non-blank string, trimmed.
pub(crate) fn text(map: &Map<String, Value>, key: &str) -> Option<String> {
    map.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// A unix-milliseconds expiry (a number or a numeric string); `Ok(None)`
/// when absent or null.
pub(crate) fn millis(
    map: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<DateTime<Utc>>, CliImportError> {
    let invalid = |reason| CliImportError::InvalidExpiry { field, reason };
    let ms = match map.get(field) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        Some(_) => None,
    }
    .filter(|ms| ms.is_finite())
    .ok_or_else(|| invalid("not a number"))?;
    if ms < MIN_MILLIS {
        return Err(invalid("not unix milliseconds (too small: seconds?)"));
    }
    DateTime::from_timestamp_millis(ms.trunc() as i64)
        .map(Some)
        .ok_or_else(|| invalid("out of range"))
}

/// The claims of a JWT's payload, decoded without verification (a label,
/// as every peer reads them); `None` when it is not a JWT.
pub(crate) fn jwt_claims(token: &str) -> Option<Map<String, Value>> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(claims) => Some(claims),
        _ => None,
    }
}
