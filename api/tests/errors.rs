//! Rejected configuration: every problem is reported, each with its file, line, column, resource
//! and field, in source order.

use trellis_api::{Severity, load_path, load_str};

const BAD: &str = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
      weight: 50
    - destination:
        host: reviews
        subset: v3
      weight: 150
    timeout: 10x
    retries:
      attempts: 3
      retryOn: 5xx,bogus
    fault:
      abort:
        httpStatus: 700
  - match:
    - uri:
        regex: "(unclosed"
      headers:
        end-user:
          exact: jason
          prefix: ja
    redirect:
      uri: /new
      redirectCode: 200
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: Reviews
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpHeaderName: x-user
        useSourceIp: true
    outlierDetection:
      interval: 0s
      maxEjectionPercent: 150
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v1
    labels: {version: "bad value"}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: edge
spec:
  hosts: [edge]
  tls:
  - match: [{sniHosts: [edge]}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: ext
spec:
  hosts: [api.example.com]
  ports:
  - number: 70000
    name: HTTP
    protocol: QUIC
  resolution: STATIC
  endpoints:
  - address: api.example.com
    ports: {grpc: 8080}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: reviews
spec: {}
"#;

#[test]
fn every_error_names_file_line_resource_and_field() {
    let diagnostics = load_str(BAD, "bad.yaml").unwrap_err();
    let shown: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    let expected = [
        "bad.yaml:9:5: warning: VirtualService default/reviews: spec.http[0].route: destination weights add up to 200, not 100; traffic is split in proportion",
        "bad.yaml:17:7: VirtualService default/reviews: spec.http[0].route[1].weight: weight 150 must be within 0..=100",
        "bad.yaml:18:5: VirtualService default/reviews: spec.http[0].timeout: invalid duration `10x` (expected e.g. `500ms`, `1.5s`, `1m`, `1h30m`)",
        "bad.yaml:21:7: VirtualService default/reviews: spec.http[0].retries.retryOn: `bogus` is not a retryOn policy (expected HTTP status codes or 5xx, gateway-error, reset, connect-failure, retriable-4xx, refused-stream, retriable-status-codes, cancelled, deadline-exceeded, internal, resource-exhausted, unavailable)",
        "bad.yaml:24:9: VirtualService default/reviews: spec.http[0].fault.abort.httpStatus: status 700 must be within 200..=599",
        "bad.yaml:27:9: VirtualService default/reviews: spec.http[1].match[0].uri.regex: invalid regex `(unclosed` (RE2 syntax): unclosed group",
        "bad.yaml:29:9: VirtualService default/reviews: spec.http[1].match[0].headers.end-user: set only one of `exact`, `prefix`, `regex`",
        "bad.yaml:34:7: VirtualService default/reviews: spec.http[1].redirect.redirectCode: 200 is not a redirect code (must be 3xx)",
        "bad.yaml:41:3: DestinationRule default/reviews: spec.host: host `Reviews` is invalid: label `Reviews` must be lower-case letters, digits and `-` (at most 63)",
        "bad.yaml:44:7: DestinationRule default/reviews: spec.trafficPolicy.loadBalancer.consistentHash: consistentHash needs exactly one of `httpHeaderName`, `httpCookie`, `useSourceIp: true`, `httpQueryParameterName`",
        "bad.yaml:48:7: DestinationRule default/reviews: spec.trafficPolicy.outlierDetection.interval: duration `0s` must be at least 1ms",
        "bad.yaml:49:7: DestinationRule default/reviews: spec.trafficPolicy.outlierDetection.maxEjectionPercent: 150 must be within 0..=100",
        "bad.yaml:53:5: DestinationRule default/reviews: spec.subsets[1].name: subset `v1` is defined twice",
        "bad.yaml:54:14: DestinationRule default/reviews: spec.subsets[1].labels.version: label value `bad value` must be at most 63 letters, digits, `-`, `_` or `.`, starting and ending with a letter or digit",
        "bad.yaml:62:3: VirtualService default/edge: spec.tls: `tls` is unsupported by Trellis",
        "bad.yaml:72:5: ServiceEntry default/ext: spec.ports[0].number: port 70000 must be within 1..=65535",
        "bad.yaml:73:5: ServiceEntry default/ext: spec.ports[0].name: port name `HTTP` must be a DNS-1123 label",
        "bad.yaml:74:5: ServiceEntry default/ext: spec.ports[0].protocol: unknown protocol `QUIC`, expected one of HTTP, HTTP2, GRPC, GRPC-WEB, HTTPS, TLS, TCP, MONGO, MYSQL, REDIS",
        "bad.yaml:77:5: ServiceEntry default/ext: spec.endpoints[0].address: `api.example.com` is not an IP address (resolution STATIC)",
        "bad.yaml:78:13: ServiceEntry default/ext: spec.endpoints[0].ports.grpc: port `grpc` is not a port name of this ServiceEntry",
        "bad.yaml:81:1: Deployment default/reviews: kind: unknown kind `Deployment` (apps/v1); Trellis reads VirtualService, DestinationRule, ServiceEntry, Gateway, Sidecar (networking.istio.io), PeerAuthentication, AuthorizationPolicy (security.istio.io) and LocalRateLimit (networking.trellis.io)",
    ];
    assert_eq!(shown, expected);

    // The structured form carries the same facts for the REST API.
    let weight = &diagnostics[1];
    assert_eq!(weight.severity, Severity::Error);
    assert_eq!(weight.file.as_deref(), Some("bad.yaml"));
    assert_eq!((weight.line, weight.column), (Some(17), Some(7)));
    assert_eq!(
        weight.resource.as_deref(),
        Some("VirtualService default/reviews")
    );
    assert_eq!(
        weight.field.as_deref(),
        Some("spec.http[0].route[1].weight")
    );
    let json = serde_json::to_value(weight).unwrap();
    assert_eq!(json["field"], "spec.http[0].route[1].weight");
    assert_eq!(json["line"], 17);
}

#[test]
fn misspelled_and_unsupported_fields_read_differently() {
    let base = "apiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\nmetadata:\n  name: r\n  namespace: shop\nspec:\n  host: r\n  trafficPolicy:\n    loadBalancer:\n";
    let typo = load_str(&format!("{base}      simpel: RANDOM\n"), "dr.yaml").unwrap_err();
    assert_eq!(
        typo[0].to_string(),
        "dr.yaml:10:7: DestinationRule shop/r: spec.trafficPolicy.loadBalancer.simpel: unknown field `simpel`, expected one of `simple`, `consistentHash`, `localityLbSetting`, `warmupDurationSecs`, `warmup`"
    );
    let unsupported = load_str(
        &format!("{base}      localityLbSetting: {{enabled: true}}\n"),
        "dr.yaml",
    )
    .unwrap_err();
    assert_eq!(
        unsupported[0].to_string(),
        "dr.yaml:10:7: DestinationRule shop/r: spec.trafficPolicy.loadBalancer.localityLbSetting: `localityLbSetting` is unsupported by Trellis"
    );
    let bad_enum = load_str(&format!("{base}      simple: FASTEST\n"), "dr.yaml").unwrap_err();
    assert_eq!(
        bad_enum[0].to_string(),
        "dr.yaml:10:7: DestinationRule shop/r: spec.trafficPolicy.loadBalancer.simple: unknown variant `FASTEST`, expected one of `UNSPECIFIED`, `LEAST_CONN`, `RANDOM`, `PASSTHROUGH`, `ROUND_ROBIN`, `LEAST_REQUEST`"
    );
    let bad_type = load_str(&format!("{base}      simple: [RANDOM]\n"), "dr.yaml").unwrap_err();
    assert!(
        bad_type[0]
            .to_string()
            .starts_with("dr.yaml:10:7: DestinationRule shop/r: spec.trafficPolicy.loadBalancer.simple: invalid type: sequence"),
        "{}",
        bad_type[0]
    );
}

#[test]
fn syntax_errors_and_duplicates_across_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("broken.yaml"),
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: s\nspec: {}\n",
    )
    .unwrap();
    let vs = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: ratings\n  namespace: shop\nspec:\n  hosts: [ratings]\n  http:\n  - route:\n    - destination: {host: ratings}\n";
    std::fs::write(dir.path().join("a.yaml"), vs).unwrap();
    std::fs::create_dir(dir.path().join("more")).unwrap();
    std::fs::write(
        dir.path().join("more/b.json"),
        r#"{"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
 "metadata": {"name": "ratings", "namespace": "shop"},
 "spec": {"hosts": ["ratings"], "http": [{"route": [{"destination": {"host": "ratings"}}]}]}}"#,
    )
    .unwrap();

    let errors = load_path(dir.path()).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let syntax = errors[0].to_string();
    assert!(syntax.contains("broken.yaml:4:"), "{syntax}");
    assert!(syntax.contains("YAML syntax error"), "{syntax}");

    std::fs::remove_file(dir.path().join("broken.yaml")).unwrap();
    let errors = load_path(dir.path()).unwrap_err();
    assert_eq!(errors.len(), 1);
    let a = dir.path().join("a.yaml").display().to_string();
    let b = dir.path().join("more/b.json").display().to_string();
    assert_eq!(
        errors[0].to_string(),
        format!(
            "{b}:2:15: VirtualService shop/ratings: metadata.name: VirtualService shop/ratings is defined twice: first at {a}:1"
        )
    );
}

#[test]
fn security_resources_are_accepted() {
    let yaml = r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: ratings, namespace: shop}
spec:
  selector: {matchLabels: {app: ratings}}
  action: ALLOW
  rules:
  - from: [{source: {principals: [cluster.local/ns/shop/sa/reviews]}}]
    to: [{operation: {methods: [GET], ports: ["9080"]}}]
"#;
    let resources = load_str(yaml, "security.yaml").unwrap();
    assert_eq!(resources.len(), 2);
    // Both are enforced by the proxies: nothing to warn about.
    for r in &resources {
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }
    let wrong_group = load_str(
        &yaml.replace("security.istio.io/v1beta1", "networking.istio.io/v1beta1"),
        "security.yaml",
    )
    .unwrap_err();
    let error = wrong_group.iter().find(|d| d.is_error()).unwrap();
    assert_eq!(
        error.to_string(),
        "security.yaml:8:1: apiVersion: AuthorizationPolicy is not served as `networking.istio.io/v1beta1`; use security.istio.io/v1, v1beta1"
    );
}
