//! ServiceEntry checks.

use super::{Checker, check_protocol};
use crate::host;
use crate::resources::{Resolution, ServiceEntry};
use crate::yaml::{index_path, join_path};

pub(super) fn check(c: &mut Checker<'_>, se: &ServiceEntry) {
    if se.hosts.is_empty() {
        c.error("spec.hosts", "at least one host is required");
    }
    let resolution = se.resolution.unwrap_or_default();
    for (i, h) in se.hosts.iter().enumerate() {
        let f = index_path("spec.hosts", i);
        if h == "*" {
            c.error(&f, "host `*` is not allowed in a ServiceEntry");
        } else if let Err(e) = host::validate_wildcard_domain(h) {
            c.error(&f, e);
        } else if h.starts_with('*')
            && matches!(resolution, Resolution::Dns | Resolution::DnsRoundRobin)
            && se.endpoints.is_empty()
        {
            c.error(&f, "a wildcard host cannot be resolved by DNS; list `endpoints` or use resolution NONE");
        }
        if se.hosts[..i].contains(h) {
            c.error(&f, format!("host `{h}` is listed twice"));
        }
    }

    let mut cidr = false;
    for (i, a) in se.addresses.iter().enumerate() {
        c.ip_or_cidr(&index_path("spec.addresses", i), a);
        cidr |= a.contains('/');
    }
    if cidr && !matches!(resolution, Resolution::None | Resolution::Static) {
        c.error(
            "spec.addresses",
            "CIDR addresses need resolution NONE or STATIC",
        );
    }

    if se.ports.is_empty() {
        c.error("spec.ports", "at least one port is required");
    }
    let mut names: Vec<&str> = Vec::new();
    let mut numbers: Vec<u32> = Vec::new();
    let mut all_http = true;
    for (i, p) in se.ports.iter().enumerate() {
        let pf = index_path("spec.ports", i);
        c.port(&join_path(&pf, "number"), p.number);
        if numbers.contains(&p.number) {
            c.error(
                &join_path(&pf, "number"),
                format!("port {} is declared twice", p.number),
            );
        }
        numbers.push(p.number);
        let nf = join_path(&pf, "name");
        if p.name.is_empty() {
            c.error(&nf, "port name is required");
        } else if !host::is_dns1123_label(&p.name) {
            c.error(
                &nf,
                format!("port name `{}` must be a DNS-1123 label", p.name),
            );
        } else if names.contains(&p.name.as_str()) {
            c.error(&nf, format!("port name `{}` is used twice", p.name));
        }
        names.push(&p.name);
        if let Some(protocol) = &p.protocol {
            check_protocol(c, &join_path(&pf, "protocol"), protocol);
        }
        let protocol = crate::registry::port_protocol(p.protocol.as_deref(), &p.name);
        let sni = p
            .protocol
            .as_deref()
            .is_some_and(|p| p.eq_ignore_ascii_case("TLS") || p.eq_ignore_ascii_case("HTTPS"));
        all_http &= protocol.is_http() || sni;
        if let Some(t) = p.target_port {
            c.port(&join_path(&pf, "targetPort"), t);
        }
    }
    // Plain TCP cannot tell several hosts apart on one port.
    if se.hosts.len() > 1 && resolution != Resolution::None && !all_http {
        c.error(
            "spec.hosts",
            "several hosts need HTTP or TLS ports (plain TCP cannot tell them apart), or resolution NONE",
        );
    }

    if se.workload_selector.is_some() && !se.endpoints.is_empty() {
        c.error("spec", "set only one of `workloadSelector` or `endpoints`");
    }
    if let Some(sel) = &se.workload_selector {
        c.selector("spec.workloadSelector.labels", &sel.labels);
    }
    if resolution == Resolution::None && !se.endpoints.is_empty() {
        c.error(
            "spec.endpoints",
            "resolution NONE takes no endpoints (traffic goes to the original destination)",
        );
    }
    for (i, ep) in se.endpoints.iter().enumerate() {
        let ef = index_path("spec.endpoints", i);
        let af = join_path(&ef, "address");
        if ep.address.is_empty() {
            c.error(&af, "address is required");
        } else if ep.address.starts_with("unix://") {
            c.error(
                &af,
                "unix domain socket endpoints are unsupported by Trellis",
            );
        } else if ep.address.parse::<std::net::IpAddr>().is_err() {
            match resolution {
                Resolution::Static => c.error(
                    &af,
                    format!("`{}` is not an IP address (resolution STATIC)", ep.address),
                ),
                _ => {
                    if host::validate_fqdn(&ep.address).is_err() {
                        c.error(
                            &af,
                            format!("`{}` is not an IP address or DNS name", ep.address),
                        );
                    }
                }
            }
        }
        for (name, port) in &ep.ports {
            let pf = join_path(&join_path(&ef, "ports"), name);
            if !names.contains(&name.as_str()) {
                c.error(
                    &pf,
                    format!("port `{name}` is not a port name of this ServiceEntry"),
                );
            }
            c.port(&pf, *port);
        }
        c.labels(&join_path(&ef, "labels"), &ep.labels);
        if ep.weight == Some(0) {
            c.error(&join_path(&ef, "weight"), "weight must be at least 1");
        }
    }
    c.export_to("spec.exportTo", &se.export_to, true);
    for (i, san) in se.subject_alt_names.iter().enumerate() {
        if san.is_empty() {
            c.error(&index_path("spec.subjectAltNames", i), "must not be empty");
        }
    }
}
