//! The wizard page: section tabs (links), the section's form with each field's messages right
//! under it, Preview/Apply buttons, the YAML to be written, and "Remove traffic rules". Every
//! value shown comes from the form or the backend and is escaped by Leptos.

use super::Context;
use super::form::{BLANK_RULES, CB_FIELDS, FieldErrors, Tab, field_of, rule_rows};
use crate::model::{ApplyResult, Diagnostic};
use crate::pages::{encode, resource_href};
use crate::server::Params;
use crate::shell::{Nav, Page, messages_list};
use leptos::prelude::*;

/// What happened on the last post, shown above the form.
pub enum Notice {
    Refused,
    Valid,
    Applied(ApplyResult),
    Removed(ApplyResult),
    NothingToRemove,
}

pub struct WizardView<'a> {
    context: &'a Context,
    tab: Tab,
    form: &'a Params,
    errors: FieldErrors,
    /// Validator messages no field of this section explains: shown above the form.
    general: Vec<Diagnostic>,
    notice: Option<Notice>,
    yaml: Option<String>,
}

impl<'a> WizardView<'a> {
    pub fn new(context: &'a Context, tab: Tab, form: &'a Params) -> WizardView<'a> {
        WizardView {
            context,
            tab,
            form,
            errors: FieldErrors::new(),
            general: Vec::new(),
            notice: None,
            yaml: None,
        }
    }

    pub fn with_errors(mut self, errors: FieldErrors) -> Self {
        self.errors = errors;
        self
    }

    /// Puts each message next to the field it concerns, the rest above the form.
    pub fn with_messages(mut self, messages: &[Diagnostic], rules: usize) -> Self {
        for d in messages {
            match field_of(d, self.tab, rules) {
                Some(key) => {
                    let word = if d.is_error() { "Error" } else { "Warning" };
                    let text = format!("{word}: {}", d.message);
                    self.errors.entry(key).or_default().push(text);
                }
                None => self.general.push(d.clone()),
            }
        }
        self
    }

    pub fn with_notice(mut self, notice: Notice) -> Self {
        self.notice = Some(notice);
        self
    }

    pub fn with_yaml(mut self, yaml: String) -> Self {
        self.yaml = Some(yaml);
        self
    }

    pub fn page(self) -> Page {
        let target = &self.context.target;
        let href = super::href(&target.namespace, &target.name);
        let title = format!("Traffic rules: {}/{}", target.namespace, target.name);
        let tabs = Tab::ALL
            .into_iter()
            .map(|t| {
                let current = (t == self.tab).then_some("page");
                let link = format!("{href}?tab={}", t.slug());
                view! { <li><a href=link aria-current=current>{t.title()}</a></li> }
            })
            .collect_view();
        let intro = self.intro();
        let notice = self.notice_view();
        let general =
            (!self.general.is_empty()).then(|| messages_list(&self.general, "wizard-messages"));
        let fields = match self.tab {
            Tab::Weights => self.weights().into_any(),
            Tab::Routing => self.routing().into_any(),
            Tab::Fault => self.fault().into_any(),
            Tab::Timeouts => self.timeouts().into_any(),
            Tab::CircuitBreaking => self.circuit_breaking().into_any(),
        };
        let yaml = self.yaml.clone().map(|yaml| {
            let heading = if matches!(self.notice, Some(Notice::Applied(_))) {
                "YAML written"
            } else {
                "YAML that Apply will write"
            };
            view! {
                <section class="panel wizard-yaml" aria-labelledby="yaml-heading">
                    <h2 id="yaml-heading">{heading}</h2>
                    <pre><code>{yaml}</code></pre>
                </section>
            }
        });
        let remove = self.remove_form(&href);
        let script = (self.tab == Tab::Weights)
            .then(|| view! { <script src="/static/wizard.js" defer></script> });
        let slug = self.tab.slug();
        let section_title = self.tab.title();
        Page::new(
            Nav::Services,
            title,
            view! {
                <link rel="stylesheet" href="/static/wizard.css" />
                {intro}
                <nav class="wizard-tabs" aria-label="Wizard sections"><ul>{tabs}</ul></nav>
                {notice}
                {general}
                <form method="post" action=href.clone() class="wizard-form">
                    <h2>{section_title}</h2>
                    <input type="hidden" name="tab" value=slug />
                    {fields}
                    <div class="actions">
                        <button type="submit" name="action" value="preview">"Preview"</button>
                        <button type="submit" name="action" value="apply" class="primary">"Apply"</button>
                    </div>
                </form>
                {yaml}
                {remove}
                {script}
            },
        )
    }

    fn intro(&self) -> impl IntoView + use<> {
        let c = self.context;
        let versions = if c.versions.is_empty() {
            "none (no workload has a version label)".to_string()
        } else {
            c.versions.join(", ")
        };
        let vs = c.resource_ref("VirtualService");
        let dr = c.resource_ref("DestinationRule");
        let link = |id: crate::model::ResourceRef, exists: bool| {
            if exists {
                view! { <a href=resource_href(&id)>{id.to_string()}</a> }.into_any()
            } else {
                view! { <span>{format!("{id} (new)")}</span> }.into_any()
            }
        };
        view! {
            <p class="wizard-intro">
                "Host " <code>{c.target.host.clone()}</code> {format!(". Versions: {versions}. Writes ")}
                {link(vs, c.virtual_service.is_some())} " and "
                {link(dr, c.destination_rule.is_some())} "; each section keeps what the others set."
            </p>
        }
    }

    fn notice_view(&self) -> Option<AnyView> {
        let ns = &self.context.target.namespace;
        let graph = format!("/graph?namespaces={}&graphType=versionedApp", encode(ns));
        let history = |result: &ApplyResult| match result.revision {
            Some(n) if n > 0 => format!("/config/history?from={}&to={n}", n - 1),
            _ => "/config/history".to_string(),
        };
        let view = match self.notice.as_ref()? {
            Notice::Refused => view! {
                <p class="notice notice-error" role="alert">
                    "Refused: fix the fields marked below. Nothing was written."
                </p>
            }
            .into_any(),
            Notice::Valid => view! {
                <p class="notice" role="status">"Valid. The YAML below is what Apply will write."</p>
            }
            .into_any(),
            Notice::Applied(result) => {
                let headline = match result.revision {
                    Some(n) => format!("Applied as revision {n}."),
                    None => "Nothing changed: the configuration already says this.".to_string(),
                };
                view! {
                    <div class="wizard-done" role="status">
                        <p class="success">{headline}</p>
                        <p class="links">
                            <a href=history(result)>"See it in the config history"</a>
                            <a href=graph>"See the traffic in the graph"</a>
                        </p>
                    </div>
                }
                .into_any()
            }
            Notice::Removed(result) => {
                let removed: Vec<String> = result.changed.iter().map(ToString::to_string).collect();
                let headline = match result.revision {
                    Some(n) => format!("Removed {} as revision {n}.", removed.join(" and ")),
                    None => "Nothing changed.".to_string(),
                };
                view! {
                    <div class="wizard-done" role="status">
                        <p class="success">{headline}</p>
                        <p class="links"><a href=history(result)>"See it in the config history"</a></p>
                    </div>
                }
                .into_any()
            }
            Notice::NothingToRemove => view! {
                <p class="notice" role="status">"There are no traffic rules to remove."</p>
            }
            .into_any(),
        };
        Some(view)
    }

    fn value(&self, name: &str) -> String {
        self.form.get(name).cloned().unwrap_or_default()
    }

    /// The messages for `key`, with the id fields point at.
    fn errors_for(&self, key: &str) -> Option<AnyView> {
        let messages = self.errors.get(key)?.clone();
        let items = messages
            .into_iter()
            .map(|m| view! { <li>{m}</li> })
            .collect_view();
        Some(view! { <ul class="field-errors" id=error_id(key)>{items}</ul> }.into_any())
    }

    fn described_by(&self, key: &str, hint: bool) -> Option<String> {
        let mut ids = Vec::new();
        if hint {
            ids.push(format!("hint-{}", dom_id(key)));
        }
        if self.errors.contains_key(key) {
            ids.push(error_id(key));
        }
        (!ids.is_empty()).then(|| ids.join(" "))
    }

    /// A labelled input with its hint and messages.
    fn input(
        &self,
        name: &str,
        label: String,
        number: bool,
        hint: Option<&'static str>,
    ) -> AnyView {
        let id = dom_id(name);
        let invalid = self.errors.contains_key(name).then_some("true");
        let kind = if number { "number" } else { "text" };
        let step = number.then_some("any");
        view! {
            <div class="field">
                <label for=id.clone()>{label}</label>
                <input
                    type=kind
                    id=id.clone()
                    name=name.to_string()
                    value=self.value(name)
                    step=step
                    aria-invalid=invalid
                    aria-describedby=self.described_by(name, hint.is_some())
                />
                {hint.map(|h| view! { <small class="hint" id=format!("hint-{id}")>{h}</small> })}
                {self.errors_for(name)}
            </div>
        }
        .into_any()
    }

    fn weights(&self) -> AnyView {
        let versions = &self.context.versions;
        if versions.is_empty() {
            return view! {
                <p class="empty">
                    "No workload behind this service has a " <code>"version"</code>
                    " label, so there are no versions to split traffic between."
                </p>
                {self.errors_for("weights")}
            }
            .into_any();
        }
        let total: u64 = versions
            .iter()
            .filter_map(|v| {
                self.value(&format!("weight.{v}"))
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .sum();
        let rows = versions
            .iter()
            .map(|version| {
                let name = format!("weight.{version}");
                let id = dom_id(&name);
                let value = self.value(&name);
                let invalid = (self.errors.contains_key(&name)
                    || self.errors.contains_key("weights"))
                .then_some("true");
                let described = [name.as_str(), "weights"]
                    .into_iter()
                    .filter(|k| self.errors.contains_key(*k))
                    .map(error_id)
                    .collect::<Vec<_>>();
                let described = (!described.is_empty()).then(|| described.join(" "));
                view! {
                    <tr>
                        <th scope="row"><label for=id.clone()>{version.clone()}</label></th>
                        <td>
                            <input
                                type="number"
                                class="weight-number"
                                id=id.clone()
                                name=name.clone()
                                min="0"
                                max="100"
                                step="1"
                                inputmode="numeric"
                                value=value.clone()
                                aria-invalid=invalid
                                aria-describedby=described
                            />
                            " %"
                        </td>
                        <td class="weight-slider-cell">
                            <input
                                type="range"
                                class="weight-slider"
                                min="0"
                                max="100"
                                step="1"
                                value=value
                                aria-label=format!("{version} weight")
                                data-for=id
                                hidden=true
                            />
                        </td>
                        <td>{self.errors_for(&name)}</td>
                    </tr>
                }
            })
            .collect_view();
        view! {
            <p>
                "Share of the requests each version gets when no request-routing rule matches. "
                "The weights must total 100 %."
            </p>
            <table class="wizard-weights">
                <thead><tr><th scope="col">"Version"</th><th scope="col">"Weight"</th><th scope="col"><span class="visually-hidden">"Slider"</span></th><th scope="col"><span class="visually-hidden">"Messages"</span></th></tr></thead>
                <tbody>{rows}</tbody>
            </table>
            <p class="weight-total">"Total: " <output id="weight-total" aria-live="polite">{format!("{total} %")}</output></p>
            {self.errors_for("weights")}
        }
        .into_any()
    }

    fn routing(&self) -> AnyView {
        let versions = &self.context.versions;
        // Always at least one empty row, so a rule can be added without script.
        let present = rule_rows(self.form);
        let filled = (0..present)
            .filter(|i| !self.value(&format!("rule{i}.value")).trim().is_empty())
            .count();
        let rows = present.max(filled + 1).max(BLANK_RULES);
        let options = |selected: &str, blank: &'static str| {
            let blank_selected = selected.is_empty();
            let items = versions
                .iter()
                .map(|v| view! { <option value=v.clone() selected=v == selected>{v.clone()}</option> })
                .collect_view();
            view! { <option value="" selected=blank_selected>{blank}</option> {items} }
        };
        let body = (0..rows)
            .map(|i| {
                let field = |f: &str| format!("rule{i}.{f}");
                let key = format!("rule{i}");
                let n = i + 1;
                let on = self.value(&field("on"));
                let op = self.value(&field("op"));
                let invalid = self.errors.contains_key(&key).then_some("true");
                let described = self.errors.contains_key(&key).then(|| error_id(&key));
                let choice = |value: &'static str, label: &'static str, current: &str| {
                    view! { <option value=value selected=current == value>{label}</option> }
                };
                let errors = self.errors_for(&key).map(|list| {
                    view! { <tr class="row-errors"><td colspan="6">{list}</td></tr> }
                });
                view! {
                    <tr>
                        <th scope="row">{n}</th>
                        <td>
                            <select name=field("on") aria-label=format!("Rule {n}: match on")>
                                {choice("header", "Header", &on)}
                                {choice("uri", "URI", &on)}
                            </select>
                        </td>
                        <td>
                            <input
                                type="text"
                                name=field("header")
                                value=self.value(&field("header"))
                                placeholder="end-user"
                                aria-label=format!("Rule {n}: header name")
                                aria-invalid=invalid
                                aria-describedby=described.clone()
                            />
                        </td>
                        <td>
                            <select name=field("op") aria-label=format!("Rule {n}: how to match")>
                                {choice("exact", "exact", &op)}
                                {choice("prefix", "prefix", &op)}
                                {choice("regex", "regex", &op)}
                            </select>
                        </td>
                        <td>
                            <input
                                type="text"
                                name=field("value")
                                value=self.value(&field("value"))
                                aria-label=format!("Rule {n}: value")
                                aria-invalid=invalid
                                aria-describedby=described
                            />
                        </td>
                        <td>
                            <select name=field("version") aria-label=format!("Rule {n}: send to version")>
                                {options(&self.value(&field("version")), "choose")}
                            </select>
                        </td>
                    </tr>
                    {errors}
                }
            })
            .collect_view();
        let default = self.value("default");
        view! {
            <p>
                "Requests are checked against the rules in order; the first that matches picks the "
                "version. Leave a row's value empty to drop it. Headers match by exact value, prefix "
                "or regex; URIs by exact path or prefix."
            </p>
            <div class="table-wrap">
                <table class="wizard-rules">
                    <thead>
                        <tr>
                            <th scope="col">"#"</th>
                            <th scope="col">"Match on"</th>
                            <th scope="col">"Header name"</th>
                            <th scope="col">"Match"</th>
                            <th scope="col">"Value"</th>
                            <th scope="col">"Version"</th>
                        </tr>
                    </thead>
                    <tbody>{body}</tbody>
                </table>
            </div>
            <p class="hint">"Preview adds empty rows when all are used."</p>
            <div class="field">
                <label for="default">"Default route (requests no rule matches)"</label>
                <select
                    id="default"
                    name="default"
                    aria-invalid=self.errors.contains_key("default").then_some("true")
                    aria-describedby=self.described_by("default", false)
                >
                    {options(&default, "keep the current default (weights)")}
                </select>
                {self.errors_for("default")}
            </div>
        }
        .into_any()
    }

    fn checkbox(&self, name: &str, label: &'static str) -> AnyView {
        let checked = !self.value(name).trim().is_empty();
        let id = dom_id(name);
        view! {
            <div class="field field-check">
                <input type="checkbox" id=id.clone() name=name.to_string() value="on" checked=checked />
                <label for=id>{label}</label>
            </div>
        }
        .into_any()
    }

    fn fault(&self) -> AnyView {
        view! {
            <p>"Injects faults into requests to this service, to test how its callers cope."</p>
            <fieldset>
                <legend>"Delay"</legend>
                {self.checkbox("delay.enabled", "Delay some requests")}
                {self.input("delay.percent", "Percentage of requests".into(), true, Some("above 0, at most 100"))}
                {self.input("delay.fixed", "Delay".into(), false, Some("e.g. 5s or 500ms"))}
            </fieldset>
            <fieldset>
                <legend>"Abort"</legend>
                {self.checkbox("abort.enabled", "Abort some requests")}
                {self.input("abort.percent", "Percentage of requests".into(), true, Some("above 0, at most 100"))}
                {self.input("abort.status", "HTTP status".into(), true, Some("e.g. 503"))}
            </fieldset>
        }
        .into_any()
    }

    fn timeouts(&self) -> AnyView {
        view! {
            <p>"Applies to every route of the service. Leave a field empty to leave the setting out."</p>
            {self.input("timeout", "Request timeout".into(), false, Some("e.g. 10s; empty: no timeout"))}
            <fieldset>
                <legend>"Retries"</legend>
                {self.input("retries.attempts", "Attempts".into(), true, Some("retries per request; 0 turns retries off"))}
                {self.input("retries.perTryTimeout", "Timeout per try".into(), false, Some("e.g. 2s"))}
                {self.input("retries.retryOn", "Retry on".into(), false, Some("e.g. 5xx,reset,connect-failure"))}
            </fieldset>
        }
        .into_any()
    }

    fn circuit_breaking(&self) -> AnyView {
        let group = |prefix: &'static str| {
            CB_FIELDS
                .iter()
                .filter(|(_, pointer, _)| pointer.starts_with(prefix))
                .map(|(name, pointer, label)| {
                    let istio = pointer.rsplit('/').next().unwrap_or_default();
                    let number = !matches!(istio, "interval" | "baseEjectionTime");
                    let hint = if number { None } else { Some("e.g. 10s") };
                    self.input(name, format!("{label} ({istio})"), number, hint)
                })
                .collect_view()
        };
        view! {
            <p>"Limits written to the DestinationRule's traffic policy; empty fields are left out."</p>
            <fieldset>
                <legend>"Connection pool"</legend>
                {group("/connectionPool")}
            </fieldset>
            <fieldset>
                <legend>"Outlier detection"</legend>
                {group("/outlierDetection")}
            </fieldset>
        }
        .into_any()
    }

    fn remove_form(&self, href: &str) -> Option<AnyView> {
        let managed = self.context.managed();
        if managed.is_empty() {
            return None;
        }
        let names: Vec<String> = managed.iter().map(ToString::to_string).collect();
        Some(
            view! {
                <form method="post" action=href.to_string() class="panel wizard-remove">
                    <h2>"Remove traffic rules"</h2>
                    <p>{format!("Deletes {} (every section's settings) as one revision.", names.join(" and "))}</p>
                    <input type="hidden" name="tab" value=self.tab.slug() />
                    <button type="submit" name="action" value="remove" class="danger">
                        "Remove traffic rules"
                    </button>
                </form>
            }
            .into_any(),
        )
    }
}

/// A form field name as an element id (`weight.v1` → `weight-v1`).
fn dom_id(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn error_id(key: &str) -> String {
    format!("err-{}", dom_id(key))
}
