//! Fixed-bucket histograms with Envoy's default bounds, which Istio's standard metrics use for
//! durations (milliseconds) and sizes (bytes) alike: Istio's bootstrap sets no bucket settings of
//! its own unless a pod asks for them (`sidecar.istio.io/statsHistogramBuckets`).

/// Envoy's default histogram bucket bounds (`le` values).
pub const ENVOY_BOUNDS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// Counts per bucket (not cumulative; the last is above every bound) and the sum.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    pub buckets: [u64; ENVOY_BOUNDS.len() + 1],
    pub sum: u64,
}

impl Histogram {
    pub fn observe(&mut self, value: u64) {
        let v = value as f64;
        let index = ENVOY_BOUNDS.partition_point(|&bound| bound < v);
        self.buckets[index] += 1;
        self.sum = self.sum.saturating_add(value);
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a += b;
        }
        self.sum = self.sum.saturating_add(other.sum);
    }
}

/// A bound as Prometheus' `le` label: `0.5`, `1`, `3600000`.
pub fn format_bound(bound: f64) -> String {
    if bound.fract() == 0.0 {
        format!("{}", bound as u64)
    } else {
        format!("{bound}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_the_first_bucket_whose_bound_holds_them() {
        let mut h = Histogram::default();
        for v in [0, 1, 2, 5, 6, 3_600_000, 3_600_001] {
            h.observe(v);
        }
        assert_eq!(h.buckets[0], 1, "0 <= 0.5");
        assert_eq!(h.buckets[1], 1, "1 <= 1");
        assert_eq!(h.buckets[2], 2, "2 and 5 <= 5");
        assert_eq!(h.buckets[3], 1, "6 <= 10");
        assert_eq!(h.buckets[18], 1, "3600000 <= 3600000");
        assert_eq!(h.buckets[19], 1, "above every bound");
        assert_eq!(h.count(), 7);
        assert_eq!(h.sum, 7_200_015);
        assert_eq!(format_bound(0.5), "0.5");
        assert_eq!(format_bound(3600000.0), "3600000");
    }
}
