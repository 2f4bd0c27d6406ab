//! The traffic wizard on a service (Kiali's service "Actions"): weighted routing across its
//! versions, request routing, fault injection, timeouts and retries, circuit breaking. Each
//! section is a plain form at `/namespaces/{ns}/services/{name}/wizard?tab=...`; a post
//! previews (validates, shows the YAML) or applies the VirtualService and DestinationRule named
//! after the service, merged into the stored ones, through the same path as `trellis apply`.

pub mod form;
pub mod generate;
pub mod handlers;
pub mod page;
pub mod yaml;

#[cfg(test)]
mod tests;

use crate::backend::{BackendError, ConsoleBackend};
use crate::model::{Diagnostic, ResourceRef};
use crate::pages::param;
use crate::server::Params;
use crate::shell::{Page, PageError};
use axum::http::StatusCode;
use form::Tab;
use generate::{Change, Target};
use page::{Notice, WizardView};
use serde_json::Value;

/// Who the wizard's revisions are attributed to.
const AUTHOR: &str = "console";

/// `/namespaces/{ns}/services/{name}/wizard`.
pub fn href(namespace: &str, name: &str) -> String {
    format!(
        "/namespaces/{}/services/{}/wizard",
        crate::pages::encode(namespace),
        crate::pages::encode(name)
    )
}

/// The service, its versions and the resources the wizard manages, as stored now.
pub struct Context {
    pub target: Target,
    /// The `version` labels of the workloads behind the service, sorted.
    pub versions: Vec<String>,
    pub virtual_service: Option<Value>,
    pub destination_rule: Option<Value>,
}

impl Context {
    pub async fn load(
        backend: &dyn ConsoleBackend,
        namespace: &str,
        name: &str,
    ) -> Result<Context, PageError> {
        let service = backend
            .services(Some(namespace))
            .await?
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| {
                PageError::NotFound(format!(
                    "There is no service {name} in namespace {namespace}."
                ))
            })?;
        let mut versions: Vec<String> = backend
            .workloads(Some(namespace))
            .await?
            .into_iter()
            .filter(|w| service.workloads.contains(&w.name))
            .filter_map(|w| w.version)
            .collect();
        versions.sort();
        versions.dedup();
        let target = Target {
            namespace: namespace.to_string(),
            name: name.to_string(),
            host: service.host,
        };
        Ok(Context {
            virtual_service: stored(backend, &target, "VirtualService").await?,
            destination_rule: stored(backend, &target, "DestinationRule").await?,
            target,
            versions,
        })
    }

    /// The resources the wizard manages that exist now.
    pub fn managed(&self) -> Vec<ResourceRef> {
        [
            ("VirtualService", &self.virtual_service),
            ("DestinationRule", &self.destination_rule),
        ]
        .into_iter()
        .filter(|(_, doc)| doc.is_some())
        .map(|(kind, _)| self.resource_ref(kind))
        .collect()
    }

    pub fn resource_ref(&self, kind: &str) -> ResourceRef {
        ResourceRef {
            kind: kind.to_string(),
            namespace: self.target.namespace.clone(),
            name: self.target.name.clone(),
        }
    }
}

/// The stored document of `kind` named after the service, or `None`.
async fn stored(
    backend: &dyn ConsoleBackend,
    target: &Target,
    kind: &str,
) -> Result<Option<Value>, PageError> {
    let id = ResourceRef {
        kind: kind.to_string(),
        namespace: target.namespace.clone(),
        name: target.name.clone(),
    };
    let resource = match backend.resource(&id).await {
        Ok(r) => r,
        Err(BackendError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let loaded = trellis_api::load_str(&resource.yaml, &id.to_string()).map_err(|messages| {
        PageError::Backend(BackendError::Unavailable(format!(
            "the stored {id} does not read back: {}",
            trellis_api::diagnostics::render(&messages)
        )))
    })?;
    Ok(loaded.into_iter().next().map(|r| r.raw))
}

/// GET: the section as the stored resources say.
pub async fn show(
    backend: &dyn ConsoleBackend,
    namespace: &str,
    name: &str,
    params: &Params,
) -> Result<Page, PageError> {
    let tab = Tab::parse(param(params, "tab")).map_err(PageError::BadRequest)?;
    let context = Context::load(backend, namespace, name).await?;
    let form = form::prefill(
        context.virtual_service.as_ref(),
        context.destination_rule.as_ref(),
        &context.versions,
    );
    Ok(WizardView::new(&context, tab, &form).page())
}

/// POST: `action=preview` validates and shows the YAML, `action=apply` writes it, `action=remove`
/// deletes the VirtualService and DestinationRule.
pub async fn submit(
    backend: &dyn ConsoleBackend,
    namespace: &str,
    name: &str,
    submitted: &Params,
) -> Result<Page, PageError> {
    let tab = Tab::parse(param(submitted, "tab")).map_err(PageError::BadRequest)?;
    let context = Context::load(backend, namespace, name).await?;
    let action = param(submitted, "action").unwrap_or("preview");
    if action == "remove" {
        return remove(backend, context, tab).await;
    }
    if !matches!(action, "preview" | "apply") {
        return Err(PageError::BadRequest(format!(
            "`action` must be `preview`, `apply` or `remove`, got {action:?}"
        )));
    }
    let view = WizardView::new(&context, tab, submitted);
    let change = match form::read(tab, submitted, &context.versions) {
        Ok(change) => change,
        Err(errors) => {
            return Ok(view
                .with_errors(errors)
                .with_notice(Notice::Refused)
                .page()
                .with_status(StatusCode::UNPROCESSABLE_ENTITY));
        }
    };
    let yaml = yaml_for(&context, &change);
    let rules = match &change {
        Change::Routing { rules, .. } => rules.len(),
        _ => 0,
    };
    let view = view.with_yaml(yaml.clone());
    if action == "preview" {
        let messages = backend.validate(&yaml).await?;
        let refused = messages.iter().any(Diagnostic::is_error);
        let notice = if refused {
            Notice::Refused
        } else {
            Notice::Valid
        };
        let page = view
            .with_messages(&messages, rules)
            .with_notice(notice)
            .page();
        return Ok(if refused {
            page.with_status(StatusCode::UNPROCESSABLE_ENTITY)
        } else {
            page
        });
    }
    match backend.apply(&yaml, AUTHOR).await {
        Ok(result) => {
            // Reloaded so the page offers to remove what now exists.
            let after = Context::load(backend, namespace, name).await?;
            Ok(WizardView::new(&after, tab, submitted)
                .with_yaml(yaml)
                .with_messages(&result.warnings, rules)
                .with_notice(Notice::Applied(result))
                .page())
        }
        Err(BackendError::Invalid(messages)) => Ok(view
            .with_messages(&messages, rules)
            .with_notice(Notice::Refused)
            .page()
            .with_status(StatusCode::UNPROCESSABLE_ENTITY)),
        Err(e) => Err(e.into()),
    }
}

/// The two documents the section writes, merged into the stored ones.
pub fn yaml_for(context: &Context, change: &Change) -> String {
    let (vs, dr) = generate::generate(
        &context.target,
        context.virtual_service.as_ref(),
        context.destination_rule.as_ref(),
        change,
    );
    yaml::documents([&vs, &dr])
}

async fn remove(
    backend: &dyn ConsoleBackend,
    context: Context,
    tab: Tab,
) -> Result<Page, PageError> {
    let ids = context.managed();
    if ids.is_empty() {
        let form = form::prefill(None, None, &context.versions);
        return Ok(WizardView::new(&context, tab, &form)
            .with_notice(Notice::NothingToRemove)
            .page());
    }
    let result = match backend.delete(&ids, AUTHOR).await {
        Ok(result) => result,
        Err(BackendError::Invalid(messages)) => {
            let form = form::prefill(
                context.virtual_service.as_ref(),
                context.destination_rule.as_ref(),
                &context.versions,
            );
            return Ok(WizardView::new(&context, tab, &form)
                .with_messages(&messages, 0)
                .with_notice(Notice::Refused)
                .page()
                .with_status(StatusCode::UNPROCESSABLE_ENTITY));
        }
        Err(e) => return Err(e.into()),
    };
    let after = Context {
        virtual_service: None,
        destination_rule: None,
        ..context
    };
    let form = form::prefill(None, None, &after.versions);
    Ok(WizardView::new(&after, tab, &form)
        .with_notice(Notice::Removed(result))
        .page())
}
