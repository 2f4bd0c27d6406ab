use super::*;
use crate::load::load_str;
use crate::model::*;

/// The resources of `yaml`, panicking with every diagnostic when they do not load (shared by the
/// compiler's other test modules).
pub(super) fn config(yaml: &str) -> ConfigSet {
    let resources = load_str(yaml, "test.yaml").unwrap_or_else(|e| {
        panic!(
            "{}",
            e.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    ConfigSet::from_resources(resources).unwrap()
}

fn node(namespace: &str, labels: &[(&str, &str)]) -> NodeIdentity {
    NodeIdentity {
        workload: "client".into(),
        namespace: namespace.into(),
        service_account: "client".into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn vhost<'a>(cfg: &'a ProxyConfig, name: &str) -> &'a VirtualHost {
    cfg.virtual_hosts
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no virtual host {name}"))
}

pub(super) fn cluster<'a>(cfg: &'a ProxyConfig, name: &str) -> &'a Cluster {
    cfg.clusters
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no cluster {name}"))
}

fn forward(route: &HttpRoute) -> Vec<(&str, u32)> {
    match &route.action {
        RouteAction::Forward(d) => d.iter().map(|d| (d.cluster.as_str(), d.weight)).collect(),
        other => panic!("not a forward: {other:?}"),
    }
}

const REVIEWS_SE: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  addresses: [10.96.0.10]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 9080, name: http, protocol: HTTP}
  - {number: 9443, name: tcp-admin, protocol: TCP}
  endpoints:
  - {address: 127.0.0.1, labels: {app: reviews, version: v1}}
  - {address: 127.0.0.2, labels: {app: reviews, version: v2}, ports: {http: 19080}}
  - {address: 127.0.0.3, labels: {app: reviews, version: v3}}
"#;

#[test]
fn service_without_virtual_service_gets_default_routes() {
    let cfg = compile_standalone(&config(REVIEWS_SE), &node("default", &[]));
    let http = vhost(&cfg, "reviews.default.svc.cluster.local:9080");
    assert_eq!(http.protocol, Protocol::Http);
    assert_eq!(
        http.domains,
        [
            "reviews.default.svc.cluster.local",
            "reviews.default.svc.cluster.local:9080",
            "reviews",
            "reviews:9080",
            "reviews.default",
            "reviews.default:9080",
            "reviews.default.svc",
            "reviews.default.svc:9080",
            "10.96.0.10",
            "10.96.0.10:9080",
        ]
    );
    assert_eq!(
        http.addresses,
        ["10.96.0.10", "127.0.0.1", "127.0.0.2", "127.0.0.3"]
    );
    assert_eq!(http.http_routes.len(), 1);
    let route = &http.http_routes[0];
    assert_eq!(route.name, "default");
    assert!(route.matches.is_empty());
    assert_eq!(
        forward(route),
        [("outbound|9080||reviews.default.svc.cluster.local", 100)]
    );
    assert_eq!(route.retries.as_ref().unwrap().attempts, 2);
    assert!(http.tcp_routes.is_empty());

    // Not the default port: only `name:port` forms.
    let tcp = vhost(&cfg, "reviews.default.svc.cluster.local:9443");
    assert!(
        tcp.domains.iter().all(|d| d.ends_with(":9443")),
        "{:?}",
        tcp.domains
    );
    assert!(tcp.http_routes.is_empty());
    assert_eq!(
        tcp.tcp_routes[0].destinations[0].cluster,
        "outbound|9443||reviews.default.svc.cluster.local"
    );

    let c = cluster(&cfg, "outbound|9080||reviews.default.svc.cluster.local");
    assert_eq!(c.load_balancer, LoadBalancer::LeastRequest);
    assert_eq!(c.connection_pool, ConnectionPool::default());
    assert_eq!(c.outlier_detection, None);
    assert_eq!(
        c.endpoints
            .iter()
            .map(|e| (e.address.as_str(), e.port))
            .collect::<Vec<_>>(),
        [
            ("127.0.0.1", 9080),
            ("127.0.0.2", 19080),
            ("127.0.0.3", 9080)
        ]
    );
    assert_eq!(cfg.outbound_traffic_policy, OutboundTrafficPolicy::AllowAny);
}

#[test]
fn short_names_follow_the_proxy_namespace() {
    let cfg = compile_standalone(&config(REVIEWS_SE), &node("other", &[]));
    let http = vhost(&cfg, "reviews.default.svc.cluster.local:9080");
    assert!(!http.domains.contains(&"reviews".to_string()));
    assert!(http.domains.contains(&"reviews.default".to_string()));
    assert!(
        http.domains
            .contains(&"reviews.default.svc:9080".to_string())
    );
}

const REVIEWS_VS: &str = r#"
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match:
    - headers: {end-user: {exact: jason}}
    route:
    - destination: {host: reviews, subset: v2}
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 50
    - destination: {host: reviews, subset: v3}
      weight: 50
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 100, connectTimeout: 2s}
      http: {http1MaxPendingRequests: 10, maxRequestsPerConnection: 0}
    outlierDetection: {consecutive5xxErrors: 7, interval: 5s}
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer: {simple: ROUND_ROBIN}
  - name: v3
    labels: {version: v3}
"#;

#[test]
fn weighted_subsets_and_header_match() {
    let cfg = compile_standalone(
        &config(&format!("{REVIEWS_SE}{REVIEWS_VS}")),
        &node("default", &[]),
    );
    let http = vhost(&cfg, "reviews.default.svc.cluster.local:9080");
    assert_eq!(http.http_routes.len(), 2);
    let jason = &http.http_routes[0];
    assert_eq!(jason.name, "default/reviews[0]");
    assert_eq!(
        jason.matches[0].headers,
        [HeaderMatch {
            name: "end-user".into(),
            value: Some(StringMatch::Exact("jason".into()))
        }]
    );
    assert_eq!(
        forward(jason),
        [("outbound|9080|v2|reviews.default.svc.cluster.local", 100)]
    );
    assert_eq!(
        forward(&http.http_routes[1]),
        [
            ("outbound|9080|v1|reviews.default.svc.cluster.local", 50),
            ("outbound|9080|v3|reviews.default.svc.cluster.local", 50)
        ]
    );

    let v2 = cluster(&cfg, "outbound|9080|v2|reviews.default.svc.cluster.local");
    assert_eq!(v2.subset.as_deref(), Some("v2"));
    assert_eq!(v2.endpoints.len(), 1);
    assert_eq!(
        (v2.endpoints[0].address.as_str(), v2.endpoints[0].port),
        ("127.0.0.2", 19080)
    );
    // The subset's load balancer overrides; the rest is inherited from the rule.
    assert_eq!(v2.load_balancer, LoadBalancer::RoundRobin);
    assert_eq!(v2.connection_pool.max_connections, Some(100));
    assert_eq!(v2.connection_pool.connect_timeout_ms, 2000);
    assert_eq!(v2.connection_pool.http1_max_pending_requests, Some(10));
    assert_eq!(v2.connection_pool.max_requests_per_connection, None);
    assert_eq!(
        v2.outlier_detection,
        Some(crate::model::OutlierDetection {
            consecutive_5xx: Some(7),
            consecutive_gateway_errors: None,
            interval_ms: 5000,
            base_ejection_time_ms: 30_000,
            max_ejection_percent: 10,
            min_health_percent: 0,
        })
    );
    let v1 = cluster(&cfg, "outbound|9080|v1|reviews.default.svc.cluster.local");
    assert_eq!(v1.load_balancer, LoadBalancer::LeastRequest);
    assert_eq!(v1.endpoints[0].address, "127.0.0.1");
    // The TCP port keeps its default route: the http rules do not apply to it.
    let tcp = vhost(&cfg, "reviews.default.svc.cluster.local:9443");
    assert_eq!(tcp.tcp_routes.len(), 1);
    assert!(
        !cfg.clusters
            .iter()
            .any(|c| c.name == "outbound|9443|v1|reviews.default.svc.cluster.local")
    );
}

#[test]
fn rules_filtered_by_source_and_gateway() {
    let vs = r#"
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match:
    - sourceLabels: {app: productpage}
    route:
    - destination: {host: reviews, subset: v2}
  - match:
    - sourceNamespace: prod
    route:
    - destination: {host: reviews, subset: v3}
  - match:
    - gateways: [ingress]
      uri: {prefix: /gw}
    - uri: {prefix: /mesh}
      port: 9080
    route:
    - destination: {host: reviews, subset: v1}
  - match:
    - port: 1234
    route:
    - destination: {host: reviews, subset: v1}
"#;
    let set = config(&format!("{REVIEWS_SE}{vs}"));
    let product = compile_standalone(&set, &node("default", &[("app", "productpage")]));
    let names: Vec<&str> = vhost(&product, "reviews.default.svc.cluster.local:9080")
        .http_routes
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(names, ["default/reviews[0]", "default/reviews[2]"]);
    let r2 = &vhost(&product, "reviews.default.svc.cluster.local:9080").http_routes[1];
    assert_eq!(r2.matches.len(), 1, "the gateway-only match is dropped");
    assert_eq!(r2.matches[0].uri, Some(StringMatch::Prefix("/mesh".into())));
    assert_eq!(r2.matches[0].port, None);

    let prod = compile_standalone(&set, &node("prod", &[("app", "other")]));
    let names: Vec<&str> = vhost(&prod, "reviews.default.svc.cluster.local:9080")
        .http_routes
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(names, ["default/reviews[1]", "default/reviews[2]"]);
}

#[test]
fn gateway_only_virtual_services_do_not_apply_to_sidecars() {
    let vs = r#"
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: edge, namespace: default}
spec:
  hosts: [reviews]
  gateways: [istio-system/ingress]
  http:
  - route:
    - destination: {host: reviews, subset: v3}
"#;
    let cfg = compile_standalone(&config(&format!("{REVIEWS_SE}{vs}")), &node("default", &[]));
    let routes = &vhost(&cfg, "reviews.default.svc.cluster.local:9080").http_routes;
    assert_eq!(routes[0].name, "default");
}

#[test]
fn virtual_services_for_one_host_merge_in_name_order() {
    let vs = |name: &str, prefix: &str| {
        format!(
            "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  hosts: [reviews.default.svc.cluster.local]\n  http:\n  - match: [{{uri: {{prefix: {prefix}}}}}]\n    route: [{{destination: {{host: reviews}}}}]\n"
        )
    };
    let wildcard = "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: all, namespace: default}\nspec:\n  hosts: ['*.svc.cluster.local']\n  http:\n  - route: [{destination: {host: reviews}}]\n";
    let set = config(&format!(
        "{REVIEWS_SE}{}{}{wildcard}",
        vs("zz", "/z"),
        vs("aa", "/a")
    ));
    let cfg = compile_standalone(&set, &node("default", &[]));
    let names: Vec<&str> = vhost(&cfg, "reviews.default.svc.cluster.local:9080")
        .http_routes
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["default/aa[0]", "default/zz[0]"],
        "exact hosts win over the wildcard"
    );
}

#[test]
fn route_features_compile_with_istio_defaults() {
    let vs = r#"
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - name: moved
    match: [{uri: {exact: /old}}]
    redirect: {uri: /new}
  - name: teapot
    match: [{uri: {prefix: /tea}, ignoreUriCase: true}]
    directResponse: {status: 418, body: {bytes: aGVsbG8=}}
  - name: main
    match:
    - uri: {regex: '/api/v[0-9]+/.*'}
      method: {exact: GET}
      queryParams: {debug: {}}
      withoutHeaders: {X-Canary: {}}
    rewrite: {uriRegexRewrite: {match: '^/api/(.*)$', rewrite: '/\1'}, authority: backend}
    timeout: 3s
    retries: {attempts: 3, perTryTimeout: 500ms, retryOn: '5xx,gateway-error,reset,409,unavailable,deadline-exceeded'}
    fault:
      delay: {fixedDelay: 2s, percent: 10}
      abort: {grpcStatus: UNAVAILABLE}
    mirror: {host: reviews, subset: v2}
    mirrorPercentage: {value: 12.5}
    corsPolicy:
      allowOrigins: [{exact: 'https://a.example'}, {regex: 'https://.*\.b\.example'}]
      allowOrigin: ['*']
      allowMethods: [GET, POST]
      maxAge: 2m
      allowCredentials: true
    headers:
      request: {set: {X-Env: prod}, remove: [X-Debug]}
      response: {add: {X-Served-By: trellis}}
    route:
    - destination: {host: reviews, port: {number: 9080}}
      headers: {request: {set: {x-route: a}}}
  - name: no-retries
    route: [{destination: {host: reviews}}]
    retries: {attempts: 0}
    timeout: 0s
"#;
    let cfg = compile_standalone(&config(&format!("{REVIEWS_SE}{vs}")), &node("default", &[]));
    let routes = &vhost(&cfg, "reviews.default.svc.cluster.local:9080").http_routes;
    assert_eq!(routes.len(), 4);
    assert_eq!(
        routes[0].action,
        RouteAction::Redirect(Redirect {
            uri: Some("/new".into()),
            authority: None,
            port: None,
            scheme: None,
            code: 301
        })
    );
    assert_eq!(
        routes[1].action,
        RouteAction::DirectResponse(DirectResponse {
            status: 418,
            body: Some(b"hello".to_vec())
        })
    );
    assert!(routes[1].matches[0].ignore_uri_case);

    let main = &routes[2];
    let m = &main.matches[0];
    assert_eq!(m.uri, Some(StringMatch::Regex("/api/v[0-9]+/.*".into())));
    assert_eq!(
        m.query_params,
        [QueryParamMatch {
            name: "debug".into(),
            value: None
        }]
    );
    assert_eq!(
        m.without_headers,
        [HeaderMatch {
            name: "x-canary".into(),
            value: None
        }]
    );
    let rw = main.rewrite.as_ref().unwrap();
    assert_eq!(rw.authority.as_deref(), Some("backend"));
    assert_eq!(rw.uri_regex.as_ref().unwrap().replacement, "/\\1");
    assert_eq!(main.timeout_ms, Some(3000));
    let retries = main.retries.as_ref().unwrap();
    assert_eq!(retries.attempts, 3);
    assert_eq!(retries.per_try_timeout_ms, Some(500));
    assert_eq!(
        retries.retry_on,
        RetryOn {
            five_xx: true,
            gateway_error: true,
            reset: true,
            status_codes: vec![409],
            grpc_codes: vec![4, 14],
            ..RetryOn::default()
        }
    );
    let fault = main.fault.as_ref().unwrap();
    assert_eq!(
        fault.delay,
        Some(FaultDelay {
            fixed_delay_ms: 2000,
            percentage: 10.0
        })
    );
    assert_eq!(
        fault.abort,
        Some(FaultAbort {
            status: AbortStatus::Grpc(14),
            percentage: 100.0
        })
    );
    assert_eq!(
        main.mirrors,
        [Mirror {
            cluster: "outbound|9080|v2|reviews.default.svc.cluster.local".into(),
            percentage: 12.5
        }]
    );
    let cors = main.cors.as_ref().unwrap();
    assert_eq!(
        cors.allow_origins,
        [
            StringMatch::Exact("https://a.example".into()),
            StringMatch::Regex("https://.*\\.b\\.example".into()),
            StringMatch::Prefix(String::new()),
        ]
    );
    assert_eq!(cors.max_age_secs, Some(120));
    assert_eq!(cors.allow_credentials, Some(true));
    assert_eq!(
        main.headers.request.set,
        [("x-env".to_string(), "prod".to_string())]
    );
    assert_eq!(main.headers.request.remove, ["x-debug"]);
    assert_eq!(
        main.headers.response.add,
        [("x-served-by".to_string(), "trellis".to_string())]
    );
    match &main.action {
        RouteAction::Forward(d) => {
            assert_eq!(
                d[0].headers.request.set,
                [("x-route".to_string(), "a".to_string())]
            )
        }
        other => panic!("{other:?}"),
    }

    assert_eq!(routes[3].retries, None, "attempts: 0 disables retries");
    assert_eq!(
        routes[3].timeout_ms, None,
        "timeout: 0s disables the timeout"
    );
    assert_eq!(routes[0].retries, None, "a redirect is never retried");
    // Routes without their own retries get Istio's default policy.
    let cfg = compile_standalone(&config(REVIEWS_SE), &node("default", &[]));
    let default_route = &vhost(&cfg, "reviews.default.svc.cluster.local:9080").http_routes[0];
    let default_retry = default_route.retries.as_ref().unwrap();
    assert_eq!(
        default_retry.retry_on,
        RetryOn {
            connect_failure: true,
            refused_stream: true,
            status_codes: vec![503],
            grpc_codes: vec![1, 14],
            ..RetryOn::default()
        }
    );
}

#[test]
fn traffic_policy_precedence_and_load_balancers() {
    let dr = r#"
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  tcp:
  - match: [{port: 9443}]
    route: [{destination: {host: reviews, subset: hashed, port: {number: 9443}}}]
  http:
  - route: [{destination: {host: reviews, subset: hashed}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews.default.svc.cluster.local
  trafficPolicy:
    loadBalancer: {simple: RANDOM}
    outlierDetection: {consecutiveGatewayErrors: 3, consecutive5xxErrors: 0}
    portLevelSettings:
    - port: {number: 9443}
      connectionPool: {tcp: {maxConnections: 5}}
  subsets:
  - name: hashed
    labels: {app: reviews}
    trafficPolicy:
      loadBalancer:
        consistentHash: {httpCookie: {name: user, ttl: 0s}, maglev: {}}
"#;
    let cfg = compile_standalone(&config(&format!("{REVIEWS_SE}{dr}")), &node("default", &[]));
    let plain = cluster(&cfg, "outbound|9080||reviews.default.svc.cluster.local");
    assert_eq!(plain.load_balancer, LoadBalancer::Random);
    let od = plain.outlier_detection.as_ref().unwrap();
    assert_eq!(
        (od.consecutive_5xx, od.consecutive_gateway_errors),
        (None, Some(3))
    );
    // Port-level settings replace the rule's settings for that port, without inheriting.
    let admin = cluster(&cfg, "outbound|9443||reviews.default.svc.cluster.local");
    assert_eq!(admin.load_balancer, LoadBalancer::LeastRequest);
    assert_eq!(admin.outlier_detection, None);
    assert_eq!(admin.connection_pool.max_connections, Some(5));
    let hashed = cluster(
        &cfg,
        "outbound|9080|hashed|reviews.default.svc.cluster.local",
    );
    assert_eq!(
        hashed.load_balancer,
        LoadBalancer::ConsistentHash(ConsistentHash {
            key: HashKey::Cookie {
                name: "user".into(),
                path: None,
                ttl_ms: Some(0)
            },
            algorithm: HashAlgorithm::Maglev { table_size: 65537 },
        })
    );
    assert_eq!(hashed.endpoints.len(), 3);
    let tcp = vhost(&cfg, "reviews.default.svc.cluster.local:9443");
    assert_eq!(
        tcp.tcp_routes[0].destinations[0].cluster,
        "outbound|9443|hashed|reviews.default.svc.cluster.local"
    );
    let hashed_tcp = cluster(
        &cfg,
        "outbound|9443|hashed|reviews.default.svc.cluster.local",
    );
    assert_eq!(hashed_tcp.connection_pool.max_connections, Some(5));
}

#[test]
fn sidecar_limits_visibility_and_sets_policy() {
    let extra = r#"
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: other}
spec:
  hosts: [api.example.com]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: hidden, namespace: other}
spec:
  hosts: [hidden.example.com]
  ports: [{number: 80, name: http}]
  resolution: DNS
  exportTo: ['.']
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec:
  egress:
  - hosts: ['./*', 'other/api.example.com']
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: narrow, namespace: default}
spec:
  workloadSelector: {labels: {app: ratings}}
  egress:
  - port: {number: 9080, protocol: HTTP, name: http}
    hosts: ['./reviews.default.svc.cluster.local']
  - hosts: ['~/*']
"#;
    let set = config(&format!("{REVIEWS_SE}{extra}"));
    let cfg = compile_standalone(&set, &node("default", &[]));
    let hosts: Vec<&str> = cfg.virtual_hosts.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        hosts,
        [
            "api.example.com:443",
            "reviews.default.svc.cluster.local:9080",
            "reviews.default.svc.cluster.local:9443"
        ]
    );
    assert_eq!(
        cfg.outbound_traffic_policy,
        OutboundTrafficPolicy::RegistryOnly
    );
    let ext = cluster(&cfg, "outbound|443||api.example.com");
    assert_eq!(ext.endpoints[0].address, "api.example.com");
    assert_eq!(ext.protocol, Protocol::Tcp);

    let ratings = compile_standalone(&set, &node("default", &[("app", "ratings")]));
    let hosts: Vec<&str> = ratings
        .virtual_hosts
        .iter()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(hosts, ["reviews.default.svc.cluster.local:9080"]);
    assert_eq!(
        ratings.outbound_traffic_policy,
        OutboundTrafficPolicy::AllowAny
    );

    // Another namespace without a Sidecar sees what is exported to it.
    let other = compile_standalone(&set, &node("other", &[]));
    assert!(
        other
            .virtual_hosts
            .iter()
            .any(|v| v.service == "hidden.example.com")
    );
    let third = compile_standalone(&set, &node("third", &[]));
    assert!(
        !third
            .virtual_hosts
            .iter()
            .any(|v| v.service == "hidden.example.com")
    );
}

#[test]
fn passthrough_and_unknown_destinations() {
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: wild}
spec:
  hosts: ['*.example.com']
  ports: [{number: 80, name: http-web}, {number: 8080, name: http-alt, protocol: HTTP}]
  resolution: NONE
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: wild}
spec:
  hosts: ['*.example.com']
  http:
  - route: [{destination: {host: nowhere.example.org}}]
"#;
    let cfg = compile_standalone(&config(yaml), &node("default", &[]));
    let v80 = vhost(&cfg, "*.example.com:80");
    assert_eq!(v80.domains, ["*.example.com", "*.example.com:80"]);
    assert_eq!(v80.protocol, Protocol::Http);
    assert_eq!(
        forward(&v80.http_routes[0]),
        [("outbound|80||nowhere.example.org", 100)]
    );
    let v8080 = vhost(&cfg, "*.example.com:8080");
    assert_eq!(
        forward(&v8080.http_routes[0]),
        [("outbound|8080||nowhere.example.org", 100)]
    );
    assert_eq!(
        cluster(&cfg, "outbound|80||*.example.com").load_balancer,
        LoadBalancer::Passthrough
    );
    let unknown = cluster(&cfg, "outbound|80||nowhere.example.org");
    assert!(unknown.endpoints.is_empty());
    assert_eq!(unknown.protocol, Protocol::Unspecified);
}

#[test]
fn versions_are_content_hashes() {
    let set = config(&format!("{REVIEWS_SE}{REVIEWS_VS}"));
    let n = node("default", &[]);
    let a = compile_standalone(&set, &n);
    let b = compile_standalone(&set, &n);
    assert_eq!(a, b);
    assert_eq!(a.version.len(), 16);
    let changed = config(&format!(
        "{REVIEWS_SE}{}",
        REVIEWS_VS.replace("weight: 50", "weight: 51")
    ));
    assert_ne!(compile_standalone(&changed, &n).version, a.version);
    assert_ne!(
        compile_standalone(&set, &node("prod", &[])).version,
        a.version
    );
}

/// Reviews with sidecars (auto mTLS candidates) and service accounts, in namespace `shop`.
const MESH_REVIEWS_SE: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews.shop.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: 9080, name: http, protocol: HTTP, targetPort: 8080}
  endpoints:
  - {address: 127.0.0.1, labels: {app: reviews, version: v1, security.istio.io/tlsMode: istio}, serviceAccount: reviews}
  - {address: 127.0.0.2, labels: {app: legacy, version: v2, security.istio.io/tlsMode: istio}, serviceAccount: legacy}
  - {address: 127.0.0.3, labels: {app: reviews, version: v3, security.istio.io/tlsMode: istio}, serviceAccount: reviews, ports: {http: 9090}}
"#;

/// `(address, auto mTLS speaks mutual TLS, expected identity)` of `cluster`'s endpoints.
fn endpoint_security(cfg: &ProxyConfig, name: &str) -> Vec<(String, bool, Option<String>)> {
    cluster(cfg, name)
        .endpoints
        .iter()
        .map(|e| (e.address.clone(), e.mesh, e.identity.clone()))
        .collect()
}

fn mesh_of(cfg: &ProxyConfig, name: &str) -> Vec<(String, ClientTlsMode)> {
    let c = cluster(cfg, name);
    c.endpoints
        .iter()
        .map(|e| (e.address.clone(), c.tls.mode_for(e)))
        .collect()
}

#[test]
fn endpoint_identities_are_in_the_mesh_trust_domain() {
    let set = config(MESH_REVIEWS_SE);
    let client = node("shop", &[]);
    let name = "outbound|9080||reviews.shop.svc.cluster.local";
    let default = compile_standalone(&set, &client);
    let ids: Vec<_> = cluster(&default, name)
        .endpoints
        .iter()
        .map(|e| e.identity.clone().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "spiffe://cluster.local/ns/shop/sa/reviews",
            "spiffe://cluster.local/ns/shop/sa/legacy",
            "spiffe://cluster.local/ns/shop/sa/reviews",
        ]
    );
    let mesh = MeshSettings {
        trust_domain: "example.org".into(),
    };
    let other = compile_standalone_in(&set, &client, &mesh);
    let ids: Vec<_> = cluster(&other, name)
        .endpoints
        .iter()
        .map(|e| e.identity.clone().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "spiffe://example.org/ns/shop/sa/reviews",
            "spiffe://example.org/ns/shop/sa/legacy",
            "spiffe://example.org/ns/shop/sa/reviews",
        ]
    );
    // What endpoints must present is part of the config: a new trust domain is a new version.
    assert_ne!(default.version, other.version);
}

#[test]
fn cluster_local_principals_mean_the_local_trust_domain() {
    let policy = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-web, namespace: shop}
spec:
  action: ALLOW
  rules:
  - from: [{source: {principals: [cluster.local/ns/shop/sa/web]}}]
  - when: [{key: source.principal, values: [cluster.local/ns/shop/sa/batch]}]
  - from: [{source: {principals: [partner.example/ns/shop/sa/web]}}]
"#;
    let set = config(policy);
    let server = node("shop", &[]);
    let allowed = |cfg: &ProxyConfig, principal: &str| {
        use crate::authz::{Protocol, RequestAttributes};
        let ip = std::net::IpAddr::from([127, 0, 0, 1]);
        let attrs = RequestAttributes {
            protocol: Protocol::Http,
            peer_principal: Some(principal),
            method: Some("GET"),
            path: Some("/"),
            ..RequestAttributes::new(ip, ip, 9080)
        };
        cfg.authorization.evaluate(&attrs).is_allowed()
    };
    // Default trust domain: the principals as written.
    let default = compile_standalone(&set, &server);
    assert!(allowed(&default, "spiffe://cluster.local/ns/shop/sa/web"));
    assert!(allowed(&default, "spiffe://cluster.local/ns/shop/sa/batch"));
    assert!(!allowed(&default, "spiffe://example.org/ns/shop/sa/web"));
    // In example.org, `cluster.local` stands for example.org; other domains stay as written.
    let mesh = MeshSettings {
        trust_domain: "example.org".into(),
    };
    let local = compile_standalone_in(&set, &server, &mesh);
    assert!(allowed(&local, "spiffe://example.org/ns/shop/sa/web"));
    assert!(allowed(&local, "spiffe://example.org/ns/shop/sa/batch"));
    assert!(allowed(&local, "spiffe://partner.example/ns/shop/sa/web"));
    assert!(!allowed(&local, "spiffe://cluster.local/ns/shop/sa/web"));
    assert!(!allowed(&local, "spiffe://example.org/ns/shop/sa/other"));
}

#[test]
fn auto_mtls_sends_plaintext_where_the_destination_disables_mtls() {
    let name = "outbound|9080||reviews.shop.svc.cluster.local";
    let client = node("shop", &[]);
    let mtls = ClientTlsMode::IstioMutual;
    let plain = ClientTlsMode::Disable;
    let modes = |yaml: &str| {
        let cfg = compile_standalone(&config(&format!("{MESH_REVIEWS_SE}---{yaml}")), &client);
        mesh_of(&cfg, name)
    };
    let expect = |a: ClientTlsMode, b: ClientTlsMode, c: ClientTlsMode| {
        vec![
            ("127.0.0.1".to_string(), a),
            ("127.0.0.2".to_string(), b),
            ("127.0.0.3".to_string(), c),
        ]
    };
    // No policy: every endpoint with a sidecar gets mutual TLS.
    assert_eq!(modes(""), expect(mtls, mtls, mtls));
    // The namespace disables mTLS; the legacy workload's own policy re-enables it.
    let namespace_disable = r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: off, namespace: shop}
spec: {mtls: {mode: DISABLE}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: legacy-on, namespace: shop}
spec: {selector: {matchLabels: {app: legacy}}, mtls: {mode: STRICT}}
"#;
    assert_eq!(modes(namespace_disable), expect(plain, mtls, plain));
    // Port level: the workload port is the endpoint's target port (8080; 9090 for v3).
    let port_disable = r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: reviews-8080, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  mtls: {mode: STRICT}
  portLevelMtls: {8080: {mode: DISABLE}, 9080: {mode: PERMISSIVE}}
"#;
    assert_eq!(modes(port_disable), expect(plain, mtls, mtls));
    // A mesh-wide DISABLE in another namespace's policy does not leak: only the root one counts.
    let elsewhere = r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: off, namespace: other}
spec: {mtls: {mode: DISABLE}}
"#;
    assert_eq!(modes(elsewhere), expect(mtls, mtls, mtls));
    let mesh_wide = r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: off, namespace: istio-system}
spec: {mtls: {mode: DISABLE}}
"#;
    assert_eq!(modes(mesh_wide), expect(plain, plain, plain));
    // An explicit ISTIO_MUTUAL in a DestinationRule still wins over the destination's DISABLE.
    let explicit = format!(
        "{mesh_wide}---\n{}",
        r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: shop}
spec:
  host: reviews.shop.svc.cluster.local
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
"#
    );
    assert_eq!(modes(&explicit), expect(mtls, mtls, mtls));
    // The identities expected are unaffected.
    let cfg = compile_standalone(
        &config(&format!("{MESH_REVIEWS_SE}---{mesh_wide}")),
        &client,
    );
    assert!(
        endpoint_security(&cfg, name)
            .iter()
            .all(|(_, mesh, id)| !mesh && id.is_some())
    );
}
