//! `trellis proxy-status`: like `istioctl proxy-status`, whether each proxy runs the config the
//! control plane wants it to run.

use super::CliError;
use super::client::Client;
use super::table::{Table, human_age, truncate};
use super::types::{ProxyInfo, ProxyList};
use serde_json::Value;
use std::io::Write;
use std::process::ExitCode;
use trellis_api::time::now_millis;
use trellis_api::time::parse_rfc3339;

/// Longest ERROR cell (the whole NACK message is in the REST answer).
const ERROR_WIDTH: usize = 60;

pub async fn proxy_status(
    client: &Client,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ExitCode, CliError> {
    let mut list: ProxyList = client.get("/proxies").await?;
    if list.proxies.is_empty() {
        writeln!(err, "No proxies connected to {}", client.base())?;
        return Ok(ExitCode::SUCCESS);
    }
    list.proxies
        .sort_by(|a, b| (&a.namespace, &a.id).cmp(&(&b.namespace, &b.id)));
    out.write_all(render(&list.proxies, now_millis()).as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

fn render(proxies: &[ProxyInfo], now: i64) -> String {
    let mut t = Table::new(&[
        "NAME",
        "NAMESPACE",
        "STATUS",
        "VERSION",
        "LATEST",
        "CONNECTED",
        "ERROR",
    ]);
    for p in proxies {
        let since = p
            .connected_since_unix_ms
            .or_else(|| p.connected_since.as_deref().and_then(parse_rfc3339));
        let connected = match (p.connected, since) {
            (true, Some(since)) => human_age(now - since),
            (true, None) => "yes".to_string(),
            (false, _) => "-".to_string(),
        };
        let status = if p.status.is_empty() {
            "UNKNOWN".to_string()
        } else {
            p.status.clone()
        };
        t.row(vec![
            p.id.clone(),
            p.namespace.clone(),
            status,
            version(&p.version_acked),
            version(&p.latest_version),
            connected,
            p.error
                .as_deref()
                .map(|e| truncate(e, ERROR_WIDTH))
                .unwrap_or_default(),
        ]);
    }
    t.render()
}

/// A config version as sent (number or string); `-` when none.
fn version(value: &Value) -> String {
    match value {
        Value::Null => "-".to_string(),
        Value::String(s) if s.is_empty() => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_like_istioctl() {
        let proxies: ProxyList = serde_json::from_str(
            r#"{"proxies":[
              {"id":"reviews-v1.default","namespace":"default","connected":true,"connected_since":"1970-01-01T00:00:00Z","status":"SYNCED","version_acked":7,"latest_version":7,"error":null},
              {"id":"ratings-v1.default","namespace":"default","connected":false,"status":"NACKED","version_acked":"5","latest_version":7,"error":"cluster outbound|9080||ratings: bad\nthings"}
            ]}"#,
        )
        .unwrap();
        assert_eq!(
            render(&proxies.proxies, 303_000),
            "NAME                 NAMESPACE   STATUS   VERSION   LATEST   CONNECTED   ERROR\n\
             reviews-v1.default   default     SYNCED   7         7        5m3s\n\
             ratings-v1.default   default     NACKED   5         7        -           cluster outbound|9080||ratings: bad things\n"
        );
    }
}
