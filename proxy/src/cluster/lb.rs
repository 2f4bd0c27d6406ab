//! Load balancers. Everything that can be computed from the endpoint list (cumulative weights,
//! hash rings, Maglev tables) is built when config arrives; picking only reads it.

use std::sync::atomic::{AtomicU64, Ordering};
use trellis_api::model::{HashAlgorithm, LoadBalancer};
use xxhash_rust::xxh64::xxh64;

/// A compiled load-balancing policy over a fixed endpoint list.
#[derive(Debug)]
pub enum Balancer {
    RoundRobin {
        cumulative: Vec<u64>,
        next: AtomicU64,
    },
    LeastRequest,
    Random {
        cumulative: Vec<u64>,
    },
    /// Sorted (hash, endpoint index) points.
    Ring(Vec<(u64, usize)>),
    /// Lookup table: slot -> endpoint index.
    Maglev(Vec<usize>),
    Passthrough,
}

impl Balancer {
    /// Builds the policy for endpoints with these `(name, weight)` pairs.
    pub fn build(policy: &LoadBalancer, endpoints: &[(String, u32)]) -> Balancer {
        let cumulative = || {
            let mut total = 0u64;
            endpoints
                .iter()
                .map(|(_, w)| {
                    total += u64::from((*w).max(1));
                    total
                })
                .collect::<Vec<_>>()
        };
        match policy {
            LoadBalancer::RoundRobin => Balancer::RoundRobin {
                cumulative: cumulative(),
                next: AtomicU64::new(0),
            },
            LoadBalancer::LeastRequest => Balancer::LeastRequest,
            LoadBalancer::Random => Balancer::Random {
                cumulative: cumulative(),
            },
            LoadBalancer::Passthrough => Balancer::Passthrough,
            LoadBalancer::ConsistentHash(ch) => match ch.algorithm {
                HashAlgorithm::RingHash { minimum_ring_size } => {
                    Balancer::Ring(ring(endpoints, minimum_ring_size))
                }
                HashAlgorithm::Maglev { table_size } => {
                    Balancer::Maglev(maglev(endpoints, table_size))
                }
            },
        }
    }

    pub fn is_hashing(&self) -> bool {
        matches!(self, Balancer::Ring(_) | Balancer::Maglev(_))
    }

    /// Picks an available endpoint index. `hash` is the request's hash key for consistent hashing
    /// (absent key: a random pick, as Envoy does). When none is available, returns `None`.
    /// `n` endpoints; `ok(i)` tells whether endpoint `i` may be picked, `active(i)` its requests
    /// in flight.
    pub fn pick(
        &self,
        n: usize,
        ok: impl Fn(usize) -> bool,
        active: impl Fn(usize) -> u32,
        hash: Option<u64>,
    ) -> Option<usize> {
        if n == 0 {
            return None;
        }
        let chosen = match self {
            Balancer::RoundRobin { cumulative, next } => {
                let total = *cumulative.last()?;
                (0..n)
                    .map(|_| by_weight(cumulative, next.fetch_add(1, Ordering::Relaxed) % total))
                    .find(|&i| ok(i))
            }
            Balancer::Random { cumulative } => {
                let total = *cumulative.last()?;
                let i = by_weight(cumulative, fastrand::u64(0..total));
                ok(i).then_some(i)
            }
            Balancer::LeastRequest => {
                if n == 1 {
                    ok(0).then_some(0)
                } else {
                    let a = fastrand::usize(0..n);
                    let b = (a + 1 + fastrand::usize(0..n - 1)) % n;
                    match (ok(a), ok(b)) {
                        (true, true) => Some(if active(b) < active(a) { b } else { a }),
                        (true, false) => Some(a),
                        (false, true) => Some(b),
                        (false, false) => None,
                    }
                }
            }
            Balancer::Ring(points) => {
                let h = hash.unwrap_or_else(|| fastrand::u64(..));
                let start = points.partition_point(|(p, _)| *p < h);
                (0..points.len())
                    .map(|k| points[(start + k) % points.len()].1)
                    .find(|&i| ok(i))
            }
            Balancer::Maglev(table) => {
                let h = hash.unwrap_or_else(|| fastrand::u64(..));
                let start = (h % table.len() as u64) as usize;
                (0..table.len().min(n * 8))
                    .map(|k| table[(start + k) % table.len()])
                    .find(|&i| ok(i))
            }
            Balancer::Passthrough => None,
        };
        // A random or two-choice pick may land on ejected endpoints while others are fine.
        chosen.or_else(|| {
            let offset = fastrand::usize(0..n);
            (0..n).map(|k| (offset + k) % n).find(|&i| ok(i))
        })
    }
}

fn by_weight(cumulative: &[u64], point: u64) -> usize {
    cumulative.partition_point(|&c| c <= point)
}

/// Ketama-style ring: each endpoint gets points in proportion to its weight.
fn ring(endpoints: &[(String, u32)], minimum_ring_size: u64) -> Vec<(u64, usize)> {
    let total: u64 = endpoints.iter().map(|(_, w)| u64::from((*w).max(1))).sum();
    let size = minimum_ring_size.clamp(1, 8 * 1024 * 1024);
    let mut points = Vec::new();
    for (i, (name, w)) in endpoints.iter().enumerate() {
        let replicas = (size * u64::from((*w).max(1)))
            .div_ceil(total.max(1))
            .max(1);
        for r in 0..replicas {
            points.push((xxh64(format!("{name}_{r}").as_bytes(), 0), i));
        }
    }
    points.sort_unstable();
    points
}

/// Maglev lookup table with Envoy's weighted population.
fn maglev(endpoints: &[(String, u32)], table_size: u64) -> Vec<usize> {
    let m = table_size.max(1) as usize;
    if endpoints.is_empty() {
        return Vec::new();
    }
    let max_w = endpoints
        .iter()
        .map(|(_, w)| (*w).max(1))
        .max()
        .unwrap_or(1) as f64;
    let mut state: Vec<(u64, u64, u64, f64)> = endpoints
        .iter()
        .map(|(name, _)| {
            let offset = xxh64(name.as_bytes(), 0) % m as u64;
            let skip = if m > 1 {
                xxh64(name.as_bytes(), 1) % (m as u64 - 1) + 1
            } else {
                1
            };
            (offset, skip, 0u64, 0.0f64)
        })
        .collect();
    let mut table = vec![usize::MAX; m];
    let mut filled = 0;
    let mut iteration = 1u64;
    while filled < m {
        for (i, (_, w)) in endpoints.iter().enumerate() {
            let weight = f64::from((*w).max(1)) / max_w;
            let (offset, skip, next, target) = &mut state[i];
            if (iteration as f64) * weight < *target {
                continue;
            }
            *target += 1.0;
            // With a prime table size the permutation reaches every slot; with any other size it
            // may cycle, so after `m` tries take the next free slot instead of looping forever.
            let mut tries = 0;
            let slot = loop {
                let slot = ((*offset + *next * *skip) % m as u64) as usize;
                *next += 1;
                tries += 1;
                if table[slot] == usize::MAX {
                    break slot;
                }
                if tries >= m {
                    let free = (slot..m).chain(0..slot).find(|&s| table[s] == usize::MAX);
                    break free.unwrap_or(slot);
                }
            };
            table[slot] = i;
            filled += 1;
            if filled == m {
                break;
            }
        }
        iteration += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_api::model::{ConsistentHash, HashKey};

    struct Ep(bool, u32);

    fn pick(lb: &Balancer, eps: &[Ep], hash: Option<u64>) -> Option<usize> {
        lb.pick(eps.len(), |i| eps[i].0, |i| eps[i].1, hash)
    }

    fn names(n: usize) -> Vec<(String, u32)> {
        (0..n).map(|i| (format!("10.0.0.{i}:80"), 1)).collect()
    }

    #[test]
    fn round_robin_cycles_and_skips_unavailable() {
        let lb = Balancer::build(&LoadBalancer::RoundRobin, &names(3));
        let eps = [Ep(true, 0), Ep(false, 0), Ep(true, 0)];
        let picks: Vec<_> = (0..4).map(|_| pick(&lb, &eps, None).unwrap()).collect();
        assert!(picks.iter().all(|&i| i != 1));
        assert!(picks.contains(&0) && picks.contains(&2));
    }

    #[test]
    fn least_request_prefers_idle() {
        let lb = Balancer::build(&LoadBalancer::LeastRequest, &names(2));
        let eps = [Ep(true, 10), Ep(true, 0)];
        assert!((0..50).all(|_| pick(&lb, &eps, None) == Some(1)));
    }

    #[test]
    fn consistent_hash_is_sticky_and_spreads() {
        for algorithm in [
            HashAlgorithm::RingHash {
                minimum_ring_size: 1024,
            },
            HashAlgorithm::Maglev { table_size: 65537 },
        ] {
            let policy = LoadBalancer::ConsistentHash(ConsistentHash {
                key: HashKey::SourceIp,
                algorithm,
            });
            let lb = Balancer::build(&policy, &names(4));
            let eps = [Ep(true, 0), Ep(true, 0), Ep(true, 0), Ep(true, 0)];
            let mut seen = std::collections::HashSet::new();
            for key in 0..200u64 {
                let h = xxh64(&key.to_le_bytes(), 0);
                let first = pick(&lb, &eps, Some(h)).unwrap();
                assert_eq!(pick(&lb, &eps, Some(h)), Some(first));
                seen.insert(first);
            }
            assert_eq!(seen.len(), 4);
        }
    }

    #[test]
    fn maglev_weights_shape_the_table() {
        let eps = vec![("a".to_string(), 3), ("b".to_string(), 1)];
        let table = maglev(&eps, 65537);
        let a = table.iter().filter(|&&i| i == 0).count() as f64 / table.len() as f64;
        assert!((a - 0.75).abs() < 0.02, "share of a: {a}");
    }

    #[test]
    fn maglev_with_a_table_size_that_is_not_prime_still_fills_the_table() {
        let table = maglev(&names(3), 64);
        assert_eq!(table.len(), 64);
        assert!(table.iter().all(|&i| i < 3));
    }

    #[test]
    fn nothing_available_is_none() {
        let lb = Balancer::build(&LoadBalancer::Random, &names(2));
        assert_eq!(pick(&lb, &[Ep(false, 0), Ep(false, 0)], None), None);
    }
}
