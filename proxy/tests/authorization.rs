//! AuthorizationPolicy enforced by the inbound proxy: what a client sees (403 `RBAC: access
//! denied`, or the app's answer), the proxy's counts by policy, and policies scoped by selector
//! and namespace. Principal-based rules need mutual TLS and are covered with it.

mod common;

use common::{Mesh, stat_value};
use http::Method;
use std::time::Duration;
use testkit::client::HttpClient;
use testkit::echo::EchoServer;

const POLICIES: &str = "\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-admin-writes
  namespace: default
spec:
  selector:
    matchLabels:
      app: reviews
  action: DENY
  rules:
  - to:
    - operation:
        methods: [POST, DELETE]
        paths: [/admin/*]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: allow-reads
  namespace: default
spec:
  selector:
    matchLabels:
      app: reviews
  action: ALLOW
  rules:
  - to:
    - operation:
        methods: [GET]
        paths: [/public/*, /admin/*]
  - to:
    - operation:
        methods: [POST]
        paths: [/reviews/*, /admin/*]
    when:
    - key: request.headers[x-user]
      values: [alice]
---
# Another workload's policy: it must not touch reviews.
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: ratings-nothing
  namespace: default
spec:
  selector:
    matchLabels:
      app: ratings
---
# Another namespace's policy (not the root namespace): it must not touch default.
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: nothing
  namespace: other
spec: {}
";

async fn status(
    client: &HttpClient,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let r = client
        .request(method, &format!("http://reviews{path}"), headers, "")
        .await
        .expect("the proxy answers");
    (r.status.as_u16(), r.body)
}

#[tokio::test(flavor = "multi_thread")]
async fn inbound_requests_get_istios_authorization_outcome() {
    let app = EchoServer::start("reviews").await;
    let mesh = Mesh::start_with(
        &[("policies.yaml", POLICIES)],
        &[
            "--app-port",
            &app.port().to_string(),
            "--workload",
            "reviews-v1",
            "--labels",
            "app=reviews,version=v1",
        ],
    )
    .await;
    let client = HttpClient::http1(mesh.proxy.inbound_addr()).with_timeout(Duration::from_secs(5));

    // ALLOW matched: the app answers.
    let (code, body) = status(&client, Method::GET, "/public/books", &[]).await;
    assert_eq!(code, 200, "{body}");
    // An ALLOW policy applies and none of its rules match: denied.
    let (code, body) = status(&client, Method::GET, "/private", &[]).await;
    assert_eq!((code, body.trim()), (403, "RBAC: access denied"));
    // The second ALLOW rule needs the header.
    assert_eq!(
        status(&client, Method::POST, "/reviews/1", &[]).await.0,
        403
    );
    assert_eq!(
        status(&client, Method::POST, "/reviews/1", &[("x-user", "alice")])
            .await
            .0,
        200
    );
    // DENY wins over an ALLOW that matches.
    let (code, body) = status(&client, Method::POST, "/admin/x", &[("x-user", "alice")]).await;
    assert_eq!((code, body.trim()), (403, "RBAC: access denied"));
    // DENY only names POST and DELETE; GET is allowed by the first rule.
    assert_eq!(status(&client, Method::GET, "/admin/x", &[]).await.0, 200);
    // A query string is not part of the path Istio matches.
    assert_eq!(
        status(&client, Method::GET, "/public/b?admin=1", &[])
            .await
            .0,
        200
    );

    // Counted by the policy that decided.
    let stats = mesh.stats().await;
    let count = |labels: &str| {
        stat_value(
            &stats,
            &format!("trellis_authorization_denied_total{{{labels}}} "),
        )
    };
    assert_eq!(
        count("reason=\"deny_policy\",policy=\"default.deny-admin-writes\""),
        Some(1),
        "{stats}"
    );
    assert_eq!(
        count("reason=\"no_allow_match\",policy=\"\""),
        Some(2),
        "{stats}"
    );
    // Denied requests are reported like any other, with Istio's response code.
    assert!(
        stats.lines().any(|l| l.starts_with("istio_requests_total{")
            && l.contains("reporter=\"destination\"")
            && l.contains("response_code=\"403\"")),
        "{stats}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_change_applies_to_the_next_request() {
    let app = EchoServer::start("reviews").await;
    let mesh = Mesh::start_with(
        &[],
        &[
            "--app-port",
            &app.port().to_string(),
            "--labels",
            "app=reviews",
        ],
    )
    .await;
    let client = HttpClient::http1(mesh.proxy.inbound_addr()).with_timeout(Duration::from_secs(5));
    // No policy: everything is allowed.
    assert_eq!(
        status(&client, Method::DELETE, "/anything", &[]).await.0,
        200
    );
    // Allow-nothing in the workload's namespace denies everything.
    mesh.reconfigure(
        "deny.yaml",
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: allow-nothing\n  namespace: default\nspec: {}\n",
    )
    .await;
    assert_eq!(status(&client, Method::GET, "/anything", &[]).await.0, 403);
}

/// Echoes `ping` through the proxy's inbound port as opaque TCP: `Some(reply)` when the app
/// answered, `None` when the proxy closed the connection.
async fn tcp_echo(inbound: std::net::SocketAddr) -> Option<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(inbound).await.ok()?;
    s.write_all(b"\x00\x01binary-ping").await.ok()?;
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while !got.ends_with(b"binary-ping") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("the proxy answers or closes within 5 s")
            .ok()?;
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&buf[..n]);
    }
    Some(got)
}

#[tokio::test(flavor = "multi_thread")]
async fn opaque_tcp_follows_istios_rules_for_http_only_fields() {
    let app = testkit::tcp::TcpEchoServer::start("db").await;
    let port = app.addr().port();
    let mesh = Mesh::start_with(
        &[],
        &["--app-port", &port.to_string(), "--labels", "app=db"],
    )
    .await;
    let inbound = mesh.proxy.inbound_addr();
    assert!(
        tcp_echo(inbound).await.is_some(),
        "no policy: the app answers"
    );

    // ALLOW with an HTTP-only field: never matches TCP, so the connection is denied.
    let allow_http_only = format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: http-only\n  namespace: default\nspec:\n  rules:\n  - to:\n    - operation:\n        methods: [GET]\n        ports: [\"{port}\"]\n"
    );
    mesh.reconfigure("policy.yaml", &allow_http_only).await;
    assert_eq!(
        tcp_echo(inbound).await,
        None,
        "ALLOW with methods denies TCP"
    );

    // ALLOW by port alone matches TCP.
    let allow_port = format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: http-only\n  namespace: default\nspec:\n  rules:\n  - to:\n    - operation:\n        ports: [\"{port}\"]\n"
    );
    mesh.reconfigure("policy.yaml", &allow_port).await;
    assert!(
        tcp_echo(inbound).await.is_some(),
        "ALLOW by port admits TCP"
    );

    // DENY drops its HTTP-only fields for TCP: methods + port denies every connection on the port.
    let deny = format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: no-writes\n  namespace: default\nspec:\n  action: DENY\n  rules:\n  - to:\n    - operation:\n        methods: [POST]\n        ports: [\"{port}\"]\n"
    );
    mesh.reconfigure("deny.yaml", &deny).await;
    assert_eq!(
        tcp_echo(inbound).await,
        None,
        "DENY with methods denies TCP"
    );
    let stats = mesh.stats().await;
    assert!(
        stats.contains(
            "trellis_authorization_denied_total{reason=\"deny_policy\",policy=\"default.no-writes\"} 1"
        ),
        "{stats}"
    );
}
