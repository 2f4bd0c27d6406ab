-- One index serves every span search (a service in a time window, newest first, optionally with
-- an operation and a duration range): operation and duration are read from the index entries and
-- filtered there, without visiting the table. Each stored span then updates three indexes
-- (trace id, this one, time) instead of five, which is most of what ingest costs.
DROP INDEX spans_by_service_time;
DROP INDEX spans_by_operation_time;
DROP INDEX spans_by_service_duration;
CREATE INDEX spans_by_service_search ON spans (service, start_us, operation, duration_us);
