//! Gateway, Sidecar and security resource checks.

use super::{Checker, check_protocol};
use crate::host;
use crate::resources::{
    AuthorizationAction, AuthorizationPolicy, Gateway, PeerAuthentication, Port, ServerTlsMode,
    Sidecar,
};
use crate::yaml::{index_path, join_path};

pub(super) fn check_gateway(c: &mut Checker<'_>, gw: &Gateway) {
    let name = c.resource_name().to_string();
    if !host::is_dns1123_label(&name) {
        c.error(
            "metadata.name",
            format!("gateway name `{name}` must be a DNS-1123 label (no dots)"),
        );
    }
    c.selector("spec.selector", &gw.selector);
    if gw.servers.is_empty() {
        c.error("spec.servers", "at least one server is required");
    }
    let mut port_names: Vec<&str> = Vec::new();
    for (i, server) in gw.servers.iter().enumerate() {
        let sf = index_path("spec.servers", i);
        let mut tls_protocol = None;
        match &server.port {
            Some(p) => {
                let pf = join_path(&sf, "port");
                port(c, &pf, p);
                if p.name.is_empty() {
                    c.error(&join_path(&pf, "name"), "port name is required");
                } else if port_names.contains(&p.name.as_str()) {
                    c.error(
                        &join_path(&pf, "name"),
                        format!("port name `{}` is used by another server", p.name),
                    );
                }
                port_names.push(&p.name);
                if p.protocol.is_empty() {
                    c.error(&join_path(&pf, "protocol"), "protocol is required");
                }
                tls_protocol = Some(
                    p.protocol.eq_ignore_ascii_case("HTTPS")
                        || p.protocol.eq_ignore_ascii_case("TLS"),
                );
            }
            None => c.error(&sf, "`port` is required"),
        }
        if server.hosts.is_empty() {
            c.error(&join_path(&sf, "hosts"), "at least one host is required");
        }
        for (j, h) in server.hosts.iter().enumerate() {
            let hf = index_path(&join_path(&sf, "hosts"), j);
            let (ns, name) = h.split_once('/').unwrap_or((".", h));
            if ns != "*" && ns != "." && !host::is_dns1123_label(ns) {
                c.error(&hf, format!("`{ns}` is not `*`, `.` or a namespace name"));
            }
            if name.parse::<std::net::IpAddr>().is_err()
                && let Err(e) = host::validate_wildcard_domain(name)
            {
                c.error(&hf, e);
            }
        }
        match (tls_protocol, &server.tls) {
            (Some(true), None) => c.error(&sf, "HTTPS and TLS servers need `tls` settings"),
            (Some(false), Some(tls)) if tls.mode.is_some() => c.error(
                &join_path(&sf, "tls"),
                "only `httpsRedirect` is allowed on a plain-text server",
            ),
            _ => {}
        }
        if let Some(tls) = &server.tls {
            let tf = join_path(&sf, "tls");
            let files = tls.server_certificate.is_some() || tls.private_key.is_some();
            match tls.mode {
                Some(ServerTlsMode::Simple | ServerTlsMode::Mutual)
                    if tls.credential_name.is_none()
                        && tls.credential_names.is_empty()
                        && (tls.server_certificate.is_none() || tls.private_key.is_none()) =>
                {
                    c.error(&tf, "SIMPLE and MUTUAL need `credentialName` or `serverCertificate` and `privateKey`");
                }
                Some(ServerTlsMode::IstioMutual) if files || tls.ca_certificates.is_some() => {
                    c.error(
                        &tf,
                        "ISTIO_MUTUAL uses the mesh certificates; leave out certificate files",
                    );
                }
                _ => {}
            }
        }
    }
}

fn port(c: &mut Checker<'_>, field: &str, p: &Port) {
    c.port(&join_path(field, "number"), p.number);
    if !p.protocol.is_empty() {
        check_protocol(c, &join_path(field, "protocol"), &p.protocol);
    }
    if !p.name.is_empty() && !host::is_dns1123_label(&p.name) {
        c.error(
            &join_path(field, "name"),
            format!("port name `{}` must be a DNS-1123 label", p.name),
        );
    }
    if let Some(t) = p.target_port {
        c.port(&join_path(field, "targetPort"), t);
    }
}

pub(super) fn check_sidecar(c: &mut Checker<'_>, sc: &Sidecar) {
    if let Some(sel) = &sc.workload_selector {
        c.selector("spec.workloadSelector.labels", &sel.labels);
    }
    if sc.egress.is_empty() {
        c.error("spec.egress", "at least one egress listener is required");
    }
    let mut ports: Vec<u32> = Vec::new();
    for (i, eg) in sc.egress.iter().enumerate() {
        let ef = index_path("spec.egress", i);
        match &eg.port {
            Some(p) => {
                port(c, &join_path(&ef, "port"), p);
                if ports.contains(&p.number) {
                    c.error(
                        &join_path(&ef, "port"),
                        format!("port {} has two egress listeners", p.number),
                    );
                }
                ports.push(p.number);
            }
            None if i + 1 != sc.egress.len() => {
                c.error(
                    &ef,
                    "only the last egress listener may leave out `port` (it catches the rest)",
                );
            }
            None => {}
        }
        if eg.hosts.is_empty() {
            c.error(&join_path(&ef, "hosts"), "at least one host is required");
        }
        for (j, h) in eg.hosts.iter().enumerate() {
            let hf = index_path(&join_path(&ef, "hosts"), j);
            let Some((ns, name)) = h.split_once('/') else {
                c.error(
                    &hf,
                    format!("`{h}` must be `namespace/host` (namespace `*`, `.`, `~` or a name)"),
                );
                continue;
            };
            if !matches!(ns, "*" | "." | "~") && !host::is_dns1123_label(ns) {
                c.error(
                    &hf,
                    format!("`{ns}` is not `*`, `.`, `~` or a namespace name"),
                );
            }
            if name != "*" && !name.contains('.') {
                c.error(
                    &hf,
                    format!("`{name}` is a short name; egress hosts must be fully qualified"),
                );
            } else if let Err(e) = host::validate_wildcard_domain(name) {
                c.error(&hf, e);
            }
        }
    }
    if !sc.ingress.is_empty() {
        for (i, ing) in sc.ingress.iter().enumerate() {
            let f = index_path("spec.ingress", i);
            match &ing.port {
                Some(p) => port(c, &join_path(&f, "port"), p),
                None => c.error(&f, "`port` is required"),
            }
        }
        c.warn(
            "spec.ingress",
            "ingress listeners are accepted but not applied by Trellis yet",
        );
    }
}

pub(super) fn check_peer_authentication(c: &mut Checker<'_>, pa: &PeerAuthentication) {
    let selected = pa
        .selector
        .as_ref()
        .is_some_and(|s| !s.match_labels.is_empty());
    if let Some(sel) = &pa.selector {
        c.selector("spec.selector.matchLabels", &sel.match_labels);
    }
    if !pa.port_level_mtls.is_empty() && !selected {
        c.error(
            "spec.portLevelMtls",
            "port-level mTLS needs a workload `selector`",
        );
    }
    for port in pa.port_level_mtls.keys() {
        c.port(&join_path("spec.portLevelMtls", &port.to_string()), *port);
    }
}

pub(super) fn check_authorization_policy(c: &mut Checker<'_>, ap: &AuthorizationPolicy) {
    if let Some(sel) = &ap.selector {
        c.selector("spec.selector.matchLabels", &sel.match_labels);
    }
    match (ap.action, &ap.provider) {
        (Some(AuthorizationAction::Custom), None) => {
            c.error("spec.provider", "action CUSTOM needs a `provider`")
        }
        (Some(AuthorizationAction::Custom), Some(p)) if p.name.is_empty() => {
            c.error("spec.provider.name", "provider name is required")
        }
        (a, Some(_)) if a != Some(AuthorizationAction::Custom) => c.error(
            "spec.provider",
            "`provider` is only used with action CUSTOM",
        ),
        _ => {}
    }
    for (i, rule) in ap.rules.iter().enumerate() {
        let rf = index_path("spec.rules", i);
        for (j, from) in rule.from.iter().enumerate() {
            if from.source.is_none() {
                c.error(
                    &index_path(&join_path(&rf, "from"), j),
                    "`source` is required",
                );
            }
        }
        for (j, to) in rule.to.iter().enumerate() {
            let tf = index_path(&join_path(&rf, "to"), j);
            match &to.operation {
                None => c.error(&tf, "`operation` is required"),
                Some(op) => {
                    for (k, p) in op.ports.iter().chain(&op.not_ports).enumerate() {
                        if p.parse::<u16>().map_or(true, |n| n == 0) {
                            c.error(
                                &join_path(&tf, "operation"),
                                format!("`{p}` (entry {k}) is not a port number"),
                            );
                        }
                    }
                }
            }
        }
        for (j, cond) in rule.when.iter().enumerate() {
            let wf = index_path(&join_path(&rf, "when"), j);
            if cond.key.is_empty() {
                c.error(&join_path(&wf, "key"), "key is required");
            }
            if cond.values.is_empty() && cond.not_values.is_empty() {
                c.error(&wf, "set `values` or `notValues`");
            }
        }
    }
    // What the proxies will enforce: everything the engine cannot compile is refused here, so a
    // stored policy always compiles (the shape errors above are reported once, not twice).
    if !c.has_errors() {
        let (name, namespace) = (
            c.resource().name().to_string(),
            c.resource().namespace().to_string(),
        );
        for e in crate::authz::check(&name, &namespace, ap) {
            c.error(&e.field, e.message);
        }
    }
}
