//! Jittered exponential backoff.

use std::time::Duration;

/// `base × 2^(attempt−1)`, capped at `max`, then scaled by a uniform factor
/// in `[0.5, 1.0]` so that workers retrying together spread out.
pub(crate) fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    let exp = base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
        .min(max);
    exp.mul_f64(0.5 + 0.5 * fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_is_capped_and_jittered() {
        let base = Duration::from_secs(2);
        for _ in 0..200 {
            let first = backoff(base, Duration::from_secs(60), 1);
            assert!(first >= Duration::from_secs(1) && first <= base);
            let second = backoff(base, Duration::from_secs(60), 2);
            assert!(second >= Duration::from_secs(2) && second <= Duration::from_secs(4));
            assert!(backoff(base, Duration::from_secs(60), 30) <= Duration::from_secs(60));
        }
    }
}
