//! Local rate limiting: Envoy's token bucket (`max_tokens`, `tokens_per_fill` every
//! `fill_interval`), shared by every worker thread so the limit holds exactly at the boundary
//! however requests spread over threads. A request that finds no token is answered 429 by the
//! proxy, with the `x-ratelimit-*` headers Envoy's local rate limit sends.
//!
//! Fills are discrete, as Envoy's: `tokens_per_fill` arrive at each whole `fill_interval` since
//! the bucket was made (never more than `max_tokens`), so a client can predict exactly when it may
//! send again (`x-ratelimit-reset`).

//!
//! [`RateLimiters`] holds the buckets one config snapshot enforces (Trellis's LocalRateLimit,
//! compiled into `ProxyConfig.rate_limits`): the workload's inbound bucket and one per outbound
//! route. A reload keeps a bucket whose name and spec are unchanged, tokens and all, so reloading
//! never hands out a fresh burst; counters of limited requests live as long as their name.

use crate::telemetry::metrics::labels::escape_label_into;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use trellis_api::model::{RateLimit, RateLimits};

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

/// Where a limit applies, as the `scope` label of `trellis_ratelimit_limited_total` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Requests to this workload.
    Inbound,
    /// Requests this workload sends through one VirtualService route.
    Route,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Scope::Inbound => "inbound",
            Scope::Route => "route",
        }
    }
}

/// One named limit: its bucket and the count of requests it refused.
#[derive(Debug)]
pub struct Limiter {
    pub scope: Scope,
    pub name: Arc<str>,
    bucket: TokenBucket,
    limited: Arc<AtomicU64>,
}

impl Limiter {
    /// Takes a token for one request, counting it when there is none.
    pub fn check(&self, now: Instant) -> Verdict {
        let verdict = self.bucket.take(now);
        if let Verdict::Limited { .. } = verdict {
            self.limited.fetch_add(1, Ordering::Relaxed);
        }
        verdict
    }

    /// See [`TokenBucket::write_headers`].
    pub fn write_headers(&self, verdict: Verdict, headers: &mut HeaderMap) {
        self.bucket.write_headers(verdict, headers);
    }
}

/// The limits of one config snapshot.
#[derive(Debug, Default)]
pub struct RateLimiters {
    inbound: Option<Arc<Limiter>>,
    /// By virtual host name, then http route name.
    routes: HashMap<String, HashMap<String, Arc<Limiter>>>,
    /// Every limiter once (a route limit may serve several virtual hosts), by scope and name.
    all: HashMap<(Scope, Arc<str>), Arc<Limiter>>,
}

impl RateLimiters {
    /// The limiters for `limits`, reusing from `previous` every bucket whose scope, name and spec
    /// are unchanged, and every counter whose scope and name are.
    pub fn build(limits: &RateLimits, previous: &RateLimiters, now: Instant) -> RateLimiters {
        let mut out = RateLimiters::default();
        if let Some(limit) = &limits.inbound {
            out.inbound = Some(out.limiter(Scope::Inbound, limit, previous, now));
        }
        for (vhost, routes) in &limits.routes {
            for (route, limit) in routes {
                let limiter = out.limiter(Scope::Route, limit, previous, now);
                out.routes
                    .entry(vhost.clone())
                    .or_default()
                    .insert(route.clone(), limiter);
            }
        }
        out
    }

    fn limiter(
        &mut self,
        scope: Scope,
        limit: &RateLimit,
        previous: &RateLimiters,
        now: Instant,
    ) -> Arc<Limiter> {
        let key = (scope, Arc::<str>::from(limit.name.as_str()));
        if let Some(held) = self.all.get(&key) {
            return held.clone();
        }
        let spec = bucket_spec(limit);
        let before = previous.all.get(&key);
        let limiter = match before {
            Some(p) if p.bucket.spec() == spec => p.clone(),
            _ => Arc::new(Limiter {
                scope,
                name: key.1.clone(),
                bucket: TokenBucket::new(spec, now),
                limited: before.map(|p| p.limited.clone()).unwrap_or_default(),
            }),
        };
        self.all.insert(key, limiter.clone());
        limiter
    }

    /// The limit on requests to this workload.
    pub fn inbound(&self) -> Option<&Limiter> {
        self.inbound.as_deref()
    }

    /// The limit on the http route `route` of virtual host `vhost`.
    pub fn route(&self, vhost: &str, route: &str) -> Option<&Limiter> {
        self.routes.get(vhost)?.get(route).map(|l| &**l)
    }

    /// `trellis_ratelimit_limited_total{scope,name}` in Prometheus text format.
    pub fn encode_prometheus(&self, out: &mut String) {
        use std::fmt::Write;
        const NAME: &str = "trellis_ratelimit_limited_total";
        let _ = writeln!(
            out,
            "# HELP {NAME} Requests refused with 429 by a local rate limit (LocalRateLimit): inbound (name: namespace/name of the resource) or on a route (name: namespace/virtualservice/route)."
        );
        let _ = writeln!(out, "# TYPE {NAME} counter");
        let mut limiters: Vec<_> = self.all.values().collect();
        limiters.sort_by(|a, b| (a.scope, &a.name).cmp(&(b.scope, &b.name)));
        for l in limiters {
            let _ = write!(out, "{NAME}{{scope=\"{}\",name=\"", l.scope.as_str());
            escape_label_into(&l.name, out);
            let _ = writeln!(out, "\"}} {}", l.limited.load(Ordering::Relaxed));
        }
    }
}

fn bucket_spec(limit: &RateLimit) -> BucketSpec {
    BucketSpec {
        max_tokens: u64::from(limit.max_tokens),
        tokens_per_fill: u64::from(limit.tokens_per_fill),
        fill_interval: Duration::from_millis(limit.fill_interval_ms),
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

    fn limits(inbound_max: u32, route_max: u32) -> RateLimits {
        let limit = |name: &str, max| RateLimit {
            name: name.into(),
            max_tokens: max,
            tokens_per_fill: 1,
            fill_interval_ms: 60_000,
        };
        let route = limit("default/reviews/v2", route_max);
        RateLimits {
            inbound: Some(limit("default/rl", inbound_max)),
            routes: [
                ("reviews:9080", [("v2".to_string(), route.clone())]),
                ("reviews:9081", [("v2".to_string(), route)]),
            ]
            .into_iter()
            .map(|(vh, r)| (vh.to_string(), r.into_iter().collect()))
            .collect(),
        }
    }

    #[test]
    fn reloads_keep_unchanged_buckets_and_every_counter() {
        let t0 = Instant::now();
        let first = RateLimiters::build(&limits(1, 1), &RateLimiters::default(), t0);
        let inbound = first.inbound().unwrap();
        assert!(matches!(inbound.check(t0), Verdict::Allowed { .. }));
        assert!(matches!(inbound.check(t0), Verdict::Limited { .. }));
        // Both virtual hosts of the route share one bucket.
        let r = first.route("reviews:9080", "v2").unwrap();
        assert!(matches!(r.check(t0), Verdict::Allowed { .. }));
        assert!(matches!(
            first.route("reviews:9081", "v2").unwrap().check(t0),
            Verdict::Limited { .. }
        ));
        assert!(first.route("reviews:9080", "v1").is_none());

        // Same specs: the same (empty) buckets.
        let second = RateLimiters::build(&limits(1, 1), &first, t0);
        assert!(matches!(
            second.inbound().unwrap().check(t0),
            Verdict::Limited { .. }
        ));
        // A changed spec starts a new bucket; the counter goes on.
        let third = RateLimiters::build(&limits(3, 1), &second, t0);
        assert_eq!(
            third.inbound().unwrap().check(t0),
            Verdict::Allowed { remaining: 2 }
        );
        let mut text = String::new();
        third.encode_prometheus(&mut text);
        assert!(text.contains("# TYPE trellis_ratelimit_limited_total counter\n"));
        assert!(
            text.contains(
                "trellis_ratelimit_limited_total{scope=\"inbound\",name=\"default/rl\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "trellis_ratelimit_limited_total{scope=\"route\",name=\"default/reviews/v2\"} 1\n"
            ),
            "{text}"
        );
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
