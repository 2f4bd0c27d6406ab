//! The simulated mesh: ServiceEntries, DestinationRules, VirtualServices and a Sidecar as YAML,
//! plus the current text of every resource, so the bench can compile locally what every proxy
//! must end up holding.

use std::collections::BTreeMap;
use std::fmt::Write;

/// Services are spread over this many namespaces (`ns-0` ..); the proxies live in `default`.
pub const NAMESPACES: usize = 10;
/// The one port of every service.
pub const PORT: u16 = 8080;
/// Initial `maxConnections` of every DestinationRule; the mesh-wide change bumps it.
pub const MAX_CONNECTIONS: u32 = 1000;
/// Initial v1 weight of every VirtualService's split.
pub const WEIGHT_V1: u32 = 90;

pub fn name(i: usize) -> String {
    format!("svc-{i:04}")
}

pub fn namespace(i: usize) -> String {
    format!("ns-{}", i % NAMESPACES)
}

pub fn host(i: usize) -> String {
    format!("{}.{}.svc.cluster.local", name(i), namespace(i))
}

pub fn vhost(i: usize) -> String {
    format!("{}:{PORT}", host(i))
}

pub fn cluster(i: usize, subset: Option<&str>) -> String {
    trellis_api::model::cluster_name(&host(i), PORT, subset)
}

/// A distinct 10.x.y.z per endpoint (global index), and another range for added endpoints.
fn endpoint_address(g: usize) -> String {
    format!("10.{}.{}.{}", 1 + g / 65536, (g / 256) % 256, g % 256)
}

fn added_address(k: usize) -> String {
    format!("10.250.{}.{}", (k / 256) % 256, k % 256)
}

/// Service `i` as the bench last applied it.
#[derive(Debug, Clone)]
pub struct ServiceState {
    pub endpoints: usize,
    /// Endpoints added by the endpoint-change rounds (indexes into the added range).
    pub added: Vec<usize>,
    pub max_connections: u32,
    /// `Some(v1 weight)` for services with a VirtualService.
    pub weight_v1: Option<u32>,
}

/// Everything applied so far, resource by resource.
pub struct Mesh {
    pub services: Vec<ServiceState>,
    /// Add a `sourceLabels` rule (on `app`) to the first VirtualService, which splits the proxies
    /// into one compile class per `app` value.
    pub source_labels: bool,
    /// `Some(registry_only)` once the mesh-wide Sidecar was applied.
    pub sidecar: Option<bool>,
    next_added: usize,
    /// key (`kind/namespace/name`) -> YAML document, as last applied.
    docs: BTreeMap<String, String>,
}

impl Mesh {
    pub fn new(
        services: usize,
        endpoints: usize,
        virtual_services: usize,
        source_labels: bool,
    ) -> Mesh {
        let services = (0..services)
            .map(|i| ServiceState {
                endpoints,
                added: Vec::new(),
                max_connections: MAX_CONNECTIONS,
                weight_v1: (i < virtual_services).then_some(WEIGHT_V1),
            })
            .collect();
        Mesh {
            services,
            source_labels,
            sidecar: None,
            next_added: 0,
            docs: BTreeMap::new(),
        }
    }

    /// Every resource of the initial mesh, as YAML documents (SE, DR and VS per service).
    pub fn initial_documents(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        for i in 0..self.services.len() {
            out.push(self.service_entry(i));
            out.push(self.destination_rule(i));
            if self.services[i].weight_v1.is_some() {
                out.push(self.virtual_service(i));
            }
        }
        out
    }

    /// Sets service `i`'s v1 weight and returns its VirtualService.
    pub fn set_weight(&mut self, i: usize, weight_v1: u32) -> String {
        self.services[i].weight_v1 = Some(weight_v1);
        self.virtual_service(i)
    }

    /// Adds one endpoint (label version v1) to service `i`; returns its ServiceEntry.
    pub fn add_endpoint(&mut self, i: usize) -> String {
        let k = self.next_added;
        self.next_added += 1;
        self.services[i].added.push(k);
        self.service_entry(i)
    }

    /// Sets `maxConnections` of every DestinationRule; returns them all.
    pub fn set_max_connections(&mut self, n: u32) -> Vec<String> {
        (0..self.services.len())
            .map(|i| {
                self.services[i].max_connections = n;
                self.destination_rule(i)
            })
            .collect()
    }

    /// The mesh-wide Sidecar (root namespace): every host stays visible, only the outbound
    /// traffic policy changes, which changes every proxy's config version.
    pub fn set_sidecar(&mut self, registry_only: bool) -> String {
        self.sidecar = Some(registry_only);
        let mode = if registry_only {
            "REGISTRY_ONLY"
        } else {
            "ALLOW_ANY"
        };
        let doc = format!(
            "apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: istio-system}}
spec:
  egress:
  - hosts: ['*/*']
  outboundTrafficPolicy: {{mode: {mode}}}
"
        );
        self.docs
            .insert("Sidecar/istio-system/default".into(), doc.clone());
        doc
    }

    /// All current documents as one multi-document YAML text.
    pub fn all_yaml(&self) -> String {
        join(self.docs.values())
    }

    fn service_entry(&mut self, i: usize) -> String {
        let s = &self.services[i];
        let mut doc = format!(
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: {ns}}}
spec:
  hosts: [{host}]
  addresses: [172.20.{a}.{b}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {{number: {PORT}, name: http, protocol: HTTP}}
  endpoints:
",
            name = name(i),
            ns = namespace(i),
            host = host(i),
            a = i / 256 % 256,
            b = i % 256,
        );
        for j in 0..s.endpoints {
            let version = if j % 2 == 0 { "v1" } else { "v2" };
            let _ = writeln!(
                doc,
                "  - {{address: {}, labels: {{app: {}, version: {version}}}}}",
                endpoint_address(i * s.endpoints + j),
                name(i)
            );
        }
        for &k in &s.added {
            let _ = writeln!(
                doc,
                "  - {{address: {}, labels: {{app: {}, version: v1}}}}",
                added_address(k),
                name(i)
            );
        }
        self.docs.insert(
            format!("ServiceEntry/{}/{}", namespace(i), name(i)),
            doc.clone(),
        );
        doc
    }

    fn destination_rule(&mut self, i: usize) -> String {
        let doc = format!(
            "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}, namespace: {ns}}}
spec:
  host: {host}
  trafficPolicy:
    connectionPool:
      tcp: {{maxConnections: {max}}}
      http: {{http1MaxPendingRequests: 1024}}
    outlierDetection: {{consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
",
            name = name(i),
            ns = namespace(i),
            host = host(i),
            max = self.services[i].max_connections,
        );
        self.docs.insert(
            format!("DestinationRule/{}/{}", namespace(i), name(i)),
            doc.clone(),
        );
        doc
    }

    fn virtual_service(&mut self, i: usize) -> String {
        let w1 = self.services[i].weight_v1.unwrap_or(WEIGHT_V1);
        let host = host(i);
        let source_rule = if self.source_labels && i == 0 {
            format!(
                "  - match:
    - sourceLabels: {{app: sim-0}}
    route:
    - destination: {{host: {host}, subset: v2}}
"
            )
        } else {
            String::new()
        };
        let doc = format!(
            "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: {ns}}}
spec:
  hosts: [{host}]
  http:
{source_rule}  - route:
    - destination: {{host: {host}, subset: v1}}
      weight: {w1}
    - destination: {{host: {host}, subset: v2}}
      weight: {w2}
    timeout: 5s
    retries: {{attempts: 2, perTryTimeout: 1s, retryOn: 'connect-failure,5xx'}}
",
            name = name(i),
            ns = namespace(i),
            w2 = 100 - w1,
        );
        self.docs.insert(
            format!("VirtualService/{}/{}", namespace(i), name(i)),
            doc.clone(),
        );
        doc
    }
}

/// Documents joined into one multi-document YAML body.
pub fn join<'a>(docs: impl IntoIterator<Item = &'a String>) -> String {
    let mut out = String::new();
    for d in docs {
        out.push_str("---\n");
        out.push_str(d);
    }
    out
}
