//! Where OTLP goes: an endpoint URL and the protocol spoken to it, checked once when given.

use http::Uri;
use std::fmt;

/// OTLP transport, named as `OTEL_EXPORTER_OTLP_PROTOCOL` names them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP/gRPC (default port 4317).
    #[default]
    Grpc,
    /// OTLP/HTTP with protobuf bodies: `POST /v1/traces`, `/v1/logs`, `/v1/metrics` (port 4318).
    HttpProtobuf,
}

impl OtlpProtocol {
    pub fn parse(name: &str) -> Result<OtlpProtocol, String> {
        match name.trim() {
            "grpc" => Ok(OtlpProtocol::Grpc),
            "http/protobuf" => Ok(OtlpProtocol::HttpProtobuf),
            "http/json" => Err(
                "--otlp-protocol http/json is not supported by the proxy; use grpc or http/protobuf"
                    .into(),
            ),
            other => Err(format!(
                "--otlp-protocol {other:?}: expected grpc or http/protobuf"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OtlpProtocol::Grpc => "grpc",
            OtlpProtocol::HttpProtobuf => "http/protobuf",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            OtlpProtocol::Grpc => 4317,
            OtlpProtocol::HttpProtobuf => 4318,
        }
    }
}

/// A checked OTLP endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `http://host:port` plus, for OTLP/HTTP, a base path the signal paths are appended to.
    pub base: Uri,
    pub protocol: OtlpProtocol,
}

impl Target {
    /// Checks `endpoint` (`http://host:port`, or `host:port`); the port defaults to the
    /// protocol's (4317, 4318). The proxy exports in plain text: `https://` is refused.
    pub fn parse(endpoint: &str, protocol: OtlpProtocol) -> Result<Target, String> {
        let trimmed = endpoint.trim();
        let bad = |why: &str| format!("OTLP endpoint {endpoint:?}: {why}");
        if trimmed.is_empty() {
            return Err(bad("empty"));
        }
        let text = if trimmed.contains("://") {
            trimmed.to_string()
        } else {
            format!("http://{trimmed}")
        };
        let uri: Uri = text.parse().map_err(|e| bad(&format!("not a URL: {e}")))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => return Err(bad("https is not supported by the proxy; use http://")),
            _ => return Err(bad("expected an http:// URL")),
        }
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host"))?;
        let authority = uri.authority().map_or("", |a| a.as_str());
        if authority.contains('@') {
            return Err(bad("credentials in the URL are not supported"));
        }
        let names_port = authority.len() > host.len() + authority.find(host).unwrap_or(0);
        let port = match uri.port_u16() {
            Some(p) if p != 0 => p,
            None if !names_port => protocol.default_port(),
            _ => return Err(bad("bad port")),
        };
        let path = uri.path().trim_end_matches('/');
        if protocol == OtlpProtocol::Grpc && !path.is_empty() {
            return Err(bad("a gRPC endpoint has no path"));
        }
        if uri.query().is_some() {
            return Err(bad("a query is not allowed"));
        }
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        let base = format!("http://{host}:{port}{path}")
            .parse()
            .map_err(|e| bad(&format!("not a URL: {e}")))?;
        Ok(Target { base, protocol })
    }

    /// The control plane's collector, as pushed: gRPC; an unspecified host (`0.0.0.0`, `[::]`,
    /// the address a collector listens on) means the host the control plane was reached at.
    pub fn pushed(endpoint: &str, control_host: &str) -> Result<Target, String> {
        let mut target = Target::parse(endpoint, OtlpProtocol::Grpc)?;
        let host = target.base.host().unwrap_or_default();
        if matches!(host, "0.0.0.0" | "[::]" | "::") && !control_host.is_empty() {
            let port = target.base.port_u16().unwrap_or(4317);
            let control_host = if control_host.contains(':') && !control_host.starts_with('[') {
                format!("[{control_host}]")
            } else {
                control_host.to_string()
            };
            target.base = format!("http://{control_host}:{port}")
                .parse()
                .map_err(|e| format!("OTLP endpoint {endpoint:?} at {control_host}: {e}"))?;
        }
        Ok(target)
    }

    /// The URL a signal is POSTed to over OTLP/HTTP (`signal_path` like `v1/traces`).
    pub fn http_url(&self, signal_path: &str) -> Uri {
        let base = self.base.to_string();
        format!("{}/{signal_path}", base.trim_end_matches('/'))
            .parse()
            .unwrap_or_else(|_| self.base.clone())
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let base = self.base.to_string();
        write!(
            f,
            "{} ({})",
            base.trim_end_matches('/'),
            self.protocol.as_str()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_checked_and_completed() {
        let g = Target::parse("http://collector:4317", OtlpProtocol::Grpc).unwrap();
        assert_eq!(g.to_string(), "http://collector:4317 (grpc)");
        let g = Target::parse("127.0.0.1", OtlpProtocol::Grpc).unwrap();
        assert_eq!(g.base.port_u16(), Some(4317));
        let h = Target::parse("http://collector", OtlpProtocol::HttpProtobuf).unwrap();
        assert_eq!(
            h.http_url("v1/traces").to_string(),
            "http://collector:4318/v1/traces"
        );
        let h = Target::parse("http://gw:8080/otlp/", OtlpProtocol::HttpProtobuf).unwrap();
        assert_eq!(
            h.http_url("v1/logs").to_string(),
            "http://gw:8080/otlp/v1/logs"
        );
        for bad in [
            "",
            "https://c:4317",
            "ftp://c",
            "http://",
            "http://c:4317/x",
            "http://c:99999",
            "http://c:0",
            "http://u@c",
        ] {
            assert!(Target::parse(bad, OtlpProtocol::Grpc).is_err(), "{bad:?}");
        }
        assert!(OtlpProtocol::parse("http/json").is_err());
        assert_eq!(
            OtlpProtocol::parse("http/protobuf").unwrap(),
            OtlpProtocol::HttpProtobuf
        );
    }

    #[test]
    fn a_pushed_wildcard_host_means_the_control_host() {
        let t = Target::pushed("http://0.0.0.0:4317", "10.0.0.7").unwrap();
        assert_eq!(t.to_string(), "http://10.0.0.7:4317 (grpc)");
        let t = Target::pushed("http://[::]:14317", "::1").unwrap();
        assert_eq!(t.to_string(), "http://[::1]:14317 (grpc)");
        let t = Target::pushed("http://collector:4317", "10.0.0.7").unwrap();
        assert_eq!(t.to_string(), "http://collector:4317 (grpc)");
    }
}
