//! VirtualService rules -> the proxy's HTTP and TCP routes for one service port.

use super::clusters::Clusters;
use super::scope::{Scope, VsEntry, includes_mesh, labels_match};
use crate::duration::parse_ms;
use crate::model::{
    self, AbortStatus, CorsPolicy, DirectResponse, Fault, FaultAbort, FaultDelay, HeaderMatch,
    HeaderMutation, HeaderOperations, HttpRoute, Mirror, Protocol, QueryParamMatch, Redirect,
    RegexRewrite, RequestMatch, RetryOn, RetryPolicy, Rewrite, RouteAction, TcpMatch, TcpRoute,
    WeightedDestination,
};
use crate::registry::ServicePort;
use crate::resources::{self, Destination, Headers, HttpRetry, L4MatchAttributes};
use std::collections::BTreeMap;

/// HTTP and TCP routes of one virtual host. A port whose protocol is HTTP gets only HTTP routes,
/// a TCP port only TCP routes, an undeclared one (detected at runtime) both. When no VirtualService
/// rule applies, the service's own cluster is the route.
pub(super) fn for_port<'s, 'a>(
    scope: &Scope<'a>,
    clusters: &mut Clusters<'s, 'a>,
    vses: &[&VsEntry<'_>],
    port: &ServicePort,
    own_cluster: &str,
) -> (Vec<HttpRoute>, Vec<model::TcpRoute>) {
    let wants_http = port.protocol != Protocol::Tcp;
    let wants_tcp = !port.protocol.is_http();
    let mut http = Vec::new();
    let mut tcp = Vec::new();
    let mut b = Builder {
        scope,
        clusters,
        port: port.number,
    };
    for entry in vses {
        if wants_http {
            for (i, rule) in entry.vs.http.iter().enumerate() {
                if let Some(route) = b.http_route(entry, i, rule) {
                    http.push(route);
                }
            }
        }
        if wants_tcp {
            for rule in &entry.vs.tcp {
                if let Some(route) = b.tcp_route(entry, rule) {
                    tcp.push(route);
                }
            }
        }
    }
    if wants_http && http.is_empty() {
        http.push(HttpRoute {
            name: "default".to_string(),
            action: RouteAction::Forward(vec![WeightedDestination {
                cluster: own_cluster.to_string(),
                weight: 100,
                headers: HeaderOperations::default(),
            }]),
            retries: Some(default_retry_policy()),
            ..HttpRoute::default()
        });
    }
    if wants_tcp && tcp.is_empty() {
        tcp.push(TcpRoute {
            matches: Vec::new(),
            destinations: vec![WeightedDestination {
                cluster: own_cluster.to_string(),
                weight: 100,
                headers: HeaderOperations::default(),
            }],
        });
    }
    (http, tcp)
}

struct Builder<'b, 's, 'a> {
    scope: &'b Scope<'a>,
    clusters: &'b mut Clusters<'s, 'a>,
    port: u16,
}

impl Builder<'_, '_, '_> {
    /// Whether a match block applies to this proxy and port: its gateways (or the
    /// VirtualService's) include the mesh, its source labels and namespace are this proxy's, and
    /// its port is this one.
    fn match_applies(
        &self,
        vs_gateways: &[String],
        gateways: &[String],
        source_labels: &BTreeMap<String, String>,
        source_namespace: Option<&str>,
        port: Option<u32>,
    ) -> bool {
        let gateways = if gateways.is_empty() {
            vs_gateways
        } else {
            gateways
        };
        includes_mesh(gateways)
            && labels_match(source_labels, &self.scope.node.labels)
            && source_namespace.is_none_or(|ns| ns == self.scope.namespace())
            && port.is_none_or(|p| p == u32::from(self.port))
    }

    fn http_route(
        &mut self,
        entry: &VsEntry<'_>,
        index: usize,
        rule: &resources::HttpRoute,
    ) -> Option<HttpRoute> {
        let vs_gateways = &entry.vs.gateways;
        let matches = if rule.matches.is_empty() {
            if !includes_mesh(vs_gateways) {
                return None;
            }
            Vec::new()
        } else {
            let kept: Vec<RequestMatch> = rule
                .matches
                .iter()
                .filter(|m| {
                    self.match_applies(
                        vs_gateways,
                        &m.gateways,
                        &m.source_labels,
                        m.source_namespace.as_deref(),
                        m.port,
                    )
                })
                .map(request_match)
                .collect();
            if kept.is_empty() {
                return None;
            }
            kept
        };

        let action = if let Some(r) = &rule.redirect {
            RouteAction::Redirect(Redirect {
                uri: r.uri.clone(),
                authority: r.authority.clone(),
                port: r.port.and_then(|p| u16::try_from(p).ok()),
                scheme: r.scheme.clone(),
                code: r
                    .redirect_code
                    .and_then(|c| u16::try_from(c).ok())
                    .unwrap_or(301),
            })
        } else if let Some(d) = &rule.direct_response {
            RouteAction::DirectResponse(DirectResponse {
                status: u16::try_from(d.status).unwrap_or(500),
                body: d.body.as_ref().and_then(|b| match (&b.string, &b.bytes) {
                    (Some(s), _) => Some(s.clone().into_bytes()),
                    (None, Some(b)) => crate::validate::decode_base64(b),
                    (None, None) => None,
                }),
            })
        } else {
            let single = rule.route.len() == 1;
            RouteAction::Forward(
                rule.route
                    .iter()
                    .filter_map(|rd| {
                        let dest = rd.destination.as_ref()?;
                        Some(WeightedDestination {
                            cluster: self.cluster_for(dest, entry.namespace),
                            weight: if single { 100 } else { rd.weight.unwrap_or(0) },
                            headers: header_operations(rd.headers.as_ref()),
                        })
                    })
                    .collect(),
            )
        };

        let mut mirrors = Vec::new();
        if let Some(dest) = &rule.mirror {
            mirrors.push(Mirror {
                cluster: self.cluster_for(dest, entry.namespace),
                percentage: rule.mirror_percentage.as_ref().map_or(100.0, |p| p.value),
            });
        }
        for m in &rule.mirrors {
            if let Some(dest) = &m.destination {
                mirrors.push(Mirror {
                    cluster: self.cluster_for(dest, entry.namespace),
                    percentage: m.percentage.as_ref().map_or(100.0, |p| p.value),
                });
            }
        }

        let retries = if matches!(action, RouteAction::Forward(_)) {
            retry_policy(rule.retries.as_ref())
        } else {
            None
        };
        Some(HttpRoute {
            name: rule
                .name
                .clone()
                .unwrap_or_else(|| format!("{}/{}[{index}]", entry.namespace, entry.name)),
            matches,
            action,
            rewrite: rule.rewrite.as_ref().map(|r| Rewrite {
                uri: r.uri.clone(),
                authority: r.authority.clone(),
                uri_regex: r.uri_regex_rewrite.as_ref().map(|rr| RegexRewrite {
                    pattern: rr.pattern.clone(),
                    replacement: rr.rewrite.clone(),
                }),
            }),
            headers: header_operations(rule.headers.as_ref()),
            // `0s` disables the timeout, as does leaving it out.
            timeout_ms: rule
                .timeout
                .as_deref()
                .and_then(|t| parse_ms(t).ok())
                .filter(|ms| *ms > 0),
            // Retries only mean something for forwarded requests.
            retries,
            fault: rule.fault.as_ref().map(|f| Fault {
                delay: f.delay.as_ref().and_then(|d| {
                    Some(FaultDelay {
                        fixed_delay_ms: parse_ms(d.fixed_delay.as_deref()?).ok()?,
                        percentage: percentage(d.percentage.as_ref(), d.percent),
                    })
                }),
                abort: f.abort.as_ref().and_then(|a| {
                    let status = match (a.http_status, &a.grpc_status) {
                        (Some(s), _) => AbortStatus::Http(u16::try_from(s).ok()?),
                        (None, Some(name)) => AbortStatus::Grpc(grpc_code(name)?),
                        (None, None) => return None,
                    };
                    Some(FaultAbort {
                        status,
                        percentage: percentage(a.percentage.as_ref(), None),
                    })
                }),
            }),
            mirrors,
            cors: rule.cors_policy.as_ref().map(cors_policy),
        })
    }

    fn tcp_route(&mut self, entry: &VsEntry<'_>, rule: &resources::TcpRoute) -> Option<TcpRoute> {
        let vs_gateways = &entry.vs.gateways;
        let matches = if rule.matches.is_empty() {
            if !includes_mesh(vs_gateways) {
                return None;
            }
            Vec::new()
        } else {
            let kept: Vec<TcpMatch> = rule
                .matches
                .iter()
                .filter(|m: &&L4MatchAttributes| {
                    self.match_applies(
                        vs_gateways,
                        &m.gateways,
                        &m.source_labels,
                        m.source_namespace.as_deref(),
                        m.port,
                    )
                })
                .map(|m| TcpMatch {
                    port: None,
                    destination_subnets: m.destination_subnets.clone(),
                })
                .collect();
            if kept.is_empty() {
                return None;
            }
            kept
        };
        let single = rule.route.len() == 1;
        let destinations = rule
            .route
            .iter()
            .filter_map(|rd| {
                let dest = rd.destination.as_ref()?;
                Some(WeightedDestination {
                    cluster: self.cluster_for(dest, entry.namespace),
                    weight: if single { 100 } else { rd.weight.unwrap_or(0) },
                    headers: HeaderOperations::default(),
                })
            })
            .collect();
        Some(TcpRoute {
            matches,
            destinations,
        })
    }

    /// The cluster a destination names. Its host resolves in the VirtualService's namespace; a
    /// destination without port uses the target service's only port, else this virtual host's.
    fn cluster_for(&mut self, dest: &Destination, vs_namespace: &str) -> String {
        let host = crate::host::resolve(&dest.host, vs_namespace);
        let port = dest
            .port
            .as_ref()
            .and_then(|p| u16::try_from(p.number).ok())
            .or_else(|| {
                let svc = self.clusters.service(&host)?;
                match svc.ports.as_slice() {
                    [only] => Some(only.number),
                    _ => None,
                }
            })
            .unwrap_or(self.port);
        self.clusters.ensure(&host, port, dest.subset.as_deref())
    }
}

fn string_match(m: &resources::StringMatch) -> Option<model::StringMatch> {
    if let Some(v) = &m.exact {
        Some(model::StringMatch::Exact(v.clone()))
    } else if let Some(v) = &m.prefix {
        Some(model::StringMatch::Prefix(v.clone()))
    } else {
        m.regex
            .as_ref()
            .map(|v| model::StringMatch::Regex(v.clone()))
    }
}

fn request_match(m: &resources::HttpMatchRequest) -> RequestMatch {
    let headers = |map: &BTreeMap<String, resources::StringMatch>| {
        map.iter()
            .map(|(name, sm)| HeaderMatch {
                name: name.to_ascii_lowercase(),
                value: string_match(sm),
            })
            .collect()
    };
    RequestMatch {
        name: m.name.clone(),
        uri: m.uri.as_ref().and_then(string_match),
        scheme: m.scheme.as_ref().and_then(string_match),
        method: m.method.as_ref().and_then(string_match),
        authority: m.authority.as_ref().and_then(string_match),
        headers: headers(&m.headers),
        without_headers: headers(&m.without_headers),
        query_params: m
            .query_params
            .iter()
            .map(|(name, sm)| QueryParamMatch {
                name: name.clone(),
                value: string_match(sm),
            })
            .collect(),
        // The virtual host is already this port's; matching on it again would misfire when a
        // client reaches the default port without naming it.
        port: None,
        ignore_uri_case: m.ignore_uri_case,
    }
}

fn header_operations(headers: Option<&Headers>) -> HeaderOperations {
    let mutation = |ops: Option<&resources::HeaderOperations>| {
        ops.map(|o| HeaderMutation {
            set: o
                .set
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect(),
            add: o
                .add
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect(),
            remove: o.remove.iter().map(|k| k.to_ascii_lowercase()).collect(),
        })
        .unwrap_or_default()
    };
    HeaderOperations {
        request: mutation(headers.and_then(|h| h.request.as_ref())),
        response: mutation(headers.and_then(|h| h.response.as_ref())),
    }
}

/// `percentage.value`, else the deprecated integer `percent`, else Istio's default of 100.
fn percentage(p: Option<&resources::Percent>, percent: Option<u32>) -> f64 {
    match (p, percent) {
        (Some(p), _) => p.value,
        (None, Some(v)) => f64::from(v.min(100)),
        (None, None) => 100.0,
    }
}

fn grpc_code(name: &str) -> Option<u32> {
    crate::validate::GRPC_STATUS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, c)| *c)
}

/// Istio's default for routes that do not say: 2 retries on connect failure, refused stream, gRPC
/// unavailable/cancelled and HTTP 503.
pub fn default_retry_policy() -> RetryPolicy {
    RetryPolicy {
        attempts: 2,
        per_try_timeout_ms: None,
        retry_on: parse_retry_on(
            "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes,503",
        ),
    }
}

fn retry_policy(retries: Option<&HttpRetry>) -> Option<RetryPolicy> {
    let Some(r) = retries else {
        return Some(default_retry_policy());
    };
    let attempts = u32::try_from(r.attempts).ok().filter(|a| *a > 0)?;
    Some(RetryPolicy {
        attempts,
        per_try_timeout_ms: r.per_try_timeout.as_deref().and_then(|t| parse_ms(t).ok()),
        retry_on: match r.retry_on.as_deref() {
            Some(on) if !on.trim().is_empty() => parse_retry_on(on),
            _ => default_retry_policy().retry_on,
        },
    })
}

/// Parses Istio's comma-separated `retryOn` into flags, HTTP status codes and gRPC codes.
pub fn parse_retry_on(text: &str) -> RetryOn {
    let mut on = RetryOn::default();
    for token in text.split(',').map(str::trim) {
        match token {
            "5xx" => on.five_xx = true,
            "gateway-error" => on.gateway_error = true,
            "connect-failure" => on.connect_failure = true,
            "reset" => on.reset = true,
            "refused-stream" => on.refused_stream = true,
            "retriable-4xx" => on.retriable_4xx = true,
            "cancelled" => on.grpc_codes.push(1),
            "deadline-exceeded" => on.grpc_codes.push(4),
            "resource-exhausted" => on.grpc_codes.push(8),
            "internal" => on.grpc_codes.push(13),
            "unavailable" => on.grpc_codes.push(14),
            other => {
                if let Ok(code) = other.parse::<u16>() {
                    on.status_codes.push(code);
                }
            }
        }
    }
    on.status_codes.sort_unstable();
    on.status_codes.dedup();
    on.grpc_codes.sort_unstable();
    on.grpc_codes.dedup();
    on
}

fn cors_policy(c: &resources::CorsPolicy) -> CorsPolicy {
    // Envoy treats the origin `*` as "any origin"; say so explicitly for the proxy.
    let any = |m: model::StringMatch| match m {
        model::StringMatch::Exact(s) if s == "*" => model::StringMatch::Prefix(String::new()),
        other => other,
    };
    let mut allow_origins: Vec<model::StringMatch> = c
        .allow_origins
        .iter()
        .filter_map(string_match)
        .map(any)
        .collect();
    allow_origins.extend(
        c.allow_origin
            .iter()
            .map(|o| any(model::StringMatch::Exact(o.clone()))),
    );
    CorsPolicy {
        allow_origins,
        allow_methods: c.allow_methods.clone(),
        allow_headers: c.allow_headers.clone(),
        expose_headers: c.expose_headers.clone(),
        max_age_secs: c
            .max_age
            .as_deref()
            .and_then(|t| parse_ms(t).ok())
            .map(|ms| ms / 1000),
        allow_credentials: c.allow_credentials,
    }
}
