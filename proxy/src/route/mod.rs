//! The route stage: find the virtual host a request is for, then the first rule that matches it,
//! with everything precompiled when config arrives.

pub mod filters;
pub mod matcher;
pub mod retry;

use crate::cluster::ClusterRuntime;
use bytes::Bytes;
use filters::{Cors, HeaderRules, Rewrite};
use matcher::{RequestMatcher, RequestView};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use trellis_api::model::{self, Protocol};

/// Weighted destinations, with cumulative weights for one random draw per request.
#[derive(Debug)]
pub struct WeightedClusters {
    entries: Vec<(Arc<ClusterRuntime>, u64, HeaderRules)>,
}

impl WeightedClusters {
    fn build(
        dests: &[model::WeightedDestination],
        clusters: &HashMap<String, Arc<ClusterRuntime>>,
    ) -> Result<WeightedClusters, String> {
        let mut total = 0u64;
        let mut entries = Vec::new();
        for d in dests {
            let cluster = clusters
                .get(&d.cluster)
                .ok_or_else(|| format!("route names unknown cluster {}", d.cluster))?;
            if d.weight == 0 && dests.len() > 1 {
                continue;
            }
            total += u64::from(d.weight.max(1));
            entries.push((cluster.clone(), total, HeaderRules::compile(&d.headers)?));
        }
        Ok(WeightedClusters { entries })
    }

    /// Draws a destination by weight.
    pub fn pick(&self) -> Option<(&Arc<ClusterRuntime>, &HeaderRules)> {
        let total = self.entries.last()?.1;
        let point = if self.entries.len() == 1 {
            0
        } else {
            fastrand::u64(0..total)
        };
        let i = self.entries.partition_point(|(_, c, _)| *c <= point);
        self.entries.get(i).map(|(c, _, h)| (c, h))
    }
}

#[derive(Debug)]
pub enum Action {
    Forward(WeightedClusters),
    Redirect(model::Redirect),
    Direct {
        status: http::StatusCode,
        body: Bytes,
    },
}

#[derive(Debug)]
pub struct Mirror {
    pub cluster: Arc<ClusterRuntime>,
    pub percentage: f64,
}

/// One compiled http rule.
#[derive(Debug)]
pub struct Route {
    pub name: Arc<str>,
    matchers: Vec<RequestMatcher>,
    pub action: Action,
    pub rewrite: Option<Rewrite>,
    pub headers: HeaderRules,
    pub timeout: Option<Duration>,
    pub retries: Option<model::RetryPolicy>,
    pub fault: Option<model::Fault>,
    pub mirrors: Vec<Mirror>,
    pub cors: Option<Cors>,
}

/// Result of matching: the rule, and the uri prefix it matched by (for prefix rewrites).
pub struct Matched<'a> {
    pub route: &'a Route,
    pub prefix: Option<&'a str>,
}

impl Route {
    fn build(
        r: &model::HttpRoute,
        clusters: &HashMap<String, Arc<ClusterRuntime>>,
    ) -> Result<Route, String> {
        Ok(Route {
            name: Arc::from(r.name.as_str()),
            matchers: r
                .matches
                .iter()
                .map(RequestMatcher::compile)
                .collect::<Result<_, _>>()?,
            action: match &r.action {
                model::RouteAction::Forward(dests) => {
                    Action::Forward(WeightedClusters::build(dests, clusters)?)
                }
                model::RouteAction::Redirect(rd) => Action::Redirect(rd.clone()),
                model::RouteAction::DirectResponse(d) => Action::Direct {
                    status: http::StatusCode::from_u16(d.status).map_err(|e| e.to_string())?,
                    body: Bytes::from(d.body.clone().unwrap_or_default()),
                },
            },
            rewrite: r.rewrite.as_ref().map(Rewrite::compile).transpose()?,
            headers: HeaderRules::compile(&r.headers)?,
            timeout: r.timeout_ms.filter(|t| *t > 0).map(Duration::from_millis),
            retries: r.retries.clone().filter(|p| p.attempts > 0),
            fault: r.fault.clone(),
            mirrors: r
                .mirrors
                .iter()
                .map(|m| {
                    Ok(Mirror {
                        cluster: clusters
                            .get(&m.cluster)
                            .ok_or_else(|| format!("mirror names unknown cluster {}", m.cluster))?
                            .clone(),
                        percentage: m.percentage,
                    })
                })
                .collect::<Result<_, String>>()?,
            cors: r.cors.as_ref().map(Cors::compile).transpose()?,
        })
    }

    fn matches<'a>(&'a self, req: &RequestView<'_>) -> Option<Matched<'a>> {
        if self.matchers.is_empty() {
            return Some(Matched {
                route: self,
                prefix: None,
            });
        }
        self.matchers
            .iter()
            .find(|m| m.matches(req))
            .map(|m| Matched {
                route: self,
                prefix: m.uri_prefix.as_deref(),
            })
    }
}

#[derive(Debug)]
pub struct TcpRoute {
    ports: Vec<Option<u16>>,
    subnets: Vec<Vec<Subnet>>,
    pub destinations: WeightedClusters,
}

impl TcpRoute {
    fn matches(&self, dst: Option<SocketAddr>) -> bool {
        if self.ports.is_empty() {
            return true;
        }
        self.ports.iter().zip(&self.subnets).any(|(port, subnets)| {
            port.is_none_or(|p| dst.is_some_and(|d| d.port() == p))
                && (subnets.is_empty()
                    || dst.is_some_and(|d| subnets.iter().any(|s| s.contains(d.ip()))))
        })
    }
}

/// An address block such as `10.0.0.0/8` or a single address.
#[derive(Debug, Clone, Copy)]
struct Subnet {
    net: IpAddr,
    bits: u8,
}

impl Subnet {
    fn parse(s: &str) -> Result<Subnet, String> {
        let (addr, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let net: IpAddr = addr.parse().map_err(|_| format!("bad subnet {s:?}"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            Some(b) => b
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("bad subnet {s:?}"))?,
            None => max,
        };
        Ok(Subnet { net, bits })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let (a, b, width) = match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => {
                (u128::from(u32::from(n)), u128::from(u32::from(i)), 32)
            }
            (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i), 128),
            _ => return false,
        };
        if self.bits == 0 {
            return true;
        }
        let shift = width - u32::from(self.bits);
        (a >> shift) == (b >> shift)
    }
}

/// One service port with its compiled rules.
#[derive(Debug)]
pub struct VirtualHost {
    pub name: String,
    pub service: String,
    pub port: u16,
    pub protocol: Protocol,
    pub routes: Vec<Route>,
    pub tcp_routes: Vec<TcpRoute>,
}

impl VirtualHost {
    pub fn match_http<'a>(&'a self, req: &RequestView<'_>) -> Option<Matched<'a>> {
        self.routes.iter().find_map(|r| r.matches(req))
    }

    pub fn match_tcp(&self, dst: Option<SocketAddr>) -> Option<&TcpRoute> {
        self.tcp_routes.iter().find(|r| r.matches(dst))
    }
}

/// All virtual hosts and the indexes to find them by name or by original destination.
#[derive(Debug, Default)]
pub struct RouteTable {
    hosts: Vec<VirtualHost>,
    /// host -> (port named in the domain, virtual host); looked up without allocating.
    by_domain: HashMap<String, Vec<(Option<u16>, usize)>>,
    /// `(".example.com", port)` -> host, longest suffix first.
    wildcards: Vec<(String, Option<u16>, usize)>,
    by_address: HashMap<SocketAddr, usize>,
}

impl RouteTable {
    pub fn build(
        config: &model::ProxyConfig,
        clusters: &HashMap<String, Arc<ClusterRuntime>>,
    ) -> Result<RouteTable, String> {
        let mut table = RouteTable::default();
        for vh in &config.virtual_hosts {
            let idx = table.hosts.len();
            table.hosts.push(VirtualHost {
                name: vh.name.clone(),
                service: vh.service.clone(),
                port: vh.port,
                protocol: vh.protocol,
                routes: vh
                    .http_routes
                    .iter()
                    .map(|r| {
                        Route::build(r, clusters)
                            .map_err(|e| format!("{}: route {}: {e}", vh.name, r.name))
                    })
                    .collect::<Result<_, _>>()?,
                tcp_routes: vh
                    .tcp_routes
                    .iter()
                    .map(|r| {
                        Ok(TcpRoute {
                            ports: r.matches.iter().map(|m| m.port).collect(),
                            subnets: r
                                .matches
                                .iter()
                                .map(|m| {
                                    m.destination_subnets
                                        .iter()
                                        .map(|s| Subnet::parse(s))
                                        .collect::<Result<Vec<_>, _>>()
                                })
                                .collect::<Result<_, _>>()?,
                            destinations: WeightedClusters::build(&r.destinations, clusters)?,
                        })
                    })
                    .collect::<Result<_, String>>()?,
            });
            for domain in &vh.domains {
                let domain = domain.to_ascii_lowercase();
                let (host, port) = split_authority(&domain);
                if let Some(suffix) = host.strip_prefix('*') {
                    table.wildcards.push((suffix.to_string(), port, idx));
                } else {
                    let entries = table.by_domain.entry(host.to_string()).or_default();
                    if !entries.iter().any(|(p, _)| *p == port) {
                        entries.push((port, idx));
                    }
                }
            }
            for addr in &vh.addresses {
                if let Ok(ip) = addr.parse::<IpAddr>() {
                    table
                        .by_address
                        .entry(SocketAddr::new(ip, vh.port))
                        .or_insert(idx);
                }
            }
        }
        table
            .wildcards
            .sort_by_key(|w| std::cmp::Reverse(w.0.len()));
        Ok(table)
    }

    /// The virtual host for a `Host`/`:authority` (`host` lower-cased, port when given).
    pub fn by_authority(&self, host: &str, port: Option<u16>) -> Option<&VirtualHost> {
        if let Some(entries) = self.by_domain.get(host)
            && let Some((_, i)) = entries.iter().find(|(p, _)| *p == port)
        {
            return Some(&self.hosts[*i]);
        }
        self.wildcards
            .iter()
            .find(|(suffix, p, _)| {
                host.ends_with(suffix.as_str()) && host.len() > suffix.len() && *p == port
            })
            .map(|(_, _, i)| &self.hosts[*i])
    }

    /// The virtual host whose service (or endpoint) address is `dst`.
    pub fn by_address(&self, dst: SocketAddr) -> Option<&VirtualHost> {
        let dst = SocketAddr::new(canonical_ip(dst.ip()), dst.port());
        self.by_address.get(&dst).map(|&i| &self.hosts[i])
    }

    pub fn hosts(&self) -> &[VirtualHost] {
        &self.hosts
    }
}

/// Splits `host[:port]` (IPv6 in brackets).
pub fn split_authority(authority: &str) -> (&str, Option<u16>) {
    if let Some(rest) = authority.strip_prefix('[')
        && let Some((host, tail)) = rest.split_once(']')
    {
        return (host, tail.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(p) => (host, Some(p)),
            Err(_) => (authority, None),
        },
        _ => (authority, None),
    }
}

/// IPv4-mapped IPv6 addresses compare as IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets() {
        let s = Subnet::parse("10.1.0.0/16").unwrap();
        assert!(s.contains("10.1.2.3".parse().unwrap()));
        assert!(!s.contains("10.2.0.1".parse().unwrap()));
        assert!(
            Subnet::parse("::1")
                .unwrap()
                .contains("::1".parse().unwrap())
        );
        assert!(Subnet::parse("10.0.0.0/40").is_err());
    }

    #[test]
    fn lookup_by_domain_wildcard_and_address() {
        let config = model::ProxyConfig {
            virtual_hosts: vec![
                model::VirtualHost {
                    name: "reviews.default.svc.cluster.local:9080".into(),
                    service: "reviews.default.svc.cluster.local".into(),
                    port: 9080,
                    domains: vec!["reviews".into(), "reviews:9080".into()],
                    addresses: vec!["10.0.0.5".into()],
                    ..Default::default()
                },
                model::VirtualHost {
                    name: "*.example.com:443".into(),
                    service: "*.example.com".into(),
                    port: 443,
                    domains: vec!["*.example.com:443".into()],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let t = RouteTable::build(&config, &HashMap::new()).unwrap();
        assert_eq!(t.by_authority("reviews", None).unwrap().port, 9080);
        assert_eq!(t.by_authority("reviews", Some(9080)).unwrap().port, 9080);
        assert!(t.by_authority("reviews", Some(80)).is_none());
        assert_eq!(
            t.by_authority("api.example.com", Some(443)).unwrap().port,
            443
        );
        assert!(t.by_authority("example.com", Some(443)).is_none());
        assert_eq!(
            t.by_address("10.0.0.5:9080".parse().unwrap()).unwrap().port,
            9080
        );
    }
}
