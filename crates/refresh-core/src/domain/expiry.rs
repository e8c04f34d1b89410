//! Reading every stored `expires_at` encoding and writing the canonical one.
//!
//! Stored data mixes unix-seconds strings, JSON numbers and RFC 3339 strings
//! in any offset (REFERENCE.md §2.3, defect 18). Reads are lenient about the
//! encoding but strict about meaning: a value that looks like milliseconds is
//! rejected rather than guessed. Writes always produce a decimal unix-seconds
//! string.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::error::CredentialsError;

/// Values at or above this are taken to be milliseconds (10^12 seconds is in
/// the year 33658).
const MILLISECOND_THRESHOLD: f64 = 1e12;

/// Parses an `expires_at` value.
///
/// - missing, `null` or a blank string: `Ok(None)` (unknown expiry);
/// - an integer, a float (truncated) or a numeric string (trimmed, `1.7e9`
///   accepted): unix seconds;
/// - an RFC 3339 string with any offset, optional fractional seconds.
///
/// # Errors
/// [`CredentialsError::MillisecondTimestamp`] for numbers ≥ 10^12,
/// [`CredentialsError::InvalidExpiry`] for negative numbers, other JSON types
/// and strings that are neither numeric nor RFC 3339.
pub fn parse_expiry(value: Option<&Value>) -> Result<Option<DateTime<Utc>>, CredentialsError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                from_unix_seconds(i as f64).map(Some)
            } else {
                from_unix_seconds(n.as_f64().unwrap_or(f64::NAN)).map(Some)
            }
        }
        Some(Value::String(s)) => parse_expiry_str(s),
        Some(other) => Err(CredentialsError::InvalidExpiry {
            reason: format!("expected a string or a number, found {}", json_kind(other)),
        }),
    }
}

fn parse_expiry_str(raw: &str) -> Result<Option<DateTime<Utc>>, CredentialsError> {
    let s = raw.trim();
    if s.is_empty() {
        return Ok(None);
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(s) {
        return Ok(Some(at.with_timezone(&Utc)));
    }
    if let Ok(i) = s.parse::<i64>() {
        return from_unix_seconds(i as f64).map(Some);
    }
    if let Ok(f) = s.parse::<f64>() {
        return from_unix_seconds(f).map(Some);
    }
    Err(CredentialsError::InvalidExpiry {
        reason: "neither unix seconds nor RFC 3339".to_owned(),
    })
}

fn from_unix_seconds(secs: f64) -> Result<DateTime<Utc>, CredentialsError> {
    if !secs.is_finite() || secs < 0.0 {
        return Err(CredentialsError::InvalidExpiry {
            reason: "not a non-negative finite number".to_owned(),
        });
    }
    if secs >= MILLISECOND_THRESHOLD {
        return Err(CredentialsError::MillisecondTimestamp {
            value: secs.trunc() as i64,
        });
    }
    DateTime::from_timestamp(secs.trunc() as i64, 0).ok_or_else(|| {
        CredentialsError::InvalidExpiry {
            reason: "out of range".to_owned(),
        }
    })
}

/// The canonical stored encoding: a decimal unix-seconds string.
pub fn canonical_expiry(at: DateTime<Utc>) -> Value {
    Value::String(at.timestamp().to_string())
}

pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(secs: i64) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(secs, 0)
    }

    #[test]
    fn parsing_unix_seconds_as_string_number_float_and_exponent() {
        assert_eq!(
            parse_expiry(Some(&json!("1700000000"))).unwrap(),
            at(1_700_000_000)
        );
        assert_eq!(
            parse_expiry(Some(&json!(1_700_000_000))).unwrap(),
            at(1_700_000_000)
        );
        assert_eq!(
            parse_expiry(Some(&json!(1_700_000_000.9))).unwrap(),
            at(1_700_000_000)
        );
        assert_eq!(
            parse_expiry(Some(&json!("1.7e9"))).unwrap(),
            at(1_700_000_000)
        );
    }

    #[test]
    fn parsing_trims_surrounding_whitespace() {
        assert_eq!(
            parse_expiry(Some(&json!("  1700000000\n"))).unwrap(),
            at(1_700_000_000)
        );
        assert_eq!(
            parse_expiry(Some(&json!(" 2023-11-14T22:13:20Z "))).unwrap(),
            at(1_700_000_000)
        );
    }

    #[test]
    fn parsing_rfc3339_with_any_offset() {
        assert_eq!(
            parse_expiry(Some(&json!("2023-11-15T06:13:20+08:00"))).unwrap(),
            at(1_700_000_000)
        );
        assert_eq!(
            parse_expiry(Some(&json!("2023-11-14T17:13:20.5-05:00"))).unwrap(),
            at(1_700_000_000).map(|t| t + chrono::Duration::milliseconds(500))
        );
    }

    #[test]
    fn parsing_missing_null_and_blank_is_unknown() {
        assert_eq!(parse_expiry(None).unwrap(), None);
        assert_eq!(parse_expiry(Some(&Value::Null)).unwrap(), None);
        assert_eq!(parse_expiry(Some(&json!("   "))).unwrap(), None);
    }

    #[test]
    fn parsing_milliseconds_is_a_typed_error() {
        for v in [
            json!(1_700_000_000_000_i64),
            json!("1700000000000"),
            json!(" 1700000000000 "),
        ] {
            assert!(matches!(
                parse_expiry(Some(&v)),
                Err(CredentialsError::MillisecondTimestamp {
                    value: 1_700_000_000_000
                })
            ));
        }
    }

    #[test]
    fn invariant_10_garbage_expiry_is_a_typed_error() {
        for v in [
            json!("tomorrow"),
            json!(true),
            json!({"a": 1}),
            json!([1]),
            json!(-5),
        ] {
            assert!(
                matches!(
                    parse_expiry(Some(&v)),
                    Err(CredentialsError::InvalidExpiry { .. })
                ),
                "{v}"
            );
        }
    }

    #[test]
    fn canonical_encoding_is_a_unix_seconds_string() {
        assert_eq!(
            canonical_expiry(at(1_700_000_000).unwrap()),
            json!("1700000000")
        );
    }
}
