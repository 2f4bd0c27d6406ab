//! Local rate limiting: Envoy's token bucket (`max_tokens`, `tokens_per_fill` every
//! `fill_interval`), shared by every worker thread so the limit holds exactly at the boundary
//! however requests spread over threads. A request that finds no token is answered 429 by the
//! proxy, with the `x-ratelimit-*` headers Envoy's local rate limit sends.
//!
//! Fills are discrete, as Envoy's: `tokens_per_fill` arrive at each whole `fill_interval` since
//! the bucket was made (never more than `max_tokens`), so a client can predict exactly when it may
//! send again (`x-ratelimit-reset`).

use http::{HeaderMap, HeaderName, HeaderValue};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const LIMIT_HEADER: HeaderName = HeaderName::from_static("x-ratelimit-limit");
pub const REMAINING_HEADER: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
pub const RESET_HEADER: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// What one bucket allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketSpec {
    /// The burst: tokens the bucket holds when full (and at the start).
    pub max_tokens: u64,
    /// Tokens added at each fill.
    pub tokens_per_fill: u64,
    pub fill_interval: Duration,
}

/// The outcome of asking for one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead; `remaining` tokens are left.
    Allowed { remaining: u64 },
    /// No token: the next fill comes in `reset`.
    Limited { reset: Duration },
}

/// A token bucket shared by all workers.
#[derive(Debug)]
pub struct TokenBucket {
    spec: BucketSpec,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    tokens: u64,
    /// When the last whole interval ended (fills happen at `last_fill + k * fill_interval`).
    last_fill: Instant,
}

impl TokenBucket {
    /// A full bucket. A zero interval is treated as one nanosecond (always refilled), a zero
    /// `max_tokens` as a bucket that never lets anything through.
    pub fn new(spec: BucketSpec, now: Instant) -> TokenBucket {
        TokenBucket {
            spec: BucketSpec {
                fill_interval: spec.fill_interval.max(Duration::from_nanos(1)),
                ..spec
            },
            state: Mutex::new(State {
                tokens: spec.max_tokens,
                last_fill: now,
            }),
        }
    }

    pub fn spec(&self) -> BucketSpec {
        self.spec
    }

    /// Takes one token if there is one at `now`.
    pub fn take(&self, now: Instant) -> Verdict {
        let interval = self.spec.fill_interval;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = now.saturating_duration_since(state.last_fill);
        let fills = elapsed.as_nanos() / interval.as_nanos();
        if fills > 0 {
            let added = u64::try_from(fills)
                .unwrap_or(u64::MAX)
                .saturating_mul(self.spec.tokens_per_fill);
            state.tokens = state.tokens.saturating_add(added).min(self.spec.max_tokens);
            // Whole intervals only, so the fill times stay on their grid.
            let whole = interval.as_nanos().saturating_mul(fills);
            state.last_fill += Duration::from_nanos(u64::try_from(whole).unwrap_or(u64::MAX));
        }
        if state.tokens > 0 {
            state.tokens -= 1;
            Verdict::Allowed {
                remaining: state.tokens,
            }
        } else {
            let since = now.saturating_duration_since(state.last_fill);
            Verdict::Limited {
                reset: interval.saturating_sub(since),
            }
        }
    }

    /// Envoy's `x-ratelimit-*` headers for `verdict`: the limit (the burst), what is left, and
    /// the seconds until the next fill (rounded up, so waiting that long always helps).
    pub fn write_headers(&self, verdict: Verdict, headers: &mut HeaderMap) {
        let (remaining, reset) = match verdict {
            Verdict::Allowed { remaining } => (remaining, None),
            Verdict::Limited { reset } => (0, Some(reset)),
        };
        headers.insert(LIMIT_HEADER, HeaderValue::from(self.spec.max_tokens));
        headers.insert(REMAINING_HEADER, HeaderValue::from(remaining));
        if let Some(reset) = reset {
            let secs = reset.as_secs() + u64::from(reset.subsec_nanos() > 0);
            headers.insert(RESET_HEADER, HeaderValue::from(secs));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn bucket(max: u64, per_fill: u64, interval_ms: u64, t0: Instant) -> TokenBucket {
        TokenBucket::new(
            BucketSpec {
                max_tokens: max,
                tokens_per_fill: per_fill,
                fill_interval: Duration::from_millis(interval_ms),
            },
            t0,
        )
    }

    #[test]
    fn exact_at_the_boundary() {
        let t0 = Instant::now();
        let b = bucket(3, 3, 1000, t0);
        assert_eq!(b.take(t0), Verdict::Allowed { remaining: 2 });
        assert_eq!(b.take(t0), Verdict::Allowed { remaining: 1 });
        assert_eq!(b.take(t0), Verdict::Allowed { remaining: 0 });
        assert_eq!(
            b.take(t0 + Duration::from_millis(400)),
            Verdict::Limited {
                reset: Duration::from_millis(600)
            }
        );
        // One nanosecond before the fill: still nothing.
        let fill = t0 + Duration::from_secs(1);
        assert!(matches!(
            b.take(fill - Duration::from_nanos(1)),
            Verdict::Limited { .. }
        ));
        assert_eq!(b.take(fill), Verdict::Allowed { remaining: 2 });
    }

    #[test]
    fn fills_are_discrete_and_capped() {
        let t0 = Instant::now();
        let b = bucket(5, 2, 100, t0);
        for _ in 0..5 {
            assert!(matches!(b.take(t0), Verdict::Allowed { .. }));
        }
        // 250 ms: two whole fills (4 tokens), the half interval does not count.
        let t = t0 + Duration::from_millis(250);
        assert_eq!(b.take(t), Verdict::Allowed { remaining: 3 });
        // The grid stays at 100 ms steps: the next fill is at 300 ms.
        for _ in 0..3 {
            b.take(t);
        }
        assert_eq!(
            b.take(t),
            Verdict::Limited {
                reset: Duration::from_millis(50)
            }
        );
        // A long idle period refills to the cap only.
        assert_eq!(
            b.take(t0 + Duration::from_secs(60)),
            Verdict::Allowed { remaining: 4 }
        );
    }

    #[test]
    fn headers_say_limit_remaining_and_reset() {
        let t0 = Instant::now();
        let b = bucket(2, 2, 1500, t0);
        let mut h = HeaderMap::new();
        b.write_headers(b.take(t0), &mut h);
        assert_eq!(h[&LIMIT_HEADER], "2");
        assert_eq!(h[&REMAINING_HEADER], "1");
        assert!(h.get(&RESET_HEADER).is_none());
        b.take(t0);
        let mut h = HeaderMap::new();
        b.write_headers(b.take(t0 + Duration::from_millis(100)), &mut h);
        assert_eq!(h[&REMAINING_HEADER], "0");
        // 1.4 s to the next fill: 2 seconds, rounded up.
        assert_eq!(h[&RESET_HEADER], "2");
    }

    #[test]
    fn threads_share_one_limit_exactly() {
        let t0 = Instant::now();
        let b = Arc::new(bucket(100, 100, 3_600_000, t0));
        let allowed = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (b, allowed) = (b.clone(), allowed.clone());
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        if let Verdict::Allowed { .. } = b.take(t0) {
                            allowed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(allowed.load(Ordering::Relaxed), 100);
    }

    #[test]
    fn an_empty_bucket_never_allows() {
        let t0 = Instant::now();
        let b = bucket(0, 5, 10, t0);
        assert!(matches!(
            b.take(t0 + Duration::from_secs(5)),
            Verdict::Limited { .. }
        ));
    }
}
