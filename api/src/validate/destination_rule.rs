//! DestinationRule checks.

use super::Checker;
use crate::host;
use crate::resources::{
    ClientTlsMode, ClientTlsSettings, ConnectionPoolSettings, DestinationRule,
    LoadBalancerSettings, OutlierDetection, TrafficPolicy,
};
use crate::yaml::{index_path, join_path};

/// Envoy's bounds for hash tables.
const MAX_RING_SIZE: u64 = 8 * 1024 * 1024;
const MAX_MAGLEV_TABLE: u64 = 5_000_011;

pub(super) fn check(c: &mut Checker<'_>, dr: &DestinationRule) {
    if dr.host.is_empty() {
        c.error("spec.host", "host is required");
    } else if let Err(e) = host::validate_wildcard_domain(&dr.host) {
        c.error("spec.host", e);
    }
    if let Some(tp) = &dr.traffic_policy {
        traffic_policy(c, "spec.trafficPolicy", tp);
    }
    let mut names: Vec<&str> = Vec::new();
    for (i, subset) in dr.subsets.iter().enumerate() {
        let sf = index_path("spec.subsets", i);
        let nf = join_path(&sf, "name");
        if subset.name.is_empty() {
            c.error(&nf, "subset name is required");
        } else if !host::is_dns1123_label(&subset.name) {
            c.error(
                &nf,
                format!("subset name `{}` must be a DNS-1123 label", subset.name),
            );
        } else if names.contains(&subset.name.as_str()) {
            c.error(&nf, format!("subset `{}` is defined twice", subset.name));
        }
        names.push(&subset.name);
        c.labels(&join_path(&sf, "labels"), &subset.labels);
        if let Some(tp) = &subset.traffic_policy {
            traffic_policy(c, &join_path(&sf, "trafficPolicy"), tp);
        }
    }
    c.export_to("spec.exportTo", &dr.export_to, false);
    if let Some(sel) = &dr.workload_selector {
        c.selector("spec.workloadSelector.matchLabels", &sel.match_labels);
    }
}

fn traffic_policy(c: &mut Checker<'_>, field: &str, tp: &TrafficPolicy) {
    if tp.load_balancer.is_none()
        && tp.connection_pool.is_none()
        && tp.outlier_detection.is_none()
        && tp.tls.is_none()
        && tp.port_level_settings.is_empty()
    {
        c.error(field, "a traffic policy needs at least one setting");
    }
    if let Some(lb) = &tp.load_balancer {
        load_balancer(c, &join_path(field, "loadBalancer"), lb);
    }
    if let Some(cp) = &tp.connection_pool {
        connection_pool(c, &join_path(field, "connectionPool"), cp);
    }
    if let Some(od) = &tp.outlier_detection {
        outlier_detection(c, &join_path(field, "outlierDetection"), od);
    }
    if let Some(tls) = &tp.tls {
        client_tls(c, &join_path(field, "tls"), tls);
    }
    let mut ports: Vec<u32> = Vec::new();
    for (i, pl) in tp.port_level_settings.iter().enumerate() {
        let pf = index_path(&join_path(field, "portLevelSettings"), i);
        match &pl.port {
            Some(p) => {
                c.port(&join_path(&join_path(&pf, "port"), "number"), p.number);
                if ports.contains(&p.number) {
                    c.error(
                        &join_path(&pf, "port"),
                        format!("port {} has settings twice", p.number),
                    );
                }
                ports.push(p.number);
            }
            None => c.error(&pf, "`port` is required"),
        }
        if pl.load_balancer.is_none()
            && pl.connection_pool.is_none()
            && pl.outlier_detection.is_none()
            && pl.tls.is_none()
        {
            c.error(&pf, "port-level settings need at least one setting");
        }
        if let Some(lb) = &pl.load_balancer {
            load_balancer(c, &join_path(&pf, "loadBalancer"), lb);
        }
        if let Some(cp) = &pl.connection_pool {
            connection_pool(c, &join_path(&pf, "connectionPool"), cp);
        }
        if let Some(od) = &pl.outlier_detection {
            outlier_detection(c, &join_path(&pf, "outlierDetection"), od);
        }
        if let Some(tls) = &pl.tls {
            client_tls(c, &join_path(&pf, "tls"), tls);
        }
    }
}

fn load_balancer(c: &mut Checker<'_>, field: &str, lb: &LoadBalancerSettings) {
    match (&lb.simple, &lb.consistent_hash) {
        (Some(_), Some(_)) => c.error(field, "set only one of `simple` or `consistentHash`"),
        (None, None) => c.error(field, "set one of `simple` or `consistentHash`"),
        _ => {}
    }
    let Some(ch) = &lb.consistent_hash else {
        return;
    };
    let cf = join_path(field, "consistentHash");
    let keys = [
        ch.http_header_name.is_some(),
        ch.http_cookie.is_some(),
        ch.use_source_ip == Some(true),
        ch.http_query_parameter_name.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if keys != 1 {
        c.error(
            &cf,
            "consistentHash needs exactly one of `httpHeaderName`, `httpCookie`, `useSourceIp: true`, `httpQueryParameterName`",
        );
    }
    if let Some(h) = &ch.http_header_name {
        c.header_name(&join_path(&cf, "httpHeaderName"), h);
    }
    if let Some(q) = &ch.http_query_parameter_name
        && q.is_empty()
    {
        c.error(
            &join_path(&cf, "httpQueryParameterName"),
            "must not be empty",
        );
    }
    if let Some(cookie) = &ch.http_cookie {
        let kf = join_path(&cf, "httpCookie");
        if cookie.name.is_empty() {
            c.error(&join_path(&kf, "name"), "cookie name is required");
        } else if !cookie
            .name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
        {
            c.error(
                &join_path(&kf, "name"),
                format!("`{}` is not a valid cookie name", cookie.name),
            );
        }
        match &cookie.ttl {
            Some(ttl) => {
                c.duration(&join_path(&kf, "ttl"), ttl, true);
            }
            None => c.error(&kf, "`ttl` is required (`0s` for a session cookie)"),
        }
    }
    let algorithms = [
        ch.ring_hash.is_some(),
        ch.maglev.is_some(),
        ch.minimum_ring_size.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if algorithms > 1 {
        c.error(
            &cf,
            "set only one of `ringHash`, `maglev` or `minimumRingSize`",
        );
    }
    let ring = ch
        .ring_hash
        .as_ref()
        .and_then(|r| {
            r.minimum_ring_size
                .map(|s| (join_path(&join_path(&cf, "ringHash"), "minimumRingSize"), s))
        })
        .or_else(|| {
            ch.minimum_ring_size
                .map(|s| (join_path(&cf, "minimumRingSize"), s))
        });
    if let Some((rf, size)) = ring
        && (size == 0 || size > MAX_RING_SIZE)
    {
        c.error(
            &rf,
            format!("ring size {size} must be within 1..={MAX_RING_SIZE}"),
        );
    }
    if let Some(size) = ch.maglev.as_ref().and_then(|m| m.table_size) {
        let mf = join_path(&join_path(&cf, "maglev"), "tableSize");
        if size > MAX_MAGLEV_TABLE {
            c.error(
                &mf,
                format!("table size {size} must be at most {MAX_MAGLEV_TABLE}"),
            );
        } else if !is_prime(size) {
            c.error(&mf, format!("table size {size} must be a prime number"));
        }
    }
}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

fn non_negative(c: &mut Checker<'_>, field: &str, value: Option<i64>) {
    if let Some(v) = value {
        if v < 0 {
            c.error(field, format!("{v} must not be negative"));
        } else if v > i64::from(u32::MAX) {
            c.error(field, format!("{v} is too large"));
        }
    }
}

fn connection_pool(c: &mut Checker<'_>, field: &str, cp: &ConnectionPoolSettings) {
    if cp.tcp.is_none() && cp.http.is_none() {
        c.error(field, "a connection pool needs `tcp` or `http` settings");
    }
    if let Some(tcp) = &cp.tcp {
        let tf = join_path(field, "tcp");
        non_negative(c, &join_path(&tf, "maxConnections"), tcp.max_connections);
        if let Some(t) = &tcp.connect_timeout {
            c.duration(&join_path(&tf, "connectTimeout"), t, false);
        }
    }
    if let Some(http) = &cp.http {
        let hf = join_path(field, "http");
        for (name, value) in [
            ("http1MaxPendingRequests", http.http1_max_pending_requests),
            ("http2MaxRequests", http.http2_max_requests),
            ("maxRequestsPerConnection", http.max_requests_per_connection),
            ("maxRetries", http.max_retries),
        ] {
            non_negative(c, &join_path(&hf, name), value);
        }
        if let Some(t) = &http.idle_timeout {
            c.duration(&join_path(&hf, "idleTimeout"), t, false);
        }
    }
}

fn outlier_detection(c: &mut Checker<'_>, field: &str, od: &OutlierDetection) {
    non_negative(
        c,
        &join_path(field, "consecutive5xxErrors"),
        od.consecutive_5xx_errors,
    );
    non_negative(
        c,
        &join_path(field, "consecutiveGatewayErrors"),
        od.consecutive_gateway_errors,
    );
    if let Some(t) = &od.interval {
        c.duration(&join_path(field, "interval"), t, false);
    }
    if let Some(t) = &od.base_ejection_time {
        c.duration(&join_path(field, "baseEjectionTime"), t, false);
    }
    for (name, value) in [
        ("maxEjectionPercent", od.max_ejection_percent),
        ("minHealthPercent", od.min_health_percent),
    ] {
        if let Some(v) = value
            && !(0..=100).contains(&v)
        {
            c.error(
                &join_path(field, name),
                format!("{v} must be within 0..=100"),
            );
        }
    }
}

fn client_tls(c: &mut Checker<'_>, field: &str, tls: &ClientTlsSettings) {
    let with_credential = tls.credential_name.is_some();
    if with_credential
        && (tls.client_certificate.is_some()
            || tls.private_key.is_some()
            || tls.ca_certificates.is_some())
    {
        c.error(field, "with `credentialName`, leave out `clientCertificate`, `privateKey` and `caCertificates`");
    }
    if tls.mode == Some(ClientTlsMode::Mutual) && !with_credential {
        for (name, value) in [
            ("clientCertificate", &tls.client_certificate),
            ("privateKey", &tls.private_key),
        ] {
            if value.is_none() {
                c.error(
                    &join_path(field, name),
                    "MUTUAL needs the PEM file this proxy presents to the server: give `clientCertificate` and `privateKey`",
                );
            }
        }
    }
    for (name, value) in [
        ("caCertificates", &tls.ca_certificates),
        ("clientCertificate", &tls.client_certificate),
        ("privateKey", &tls.private_key),
    ] {
        if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
            c.error(&join_path(field, name), "must be a file path, not empty");
        }
    }
    if let Some(sni) = &tls.sni
        && let Err(e) = host::validate_fqdn(sni)
    {
        c.error(&join_path(field, "sni"), e);
    }
    if with_credential {
        c.error(
            &join_path(field, "credentialName"),
            "unsupported: Trellis proxies do not read Kubernetes secrets; give `caCertificates` (and for MUTUAL `clientCertificate` and `privateKey`) as file paths",
        );
    }
    if tls.ca_crl.is_some() {
        c.error(
            &join_path(field, "caCrl"),
            "unsupported: certificate revocation lists are not checked",
        );
    }
    if tls.mode == Some(ClientTlsMode::IstioMutual) {
        for (i, san) in tls.subject_alt_names.iter().enumerate() {
            if !san.starts_with("spiffe://") {
                c.error(
                    &index_path(&join_path(field, "subjectAltNames"), i),
                    format!("`{san}`: with ISTIO_MUTUAL the server is identified by SPIFFE ID (spiffe://<trust-domain>/ns/<ns>/sa/<sa>)"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tls_tests {
    use crate::load::load_str;

    fn errors(tls: &str) -> Vec<String> {
        let yaml = format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: r, namespace: default}}\nspec:\n  host: r.default.svc.cluster.local\n  trafficPolicy:\n    tls: {tls}\n"
        );
        // Loading validates: errors come back as its diagnostics.
        match load_str(&yaml, "dr.yaml") {
            Ok(_) => Vec::new(),
            Err(diagnostics) => diagnostics.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn client_tls_fields_trellis_cannot_honour_are_refused_by_name() {
        assert!(errors("{mode: ISTIO_MUTUAL}").is_empty());
        assert!(
            errors("{mode: ISTIO_MUTUAL, subjectAltNames: [\"spiffe://cluster.local/ns/a/sa/b\"]}")
                .is_empty()
        );
        // TLS origination, also to a mesh-internal host (Istio allows it); system roots when no
        // caCertificates.
        assert!(errors("{mode: SIMPLE}").is_empty());
        assert!(errors("{mode: SIMPLE, caCertificates: /etc/ca.pem}").is_empty());
        assert!(errors("{mode: SIMPLE, insecureSkipVerify: true}").is_empty());
        assert!(
            errors("{mode: MUTUAL, clientCertificate: /c.pem, privateKey: /k.pem, subjectAltNames: [api.example.com]}")
                .is_empty()
        );
        let cases = [
            (
                "{mode: ISTIO_MUTUAL, subjectAltNames: [reviews.example]}",
                "subjectAltNames[0]",
            ),
            (
                "{mode: MUTUAL, privateKey: /k.pem}",
                "tls.clientCertificate",
            ),
            (
                "{mode: MUTUAL, clientCertificate: /c.pem}",
                "tls.privateKey",
            ),
            ("{mode: SIMPLE, caCertificates: \"\"}", "tls.caCertificates"),
            ("{mode: SIMPLE, credentialName: secret}", "credentialName"),
            (
                "{mode: SIMPLE, caCertificates: /ca.pem, caCrl: /crl.pem}",
                "caCrl",
            ),
        ];
        for (tls, field) in cases {
            let errs = errors(tls);
            assert!(errs.iter().any(|e| e.contains(field)), "{tls}: {errs:?}");
        }
    }
}
