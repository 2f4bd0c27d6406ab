//! Workload metadata exchanged between proxies (never taken from the app): the outbound proxy
//! tells the inbound proxy who the source is, and the inbound proxy answers with who the
//! destination is, so both reporters fill in `source_*` and `destination_*`.
// TODO(issue 4, metrics helper): the exchange itself.

use super::TelemetrySettings;
use super::record::{Direction, RequestRecord};

/// The metadata of the workload on the other side of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerMeta {}

/// This proxy's side of the exchange.
pub struct PeerExchange {}

impl PeerExchange {
    pub fn new(_settings: &TelemetrySettings) -> PeerExchange {
        PeerExchange {}
    }

    pub fn on_request(
        &self,
        _direction: Direction,
        _headers: &mut http::HeaderMap,
        _rec: &mut RequestRecord,
    ) {
    }

    pub fn on_response(
        &self,
        _direction: Direction,
        _headers: &mut http::HeaderMap,
        _rec: &mut RequestRecord,
    ) {
    }
}
