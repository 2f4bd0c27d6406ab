-- Telemetry storage: spans and logs received over OTLP. Portable SQL for SQLite and PostgreSQL
-- (BIGINT/TEXT only; ids as lowercase hex, times in microseconds since the Unix epoch, JSON as
-- TEXT). Rows are written by one batching writer and pruned by age and count (see
-- control/src/collector/storage). Its own migration history: with PostgreSQL this set shares one
-- database with the config store's (versions never collide; each migrator ignores the other's).

CREATE TABLE spans (
    trace_id TEXT NOT NULL,          -- 32 hex digits
    span_id TEXT NOT NULL,           -- 16 hex digits
    parent_id TEXT NOT NULL,         -- 16 hex digits, '' for a root span
    service TEXT NOT NULL,           -- resource attribute service.name
    operation TEXT NOT NULL,         -- span name
    kind BIGINT NOT NULL,            -- OTLP SpanKind number
    start_us BIGINT NOT NULL,
    duration_us BIGINT NOT NULL,
    status_code BIGINT NOT NULL,     -- OTLP StatusCode number (0 unset, 1 ok, 2 error)
    status_message TEXT NOT NULL,
    flags BIGINT NOT NULL,           -- OTLP span flags (W3C trace flags in the low byte)
    scope_name TEXT NOT NULL,
    scope_version TEXT NOT NULL,
    attributes TEXT NOT NULL,        -- JSON object of the span's attributes (typed JSON values)
    process_id TEXT NOT NULL,        -- span_processes.process_id of the span's resource
    events TEXT NOT NULL,            -- JSON: [{"timestamp","fields"}] as Jaeger logs
    links TEXT NOT NULL              -- JSON: [{"traceID","spanID"}]
);

-- A trace by id (and a parent's service for dependencies: a trace's few spans are scanned).
CREATE INDEX spans_by_trace ON spans (trace_id);
-- Search by service (newest first), by service and operation, by service and duration.
CREATE INDEX spans_by_service_time ON spans (service, start_us);
CREATE INDEX spans_by_operation_time ON spans (service, operation, start_us);
CREATE INDEX spans_by_service_duration ON spans (service, duration_us);
-- Retention by age and by count (oldest first).
CREATE INDEX spans_by_time ON spans (start_us);

-- Resources (Jaeger "processes"), once each instead of once per span: a resource's attributes
-- as Jaeger tags, keyed by a hash of the service and those tags.
CREATE TABLE span_processes (
    process_id TEXT NOT NULL PRIMARY KEY,
    service TEXT NOT NULL,
    tags TEXT NOT NULL,              -- JSON: [{"key","type","value"}] without service.name
    last_seen_us BIGINT NOT NULL
);

-- The service and operation names seen (what Jaeger's service and operation pickers list),
-- kept apart so listing them never scans the spans.
CREATE TABLE span_operations (
    service TEXT NOT NULL,
    operation TEXT NOT NULL,
    kind BIGINT NOT NULL,
    last_seen_us BIGINT NOT NULL,
    PRIMARY KEY (service, operation, kind)
);

CREATE TABLE logs (
    time_us BIGINT NOT NULL,         -- the record's time, else its observed time
    observed_us BIGINT NOT NULL,
    severity_number BIGINT NOT NULL,
    severity_text TEXT NOT NULL,
    body TEXT NOT NULL,              -- a string body as is; any other value as OTLP/JSON AnyValue
    attributes TEXT NOT NULL,        -- JSON object of the record's attributes
    resource TEXT NOT NULL,          -- JSON object of the resource's attributes
    service TEXT NOT NULL,
    scope_name TEXT NOT NULL,
    trace_id TEXT NOT NULL,          -- '' when the record is not in a trace
    span_id TEXT NOT NULL
);

CREATE INDEX logs_by_time ON logs (time_us);
CREATE INDEX logs_by_service_time ON logs (service, time_us);
CREATE INDEX logs_by_trace ON logs (trace_id);
