//! Percentiles of latency samples.

use std::time::Duration;

/// Median, p99 and throughput of one measurement.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct Summary {
    /// Operations measured.
    pub(crate) n: u64,
    /// Median latency, ns.
    pub(crate) p50_ns: f64,
    /// 99th percentile latency, ns.
    pub(crate) p99_ns: f64,
    /// Operations per second over the measurement's wall time.
    pub(crate) ops_per_s: f64,
}

/// The `p` quantile (0..=1) of sorted `samples`.
pub(crate) fn quantile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64
}

/// Summarizes `samples` (ns each, `overhead_ns` of timer cost subtracted)
/// of operations that took `wall` in all (`ops` operations).
pub(crate) fn summarize(
    mut samples: Vec<u64>,
    overhead_ns: u64,
    ops: u64,
    wall: Duration,
) -> Summary {
    for s in &mut samples {
        *s = s.saturating_sub(overhead_ns);
    }
    samples.sort_unstable();
    Summary {
        n: ops,
        p50_ns: quantile(&samples, 0.50),
        p99_ns: quantile(&samples, 0.99),
        ops_per_s: ops as f64 / wall.as_secs_f64().max(1e-9),
    }
}

/// Nanoseconds of `d`, saturating.
pub(crate) fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Milliseconds of `d`.
pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The cost of timing one operation: the median of back-to-back
/// `Instant::now()` pairs.
pub(crate) fn timer_overhead_ns() -> u64 {
    let mut samples: Vec<u64> = (0..100_000)
        .map(|_| {
            let t = std::time::Instant::now();
            ns(t.elapsed())
        })
        .collect();
    samples.sort_unstable();
    samples[samples.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_pick_the_nearest_rank() {
        let sorted: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&sorted, 0.5), 51.0);
        assert_eq!(quantile(&sorted, 0.99), 99.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
        let s = summarize(vec![30, 10, 20], 5, 3, Duration::from_secs(1));
        assert_eq!((s.p50_ns, s.ops_per_s), (15.0, 3.0));
    }
}
