//! The bookinfo sample's Istio configuration, loaded from files and compiled for the productpage
//! sidecar, asserted on the model the proxy executes.

use std::path::PathBuf;
use trellis_api::model::*;
use trellis_api::{ConfigSet, Kind, compile_standalone, load_path};

fn bookinfo() -> ConfigSet {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/bookinfo");
    load_path(&dir).unwrap_or_else(|errors| {
        panic!(
            "{}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

fn productpage() -> NodeIdentity {
    NodeIdentity {
        workload: "productpage-v1".into(),
        namespace: "bookinfo".into(),
        service_account: "bookinfo-productpage".into(),
        labels: [("app", "productpage"), ("version", "v1")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn vhost<'a>(cfg: &'a ProxyConfig, name: &str) -> &'a VirtualHost {
    cfg.virtual_hosts.iter().find(|v| v.name == name).unwrap()
}

fn cluster<'a>(cfg: &'a ProxyConfig, name: &str) -> &'a Cluster {
    cfg.clusters.iter().find(|c| c.name == name).unwrap()
}

#[test]
fn loads_every_resource_with_its_source() {
    let set = bookinfo();
    assert_eq!(set.len(), 8);
    assert_eq!(set.of_kind(Kind::ServiceEntry).count(), 4);
    assert_eq!(set.of_kind(Kind::VirtualService).count(), 2);
    assert_eq!(set.of_kind(Kind::DestinationRule).count(), 2);
    let reviews = set
        .of_kind(Kind::VirtualService)
        .find(|r| r.name() == "reviews")
        .unwrap();
    assert!(
        reviews
            .source
            .file
            .as_deref()
            .unwrap()
            .ends_with("tests/bookinfo/reviews.yaml")
    );
    let weight = reviews
        .source
        .position("spec.http[1].route[1].weight")
        .unwrap();
    assert_eq!((weight.line, weight.column), (26, 7));
    assert!(set.warnings().is_empty(), "{:?}", set.warnings());
}

#[test]
fn compiles_the_productpage_sidecar() {
    let cfg = compile_standalone(&bookinfo(), &productpage());
    let names: Vec<&str> = cfg.virtual_hosts.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "mysqldb.bookinfo.svc.cluster.local:3306",
            "productpage.bookinfo.svc.cluster.local:9080",
            "ratings.bookinfo.svc.cluster.local:9080",
            "reviews.bookinfo.svc.cluster.local:9080",
        ]
    );

    // reviews: jason goes to v2, everyone else is split 50/50 between v1 and v3.
    let reviews = vhost(&cfg, "reviews.bookinfo.svc.cluster.local:9080");
    assert!(reviews.domains.contains(&"reviews".to_string()));
    assert!(reviews.domains.contains(&"reviews:9080".to_string()));
    assert_eq!(reviews.http_routes.len(), 2);
    let jason = &reviews.http_routes[0];
    assert_eq!(jason.name, "bookinfo/reviews[0]");
    assert_eq!(
        jason.matches,
        [RequestMatch {
            headers: vec![HeaderMatch {
                name: "end-user".into(),
                value: Some(StringMatch::Exact("jason".into())),
            }],
            ..RequestMatch::default()
        }]
    );
    assert_eq!(
        jason.action,
        RouteAction::Forward(vec![WeightedDestination {
            cluster: "outbound|9080|v2|reviews.bookinfo.svc.cluster.local".into(),
            weight: 100,
            headers: HeaderOperations::default(),
        }])
    );
    let split = &reviews.http_routes[1];
    assert!(split.matches.is_empty());
    let RouteAction::Forward(dests) = &split.action else {
        panic!("{:?}", split.action)
    };
    let dests: Vec<(&str, u32)> = dests
        .iter()
        .map(|d| (d.cluster.as_str(), d.weight))
        .collect();
    assert_eq!(
        dests,
        [
            ("outbound|9080|v1|reviews.bookinfo.svc.cluster.local", 50),
            ("outbound|9080|v3|reviews.bookinfo.svc.cluster.local", 50),
        ]
    );
    assert_eq!(split.timeout_ms, None);
    assert_eq!(split.retries.as_ref().unwrap().attempts, 2);

    // ratings: jason gets a 7s delay on every request and a 500 on half of them.
    let ratings = vhost(&cfg, "ratings.bookinfo.svc.cluster.local:9080");
    let fault = ratings.http_routes[0].fault.as_ref().unwrap();
    assert_eq!(
        fault,
        &Fault {
            delay: Some(FaultDelay {
                fixed_delay_ms: 7000,
                percentage: 100.0
            }),
            abort: Some(FaultAbort {
                status: AbortStatus::Http(500),
                percentage: 50.0
            }),
        }
    );
    assert_eq!(ratings.http_routes[1].fault, None);

    // The reviews circuit breaker applies to the whole service and to every subset.
    for subset in [None, Some("v1"), Some("v2"), Some("v3")] {
        let c = cluster(
            &cfg,
            &cluster_name("reviews.bookinfo.svc.cluster.local", 9080, subset),
        );
        assert_eq!(
            c.connection_pool,
            ConnectionPool {
                max_connections: Some(1),
                connect_timeout_ms: 10_000,
                http1_max_pending_requests: Some(1),
                http2_max_requests: None,
                max_requests_per_connection: Some(1),
                max_retries: None,
                idle_timeout_ms: None,
            }
        );
        assert_eq!(
            c.outlier_detection,
            Some(OutlierDetection {
                consecutive_5xx: Some(1),
                consecutive_gateway_errors: None,
                interval_ms: 1000,
                base_ejection_time_ms: 180_000,
                max_ejection_percent: 100,
                min_health_percent: 0,
            })
        );
        assert_eq!(c.load_balancer, LoadBalancer::LeastRequest);
    }
    let v3 = cluster(&cfg, "outbound|9080|v3|reviews.bookinfo.svc.cluster.local");
    assert_eq!(
        v3.endpoints,
        [Endpoint {
            address: "127.0.0.13".into(),
            port: 9080,
            labels: [("app", "reviews"), ("version", "v3")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            weight: 2,
            ..Default::default()
        }]
    );
    assert_eq!(
        cluster(&cfg, "outbound|9080||reviews.bookinfo.svc.cluster.local")
            .endpoints
            .len(),
        3
    );

    // productpage: no VirtualService, so the default route; its endpoint port comes from the
    // ServiceEntry endpoint's `ports` map.
    let pp = vhost(&cfg, "productpage.bookinfo.svc.cluster.local:9080");
    assert_eq!(pp.http_routes[0].name, "default");
    let pp_cluster = cluster(
        &cfg,
        "outbound|9080||productpage.bookinfo.svc.cluster.local",
    );
    assert_eq!(pp_cluster.endpoints[0].port, 19080);

    // mysql: opaque TCP with its default TCP route.
    let mysql = vhost(&cfg, "mysqldb.bookinfo.svc.cluster.local:3306");
    assert_eq!(mysql.protocol, Protocol::Tcp);
    assert!(mysql.http_routes.is_empty());
    assert_eq!(
        mysql.tcp_routes[0].destinations[0].cluster,
        "outbound|3306||mysqldb.bookinfo.svc.cluster.local"
    );
    assert_eq!(mysql.addresses, ["127.0.0.31"]);

    // Every route points at a cluster that exists.
    for v in &cfg.virtual_hosts {
        for r in &v.http_routes {
            if let RouteAction::Forward(ds) = &r.action {
                for d in ds {
                    assert!(
                        cfg.clusters.iter().any(|c| c.name == d.cluster),
                        "{}",
                        d.cluster
                    );
                }
            }
        }
    }
    let json = serde_json::to_string(&cfg).unwrap();
    let back: ProxyConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, cfg);
}

#[test]
fn equal_configs_get_equal_versions() {
    let a = compile_standalone(&bookinfo(), &productpage());
    let b = compile_standalone(&bookinfo(), &productpage());
    assert_eq!(a.version, b.version);
    assert!(!a.version.is_empty());
}
