//! How long an access token may stay cached (REFERENCE.md §5.2).

use std::time::Duration;

use chrono::{DateTime, Utc};

/// Cached tokens leave the cache this long before they expire.
pub const CACHE_SKEW: Duration = Duration::from_secs(5 * 60);
/// TTL of a token whose expiry is unknown.
pub const UNKNOWN_EXPIRY_TTL: Duration = Duration::from_secs(30 * 60);

/// The cache TTL of a token: unknown expiry → 30 min; more than 5 min left →
/// time left − 5 min; up to 5 min left → time left; expired → `None` (not
/// cached).
pub fn cache_ttl(expires_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<Duration> {
    let Some(at) = expires_at else {
        return Some(UNKNOWN_EXPIRY_TTL);
    };
    let left = (at - now).to_std().ok().filter(|d| !d.is_zero())?;
    Some(if left > CACHE_SKEW {
        left - CACHE_SKEW
    } else {
        left
    })
}

/// [`cache_ttl`], shortened so the entry lapses by the time the token
/// enters the request path's refresh `skew`: a cached token is never
/// served past the point where a miss would have refreshed it. A token
/// already inside the skew is cached for at most `inside_skew`.
pub(crate) fn request_ttl(
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    skew: Duration,
    inside_skew: Duration,
) -> Option<Duration> {
    let ttl = cache_ttl(expires_at, now)?;
    let Some(left) = expires_at.and_then(|at| (at - now).to_std().ok()) else {
        return Some(ttl);
    };
    Some(match left.checked_sub(skew).filter(|d| !d.is_zero()) {
        Some(until_due) => ttl.min(until_due),
        None => ttl.min(inside_skew),
    })
}

/// The TTL after a failed refresh whose existing token is reused: the
/// failure TTL (≤ 0 means 1 min), never past the token's expiry.
pub fn failure_ttl(
    failure_ttl: Duration,
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<Duration> {
    let ttl = if failure_ttl.is_zero() {
        Duration::from_secs(60)
    } else {
        failure_ttl
    };
    match expires_at {
        None => Some(ttl),
        Some(at) => (at - now)
            .to_std()
            .ok()
            .filter(|d| !d.is_zero())
            .map(|left| left.min(ttl)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn in_secs(s: i64) -> Option<DateTime<Utc>> {
        Some(now() + chrono::Duration::seconds(s))
    }

    #[test]
    fn cache_ttl_rows() {
        assert_eq!(cache_ttl(None, now()), Some(Duration::from_secs(1800)));
        assert_eq!(
            cache_ttl(in_secs(3600), now()),
            Some(Duration::from_secs(3300))
        );
        assert_eq!(
            cache_ttl(in_secs(120), now()),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            cache_ttl(in_secs(300), now()),
            Some(Duration::from_secs(300))
        );
        assert_eq!(cache_ttl(in_secs(0), now()), None);
        assert_eq!(cache_ttl(in_secs(-10), now()), None);
    }

    #[test]
    fn failure_ttl_defaults_to_a_minute_and_never_outlives_the_token() {
        assert_eq!(
            failure_ttl(Duration::ZERO, None, now()),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            failure_ttl(Duration::from_secs(60), in_secs(20), now()),
            Some(Duration::from_secs(20))
        );
        assert_eq!(
            failure_ttl(Duration::from_secs(60), in_secs(-1), now()),
            None
        );
    }
}
