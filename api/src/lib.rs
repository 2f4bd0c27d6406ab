//! trellis-api: the mesh's resources in Istio's own format, their parsing (with file and line
//! positions) and validation, and the compiler from resources to the proxy's config model.
//!
//! The path of a configuration: [`load_path`]/[`load_str`] read YAML into typed, validated
//! [`Resource`]s collected in a [`ConfigSet`]; [`services_from_service_entries`] (or the control
//! plane's registry) supplies [`Service`]s; [`compile`] turns both into the [`ProxyConfig`] one
//! proxy executes. Every rejected input comes back as [`Diagnostic`]s naming file, line, resource
//! and field.

pub mod authz;
pub mod compile;
pub mod diagnostics;
pub mod duration;
pub mod host;
pub mod load;
pub mod model;
pub mod push;
pub mod registry;
pub mod resources;
pub mod time;
pub mod validate;
pub mod yaml;

pub use compile::{compile, compile_standalone};
pub use diagnostics::{Diagnostic, Severity};
pub use load::{ConfigSet, Resource, ResourceKey, load_path, load_str};
pub use model::{NodeIdentity, ProxyConfig, ProxyMeta};
pub use registry::{Service, ServicePort, WorkloadEndpoint, services_from_service_entries};
pub use resources::Kind;
