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
use crate::model::{
    Direction, PeerKind, SeriesPoint, SeriesQuery, ServiceDetail, TrafficEdge, TrafficSeries,
    TrafficTarget, WorkloadDetail,
};
use crate::model::{SpanEvent, TapDirection, TapEvent, TapFilter};
use futures_util::stream::BoxStream;
use serde_json::Value;
use std::collections::BTreeMap;
use std::collections::HashMap;
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
    /// What [`ConsoleBackend::tap`] replays, oldest first.
    tap: Vec<TapEvent>,
    graph: GraphData,
    /// Inbound and outbound edges per service or workload.
    edges: HashMap<TrafficTarget, (Vec<TrafficEdge>, Vec<TrafficEdge>)>,
    /// Stored per-minute history per target and direction, in time order.
    series: HashMap<(TrafficTarget, Direction), Vec<SeriesPoint>>,
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

    /// A request the live tap replays (in the order added).
    pub fn with_tap_event(self, event: TapEvent) -> MemoryBackend {
        self.lock().tap.push(event);
        self
    }

    pub fn with_graph(self, graph: GraphData) -> MemoryBackend {
        self.lock().graph = graph;
        self
    }

    /// The inbound and outbound traffic edges of a service or workload.
    pub fn with_edges(
        self,
        target: TrafficTarget,
        inbound: Vec<TrafficEdge>,
        outbound: Vec<TrafficEdge>,
    ) -> MemoryBackend {
        self.lock().edges.insert(target, (inbound, outbound));
        self
    }

    /// Stored history of a target in one direction; [`ConsoleBackend::traffic_series`] answers
    /// from it, merging points into the query's steps.
    pub fn with_series(
        self,
        target: TrafficTarget,
        direction: Direction,
        mut points: Vec<SeriesPoint>,
    ) -> MemoryBackend {
        points.sort_by_key(|p| p.t_us);
        self.lock().series.insert((target, direction), points);
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
            .with_fixture_tap()
            .with_fixture_traffic()
    }

    /// The fixture's traffic edges (ingress → productpage → reviews → v1/v2; ops/grafana from
    /// outside the mesh) and six hours of per-minute history for every service and workload,
    /// following its summary, with no data from 12 to 8 minutes before [`MEMORY_NOW_US`].
    fn with_fixture_traffic(self) -> MemoryBackend {
        let edge =
            |kind: PeerKind, ns: &str, name: &str, rate: f64, e5: f64, mtls: f64| TrafficEdge {
                peer_kind: kind,
                peer_namespace: ns.into(),
                peer_name: name.into(),
                protocol: "http".into(),
                traffic: TrafficHealthInputs {
                    request_rate: rate,
                    http_5xx_percent: e5,
                    http_4xx_percent: 0.0,
                    grpc_error_percent: 0.0,
                },
                p50_ms: Some(4.0),
                p95_ms: Some(18.0),
                p99_ms: Some(42.0),
                mtls_percent: mtls,
            };
        let service = |ns: &str, name: &str| TrafficTarget::Service {
            namespace: ns.into(),
            name: name.into(),
        };
        let workload = |ns: &str, name: &str| TrafficTarget::Workload {
            namespace: ns.into(),
            name: name.into(),
        };
        use PeerKind::{Service, Unknown, Workload};
        let mut backend = self
            .with_edges(
                service("shop", "productpage"),
                vec![edge(Unknown, "", "unknown", 5.0, 0.0, 0.0)],
                vec![edge(Workload, "shop", "productpage-v1", 5.0, 0.0, 100.0)],
            )
            .with_edges(
                service("shop", "reviews"),
                vec![edge(Workload, "shop", "productpage-v1", 7.5, 0.7, 100.0)],
                vec![
                    edge(Workload, "shop", "reviews-v1", 6.0, 0.0, 100.0),
                    edge(Workload, "shop", "reviews-v2", 1.5, 3.3, 100.0),
                ],
            )
            .with_edges(
                service("ops", "grafana"),
                vec![edge(Unknown, "", "unknown", 3.0, 0.0, 0.0)],
                vec![edge(Workload, "ops", "grafana", 3.0, 0.0, 0.0)],
            )
            .with_edges(
                workload("shop", "productpage-v1"),
                vec![edge(Unknown, "", "unknown", 5.0, 0.0, 0.0)],
                vec![edge(Service, "shop", "reviews", 7.5, 0.7, 100.0)],
            )
            .with_edges(
                workload("shop", "reviews-v1"),
                vec![edge(Workload, "shop", "productpage-v1", 6.0, 0.0, 100.0)],
                vec![],
            )
            .with_edges(
                workload("shop", "reviews-v2"),
                vec![edge(Workload, "shop", "productpage-v1", 1.5, 3.3, 100.0)],
                vec![],
            )
            .with_edges(
                workload("ops", "grafana"),
                vec![edge(Unknown, "", "unknown", 3.0, 0.0, 0.0)],
                vec![],
            );
        let targets: Vec<(TrafficTarget, TrafficSummary)> = {
            let state = backend.lock();
            let services = state
                .services
                .iter()
                .map(|s| (service(&s.namespace, &s.name), s.traffic));
            let workloads = state
                .workloads
                .iter()
                .map(|w| (workload(&w.namespace, &w.name), w.traffic));
            services.chain(workloads).collect()
        };
        for (target, traffic) in targets {
            for (direction, inputs) in [
                (Direction::Inbound, traffic.inbound),
                (Direction::Outbound, traffic.outbound),
            ] {
                let points = synthetic_history(&inputs, &traffic);
                backend = backend.with_series(target.clone(), direction, points);
            }
        }
        backend
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

/// A bookinfo request: productpage calls details, then reviews, which calls ratings (7 spans,
/// 4 services, client and server sides). With `error` reviews fails fast with a 503 and an
/// exception event, and ratings is never called (5 spans).
fn fixture_trace(trace_id: &str, start_us: i64, error: bool) -> Trace {
    // (span, parent, service, kind, operation, start offset, duration), in microseconds.
    #[rustfmt::skip]
    let plan = [
        ("a1", None, "productpage", "server", "GET /productpage", 0, 24_000),
        ("a2", Some("a1"), "productpage", "client", "GET details", 1_000, 3_000),
        ("d1", Some("a2"), "details", "server", "GET /details/0", 1_500, 2_000),
        ("a3", Some("a1"), "productpage", "client", "GET reviews", 5_000, 17_000),
        ("b1", Some("a3"), "reviews", "server", "GET /reviews/0", 5_500, 16_000),
        ("b2", Some("b1"), "reviews", "client", "GET ratings", 7_000, 8_000),
        ("c1", Some("b2"), "ratings", "server", "GET /ratings/0", 7_500, 7_000),
    ];
    let mut spans: Vec<Span> = plan
        .into_iter()
        .map(
            |(id, parent, service, kind, operation, offset, duration): (
                &str,
                Option<&str>,
                &str,
                &str,
                &str,
                i64,
                u64,
            )| Span {
                span_id: format!("{id:0>16}"),
                parent_id: parent.map(|p| format!("{p:0>16}")),
                service: service.into(),
                operation: operation.into(),
                kind: kind.into(),
                start_us: start_us + offset,
                duration_us: duration,
                error: false,
                tags: vec![
                    ("http.request.method".into(), "GET".into()),
                    ("http.response.status_code".into(), "200".into()),
                ],
                resource: vec![
                    ("service.name".into(), service.into()),
                    ("service.version".into(), "v1".into()),
                    ("trellis.proxy".into(), format!("{service}-v1-7d4b9.shop")),
                ],
                events: Vec::new(),
            },
        )
        .collect();
    if error {
        spans.truncate(5);
        spans[0].duration_us = 12_000;
        spans[3].duration_us = 6_000;
        spans[3].error = true;
        let reviews = &mut spans[4];
        reviews.duration_us = 4_500;
        reviews.error = true;
        reviews.tags[1].1 = "503".into();
        reviews.events.push(SpanEvent {
            time_us: reviews.start_us + 4_000,
            name: "exception".into(),
            attributes: vec![(
                "exception.message".into(),
                "upstream connect error <reset> & retries exhausted".into(),
            )],
        });
    }
    Trace {
        trace_id: trace_id.into(),
        spans,
    }
}

impl MemoryBackend {
    /// Six requests between the fixture's workloads, one of them a 503 without mTLS.
    fn with_fixture_tap(self) -> MemoryBackend {
        let event = |second: u32,
                     direction: TapDirection,
                     (source, destination): (&str, &str),
                     path: &str,
                     status: u16,
                     duration_ms: f64| TapEvent {
            time: format!("2026-11-21T10:09:{second:02}.000Z"),
            direction,
            source: source.into(),
            destination: destination.into(),
            method: "GET".into(),
            authority: format!(
                "{}:9080",
                destination.split(['.', '-']).next().unwrap_or_default()
            ),
            path: path.into(),
            status,
            duration_ms,
            flags: if status >= 500 { "URX" } else { "-" }.into(),
            mtls: status < 500,
            dropped_before: 0,
        };
        let page = ("productpage-v1.shop", "reviews-v1.shop");
        let to_v2 = ("productpage-v1.shop", "reviews-v2.shop");
        #[rustfmt::skip]
        let events = [
            event(1, TapDirection::Outbound, page, "/reviews/0", 200, 11.5),
            event(1, TapDirection::Inbound, page, "/reviews/0", 200, 10.2),
            event(2, TapDirection::Outbound, to_v2, "/reviews/1", 503, 2.0),
            event(3, TapDirection::Inbound, ("10.0.0.1", "productpage-v1.shop"), "/productpage?u=<x>", 200, 31.0),
            event(4, TapDirection::Inbound, ("unknown", "grafana.ops"), "/api/health", 200, 1.2),
            event(5, TapDirection::Outbound, page, "/reviews/2", 200, 9.8),
        ];
        events.into_iter().fold(self, MemoryBackend::with_tap_event)
    }
}

/// Whether a tap event involves the filter's workload (either side, `name.namespace`).
fn tap_matches(event: &TapEvent, filter: &TapFilter) -> bool {
    [&event.source, &event.destination].into_iter().any(|peer| {
        let (name, namespace) = peer.split_once('.').unwrap_or((peer.as_str(), ""));
        filter.namespace.as_deref().is_none_or(|ns| ns == namespace)
            && filter.workload.as_deref().is_none_or(|w| w == name)
    })
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

    fn delete<'a>(
        &'a self,
        ids: &'a [ResourceRef],
        author: &'a str,
    ) -> BackendFuture<'a, ApplyResult> {
        ready(self.check().and_then(|mut state| {
            let mut resources = state.current().clone();
            for id in ids {
                if resources.remove(id).is_none() {
                    return Err(BackendError::NotFound(id.to_string()));
                }
            }
            let message = describe_changes(state.current(), &resources);
            Ok(state.commit(resources, author, message))
        }))
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

    /// Replays the stored events that match, then ends (a real tap stays open).
    fn tap(&self, filter: TapFilter) -> Result<BoxStream<'static, TapEvent>, BackendError> {
        let state = self.check()?;
        let events: Vec<TapEvent> = state
            .tap
            .iter()
            .filter(|e| tap_matches(e, &filter))
            .cloned()
            .collect();
        Ok(Box::pin(futures_util::stream::iter(events)))
    }

    fn service<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BackendFuture<'a, ServiceDetail> {
        ready(self.check().and_then(|state| {
            let summary = state
                .services
                .iter()
                .find(|s| s.namespace == namespace && s.name == name)
                .cloned()
                .ok_or_else(|| BackendError::NotFound(format!("service {namespace}/{name}")))?;
            let target = TrafficTarget::Service {
                namespace: namespace.into(),
                name: name.into(),
            };
            let (inbound, outbound) = state.edges.get(&target).cloned().unwrap_or_default();
            Ok(ServiceDetail {
                summary,
                inbound,
                outbound,
            })
        }))
    }

    fn workload<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BackendFuture<'a, WorkloadDetail> {
        ready(self.check().and_then(|state| {
            let summary = state
                .workloads
                .iter()
                .find(|w| w.namespace == namespace && w.name == name)
                .cloned()
                .ok_or_else(|| BackendError::NotFound(format!("workload {namespace}/{name}")))?;
            let services = state
                .services
                .iter()
                .filter(|s| s.namespace == namespace && s.workloads.iter().any(|w| w == name))
                .map(|s| s.name.clone())
                .collect();
            let proxies = state
                .proxies
                .iter()
                .filter(|p| p.namespace == namespace && p.workload == name)
                .cloned()
                .collect();
            let target = TrafficTarget::Workload {
                namespace: namespace.into(),
                name: name.into(),
            };
            let (inbound, outbound) = state.edges.get(&target).cloned().unwrap_or_default();
            Ok(WorkloadDetail {
                summary,
                services,
                proxies,
                inbound,
                outbound,
            })
        }))
    }

    fn traffic_series<'a>(&'a self, query: &'a SeriesQuery) -> BackendFuture<'a, TrafficSeries> {
        ready(self.check().and_then(|state| {
            let (ns, name) = (query.target.namespace(), query.target.name());
            let known = match &query.target {
                TrafficTarget::Service { .. } => state
                    .services
                    .iter()
                    .any(|s| s.namespace == ns && s.name == name),
                TrafficTarget::Workload { .. } => state
                    .workloads
                    .iter()
                    .any(|w| w.namespace == ns && w.name == name),
            };
            if !known {
                return Err(BackendError::NotFound(format!("{ns}/{name}")));
            }
            let points = state
                .series
                .get(&(query.target.clone(), query.direction))
                .map(Vec::as_slice)
                .unwrap_or_default();
            resample(points, query)
        }))
    }
}

/// "Now" for the in-memory backend: series queries without an end end here, so pages
/// rendered from the fixture are the same on every run (2025-11-21T10:10:00Z, just after the
/// fixture's traces).
pub const MEMORY_NOW_US: i64 = 1_763_719_800_000_000;

const MINUTE_US: i64 = 60_000_000;

/// Six hours of per-minute points around `inputs` (a slow deterministic wave), missing the
/// minutes from 12 to 8 before [`MEMORY_NOW_US`].
fn synthetic_history(inputs: &TrafficHealthInputs, latency: &TrafficSummary) -> Vec<SeriesPoint> {
    (0..=360)
        .filter(|m| !(8..=12).contains(m))
        .map(|minutes_ago: i64| {
            let wave = 1.0 + 0.25 * ((minutes_ago as f64) / 9.0).sin();
            let rate = inputs.request_rate * wave;
            let busy = |ms: Option<f64>| ms.filter(|_| rate > 0.0).map(|v| v * wave);
            SeriesPoint {
                t_us: MEMORY_NOW_US - minutes_ago * MINUTE_US,
                request_rate: rate,
                error_percent: inputs.error_percent() * (2.0 - wave),
                p50_ms: busy(latency.p50_ms),
                p95_ms: busy(latency.p95_ms),
                p99_ms: busy(latency.p99_ms),
            }
        })
        .rev()
        .collect()
}

/// Merges `points` into the steps of `query`: rates averaged, error % weighted by rate, latency
/// quantiles the worst of the step (an upper bound, as merged quantiles cannot be exact).
fn resample(points: &[SeriesPoint], query: &SeriesQuery) -> Result<TrafficSeries, BackendError> {
    let step_us = i64::try_from(query.step.as_micros()).unwrap_or(i64::MAX);
    let window_us = i64::try_from(query.window.as_micros()).unwrap_or(i64::MAX);
    if step_us <= 0 || step_us > window_us {
        return Err(BackendError::BadRequest(format!(
            "the step ({}s) must be more than zero and at most the window ({}s)",
            query.step.as_secs(),
            query.window.as_secs()
        )));
    }
    let end_us = query.end_us.unwrap_or(MEMORY_NOW_US);
    let start_us = end_us.saturating_sub(window_us);
    let steps = (window_us / step_us).max(1);
    let mut merged = Vec::new();
    for i in 1..=steps {
        let t_us = start_us + i * step_us;
        let inside: Vec<&SeriesPoint> = points
            .iter()
            .filter(|p| p.t_us > t_us - step_us && p.t_us <= t_us)
            .collect();
        if inside.is_empty() {
            continue;
        }
        let n = inside.len() as f64;
        let rate_sum: f64 = inside.iter().map(|p| p.request_rate).sum();
        let error_percent = if rate_sum > 0.0 {
            inside
                .iter()
                .map(|p| p.error_percent * p.request_rate)
                .sum::<f64>()
                / rate_sum
        } else {
            0.0
        };
        let worst = |f: fn(&SeriesPoint) -> Option<f64>| {
            inside.iter().filter_map(|p| f(p)).reduce(f64::max)
        };
        merged.push(SeriesPoint {
            t_us,
            request_rate: rate_sum / n,
            error_percent,
            p50_ms: worst(|p| p.p50_ms),
            p95_ms: worst(|p| p.p95_ms),
            p99_ms: worst(|p| p.p99_ms),
        });
    }
    Ok(TrafficSeries {
        start_us,
        end_us,
        step: query.step,
        points: merged,
    })
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
    async fn traffic_series_merges_steps_leaves_gaps_and_refuses_bad_queries() {
        let b = MemoryBackend::fixture();
        let mut query = SeriesQuery {
            target: TrafficTarget::Service {
                namespace: "shop".into(),
                name: "reviews".into(),
            },
            direction: Direction::Inbound,
            window: std::time::Duration::from_secs(900),
            step: std::time::Duration::from_secs(60),
            end_us: None,
        };
        let series = b.traffic_series(&query).await.unwrap();
        assert_eq!(series.end_us, MEMORY_NOW_US);
        // 15 steps, five of them (12 to 8 minutes ago) without data.
        assert_eq!(series.points.len(), 10, "{series:?}");
        let last = series.points.last().unwrap();
        assert_eq!(last.t_us, MEMORY_NOW_US);
        assert!((last.request_rate - 7.5).abs() < 1e-9, "{last:?}");
        assert_eq!(last.p95_ms, Some(18.0));

        query.window = std::time::Duration::from_secs(3600);
        query.step = std::time::Duration::from_secs(600);
        assert_eq!(b.traffic_series(&query).await.unwrap().points.len(), 6);

        query.step = std::time::Duration::ZERO;
        assert!(matches!(
            b.traffic_series(&query).await,
            Err(BackendError::BadRequest(_))
        ));
        query.target = TrafficTarget::Workload {
            namespace: "shop".into(),
            name: "nope".into(),
        };
        assert!(matches!(
            b.traffic_series(&query).await,
            Err(BackendError::NotFound(_))
        ));
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
