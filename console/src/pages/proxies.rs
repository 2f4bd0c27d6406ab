//! Proxies: every connected proxy with its config version and sync state, and links to the
//! live tap of its requests ([`crate::pages::tap`]).

use crate::backend::ConsoleBackend;
use crate::model::{ProxySummary, SyncState};
use crate::pages::encode;
use crate::shell::{Nav, Page, PageError};
use leptos::prelude::*;

pub async fn render(backend: &dyn ConsoleBackend) -> Result<Page, PageError> {
    let proxies = backend.proxies().await?;
    if proxies.is_empty() {
        return Ok(Page::new(
            Nav::Proxies,
            "Proxies",
            view! { <p class="empty">"No proxy is connected."</p> },
        ));
    }
    let rows = proxies.into_iter().map(row).collect_view();
    Ok(Page::new(
        Nav::Proxies,
        "Proxies",
        view! {
            <p class="links"><a href="/proxies/tap">"Live tap of requests"</a></p>
            <div class="table-wrap">
                <table>
                    <thead>
                        <tr>
                            <th scope="col">"Proxy"</th>
                            <th scope="col">"Namespace"</th>
                            <th scope="col">"Workload"</th>
                            <th scope="col">"Address"</th>
                            <th scope="col">"Config version"</th>
                            <th scope="col">"State"</th>
                            <th scope="col">"Connected since"</th>
                            <th scope="col">"Tap"</th>
                        </tr>
                    </thead>
                    <tbody>{rows}</tbody>
                </table>
            </div>
        },
    ))
}

/// The CSS class of a state's badge.
pub fn state_class(state: SyncState) -> &'static str {
    match state {
        SyncState::Synced => "badge state-synced",
        SyncState::Stale => "badge state-stale",
        SyncState::Nacked => "badge state-nacked",
        SyncState::Disconnected => "badge state-disconnected",
    }
}

fn row(p: ProxySummary) -> impl IntoView {
    let tap = format!(
        "/proxies/tap?namespace={}&workload={}",
        encode(&p.namespace),
        encode(&p.workload)
    );
    let tap_label = format!("Tap requests of {}", p.workload);
    let address = if p.address.is_empty() {
        "—".to_string()
    } else {
        p.address
    };
    view! {
        <tr>
            <th scope="row">{p.name}</th>
            <td>{p.namespace}</td>
            <td>{p.workload}</td>
            <td><code>{address}</code></td>
            <td><code>{p.config_version}</code></td>
            <td>
                <span class=state_class(p.state)>{p.state.label()}</span>
                {p.error.map(|e| view! { <span class="state-reason">{e}</span> })}
            </td>
            <td><time datetime=p.connected_since.clone()>{p.connected_since.clone()}</time></td>
            <td><a href=tap aria-label=tap_label>"Tap"</a></td>
        </tr>
    }
}
