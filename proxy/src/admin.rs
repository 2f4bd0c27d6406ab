//! The admin endpoints: readiness, the compiled config, cluster and endpoint health, the workload
//! certificate (`/certs`) and the log level (loopback only by default); and on the stats port the
//! health check and Istio's standard metrics for Prometheus (`/stats/prometheus`, also
//! `/metrics`; the admin port serves them too).

use crate::body::{self, ProxyBody};
use crate::server::Proxy;
use crate::telemetry::metrics::prometheus;
use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Changes the log filter at run time (`POST /logging?level=debug`).
pub type SetLogLevel = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Which endpoints a listener serves.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Port {
    Admin,
    Stats,
}

pub async fn serve(listener: TcpListener, port: Port, proxy: Arc<Proxy>, set_level: SetLogLevel) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors and the like: back off instead of spinning.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            continue;
        };
        let (proxy, set_level) = (proxy.clone(), set_level.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let (proxy, set_level) = (proxy.clone(), set_level.clone());
                async move { Ok::<_, Infallible>(respond(port, &proxy, &set_level, req)) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn respond(
    port: Port,
    proxy: &Proxy,
    set_level: &SetLogLevel,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let ready = proxy.store.is_loaded() && !proxy.drain.is_draining();
    match (port, req.method(), req.uri().path()) {
        (_, &Method::GET, "/healthz/ready") | (Port::Admin, &Method::GET, "/ready") => {
            if ready {
                text(StatusCode::OK, "LIVE\n")
            } else if proxy.drain.is_draining() {
                text(StatusCode::SERVICE_UNAVAILABLE, "DRAINING\n")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "PRE_INITIALIZING: no config yet\n",
                )
            }
        }
        (_, &Method::GET, "/stats/prometheus" | "/metrics") => {
            let mut text = proxy.telemetry.metrics.encode_prometheus();
            proxy.denials.encode_prometheus(&mut text);
            proxy.store.load().rate_limits.encode_prometheus(&mut text);
            proxy.identity.status().encode_prometheus(&mut text);
            proxy.inbound_tls.encode_prometheus(&mut text);
            crate::endpoint::tls::encode_prometheus(&mut text);
            let mut resp = Response::new(body::full(text));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(prometheus::CONTENT_TYPE),
            );
            resp
        }
        (Port::Admin, &Method::GET, "/config_dump") => {
            let mut dump = serde_json::to_value(&*proxy.store.load().config).unwrap_or_default();
            if let Some(fields) = dump.as_object_mut() {
                let source = serde_json::to_value(proxy.store.source()).unwrap_or_default();
                fields.insert("source".into(), source);
            }
            json(&dump)
        }
        (Port::Admin, &Method::GET, "/certs") => json(&proxy.identity.status().certs_json()),
        (Port::Admin, &Method::GET, "/clusters") => {
            let snapshot = proxy.store.load();
            let mut clusters: Vec<_> = snapshot.clusters.values().map(|c| c.status()).collect();
            clusters.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
            json(&serde_json::json!({ "clusters": clusters }))
        }
        (Port::Admin, &Method::POST, "/logging") => {
            let level = req
                .uri()
                .query()
                .unwrap_or("")
                .split('&')
                .find_map(|kv| kv.strip_prefix("level="))
                .unwrap_or("");
            match set_level(level) {
                Ok(()) => text(StatusCode::OK, &format!("log level set to {level}\n")),
                Err(e) => text(
                    StatusCode::BAD_REQUEST,
                    &format!("bad log level {level:?}: {e}\n"),
                ),
            }
        }
        (Port::Admin, _, "/") => text(
            StatusCode::OK,
            "trellis-proxy admin\n  GET /ready\n  GET /config_dump\n  GET /clusters\n  GET /certs\n  GET /stats/prometheus\n  POST /logging?level=LEVEL\n",
        ),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn text(status: StatusCode, body: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(body::full(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn json(value: &serde_json::Value) -> Response<ProxyBody> {
    let mut resp = Response::new(body::full(
        serde_json::to_vec_pretty(value).unwrap_or_default(),
    ));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}
