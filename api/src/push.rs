//! The control plane -> proxy config push protocol (`proto/push.proto`), shared by both ends.
//!
//! Resource bodies are the JSON of [`crate::model`] types; the helpers here are the one place
//! that encodes and decodes them, so both ends agree byte for byte.

#![allow(clippy::doc_markdown)]

tonic::include_proto!("trellis.push.v1");

use crate::model::{Cluster, ProxyMeta, VirtualHost};

/// Default address of the push server.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:15010";

impl Resource {
    pub fn virtual_host(vh: &VirtualHost) -> Resource {
        Resource {
            r#type: ResourceType::VirtualHost as i32,
            name: vh.name.clone(),
            body: serde_json::to_vec(vh).unwrap_or_default().into(),
        }
    }

    pub fn cluster(cluster: &Cluster) -> Resource {
        Resource {
            r#type: ResourceType::Cluster as i32,
            name: cluster.name.clone(),
            body: serde_json::to_vec(cluster).unwrap_or_default().into(),
        }
    }
}

/// A pushed resource, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    VirtualHost(VirtualHost),
    Cluster(Cluster),
}

/// Decodes a resource body, naming the resource in the error.
pub fn decode(resource: &Resource) -> Result<Decoded, String> {
    let what = |e: serde_json::Error| format!("resource {:?}: invalid body: {e}", resource.name);
    let decoded = match ResourceType::try_from(resource.r#type) {
        Ok(ResourceType::VirtualHost) => {
            Decoded::VirtualHost(serde_json::from_slice(&resource.body).map_err(what)?)
        }
        Ok(ResourceType::Cluster) => {
            Decoded::Cluster(serde_json::from_slice(&resource.body).map_err(what)?)
        }
        _ => {
            return Err(format!(
                "resource {:?}: unknown type {}",
                resource.name, resource.r#type
            ));
        }
    };
    let name = match &decoded {
        Decoded::VirtualHost(vh) => &vh.name,
        Decoded::Cluster(c) => &c.name,
    };
    if *name != resource.name {
        return Err(format!(
            "resource {:?}: body is named {name:?}",
            resource.name
        ));
    }
    Ok(decoded)
}

pub fn encode_meta(meta: &ProxyMeta) -> bytes::Bytes {
    serde_json::to_vec(meta).unwrap_or_default().into()
}

pub fn decode_meta(body: &[u8]) -> Result<ProxyMeta, String> {
    serde_json::from_slice(body).map_err(|e| format!("meta: invalid body: {e}"))
}
