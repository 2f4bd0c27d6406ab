//! A bookinfo-like sample application for Trellis: `productpage` calls `details` and `reviews`;
//! `reviews` v1 calls nothing, v2 and v3 call `ratings` (black and red stars). Every service
//! forwards the tracing headers of the inbound request on its outbound calls, as Istio's bookinfo
//! does, so the sidecars' spans join into one trace.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, COOKIE, HOST, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;

pub mod cli;

/// The sample's services as local mode declares them (ServiceEntries selecting each `app`), which
/// `trellis demo` applies.
pub const SERVICES_YAML: &str = include_str!("../services.yaml");

/// Headers copied from the inbound request onto every outbound call (Istio bookinfo's list, plus
/// `end-user` for the header-routing sample).
pub const FORWARDED_HEADERS: &[&str] = &[
    "x-request-id",
    "traceparent",
    "tracestate",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "x-ot-span-context",
    "baggage",
    "end-user",
];

/// The headers of `inbound` that are forwarded (see [`FORWARDED_HEADERS`]).
pub fn forwarded_headers(inbound: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in FORWARDED_HEADERS {
        for value in inbound.get_all(*name) {
            out.append(HeaderName::from_static(name), value.clone());
        }
    }
    out
}

/// The forwarded headers a service received, echoed in its JSON answer so a test (or a curious
/// user) can see that trace context arrived.
fn received(inbound: &HeaderMap) -> Value {
    let mut map = serde_json::Map::new();
    for name in FORWARDED_HEADERS {
        if let Some(v) = inbound.get(*name).and_then(|v| v.to_str().ok()) {
            map.insert((*name).to_string(), Value::String(v.to_string()));
        }
    }
    Value::Object(map)
}

type Body = Full<Bytes>;

/// Outbound HTTP calls to the other services: straight to each service's URL, or, with
/// `outbound` set, to the sidecar's outbound listener with the service's authority as `Host`.
#[derive(Clone)]
pub struct Upstreams {
    client: Client<HttpConnector, Body>,
    outbound: Option<String>,
    timeout: Duration,
}

impl Upstreams {
    pub fn new(outbound: Option<String>, timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Upstreams {
            client,
            outbound,
            timeout,
        }
    }

    /// GET `base` + `path` with `headers`, expecting a JSON answer; any failure (connect error,
    /// timeout, non-2xx status, bad JSON) is a readable message such as `503 Service Unavailable:
    /// no healthy upstream`.
    pub async fn get_json(
        &self,
        base: &str,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<Value, String> {
        let base_uri: Uri = base
            .parse()
            .map_err(|e| format!("bad upstream URL {base:?}: {e}"))?;
        let authority = base_uri
            .authority()
            .ok_or_else(|| format!("upstream URL {base:?} has no host"))?
            .to_string();
        let prefix = base_uri.path().trim_end_matches('/');
        let uri = match &self.outbound {
            Some(outbound) => format!("http://{outbound}{prefix}{path}"),
            None => format!("http://{authority}{prefix}{path}"),
        };
        let mut req = Request::builder()
            .method(Method::GET)
            .uri(&uri)
            .body(Body::new(Bytes::new()))
            .map_err(|e| format!("bad request {uri}: {e}"))?;
        *req.headers_mut() = headers.clone();
        let host = HeaderValue::from_str(&authority)
            .map_err(|e| format!("bad host {authority:?}: {e}"))?;
        req.headers_mut().insert(HOST, host);
        let call = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| error_chain(&e))?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("reading the body: {}", error_chain(&e)))?
                .to_bytes();
            if !status.is_success() {
                let text = String::from_utf8_lossy(&body);
                let text = text.trim();
                let text: String = text.chars().take(200).collect();
                return Err(if text.is_empty() {
                    status.to_string()
                } else {
                    format!("{status}: {text}")
                });
            }
            serde_json::from_slice(&body)
                .map_err(|e| format!("{status} with a body that is not JSON: {e}"))
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "timed out after {:.1} s",
                self.timeout.as_secs_f64()
            )),
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Body::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_str(content_type).expect("static content type"),
    );
    resp
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    respond(status, "application/json", value.to_string())
}

fn not_found() -> Response<Body> {
    json_response(StatusCode::NOT_FOUND, &json!({"error": "not found"}))
}

fn health() -> Response<Body> {
    respond(StatusCode::OK, "text/plain", "ok\n")
}

/// The product id in `/<prefix>/<id>` (or `/<prefix>`, id 0); None if the path is something else.
fn product_id(path: &str, prefix: &str) -> Option<u64> {
    let rest = path.strip_prefix(prefix)?;
    match rest {
        "" | "/" => Some(0),
        _ => rest.strip_prefix('/')?.parse().ok(),
    }
}

/// Serves `handler` on `listener` until the process ends.
pub async fn serve<F, Fut>(listener: TcpListener, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let handler = handler.clone();
                async move {
                    tracing::debug!(method = %req.method(), uri = %req.uri(), %peer, "request");
                    Ok::<_, Infallible>(handler(req).await)
                }
            });
            if let Err(e) = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
}

// ---------------------------------------------------------------------------------------------
// details

pub async fn details(req: Request<Incoming>, version: Arc<str>) -> Response<Body> {
    let path = req.uri().path();
    if path == "/health" {
        return health();
    }
    let Some(id) = product_id(path, "/details") else {
        return not_found();
    };
    json_response(
        StatusCode::OK,
        &json!({
            "id": id,
            "author": "William Shakespeare",
            "year": 1595,
            "type": "paperback",
            "pages": 200,
            "publisher": "PublisherA",
            "language": "English",
            "ISBN-10": "1234567890",
            "ISBN-13": "123-1234567890",
            "version": &*version,
            "received": received(req.headers()),
        }),
    )
}

// ---------------------------------------------------------------------------------------------
// ratings

pub async fn ratings(req: Request<Incoming>, version: Arc<str>) -> Response<Body> {
    let path = req.uri().path();
    if path == "/health" {
        return health();
    }
    let Some(id) = product_id(path, "/ratings") else {
        return not_found();
    };
    json_response(
        StatusCode::OK,
        &json!({
            "id": id,
            "ratings": {"Reviewer1": 5, "Reviewer2": 4},
            "version": &*version,
            "received": received(req.headers()),
        }),
    )
}

// ---------------------------------------------------------------------------------------------
// reviews

/// The reviews service's configuration.
pub struct Reviews {
    /// `v1` (no stars, calls nothing), `v2` (black stars), `v3` (red stars); other names behave
    /// like v2.
    pub version: String,
    /// Base URL of ratings, e.g. `http://ratings:9080`.
    pub ratings: String,
    pub upstreams: Upstreams,
}

impl Reviews {
    /// The star colour of this version, None for v1 (which shows no ratings).
    pub fn star_color(&self) -> Option<&'static str> {
        match self.version.as_str() {
            "v1" => None,
            "v3" => Some("red"),
            _ => Some("black"),
        }
    }

    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path();
        if path == "/health" {
            return health();
        }
        let Some(id) = product_id(path, "/reviews") else {
            return not_found();
        };
        let texts = [
            (
                "Reviewer1",
                "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!",
            ),
            (
                "Reviewer2",
                "Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays by Shakespeare.",
            ),
        ];
        let mut body = json!({
            "id": id,
            "version": &self.version,
            "received": received(req.headers()),
        });
        let mut ratings = None;
        if let Some(color) = self.star_color() {
            let headers = forwarded_headers(req.headers());
            match self
                .upstreams
                .get_json(&self.ratings, &format!("/ratings/{id}"), &headers)
                .await
            {
                Ok(value) => {
                    body["ratings_service"] = json!({
                        "version": value.get("version").cloned().unwrap_or(Value::Null),
                        "received": value.get("received").cloned().unwrap_or(Value::Null),
                    });
                    ratings = Some((value, color));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "ratings call failed");
                    body["ratings_error"] = Value::String(format!("ratings unavailable: {e}"));
                }
            }
        }
        let reviews: Vec<Value> = texts
            .iter()
            .map(|(reviewer, text)| {
                let mut review = json!({"reviewer": reviewer, "text": text});
                if let Some((value, color)) = &ratings
                    && let Some(stars) = value["ratings"][*reviewer].as_u64()
                {
                    review["rating"] = json!({"stars": stars, "color": color});
                }
                review
            })
            .collect();
        body["reviews"] = Value::Array(reviews);
        json_response(StatusCode::OK, &body)
    }
}

// ---------------------------------------------------------------------------------------------
// productpage

/// The productpage service's configuration.
pub struct ProductPage {
    pub version: String,
    /// Base URL of details, e.g. `http://details:9080`.
    pub details: String,
    /// Base URL of reviews, e.g. `http://reviews:9080`.
    pub reviews: String,
    pub upstreams: Upstreams,
}

/// The signed-in user: `?u=NAME`, else the `end-user` cookie, else the `end-user` header.
pub fn end_user(uri: &Uri, headers: &HeaderMap) -> Option<String> {
    let from_query = uri.query().and_then(|q| {
        q.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == "u" && !v.is_empty()).then(|| v.to_string())
        })
    });
    let from_cookie = || {
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| {
                let (k, v) = c.trim().split_once('=')?;
                (k == "end-user" && !v.is_empty()).then(|| v.to_string())
            })
    };
    let from_header = || {
        headers
            .get("end-user")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    from_query
        .or_else(from_cookie)
        .or_else(from_header)
        .filter(|u| HeaderValue::from_str(u).is_ok())
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// "reviews v2 (black stars)" and friends.
pub fn reviews_label(reviews: &Value) -> String {
    let version = reviews["version"].as_str().unwrap_or("?");
    let kind = match version {
        "v1" => "no stars".to_string(),
        _ => {
            let color = reviews["reviews"]
                .as_array()
                .and_then(|r| r.iter().find_map(|r| r["rating"]["color"].as_str()))
                .unwrap_or(if version == "v3" { "red" } else { "black" });
            format!("{color} stars")
        }
    };
    format!("reviews {version} ({kind})")
}

impl ProductPage {
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        match req.uri().path() {
            "/health" => health(),
            "/" => respond(
                StatusCode::OK,
                "text/html; charset=utf-8",
                "<!doctype html><title>Bookinfo</title><p><a href=\"/productpage\">Product page</a> \
                 (<a href=\"/productpage?u=jason\">as jason</a>)</p>\n",
            ),
            "/productpage" => {
                let (details, reviews, user) = self.fetch(&req).await;
                respond(
                    StatusCode::OK,
                    "text/html; charset=utf-8",
                    self.render(&details, &reviews, user.as_deref(), req.headers()),
                )
            }
            "/api/v1/productpage" => {
                let (details, reviews, user) = self.fetch(&req).await;
                let part = |r: Result<Value, String>| match r {
                    Ok(v) => v,
                    Err(e) => json!({"error": e}),
                };
                json_response(
                    StatusCode::OK,
                    &json!({
                        "version": &self.version,
                        "end-user": user,
                        "received": received(req.headers()),
                        "details": part(details.map_err(|e| format!("details unavailable: {e}"))),
                        "reviews": part(reviews.map_err(|e| format!("reviews unavailable: {e}"))),
                    }),
                )
            }
            _ => not_found(),
        }
    }

    async fn fetch(
        &self,
        req: &Request<Incoming>,
    ) -> (Result<Value, String>, Result<Value, String>, Option<String>) {
        let user = end_user(req.uri(), req.headers());
        let mut headers = forwarded_headers(req.headers());
        headers.remove("end-user");
        if let Some(user) = &user {
            headers.insert(
                "end-user",
                HeaderValue::from_str(user).expect("checked by end_user"),
            );
        }
        let (details, reviews) = tokio::join!(
            self.upstreams
                .get_json(&self.details, "/details/0", &headers),
            self.upstreams
                .get_json(&self.reviews, "/reviews/0", &headers),
        );
        if let Err(e) = &details {
            tracing::warn!(error = %e, "details call failed");
        }
        if let Err(e) = &reviews {
            tracing::warn!(error = %e, "reviews call failed");
        }
        (details, reviews, user)
    }

    fn render(
        &self,
        details: &Result<Value, String>,
        reviews: &Result<Value, String>,
        user: Option<&str>,
        inbound: &HeaderMap,
    ) -> String {
        let mut html = String::from(
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Bookinfo: The Comedy of Errors</title>\n\
             <style>body{font-family:sans-serif;max-width:56em;margin:2em auto}\
             .error{color:#b00;font-weight:bold}.version{color:#666;font-weight:normal}\
             blockquote{border-left:3px solid #ccc;margin:1em 0;padding:.2em 1em}\
             .stars{font-size:1.3em}</style></head><body>\n",
        );
        html.push_str("<h1>The Comedy of Errors</h1>\n");
        html.push_str(
            "<p>Summary: Wikipedia Summary: The Comedy of Errors is one of William Shakespeare's early plays. \
             It is his shortest and one of his most farcical comedies.</p>\n",
        );
        match user {
            Some(u) => html.push_str(&format!(
                "<p class=\"user\">Signed in as <b>{}</b> (<a href=\"/productpage\">sign out</a>)</p>\n",
                escape(u)
            )),
            None => html.push_str(
                "<p class=\"user\">Not signed in (<a href=\"/productpage?u=jason\">sign in as jason</a>)</p>\n",
            ),
        }

        html.push_str("<section id=\"details\">\n");
        match details {
            Ok(d) => {
                html.push_str(&format!(
                    "<h2>Book Details <span class=\"version\">details {}</span></h2>\n<dl>\n",
                    escape(d["version"].as_str().unwrap_or("?"))
                ));
                for (label, key) in [
                    ("Author", "author"),
                    ("Year", "year"),
                    ("Type", "type"),
                    ("Pages", "pages"),
                    ("Publisher", "publisher"),
                    ("Language", "language"),
                    ("ISBN-10", "ISBN-10"),
                    ("ISBN-13", "ISBN-13"),
                ] {
                    let value = match &d[key] {
                        Value::String(s) => s.clone(),
                        Value::Null => continue,
                        other => other.to_string(),
                    };
                    html.push_str(&format!("<dt>{label}</dt><dd>{}</dd>\n", escape(&value)));
                }
                html.push_str("</dl>\n");
            }
            Err(e) => html.push_str(&format!(
                "<h2>Book Details</h2>\n<p class=\"error\">details unavailable: {}</p>\n",
                escape(e)
            )),
        }
        html.push_str("</section>\n<section id=\"reviews\">\n");
        match reviews {
            Ok(r) => {
                html.push_str(&format!(
                    "<h2>Book Reviews <span class=\"version\">{}</span></h2>\n",
                    escape(&reviews_label(r))
                ));
                if let Some(e) = r["ratings_error"].as_str() {
                    html.push_str(&format!("<p class=\"error\">{}</p>\n", escape(e)));
                }
                for review in r["reviews"].as_array().into_iter().flatten() {
                    html.push_str(&format!(
                        "<blockquote><p>{}</p><footer>{}",
                        escape(review["text"].as_str().unwrap_or("")),
                        escape(review["reviewer"].as_str().unwrap_or("")),
                    ));
                    if let Some(stars) = review["rating"]["stars"].as_u64() {
                        let stars = stars.min(5) as usize;
                        let color = review["rating"]["color"].as_str().unwrap_or("black");
                        let color = if color == "red" { "red" } else { "black" };
                        html.push_str(&format!(
                            " <span class=\"stars\" style=\"color:{color}\" title=\"{stars} of 5 ({color})\">{}{}</span>",
                            "\u{2605}".repeat(stars),
                            "\u{2606}".repeat(5 - stars),
                        ));
                    }
                    html.push_str("</footer></blockquote>\n");
                }
            }
            Err(e) => html.push_str(&format!(
                "<h2>Book Reviews</h2>\n<p class=\"error\">reviews unavailable: {}</p>\n",
                escape(e)
            )),
        }
        html.push_str("</section>\n<hr>\n<p class=\"version\">productpage ");
        html.push_str(&escape(&self.version));
        if let Some(tp) = inbound.get("traceparent").and_then(|v| v.to_str().ok())
            && let Some(trace_id) = tp.split('-').nth(1)
        {
            html.push_str(&format!(" &middot; trace {}", escape(trace_id)));
        }
        if let Some(id) = inbound.get("x-request-id").and_then(|v| v.to_str().ok()) {
            html.push_str(&format!(" &middot; request {}", escape(id)));
        }
        html.push_str("</p>\n</body></html>\n");
        html
    }
}

// ---------------------------------------------------------------------------------------------
// ingress

/// The largest request body the ingress forwards; a bigger one gets 413.
const INGRESS_MAX_BODY: usize = 1 << 20;

/// Hop-by-hop headers (RFC 9110 §7.6.1) that a forwarding hop drops.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

/// The sample's edge: what Istio's ingress gateway is to bookinfo. Users and the demo's traffic
/// generator reach the mesh here; every request goes on, unchanged, to one backend (productpage)
/// through this workload's sidecar, so the mesh sees, secures and traces it from the first hop.
pub struct Ingress {
    /// Base URL of the backend, e.g. `http://productpage:9080`.
    pub backend: String,
    pub upstreams: Upstreams,
}

impl Ingress {
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        if req.uri().path() == "/health" {
            return health();
        }
        match self.forward(req).await {
            Ok(resp) => resp,
            Err((status, message)) => {
                respond(status, "text/plain", format!("ingress: {message}\n"))
            }
        }
    }

    async fn forward(
        &self,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, (StatusCode, String)> {
        let bad_gateway = |m: String| (StatusCode::BAD_GATEWAY, m);
        let base: Uri = self
            .backend
            .parse()
            .map_err(|e| bad_gateway(format!("bad backend URL {:?}: {e}", self.backend)))?;
        let authority = base
            .authority()
            .ok_or_else(|| bad_gateway(format!("backend URL {:?} has no host", self.backend)))?
            .to_string();
        let target = self
            .upstreams
            .outbound
            .clone()
            .unwrap_or_else(|| authority.clone());
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let uri = format!("http://{target}{}{path}", base.path().trim_end_matches('/'));
        let (parts, body) = req.into_parts();
        let body = http_body_util::Limited::new(body, INGRESS_MAX_BODY)
            .collect()
            .await
            .map_err(|e| {
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("reading the request body: {e}"),
                )
            })?
            .to_bytes();
        let mut out = Request::builder()
            .method(parts.method)
            .uri(&uri)
            .body(Body::new(body))
            .map_err(|e| bad_gateway(format!("bad request {uri}: {e}")))?;
        *out.headers_mut() = parts.headers;
        strip_hop_by_hop(out.headers_mut());
        let host = HeaderValue::from_str(&authority)
            .map_err(|e| bad_gateway(format!("bad host {authority:?}: {e}")))?;
        out.headers_mut().insert(HOST, host);
        let call = async {
            let resp = self
                .upstreams
                .client
                .request(out)
                .await
                .map_err(|e| bad_gateway(error_chain(&e)))?;
            let (mut parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| {
                    bad_gateway(format!("reading the response body: {}", error_chain(&e)))
                })?
                .to_bytes();
            strip_hop_by_hop(&mut parts.headers);
            Ok(Response::from_parts(parts, Body::new(body)))
        };
        match tokio::time::timeout(self.upstreams.timeout, call).await {
            Ok(result) => result,
            Err(_) => Err((
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "{} did not answer within {:.1} s",
                    self.backend,
                    self.upstreams.timeout.as_secs_f64()
                ),
            )),
        }
    }
}

/// Binds `listen` and prints `bookinfo SERVICE VERSION listening on http://ADDR` to stdout (the
/// actual address, so `--listen 127.0.0.1:0` is usable by scripts and tests).
pub async fn bind(
    service: &str,
    version: &str,
    listen: SocketAddr,
) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {listen}: {e}")))?;
    let addr = listener.local_addr()?;
    println!("bookinfo {service} {version} listening on http://{addr}");
    Ok(listener)
}
