//! Node and edge health with Kiali's default traffic tolerances (`health_config.rate`):
//! HTTP 5xx degraded above 0%, failure at 10%; HTTP 4xx degraded at 10%, failure at 20%;
//! gRPC statuses 1–16 degraded above 0%, failure at 10%. Each direction (inbound, outbound) and
//! protocol is checked on its own and the worst status wins, as Kiali's health calculator does.

use super::model::{Code, Protocol, Stats};
use serde::{Deserialize, Serialize};

/// Kiali's health statuses; `NoTraffic` when there were no HTTP/gRPC requests in the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Health {
    NoTraffic,
    Healthy,
    Degraded,
    Failure,
}

/// One tolerance: codes it matches, and the error percentages for degraded and failure.
struct Tolerance {
    protocol: Protocol,
    matches: fn(Code) -> bool,
    degraded: f64,
    failure: f64,
}

const TOLERANCES: [Tolerance; 3] = [
    Tolerance {
        protocol: Protocol::Http,
        matches: |c| (500..600).contains(&c.0),
        degraded: 0.0,
        failure: 10.0,
    },
    Tolerance {
        protocol: Protocol::Http,
        matches: |c| (400..500).contains(&c.0),
        degraded: 10.0,
        failure: 20.0,
    },
    Tolerance {
        protocol: Protocol::Grpc,
        matches: |c| (1..=16).contains(&c.0),
        degraded: 0.0,
        failure: 10.0,
    },
];

/// Kiali's `applyThresholds`: failure at or above `failure`, degraded at or above `degraded`
/// (any error at all when it is 0).
fn threshold(percent: f64, degraded: f64, failure: f64) -> Health {
    if percent <= 0.0 {
        Health::Healthy
    } else if failure > 0.0 && percent >= failure {
        Health::Failure
    } else if percent >= degraded {
        Health::Degraded
    } else {
        Health::Healthy
    }
}

/// The health of traffic in one direction: per protocol, its response codes.
pub fn of_traffic<'a>(traffic: impl IntoIterator<Item = (Protocol, &'a Stats)>) -> Health {
    let mut worst = Health::NoTraffic;
    for (protocol, stats) in traffic {
        let total: f64 = stats.codes.iter().map(|(_, n)| n).sum();
        if protocol == Protocol::Tcp || total <= 0.0 {
            continue;
        }
        worst = worst.max(Health::Healthy);
        for t in TOLERANCES.iter().filter(|t| t.protocol == protocol) {
            let matching: f64 = stats
                .codes
                .iter()
                .filter(|(c, _)| *c != Code::NONE && (t.matches)(*c))
                .map(|(_, n)| n)
                .sum();
            worst = worst.max(threshold(matching / total * 100.0, t.degraded, t.failure));
        }
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(pairs: &[(u16, f64)]) -> Stats {
        let mut s = Stats::default();
        for (c, n) in pairs {
            s.add_code(Code(*c), *n);
        }
        s
    }

    #[test]
    fn kiali_default_thresholds() {
        let h = |p: Protocol, s: &Stats| of_traffic([(p, s)]);
        assert_eq!(h(Protocol::Http, &codes(&[(200, 100.0)])), Health::Healthy);
        assert_eq!(
            h(Protocol::Http, &codes(&[(200, 999.0), (503, 1.0)])),
            Health::Degraded
        );
        assert_eq!(
            h(Protocol::Http, &codes(&[(200, 90.0), (500, 10.0)])),
            Health::Failure
        );
        assert_eq!(
            h(Protocol::Http, &codes(&[(200, 95.0), (404, 5.0)])),
            Health::Healthy
        );
        assert_eq!(
            h(Protocol::Http, &codes(&[(200, 85.0), (404, 15.0)])),
            Health::Degraded
        );
        assert_eq!(
            h(Protocol::Http, &codes(&[(200, 80.0), (404, 20.0)])),
            Health::Failure
        );
        assert_eq!(
            h(Protocol::Grpc, &codes(&[(0, 95.0), (14, 5.0)])),
            Health::Degraded
        );
        assert_eq!(h(Protocol::Tcp, &Stats::default()), Health::NoTraffic);
    }
}
