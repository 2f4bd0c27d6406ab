//! `networking.trellis.io/v1alpha1` LocalRateLimit: a Trellis extension in Istio's shape, for the
//! local rate limiting Istio itself only offers through EnvoyFilter patches of Envoy's HTTP
//! local rate limit filter.
//!
//! ```yaml
//! apiVersion: networking.trellis.io/v1alpha1
//! kind: LocalRateLimit
//! metadata: {name: reviews, namespace: default}
//! spec:
//!   workloadSelector: {labels: {app: reviews}}   # optional: every workload of the namespace
//!   tokenBucket: {maxTokens: 100, tokensPerFill: 100, fillInterval: 1s}
//!   routes:
//!   - virtualService: reviews                    # a VirtualService of the same namespace
//!     route: v2-only                             # the `name` of one of its http routes
//!     tokenBucket: {maxTokens: 10, tokensPerFill: 10, fillInterval: 1s}
//! ```
//!
//! `tokenBucket` limits inbound requests to the selected workloads: one bucket per workload proxy,
//! shared by its worker threads (Envoy's local rate limit on the inbound listener). Each `routes`
//! entry limits requests that callers send through that VirtualService route: one bucket per
//! calling proxy and route, in every proxy the route reaches (the selector does not narrow it).
//! The bucket follows Envoy's `TokenBucket`: `maxTokens` is the burst and the starting fill,
//! `tokensPerFill` (default 1) arrive every `fillInterval` (at least 50ms, as Envoy requires).

use super::WorkloadSelector;
use serde::Deserialize;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct LocalRateLimit {
    /// The workloads whose inbound traffic `token_bucket` limits; all of the namespace when absent.
    pub workload_selector: Option<WorkloadSelector>,
    /// The inbound limit of each selected workload.
    pub token_bucket: Option<TokenBucket>,
    /// Limits on VirtualService routes, applied by the callers.
    pub routes: Vec<RouteRateLimit>,
}

/// Envoy's `type.v3.TokenBucket`, in Istio's camelCase.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct TokenBucket {
    pub max_tokens: u32,
    /// One token per fill when absent, as in Envoy.
    pub tokens_per_fill: Option<u32>,
    /// A duration (`1s`, `100ms`).
    pub fill_interval: String,
}

/// A limit on one named http route of a VirtualService.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct RouteRateLimit {
    /// The VirtualService's name, in the LocalRateLimit's namespace.
    pub virtual_service: String,
    /// The `name` of the VirtualService's http route.
    pub route: String,
    pub token_bucket: Option<TokenBucket>,
}
