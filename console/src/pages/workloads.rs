//! Workloads: the list (`/workloads?namespace=`) with health, rate, error % and p95, and one
//! workload's page (`/namespaces/{ns}/workloads/{name}`): labels, services, proxies, traffic
//! tables, charts, the config that applies to it and recent traces.

use super::services::{
    ChartChoice, config_section, format_ms, health_badge, namespace_filter, recent_traces,
    routes_to, selects, service_href, traces_section, traffic_facts, traffic_sections,
    workload_href,
};
use super::{encode, format_percent, format_rate, param};
use crate::backend::ConsoleBackend;
use crate::model::{ConfigFilter, ConfigResource, Health, TrafficTarget, WorkloadSummary};
use crate::server::Params;
use crate::shell::{Nav, Page, PageError};
use leptos::prelude::*;

pub async fn list(backend: &dyn ConsoleBackend, params: &Params) -> Result<Page, PageError> {
    let namespace = param(params, "namespace");
    let workloads = backend.workloads(namespace).await?;
    let body = if workloads.is_empty() {
        view! { <p class="empty">"No workloads match."</p> }.into_any()
    } else {
        let rows = workloads.iter().map(row).collect_view();
        view! {
            <div class="table-wrap">
                <table class="workloads">
                    <thead>
                        <tr>
                            <th scope="col">"Name"</th>
                            <th scope="col">"Namespace"</th>
                            <th scope="col">"App / version"</th>
                            <th scope="col">"Health"</th>
                            <th scope="col">"Requests"</th>
                            <th scope="col">"Errors"</th>
                            <th scope="col">"p95"</th>
                            <th scope="col">"Proxies"</th>
                        </tr>
                    </thead>
                    <tbody>{rows}</tbody>
                </table>
            </div>
        }
        .into_any()
    };
    Ok(Page::new(
        Nav::Workloads,
        "Workloads",
        view! {
            {namespace_filter("/workloads", namespace)}
            {body}
        },
    ))
}

fn app_version(w: &WorkloadSummary) -> String {
    match (&w.app, &w.version) {
        (Some(app), Some(version)) => format!("{app} {version}"),
        (Some(app), None) => app.clone(),
        _ => "–".to_string(),
    }
}

fn row(w: &WorkloadSummary) -> impl IntoView + use<> {
    view! {
        <tr>
            <th scope="row"><a href=workload_href(&w.namespace, &w.name)>{w.name.clone()}</a></th>
            <td>{w.namespace.clone()}</td>
            <td>{app_version(w)}</td>
            <td>{health_badge(Health::of(&w.traffic.inbound))}</td>
            <td class="num">{format_rate(w.traffic.inbound.request_rate)}</td>
            <td class="num">{format_percent(w.traffic.inbound.error_percent())}</td>
            <td class="num">{format_ms(w.traffic.p95_ms)}</td>
            <td class="num">{w.proxies}</td>
        </tr>
    }
}

pub async fn detail(
    backend: &dyn ConsoleBackend,
    namespace: String,
    name: String,
    params: &Params,
) -> Result<Page, PageError> {
    let choice = ChartChoice::parse(params)?;
    let detail = backend.workload(&namespace, &name).await?;
    let target = TrafficTarget::Workload {
        namespace: namespace.clone(),
        name: name.clone(),
    };
    let series = backend.traffic_series(&choice.query(target)).await?;
    let w = &detail.summary;
    let config = backend.config(&ConfigFilter::default()).await?;
    let applies: Vec<ConfigResource> = config
        .into_iter()
        .filter(|r| routes_to(r, &namespace, &detail.services) || selects(r, &namespace, &w.labels))
        .collect();
    // Spans carry the app's name as their service (Istio's default), else the workload's.
    let traces = recent_traces(backend, w.app.as_deref().unwrap_or(&name)).await?;
    let here = workload_href(&namespace, &name);
    let labels = w
        .labels
        .iter()
        .map(|(k, v)| view! { <li><code>{format!("{k}={v}")}</code></li> })
        .collect_view();
    let services = detail
        .services
        .iter()
        .map(|s| view! { <a href=service_href(&namespace, s)>{s.clone()}</a>" " })
        .collect_view();
    let proxies = detail
        .proxies
        .iter()
        .map(|p| {
            let state = p.state.label();
            view! {
                <li>
                    <code>{p.name.clone()}</code>
                    " "
                    <span class=format!("badge state-{}", state.to_ascii_lowercase())>{state}</span>
                    " "
                    {format!("config {}", p.config_version)}
                </li>
            }
        })
        .collect_view();
    Ok(Page::new(
        Nav::Workloads,
        format!("Workload {namespace}/{name}"),
        view! {
            <section class="panel detail-header">
                <p class="actions">
                    {health_badge(Health::of(&w.traffic.inbound))}
                    <a href=format!("/graph?namespaces={}", encode(&namespace))>"Graph"</a>
                    <a href=format!("/workloads?namespace={}", encode(&namespace))>
                        {format!("All workloads in {namespace}")}
                    </a>
                </p>
                <dl class="facts">
                    <dt>"App / version"</dt>
                    <dd>{app_version(w)}</dd>
                    <dt>"Services"</dt>
                    <dd>{services}</dd>
                    <dt>"Labels"</dt>
                    <dd><ul class="labels">{labels}</ul></dd>
                    <dt>"Proxies"</dt>
                    <dd><ul class="proxies">{proxies}</ul></dd>
                    {traffic_facts(&w.traffic)}
                </dl>
            </section>
            {traffic_sections(&detail.inbound, &detail.outbound, &here, &choice, &series)}
            {config_section(&applies)}
            {traces_section(&traces)}
        },
    ))
}

/// The axum handlers the router mounts.
pub mod handlers {
    use crate::server::{AppState, Params};
    use axum::extract::{Path, Query, State};
    use axum::response::Response;

    /// `GET /workloads`.
    pub async fn list(State(app): State<AppState>, Query(params): Query<Params>) -> Response {
        app.respond(super::list(&*app.backend, &params).await)
    }

    /// `GET /namespaces/{namespace}/workloads/{name}`.
    pub async fn detail(
        State(app): State<AppState>,
        Path((namespace, name)): Path<(String, String)>,
        Query(params): Query<Params>,
    ) -> Response {
        app.respond(super::detail(&*app.backend, namespace, name, &params).await)
    }
}
