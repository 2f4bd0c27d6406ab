//! The console's data source. The control plane implements [`ConsoleBackend`] over its store,
//! push server and collector and hands it over as `Arc<dyn ConsoleBackend>`; tests use
//! [`crate::memory::MemoryBackend`]. Every method answers in the console's own types
//! ([`crate::model`]), so the console never depends on the control plane.

use crate::graph::model::{GraphData, GraphQuery};
use crate::model::{
    ApplyResult, ConfigFilter, ConfigResource, Diagnostic, NamespaceSummary, ProxySummary,
    ResourceRef, RevisionDiff, RevisionSummary, SeriesQuery, ServiceDetail, ServiceSummary, Trace,
    TraceQuery, TraceSummary, TrafficSeries, WorkloadDetail, WorkloadSummary,
};
use crate::model::{TapEvent, TapFilter};
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;

/// A boxed future so the trait stays object-safe.
pub type BackendFuture<'a, T> = BoxFuture<'a, Result<T, BackendError>>;

/// Why the backend could not answer; pages show the message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BackendError {
    /// The backend failed (database down, collector unreachable): HTTP 502 on the page.
    #[error("{0}")]
    Unavailable(String),
    /// The named thing does not exist (a resource, revision or trace): HTTP 404.
    #[error("{0} not found")]
    NotFound(String),
    /// The request was refused as it stands (a revision number out of range): HTTP 400.
    #[error("{0}")]
    BadRequest(String),
    /// The configuration did not validate; nothing was written. The messages are the same as
    /// `trellis apply` prints.
    #[error("invalid configuration")]
    Invalid(Vec<Diagnostic>),
}

/// Everything the console reads and changes. `Send + Sync` and object-safe.
pub trait ConsoleBackend: Send + Sync {
    /// Every namespace with health inputs, mTLS status and proxy counts, by name.
    fn namespaces(&self) -> BackendFuture<'_, Vec<NamespaceSummary>>;

    /// Connected proxies (and disconnected ones still in their grace period), by namespace and
    /// name.
    fn proxies(&self) -> BackendFuture<'_, Vec<ProxySummary>>;

    /// Current resources matching `filter`, by kind, namespace and name, with their messages.
    fn config<'a>(&'a self, filter: &'a ConfigFilter) -> BackendFuture<'a, Vec<ConfigResource>>;

    /// One current resource; [`BackendError::NotFound`] when it does not exist.
    fn resource<'a>(&'a self, id: &'a ResourceRef) -> BackendFuture<'a, ConfigResource>;

    /// The newest `limit` revisions, newest first.
    fn revisions(&self, limit: usize) -> BackendFuture<'_, Vec<RevisionSummary>>;

    /// What changed from revision `from` to revision `to` (either order).
    fn diff(&self, from: u64, to: u64) -> BackendFuture<'_, RevisionDiff>;

    /// Restores the configuration of `revision` as a new revision.
    fn rollback(&self, revision: u64) -> BackendFuture<'_, ApplyResult>;

    /// Validates YAML (one or more documents) as `trellis apply --dry-run` would, against the
    /// current configuration; every message, empty when clean. Nothing is written.
    fn validate<'a>(&'a self, yaml: &'a str) -> BackendFuture<'a, Vec<Diagnostic>>;

    /// Applies YAML as one revision through the same path as `trellis apply`: either all of it
    /// is written or [`BackendError::Invalid`] says why nothing was.
    fn apply<'a>(&'a self, yaml: &'a str, author: &'a str) -> BackendFuture<'a, ApplyResult>;

    /// Services with traffic summaries, in `namespace` or all of them.
    fn services<'a>(&'a self, namespace: Option<&'a str>)
    -> BackendFuture<'a, Vec<ServiceSummary>>;

    /// Workloads with traffic summaries, in `namespace` or all of them.
    fn workloads<'a>(
        &'a self,
        namespace: Option<&'a str>,
    ) -> BackendFuture<'a, Vec<WorkloadSummary>>;

    /// Traces matching `query`, newest first, at most `query.limit`.
    fn find_traces<'a>(&'a self, query: &'a TraceQuery) -> BackendFuture<'a, Vec<TraceSummary>>;

    /// One trace with all its spans; [`BackendError::NotFound`] when unknown.
    fn trace<'a>(&'a self, trace_id: &'a str) -> BackendFuture<'a, Trace>;

    /// The service graph for `query` (see [`crate::graph::model`]).
    fn graph<'a>(&'a self, query: &'a GraphQuery) -> BackendFuture<'a, GraphData>;

    /// One service with its inbound and outbound traffic edges over the summary window;
    /// [`BackendError::NotFound`] when it does not exist.
    fn service<'a>(&'a self, namespace: &'a str, name: &'a str)
    -> BackendFuture<'a, ServiceDetail>;

    /// One workload with its services, proxies and traffic edges; [`BackendError::NotFound`]
    /// when it does not exist.
    fn workload<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BackendFuture<'a, WorkloadDetail>;

    /// Request rate, error % and latency quantiles of a service or workload over time, one point
    /// per step (steps without data left out); [`BackendError::NotFound`] for an unknown target,
    /// [`BackendError::BadRequest`] for a step of zero or more than the window.
    fn traffic_series<'a>(&'a self, query: &'a SeriesQuery) -> BackendFuture<'a, TrafficSeries>;

    /// A live stream of the requests proxies report that match `filter` (inbound and outbound
    /// sides), most useful when it starts with the last few recorded (so a page without script
    /// can show them). The stream ends when the source goes away; the console drops it when the
    /// browser leaves or after its own time limit. The default says the backend has no tap.
    fn tap(&self, filter: TapFilter) -> Result<BoxStream<'static, TapEvent>, BackendError> {
        let _ = filter;
        Err(BackendError::Unavailable(
            "this control plane does not offer a live tap".to_string(),
        ))
    }

    /// Deletes `ids` as one revision, as `trellis delete` does: all of them, or none when one
    /// does not exist ([`BackendError::NotFound`]). The default says the backend cannot delete.
    fn delete<'a>(
        &'a self,
        ids: &'a [ResourceRef],
        author: &'a str,
    ) -> BackendFuture<'a, ApplyResult> {
        let _ = (ids, author);
        Box::pin(std::future::ready(Err(BackendError::Unavailable(
            "this control plane cannot delete resources from the console".to_string(),
        ))))
    }
}
