//! VirtualService checks.

use super::Checker;
use crate::host;
use crate::resources::{
    CorsPolicy, Destination, HeaderOperations, Headers, HttpFaultInjection, HttpMatchRequest,
    HttpRetry, HttpRoute, TcpRoute, VirtualService,
};
use crate::yaml::{index_path, join_path};

/// gRPC status names accepted by `fault.abort.grpcStatus`, with their codes.
pub(crate) const GRPC_STATUS: [(&str, u32); 16] = [
    ("CANCELLED", 1),
    ("UNKNOWN", 2),
    ("INVALID_ARGUMENT", 3),
    ("DEADLINE_EXCEEDED", 4),
    ("NOT_FOUND", 5),
    ("ALREADY_EXISTS", 6),
    ("PERMISSION_DENIED", 7),
    ("RESOURCE_EXHAUSTED", 8),
    ("FAILED_PRECONDITION", 9),
    ("ABORTED", 10),
    ("OUT_OF_RANGE", 11),
    ("UNIMPLEMENTED", 12),
    ("INTERNAL", 13),
    ("UNAVAILABLE", 14),
    ("DATA_LOSS", 15),
    ("UNAUTHENTICATED", 16),
];

/// `retryOn` policies Istio accepts (besides numeric status codes).
pub(crate) const RETRY_ON: [&str; 12] = [
    "5xx",
    "gateway-error",
    "reset",
    "connect-failure",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE", "*",
];

pub(super) fn check(c: &mut Checker<'_>, vs: &VirtualService) {
    let applies_to_mesh = vs.gateways.is_empty() || vs.gateways.iter().any(|g| g == "mesh");
    if vs.hosts.is_empty() {
        c.error("spec.hosts", "at least one host is required");
    }
    for (i, h) in vs.hosts.iter().enumerate() {
        let f = index_path("spec.hosts", i);
        if h.parse::<std::net::IpAddr>().is_ok() {
            continue;
        }
        if let Err(e) = host::validate_wildcard_domain(h) {
            c.error(&f, e);
        } else if h == "*" && applies_to_mesh {
            c.error(
                &f,
                "host `*` is not allowed for VirtualServices bound to the mesh",
            );
        }
        let resolved = host::resolve(h, c.namespace());
        for (j, other) in vs.hosts.iter().enumerate().skip(i + 1) {
            let other = host::resolve(other, c.namespace());
            if host::match_specificity(&resolved, &other).is_some()
                || host::match_specificity(&other, &resolved).is_some()
            {
                c.error(
                    &index_path("spec.hosts", j),
                    format!("host `{other}` overlaps host `{resolved}` of the same VirtualService"),
                );
            }
        }
    }
    c.gateway_names("spec.gateways", &vs.gateways);
    if vs.http.is_empty() && vs.tcp.is_empty() {
        c.error("spec", "at least one `http` or `tcp` rule is required");
    }
    for (i, rule) in vs.http.iter().enumerate() {
        http_route(c, &index_path("spec.http", i), rule);
    }
    for (i, rule) in vs.tcp.iter().enumerate() {
        tcp_route(c, &index_path("spec.tcp", i), rule);
    }
    c.export_to("spec.exportTo", &vs.export_to, false);
}

fn http_route(c: &mut Checker<'_>, field: &str, rule: &HttpRoute) {
    let f = |name: &str| join_path(field, name);
    for (i, m) in rule.matches.iter().enumerate() {
        http_match(c, &index_path(&f("match"), i), m);
    }

    let actions = [
        !rule.route.is_empty(),
        rule.redirect.is_some(),
        rule.direct_response.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if actions != 1 {
        c.error(
            field,
            if actions == 0 {
                "a rule needs one of `route`, `redirect` or `directResponse`"
            } else {
                "a rule takes only one of `route`, `redirect` or `directResponse`"
            },
        );
    }

    if let Some(redirect) = &rule.redirect {
        let rf = f("redirect");
        if redirect.uri.is_none()
            && redirect.authority.is_none()
            && redirect.port.is_none()
            && redirect.scheme.is_none()
        {
            c.error(
                &rf,
                "a redirect needs at least one of `uri`, `authority`, `port`, `scheme`",
            );
        }
        if let Some(code) = redirect.redirect_code
            && !(300..=399).contains(&code)
        {
            c.error(
                &join_path(&rf, "redirectCode"),
                format!("{code} is not a redirect code (must be 3xx)"),
            );
        }
        if let Some(port) = redirect.port {
            c.port(&join_path(&rf, "port"), port);
        }
        if let Some(scheme) = &redirect.scheme
            && (scheme.is_empty()
                || !scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)))
        {
            c.error(
                &join_path(&rf, "scheme"),
                format!("`{scheme}` is not a URI scheme"),
            );
        }
        if let Some(authority) = &redirect.authority {
            c.header_value(&join_path(&rf, "authority"), authority);
        }
        if rule.rewrite.is_some() {
            c.error(
                &f("rewrite"),
                "`rewrite` cannot be combined with `redirect`",
            );
        }
        if rule.fault.is_some() {
            c.error(&f("fault"), "`fault` cannot be combined with `redirect`");
        }
    }

    if let Some(dr) = &rule.direct_response {
        let df = f("directResponse");
        if !(200..=599).contains(&dr.status) {
            c.error(
                &join_path(&df, "status"),
                format!("status {} must be within 200..=599", dr.status),
            );
        }
        if let Some(body) = &dr.body {
            let bf = join_path(&df, "body");
            match (&body.string, &body.bytes) {
                (Some(_), Some(_)) => c.error(&bf, "set only one of `string` or `bytes`"),
                (None, None) => c.error(&bf, "set one of `string` or `bytes`"),
                (None, Some(b)) if super::decode_base64(b).is_none() => {
                    c.error(&join_path(&bf, "bytes"), "`bytes` must be base64")
                }
                _ => {}
            }
        }
        if rule.rewrite.is_some() {
            c.error(
                &f("rewrite"),
                "`rewrite` cannot be combined with `directResponse`",
            );
        }
    }

    let mut total: u64 = 0;
    for (i, rd) in rule.route.iter().enumerate() {
        let rf = index_path(&f("route"), i);
        match &rd.destination {
            Some(d) => destination(c, &join_path(&rf, "destination"), d),
            None => c.error(&join_path(&rf, "destination"), "destination is required"),
        }
        if let Some(w) = rd.weight {
            weight(c, &join_path(&rf, "weight"), w);
        }
        total += u64::from(rd.weight.unwrap_or(0));
        if let Some(h) = &rd.headers {
            headers(c, &join_path(&rf, "headers"), h);
        }
    }
    weights_total(c, &f("route"), rule.route.len(), total);

    if let Some(rw) = &rule.rewrite {
        let wf = f("rewrite");
        if rw.uri.is_none() && rw.authority.is_none() && rw.uri_regex_rewrite.is_none() {
            c.error(
                &wf,
                "a rewrite needs at least one of `uri`, `authority`, `uriRegexRewrite`",
            );
        }
        if rw.uri.is_some() && rw.uri_regex_rewrite.is_some() {
            c.error(&wf, "set only one of `uri` or `uriRegexRewrite`");
        }
        if let Some(authority) = &rw.authority {
            c.header_value(&join_path(&wf, "authority"), authority);
        }
        if let Some(rr) = &rw.uri_regex_rewrite {
            let rrf = join_path(&wf, "uriRegexRewrite");
            if rr.pattern.is_empty() {
                c.error(&join_path(&rrf, "match"), "`match` is required");
            } else {
                c.regex(&join_path(&rrf, "match"), &rr.pattern);
            }
        }
    }

    if let Some(t) = &rule.timeout {
        // `0s` is Istio's way to disable the timeout.
        c.duration(&f("timeout"), t, true);
    }
    if let Some(r) = &rule.retries {
        retries(c, &f("retries"), r);
    }
    if let Some(fault) = &rule.fault {
        fault_injection(c, &f("fault"), fault);
    }

    if let Some(m) = &rule.mirror {
        destination(c, &f("mirror"), m);
        if !rule.mirrors.is_empty() {
            c.error(&f("mirrors"), "set only one of `mirror` or `mirrors`");
        }
    }
    if let Some(p) = &rule.mirror_percentage {
        if rule.mirror.is_none() {
            c.error(
                &f("mirrorPercentage"),
                "`mirrorPercentage` applies to `mirror`; give each of `mirrors` its own `percentage`",
            );
        }
        c.percentage(&join_path(&f("mirrorPercentage"), "value"), p.value);
    }
    for (i, m) in rule.mirrors.iter().enumerate() {
        let mf = index_path(&f("mirrors"), i);
        match &m.destination {
            Some(d) => destination(c, &join_path(&mf, "destination"), d),
            None => c.error(&join_path(&mf, "destination"), "destination is required"),
        }
        if let Some(p) = &m.percentage {
            c.percentage(&join_path(&join_path(&mf, "percentage"), "value"), p.value);
        }
    }
    if let Some(cors) = &rule.cors_policy {
        cors_policy(c, &f("corsPolicy"), cors);
    }
    if let Some(h) = &rule.headers {
        headers(c, &f("headers"), h);
    }
}

fn http_match(c: &mut Checker<'_>, field: &str, m: &HttpMatchRequest) {
    let f = |name: &str| join_path(field, name);
    for (name, sm) in [
        ("uri", &m.uri),
        ("scheme", &m.scheme),
        ("method", &m.method),
        ("authority", &m.authority),
    ] {
        if let Some(sm) = sm {
            c.string_match(&f(name), sm, false);
        }
    }
    for (group, map) in [
        ("headers", &m.headers),
        ("withoutHeaders", &m.without_headers),
    ] {
        for (name, sm) in map {
            let hf = join_path(&f(group), name);
            c.header_name(&hf, name);
            c.string_match(&hf, sm, true);
        }
    }
    for (name, sm) in &m.query_params {
        let qf = join_path(&f("queryParams"), name);
        if name.is_empty() {
            c.error(&qf, "query parameter name must not be empty");
        }
        if sm.prefix.is_some() {
            c.error(&qf, "query parameters match by `exact` or `regex` only");
        }
        c.string_match(&qf, sm, true);
    }
    if let Some(port) = m.port {
        c.port(&f("port"), port);
    }
    c.labels(&f("sourceLabels"), &m.source_labels);
    if let Some(ns) = &m.source_namespace
        && !host::is_dns1123_label(ns)
    {
        c.error(
            &f("sourceNamespace"),
            format!("`{ns}` is not a namespace name"),
        );
    }
    c.gateway_names(&f("gateways"), &m.gateways);
}

pub(super) fn destination(c: &mut Checker<'_>, field: &str, d: &Destination) {
    let hf = join_path(field, "host");
    if d.host.is_empty() {
        c.error(&hf, "host is required");
    } else if d.host == "*" {
        c.error(&hf, "destination host cannot be `*`");
    } else if let Err(e) = host::validate_wildcard_domain(&d.host) {
        c.error(&hf, e);
    }
    if let Some(subset) = &d.subset
        && !host::is_dns1123_label(subset)
    {
        c.error(
            &join_path(field, "subset"),
            format!("subset name `{subset}` must be a DNS-1123 label"),
        );
    }
    if let Some(p) = &d.port {
        c.port(&join_path(&join_path(field, "port"), "number"), p.number);
    }
}

fn weight(c: &mut Checker<'_>, field: &str, w: u32) {
    if w > 100 {
        c.error(field, format!("weight {w} must be within 0..=100"));
    }
}

/// Weights are relative; several destinations need some weight, and a total other than 100 is
/// legal but usually a slip.
fn weights_total(c: &mut Checker<'_>, field: &str, count: usize, total: u64) {
    if count > 1 {
        if total == 0 {
            c.error(
                field,
                "destinations of a weighted route need a total weight above 0",
            );
        } else if total != 100 {
            c.warn(
                field,
                format!(
                    "destination weights add up to {total}, not 100; traffic is split in proportion"
                ),
            );
        }
    }
}

fn headers(c: &mut Checker<'_>, field: &str, h: &Headers) {
    for (name, ops) in [("request", &h.request), ("response", &h.response)] {
        if let Some(ops) = ops {
            header_operations(c, &join_path(field, name), ops);
        }
    }
}

fn header_operations(c: &mut Checker<'_>, field: &str, ops: &HeaderOperations) {
    for (group, map) in [("set", &ops.set), ("add", &ops.add)] {
        for (name, value) in map {
            let hf = join_path(&join_path(field, group), name);
            c.header_name(&hf, name);
            c.header_value(&hf, value);
        }
    }
    for (i, name) in ops.remove.iter().enumerate() {
        c.header_name(&index_path(&join_path(field, "remove"), i), name);
    }
}

fn retries(c: &mut Checker<'_>, field: &str, r: &HttpRetry) {
    if r.attempts < 0 {
        c.error(&join_path(field, "attempts"), "attempts cannot be negative");
    } else if r.attempts > i64::from(u32::MAX) {
        c.error(&join_path(field, "attempts"), "attempts is too large");
    }
    if r.attempts == 0 && (r.per_try_timeout.is_some() || r.retry_on.is_some()) {
        c.error(
            field,
            "retry settings given while `attempts` is 0 (which disables retries)",
        );
    }
    if let Some(t) = &r.per_try_timeout {
        c.duration(&join_path(field, "perTryTimeout"), t, false);
    }
    if let Some(on) = &r.retry_on {
        for policy in on.split(',').map(str::trim) {
            let numeric = policy
                .parse::<u16>()
                .is_ok_and(|code| (100..=599).contains(&code));
            if !numeric && !RETRY_ON.contains(&policy) {
                c.error(
                    &join_path(field, "retryOn"),
                    format!(
                        "`{policy}` is not a retryOn policy (expected HTTP status codes or {})",
                        RETRY_ON.join(", ")
                    ),
                );
            }
        }
    }
}

fn fault_injection(c: &mut Checker<'_>, field: &str, fault: &HttpFaultInjection) {
    if fault.delay.is_none() && fault.abort.is_none() {
        c.error(field, "a fault needs a `delay`, an `abort` or both");
    }
    if let Some(d) = &fault.delay {
        let df = join_path(field, "delay");
        match &d.fixed_delay {
            Some(t) => {
                c.duration(&join_path(&df, "fixedDelay"), t, false);
            }
            None => c.error(&df, "`fixedDelay` is required"),
        }
        if let Some(p) = &d.percentage {
            c.percentage(&join_path(&join_path(&df, "percentage"), "value"), p.value);
        }
        if let Some(p) = d.percent
            && p > 100
        {
            c.error(
                &join_path(&df, "percent"),
                format!("percent {p} must be within 0..=100"),
            );
        }
    }
    if let Some(a) = &fault.abort {
        let af = join_path(field, "abort");
        match (a.http_status, &a.grpc_status) {
            (Some(_), Some(_)) => c.error(&af, "set only one of `httpStatus` or `grpcStatus`"),
            (None, None) => c.error(&af, "set one of `httpStatus` or `grpcStatus`"),
            (Some(s), None) if !(200..=599).contains(&s) => c.error(
                &join_path(&af, "httpStatus"),
                format!("status {s} must be within 200..=599"),
            ),
            (None, Some(g)) if !GRPC_STATUS.iter().any(|(n, _)| n == g) => c.error(
                &join_path(&af, "grpcStatus"),
                format!("`{g}` is not a gRPC status name (e.g. UNAVAILABLE, DEADLINE_EXCEEDED)"),
            ),
            _ => {}
        }
        if let Some(p) = &a.percentage {
            c.percentage(&join_path(&join_path(&af, "percentage"), "value"), p.value);
        }
    }
}

fn cors_policy(c: &mut Checker<'_>, field: &str, cors: &CorsPolicy) {
    for (i, origin) in cors.allow_origins.iter().enumerate() {
        let of = index_path(&join_path(field, "allowOrigins"), i);
        c.string_match(&of, origin, false);
        let empty = [&origin.exact, &origin.prefix, &origin.regex]
            .iter()
            .any(|v| v.as_deref() == Some(""));
        if empty {
            c.error(&of, "an origin match cannot be empty");
        }
    }
    for (i, origin) in cors.allow_origin.iter().enumerate() {
        if origin.is_empty() {
            c.error(
                &index_path(&join_path(field, "allowOrigin"), i),
                "an origin cannot be empty",
            );
        }
    }
    for (i, method) in cors.allow_methods.iter().enumerate() {
        if !METHODS.contains(&method.as_str()) {
            c.error(
                &index_path(&join_path(field, "allowMethods"), i),
                format!("`{method}` is not an HTTP method"),
            );
        }
    }
    for (group, names) in [
        ("allowHeaders", &cors.allow_headers),
        ("exposeHeaders", &cors.expose_headers),
    ] {
        for (i, name) in names.iter().enumerate() {
            c.header_name(&index_path(&join_path(field, group), i), name);
        }
    }
    if let Some(age) = &cors.max_age {
        let mf = join_path(field, "maxAge");
        if let Some(ms) = c.duration(&mf, age, true)
            && ms % 1000 != 0
        {
            c.error(&mf, "maxAge is counted in whole seconds");
        }
    }
}

fn tcp_route(c: &mut Checker<'_>, field: &str, rule: &TcpRoute) {
    for (i, m) in rule.matches.iter().enumerate() {
        let mf = index_path(&join_path(field, "match"), i);
        for (j, subnet) in m.destination_subnets.iter().enumerate() {
            c.ip_or_cidr(
                &index_path(&join_path(&mf, "destinationSubnets"), j),
                subnet,
            );
        }
        if let Some(port) = m.port {
            c.port(&join_path(&mf, "port"), port);
        }
        c.labels(&join_path(&mf, "sourceLabels"), &m.source_labels);
        if let Some(ns) = &m.source_namespace
            && !host::is_dns1123_label(ns)
        {
            c.error(
                &join_path(&mf, "sourceNamespace"),
                format!("`{ns}` is not a namespace name"),
            );
        }
        c.gateway_names(&join_path(&mf, "gateways"), &m.gateways);
    }
    let rf = join_path(field, "route");
    if rule.route.is_empty() {
        c.error(&rf, "a tcp rule needs at least one route");
    }
    let mut total: u64 = 0;
    for (i, rd) in rule.route.iter().enumerate() {
        let df = index_path(&rf, i);
        match &rd.destination {
            Some(d) => destination(c, &join_path(&df, "destination"), d),
            None => c.error(&join_path(&df, "destination"), "destination is required"),
        }
        if let Some(w) = rd.weight {
            weight(c, &join_path(&df, "weight"), w);
        }
        total += u64::from(rd.weight.unwrap_or(0));
    }
    weights_total(c, &rf, rule.route.len(), total);
}
