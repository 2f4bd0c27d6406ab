-- Graph history: per-minute aggregates of every graph edge, so a past window of the service
-- graph can be replayed (see control/src/collector/graph/history.rs). Portable SQL for SQLite and
-- PostgreSQL. Minutes are unix milliseconds of the minute's start; numbers are the minute's totals.

-- One row per edge ever stored; `id` is a hash of `edge`, the JSON of the edge key (protocol,
-- source, destination service and workload, whether it comes from traces).
CREATE TABLE graph_edges (
    id BIGINT NOT NULL PRIMARY KEY,
    edge TEXT NOT NULL
);

CREATE TABLE graph_minutes (
    minute_ms BIGINT NOT NULL,
    edge_id BIGINT NOT NULL,
    requests DOUBLE PRECISION NOT NULL,        -- requests (TCP: connections opened)
    errors DOUBLE PRECISION NOT NULL,          -- HTTP 5xx, gRPC non-OK
    mtls DOUBLE PRECISION NOT NULL,            -- the mutual TLS part of requests (TCP: of bytes)
    request_bytes DOUBLE PRECISION NOT NULL,   -- source to destination
    response_bytes DOUBLE PRECISION NOT NULL,  -- destination to source
    codes TEXT NOT NULL,                       -- JSON object: response code -> requests
    latency TEXT NOT NULL,                     -- JSON array: counts per Envoy default bucket, +Inf last; '' when none
    PRIMARY KEY (minute_ms, edge_id)
);
