//! Saturating arithmetic between wall-clock instants and `std` durations.
//!
//! Configured TTLs and windows can be arbitrarily large (`Duration::MAX` is a
//! valid "forever"); these helpers never panic and saturate at the ends of
//! chrono's range instead.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

/// `at + d`, saturating at the largest representable instant.
pub fn add_duration(at: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(d)
        .ok()
        .and_then(|delta| at.checked_add_signed(delta))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `at − d`, saturating at the smallest representable instant.
pub fn sub_duration(at: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(d)
        .ok()
        .and_then(|delta| at.checked_sub_signed(delta))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invariant_10_huge_durations_saturate_instead_of_panicking() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        assert_eq!(add_duration(now, Duration::MAX), DateTime::<Utc>::MAX_UTC);
        assert_eq!(sub_duration(now, Duration::MAX), DateTime::<Utc>::MIN_UTC);
        assert_eq!(
            add_duration(now, Duration::from_secs(60)).timestamp(),
            1_700_000_060
        );
        assert_eq!(
            sub_duration(now, Duration::from_secs(60)).timestamp(),
            1_699_999_940
        );
    }
}
