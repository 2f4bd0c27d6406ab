//! Outlier detection: endpoints that fail in a row are ejected for a while, as Envoy does for
//! `consecutive_5xx` and `consecutive_gateway_failure`. Ejection is decided on the response path
//! with atomics only, and lifted lazily when an ejected endpoint's time is up.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;
use trellis_api::model::OutlierDetection;

/// Milliseconds on a process-wide monotonic clock; 0 is reserved for "not ejected".
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// Health bookkeeping of one endpoint within one cluster.
#[derive(Debug, Default)]
pub struct OutlierState {
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    /// Monotonic ms until which the endpoint is ejected; 0 when it is not.
    ejected_until: AtomicU64,
    /// How many times it has been ejected (the ejection time grows with it).
    ejections: AtomicU32,
}

/// What a finished attempt says about the endpoint's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// A response with this 5xx status.
    ServerError(u16),
    /// Connect failure, reset or timeout: counts as a gateway error, as Envoy does by default.
    LocalFailure,
}

impl OutlierState {
    pub fn is_ejected(&self, now: u64) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        until != 0 && now < until
    }

    pub fn ejections(&self) -> u32 {
        self.ejections.load(Ordering::Relaxed)
    }

    pub fn ejected_until(&self) -> u64 {
        self.ejected_until.load(Ordering::Relaxed)
    }

    /// Records an outcome; returns true when the endpoint crossed a threshold and should be
    /// ejected (the caller checks the cluster-wide ejection cap, then calls [`Self::eject`]).
    pub fn observe(&self, outcome: Outcome, policy: &OutlierDetection) -> bool {
        let (five_xx, gateway) = match outcome {
            Outcome::Success => {
                self.consecutive_5xx.store(0, Ordering::Relaxed);
                self.consecutive_gateway.store(0, Ordering::Relaxed);
                return false;
            }
            Outcome::ServerError(code) => (true, matches!(code, 502..=504)),
            Outcome::LocalFailure => (true, true),
        };
        let mut trip = false;
        if five_xx {
            let n = self.consecutive_5xx.fetch_add(1, Ordering::Relaxed) + 1;
            trip |= policy
                .consecutive_5xx
                .is_some_and(|limit| limit > 0 && n >= limit);
        }
        if gateway {
            let n = self.consecutive_gateway.fetch_add(1, Ordering::Relaxed) + 1;
            trip |= policy
                .consecutive_gateway_errors
                .is_some_and(|limit| limit > 0 && n >= limit);
        } else {
            self.consecutive_gateway.store(0, Ordering::Relaxed);
        }
        trip
    }

    /// Ejects for `base * number of ejections so far` (capped at 300 s, Envoy's default maximum).
    pub fn eject(&self, policy: &OutlierDetection, now: u64) {
        let n = self.ejections.fetch_add(1, Ordering::Relaxed) + 1;
        let duration = policy
            .base_ejection_time_ms
            .saturating_mul(u64::from(n))
            .min(300_000);
        self.ejected_until
            .store(now + duration.max(1), Ordering::Relaxed);
        self.consecutive_5xx.store(0, Ordering::Relaxed);
        self.consecutive_gateway.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> OutlierDetection {
        OutlierDetection {
            consecutive_5xx: Some(3),
            consecutive_gateway_errors: None,
            interval_ms: 1000,
            base_ejection_time_ms: 1000,
            max_ejection_percent: 100,
            min_health_percent: 0,
        }
    }

    #[test]
    fn trips_after_consecutive_errors_only() {
        let s = OutlierState::default();
        let p = policy();
        assert!(!s.observe(Outcome::ServerError(500), &p));
        assert!(!s.observe(Outcome::ServerError(503), &p));
        assert!(!s.observe(Outcome::Success, &p));
        assert!(!s.observe(Outcome::ServerError(500), &p));
        assert!(!s.observe(Outcome::LocalFailure, &p));
        assert!(s.observe(Outcome::ServerError(500), &p));
    }

    #[test]
    fn ejection_grows_and_expires() {
        let s = OutlierState::default();
        let p = policy();
        s.eject(&p, 10);
        assert!(s.is_ejected(500));
        assert!(!s.is_ejected(1010));
        s.eject(&p, 2000);
        assert!(s.is_ejected(3999));
        assert!(!s.is_ejected(4000));
        assert_eq!(s.ejections(), 2);
    }
}
