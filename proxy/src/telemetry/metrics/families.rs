//! The metric families the proxy reports: Istio's standard metrics (names, help texts and which
//! data each takes) and the proxy's own telemetry health. Both encoders (Prometheus text and
//! OTLP) walk this one list.

use super::histogram::Histogram;
use super::store::{HttpData, TcpData};

/// How a family's value is read from a series.
pub enum Value {
    /// A counter over HTTP/gRPC series; `grpc_only` families skip plain HTTP series (Istio
    /// counts messages only for gRPC).
    HttpCounter {
        get: fn(&HttpData) -> u64,
        grpc_only: bool,
    },
    HttpHistogram(fn(&HttpData) -> &Histogram),
    TcpCounter(fn(&TcpData) -> u64),
}

pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    /// UCUM unit, for OTLP.
    pub unit: &'static str,
    pub value: Value,
}

pub const FAMILIES: &[Family] = &[
    Family {
        name: "istio_requests_total",
        help: "Requests handled by the proxy (Istio standard metric).",
        unit: "1",
        value: Value::HttpCounter {
            get: |d| d.requests,
            grpc_only: false,
        },
    },
    Family {
        name: "istio_request_duration_milliseconds",
        help: "Request duration in milliseconds (Istio standard metric).",
        unit: "ms",
        value: Value::HttpHistogram(|d| &d.duration_ms),
    },
    Family {
        name: "istio_request_bytes",
        help: "Request body sizes in bytes (Istio standard metric).",
        unit: "By",
        value: Value::HttpHistogram(|d| &d.request_bytes),
    },
    Family {
        name: "istio_response_bytes",
        help: "Response body sizes in bytes (Istio standard metric).",
        unit: "By",
        value: Value::HttpHistogram(|d| &d.response_bytes),
    },
    Family {
        name: "istio_request_messages_total",
        help: "gRPC messages sent by clients (Istio standard metric).",
        unit: "1",
        value: Value::HttpCounter {
            get: |d| d.request_messages,
            grpc_only: true,
        },
    },
    Family {
        name: "istio_response_messages_total",
        help: "gRPC messages sent by servers (Istio standard metric).",
        unit: "1",
        value: Value::HttpCounter {
            get: |d| d.response_messages,
            grpc_only: true,
        },
    },
    Family {
        name: "istio_tcp_sent_bytes_total",
        help: "Bytes sent to the client of TCP connections (Istio standard metric).",
        unit: "By",
        value: Value::TcpCounter(|d| d.sent_bytes),
    },
    Family {
        name: "istio_tcp_received_bytes_total",
        help: "Bytes received from the client of TCP connections (Istio standard metric).",
        unit: "By",
        value: Value::TcpCounter(|d| d.received_bytes),
    },
    Family {
        name: "istio_tcp_connections_opened_total",
        help: "TCP connections opened (Istio standard metric).",
        unit: "1",
        value: Value::TcpCounter(|d| d.opened),
    },
    Family {
        name: "istio_tcp_connections_closed_total",
        help: "TCP connections closed (Istio standard metric).",
        unit: "1",
        value: Value::TcpCounter(|d| d.closed),
    },
];

/// The proxy's own telemetry health: items dropped rather than slowing traffic.
pub const DROPPED: &str = "trellis_telemetry_dropped_total";
pub const DROPPED_HELP: &str =
    "Telemetry items dropped because a queue was full, an exporter failed or a limit was reached.";
