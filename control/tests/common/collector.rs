//! Clients for what a [`Control`]'s collector serves: OTLP/HTTP posts (raw bytes in and out),
//! the Jaeger query API, `/metrics`; and the Python OpenTelemetry SDK.

use super::Control;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use testkit::client::HttpClient;

impl Control {
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.otlp_grpc)
    }

    /// `GET` on the Jaeger API: status and JSON body.
    pub async fn jaeger(&self, path_and_query: &str) -> (u16, Value) {
        let r = HttpClient::http1(self.jaeger)
            .with_timeout(Duration::from_secs(10))
            .get("jaeger", path_and_query, &[])
            .await
            .unwrap_or_else(|e| panic!("GET {path_and_query}: {e}"));
        let body = serde_json::from_str(&r.body)
            .unwrap_or_else(|e| panic!("GET {path_and_query}: {e}: {}", r.body));
        (r.status.as_u16(), body)
    }

    /// `data` of a successful Jaeger API answer.
    pub async fn jaeger_data(&self, path_and_query: &str) -> Value {
        let (status, body) = self.jaeger(path_and_query).await;
        assert_eq!(status, 200, "GET {path_and_query}: {body}");
        assert_eq!(body["errors"], Value::Null, "{body}");
        body["data"].clone()
    }

    /// Waits until `GET /api/traces/{id}` has `spans` spans; returns the trace.
    pub async fn wait_for_trace(&self, id: &str, spans: usize) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let (status, body) = self.jaeger(&format!("/api/traces/{id}")).await;
            if status == 200 && body["data"][0]["spans"].as_array().map(Vec::len) == Some(spans) {
                return body["data"][0].clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "trace {id} never had {spans} spans: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `GET /metrics` text.
    pub async fn metrics_text(&self) -> String {
        let r = HttpClient::http1(self.metrics)
            .get("metrics", "/metrics", &[])
            .await
            .expect("GET /metrics");
        assert_eq!(r.status, 200);
        r.body
    }

    /// The value of the series `name{labels}` exactly as written (e.g.
    /// `trellis_collector_received_items_total{signal="traces"}`), 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.metrics_text().await;
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map(|v| v.trim().parse().expect("a number"))
            .unwrap_or(0.0)
    }

    /// `POST` to the OTLP/HTTP receiver.
    pub async fn post(&self, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Posted {
        post(self.otlp_http, path, headers, body).await
    }
}

/// A raw HTTP answer.
#[derive(Debug)]
pub struct Posted {
    pub status: u16,
    pub content_type: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// `POST http://addr/path` with raw bytes.
pub async fn post(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Posted {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut request = http::Request::post(format!("http://{addr}{path}"));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let request = request.body(Full::new(Bytes::from(body))).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
        .await
        .expect("POST answered in time")
        .expect("POST succeeds");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Posted {
        status: parts.status.as_u16(),
        content_type: parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        headers: parts.headers,
        body,
    }
}

/// Whether the Python OpenTelemetry SDK with both OTLP exporters is importable; when not, the
/// caller skips, unless `TRELLIS_REQUIRE_PYTHON_OTEL=1` (then this panics).
pub fn python_otel_available() -> bool {
    let ok = std::process::Command::new("python3")
        .args([
            "-c",
            "import opentelemetry.sdk.trace, opentelemetry.exporter.otlp.proto.grpc.trace_exporter, \
             opentelemetry.exporter.otlp.proto.http.trace_exporter",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var("TRELLIS_REQUIRE_PYTHON_OTEL").as_deref() == Ok("1") {
            panic!(
                "the Python OpenTelemetry SDK is required (TRELLIS_REQUIRE_PYTHON_OTEL=1) but not importable"
            );
        }
        eprintln!(
            "skipped: python3 with opentelemetry-sdk and the OTLP exporters is not available"
        );
    }
    ok
}

/// Runs `control/tests/python/<script>` with `args` (at most 60 s); its stdout as JSON.
pub fn run_python(script: &str, args: &[&str]) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let out = std::process::Command::new("timeout")
        .arg("60")
        .arg("python3")
        .arg(&path)
        .args(args)
        .output()
        .expect("python3 runs");
    let (status, stdout, stderr) = (
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        status.success(),
        "{script} failed ({status}):\n{stdout}\n{stderr}"
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{script} printed no JSON ({e}):\n{stdout}\n{stderr}"))
}
