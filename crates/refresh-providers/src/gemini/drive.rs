//! The Google One tier from the Drive storage quota (REFERENCE.md §6.3).

use chrono::{DateTime, SecondsFormat, Utc};
use refresh_core::Credentials;
use serde_json::{Map, Value};

use super::tier::{
    GOOGLE_AI_PRO, GOOGLE_AI_ULTRA, GOOGLE_ONE_FREE, GOOGLE_ONE_UNKNOWN, google_one_family,
};
use crate::code_assist::{CallError, Caller};

/// Credential keys written from the Drive quota.
pub(crate) const DRIVE_LIMIT: &str = "drive_storage_limit";
pub(crate) const DRIVE_USAGE: &str = "drive_storage_usage";
pub(crate) const DRIVE_UPDATED_AT: &str = "drive_tier_updated_at";

const GIB: i64 = 1024 * 1024 * 1024;
const TIB: i64 = 1024 * GIB;

/// The tier of a Drive storage limit in bytes: > 100 TiB → ultra,
/// ≥ 2 TiB → pro, ≥ 15 GiB → free, else unknown.
pub(crate) fn tier_of_limit(limit: i64) -> &'static str {
    if limit > 100 * TIB {
        GOOGLE_AI_ULTRA
    } else if limit >= 2 * TIB {
        GOOGLE_AI_PRO
    } else if limit >= 15 * GIB {
        GOOGLE_ONE_FREE
    } else {
        GOOGLE_ONE_UNKNOWN
    }
}

/// When the Drive tier was last read: `drive_tier_updated_at` (RFC 3339)
/// from the credentials, where the refresh writes it, or from `extra`,
/// where older rows keep it.
pub(crate) fn last_update(
    creds: &Credentials,
    extra: &Map<String, Value>,
) -> Option<DateTime<Utc>> {
    let parse = |v: &Value| {
        v.as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s.trim()).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    creds
        .get(DRIVE_UPDATED_AT)
        .and_then(parse)
        .or_else(|| extra.get(DRIVE_UPDATED_AT).and_then(parse))
}

/// The quota numbers of a `drive/v3/about?fields=storageQuota` answer
/// (Drive sends them as decimal strings): `(limit, usage)`.
pub(crate) fn quota(answer: &Value) -> Option<(i64, i64)> {
    let quota = answer.get("storageQuota")?;
    let number = |v: Option<&Value>| match v? {
        Value::String(s) => s.trim().parse::<i64>().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    };
    Some((
        number(quota.get("limit"))?,
        number(quota.get("usage")).unwrap_or(0),
    ))
}

/// Asks Drive (`url`) for the storage quota: writes it into `credentials`
/// (updated at `now()`) and returns the tier of its limit, else
/// [`fallback`]`(stored)`.
///
/// # Errors
/// The failed call's; nothing is written then.
pub(crate) async fn read_tier(
    caller: &Caller<'_>,
    url: &str,
    credentials: &mut Credentials,
    now: impl FnOnce() -> DateTime<Utc>,
    stored: &str,
) -> Result<&'static str, CallError> {
    let Some((limit, usage)) = quota(&caller.get(url).await?) else {
        return Ok(fallback(stored));
    };
    credentials.insert(DRIVE_LIMIT, limit);
    credentials.insert(DRIVE_USAGE, usage);
    credentials.insert(
        DRIVE_UPDATED_AT,
        now().to_rfc3339_opts(SecondsFormat::Secs, true),
    );
    Ok(match tier_of_limit(limit) {
        GOOGLE_ONE_UNKNOWN => fallback(stored),
        known => known,
    })
}

/// The tier to keep when Drive gives none usable: the stored Google One
/// tier, else `google_one_free`.
pub(crate) fn fallback(stored: &str) -> &'static str {
    google_one_family(stored).unwrap_or(GOOGLE_ONE_FREE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn thresholds() {
        assert_eq!(tier_of_limit(101 * TIB), GOOGLE_AI_ULTRA);
        assert_eq!(tier_of_limit(100 * TIB), GOOGLE_AI_PRO);
        assert_eq!(tier_of_limit(2 * TIB), GOOGLE_AI_PRO);
        assert_eq!(tier_of_limit(2 * TIB - 1), GOOGLE_ONE_FREE);
        assert_eq!(tier_of_limit(15 * GIB), GOOGLE_ONE_FREE);
        assert_eq!(tier_of_limit(15 * GIB - 1), GOOGLE_ONE_UNKNOWN);
    }

    #[test]
    fn quota_reads_strings_and_numbers() {
        assert_eq!(
            quota(&json!({"storageQuota": {"limit": "16106127360", "usage": "12"}})),
            Some((16_106_127_360, 12))
        );
        assert_eq!(quota(&json!({"storageQuota": {"limit": 5}})), Some((5, 0)));
        assert_eq!(quota(&json!({"storageQuota": {"usage": "1"}})), None);
        assert_eq!(quota(&json!({})), None);
    }
}
