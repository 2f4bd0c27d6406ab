//! The HTTP request path, top to bottom: route the request, apply the rule's filters, pick a
//! cluster and an endpoint, send with retries and timeouts, and report what happened.

use crate::body::{self, ProxyBody};
use crate::cluster::breaker::{Admission, RetrySlot};
use crate::cluster::outlier::Outcome;
use crate::cluster::{ActiveRequest, ClusterRuntime};
use crate::endpoint::{MeshPeer, UpstreamProtocol, Wire};
use crate::identity::WorkloadIdentity;
use crate::ratelimit::{Limiter, Verdict};
use crate::replay::Recording;
use crate::route::filters::HeaderRules;
use crate::route::matcher::RequestView;
use crate::route::retry::{self, Attempt};
use crate::route::{Action, Route, split_authority};
use crate::server::{ConnInfo, Proxy};
use crate::telemetry::ResponseFlags;
use crate::telemetry::peer;
use crate::telemetry::record::{BodyMeter, Direction, RecordedBody, RequestRecord, grpc_status};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::Body;
use hyper::body::Incoming;
use std::sync::Arc;
use std::time::{Duration, Instant};
use trellis_api::model::{AbortStatus, HashKey, OutboundTrafficPolicy};
use xxhash_rust::xxh64::xxh64;

/// Slots a forwarded request holds until its response body ends.
pub struct InFlight {
    _active: ActiveRequest,
    _admission: Admission,
    _retry: Option<RetrySlot>,
}

/// A response and what it holds while its body streams.
struct Reply {
    response: Response<ProxyBody>,
    in_flight: Option<InFlight>,
}

impl From<Response<ProxyBody>> for Reply {
    fn from(response: Response<ProxyBody>) -> Reply {
        Reply {
            response,
            in_flight: None,
        }
    }
}

/// Serves one request from a client.
pub async fn handle(
    proxy: &Arc<Proxy>,
    info: &ConnInfo,
    mut req: Request<Incoming>,
) -> Response<RecordedBody> {
    let mut rec = RequestRecord::new(info.direction, protocol_name(req.version()));
    rec.downstream_remote = Some(info.peer);
    rec.downstream_local = Some(info.local);
    rec.peer_principal = info.peer_identity.clone();
    rec.local_principal = info.local_identity.clone();
    rec.method = Some(req.method().clone());
    rec.path = req.uri().path_and_query().cloned();
    rec.authority = request_authority(&req).unwrap_or_default().to_string();
    rec.user_agent = req.headers().get(header::USER_AGENT).cloned();
    rec.request_id = Some(ensure_request_id(req.headers_mut()));
    rec.bytes_received = req.body().size_hint().exact().unwrap_or(0);
    proxy
        .telemetry
        .on_request(info.direction, req.headers_mut(), &mut rec);
    let grpc = is_grpc(req.headers());
    rec.grpc = grpc;
    let mut reply = match info.direction {
        Direction::Outbound => outbound(proxy, info, req, &mut rec, grpc).await,
        Direction::Inbound => inbound(proxy, info, req, &mut rec, grpc).await,
    };
    proxy
        .telemetry
        .on_response(info.direction, reply.response.headers_mut(), &mut rec);
    rec.status = reply.response.status().as_u16();
    if grpc {
        rec.grpc_status = grpc_status(reply.response.headers());
    }
    let (parts, body) = reply.response.into_parts();
    Response::from_parts(
        parts,
        RecordedBody::new(body, rec, proxy.telemetry.sinks.clone(), reply.in_flight),
    )
}

async fn outbound(
    proxy: &Arc<Proxy>,
    info: &ConnInfo,
    req: Request<Incoming>,
    rec: &mut RequestRecord,
    grpc: bool,
) -> Reply {
    let snapshot = proxy.store.load();
    let authority = request_authority(&req)
        .unwrap_or_default()
        .to_ascii_lowercase();
    let (host, explicit_port) = split_authority(&authority);
    let port = explicit_port.or(info.orig_dst.map(|d| d.port()));
    let vhost = snapshot
        .routes
        .by_authority(host, port)
        .or_else(|| info.orig_dst.and_then(|d| snapshot.routes.by_address(d)));
    let Some(vhost) = vhost else {
        return match info.orig_dst {
            Some(dst)
                if snapshot.config.outbound_traffic_policy == OutboundTrafficPolicy::AllowAny
                    && !proxy.own_addresses.contains(&dst) =>
            {
                rec.upstream_cluster = Some(Arc::from("PassthroughCluster"));
                let cluster = passthrough_cluster(proxy, dst);
                let target = Target::whole(&cluster);
                Box::pin(send(req, rec, target, grpc, &authority, &proxy.identity)).await
            }
            Some(_) => {
                rec.upstream_cluster = Some(Arc::from("BlackHoleCluster"));
                local_reply(
                    rec,
                    StatusCode::BAD_GATEWAY,
                    ResponseFlags::NO_ROUTE,
                    "route_not_found",
                    "destination is not in the mesh registry (outboundTrafficPolicy REGISTRY_ONLY)",
                    grpc,
                )
            }
            None => local_reply(
                rec,
                StatusCode::NOT_FOUND,
                ResponseFlags::NO_ROUTE,
                "route_not_found",
                &format!("no route: no service known for host {authority:?}"),
                grpc,
            ),
        };
    };
    let path = req.uri().path();
    let view = RequestView {
        method: req.method().as_str(),
        path,
        query: req.uri().query(),
        scheme: req.uri().scheme_str().unwrap_or("http"),
        authority: &authority,
        headers: req.headers(),
        port: port.unwrap_or(vhost.port),
    };
    let Some(matched) = vhost.match_http(&view) else {
        return local_reply(
            rec,
            StatusCode::NOT_FOUND,
            ResponseFlags::NO_ROUTE,
            "route_not_found",
            &format!("no route: no rule of {} matched the request", vhost.name),
            grpc,
        );
    };
    let route = matched.route;
    rec.route_name = Some(route.name.clone());
    if let Some(cors) = &route.cors
        && let Some(resp) = cors.preflight(req.method(), req.headers())
    {
        return resp.into();
    }
    let cors_origin = route
        .cors
        .as_ref()
        .and_then(|c| c.allowed_origin(req.headers()).cloned());
    // Envoy's order: CORS answers preflights, then the route's local rate limit, then the rest.
    let limiter = snapshot.rate_limits.route(&vhost.name, &route.name);
    let allowed = match take_token(limiter, rec, grpc) {
        Ok(allowed) => allowed,
        Err(limited) => return *limited,
    };
    let mut reply = match &route.action {
        Action::Direct { status, body } => {
            let mut resp = Response::new(body::full(body.clone()));
            *resp.status_mut() = *status;
            resp.into()
        }
        Action::Redirect(r) => {
            let scheme = req.uri().scheme_str().unwrap_or("http");
            let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
            crate::route::filters::redirect(r, scheme, host, explicit_port, pq).into()
        }
        Action::Forward(destinations) => {
            let Some((cluster, dest_headers)) = destinations.pick() else {
                return local_reply(
                    rec,
                    StatusCode::SERVICE_UNAVAILABLE,
                    ResponseFlags::NO_CLUSTER_FOUND,
                    "cluster_not_found",
                    "no cluster for route",
                    grpc,
                );
            };
            rec.upstream_cluster = Some(cluster.name.clone());
            if let Some(reply) = inject_faults(route, rec, grpc).await {
                return reply;
            }
            let mut req = req;
            let hash = cluster.uses_hash().map(|key| hash_key(key, &req, info));
            let target = Target {
                cluster,
                route: Some((route, matched.prefix)),
                dest_headers: Some(dest_headers),
                hash: hash.as_ref().and_then(|h| h.0),
                app_speaks_http1: false,
            };
            if let Some(r) = &route.rewrite {
                rewrite(&mut req, r, matched.prefix);
            }
            let mut reply =
                Box::pin(send(req, rec, target, grpc, &authority, &proxy.identity)).await;
            if let Some((_, Some(cookie))) = hash {
                reply
                    .response
                    .headers_mut()
                    .append(header::SET_COOKIE, cookie);
            }
            dest_headers.response.apply(reply.response.headers_mut());
            reply
        }
    };
    route.headers.response.apply(reply.response.headers_mut());
    if let Some(cors) = &route.cors {
        cors.decorate(cors_origin, reply.response.headers_mut());
    }
    if let Some((limiter, verdict)) = allowed {
        limiter.write_headers(verdict, reply.response.headers_mut());
    }
    reply
}

async fn inbound(
    proxy: &Arc<Proxy>,
    info: &ConnInfo,
    req: Request<Incoming>,
    rec: &mut RequestRecord,
    grpc: bool,
) -> Reply {
    let Some(port) = proxy.inbound.port_for(info) else {
        return local_reply(
            rec,
            StatusCode::SERVICE_UNAVAILABLE,
            ResponseFlags::NO_ROUTE,
            "no_application_port",
            "no application port configured for inbound traffic",
            grpc,
        );
    };
    let cluster = proxy.inbound.cluster(port);
    rec.upstream_cluster = Some(cluster.name.clone());
    let authority = request_authority(&req).unwrap_or_default().to_string();
    let snapshot = proxy.store.load();
    // Istio's inbound chain runs RBAC (AuthorizationPolicy) before the local rate limit, so a
    // denied request never spends a token.
    let policies = &snapshot.config.authorization;
    if let Some(denied) = authorize(proxy, policies, info, &req, rec, port, &authority) {
        return denied;
    }
    let allowed = match take_token(snapshot.rate_limits.inbound(), rec, grpc) {
        Ok(allowed) => allowed,
        Err(limited) => return *limited,
    };
    let target = Target {
        app_speaks_http1: info.app_speaks_http1,
        ..Target::whole(&cluster)
    };
    let mut reply = Box::pin(send(req, rec, target, grpc, &authority, &proxy.identity)).await;
    if let Some((limiter, verdict)) = allowed {
        limiter.write_headers(verdict, reply.response.headers_mut());
    }
    reply
}

/// Envoy's HTTP local rate limit: takes a token from `limiter` (the verdict, for the
/// `x-ratelimit-*` headers of the response), or answers 429 `local_rate_limited` with flag RL and
/// those headers; gRPC requests get RESOURCE_EXHAUSTED (Envoy's `rate_limited_as_resource_exhausted`).
fn take_token<'l>(
    limiter: Option<&'l Limiter>,
    rec: &mut RequestRecord,
    grpc: bool,
) -> Result<Option<(&'l Limiter, Verdict)>, Box<Reply>> {
    let Some(limiter) = limiter else {
        return Ok(None);
    };
    let verdict = limiter.check(Instant::now());
    if let Verdict::Allowed { .. } = verdict {
        return Ok(Some((limiter, verdict)));
    }
    const BODY: &str = "local_rate_limited";
    rec.flags.insert(ResponseFlags::RATE_LIMITED);
    rec.details = BODY;
    let mut response = if grpc {
        grpc_reply(GRPC_RESOURCE_EXHAUSTED, BODY)
    } else {
        text_reply(StatusCode::TOO_MANY_REQUESTS, BODY)
    };
    limiter.write_headers(verdict, response.headers_mut());
    Err(Box::new(response.into()))
}

const GRPC_RESOURCE_EXHAUSTED: u32 = 8;

/// Applies this workload's AuthorizationPolicies to an inbound request; the 403 reply (Envoy's
/// RBAC filter's, `RBAC: access denied`) when they deny it.
fn authorize(
    proxy: &Proxy,
    policies: &crate::authz::PolicySet,
    info: &ConnInfo,
    req: &Request<Incoming>,
    rec: &mut RequestRecord,
    port: u16,
    authority: &str,
) -> Option<Reply> {
    use crate::authz::{Headers, Protocol, RequestAttributes};
    if policies.is_empty() {
        return None;
    }
    let headers = Headers(req.headers());
    let attributes = RequestAttributes {
        protocol: Protocol::Http,
        peer_principal: rec.peer_principal.as_deref(),
        host: Some(authority),
        method: Some(req.method().as_str()),
        path: Some(req.uri().path()),
        headers: &headers,
        ..RequestAttributes::new(
            info.peer.ip(),
            info.orig_dst.unwrap_or(info.local).ip(),
            port,
        )
    };
    let decision = policies.evaluate(&attributes);
    if !proxy.denials.denied(&decision) {
        return None;
    }
    let grpc = rec.grpc;
    Some(local_reply(
        rec,
        StatusCode::FORBIDDEN,
        ResponseFlags::NONE,
        "rbac_access_denied",
        crate::authz::DENIED_BODY,
        grpc,
    ))
}

impl<'a> Target<'a> {
    /// The whole cluster, under no rule (inbound and passthrough traffic).
    fn whole(cluster: &'a Arc<ClusterRuntime>) -> Target<'a> {
        Target {
            cluster,
            route: None,
            dest_headers: None,
            hash: None,
            app_speaks_http1: false,
        }
    }
}

/// Where a request is going and under which rule.
struct Target<'a> {
    cluster: &'a Arc<ClusterRuntime>,
    /// The rule and the uri prefix it matched by; `None` for inbound and passthrough traffic.
    route: Option<(&'a Route, Option<&'a str>)>,
    dest_headers: Option<&'a HeaderRules>,
    hash: Option<u64>,
    /// The request came multiplexed over HTTP/2 from another proxy, but the application speaks
    /// HTTP/1.1 (see [`ConnInfo::app_speaks_http1`]).
    app_speaks_http1: bool,
}

/// Fault injection: a delay, then perhaps an abort.
async fn inject_faults(route: &Route, rec: &mut RequestRecord, grpc: bool) -> Option<Reply> {
    let fault = route.fault.as_ref()?;
    if let Some(delay) = &fault.delay
        && roll(delay.percentage)
    {
        rec.flags.insert(ResponseFlags::DELAY_INJECTED);
        tokio::time::sleep(Duration::from_millis(delay.fixed_delay_ms)).await;
    }
    let abort = fault.abort.as_ref().filter(|a| roll(a.percentage))?;
    rec.flags.insert(ResponseFlags::FAULT_INJECTED);
    rec.details = "fault_filter_abort";
    Some(
        match abort.status {
            AbortStatus::Http(code) => {
                let status = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                if grpc {
                    grpc_reply(grpc_code_for(status), "fault filter abort")
                } else {
                    text_reply(status, "fault filter abort")
                }
            }
            AbortStatus::Grpc(code) => grpc_reply(code, "fault filter abort"),
        }
        .into(),
    )
}

fn roll(percentage: f64) -> bool {
    percentage >= 100.0 || (percentage > 0.0 && fastrand::f64() * 100.0 < percentage)
}

fn rewrite(req: &mut Request<Incoming>, rw: &crate::route::filters::Rewrite, prefix: Option<&str>) {
    if let Some(path) = rw.path(req.uri().path(), prefix) {
        let pq = match req.uri().query() {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        let mut parts = req.uri().clone().into_parts();
        if let Ok(pq) = pq.parse() {
            parts.path_and_query = Some(pq);
            if let Ok(uri) = http::Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }
    if let Some(authority) = &rw.authority {
        req.headers_mut().insert(header::HOST, authority.clone());
        if req.uri().authority().is_some() {
            let mut parts = req.uri().clone().into_parts();
            if let Ok(a) = authority.to_str().unwrap_or_default().parse() {
                parts.authority = Some(a);
                if let Ok(uri) = http::Uri::from_parts(parts) {
                    *req.uri_mut() = uri;
                }
            }
        }
    }
}

/// The request as it will be sent upstream, rebuilt for each attempt.
struct Template {
    method: Method,
    authority: String,
    path_and_query: http::uri::PathAndQuery,
    headers: HeaderMap,
}

impl Template {
    /// The request for one attempt, in `wire`'s form, and the wire it goes on: HTTP/1.1 to the
    /// application is sent as HTTP/1.1 after all when its authority cannot be an HTTP/2 one.
    /// `last_use`: nothing will build from this template again (no retry or mirror can
    /// follow), so its headers are moved rather than copied.
    fn build(&mut self, body: ProxyBody, wire: Wire, last_use: bool) -> (Request<ProxyBody>, Wire) {
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        let mut headers = if last_use {
            std::mem::take(&mut self.headers)
        } else {
            self.headers.clone()
        };
        let h2_uri = match wire {
            Wire::Http1 => None,
            Wire::Http1OverH2 | Wire::Http2 => self.h2_uri(),
        };
        let wire = match (wire, &h2_uri) {
            (Wire::Http1OverH2, None) => Wire::Http1,
            (wire, _) => wire,
        };
        if wire == Wire::Http1 {
            *req.uri_mut() = http::Uri::from(self.path_and_query.clone());
            if !headers.contains_key(header::HOST)
                && let Ok(host) = HeaderValue::from_str(&self.authority)
            {
                headers.insert(header::HOST, host);
            }
        } else {
            *req.version_mut() = Version::HTTP_2;
            *req.uri_mut() = h2_uri.unwrap_or_else(|| http::Uri::from_static("/"));
            headers.remove(header::HOST);
        }
        *req.headers_mut() = headers;
        (req, wire)
    }

    /// The absolute URI HTTP/2 carries the authority in; `None` when the authority is not one.
    fn h2_uri(&self) -> Option<http::Uri> {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(http::uri::Scheme::HTTP);
        parts.authority = Some(http::uri::Authority::try_from(self.authority.as_str()).ok()?);
        parts.path_and_query = Some(self.path_and_query.clone());
        http::Uri::from_parts(parts).ok()
    }
}

/// Sends the request to the target's cluster with the rule's retries and timeouts.
async fn send(
    mut req: Request<Incoming>,
    rec: &mut RequestRecord,
    target: Target<'_>,
    grpc: bool,
    authority: &str,
    identity: &WorkloadIdentity,
) -> Reply {
    let route = target.route.map(|(r, _)| r);
    let upgrade = is_upgrade(&req);
    let on_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let downstream_h2 = req.version() == Version::HTTP_2 && !target.app_speaks_http1;
    let protocol = if upgrade {
        UpstreamProtocol::Http1
    } else {
        target.cluster.upstream_protocol(downstream_h2)
    };
    let (parts, incoming) = req.into_parts();
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers, upgrade);
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
    if let Some(r) = route {
        r.headers.request.apply(&mut headers);
    }
    if let Some(d) = target.dest_headers {
        d.request.apply(&mut headers);
    }
    if rec.reported && rec.direction == Direction::Outbound {
        // The next proxy learns which service this was; traffic leaving the mesh
        // (passthrough) carries no workload metadata.
        peer::set_destination_service(&mut headers, target.cluster.peer_service.as_ref());
    }
    let authority = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_else(|| authority.to_string());
    let mut template = Template {
        method: parts.method,
        authority,
        path_and_query: parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
        headers,
    };
    let policy = route.and_then(|r| r.retries.as_ref()).filter(|_| !upgrade);
    let mirrors = route.map(|r| r.mirrors.as_slice()).unwrap_or_default();
    let empty_body = incoming.is_end_stream();
    let recording = (!empty_body && (policy.is_some() || !mirrors.is_empty())).then(Recording::new);
    let first_body = match &recording {
        Some(r) => r.tee(incoming),
        None => body::boxed(incoming),
    };
    // Counts what the client sends (bytes, gRPC messages) as the first attempt streams it.
    let mut first_body = Some(if empty_body || !rec.reported {
        first_body
    } else {
        let meter = Arc::new(BodyMeter::default());
        rec.request_body = Some(meter.clone());
        meter.wrap(first_body, grpc)
    });
    let next_body = |first: &mut Option<ProxyBody>| -> Option<ProxyBody> {
        if let Some(b) = first.take() {
            return Some(b);
        }
        if empty_body {
            return Some(body::empty());
        }
        recording.as_ref().and_then(|r| r.replay())
    };

    let attempts = async {
        let max_attempts = 1 + policy.map_or(0, |p| p.attempts);
        let per_try = policy
            .and_then(|p| p.per_try_timeout_ms)
            .map(Duration::from_millis);
        let mut retry_slot: Option<RetrySlot> = None;
        let mut attempt = 0;
        let mut tried = Vec::new();
        loop {
            attempt += 1;
            rec.attempts = attempt;
            let picked = if tried.is_empty() {
                target.cluster.pick(target.hash)
            } else {
                target.cluster.pick_avoiding(target.hash, &tried)
            };
            let Some((ep, active)) = picked else {
                return local_reply(
                    rec,
                    StatusCode::SERVICE_UNAVAILABLE,
                    ResponseFlags::NO_HEALTHY_UPSTREAM,
                    "no_healthy_upstream",
                    "no healthy upstream",
                    grpc,
                );
            };
            rec.upstream_host = Some(ep.display.clone());
            let Ok(admission) = target
                .cluster
                .breakers
                .admit(protocol == UpstreamProtocol::Http1)
                .await
            else {
                return local_reply(
                    rec,
                    StatusCode::SERVICE_UNAVAILABLE,
                    ResponseFlags::UPSTREAM_OVERFLOW,
                    "upstream_reset_before_response_started{overflow}",
                    "upstream connect error or disconnect/reset before headers. reset reason: overflow",
                    grpc,
                );
            };
            let Some(body) = next_body(&mut first_body) else {
                return local_reply(
                    rec,
                    StatusCode::SERVICE_UNAVAILABLE,
                    ResponseFlags::UPSTREAM_RESET,
                    "request_body_not_replayable",
                    "request body could not be replayed for a retry",
                    grpc,
                );
            };
            let sent_at = Instant::now();
            let last_use = attempt >= max_attempts && mirrors.is_empty();
            let wire = ep
                .pool
                .wire(protocol, &template.method, &template.headers, identity);
            let (request, wire) = template.build(body, wire, last_use);
            let exchange = ep.pool.send(request, wire, identity);
            let result = match per_try {
                Some(t) => tokio::time::timeout(t, exchange).await.ok(),
                None => Some(exchange.await),
            };
            let outcome = match &result {
                Some(Ok(resp)) if resp.status().is_server_error() => {
                    Outcome::ServerError(resp.status().as_u16())
                }
                Some(Ok(_)) => Outcome::Success,
                Some(Err(_)) | None => Outcome::LocalFailure,
            };
            target.cluster.report(&ep, outcome);
            let verdict = match &result {
                Some(Ok(resp)) => Attempt::Response(resp.status(), resp.headers()),
                Some(Err(e)) => Attempt::Failed(e),
                None => Attempt::TimedOut,
            };
            let retriable = policy.is_some_and(|p| retry::should_retry(&p.retry_on, &verdict));
            if retriable
                && attempt < max_attempts
                && (empty_body || recording.as_ref().is_some_and(|r| r.replayable()))
                && let Some(slot) = target.cluster.breakers.retry()
            {
                retry_slot = Some(slot);
                tried.push(ep);
                drop(result);
                tokio::time::sleep(retry::backoff(attempt - 1)).await;
                continue;
            }
            if retriable && max_attempts > 1 {
                rec.flags
                    .insert(ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED);
            }
            return match result {
                Some(Ok(mut resp)) => {
                    rec.upstream_service_time_ms = Some(sent_at.elapsed().as_millis() as u64);
                    if let Some(mesh) = resp.extensions().get::<MeshPeer>() {
                        // Mutual TLS to the next proxy: both identities, as verified.
                        rec.local_principal = Some(mesh.local.clone());
                        rec.peer_principal = Some(mesh.peer.clone());
                    }
                    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                        if let Some(down) = on_upgrade {
                            splice_upgrade(down, hyper::upgrade::on(&mut resp));
                        }
                    } else {
                        strip_hop_by_hop(resp.headers_mut(), false);
                    }
                    Reply {
                        response: resp,
                        in_flight: Some(InFlight {
                            _active: active,
                            _admission: admission,
                            _retry: retry_slot,
                        }),
                    }
                }
                Some(Err(e)) if e.is_connect_failure() => {
                    tracing::debug!(endpoint = %ep.display, error = %e, "upstream connect failed");
                    local_reply(
                        rec,
                        StatusCode::SERVICE_UNAVAILABLE,
                        ResponseFlags::UPSTREAM_CONNECTION_FAILURE,
                        "upstream_reset_before_response_started{connection_failure}",
                        "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
                        grpc,
                    )
                }
                Some(Err(e)) => {
                    tracing::debug!(endpoint = %ep.display, error = %e, "upstream reset");
                    local_reply(
                        rec,
                        StatusCode::BAD_GATEWAY,
                        ResponseFlags::UPSTREAM_CONNECTION_TERMINATION,
                        "upstream_reset_before_response_started{connection_termination}",
                        "upstream connect error or disconnect/reset before headers. reset reason: connection termination",
                        grpc,
                    )
                }
                None => local_reply(
                    rec,
                    StatusCode::GATEWAY_TIMEOUT,
                    ResponseFlags::UPSTREAM_REQUEST_TIMEOUT,
                    "upstream_per_try_timeout",
                    "upstream request timeout",
                    grpc,
                ),
            };
        }
    };
    let timeout = route.and_then(|r| r.timeout).filter(|_| !upgrade);
    let reply = match timeout {
        Some(t) => match tokio::time::timeout(t, attempts).await {
            Ok(reply) => reply,
            Err(_) => local_reply(
                rec,
                StatusCode::GATEWAY_TIMEOUT,
                ResponseFlags::UPSTREAM_REQUEST_TIMEOUT,
                "upstream_response_timeout",
                "upstream request timeout",
                grpc,
            ),
        },
        None => attempts.await,
    };
    for mirror in mirrors {
        if !roll(mirror.percentage) {
            continue;
        }
        let body = if empty_body {
            Some(body::empty())
        } else {
            recording.as_ref().and_then(|r| r.replay())
        };
        match body {
            Some(body) => send_mirror(
                &template,
                body,
                mirror.cluster.clone(),
                downstream_h2,
                identity.clone(),
            ),
            None => {
                tracing::debug!(cluster = %mirror.cluster.name(), "request body not complete; not mirrored")
            }
        }
    }
    reply
}

/// Sends a copy of the request to a mirror cluster and drops the answer. The authority gets Envoy's
/// `-shadow` suffix so the receiver can tell mirrored traffic apart.
fn send_mirror(
    template: &Template,
    body: ProxyBody,
    cluster: Arc<ClusterRuntime>,
    downstream_h2: bool,
    identity: WorkloadIdentity,
) {
    let protocol = cluster.upstream_protocol(downstream_h2);
    let (host, port) = split_authority(&template.authority);
    let authority = match port {
        Some(p) => format!("{host}-shadow:{p}"),
        None => format!("{host}-shadow"),
    };
    let mut headers = template.headers.clone();
    headers.remove(header::HOST);
    let mut shadow = Template {
        method: template.method.clone(),
        authority,
        path_and_query: template.path_and_query.clone(),
        headers,
    };
    tokio::spawn(async move {
        let Some((ep, _active)) = cluster.pick(None) else {
            return;
        };
        let wire = ep
            .pool
            .wire(protocol, &shadow.method, &shadow.headers, &identity);
        let (req, wire) = shadow.build(body, wire, true);
        if let Ok(resp) = ep.pool.send(req, wire, &identity).await {
            let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
        }
    });
}

/// Joins an upgraded client connection with the upgraded upstream connection.
fn splice_upgrade(down: hyper::upgrade::OnUpgrade, up: hyper::upgrade::OnUpgrade) {
    tokio::spawn(async move {
        let (Ok(down), Ok(up)) = (down.await, up.await) else {
            return;
        };
        let mut down = hyper_util::rt::TokioIo::new(down);
        let mut up = hyper_util::rt::TokioIo::new(up);
        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
    });
}

fn passthrough_cluster(proxy: &Proxy, dst: std::net::SocketAddr) -> Arc<ClusterRuntime> {
    let pool = proxy.store.passthrough_pool(dst);
    Arc::new(ClusterRuntime::passthrough(dst, pool))
}

/// The hash of the request's consistent-hash key, and a cookie to set when the key is a cookie
/// the client does not have yet.
fn hash_key(
    key: &HashKey,
    req: &Request<Incoming>,
    info: &ConnInfo,
) -> (Option<u64>, Option<HeaderValue>) {
    let hash = |s: &str| Some(xxh64(s.as_bytes(), 0));
    match key {
        HashKey::Header(name) => (
            req.headers()
                .get(name.as_str())
                .and_then(|v| v.to_str().ok())
                .and_then(hash),
            None,
        ),
        HashKey::SourceIp => (hash(&info.peer.ip().to_string()), None),
        HashKey::QueryParameter(name) => (
            crate::route::matcher::query_values(req.uri().query(), name)
                .next()
                .and_then(|v| hash(&v)),
            None,
        ),
        HashKey::Cookie { name, path, ttl_ms } => {
            if let Some(value) = cookie(req.headers(), name) {
                return (hash(value), None);
            }
            let Some(ttl) = ttl_ms else {
                return (None, None);
            };
            let value = format!("{:016x}", fastrand::u64(..));
            let mut set = format!("{name}=\"{value}\"; Max-Age={}", ttl / 1000);
            if let Some(p) = path {
                set.push_str("; Path=");
                set.push_str(p);
            }
            set.push_str("; HttpOnly");
            (hash(&value), HeaderValue::from_str(&set).ok())
        }
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// `Host` header, else the URI's authority (HTTP/2 `:authority`, absolute-form requests).
fn request_authority<B>(req: &Request<B>) -> Option<&str> {
    req.uri().authority().map(|a| a.as_str()).or_else(|| {
        req.headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
    })
}

fn header_str<'a>(headers: &'a HeaderMap, name: &HeaderName) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The request's `x-request-id`, generated (a random UUID v4) when the client sent none, as
/// Envoy does, so logs and traces of one request can be joined.
fn ensure_request_id(headers: &mut HeaderMap) -> HeaderValue {
    if let Some(id) = headers.get(&X_REQUEST_ID) {
        return id.clone();
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bits = fastrand::u128(..);
    // Version 4, variant 10.
    bits = (bits & !(0xf << 76)) | (0x4 << 76);
    bits = (bits & !(0x3 << 62)) | (0x2 << 62);
    let mut out = [0u8; 36];
    let mut nibble = 32;
    for (i, byte) in out.iter_mut().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            *byte = b'-';
        } else {
            nibble -= 1;
            *byte = HEX[((bits >> (nibble * 4)) & 0xf) as usize];
        }
    }
    let mut id =
        HeaderValue::from_bytes(&out).expect("hex digits and dashes are a valid header value");
    // Unique per request: never worth an HPACK table entry (see the trace context's values).
    id.set_sensitive(true);
    headers.insert(X_REQUEST_ID, id.clone());
    id
}

fn is_grpc(headers: &HeaderMap) -> bool {
    header_str(headers, &header::CONTENT_TYPE).starts_with("application/grpc")
}

fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// The connection-specific headers, besides those `Connection` names (RFC 9110 §7.6.1).
const HOP_BY_HOP_COUNT: usize = 6;
const HOP_BY_HOP: [HeaderName; HOP_BY_HOP_COUNT] = [
    header::CONNECTION,
    header::UPGRADE,
    header::TE,
    header::TRANSFER_ENCODING,
    KEEP_ALIVE,
    PROXY_CONNECTION,
];

/// Removes connection-specific headers (RFC 9110 §7.6.1); keeps the upgrade handshake when
/// the request is one, and `te: trailers`.
fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // One pass over the names finds which are present: most requests carry none, and most
    // responses only `connection: keep-alive`, so only those are looked up and removed.
    let mut present = [false; HOP_BY_HOP_COUNT];
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
            present[i] = true;
        }
    }
    // (In `HOP_BY_HOP`'s order.)
    let [connection, _, te, ..] = present;
    if connection {
        // (Cloned: the values are shared bytes, and the map changes below.)
        let listed: Vec<HeaderValue> = headers
            .get_all(header::CONNECTION)
            .iter()
            .cloned()
            .collect();
        for value in &listed {
            let tokens = value.to_str().unwrap_or_default().split(',').map(str::trim);
            for token in tokens {
                if token.is_empty() || (upgrade && token.eq_ignore_ascii_case("upgrade")) {
                    continue;
                }
                // A `&str` key is matched case-insensitively; one that is no header name is ignored.
                headers.remove(token);
            }
        }
    }
    let te_trailers = te
        && headers
            .get(header::TE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("trailers"));
    for (name, present) in HOP_BY_HOP.iter().zip(present) {
        let kept = upgrade && (name == header::CONNECTION || name == header::UPGRADE);
        if present && !kept {
            headers.remove(name);
        }
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

fn protocol_name(v: Version) -> &'static str {
    match v {
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_10 => "HTTP/1.0",
        _ => "HTTP/1.1",
    }
}

/// A reply the proxy makes itself, recorded with its flag and reason.
fn local_reply(
    rec: &mut RequestRecord,
    status: StatusCode,
    flag: ResponseFlags,
    details: &'static str,
    message: &str,
    grpc: bool,
) -> Reply {
    rec.flags.insert(flag);
    rec.details = details;
    if grpc {
        grpc_reply(grpc_code_for(status), message)
    } else {
        text_reply(status, message)
    }
    .into()
}

fn text_reply(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(body::full(Bytes::from(format!("{message}\n"))));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

/// A trailers-only gRPC response, as gRPC clients expect errors from a proxy to look.
fn grpc_reply(code: u32, message: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(body::empty());
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert("grpc-status", HeaderValue::from(code));
    if let Ok(v) = HeaderValue::from_str(message) {
        h.insert("grpc-message", v);
    }
    resp
}

/// Envoy's HTTP-to-gRPC status mapping for local replies.
fn grpc_code_for(status: StatusCode) -> u32 {
    match status.as_u16() {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502 | 503 | 504 => 14,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_authorities() {
        assert_eq!(split_authority("reviews:9080"), ("reviews", Some(9080)));
        assert_eq!(split_authority("reviews"), ("reviews", None));
        assert_eq!(split_authority("[::1]:80"), ("::1", Some(80)));
        assert_eq!(split_authority("host:notaport"), ("host:notaport", None));
    }

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-private".parse().unwrap());
        h.insert("x-private", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("te", "trailers, deflate".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        strip_hop_by_hop(&mut h, false);
        assert!(
            h.get("x-private").is_none()
                && h.get("connection").is_none()
                && h.get("keep-alive").is_none()
        );
        assert_eq!(h["te"], "trailers");
        assert_eq!(h["x-kept"], "1");
    }

    #[test]
    fn hop_by_hop_names_in_connection_are_case_insensitive() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            "Keep-Alive, X-Private, not a name".parse().unwrap(),
        );
        h.insert("x-private", "1".parse().unwrap());
        h.insert("proxy-connection", "keep-alive".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h["x-kept"], "1");
    }

    #[test]
    fn an_upgrade_keeps_its_handshake() {
        let mut h = HeaderMap::new();
        h.insert("connection", "Upgrade, x-private".parse().unwrap());
        h.insert("upgrade", "websocket".parse().unwrap());
        h.insert("x-private", "1".parse().unwrap());
        h.insert("te", "gzip".parse().unwrap());
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
        assert!(h.get("x-private").is_none() && h.get("te").is_none());
    }

    #[test]
    fn headers_without_hop_by_hop_ones_are_untouched() {
        let mut h = HeaderMap::new();
        h.insert("x-a", "1".parse().unwrap());
        h.insert("content-length", "5".parse().unwrap());
        let before = h.clone();
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h, before);
    }

    fn template(authority: &str) -> Template {
        let mut headers = HeaderMap::new();
        headers.insert("x-kept", "1".parse().unwrap());
        Template {
            method: Method::GET,
            authority: authority.to_string(),
            path_and_query: "/p?q=1".parse().unwrap(),
            headers,
        }
    }

    #[test]
    fn requests_are_built_in_the_form_of_their_wire() {
        let (req, wire) = template("reviews:9080").build(body::empty(), Wire::Http1, false);
        assert_eq!(wire, Wire::Http1);
        assert_eq!(req.version(), Version::HTTP_11);
        assert_eq!(req.uri(), "/p?q=1");
        assert_eq!(req.headers()[header::HOST], "reviews:9080");

        for asked in [Wire::Http1OverH2, Wire::Http2] {
            let (req, wire) = template("reviews:9080").build(body::empty(), asked, true);
            assert_eq!(wire, asked);
            assert_eq!(req.version(), Version::HTTP_2);
            assert_eq!(req.uri(), "http://reviews:9080/p?q=1");
            assert!(req.headers().get(header::HOST).is_none());
            assert_eq!(req.headers()["x-kept"], "1");
        }
    }

    #[test]
    fn an_authority_http2_cannot_carry_goes_over_http1() {
        let (req, wire) = template("bad host").build(body::empty(), Wire::Http1OverH2, false);
        assert_eq!(wire, Wire::Http1);
        assert_eq!(req.version(), Version::HTTP_11);
        assert_eq!(req.uri(), "/p?q=1");
    }

    #[test]
    fn reads_cookies() {
        let mut h = HeaderMap::new();
        h.insert("cookie", "a=1; user=\"abc\"".parse().unwrap());
        assert_eq!(cookie(&h, "user"), Some("abc"));
        assert_eq!(cookie(&h, "b"), None);
    }

    #[test]
    fn request_ids_are_uuid_shaped() {
        let mut h = HeaderMap::new();
        let id = ensure_request_id(&mut h);
        let text = id.to_str().unwrap();
        assert_eq!(text.len(), 36);
        assert_eq!(text.as_bytes()[14], b'4', "version 4: {text}");
        assert!(
            matches!(text.as_bytes()[19], b'8' | b'9' | b'a' | b'b'),
            "variant: {text}"
        );
        assert_eq!(h["x-request-id"], id);
        assert_eq!(ensure_request_id(&mut h), id);
    }
}
