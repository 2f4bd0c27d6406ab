//! Reconnect delays: exponential from 100 ms to 5 s, jittered so that proxies cut off together do
//! not return together. Used by the push client and by the OTLP exporter.

use std::time::Duration;

const FIRST: Duration = Duration::from_millis(100);
const MAX: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// The delay before the next attempt: the current step scaled by a random 50-100 %.
    pub fn next_delay(&mut self) -> Duration {
        let step = FIRST.saturating_mul(1 << self.failures.min(16)).min(MAX);
        self.failures = self.failures.saturating_add(1);
        step.mul_f64(0.5 + fastrand::f64() * 0.5)
    }

    /// The control plane answered: start again from the shortest delay.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_and_resets() {
        let mut b = Backoff::default();
        let first = b.next_delay();
        assert!(first >= FIRST / 2 && first <= FIRST, "{first:?}");
        for _ in 0..20 {
            let d = b.next_delay();
            assert!(d <= MAX, "{d:?}");
        }
        assert!(b.next_delay() >= MAX / 2);
        b.reset();
        assert!(b.next_delay() <= FIRST);
    }
}
