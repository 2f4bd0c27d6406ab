//! The console's backend: [`ControlConsole`] answers `trellis_console::ConsoleBackend` from what
//! the control plane holds — the config [`Store`], the push server's status board and registry,
//! the collector's live graph (and its stored history) and span storage. Writes take the same
//! path as `POST /api/v1/apply`, so the console and `trellis apply` refuse alike.

pub mod detail;
pub mod graph;
pub mod summary;
pub mod tap;
pub mod traces;

#[cfg(test)]
mod tests;

use crate::collector::graph::api::GraphApi;
use crate::collector::graph::{self as live, GraphJson, GraphType, ViewOptions, history, window};
use crate::collector::storage::TelemetryStore;
use crate::push::PushServer;
use crate::push::SyncState as PushSync;
use crate::store::{Action, ApplyOutcome, ChangeInfo, Revision, Store, StoreError};
use futures_util::FutureExt as _;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use trellis_api::{Diagnostic, Kind};
use trellis_console::backend::BackendFuture;
use trellis_console::graph::model::{GraphData, GraphQuery};
use trellis_console::model::{
    ApplyResult, ConfigFilter, ConfigResource, Direction, NamespaceSummary, ProxyCounts,
    ProxySummary, ResourceRef, RevisionDiff, RevisionSummary, SeriesQuery, ServiceDetail,
    ServiceSummary, SyncState, TapEvent, TapFilter, Trace, TraceQuery, TraceSummary, TrafficSeries,
    TrafficTarget, WorkloadDetail, WorkloadSummary,
};
use trellis_console::{BackendError, ConsoleBackend};

/// The window the Overview and the service/workload lists summarise (Kiali's default 1m).
const SUMMARY_WINDOW_MS: i64 = 60_000;
/// The name a change made in the console is recorded under when the page gives none.
const CONSOLE_AUTHOR: &str = "console";
/// How much of a config version hash the proxies page shows.
const SHORT_VERSION: usize = 12;

/// The control plane's implementation of the console's backend.
#[derive(Clone)]
pub struct ControlConsole {
    pub store: Arc<Store>,
    pub push: PushServer,
    /// The live graph and the database with its history (the graph API's state).
    pub graph: GraphApi,
    /// Span storage, for trace search.
    pub telemetry: Arc<TelemetryStore>,
}

/// A store error as the console shows it: validation messages stay messages, a revision that
/// does not exist is a bad request, a database failure is "unavailable".
pub fn store_error(e: StoreError) -> BackendError {
    match e {
        StoreError::Invalid(diagnostics) => BackendError::Invalid(diagnostics),
        StoreError::NotFound(what) => BackendError::NotFound(what),
        e @ StoreError::NoSuchRevision(..) => BackendError::BadRequest(e.to_string()),
        e @ StoreError::Database(_) => {
            tracing::error!(error = %e, "console: store failed");
            BackendError::Unavailable(format!("the config store failed: {e}"))
        }
    }
}

/// The file name validation messages of a console edit carry.
const EDIT_FILE: &str = "<console>";

/// YAML as `POST /api/v1/apply` reads it: parse errors are validation messages; no documents
/// at all is one error message.
fn parse(yaml: &str) -> Result<Vec<trellis_api::Resource>, Vec<Diagnostic>> {
    let resources = trellis_api::load_str(yaml, EDIT_FILE)?;
    if resources.is_empty() {
        return Err(vec![
            Diagnostic::error("no resources: paste one or more YAML documents")
                .with_file(EDIT_FILE),
        ]);
    }
    Ok(resources)
}

fn author_or_console(author: &str) -> String {
    Some(author.trim())
        .filter(|a| !a.is_empty())
        .unwrap_or(CONSOLE_AUTHOR)
        .to_string()
}

fn apply_result(outcome: ApplyOutcome) -> ApplyResult {
    ApplyResult {
        revision: outcome.revision,
        changed: outcome
            .changes
            .into_iter()
            .filter(|c| c.action != Action::Unchanged)
            .map(|c| ResourceRef {
                kind: c.kind,
                namespace: c.namespace,
                name: c.name,
            })
            .collect(),
        warnings: outcome.warnings,
    }
}

/// A history line: the author's message, else what changed.
fn revision_summary(r: Revision) -> RevisionSummary {
    let summary = if r.message.is_empty() {
        let changes: Vec<String> = r
            .changes
            .iter()
            .map(|c| format!("{} {}/{} {}", c.kind, c.namespace, c.name, c.action))
            .collect();
        if changes.is_empty() {
            "no changes".to_string()
        } else {
            changes.join(", ")
        }
    } else {
        r.message
    };
    RevisionSummary {
        number: r.revision,
        time: r.time,
        author: r.author,
        summary,
    }
}

fn sync_state(s: PushSync) -> SyncState {
    match s {
        PushSync::Synced => SyncState::Synced,
        PushSync::Stale => SyncState::Stale,
        PushSync::Nacked => SyncState::Nacked,
        PushSync::Disconnected => SyncState::Disconnected,
    }
}

fn short(version: &str) -> String {
    version.chars().take(SHORT_VERSION).collect()
}

/// A service host's short name: `reviews` of `reviews.shop.svc.cluster.local`; other hosts
/// (external ones) as written.
fn service_name(host: &str, namespace: &str) -> String {
    let suffix = format!(".{namespace}.svc.{}", trellis_api::host::DOMAIN_SUFFIX);
    host.strip_suffix(&suffix).unwrap_or(host).to_string()
}

impl ControlConsole {
    fn proxy_list(&self) -> Vec<ProxySummary> {
        let mut proxies: Vec<ProxySummary> = self
            .push
            .proxies(self.store.revision())
            .into_iter()
            .map(|p| ProxySummary {
                name: p.id,
                namespace: p.namespace,
                workload: p.workload,
                address: p.address,
                config_version: short(&p.version_acked),
                state: sync_state(p.status),
                connected_since: crate::store::rfc3339_millis(p.connected_since_unix_ms),
                error: p.error,
            })
            .collect();
        proxies.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        proxies
    }

    /// A graph view as `GET /api/v1/graph` answers it: from memory, or from stored minutes.
    async fn view(&self, query: &live::GraphQuery) -> Result<GraphJson, BackendError> {
        if let Some(answer) = self.graph.graph.query(query) {
            return Ok(answer);
        }
        let Some(pool) = &self.graph.history else {
            return Err(BackendError::BadRequest(format!(
                "the window reaches back more than {} minutes and no graph history is stored",
                window::MEMORY_SPAN_MS / 60_000
            )));
        };
        history::query(pool, &self.graph.graph, query)
            .await
            .map_err(|e| BackendError::Unavailable(format!("graph history: {e}")))
    }

    /// The last minute of `graph_type`, every namespace, for summaries.
    async fn summary_view(
        &self,
        graph_type: GraphType,
        inject_service_nodes: bool,
    ) -> Result<GraphJson, BackendError> {
        self.view(&live::GraphQuery {
            view: ViewOptions {
                graph_type,
                namespaces: Vec::new(),
                inject_service_nodes,
            },
            duration_ms: SUMMARY_WINDOW_MS,
            query_time_ms: None,
        })
        .await
    }

    async fn namespace_list(&self) -> Result<Vec<NamespaceSummary>, BackendError> {
        let view = self.summary_view(GraphType::Workload, false).await?;
        let config = self.store.current();
        let proxies = self.proxy_list();
        let workloads = self.workload_list(None).await?;
        let services = self.service_list(None).await?;
        let traffic = summary::namespace_traffic(&view);
        let mut names: BTreeSet<String> = graph::namespaces(&view);
        names.extend(config.iter().map(|r| r.namespace().to_string()));
        names.extend(proxies.iter().map(|p| p.namespace.clone()));
        names.extend(workloads.iter().map(|w| w.namespace.clone()));
        names.extend(services.iter().map(|s| s.namespace.clone()));
        names.retain(|n| !n.is_empty());
        Ok(names
            .into_iter()
            .map(|name| NamespaceSummary {
                traffic: traffic.get(&name).copied().unwrap_or_default(),
                mtls: summary::mtls_status(&name, &config, &view, summary::ROOT_NAMESPACE),
                workloads: workloads.iter().filter(|w| w.namespace == name).count(),
                services: services.iter().filter(|s| s.namespace == name).count(),
                proxies: ProxyCounts::of(proxies.iter().filter(|p| p.namespace == name)),
                name,
            })
            .collect())
    }

    async fn service_list(
        &self,
        namespace: Option<&str>,
    ) -> Result<Vec<ServiceSummary>, BackendError> {
        let view = self.summary_view(GraphType::Service, false).await?;
        let registered = self.push.registry().workloads();
        let mut out: BTreeMap<(String, String), ServiceSummary> = BTreeMap::new();
        for s in self.push.epoch().services() {
            if s.hostname.starts_with('*') || namespace.is_some_and(|ns| s.namespace != ns) {
                continue;
            }
            let name = service_name(&s.hostname, &s.namespace);
            let mut workloads: Vec<String> = registered
                .iter()
                .filter(|w| w.namespace == s.namespace)
                .filter(|w| {
                    s.endpoints.iter().any(|e| {
                        e.address == w.address.ip().to_string()
                            && (e.ports.is_empty()
                                || e.ports.values().any(|p| *p == w.address.port()))
                    })
                })
                .map(|w| w.name.clone())
                .collect();
            workloads.sort();
            workloads.dedup();
            let id = format!("service:{}/{}", s.namespace, name);
            out.insert(
                (s.namespace.clone(), name.clone()),
                ServiceSummary {
                    traffic: summary::traffic_of(&view, &id),
                    name,
                    namespace: s.namespace.clone(),
                    host: s.hostname.clone(),
                    ports: s.ports.iter().map(|p| p.number).collect(),
                    workloads,
                },
            );
        }
        // Services seen in traffic only (no ServiceEntry, or history): listed with what is known.
        for n in view.nodes.iter().filter(|n| n.node_type == "service") {
            let (Some(ns), Some(name)) = (&n.namespace, &n.service) else {
                continue;
            };
            if namespace.is_some_and(|want| want != ns) {
                continue;
            }
            out.entry((ns.clone(), name.clone()))
                .or_insert_with(|| ServiceSummary {
                    traffic: summary::traffic_of(&view, &n.id),
                    name: name.clone(),
                    namespace: ns.clone(),
                    host: trellis_api::host::resolve(name, ns),
                    ports: Vec::new(),
                    workloads: Vec::new(),
                });
        }
        Ok(out.into_values().collect())
    }

    async fn workload_list(
        &self,
        namespace: Option<&str>,
    ) -> Result<Vec<WorkloadSummary>, BackendError> {
        let view = self.summary_view(GraphType::Workload, false).await?;
        let proxies = self.push.proxies(self.store.revision());
        let mut out: BTreeMap<(String, String), WorkloadSummary> = BTreeMap::new();
        for w in self.push.registry().workloads() {
            if namespace.is_some_and(|ns| w.namespace != ns) {
                continue;
            }
            let labels: Vec<(String, String)> = w.labels.clone().into_iter().collect();
            let id = format!("workload:{}/{}", w.namespace, w.name);
            out.entry((w.namespace.clone(), w.name.clone()))
                .or_insert_with(|| WorkloadSummary {
                    app: summary::label(&labels, "app"),
                    version: summary::label(&labels, "version"),
                    labels,
                    proxies: proxies
                        .iter()
                        .filter(|p| {
                            p.connected && p.namespace == w.namespace && p.workload == w.name
                        })
                        .count(),
                    traffic: summary::traffic_of(&view, &id),
                    name: w.name.clone(),
                    namespace: w.namespace.clone(),
                });
        }
        for n in view.nodes.iter().filter(|n| n.node_type == "workload") {
            let (Some(ns), Some(name)) = (&n.namespace, &n.workload) else {
                continue;
            };
            if namespace.is_some_and(|want| want != ns) {
                continue;
            }
            out.entry((ns.clone(), name.clone()))
                .or_insert_with(|| WorkloadSummary {
                    name: name.clone(),
                    namespace: ns.clone(),
                    app: n.app.clone().filter(|a| a != "unknown"),
                    version: n.version.clone().filter(|v| v != "unknown"),
                    labels: Vec::new(),
                    proxies: 0,
                    traffic: summary::traffic_of(&view, &n.id),
                });
        }
        Ok(out.into_values().collect())
    }

    async fn service_detail(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<ServiceDetail, BackendError> {
        let summary = self
            .service_list(Some(namespace))
            .await?
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| BackendError::NotFound(format!("service {namespace}/{name}")))?;
        // Callers reach the service node, which hands the requests to the workloads behind it.
        let view = self.summary_view(GraphType::Workload, true).await?;
        let id = format!("service:{namespace}/{name}");
        Ok(ServiceDetail {
            inbound: detail::edges(&view, &id, Direction::Inbound),
            outbound: detail::edges(&view, &id, Direction::Outbound),
            summary,
        })
    }

    async fn workload_detail(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<WorkloadDetail, BackendError> {
        let summary = self
            .workload_list(Some(namespace))
            .await?
            .into_iter()
            .find(|w| w.name == name)
            .ok_or_else(|| BackendError::NotFound(format!("workload {namespace}/{name}")))?;
        let services = self
            .service_list(Some(namespace))
            .await?
            .into_iter()
            .filter(|s| s.workloads.iter().any(|w| w == name))
            .map(|s| s.name)
            .collect();
        let proxies = self
            .proxy_list()
            .into_iter()
            .filter(|p| p.namespace == namespace && p.workload == name)
            .collect();
        let view = self.summary_view(GraphType::Workload, false).await?;
        let id = format!("workload:{namespace}/{name}");
        Ok(WorkloadDetail {
            inbound: detail::edges(&view, &id, Direction::Inbound),
            outbound: detail::edges(&view, &id, Direction::Outbound),
            summary,
            services,
            proxies,
        })
    }

    /// One graph view per step, the step long and ending at the point's time.
    async fn series(&self, query: &SeriesQuery) -> Result<TrafficSeries, BackendError> {
        let now_us = self.graph.graph.clock().now_ms().saturating_mul(1000);
        let ends = detail::steps(query, now_us)?;
        let inject = matches!(query.target, TrafficTarget::Service { .. });
        let id = detail::node_id(&query.target);
        let step_ms = i64::try_from(query.step.as_millis()).unwrap_or(i64::MAX);
        let mut points = Vec::with_capacity(ends.len());
        for t_us in &ends {
            let view = self
                .view(&live::GraphQuery {
                    view: ViewOptions {
                        graph_type: GraphType::Workload,
                        namespaces: vec![query.target.namespace().to_string()],
                        inject_service_nodes: inject,
                    },
                    duration_ms: step_ms,
                    query_time_ms: Some(t_us / 1000),
                })
                .await?;
            points.extend(detail::point(&view, &id, query.direction, *t_us));
        }
        Ok(TrafficSeries {
            start_us: ends.first().map_or(now_us, |first| first - step_ms * 1000),
            end_us: ends.last().copied().unwrap_or(now_us),
            step: query.step,
            points,
        })
    }

    fn config_list(&self, filter: &ConfigFilter) -> Result<Vec<ConfigResource>, BackendError> {
        let kind = match filter.kind.as_deref().filter(|k| !k.is_empty()) {
            None => None,
            Some(k) => Some(kind_named(k)?),
        };
        let namespace = filter.namespace.as_deref().filter(|n| !n.is_empty());
        let config = self.store.current();
        let warnings = config.warnings();
        Ok(config
            .iter()
            .filter(|r| kind.is_none_or(|k| r.kind() == k))
            .filter(|r| namespace.is_none_or(|ns| r.namespace() == ns))
            .map(|r| resource(r, &warnings))
            .collect())
    }
}

/// A kind as Istio (`VirtualService`) or kubectl (`virtualservices`, `vs`) spells it.
fn kind_named(name: &str) -> Result<Kind, BackendError> {
    Kind::from_name(name)
        .map(Ok)
        .unwrap_or_else(|| Kind::parse_cli(name).map_err(BackendError::BadRequest))
}

/// A stored resource with the messages the whole configuration has about it.
fn resource(r: &trellis_api::Resource, warnings: &[Diagnostic]) -> ConfigResource {
    let id = ResourceRef {
        kind: r.kind().as_str().to_string(),
        namespace: r.namespace().to_string(),
        name: r.name().to_string(),
    };
    let name = id.to_string();
    ConfigResource {
        yaml: crate::store::to_yaml(&r.raw),
        messages: warnings
            .iter()
            .filter(|d| d.resource.as_deref() == Some(name.as_str()))
            .cloned()
            .collect(),
        id,
    }
}

fn ready<'a, T: Send + 'a>(value: Result<T, BackendError>) -> BackendFuture<'a, T> {
    std::future::ready(value).boxed()
}

impl ConsoleBackend for ControlConsole {
    fn namespaces(&self) -> BackendFuture<'_, Vec<NamespaceSummary>> {
        self.namespace_list().boxed()
    }

    fn proxies(&self) -> BackendFuture<'_, Vec<ProxySummary>> {
        ready(Ok(self.proxy_list()))
    }

    fn config<'a>(&'a self, filter: &'a ConfigFilter) -> BackendFuture<'a, Vec<ConfigResource>> {
        ready(self.config_list(filter))
    }

    fn resource<'a>(&'a self, id: &'a ResourceRef) -> BackendFuture<'a, ConfigResource> {
        let found = kind_named(&id.kind).ok().and_then(|kind| {
            let key = trellis_api::ResourceKey {
                kind,
                namespace: id.namespace.clone(),
                name: id.name.clone(),
            };
            let config = self.store.current();
            config.get(&key).map(|r| resource(r, &config.warnings()))
        });
        ready(found.ok_or_else(|| BackendError::NotFound(id.to_string())))
    }

    fn revisions(&self, limit: usize) -> BackendFuture<'_, Vec<RevisionSummary>> {
        async move {
            let history = self.store.history(limit).await.map_err(store_error)?;
            Ok(history.into_iter().map(revision_summary).collect())
        }
        .boxed()
    }

    fn diff(&self, from: u64, to: u64) -> BackendFuture<'_, RevisionDiff> {
        async move {
            let diff = self.store.diff(from, to).await.map_err(store_error)?;
            Ok(RevisionDiff {
                from: diff.from,
                to: diff.to,
                unified: diff.diff,
            })
        }
        .boxed()
    }

    fn rollback(&self, revision: u64) -> BackendFuture<'_, ApplyResult> {
        async move {
            if revision == 0 {
                return Err(BackendError::BadRequest(
                    "revision 0 is the empty configuration; delete resources explicitly to remove them all".into(),
                ));
            }
            let change = ChangeInfo {
                author: CONSOLE_AUTHOR.to_string(),
                message: format!("rollback to revision {revision}"),
            };
            let outcome = self
                .store
                .rollback(revision, &change)
                .await
                .map_err(store_error)?;
            Ok(apply_result(outcome))
        }
        .boxed()
    }

    fn validate<'a>(
        &'a self,
        yaml: &'a str,
    ) -> BackendFuture<'a, Vec<trellis_console::model::Diagnostic>> {
        async move {
            let resources = match parse(yaml) {
                Ok(r) => r,
                Err(messages) => return Ok(messages),
            };
            let change = ChangeInfo {
                author: CONSOLE_AUTHOR.to_string(),
                message: String::new(),
            };
            match self.store.apply(resources, &change, true).await {
                Ok(outcome) => Ok(outcome.warnings),
                Err(StoreError::Invalid(messages)) => Ok(messages),
                Err(e) => Err(store_error(e)),
            }
        }
        .boxed()
    }

    fn apply<'a>(&'a self, yaml: &'a str, author: &'a str) -> BackendFuture<'a, ApplyResult> {
        async move {
            let resources = parse(yaml).map_err(BackendError::Invalid)?;
            let change = ChangeInfo {
                author: author_or_console(author),
                message: String::new(),
            };
            let outcome = self
                .store
                .apply(resources, &change, false)
                .await
                .map_err(store_error)?;
            Ok(apply_result(outcome))
        }
        .boxed()
    }

    fn services<'a>(
        &'a self,
        namespace: Option<&'a str>,
    ) -> BackendFuture<'a, Vec<ServiceSummary>> {
        self.service_list(namespace).boxed()
    }

    fn workloads<'a>(
        &'a self,
        namespace: Option<&'a str>,
    ) -> BackendFuture<'a, Vec<WorkloadSummary>> {
        self.workload_list(namespace).boxed()
    }

    fn find_traces<'a>(&'a self, query: &'a TraceQuery) -> BackendFuture<'a, Vec<TraceSummary>> {
        traces::find(&self.telemetry, query).boxed()
    }

    fn trace<'a>(&'a self, trace_id: &'a str) -> BackendFuture<'a, Trace> {
        traces::trace(&self.telemetry, trace_id).boxed()
    }

    fn service<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BackendFuture<'a, ServiceDetail> {
        self.service_detail(namespace, name).boxed()
    }

    fn workload<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BackendFuture<'a, WorkloadDetail> {
        self.workload_detail(namespace, name).boxed()
    }

    fn traffic_series<'a>(&'a self, query: &'a SeriesQuery) -> BackendFuture<'a, TrafficSeries> {
        self.series(query).boxed()
    }

    fn tap(
        &self,
        filter: TapFilter,
    ) -> Result<futures_util::stream::BoxStream<'static, TapEvent>, BackendError> {
        Ok(tap::stream(self.telemetry.clone(), filter))
    }

    fn delete<'a>(
        &'a self,
        ids: &'a [ResourceRef],
        author: &'a str,
    ) -> BackendFuture<'a, ApplyResult> {
        async move {
            let mut keys = Vec::with_capacity(ids.len());
            for id in ids {
                keys.push(trellis_api::ResourceKey {
                    kind: kind_named(&id.kind)?,
                    namespace: id.namespace.clone(),
                    name: id.name.clone(),
                });
            }
            let change = ChangeInfo {
                author: author_or_console(author),
                message: String::new(),
            };
            let outcome = self
                .store
                .delete(&keys, &change)
                .await
                .map_err(store_error)?;
            Ok(apply_result(outcome))
        }
        .boxed()
    }

    fn graph<'a>(&'a self, query: &'a GraphQuery) -> BackendFuture<'a, GraphData> {
        async move {
            let now = self.graph.graph.clock().now_ms();
            let query = graph::collector_query(query, now)?;
            let view = self.view(&query).await?;
            let badges = graph::BadgeIndex::of(&self.store.current());
            Ok(graph::to_console(&view, &badges))
        }
        .boxed()
    }
}
