//! `trellis get`: stored resources as a kubectl-style table, YAML, JSON or names.

use super::client::{Client, encode};
use super::table::Table;
use super::types::{ResourceItem, ResourceList};
use super::{CliError, GetArgs, OutputFormat, kind_resource};
use serde_json::{Value, json};
use std::io::Write;
use std::process::ExitCode;
use trellis_api::Kind;

/// A kind as kubectl spells it (`vs`, `virtualservices`, `ServiceEntries`,
/// `gateways.networking.istio.io`, ...), or an error listing the kinds there are.
pub fn parse_kind(name: &str) -> Result<Kind, CliError> {
    Kind::parse_cli(name).map_err(CliError::msg)
}

pub async fn get(
    client: &Client,
    args: &GetArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ExitCode, CliError> {
    let kind = parse_kind(&args.kind)?;
    let all = args.namespace.all_namespaces;
    let namespace = args
        .namespace
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());

    if let Some(name) = &args.name {
        let path = format!(
            "/resources/{}/{}/{}",
            encode(kind.as_str()),
            encode(&namespace),
            encode(name)
        );
        let item: ResourceItem = client.get(&path).await?;
        let text = match args.output {
            Some(OutputFormat::Yaml) => crate::store::to_yaml(&item.resource),
            Some(OutputFormat::Json) => pretty(&item.resource),
            Some(OutputFormat::Name) => format!("{}/{}\n", kind_resource(kind.as_str()), item.name),
            Some(OutputFormat::Wide) | None => table(kind, std::slice::from_ref(&item)),
        };
        out.write_all(text.as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }

    let mut path = format!("/resources?kind={}", encode(kind.as_str()));
    if !all {
        path.push_str(&format!("&namespace={}", encode(&namespace)));
    }
    let mut list: ResourceList = client.get(&path).await?;
    list.items
        .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let items = &list.items;
    let text = match args.output {
        Some(OutputFormat::Yaml) => {
            let docs: Vec<Value> = items.iter().map(|i| i.resource.clone()).collect();
            crate::store::to_yaml_documents(&docs)
        }
        Some(OutputFormat::Json) => pretty(&json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": items.iter().map(|i| i.resource.clone()).collect::<Vec<_>>(),
        })),
        Some(OutputFormat::Name) => items
            .iter()
            .map(|i| format!("{}/{}\n", kind_resource(kind.as_str()), i.name))
            .collect(),
        Some(OutputFormat::Wide) | None if items.is_empty() => String::new(),
        Some(OutputFormat::Wide) | None => table(kind, items),
    };
    if items.is_empty() && !matches!(args.output, Some(OutputFormat::Json)) {
        if all {
            writeln!(err, "No resources found")?;
        } else {
            writeln!(err, "No resources found in {namespace} namespace.")?;
        }
    }
    out.write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    text.push('\n');
    text
}

/// NAMESPACE, NAME and the columns kubectl shows for Istio's kinds.
fn table(kind: Kind, items: &[ResourceItem]) -> String {
    let extra: &[&str] = match kind {
        Kind::VirtualService => &["GATEWAYS", "HOSTS"],
        Kind::DestinationRule => &["HOST"],
        Kind::ServiceEntry => &["HOSTS", "LOCATION", "RESOLUTION"],
        Kind::Gateway => &["HOSTS"],
        Kind::PeerAuthentication => &["MODE"],
        Kind::AuthorizationPolicy => &["ACTION"],
        Kind::LocalRateLimit => &["MAX TOKENS", "FILL INTERVAL", "ROUTES"],
        Kind::Sidecar => &[],
    };
    let mut headers = vec!["NAMESPACE", "NAME"];
    headers.extend_from_slice(extra);
    let mut t = Table::new(&headers);
    for item in items {
        let spec = &item.resource["spec"];
        let mut row = vec![item.namespace.clone(), item.name.clone()];
        match kind {
            Kind::VirtualService => {
                row.push(list(&spec["gateways"]));
                row.push(list(&spec["hosts"]));
            }
            Kind::DestinationRule => row.push(scalar(&spec["host"])),
            Kind::ServiceEntry => {
                row.push(list(&spec["hosts"]));
                row.push(scalar(&spec["location"]));
                row.push(scalar(&spec["resolution"]));
            }
            Kind::Gateway => {
                let mut hosts: Vec<Value> = Vec::new();
                for server in spec["servers"].as_array().into_iter().flatten() {
                    for h in server["hosts"].as_array().into_iter().flatten() {
                        if !hosts.contains(h) {
                            hosts.push(h.clone());
                        }
                    }
                }
                row.push(list(&Value::Array(hosts)));
            }
            Kind::PeerAuthentication => row.push(scalar(&spec["mtls"]["mode"])),
            Kind::AuthorizationPolicy => row.push(scalar(&spec["action"])),
            Kind::LocalRateLimit => {
                row.push(scalar(&spec["tokenBucket"]["maxTokens"]));
                row.push(scalar(&spec["tokenBucket"]["fillInterval"]));
                let routes = spec["routes"].as_array().map_or(0, Vec::len);
                row.push(routes.to_string());
            }
            Kind::Sidecar => {}
        }
        t.row(row);
    }
    t.render()
}

/// A list as kubectl's printer columns show it (`["a","b"]`); empty when absent.
fn list(value: &Value) -> String {
    match value {
        Value::Array(items) if !items.is_empty() => value.to_string(),
        Value::Array(_) | Value::Null => String::new(),
        other => scalar(other),
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_as_kubectl_spells_them() {
        for name in [
            "vs",
            "VirtualService",
            "virtualservices",
            "virtualservices.networking.istio.io",
        ] {
            assert_eq!(parse_kind(name).unwrap(), Kind::VirtualService, "{name}");
        }
        assert_eq!(parse_kind("serviceentries").unwrap(), Kind::ServiceEntry);
        assert_eq!(
            parse_kind("authorizationpolicies.security.istio.io").unwrap(),
            Kind::AuthorizationPolicy
        );
        let e = parse_kind("pods").unwrap_err().to_string();
        assert!(
            e.contains("unknown resource type \"pods\"; valid kinds: virtualservices (vs), destinationrules (dr), serviceentries (se), gateways (gw), sidecars (sc), peerauthentications (pa), authorizationpolicies (ap)"),
            "{e}"
        );
    }

    #[test]
    fn tables_show_kind_columns() {
        let item = ResourceItem {
            namespace: "default".into(),
            name: "reviews".into(),
            resource: json!({"spec": {"hosts": ["reviews"], "http": []}}),
        };
        assert_eq!(
            table(Kind::VirtualService, &[item]),
            "NAMESPACE   NAME      GATEWAYS   HOSTS\ndefault     reviews              [\"reviews\"]\n"
        );
    }
}
