//! Which failed attempts are worth another try, in Envoy's `retryOn` vocabulary, and how long to
//! wait before it.

use crate::endpoint::UpstreamError;
use std::time::Duration;
use trellis_api::model::RetryOn;

/// How an attempt ended, as far as retrying is concerned.
pub enum Attempt<'a> {
    /// A response arrived: its status and headers.
    Response(http::StatusCode, &'a http::HeaderMap),
    Failed(&'a UpstreamError),
    /// The per-try timeout fired.
    TimedOut,
}

pub fn should_retry(on: &RetryOn, attempt: &Attempt<'_>) -> bool {
    match attempt {
        Attempt::Response(status, headers) => {
            let code = status.as_u16();
            (on.five_xx && status.is_server_error())
                || (on.gateway_error && matches!(code, 502..=504))
                || (on.retriable_4xx && code == 409)
                || on.status_codes.contains(&code)
                || (!on.grpc_codes.is_empty()
                    && crate::telemetry::record::grpc_status(headers)
                        .is_some_and(|g| on.grpc_codes.contains(&g)))
        }
        Attempt::Failed(e) if e.is_connect_failure() => {
            on.connect_failure || on.five_xx || on.gateway_error
        }
        Attempt::Failed(UpstreamError::Reset(e)) => {
            on.reset || on.five_xx || (on.refused_stream && e.is_canceled())
        }
        Attempt::Failed(_) => on.reset || on.five_xx,
        Attempt::TimedOut => on.five_xx || on.gateway_error || on.reset,
    }
}

/// Envoy's default back-off: 25 ms base, doubling, jittered, at most 250 ms.
pub fn backoff(retry: u32) -> Duration {
    let ceiling = 25u64.saturating_mul(1 << retry.min(4)).min(250);
    Duration::from_millis(fastrand::u64(0..=ceiling))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_statuses() {
        let h = http::HeaderMap::new();
        let five = RetryOn {
            five_xx: true,
            ..Default::default()
        };
        assert!(should_retry(
            &five,
            &Attempt::Response(http::StatusCode::INTERNAL_SERVER_ERROR, &h)
        ));
        assert!(!should_retry(
            &five,
            &Attempt::Response(http::StatusCode::NOT_FOUND, &h)
        ));
        let gw = RetryOn {
            gateway_error: true,
            ..Default::default()
        };
        assert!(!should_retry(
            &gw,
            &Attempt::Response(http::StatusCode::INTERNAL_SERVER_ERROR, &h)
        ));
        assert!(should_retry(
            &gw,
            &Attempt::Response(http::StatusCode::SERVICE_UNAVAILABLE, &h)
        ));
        let codes = RetryOn {
            status_codes: vec![503],
            ..Default::default()
        };
        assert!(should_retry(
            &codes,
            &Attempt::Response(http::StatusCode::SERVICE_UNAVAILABLE, &h)
        ));
        assert!(!should_retry(&codes, &Attempt::TimedOut));
    }

    #[test]
    fn classifies_grpc() {
        let mut h = http::HeaderMap::new();
        h.insert("grpc-status", "14".parse().unwrap());
        let on = RetryOn {
            grpc_codes: vec![14],
            ..Default::default()
        };
        assert!(should_retry(
            &on,
            &Attempt::Response(http::StatusCode::OK, &h)
        ));
        h.insert("grpc-status", "0".parse().unwrap());
        assert!(!should_retry(
            &on,
            &Attempt::Response(http::StatusCode::OK, &h)
        ));
    }
}
