//! Routing through the real binary: Host and absolute-form routing, short names, every match
//! kind, weighted splits, rewrites, redirects, direct responses, header operations and CORS.

mod common;

use common::{Mesh, service_entry};
use http::Method;
use testkit::client::{HttpClient, count_by_upstream, proxy_get};
use testkit::echo::EchoServer;

const REVIEWS: &str = "reviews.default.svc.cluster.local";

async fn reviews_mesh(vs: &str) -> (Mesh, EchoServer, EchoServer, EchoServer) {
    let v1 = EchoServer::start("v1").await;
    let v2 = EchoServer::start("v2").await;
    let v3 = EchoServer::start("v3").await;
    let se = service_entry(
        "reviews",
        REVIEWS,
        9080,
        "HTTP",
        &[
            (v1.addr(), "version=v1"),
            (v2.addr(), "version=v2"),
            (v3.addr(), "version=v3"),
        ],
    );
    let dr = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
"#;
    let mesh = Mesh::start(&[("se.yaml", &se), ("dr.yaml", dr), ("vs.yaml", vs)]).await;
    (mesh, v1, v2, v3)
}

#[tokio::test(flavor = "multi_thread")]
async fn weighted_split_is_within_a_few_percent() {
    let vs = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 70}
    - {destination: {host: reviews, subset: v2}, weight: 20}
    - {destination: {host: reviews, subset: v3}, weight: 10}
"#;
    let (mesh, _v1, _v2, _v3) = reviews_mesh(vs).await;
    let client = HttpClient::http1(mesh.outbound());
    let tally = count_by_upstream(4000, 32, || client.get("reviews:9080", "/", &[])).await;
    assert_eq!(tally.status(200), 4000, "{tally:?}");
    for (name, want) in [("v1", 0.70), ("v2", 0.20), ("v3", 0.10)] {
        let got = tally.share(name);
        assert!(
            (got - want).abs() < 0.03,
            "{name}: got {got:.3}, want {want} ({tally:?})"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn match_kinds_pick_the_first_matching_rule() {
    let vs = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - name: jason
    match:
    - headers: {end-user: {exact: jason}}
    route: [{destination: {host: reviews, subset: v2}}]
  - name: beta
    match:
    - queryParams: {beta: {exact: "1"}}
      withoutHeaders: {x-legacy: {}}
    route: [{destination: {host: reviews, subset: v3}}]
  - name: regex-and-method
    match:
    - uri: {regex: "/api/v[0-9]+/books"}
      method: {exact: POST}
    route: [{destination: {host: reviews, subset: v3}}]
  - name: case-insensitive
    match:
    - uri: {prefix: /Admin}
      ignoreUriCase: true
    route: [{destination: {host: reviews, subset: v2}}]
  - name: exact
    match:
    - uri: {exact: /exact}
    - authority: {prefix: "reviews.default"}
    route: [{destination: {host: reviews, subset: v2}}]
  - name: default
    route: [{destination: {host: reviews, subset: v1}}]
"#;
    let (mesh, _v1, _v2, _v3) = reviews_mesh(vs).await;
    let c = HttpClient::http1(mesh.outbound());
    let up = |r: testkit::client::Response| r.upstream().unwrap_or("-").to_string();
    assert_eq!(
        up(c.get("reviews:9080", "/", &[("end-user", "jason")])
            .await
            .unwrap()),
        "v2"
    );
    assert_eq!(
        up(c.get("reviews:9080", "/", &[("end-user", "mary")])
            .await
            .unwrap()),
        "v1"
    );
    assert_eq!(
        up(c.get("reviews:9080", "/?beta=1", &[]).await.unwrap()),
        "v3"
    );
    assert_eq!(
        up(c.get("reviews:9080", "/?beta=1", &[("x-legacy", "yes")])
            .await
            .unwrap()),
        "v1"
    );
    assert_eq!(
        up(c.get("reviews:9080", "/?beta=2", &[]).await.unwrap()),
        "v1"
    );
    let post = c
        .request(Method::POST, "http://reviews:9080/api/v2/books", &[], "{}")
        .await
        .unwrap();
    assert_eq!(up(post), "v3");
    assert_eq!(
        up(c.get("reviews:9080", "/api/v2/books", &[]).await.unwrap()),
        "v1",
        "GET does not match method POST"
    );
    assert_eq!(
        up(c.get("reviews:9080", "/api/v2/books/1", &[]).await.unwrap()),
        "v1",
        "regex must match the whole path"
    );
    assert_eq!(
        up(c.get("reviews:9080", "/ADMIN/users", &[]).await.unwrap()),
        "v2"
    );
    assert_eq!(
        up(c.get("reviews:9080", "/exact", &[]).await.unwrap()),
        "v2"
    );
    assert_eq!(
        up(c.get("reviews:9080", "/exact/not", &[]).await.unwrap()),
        "v1"
    );
    assert_eq!(
        up(c.get(&format!("{REVIEWS}:9080"), "/other", &[])
            .await
            .unwrap()),
        "v2",
        "authority prefix"
    );
    let rec = mesh.wait_log(|r| r["route_name"] == "jason").await;
    assert_eq!(rec["response_code"], 200);
    assert_eq!(
        rec["upstream_cluster"],
        format!("outbound|9080|v2|{REVIEWS}")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn names_resolve_like_istio_and_unknown_hosts_get_404() {
    let (mesh, _v1, _v2, _v3) = reviews_mesh("").await;
    let c = HttpClient::http1(mesh.outbound());
    for host in [
        "reviews",
        "reviews:9080",
        "reviews.default",
        "reviews.default.svc:9080",
        REVIEWS,
        &format!("{REVIEWS}:9080"),
    ] {
        let r = c.get(host, "/", &[]).await.unwrap();
        assert_eq!(r.status, 200, "host {host}");
    }
    // An HTTP_PROXY client sends absolute-form requests.
    let r = proxy_get(
        mesh.outbound(),
        &format!("http://{REVIEWS}:9080/via-proxy"),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json().unwrap().path, "/via-proxy");
    let r = c.get("ratings:9080", "/", &[]).await.unwrap();
    assert_eq!(r.status, 404);
    assert!(
        r.body.contains("ratings"),
        "body names the host: {}",
        r.body
    );
    let rec = mesh.wait_log(|r| r["authority"] == "ratings:9080").await;
    assert_eq!(rec["response_flags"], "NR");
}

#[tokio::test(flavor = "multi_thread")]
async fn rewrite_redirect_direct_response_and_headers() {
    let vs = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /old}}]
    redirect: {uri: /new, authority: reviews.example.com, redirectCode: 308}
  - match: [{uri: {prefix: /health}}]
    directResponse: {status: 503, body: {string: "maintenance"}}
  - match: [{uri: {prefix: /v1/}}]
    rewrite: {uri: /v2/, authority: reviews-internal}
    headers:
      request:
        set: {x-route: rewritten}
        add: {x-added: one}
        remove: [x-secret]
      response:
        set: {x-served-by: trellis}
        remove: [x-upstream-private]
    route:
    - destination: {host: reviews, subset: v1}
      headers:
        request: {set: {x-dest: v1}}
        response: {add: {x-dest-resp: v1}}
  - route: [{destination: {host: reviews, subset: v1}}]
"#;
    let (mesh, _v1, _v2, _v3) = reviews_mesh(vs).await;
    let c = HttpClient::http1(mesh.outbound());
    let r = c.get("reviews", "/old/page", &[]).await.unwrap();
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location"), Some("http://reviews.example.com/new"));
    let r = c.get("reviews", "/health", &[]).await.unwrap();
    assert_eq!((r.status.as_u16(), r.body.as_str()), (503, "maintenance"));
    let r = c
        .get(
            "reviews",
            "/v1/books?id=3",
            &[
                ("x-secret", "s"),
                ("x-echo-set-header", "x-upstream-private=1"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let seen = r.json().unwrap();
    assert_eq!(seen.path, "/v2/books");
    assert_eq!(seen.query.as_deref(), Some("id=3"));
    assert_eq!(seen.authority.as_deref(), Some("reviews-internal"));
    assert_eq!(seen.header("x-route"), Some("rewritten"));
    assert_eq!(seen.header("x-added"), Some("one"));
    assert_eq!(seen.header("x-dest"), Some("v1"));
    assert_eq!(seen.header("x-secret"), None);
    assert!(
        seen.header("x-request-id").is_some(),
        "the proxy adds x-request-id"
    );
    assert_eq!(r.header("x-served-by"), Some("trellis"));
    assert_eq!(r.header("x-dest-resp"), Some("v1"));
    assert_eq!(r.header("x-upstream-private"), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_preflight_and_actual_requests() {
    let vs = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - corsPolicy:
      allowOrigins: [{exact: "https://shop.example.com"}, {regex: "https://.*\\.dev\\.example\\.com"}]
      allowMethods: [GET, POST]
      allowHeaders: [authorization]
      exposeHeaders: [x-total]
      maxAge: 24h
      allowCredentials: true
    route: [{destination: {host: reviews, subset: v1}}]
"#;
    let (mesh, v1, _v2, _v3) = reviews_mesh(vs).await;
    let c = HttpClient::http1(mesh.outbound());
    let pre = c
        .request(
            Method::OPTIONS,
            "http://reviews/",
            &[
                ("origin", "https://a.dev.example.com"),
                ("access-control-request-method", "POST"),
            ],
            "",
        )
        .await
        .unwrap();
    assert_eq!(pre.status, 200);
    assert_eq!(
        pre.header("access-control-allow-origin"),
        Some("https://a.dev.example.com")
    );
    assert_eq!(pre.header("access-control-allow-methods"), Some("GET,POST"));
    assert_eq!(pre.header("access-control-max-age"), Some("86400"));
    assert_eq!(pre.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(v1.requests(), 0, "the preflight is answered by the proxy");
    let r = c
        .get("reviews", "/", &[("origin", "https://shop.example.com")])
        .await
        .unwrap();
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://shop.example.com")
    );
    assert_eq!(r.header("access-control-expose-headers"), Some("x-total"));
    let r = c
        .get("reviews", "/", &[("origin", "https://evil.example.org")])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn source_labels_and_port_matches_follow_the_proxy_and_the_port() {
    let web = EchoServer::start("web").await;
    let admin = EchoServer::start("admin").await;
    let canary = EchoServer::start("canary").await;
    let se = format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: shop, namespace: default}}
spec:
  hosts: [shop.default.svc.cluster.local]
  resolution: STATIC
  ports:
  - {{number: 80, name: http, protocol: HTTP}}
  - {{number: 8080, name: http-admin, protocol: HTTP}}
  endpoints:
  - {{address: 127.0.0.1, ports: {{http: {web}, http-admin: {admin}}}, labels: {{track: stable}}}}
  - {{address: 127.0.0.1, ports: {{http: {canary}, http-admin: {canary}}}, labels: {{track: canary}}}}
"#,
        web = web.port(),
        admin = admin.port(),
        canary = canary.port()
    );
    let dr = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: shop, namespace: default}\nspec:\n  host: shop\n  subsets:\n  - {name: stable, labels: {track: stable}}\n  - {name: canary, labels: {track: canary}}\n";
    let vs = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: default}
spec:
  hosts: [shop]
  http:
  - name: testers-to-canary
    match: [{sourceLabels: {role: tester}}]
    route: [{destination: {host: shop, subset: canary}}]
  - name: admin-port
    match: [{port: 8080}]
    route: [{destination: {host: shop, subset: stable, port: {number: 8080}}}]
  - name: default
    route: [{destination: {host: shop, subset: stable, port: {number: 80}}}]
"#;
    let files = [("se.yaml", se.as_str()), ("dr.yaml", dr), ("vs.yaml", vs)];
    let plain = Mesh::start(&files).await;
    let c = HttpClient::http1(plain.outbound());
    assert_eq!(
        c.get("shop", "/", &[]).await.unwrap().upstream(),
        Some("web")
    );
    assert_eq!(
        c.get("shop:80", "/", &[]).await.unwrap().upstream(),
        Some("web")
    );
    assert_eq!(
        c.get("shop:8080", "/", &[]).await.unwrap().upstream(),
        Some("admin")
    );
    // The same rules on a proxy whose workload carries role=tester.
    let tester = Mesh::start_with(&files, &["--labels", "app=qa,role=tester"]).await;
    let c = HttpClient::http1(tester.outbound());
    assert_eq!(
        c.get("shop", "/", &[]).await.unwrap().upstream(),
        Some("canary")
    );
    assert_eq!(
        c.get("shop:8080", "/", &[]).await.unwrap().upstream(),
        Some("canary")
    );
}
