//! The collector: OTLP in (gRPC and HTTP), the live service graph, storage of spans, logs and
//! graph history, and the exports (Prometheus `/metrics`, the Jaeger query API, OTLP forwarding).

pub mod graph;
