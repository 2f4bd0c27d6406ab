//! Latency quantiles from bucket counts, interpolated as Prometheus' `histogram_quantile` does,
//! so the graph's p50/p95/p99 agree with Kiali's PromQL over the same buckets.

use super::model::{LATENCY_BOUNDS_MS, Latency};

/// The `q` quantile (0..=1) of a latency histogram (non-cumulative counts in Envoy's buckets);
/// `None` when it holds no observations.
///
/// Linear interpolation inside the bucket holding the rank, the first bucket starting at 0; a
/// rank in the +Inf bucket gives the highest finite bound (Prometheus' rules).
pub fn quantile(q: f64, latency: &Latency) -> Option<f64> {
    let total: u64 = latency.iter().sum();
    if total == 0 || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    for (i, count) in latency.iter().enumerate() {
        let cumulative = below + count;
        if cumulative as f64 >= rank && *count > 0 || i == latency.len() - 1 {
            let Some(upper) = LATENCY_BOUNDS_MS.get(i) else {
                return Some(LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.len() - 1]);
            };
            let lower = if i == 0 {
                0.0
            } else {
                LATENCY_BOUNDS_MS[i - 1]
            };
            let within = (rank - below as f64) / *count as f64;
            return Some(lower + (upper - lower) * within);
        }
        below = cumulative;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::graph::model::LATENCY_BUCKETS;

    fn hist(pairs: &[(usize, u64)]) -> Latency {
        let mut h = [0; LATENCY_BUCKETS];
        for (i, n) in pairs {
            h[*i] = *n;
        }
        h
    }

    #[test]
    fn interpolates_like_histogram_quantile() {
        // 100 observations in (10, 25]: p50 = 10 + 15 * 0.5.
        let h = hist(&[(4, 100)]);
        assert_eq!(quantile(0.5, &h), Some(17.5));
        // 90 in (5, 10], 10 in (100, 250]: p50 = 5 + 5 * 50/90, p95 = 100 + 150 * 5/10.
        let h = hist(&[(3, 90), (7, 10)]);
        assert!((quantile(0.5, &h).unwrap() - (5.0 + 5.0 * 50.0 / 90.0)).abs() < 1e-9);
        assert_eq!(quantile(0.95, &h), Some(175.0));
        // First bucket starts at 0; +Inf gives the highest finite bound.
        assert_eq!(quantile(0.5, &hist(&[(0, 10)])), Some(0.25));
        assert_eq!(quantile(0.99, &hist(&[(19, 10)])), Some(3_600_000.0));
        assert_eq!(quantile(0.5, &hist(&[])), None);
    }
}
