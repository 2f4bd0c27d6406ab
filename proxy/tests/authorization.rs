//! AuthorizationPolicy enforced by the inbound proxy: what a client sees (403 `RBAC: access
//! denied`, or the app's answer), the proxy's counts by policy, and policies scoped by selector
//! and namespace. Principal-based rules need mutual TLS and are covered with it.

mod common;

use common::Mesh;
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
    let stats = testkit::client::get(mesh.proxy.stats_addr(), "stats", "/stats/prometheus", &[])
        .await
        .expect("stats")
        .body;
    let count = |labels: &str| {
        stats
            .lines()
            .find(|l| l.starts_with(&format!("trellis_authorization_denied_total{{{labels}}}")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok())
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
