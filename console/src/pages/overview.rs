//! Overview: a card per namespace with its health (Kiali's default thresholds), request rate,
//! mTLS status, workloads, and proxies connected with their sync states.

use super::{encode, format_percent, format_rate};
use crate::backend::ConsoleBackend;
use crate::model::{Health, NamespaceSummary};
use crate::shell::{Nav, Page, PageError};
use leptos::prelude::*;

/// Seconds between live refreshes of the cards (`overview.js`; the page reads fully without it).
pub const REFRESH_SECONDS: u32 = 10;

pub async fn render(backend: &dyn ConsoleBackend) -> Result<Page, PageError> {
    let namespaces = backend.namespaces().await?;
    let content = if namespaces.is_empty() {
        view! { <p class="empty">"No namespaces yet: no proxy has connected and no configuration names one."</p> }
            .into_any()
    } else {
        let cards = namespaces.into_iter().map(card).collect_view();
        view! { <ul class="cards" aria-label="Namespaces">{cards}</ul> }.into_any()
    };
    // `data-live` names the element the script re-fetches from this same URL and swaps in.
    Ok(Page::new(
        Nav::Overview,
        "Overview",
        view! {
            <div id="overview-live" data-live=REFRESH_SECONDS>{content}</div>
            <script src="/static/overview.js" defer></script>
        },
    ))
}

fn card(ns: NamespaceSummary) -> impl IntoView {
    let health = Health::of(&ns.traffic);
    let graph = format!("/graph?namespaces={}", encode(&ns.name));
    let config = format!("/config?namespace={}", encode(&ns.name));
    let p = ns.proxies;
    view! {
        <li class=format!("card {}", health.css_class())>
            <h2>{ns.name.clone()}</h2>
            <p class=format!("health {}", health.css_class())>
                <span class="dot" aria-hidden="true"></span>
                {health.label()}
            </p>
            <dl class="facts">
                <dt>"Requests"</dt>
                <dd class="rate">{format_rate(ns.traffic.request_rate)}</dd>
                <dt>"Errors"</dt>
                <dd class="errors">{format_percent(ns.traffic.error_percent())}</dd>
                <dt>"mTLS"</dt>
                <dd class="mtls">{ns.mtls.label()}</dd>
                <dt>"Workloads"</dt>
                <dd>{ns.workloads}</dd>
                <dt>"Services"</dt>
                <dd>{ns.services}</dd>
                <dt>"Proxies"</dt>
                <dd class="proxies">
                    {format!("{} connected", p.connected())}
                    <span class="badge state-synced">{format!("{} SYNCED", p.synced)}</span>
                    <span class="badge state-stale">{format!("{} STALE", p.stale)}</span>
                    <span class="badge state-nacked">{format!("{} NACKED", p.nacked)}</span>
                </dd>
            </dl>
            <p class="links">
                <a href=graph>"Graph"</a>
                <a href=config>"Config"</a>
            </p>
        </li>
    }
}
