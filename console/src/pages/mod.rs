//! One module per page; each renders a [`crate::shell::Page`] from the backend.

pub mod apply;
pub mod config;
pub mod graph;
pub mod history;
pub mod overview;
pub mod proxies;
pub mod rollback;
pub mod services;
pub mod tap;
pub mod traces;
pub mod workloads;

#[cfg(test)]
mod services_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod traces_tests;

use crate::server::Params;
use crate::shell::PageError;

/// An optional parameter; empty counts as absent (an untouched form field).
pub fn param<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// An optional number parameter, with a message naming it when it is not one.
pub fn number_param(params: &Params, name: &str) -> Result<Option<u64>, PageError> {
    param(params, name)
        .map(|v| {
            v.parse().map_err(|_| {
                PageError::BadRequest(format!(
                    "`{name}` must be a whole number of 0 or more, got {v:?}"
                ))
            })
        })
        .transpose()
}

/// A required number parameter.
pub fn required_number(params: &Params, name: &str) -> Result<u64, PageError> {
    number_param(params, name)?
        .ok_or_else(|| PageError::BadRequest(format!("`{name}` is required")))
}

/// `/config/{kind}/{namespace}/{name}`; path segments are percent-encoded.
pub fn resource_href(id: &crate::model::ResourceRef) -> String {
    format!(
        "/config/{}/{}/{}",
        encode(&id.kind),
        encode(&id.namespace),
        encode(&id.name)
    )
}

/// Percent-encodes everything but unreserved characters, for paths and query values.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A rate with a unit a person reads at a glance.
pub fn format_rate(rps: f64) -> String {
    if rps <= 0.0 {
        "0 req/s".to_string()
    } else if rps < 10.0 {
        format!("{rps:.2} req/s")
    } else {
        format!("{rps:.1} req/s")
    }
}

pub fn format_percent(p: f64) -> String {
    if p == 0.0 {
        "0 %".to_string()
    } else if p < 1.0 {
        format!("{p:.2} %")
    } else {
        format!("{p:.1} %")
    }
}
