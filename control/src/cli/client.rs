//! The REST client: plain HTTP to `{server}/api/v1`, JSON answers, and errors worded for the
//! person at the terminal (an unreachable server says how to fix it; a rejected change lists the
//! server's diagnostics).

use super::CliError;
use super::types::ErrorBody;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Whole-request limit: the control plane answers from memory, so anything slower is stuck.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read (a full history or resource list stays far below).
const MAX_BODY: usize = 64 << 20;

/// A client for one control plane.
#[derive(Clone)]
pub struct Client {
    /// `http://host:port[/prefix]`, without a trailing slash; shown in errors.
    base: String,
    http: HttpClient<HttpConnector, Full<Bytes>>,
    author: String,
}

/// What a write carries besides its body: why, and which file it came from.
#[derive(Debug, Default, Clone)]
pub struct WriteMeta<'a> {
    pub message: Option<&'a str>,
    pub file: Option<&'a str>,
}

impl Client {
    /// Checks the address only; nothing is contacted until a request is made.
    pub fn new(server: &str) -> Result<Client, CliError> {
        let server = server.trim();
        let with_scheme = if server.contains("://") {
            server.to_string()
        } else {
            format!("http://{server}")
        };
        let invalid =
            |why: &str| CliError::msg(format!("invalid server address `{server}`: {why}"));
        let uri: Uri = with_scheme
            .parse()
            .map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(invalid("the control plane API is plain HTTP; use http://"));
            }
            _ => return Err(invalid("expected http://HOST:PORT")),
        }
        let Some(authority) = uri.authority().filter(|a| !a.host().is_empty()) else {
            return Err(invalid("expected http://HOST:PORT"));
        };
        if uri.query().is_some() {
            return Err(invalid("expected http://HOST:PORT[/PATH], without a query"));
        }
        let base = format!("http://{authority}{}", uri.path().trim_end_matches('/'));
        let http = HttpClient::builder(TokioExecutor::new()).build_http();
        Ok(Client {
            base,
            http,
            author: super::author(),
        })
    }

    /// The address as given (normalized), for messages.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET {base}/api/v1{path}`, decoded from JSON.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, CliError> {
        self.request(Method::GET, path, None, None).await
    }

    /// A write (`POST`, `DELETE`) with the author, message and file headers.
    pub async fn write<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<(&'static str, Bytes)>,
        meta: &WriteMeta<'_>,
    ) -> Result<T, CliError> {
        self.request(method, path, body, Some(meta)).await
    }

    async fn request<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<(&'static str, Bytes)>,
        meta: Option<&WriteMeta<'_>>,
    ) -> Result<T, CliError> {
        let url = format!("{}/api/v1{path}", self.base);
        let mut builder = Request::builder()
            .method(method)
            .uri(&url)
            .header(http::header::ACCEPT, "application/json");
        if let Some(meta) = meta {
            builder = builder.header("x-trellis-author", header_value(&self.author));
            if let Some(m) = meta.message {
                builder = builder.header("x-trellis-message", header_value(m));
            }
            if let Some(f) = meta.file {
                builder = builder.header("x-trellis-file", header_value(f));
            }
        }
        let body = match body {
            Some((content_type, bytes)) => {
                builder = builder.header(http::header::CONTENT_TYPE, content_type);
                Full::new(bytes)
            }
            None => Full::new(Bytes::new()),
        };
        let request = builder
            .body(body)
            .map_err(|e| CliError::msg(format!("cannot build a request for {url}: {e}")))?;

        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| self.transport_error(&e))?;
            let status = response.status();
            let bytes = Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| CliError::msg(format!("reading the answer from {}: {e}", self.base)))?
                .to_bytes();
            Ok::<_, CliError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| {
                CliError::msg(format!(
                    "the control plane at {} did not answer within {}s",
                    self.base,
                    TIMEOUT.as_secs()
                ))
            })??;

        if !status.is_success() {
            return Err(server_error(status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            CliError::msg(format!(
                "unexpected answer from {url}: {e}: {}",
                excerpt(&bytes)
            ))
        })
    }

    /// A connection failure names the server and how to point the CLI elsewhere.
    fn transport_error(&self, e: &hyper_util::client::legacy::Error) -> CliError {
        let cause = root_cause(e);
        if e.is_connect() {
            CliError::msg(format!(
                "cannot reach the control plane at {} (is `trellis control` running? set --server or TRELLIS_SERVER): {cause}",
                self.base
            ))
        } else {
            CliError::msg(format!(
                "request to the control plane at {} failed: {cause}",
                self.base
            ))
        }
    }
}

/// The innermost error, in the words a user expects (`connection refused`).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut current = e;
    while let Some(next) = current.source() {
        current = next;
    }
    if let Some(io) = current.downcast_ref::<std::io::Error>() {
        use std::io::ErrorKind::*;
        let known = match io.kind() {
            ConnectionRefused => Some("connection refused"),
            ConnectionReset => Some("connection reset"),
            TimedOut => Some("connection timed out"),
            HostUnreachable => Some("host unreachable"),
            NetworkUnreachable => Some("network unreachable"),
            _ => None,
        };
        if let Some(k) = known {
            return k.to_string();
        }
    }
    current.to_string()
}

/// A non-2xx answer: the server's ErrorBody when it sent one, else status and body text.
fn server_error(status: StatusCode, bytes: &[u8]) -> CliError {
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(body) if !body.error.is_empty() || !body.diagnostics.is_empty() => {
            let error = if body.error.is_empty() {
                format!("the server answered {status}")
            } else {
                body.error
            };
            if status == StatusCode::NOT_FOUND {
                CliError::NotFound(error)
            } else if body.diagnostics.is_empty() {
                CliError::Message(error)
            } else {
                CliError::Diagnostics {
                    error,
                    diagnostics: body.diagnostics,
                }
            }
        }
        _ if status == StatusCode::NOT_FOUND => {
            CliError::NotFound(format!("the server answered {status}: {}", excerpt(bytes)))
        }
        _ => CliError::msg(format!("the server answered {status}: {}", excerpt(bytes))),
    }
}

/// The start of a body, on one line, for error messages.
fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.is_empty() {
        "(empty body)".to_string()
    } else if one_line.chars().count() > 200 {
        format!("{}…", one_line.chars().take(200).collect::<String>())
    } else {
        one_line
    }
}

/// Header values are sent as UTF-8 bytes with control characters (newlines) replaced by spaces,
/// so any message or file name can be carried.
fn header_value(text: &str) -> HeaderValue {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    HeaderValue::from_bytes(clean.trim().as_bytes()).unwrap_or(HeaderValue::from_static(""))
}

/// Percent-encodes a path segment or query value (everything but RFC 3986's unreserved set).
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            Client::new("127.0.0.1:20001").unwrap().base(),
            "http://127.0.0.1:20001"
        );
        assert_eq!(Client::new("http://cp:80/").unwrap().base(), "http://cp:80");
        assert!(Client::new("https://cp").is_err());
        assert!(Client::new("ftp://cp").is_err());
        assert!(Client::new("http://").is_err());
        assert_eq!(
            Client::new("http://cp:80/trellis/").unwrap().base(),
            "http://cp:80/trellis"
        );
    }

    #[test]
    fn encoding_and_headers() {
        assert_eq!(encode("a b/ü"), "a%20b%2F%C3%BC");
        assert_eq!(encode("reviews-v1.x_~"), "reviews-v1.x_~");
        assert_eq!(
            header_value("fix\nrollout ü").as_bytes(),
            "fix rollout ü".as_bytes()
        );
    }

    #[test]
    fn error_bodies() {
        let body = br#"{"error":"rejected","diagnostics":[{"severity":"error","file":"a.yaml","line":3,"column":1,"resource":null,"field":"spec","message":"bad"}]}"#;
        assert_eq!(
            server_error(StatusCode::UNPROCESSABLE_ENTITY, body).to_string(),
            "error: rejected\na.yaml:3:1: spec: bad"
        );
        assert_eq!(
            server_error(StatusCode::BAD_GATEWAY, b"<html>\n oops </html>").to_string(),
            "error: the server answered 502 Bad Gateway: <html> oops </html>"
        );
    }
}
