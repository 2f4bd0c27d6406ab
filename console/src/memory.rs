//! [`MemoryBackend`]: the console's backend held in memory, for tests and demos. Applied YAML is
//! parsed and validated by `trellis_api` (the same messages as `trellis apply`), every change
//! records the whole configuration as a revision, and diffs are unified diffs of the YAML.

use crate::backend::{BackendError, BackendFuture, ConsoleBackend};
use crate::graph::model::{GraphData, GraphQuery};
use crate::model::{
    ApplyResult, ConfigFilter, ConfigResource, Diagnostic, MtlsStatus, NamespaceSummary,
    ProxyCounts, ProxySummary, ResourceRef, RevisionDiff, RevisionSummary, ServiceSummary, Span,
    SyncState, Trace, TraceQuery, TraceSummary, TrafficHealthInputs, TrafficSummary,
    WorkloadSummary,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use trellis_api::{ConfigSet, Resource};

/// The current resources, keyed for ordered listing.
type Resources = BTreeMap<ResourceRef, Resource>;

/// One revision: what it said and the whole configuration after it.
struct StoredRevision {
    summary: RevisionSummary,
    resources: Resources,
}

#[derive(Default)]
struct State {
    namespaces: BTreeMap<String, (TrafficHealthInputs, MtlsStatus)>,
    proxies: Vec<ProxySummary>,
    services: Vec<ServiceSummary>,
    workloads: Vec<WorkloadSummary>,
    traces: Vec<Trace>,
    graph: GraphData,
    /// Revision 0 is the empty configuration.
    revisions: Vec<StoredRevision>,
    /// When set, every call fails with this message.
    failure: Option<String>,
}

impl State {
    fn current(&self) -> &Resources {
        &self
            .revisions
            .last()
            .expect("revision 0 always exists")
            .resources
    }

    /// Records `resources` as a new revision unless it equals the current one.
    fn commit(&mut self, resources: Resources, author: &str, message: String) -> ApplyResult {
        let before = self.current();
        let changed: Vec<ResourceRef> = before
            .keys()
            .chain(resources.keys())
            .filter(|id| before.get(*id).map(|r| &r.raw) != resources.get(*id).map(|r| &r.raw))
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let warnings = messages_of(&resources, &changed);
        if changed.is_empty() {
            return ApplyResult {
                revision: None,
                changed,
                warnings,
            };
        }
        let number = self.revisions.len() as u64;
        self.revisions.push(StoredRevision {
            summary: RevisionSummary {
                number,
                time: fake_time(number),
                author: author.to_string(),
                summary: message,
            },
            resources,
        });
        ApplyResult {
            revision: Some(number),
            changed,
            warnings,
        }
    }

    fn revision(&self, number: u64) -> Result<&StoredRevision, BackendError> {
        self.revisions.get(number as usize).ok_or_else(|| {
            BackendError::BadRequest(format!(
                "revision {number} does not exist (latest is {})",
                self.revisions.len() - 1
            ))
        })
    }
}

/// A deterministic time per revision, so rendered pages are stable in tests.
fn fake_time(number: u64) -> String {
    format!("2026-11-21T10:{:02}:00.000Z", number % 60)
}

/// See the module documentation. Build with [`MemoryBackend::new`] and the `with_*` builders, or
/// take [`MemoryBackend::fixture`].
pub struct MemoryBackend {
    state: Mutex<State>,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        MemoryBackend::new()
    }
}

impl MemoryBackend {
    /// An empty mesh at revision 0.
    pub fn new() -> MemoryBackend {
        let state = State {
            revisions: vec![StoredRevision {
                summary: RevisionSummary {
                    number: 0,
                    time: fake_time(0),
                    author: "system".into(),
                    summary: "empty configuration".into(),
                },
                resources: Resources::new(),
            }],
            ..State::default()
        };
        MemoryBackend {
            state: Mutex::new(state),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn with_namespace(
        self,
        name: &str,
        traffic: TrafficHealthInputs,
        mtls: MtlsStatus,
    ) -> MemoryBackend {
        self.lock()
            .namespaces
            .insert(name.to_string(), (traffic, mtls));
        self
    }

    pub fn with_proxy(self, proxy: ProxySummary) -> MemoryBackend {
        self.lock().proxies.push(proxy);
        self
    }

    pub fn with_service(self, service: ServiceSummary) -> MemoryBackend {
        self.lock().services.push(service);
        self
    }

    pub fn with_workload(self, workload: WorkloadSummary) -> MemoryBackend {
        self.lock().workloads.push(workload);
        self
    }

    pub fn with_trace(self, trace: Trace) -> MemoryBackend {
        self.lock().traces.push(trace);
        self
    }

    pub fn with_graph(self, graph: GraphData) -> MemoryBackend {
        self.lock().graph = graph;
        self
    }

    /// Applies `yaml` as a revision; panics on invalid YAML (builders are for tests).
    pub fn with_config(self, yaml: &str, message: &str) -> MemoryBackend {
        if let Err(e) = self.apply_now(yaml, "fixture", message) {
            panic!("fixture YAML does not apply: {e:?}");
        }
        self
    }

    /// From now on every call fails with `message` (`None`: works again).
    pub fn set_failure(&self, message: Option<&str>) {
        self.lock().failure = message.map(str::to_string);
    }

    fn check(&self) -> Result<MutexGuard<'_, State>, BackendError> {
        let state = self.lock();
        match &state.failure {
            Some(message) => Err(BackendError::Unavailable(message.clone())),
            None => Ok(state),
        }
    }

    /// Parses and validates `yaml` as `trellis apply` does, against the current configuration:
    /// the resources merged in, or every message when an error is among them.
    fn merge(state: &State, yaml: &str) -> Result<(Resources, Vec<Diagnostic>), Vec<Diagnostic>> {
        let loaded = trellis_api::load_str(yaml, "<console>")?;
        if loaded.is_empty() {
            return Err(vec![Diagnostic::error("no resources in the YAML")]);
        }
        let mut resources = state.current().clone();
        let mut applied = Vec::new();
        for resource in loaded {
            let id = id_of(&resource);
            applied.push(id.clone());
            resources.insert(id, resource);
        }
        let messages = messages_of(&resources, &applied);
        Ok((resources, messages))
    }

    fn apply_now(
        &self,
        yaml: &str,
        author: &str,
        message: &str,
    ) -> Result<ApplyResult, BackendError> {
        let mut state = self.check()?;
        let (resources, _) = Self::merge(&state, yaml).map_err(BackendError::Invalid)?;
        let previous = state.current().clone();
        let summary = if message.is_empty() {
            describe_changes(&previous, &resources)
        } else {
            message.to_string()
        };
        Ok(state.commit(resources, author, summary))
    }

    /// Namespaces, services, workloads, proxies, config, revisions and two traces of a small
    /// shop: `shop` (degraded: some 5xx) and `ops` (healthy), proxies in every sync state, and a
    /// VirtualService with a warning (a subset no DestinationRule defines).
    pub fn fixture() -> MemoryBackend {
        let proxy =
            |name: &str, ns: &str, workload: &str, ip: &str, state: SyncState| ProxySummary {
                name: name.into(),
                namespace: ns.into(),
                workload: workload.into(),
                address: format!("{ip}:15006"),
                config_version: format!("{:08x}", name.len() * 7919),
                state,
                connected_since: "2026-11-21T09:58:12.000Z".into(),
                error: (state == SyncState::Nacked)
                    .then(|| "cluster outbound|9080|v3|reviews: unknown subset".into()),
            };
        let traffic = |rate: f64, e5: f64| TrafficHealthInputs {
            request_rate: rate,
            http_5xx_percent: e5,
            http_4xx_percent: 0.0,
            grpc_error_percent: 0.0,
        };
        let summary = |rate: f64, e5: f64| TrafficSummary {
            inbound: traffic(rate, e5),
            outbound: traffic(rate * 0.8, 0.0),
            p50_ms: Some(4.0),
            p95_ms: Some(18.0),
            p99_ms: Some(42.0),
        };
        let workload =
            |name: &str, ns: &str, app: &str, version: &str, rate: f64, e5: f64| WorkloadSummary {
                name: name.into(),
                namespace: ns.into(),
                app: Some(app.into()),
                version: Some(version.into()),
                labels: vec![
                    ("app".into(), app.into()),
                    ("version".into(), version.into()),
                ],
                proxies: 1,
                traffic: summary(rate, e5),
            };
        let service =
            |name: &str, ns: &str, workloads: &[&str], rate: f64, e5: f64| ServiceSummary {
                name: name.into(),
                namespace: ns.into(),
                host: format!("{name}.{ns}.svc.cluster.local"),
                ports: vec![9080],
                workloads: workloads.iter().map(|w| w.to_string()).collect(),
                traffic: summary(rate, e5),
            };
        MemoryBackend::new()
            .with_graph(crate::graph::sample::bookinfo())
            .with_namespace("shop", traffic(12.5, 0.4), MtlsStatus::Enabled)
            .with_namespace("ops", traffic(3.0, 0.0), MtlsStatus::Partial)
            .with_service(service(
                "productpage",
                "shop",
                &["productpage-v1"],
                5.0,
                0.0,
            ))
            .with_service(service(
                "reviews",
                "shop",
                &["reviews-v1", "reviews-v2"],
                7.5,
                0.7,
            ))
            .with_service(service("grafana", "ops", &["grafana"], 3.0, 0.0))
            .with_workload(workload(
                "productpage-v1",
                "shop",
                "productpage",
                "v1",
                5.0,
                0.0,
            ))
            .with_workload(workload("reviews-v1", "shop", "reviews", "v1", 6.0, 0.0))
            .with_workload(workload("reviews-v2", "shop", "reviews", "v2", 1.5, 3.3))
            .with_workload(workload("grafana", "ops", "grafana", "v1", 3.0, 0.0))
            .with_proxy(proxy(
                "productpage-v1-7d4b9",
                "shop",
                "productpage-v1",
                "10.0.0.11",
                SyncState::Synced,
            ))
            .with_proxy(proxy(
                "reviews-v1-5f6c2",
                "shop",
                "reviews-v1",
                "10.0.0.12",
                SyncState::Synced,
            ))
            .with_proxy(proxy(
                "reviews-v2-8a1e0",
                "shop",
                "reviews-v2",
                "10.0.0.13",
                SyncState::Nacked,
            ))
            .with_proxy(proxy(
                "grafana-6b7d1",
                "ops",
                "grafana",
                "10.0.1.21",
                SyncState::Stale,
            ))
            .with_config(FIXTURE_DESTINATION_RULE, "reviews subsets")
            .with_config(FIXTURE_VIRTUAL_SERVICE_V1, "")
            .with_config(FIXTURE_VIRTUAL_SERVICE_SPLIT, "")
            .with_trace(fixture_trace(
                "4bf92f3577b34da6a3ce929d0e0e4736",
                1_763_719_200_000_000,
                false,
            ))
            .with_trace(fixture_trace(
                "00f067aa0ba902b7c3c1c1b1a1f1e1d1",
                1_763_719_260_000_000,
                true,
            ))
    }
}

/// Revision 1 of the fixture.
pub const FIXTURE_DESTINATION_RULE: &str = "\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
  namespace: shop
spec:
  host: reviews.shop.svc.cluster.local
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
";

/// Revision 2 of the fixture.
pub const FIXTURE_VIRTUAL_SERVICE_V1: &str = "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: shop
spec:
  hosts:
  - reviews.shop.svc.cluster.local
  http:
  - route:
    - destination:
        host: reviews.shop.svc.cluster.local
        subset: v1
";

/// Revision 3 of the fixture: 80/20 with a subset (`v3`) the DestinationRule lacks, a warning.
pub const FIXTURE_VIRTUAL_SERVICE_SPLIT: &str = "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: shop
spec:
  hosts:
  - reviews.shop.svc.cluster.local
  http:
  - route:
    - destination:
        host: reviews.shop.svc.cluster.local
        subset: v1
      weight: 80
    - destination:
        host: reviews.shop.svc.cluster.local
        subset: v3
      weight: 20
";

/// productpage → reviews → ratings, 3 spans; `error` marks the reviews call failed.
fn fixture_trace(trace_id: &str, start_us: i64, error: bool) -> Trace {
    let span = |id: &str,
                parent: Option<&str>,
                service: &str,
                operation: &str,
                offset: i64,
                duration: u64,
                failed: bool| Span {
        span_id: id.into(),
        parent_id: parent.map(str::to_string),
        service: service.into(),
        operation: operation.into(),
        kind: "server".into(),
        start_us: start_us + offset,
        duration_us: duration,
        error: failed,
        tags: vec![(
            "http.response.status_code".into(),
            if failed { "503" } else { "200" }.into(),
        )],
    };
    Trace {
        trace_id: trace_id.into(),
        spans: vec![
            span(
                "a1",
                None,
                "productpage",
                "GET /productpage",
                0,
                24_000,
                false,
            ),
            span(
                "b2",
                Some("a1"),
                "reviews",
                "GET /reviews/0",
                2_000,
                15_000,
                error,
            ),
            span(
                "c3",
                Some("b2"),
                "ratings",
                "GET /ratings/0",
                4_000,
                6_000,
                false,
            ),
        ],
    }
}

fn id_of(resource: &Resource) -> ResourceRef {
    ResourceRef {
        kind: resource.kind().as_str().to_string(),
        namespace: resource.namespace().to_string(),
        name: resource.name().to_string(),
    }
}

/// The warnings that concern `ids` in the configuration `resources` (its own and the cross
/// checks), as the store reports them after an apply.
fn messages_of(resources: &Resources, ids: &[ResourceRef]) -> Vec<Diagnostic> {
    let set = ConfigSet::from_resources(resources.values().cloned().collect()).unwrap_or_default();
    let names: Vec<String> = ids.iter().map(ToString::to_string).collect();
    set.warnings()
        .into_iter()
        .filter(|d| d.resource.as_ref().is_some_and(|r| names.contains(r)))
        .collect()
}

/// `VirtualService shop/reviews configured, ...`: kubectl's words per changed resource.
fn describe_changes(before: &Resources, after: &Resources) -> String {
    let mut parts = Vec::new();
    for (id, resource) in after {
        match before.get(id) {
            None => parts.push(format!("{id} created")),
            Some(old) if old.raw != resource.raw => parts.push(format!("{id} configured")),
            Some(_) => {}
        }
    }
    for id in before.keys().filter(|id| !after.contains_key(*id)) {
        parts.push(format!("{id} deleted"));
    }
    parts.join(", ")
}

/// The YAML of a stored resource, from its JSON body (keys in their stored order).
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    let mut emitter = yaml_rust2::YamlEmitter::new(&mut out);
    if emitter.dump(&yaml_of(value)).is_err() {
        return serde_json::to_string_pretty(value).unwrap_or_default();
    }
    let body = out.strip_prefix("---\n").unwrap_or(&out).to_string();
    body + "\n"
}

fn yaml_of(value: &Value) -> yaml_rust2::Yaml {
    use yaml_rust2::Yaml;
    match value {
        Value::Null => Yaml::Null,
        Value::Bool(b) => Yaml::Boolean(*b),
        Value::Number(n) if n.is_i64() => Yaml::Integer(n.as_i64().unwrap_or_default()),
        Value::Number(n) => Yaml::Real(n.to_string()),
        Value::String(s) => Yaml::String(s.clone()),
        Value::Array(items) => Yaml::Array(items.iter().map(yaml_of).collect()),
        Value::Object(map) => Yaml::Hash(
            map.iter()
                .map(|(k, v)| (Yaml::String(k.clone()), yaml_of(v)))
                .collect(),
        ),
    }
}

fn resource_view(resources: &Resources, id: &ResourceRef, resource: &Resource) -> ConfigResource {
    ConfigResource {
        id: id.clone(),
        yaml: to_yaml(&resource.raw),
        messages: messages_of(resources, std::slice::from_ref(id)),
    }
}

/// Every resource's YAML under a `# Kind ns/name` header, for diffing whole configurations.
fn config_text(resources: &Resources) -> String {
    resources
        .iter()
        .map(|(id, r)| format!("# {id}\n{}", to_yaml(&r.raw)))
        .collect::<Vec<_>>()
        .join("---\n")
}

fn summarize(trace: &Trace) -> TraceSummary {
    let root = trace
        .spans
        .iter()
        .find(|s| s.parent_id.is_none())
        .or(trace.spans.first());
    let start = trace.spans.iter().map(|s| s.start_us).min().unwrap_or(0);
    let end = trace
        .spans
        .iter()
        .map(|s| s.start_us + s.duration_us as i64)
        .max()
        .unwrap_or(start);
    let mut services: Vec<String> = trace.spans.iter().map(|s| s.service.clone()).collect();
    services.sort();
    services.dedup();
    TraceSummary {
        trace_id: trace.trace_id.clone(),
        root_service: root.map(|s| s.service.clone()).unwrap_or_default(),
        root_operation: root.map(|s| s.operation.clone()).unwrap_or_default(),
        start_us: start,
        duration_us: (end - start).max(0) as u64,
        spans: trace.spans.len(),
        errors: trace.spans.iter().filter(|s| s.error).count(),
        services,
    }
}

fn matches(trace: &Trace, summary: &TraceSummary, q: &TraceQuery) -> bool {
    let service_spans = || trace.spans.iter().filter(|s| s.service == q.service);
    service_spans().next().is_some()
        && q.operation
            .as_ref()
            .is_none_or(|op| service_spans().any(|s| &s.operation == op))
        && q.tags.iter().all(|(k, v)| {
            trace
                .spans
                .iter()
                .any(|s| s.tags.iter().any(|(tk, tv)| tk == k && tv == v))
        })
        && q.min_duration_us.is_none_or(|d| summary.duration_us >= d)
        && q.max_duration_us.is_none_or(|d| summary.duration_us <= d)
        && q.start_us.is_none_or(|t| summary.start_us >= t)
        && q.end_us.is_none_or(|t| summary.start_us <= t)
}

fn ready<'a, T: Send + 'a>(result: Result<T, BackendError>) -> BackendFuture<'a, T> {
    Box::pin(std::future::ready(result))
}

impl ConsoleBackend for MemoryBackend {
    fn namespaces(&self) -> BackendFuture<'_, Vec<NamespaceSummary>> {
        ready(self.check().map(|state| {
            state
                .namespaces
                .iter()
                .map(|(name, (traffic, mtls))| NamespaceSummary {
                    name: name.clone(),
                    traffic: *traffic,
                    mtls: *mtls,
                    workloads: state
                        .workloads
                        .iter()
                        .filter(|w| &w.namespace == name)
                        .count(),
                    services: state
                        .services
                        .iter()
                        .filter(|s| &s.namespace == name)
                        .count(),
                    proxies: ProxyCounts::of(state.proxies.iter().filter(|p| &p.namespace == name)),
                })
                .collect()
        }))
    }

    fn proxies(&self) -> BackendFuture<'_, Vec<ProxySummary>> {
        ready(self.check().map(|state| {
            let mut proxies = state.proxies.clone();
            proxies.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
            proxies
        }))
    }

    fn config<'a>(&'a self, filter: &'a ConfigFilter) -> BackendFuture<'a, Vec<ConfigResource>> {
        ready(self.check().map(|state| {
            let current = state.current();
            current
                .iter()
                .filter(|(id, _)| filter.kind.as_ref().is_none_or(|k| &id.kind == k))
                .filter(|(id, _)| filter.namespace.as_ref().is_none_or(|n| &id.namespace == n))
                .map(|(id, r)| resource_view(current, id, r))
                .collect()
        }))
    }

    fn resource<'a>(&'a self, id: &'a ResourceRef) -> BackendFuture<'a, ConfigResource> {
        ready(self.check().and_then(|state| {
            let current = state.current();
            current
                .get(id)
                .map(|r| resource_view(current, id, r))
                .ok_or_else(|| BackendError::NotFound(id.to_string()))
        }))
    }

    fn revisions(&self, limit: usize) -> BackendFuture<'_, Vec<RevisionSummary>> {
        ready(self.check().map(|state| {
            state
                .revisions
                .iter()
                .rev()
                .take(limit)
                .map(|r| r.summary.clone())
                .collect()
        }))
    }

    fn diff(&self, from: u64, to: u64) -> BackendFuture<'_, RevisionDiff> {
        ready(self.check().and_then(|state| {
            let old = config_text(&state.revision(from)?.resources);
            let new = config_text(&state.revision(to)?.resources);
            let unified = similar::TextDiff::from_lines(&old, &new)
                .unified_diff()
                .context_radius(3)
                .header(&format!("revision {from}"), &format!("revision {to}"))
                .to_string();
            Ok(RevisionDiff { from, to, unified })
        }))
    }

    fn rollback(&self, revision: u64) -> BackendFuture<'_, ApplyResult> {
        ready(self.check().and_then(|mut state| {
            let resources = state.revision(revision)?.resources.clone();
            Ok(state.commit(
                resources,
                "console",
                format!("rollback to revision {revision}"),
            ))
        }))
    }

    fn validate<'a>(&'a self, yaml: &'a str) -> BackendFuture<'a, Vec<Diagnostic>> {
        ready(self.check().map(|state| match Self::merge(&state, yaml) {
            Ok((_, warnings)) => warnings,
            Err(messages) => messages,
        }))
    }

    fn apply<'a>(&'a self, yaml: &'a str, author: &'a str) -> BackendFuture<'a, ApplyResult> {
        ready(self.apply_now(yaml, author, ""))
    }

    fn services<'a>(
        &'a self,
        namespace: Option<&'a str>,
    ) -> BackendFuture<'a, Vec<ServiceSummary>> {
        ready(self.check().map(|state| {
            state
                .services
                .iter()
                .filter(|s| namespace.is_none_or(|ns| s.namespace == ns))
                .cloned()
                .collect()
        }))
    }

    fn workloads<'a>(
        &'a self,
        namespace: Option<&'a str>,
    ) -> BackendFuture<'a, Vec<WorkloadSummary>> {
        ready(self.check().map(|state| {
            state
                .workloads
                .iter()
                .filter(|w| namespace.is_none_or(|ns| w.namespace == ns))
                .cloned()
                .collect()
        }))
    }

    fn find_traces<'a>(&'a self, query: &'a TraceQuery) -> BackendFuture<'a, Vec<TraceSummary>> {
        ready(self.check().map(|state| {
            let mut found: Vec<TraceSummary> = state
                .traces
                .iter()
                .map(|t| (t, summarize(t)))
                .filter(|(t, s)| matches(t, s, query))
                .map(|(_, s)| s)
                .collect();
            found.sort_by_key(|t| std::cmp::Reverse(t.start_us));
            found.truncate(query.limit);
            found
        }))
    }

    fn trace<'a>(&'a self, trace_id: &'a str) -> BackendFuture<'a, Trace> {
        ready(self.check().and_then(|state| {
            state
                .traces
                .iter()
                .find(|t| t.trace_id == trace_id)
                .cloned()
                .ok_or_else(|| BackendError::NotFound(format!("trace {trace_id}")))
        }))
    }

    fn graph<'a>(&'a self, _query: &'a GraphQuery) -> BackendFuture<'a, GraphData> {
        ready(self.check().map(|state| state.graph.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vs(id: &str) -> ResourceRef {
        ResourceRef {
            kind: "VirtualService".into(),
            namespace: "shop".into(),
            name: id.into(),
        }
    }

    #[tokio::test]
    async fn fixture_has_history_and_a_warning() {
        let b = MemoryBackend::fixture();
        let revisions = b.revisions(10).await.unwrap();
        assert_eq!(
            revisions.iter().map(|r| r.number).collect::<Vec<_>>(),
            [3, 2, 1, 0]
        );
        assert_eq!(revisions[2].summary, "reviews subsets");
        assert_eq!(revisions[1].summary, "VirtualService shop/reviews created");
        let reviews = b.resource(&vs("reviews")).await.unwrap();
        assert!(reviews.yaml.contains("subset: v3"), "{}", reviews.yaml);
        assert!(
            reviews.messages.iter().any(|m| m.message.contains("v3")),
            "{:?}",
            reviews.messages
        );
    }

    #[tokio::test]
    async fn invalid_apply_writes_nothing_and_rollback_is_a_new_revision() {
        let b = MemoryBackend::fixture();
        let bad = FIXTURE_VIRTUAL_SERVICE_V1.replace("subset: v1", "subset: v1\n      weight: 300");
        let Err(BackendError::Invalid(messages)) = b.apply(&bad, "me").await else {
            panic!("accepted");
        };
        assert!(messages.iter().any(|m| m.is_error()), "{messages:?}");
        assert_eq!(b.revisions(1).await.unwrap()[0].number, 3);

        let result = b.rollback(2).await.unwrap();
        assert_eq!(result.revision, Some(4));
        assert!(
            !b.resource(&vs("reviews"))
                .await
                .unwrap()
                .yaml
                .contains("v3")
        );
        let diff = b.diff(3, 4).await.unwrap();
        assert!(
            diff.unified.contains("-            subset: v3"),
            "{}",
            diff.unified
        );
    }
}
