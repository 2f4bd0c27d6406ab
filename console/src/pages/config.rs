//! Config: the current resources by kind and namespace with validation markers (filtered by
//! `?kind=&namespace=`), and one resource's YAML with its messages.

use super::{encode, param, resource_href};
use crate::backend::ConsoleBackend;
use crate::model::{ConfigFilter, ConfigResource, ResourceRef, Severity};
use crate::server::Params;
use crate::shell::{Nav, Page, PageError, messages_list};
use leptos::prelude::*;
use trellis_api::Kind;

/// A kind as kubectl spells it (`vs`, `virtualservices`, `VirtualService`), as Istio names it.
pub fn parse_kind(text: &str) -> Result<String, PageError> {
    Kind::parse_cli(text)
        .map(|k| k.as_str().to_string())
        .map_err(|e| PageError::BadRequest(format!("`kind`: {e}")))
}

pub async fn list(backend: &dyn ConsoleBackend, params: &Params) -> Result<Page, PageError> {
    let filter = ConfigFilter {
        kind: param(params, "kind").map(parse_kind).transpose()?,
        namespace: param(params, "namespace").map(str::to_string),
    };
    let resources = backend.config(&filter).await?;
    let body = if resources.is_empty() {
        view! { <p class="empty">"No resources match."</p> }.into_any()
    } else {
        let rows = resources.iter().map(row).collect_view();
        view! {
            <div class="table-wrap">
                <table>
                    <thead>
                        <tr>
                            <th scope="col">"Name"</th>
                            <th scope="col">"Namespace"</th>
                            <th scope="col">"Kind"</th>
                            <th scope="col">"Validation"</th>
                        </tr>
                    </thead>
                    <tbody>{rows}</tbody>
                </table>
            </div>
        }
        .into_any()
    };
    Ok(Page::new(
        Nav::Config,
        "Config",
        view! {
            {filters(&filter)}
            <p class="actions">
                <a class="button" href="/config/apply">"Apply YAML"</a>
                <a href="/config/history">"History"</a>
            </p>
            {body}
        },
    ))
}

/// The GET form that sets `kind` and `namespace`.
fn filters(filter: &ConfigFilter) -> impl IntoView + use<> {
    let options = Kind::ALL
        .into_iter()
        .map(|k| {
            let selected = filter.kind.as_deref() == Some(k.as_str());
            view! { <option value=k.as_str() selected=selected>{k.as_str()}</option> }
        })
        .collect_view();
    let namespace = filter.namespace.clone().unwrap_or_default();
    view! {
        <form class="filters" method="get" action="/config">
            <label>
                "Kind "
                <select name="kind">
                    <option value="">"All kinds"</option>
                    {options}
                </select>
            </label>
            <label>
                "Namespace " <input type="text" name="namespace" value=namespace />
            </label>
            <button type="submit">"Filter"</button>
        </form>
    }
}

/// The marker of a resource's worst message.
fn marker(resource: &ConfigResource) -> impl IntoView + use<> {
    let count = resource.messages.len();
    match resource.worst() {
        None => view! { <span class="marker marker-ok">"✓ Valid"</span> }.into_any(),
        Some(Severity::Error) => view! {
            <span class="marker marker-error">{format!("✗ {count} error(s)")}</span>
        }
        .into_any(),
        Some(Severity::Warning) => view! {
            <span class="marker marker-warning">{format!("⚠ {count} warning(s)")}</span>
        }
        .into_any(),
    }
}

fn row(resource: &ConfigResource) -> impl IntoView + use<> {
    let id = &resource.id;
    view! {
        <tr>
            <th scope="row"><a href=resource_href(id)>{id.name.clone()}</a></th>
            <td>{id.namespace.clone()}</td>
            <td>{id.kind.clone()}</td>
            <td>{marker(resource)}</td>
        </tr>
    }
}

pub async fn resource(
    backend: &dyn ConsoleBackend,
    kind: String,
    namespace: String,
    name: String,
) -> Result<Page, PageError> {
    let id = ResourceRef {
        kind: parse_kind(&kind)?,
        namespace,
        name,
    };
    let resource = backend.resource(&id).await?;
    let edit = format!(
        "/config/apply?kind={}&namespace={}&name={}",
        encode(&id.kind),
        encode(&id.namespace),
        encode(&id.name)
    );
    let messages = (!resource.messages.is_empty()).then(|| {
        view! {
            <section class="panel">
                <h2>"Validation"</h2>
                {messages_list(&resource.messages, "messages")}
            </section>
        }
    });
    Ok(Page::new(
        Nav::Config,
        id.to_string(),
        view! {
            <p class="actions">
                {marker(&resource)}
                <a class="button" href=edit>"Edit"</a>
                <a href="/config/history">"History"</a>
                <a href=format!("/config?namespace={}", encode(&id.namespace))>
                    {format!("All config in {}", id.namespace)}
                </a>
            </p>
            {messages}
            <section class="panel">
                <h2>"YAML"</h2>
                <pre class="yaml"><code>{resource.yaml.clone()}</code></pre>
            </section>
        },
    ))
}
