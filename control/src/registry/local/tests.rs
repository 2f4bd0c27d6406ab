use super::*;

fn workload(id: &str, app: &str, port: u16) -> Workload {
    Workload {
        proxy_id: id.to_string(),
        name: format!("{app}-v1"),
        namespace: "default".to_string(),
        service_account: "bookinfo".to_string(),
        labels: BTreeMap::from([
            ("app".to_string(), app.to_string()),
            ("version".to_string(), "v1".to_string()),
        ]),
        address: format!("127.0.0.1:{port}").parse().unwrap(),
        app_port: 9080,
        app_protocol: "http".to_string(),
        connected: true,
    }
}

fn config(yaml: &str) -> ConfigSet {
    ConfigSet::from_resources(trellis_api::load_str(yaml, "test.yaml").unwrap()).unwrap()
}

#[tokio::test]
async fn unselected_workloads_form_an_implicit_service_per_app() {
    let registry = LocalRegistry::new(Duration::from_secs(10));
    registry.register(workload("a", "reviews", 15106));
    registry.register(workload("b", "reviews", 15206));
    registry.register(workload("c", "ratings", 15306));
    let services = registry.services(&ConfigSet::new());
    let reviews = services
        .iter()
        .find(|s| s.hostname == "reviews.default.svc.cluster.local")
        .expect("implicit reviews service");
    assert_eq!(reviews.ports.len(), 1);
    assert_eq!(reviews.ports[0].number, 9080);
    assert_eq!(
        reviews.ports[0].protocol,
        trellis_api::model::Protocol::Http
    );
    let mut ports: Vec<u16> = reviews
        .endpoints
        .iter()
        .map(|e| reviews.endpoint_port(e, &reviews.ports[0]))
        .collect();
    ports.sort();
    assert_eq!(ports, vec![15106, 15206]);
    assert_eq!(reviews.endpoints[0].labels["version"], "v1");
    // Registered proxies are sidecars: auto mTLS reaches them over mutual TLS.
    assert_eq!(
        reviews.endpoints[0].labels[trellis_api::model::TLS_MODE_LABEL],
        "istio"
    );
    assert!(
        services
            .iter()
            .any(|s| s.hostname == "ratings.default.svc.cluster.local")
    );
}

#[tokio::test]
async fn service_entry_selectors_pick_registered_workloads() {
    let registry = LocalRegistry::new(Duration::from_secs(10));
    registry.register(workload("a", "reviews", 15106));
    let mut other_ns = workload("b", "reviews", 15206);
    other_ns.namespace = "other".to_string();
    registry.register(other_ns);
    let set = config(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.mesh.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: reviews}}
",
    );
    let services = registry.services(&set);
    let se = services
        .iter()
        .find(|s| s.hostname == "reviews.mesh.local")
        .unwrap();
    assert_eq!(
        se.endpoints.len(),
        1,
        "only the workload in the SE's namespace"
    );
    assert_eq!(se.endpoint_port(&se.endpoints[0], &se.ports[0]), 15106);
    assert!(
        !services
            .iter()
            .any(|s| s.hostname == "reviews.default.svc.cluster.local"),
        "a selected workload forms no implicit service"
    );
    assert!(
        services
            .iter()
            .any(|s| s.hostname == "reviews.other.svc.cluster.local"),
        "the unselected one does"
    );
}

#[tokio::test(start_paused = true)]
async fn disconnected_workloads_leave_after_the_grace_period_unless_back() {
    let registry = LocalRegistry::new(Duration::from_secs(10));
    let mut changes = registry.subscribe();
    let g = registry.register(workload("a", "reviews", 15106)).unwrap();
    let g2 = registry.register(workload("b", "ratings", 15206)).unwrap();
    registry.disconnected("a", g);
    registry.disconnected("b", g2);
    // "b" comes back before the grace period ends.
    tokio::time::sleep(Duration::from_secs(5)).await;
    registry.register(workload("b", "ratings", 15206));
    changes.borrow_and_update();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let names: Vec<String> = registry
        .workloads()
        .into_iter()
        .map(|w| w.proxy_id)
        .collect();
    assert_eq!(names, vec!["b".to_string()]);
    assert!(changes.has_changed().unwrap(), "removal is announced");
}

#[tokio::test]
async fn a_new_proxy_at_a_departed_proxys_address_replaces_it_at_once() {
    let registry = LocalRegistry::new(Duration::from_secs(10));
    let old = registry
        .register(workload("old", "reviews", 15106))
        .unwrap();
    registry.register(workload("neighbour", "reviews", 15206));
    registry.disconnected("old", old);
    let mut restarted = workload("new", "reviews", 15106);
    restarted.service_account = "reviews".to_string();
    registry.register(restarted);
    let services = registry.services(&ConfigSet::new());
    let reviews = services
        .iter()
        .find(|s| s.hostname == "reviews.default.svc.cluster.local")
        .expect("reviews");
    // One endpoint per address: the restarted proxy's, not the departed one's, and the neighbour.
    let mut at: Vec<(u16, Option<String>)> = reviews
        .endpoints
        .iter()
        .map(|e| {
            (
                reviews.endpoint_port(e, &reviews.ports[0]),
                e.service_account.clone(),
            )
        })
        .collect();
    at.sort();
    assert_eq!(
        at,
        vec![
            (15106, Some("reviews".to_string())),
            (15206, Some("bookinfo".to_string()))
        ]
    );
}
