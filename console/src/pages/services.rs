//! Services: the list (`/services?namespace=`) with health, rate, error % and p95, and one
//! service's page (`/namespaces/{ns}/services/{name}`): health, traffic tables, charts over a
//! window, the config that applies to it with its validations, and recent traces. The pieces
//! shared with the workload page (window, charts, tables, config, traces) live here too.

use super::{encode, format_percent, format_rate, param};
use crate::backend::ConsoleBackend;
use crate::chart::{self, Chart, Line};
use crate::model::{
    ConfigFilter, ConfigResource, Direction, Health, PeerKind, SeriesQuery, ServiceSummary,
    TraceQuery, TraceSummary, TrafficEdge, TrafficSeries, TrafficSummary, TrafficTarget,
};
use crate::server::Params;
use crate::shell::{Nav, Page, PageError};
use leptos::prelude::*;
use serde_json::Value;
use std::time::Duration;

/// `/namespaces/{ns}/services/{name}`.
pub fn service_href(namespace: &str, name: &str) -> String {
    format!(
        "/namespaces/{}/services/{}",
        encode(namespace),
        encode(name)
    )
}

/// `/namespaces/{ns}/workloads/{name}`.
pub fn workload_href(namespace: &str, name: &str) -> String {
    format!(
        "/namespaces/{}/workloads/{}",
        encode(namespace),
        encode(name)
    )
}

/// The chart windows offered, with the step of each (history is stored per minute).
pub const WINDOWS: [(&str, Duration, Duration); 4] = [
    ("5m", Duration::from_secs(300), Duration::from_secs(60)),
    ("15m", Duration::from_secs(900), Duration::from_secs(60)),
    ("1h", Duration::from_secs(3600), Duration::from_secs(120)),
    ("6h", Duration::from_secs(21600), Duration::from_secs(600)),
];

/// What the chart form asks for: `?window=` (default 15m) and `?direction=` (default inbound).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChartChoice {
    pub window: &'static str,
    pub length: Duration,
    pub step: Duration,
    pub direction: Direction,
}

impl ChartChoice {
    pub fn parse(params: &Params) -> Result<ChartChoice, PageError> {
        let wanted = param(params, "window").unwrap_or("15m");
        let (window, length, step) = WINDOWS
            .into_iter()
            .find(|(w, _, _)| *w == wanted)
            .ok_or_else(|| {
                PageError::BadRequest(format!(
                    "`window` must be one of 5m, 15m, 1h or 6h, got {wanted:?}"
                ))
            })?;
        let direction = match param(params, "direction").unwrap_or("inbound") {
            "inbound" => Direction::Inbound,
            "outbound" => Direction::Outbound,
            other => {
                return Err(PageError::BadRequest(format!(
                    "`direction` must be inbound or outbound, got {other:?}"
                )));
            }
        };
        Ok(ChartChoice {
            window,
            length,
            step,
            direction,
        })
    }

    pub fn query(&self, target: TrafficTarget) -> SeriesQuery {
        SeriesQuery {
            target,
            direction: self.direction,
            window: self.length,
            step: self.step,
            end_us: None,
        }
    }
}

pub async fn list(backend: &dyn ConsoleBackend, params: &Params) -> Result<Page, PageError> {
    let namespace = param(params, "namespace");
    let services = backend.services(namespace).await?;
    let body = if services.is_empty() {
        view! { <p class="empty">"No services match."</p> }.into_any()
    } else {
        let rows = services.iter().map(service_row).collect_view();
        view! {
            <div class="table-wrap">
                <table class="services">
                    <thead>
                        <tr>
                            <th scope="col">"Name"</th>
                            <th scope="col">"Namespace"</th>
                            <th scope="col">"Health"</th>
                            <th scope="col">"Requests"</th>
                            <th scope="col">"Errors"</th>
                            <th scope="col">"p95"</th>
                            <th scope="col">"Workloads"</th>
                        </tr>
                    </thead>
                    <tbody>{rows}</tbody>
                </table>
            </div>
        }
        .into_any()
    };
    Ok(Page::new(
        Nav::Services,
        "Services",
        view! {
            {namespace_filter("/services", namespace)}
            {body}
        },
    ))
}

/// The GET form that sets `namespace` on a list page.
pub fn namespace_filter(action: &'static str, namespace: Option<&str>) -> impl IntoView + use<> {
    let value = namespace.unwrap_or_default().to_string();
    view! {
        <form class="filters" method="get" action=action>
            <label>"Namespace " <input type="text" name="namespace" value=value /></label>
            <button type="submit">"Filter"</button>
        </form>
    }
}

fn service_row(s: &ServiceSummary) -> impl IntoView + use<> {
    let workloads = s
        .workloads
        .iter()
        .map(|w| view! { <a href=workload_href(&s.namespace, w)>{w.clone()}</a>" " })
        .collect_view();
    view! {
        <tr>
            <th scope="row"><a href=service_href(&s.namespace, &s.name)>{s.name.clone()}</a></th>
            <td>{s.namespace.clone()}</td>
            <td>{health_badge(Health::of(&s.traffic.inbound))}</td>
            <td class="num">{format_rate(s.traffic.inbound.request_rate)}</td>
            <td class="num">{format_percent(s.traffic.inbound.error_percent())}</td>
            <td class="num">{format_ms(s.traffic.p95_ms)}</td>
            <td>{workloads}</td>
        </tr>
    }
}

/// Health as a colour and a word (never colour alone).
pub fn health_badge(health: Health) -> impl IntoView + use<> {
    view! {
        <span class=format!("health {}", health.css_class())>
            <span class="dot" aria-hidden="true"></span>
            {health.label()}
        </span>
    }
}

/// Milliseconds, or a dash without traffic.
pub fn format_ms(ms: Option<f64>) -> String {
    match ms {
        None => "–".to_string(),
        Some(v) if v < 10.0 => format!("{v:.1} ms"),
        Some(v) => format!("{v:.0} ms"),
    }
}

pub async fn detail(
    backend: &dyn ConsoleBackend,
    namespace: String,
    name: String,
    params: &Params,
) -> Result<Page, PageError> {
    let choice = ChartChoice::parse(params)?;
    let detail = backend.service(&namespace, &name).await?;
    let target = TrafficTarget::Service {
        namespace: namespace.clone(),
        name: name.clone(),
    };
    let series = backend.traffic_series(&choice.query(target)).await?;
    let workloads = backend.workloads(Some(&namespace)).await?;
    let selected: Vec<&[(String, String)]> = workloads
        .iter()
        .filter(|w| detail.summary.workloads.contains(&w.name))
        .map(|w| w.labels.as_slice())
        .collect();
    let config = backend.config(&ConfigFilter::default()).await?;
    let applies: Vec<ConfigResource> = config
        .into_iter()
        .filter(|r| {
            routes_to(r, &namespace, std::slice::from_ref(&name))
                || selected.iter().any(|labels| selects(r, &namespace, labels))
        })
        .collect();
    let traces = recent_traces(backend, &name).await?;
    let s = &detail.summary;
    let here = service_href(&namespace, &name);
    let wizard = format!("{here}/wizard");
    let workload_links = s
        .workloads
        .iter()
        .map(|w| view! { <a href=workload_href(&namespace, w)>{w.clone()}</a>" " })
        .collect_view();
    let ports = s
        .ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let graph = format!("/graph?namespaces={}", encode(&namespace));
    Ok(Page::new(
        Nav::Services,
        format!("Service {namespace}/{name}"),
        view! {
            <section class="panel detail-header">
                <p class="actions">
                    {health_badge(Health::of(&s.traffic.inbound))}
                    <a class="button" href=wizard>"Traffic"</a>
                    <a href=graph>"Graph"</a>
                    <a href=format!("/services?namespace={}", encode(&namespace))>
                        {format!("All services in {namespace}")}
                    </a>
                </p>
                <dl class="facts">
                    <dt>"Host"</dt>
                    <dd><code>{s.host.clone()}</code></dd>
                    <dt>"Ports"</dt>
                    <dd>{ports}</dd>
                    <dt>"Workloads"</dt>
                    <dd>{workload_links}</dd>
                    {traffic_facts(&s.traffic)}
                </dl>
            </section>
            {traffic_sections(&detail.inbound, &detail.outbound, &here, &choice, &series)}
            {config_section(&applies)}
            {traces_section(&traces)}
        },
    ))
}

/// The traffic facts of a detail page's header (`dt`/`dd` pairs): inbound rate, errors and
/// latency quantiles.
pub fn traffic_facts(traffic: &TrafficSummary) -> impl IntoView + use<> {
    let latency = format!(
        "{} / {} / {}",
        format_ms(traffic.p50_ms),
        format_ms(traffic.p95_ms),
        format_ms(traffic.p99_ms),
    );
    view! {
        <dt>"Requests"</dt>
        <dd>{format_rate(traffic.inbound.request_rate)}</dd>
        <dt>"Errors"</dt>
        <dd>{format_percent(traffic.inbound.error_percent())}</dd>
        <dt>"Latency p50 / p95 / p99"</dt>
        <dd>{latency}</dd>
    }
}

/// A detail page's traffic: the inbound and outbound tables, then the charts.
pub fn traffic_sections(
    inbound: &[TrafficEdge],
    outbound: &[TrafficEdge],
    action: &str,
    choice: &ChartChoice,
    series: &TrafficSeries,
) -> impl IntoView + use<> {
    view! {
        {traffic_table("Inbound traffic", "Source", inbound)}
        {traffic_table("Outbound traffic", "Destination", outbound)}
        {charts_section(action, choice, series)}
    }
}

/// A traffic table: one row per peer with rate, errors, latency and mTLS share.
pub fn traffic_table(
    heading: &'static str,
    peer: &'static str,
    edges: &[TrafficEdge],
) -> impl IntoView + use<> {
    let body = if edges.is_empty() {
        view! { <p class="empty">"No traffic in the summary window."</p> }.into_any()
    } else {
        let rows = edges.iter().map(edge_row).collect_view();
        view! {
            <div class="table-wrap">
                <table class="traffic">
                    <thead>
                        <tr>
                            <th scope="col">{peer}</th>
                            <th scope="col">"Protocol"</th>
                            <th scope="col">"Health"</th>
                            <th scope="col">"Requests"</th>
                            <th scope="col">"Errors"</th>
                            <th scope="col">"p50"</th>
                            <th scope="col">"p95"</th>
                            <th scope="col">"p99"</th>
                            <th scope="col">"mTLS"</th>
                        </tr>
                    </thead>
                    <tbody>{rows}</tbody>
                </table>
            </div>
        }
        .into_any()
    };
    view! {
        <section class="panel">
            <h2>{heading}</h2>
            {body}
        </section>
    }
}

fn edge_row(e: &TrafficEdge) -> impl IntoView + use<> {
    let label = if e.peer_namespace.is_empty() {
        e.peer_name.clone()
    } else {
        format!("{}/{}", e.peer_namespace, e.peer_name)
    };
    let peer = match e.peer_kind {
        PeerKind::Service => {
            view! { <a href=service_href(&e.peer_namespace, &e.peer_name)>{label}" (service)"</a> }
                .into_any()
        }
        PeerKind::Workload => {
            view! { <a href=workload_href(&e.peer_namespace, &e.peer_name)>{label}</a> }.into_any()
        }
        PeerKind::Unknown => view! { <span>{label}</span> }.into_any(),
    };
    let mtls = if e.mtls_percent >= 100.0 {
        "🔒 mTLS".to_string()
    } else if e.mtls_percent <= 0.0 {
        "plaintext".to_string()
    } else {
        format!("{} mTLS", format_percent(e.mtls_percent))
    };
    view! {
        <tr>
            <th scope="row">{peer}</th>
            <td>{e.protocol.clone()}</td>
            <td>{health_badge(Health::of(&e.traffic))}</td>
            <td class="num">{format_rate(e.traffic.request_rate)}</td>
            <td class="num">{format_percent(e.traffic.error_percent())}</td>
            <td class="num">{format_ms(e.p50_ms)}</td>
            <td class="num">{format_ms(e.p95_ms)}</td>
            <td class="num">{format_ms(e.p99_ms)}</td>
            <td>{mtls}</td>
        </tr>
    }
}

/// The window/direction form and the three charts drawn from `series`.
pub fn charts_section(
    action: &str,
    choice: &ChartChoice,
    series: &TrafficSeries,
) -> impl IntoView + use<> {
    let windows = WINDOWS
        .into_iter()
        .map(|(w, _, _)| view! { <option value=w selected=w == choice.window>{w}</option> })
        .collect_view();
    let inbound = choice.direction == Direction::Inbound;
    let step_us = i64::try_from(series.step.as_micros()).unwrap_or(i64::MAX);
    let line =
        |name: &str, colour: &'static str, f: fn(&crate::model::SeriesPoint) -> Option<f64>| Line {
            name: name.to_string(),
            colour,
            points: series.points.iter().map(|p| (p.t_us, f(p))).collect(),
        };
    let chart = |title: &str, unit: &'static str, area: bool, lines: Vec<Line>| {
        chart::render(&Chart {
            title: title.to_string(),
            unit,
            start_us: series.start_us,
            end_us: series.end_us,
            step_us,
            area,
            lines,
        })
    };
    let rate = chart(
        "Request rate",
        "req/s",
        true,
        vec![line("requests", "#1f6feb", |p| Some(p.request_rate))],
    );
    let errors = chart(
        "Error rate",
        "%",
        true,
        vec![line("errors", "#cf222e", |p| Some(p.error_percent))],
    );
    let latency = chart(
        "Latency",
        "ms",
        false,
        vec![
            line("p50", "#2da44e", |p| p.p50_ms),
            line("p95", "#bf8700", |p| p.p95_ms),
            line("p99", "#8250df", |p| p.p99_ms),
        ],
    );
    view! {
        <section class="panel charts">
            <h2>"Traffic over time"</h2>
            <form class="filters" method="get" action=action.to_string()>
                <label>"Window " <select name="window">{windows}</select></label>
                <label>
                    "Direction "
                    <select name="direction">
                        <option value="inbound" selected=inbound>"Inbound"</option>
                        <option value="outbound" selected=!inbound>"Outbound"</option>
                    </select>
                </label>
                <button type="submit">"Show"</button>
            </form>
            <div
                class="chart-grid"
                style="display:grid;grid-template-columns:repeat(auto-fit, minmax(min(100%, 22rem), 1fr));gap:1rem"
                inner_html=format!("{rate}{errors}{latency}")></div>
        </section>
    }
}

/// The stored YAML's body, for matching hosts and selectors.
fn raw(resource: &ConfigResource) -> Option<Value> {
    trellis_api::load_str(&resource.yaml, "<console>")
        .ok()?
        .into_iter()
        .next()
        .map(|r| r.raw)
}

/// Whether `host` (as written in a resource of namespace `resource_ns`) names service
/// `namespace/name`: short names resolve in the resource's namespace; `*` wildcards match a
/// suffix of the fully qualified name.
pub fn host_matches(host: &str, resource_ns: &str, namespace: &str, name: &str) -> bool {
    let fqdn = format!("{name}.{namespace}.svc.cluster.local");
    if host == name {
        return resource_ns == namespace;
    }
    if let Some(suffix) = host.strip_prefix('*') {
        return fqdn.ends_with(suffix);
    }
    [
        format!("{name}.{namespace}"),
        format!("{name}.{namespace}.svc"),
        fqdn,
    ]
    .contains(&host.to_string())
}

/// A VirtualService or DestinationRule whose host is one of `services` (of `namespace`).
pub fn routes_to(resource: &ConfigResource, namespace: &str, services: &[String]) -> bool {
    let Some(raw) = raw(resource) else {
        return false;
    };
    let spec = &raw["spec"];
    let hosts: Vec<&str> = match resource.id.kind.as_str() {
        "VirtualService" => spec["hosts"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default(),
        "DestinationRule" => spec["host"].as_str().into_iter().collect(),
        _ => return false,
    };
    hosts.iter().any(|h| {
        services
            .iter()
            .any(|s| host_matches(h, &resource.id.namespace, namespace, s))
    })
}

/// An AuthorizationPolicy or PeerAuthentication of the workload's namespace whose selector
/// matches `labels` (no selector: the whole namespace).
pub fn selects(resource: &ConfigResource, namespace: &str, labels: &[(String, String)]) -> bool {
    if !matches!(
        resource.id.kind.as_str(),
        "AuthorizationPolicy" | "PeerAuthentication"
    ) || resource.id.namespace != namespace
    {
        return false;
    }
    let Some(raw) = raw(resource) else {
        return false;
    };
    match raw["spec"]["selector"]["matchLabels"].as_object() {
        None => true,
        Some(wanted) => wanted.iter().all(|(k, v)| {
            labels
                .iter()
                .any(|(lk, lv)| lk == k && Some(lv.as_str()) == v.as_str())
        }),
    }
}

/// The resources that apply, each linked, with its validation messages.
pub fn config_section(resources: &[ConfigResource]) -> impl IntoView + use<> {
    let body = if resources.is_empty() {
        view! { <p class="empty">"No VirtualService, DestinationRule or policy applies."</p> }
            .into_any()
    } else {
        let items = resources
            .iter()
            .map(|r| {
                let status = match r.worst() {
                    None => view! { <span class="marker marker-ok">"✓ Valid"</span> }.into_any(),
                    Some(_) => resource_messages(&r.messages).into_any(),
                };
                view! {
                    <li>
                        <a href=super::resource_href(&r.id)>{r.id.to_string()}</a>
                        " "
                        {status}
                    </li>
                }
            })
            .collect_view();
        view! { <ul class="config-applies">{items}</ul> }.into_any()
    };
    view! {
        <section class="panel">
            <h2>"Config"</h2>
            {body}
        </section>
    }
}

/// A resource's validation messages, styled as the shell's [`crate::shell::messages_list`] but
/// without its `id` (a page here lists several resources, and ids must be unique).
fn resource_messages(messages: &[crate::model::Diagnostic]) -> impl IntoView + use<> {
    let items = messages
        .iter()
        .map(|d| {
            let (class, word) = if d.is_error() {
                ("msg msg-error", "Error")
            } else {
                ("msg msg-warning", "Warning")
            };
            view! {
                <li class=class>
                    <strong>{word}</strong>
                    {d.field.clone().map(|f| view! { " " <code class="msg-field">{f}</code> })}
                    " "
                    <span class="msg-text">{d.message.clone()}</span>
                </li>
            }
        })
        .collect_view();
    view! { <ul class="messages">{items}</ul> }
}

/// The ten newest traces through `service`.
pub async fn recent_traces(
    backend: &dyn ConsoleBackend,
    service: &str,
) -> Result<Vec<TraceSummary>, PageError> {
    let query = TraceQuery {
        service: service.to_string(),
        limit: 10,
        ..TraceQuery::default()
    };
    Ok(backend.find_traces(&query).await?)
}

pub fn traces_section(traces: &[TraceSummary]) -> impl IntoView + use<> {
    let body = if traces.is_empty() {
        view! { <p class="empty">"No recent traces."</p> }.into_any()
    } else {
        let rows = traces
            .iter()
            .map(|t| {
                let errors = (t.errors > 0).then(|| {
                    view! { <span class="marker marker-error">{format!("{} error(s)", t.errors)}</span> }
                });
                let start_s = t.start_us.div_euclid(1_000_000).rem_euclid(60);
                view! {
                    <tr>
                        <th scope="row">
                            <a href=format!("/traces/{}", encode(&t.trace_id))>
                                <code>{t.trace_id.chars().take(12).collect::<String>()}</code>
                            </a>
                        </th>
                        <td>{format!("{}: {}", t.root_service, t.root_operation)}</td>
                        <td>{format!("{}:{start_s:02} UTC", chart::clock(t.start_us))}</td>
                        <td class="num">{format!("{:.2} ms", t.duration_us as f64 / 1000.0)}</td>
                        <td class="num">{t.spans}</td>
                        <td>{errors}</td>
                    </tr>
                }
            })
            .collect_view();
        view! {
            <div class="table-wrap">
                <table>
                    <thead>
                        <tr>
                            <th scope="col">"Trace"</th>
                            <th scope="col">"Root"</th>
                            <th scope="col">"Started"</th>
                            <th scope="col">"Duration"</th>
                            <th scope="col">"Spans"</th>
                            <th scope="col">"Errors"</th>
                        </tr>
                    </thead>
                    <tbody>{rows}</tbody>
                </table>
            </div>
        }
        .into_any()
    };
    view! {
        <section class="panel">
            <h2>"Recent traces"</h2>
            {body}
        </section>
    }
}

/// The axum handlers the router mounts.
pub mod handlers {
    use crate::server::{AppState, Params};
    use axum::extract::{Path, Query, State};
    use axum::response::Response;

    /// `GET /services`.
    pub async fn list(State(app): State<AppState>, Query(params): Query<Params>) -> Response {
        app.respond(super::list(&*app.backend, &params).await)
    }

    /// `GET /namespaces/{namespace}/services/{name}`.
    pub async fn detail(
        State(app): State<AppState>,
        Path((namespace, name)): Path<(String, String)>,
        Query(params): Query<Params>,
    ) -> Response {
        app.respond(super::detail(&*app.backend, namespace, name, &params).await)
    }
}
