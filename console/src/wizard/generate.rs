//! From one wizard section's settings and the current VirtualService/DestinationRule (as stored,
//! JSON) to the new ones. Each section changes only its own part, so applying weights keeps the
//! retries, faults and connection pool another section wrote: the merge works on the stored
//! documents, never from scratch. Like Kiali, both resources are named after the service.

use serde_json::{Map, Value, json};

/// The service the wizard edits.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub namespace: String,
    /// The service's name, also the name of the resources written.
    pub name: String,
    /// Its fully qualified host, the `host` of every destination.
    pub host: String,
}

/// What one section asks for, already checked field by field.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The default route's split, `(version, weight)`, weights summing to 100.
    Weights(Vec<(String, u32)>),
    /// Match rules in order, then the default route (`None`: keep the current one).
    Routing {
        rules: Vec<MatchRule>,
        default: Option<String>,
    },
    Fault(Fault),
    Timeouts(Timeouts),
    CircuitBreaking(CircuitBreaker),
}

#[derive(Debug, Clone, PartialEq)]
pub struct MatchRule {
    pub on: MatchOn,
    /// `exact`, `prefix` or `regex` (Istio's StringMatch keys).
    pub op: String,
    pub value: String,
    /// The version (subset) the matching requests go to.
    pub version: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MatchOn {
    Header(String),
    Uri,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fault {
    /// Percentage of requests and the fixed delay (an Istio duration).
    pub delay: Option<(f64, String)>,
    /// Percentage of requests and the HTTP status they get.
    pub abort: Option<(f64, u32)>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timeouts {
    pub timeout: Option<String>,
    pub retries: Option<Retries>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Retries {
    pub attempts: u32,
    pub per_try_timeout: Option<String>,
    pub retry_on: Option<String>,
}

/// DestinationRule `trafficPolicy` limits; `None` leaves a setting out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CircuitBreaker {
    pub max_connections: Option<u64>,
    pub http1_max_pending_requests: Option<u64>,
    pub max_requests_per_connection: Option<u64>,
    pub http2_max_requests: Option<u64>,
    pub consecutive_5xx_errors: Option<u64>,
    pub interval: Option<String>,
    pub base_ejection_time: Option<String>,
    pub max_ejection_percent: Option<u64>,
}

/// The route settings other sections own, copied onto routes a section creates.
const ROUTE_POLICY_KEYS: [&str; 3] = ["timeout", "retries", "fault"];

/// The new VirtualService and DestinationRule documents.
pub fn generate(
    target: &Target,
    vs: Option<&Value>,
    dr: Option<&Value>,
    change: &Change,
) -> (Value, Value) {
    let mut vs = vs
        .cloned()
        .unwrap_or_else(|| skeleton(target, "VirtualService"));
    let mut dr = dr
        .cloned()
        .unwrap_or_else(|| skeleton(target, "DestinationRule"));
    let routes = http_routes(&vs);
    let policy = route_policy(&routes);
    let routes = match change {
        Change::Weights(weights) => {
            let (mut kept, _) = split_default(routes);
            let split = weights
                .iter()
                .filter(|(_, w)| *w > 0)
                .map(|(version, w)| json!({"destination": destination(target, Some(version)), "weight": w}))
                .collect();
            kept.push(with_policy(
                json!({ "route": Value::Array(split) }),
                &policy,
            ));
            kept
        }
        Change::Routing { rules, default } => {
            let (_, current_default) = split_default(routes);
            let mut routes: Vec<Value> = rules
                .iter()
                .map(|rule| with_policy(match_route(target, rule), &policy))
                .collect();
            let default = match default {
                Some(version) => with_policy(single_route(target, Some(version)), &policy),
                None => current_default
                    .unwrap_or_else(|| with_policy(single_route(target, None), &policy)),
            };
            routes.push(default);
            routes
        }
        Change::Fault(fault) => {
            let value = fault_value(fault);
            ensure_default(target, routes)
                .into_iter()
                .map(|route| set_key(route, "fault", value.clone()))
                .collect()
        }
        Change::Timeouts(t) => {
            let timeout = t.timeout.clone().map(Value::String);
            let retries = t.retries.as_ref().map(retries_value);
            ensure_default(target, routes)
                .into_iter()
                .map(|route| set_key(route, "timeout", timeout.clone()))
                .map(|route| set_key(route, "retries", retries.clone()))
                .collect()
        }
        Change::CircuitBreaking(cb) => {
            set_traffic_policy(&mut dr, cb);
            ensure_default(target, routes)
        }
    };
    spec(&mut vs).insert("http".into(), Value::Array(routes));
    spec(&mut vs)
        .entry("hosts")
        .or_insert_with(|| json!([target.host]));
    add_subsets(&mut dr, &subsets_used(&vs));
    (vs, dr)
}

/// A new resource named after the service.
fn skeleton(target: &Target, kind: &str) -> Value {
    let spec = if kind == "VirtualService" {
        json!({"hosts": [target.host], "http": []})
    } else {
        json!({"host": target.host})
    };
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": kind,
        "metadata": {"name": target.name, "namespace": target.namespace},
        "spec": spec,
    })
}

fn spec(doc: &mut Value) -> &mut Map<String, Value> {
    if !doc.get("spec").is_some_and(Value::is_object) {
        doc.as_object_mut()
            .map(|o| o.insert("spec".into(), json!({})));
    }
    doc.get_mut("spec")
        .and_then(Value::as_object_mut)
        .expect("spec was just made an object")
}

fn http_routes(vs: &Value) -> Vec<Value> {
    vs.pointer("/spec/http")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The routes with a `match` (kept in order) and the first route without one: the default, as
/// it catches every request that reaches it (match-less routes after it are never used).
fn split_default(routes: Vec<Value>) -> (Vec<Value>, Option<Value>) {
    let mut default = None;
    let mut kept = Vec::new();
    for route in routes {
        if has_match(&route) {
            kept.push(route);
        } else if default.is_none() {
            default = Some(route);
        }
    }
    (kept, default)
}

pub fn has_match(route: &Value) -> bool {
    route
        .get("match")
        .and_then(Value::as_array)
        .is_some_and(|m| !m.is_empty())
}

/// The timeout, retries and fault of the first route that has any: what other sections wrote.
fn route_policy(routes: &[Value]) -> Map<String, Value> {
    routes
        .iter()
        .filter_map(Value::as_object)
        .map(|route| {
            ROUTE_POLICY_KEYS
                .iter()
                .filter_map(|k| route.get(*k).map(|v| (k.to_string(), v.clone())))
                .collect::<Map<_, _>>()
        })
        .find(|policy| !policy.is_empty())
        .unwrap_or_default()
}

fn with_policy(mut route: Value, policy: &Map<String, Value>) -> Value {
    if let Some(object) = route.as_object_mut() {
        for (k, v) in policy {
            object.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    route
}

/// The routes, plus a default route to the whole service when there are none.
fn ensure_default(target: &Target, mut routes: Vec<Value>) -> Vec<Value> {
    if routes.is_empty() {
        routes.push(single_route(target, None));
    }
    routes
}

fn destination(target: &Target, version: Option<&String>) -> Value {
    let mut d = json!({ "host": target.host });
    if let Some(v) = version {
        d["subset"] = json!(v);
    }
    d
}

fn single_route(target: &Target, version: Option<&String>) -> Value {
    json!({ "route": [{ "destination": destination(target, version) }] })
}

fn match_route(target: &Target, rule: &MatchRule) -> Value {
    let string_match = json!({ rule.op.clone(): rule.value });
    let condition = match &rule.on {
        MatchOn::Header(name) => json!({ "headers": { name.clone(): string_match } }),
        MatchOn::Uri => json!({ "uri": string_match }),
    };
    json!({
        "match": [condition],
        "route": [{ "destination": destination(target, Some(&rule.version)) }],
    })
}

fn set_key(mut route: Value, key: &str, value: Option<Value>) -> Value {
    if let Some(object) = route.as_object_mut() {
        match value {
            Some(v) => {
                object.insert(key.to_string(), v);
            }
            None => {
                object.remove(key);
            }
        }
    }
    route
}

fn fault_value(fault: &Fault) -> Option<Value> {
    let mut value = Map::new();
    if let Some((percent, delay)) = &fault.delay {
        value.insert(
            "delay".into(),
            json!({"percentage": {"value": percent}, "fixedDelay": delay}),
        );
    }
    if let Some((percent, status)) = &fault.abort {
        value.insert(
            "abort".into(),
            json!({"percentage": {"value": percent}, "httpStatus": status}),
        );
    }
    (!value.is_empty()).then_some(Value::Object(value))
}

fn retries_value(r: &Retries) -> Value {
    let mut value = json!({ "attempts": r.attempts });
    if let Some(t) = &r.per_try_timeout {
        value["perTryTimeout"] = json!(t);
    }
    if let Some(on) = &r.retry_on {
        value["retryOn"] = json!(on);
    }
    value
}

/// Replaces `connectionPool` and `outlierDetection`, keeping the rest of `trafficPolicy` (TLS,
/// load balancer) as it was.
fn set_traffic_policy(dr: &mut Value, cb: &CircuitBreaker) {
    let spec = spec(dr);
    let mut policy = spec
        .get("trafficPolicy")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut tcp = Map::new();
    put(
        &mut tcp,
        "maxConnections",
        cb.max_connections.map(Value::from),
    );
    let mut http = Map::new();
    put(
        &mut http,
        "http1MaxPendingRequests",
        cb.http1_max_pending_requests.map(Value::from),
    );
    put(
        &mut http,
        "http2MaxRequests",
        cb.http2_max_requests.map(Value::from),
    );
    put(
        &mut http,
        "maxRequestsPerConnection",
        cb.max_requests_per_connection.map(Value::from),
    );
    let mut pool = Map::new();
    put(
        &mut pool,
        "tcp",
        (!tcp.is_empty()).then_some(Value::Object(tcp)),
    );
    put(
        &mut pool,
        "http",
        (!http.is_empty()).then_some(Value::Object(http)),
    );
    let mut outlier = Map::new();
    put(
        &mut outlier,
        "consecutive5xxErrors",
        cb.consecutive_5xx_errors.map(Value::from),
    );
    put(
        &mut outlier,
        "interval",
        cb.interval.clone().map(Value::from),
    );
    put(
        &mut outlier,
        "baseEjectionTime",
        cb.base_ejection_time.clone().map(Value::from),
    );
    put(
        &mut outlier,
        "maxEjectionPercent",
        cb.max_ejection_percent.map(Value::from),
    );
    policy.remove("connectionPool");
    policy.remove("outlierDetection");
    put(
        &mut policy,
        "connectionPool",
        (!pool.is_empty()).then_some(Value::Object(pool)),
    );
    put(
        &mut policy,
        "outlierDetection",
        (!outlier.is_empty()).then_some(Value::Object(outlier)),
    );
    if policy.is_empty() {
        spec.remove("trafficPolicy");
    } else {
        spec.insert("trafficPolicy".into(), Value::Object(policy));
    }
}

fn put(map: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(v) = value {
        map.insert(key.to_string(), v);
    }
}

/// Every subset a route of the VirtualService sends to.
fn subsets_used(vs: &Value) -> Vec<String> {
    let mut used: Vec<String> = http_routes(vs)
        .iter()
        .filter_map(|r| r.get("route").and_then(Value::as_array))
        .flatten()
        .filter_map(|d| d.pointer("/destination/subset").and_then(Value::as_str))
        .map(str::to_string)
        .collect();
    used.sort();
    used.dedup();
    used
}

/// Adds `name: v, labels: {version: v}` for every used subset the rule lacks; existing subsets
/// (and their own policies) stay as they are.
fn add_subsets(dr: &mut Value, used: &[String]) {
    let spec = spec(dr);
    let mut subsets = spec
        .get("subsets")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for name in used {
        if !subsets
            .iter()
            .any(|s| s.get("name").and_then(Value::as_str) == Some(name))
        {
            subsets.push(json!({"name": name, "labels": {"version": name}}));
        }
    }
    if !subsets.is_empty() {
        spec.insert("subsets".into(), Value::Array(subsets));
    }
}
