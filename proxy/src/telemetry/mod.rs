//! What the proxy reports about each request: Envoy's response flags and the per-request record
//! that the access log (and, later, metrics and spans) read.

pub mod access_log;
pub mod flags;
pub mod record;

pub use flags::ResponseFlags;
pub use record::{RecordSink, RequestRecord};
