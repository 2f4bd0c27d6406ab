//! What the admin port shows about the workload certificate (`GET /certs`, like Envoy's) and the
//! metrics it exports. Written by the certificate manager, read by admin requests; never touched
//! by the request path.

use super::bundle::BundleOutcome;
use super::response::Refusal;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use trellis_identity::TrustBundle;
use trellis_identity::tls::WorkloadCert;

/// Where the workload's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// No join token and no certificate files: mutual TLS is unavailable.
    Disabled,
    /// Issued by the control plane at this address and renewed at half-life.
    Control { address: String },
    /// Read once from PEM files (`--cert-chain`, `--key`, `--trust-bundle`); never renewed.
    Files {
        cert_chain: String,
        key: String,
        trust_bundle: String,
    },
}

/// The certificate in use, as `/certs` shows it; computed once per certificate.
#[derive(Debug, Clone)]
struct Held {
    identity: String,
    serial: String,
    issuer: String,
    chain_length: usize,
    not_before: SystemTime,
    not_after: SystemTime,
    received_at: SystemTime,
    roots: Vec<Root>,
}

#[derive(Debug, Clone)]
struct Root {
    subject: String,
    serial: String,
    not_after: Option<SystemTime>,
}

#[derive(Debug, Default)]
struct State {
    held: Option<Held>,
    next_renewal: Option<SystemTime>,
    last_error: Option<(SystemTime, String)>,
    /// Certify attempts by result (`success` or a [`Refusal::kind`]).
    results: BTreeMap<&'static str, u64>,
    /// Trust bundles pushed by the control plane, by [`BundleOutcome::kind`].
    bundle_updates: BTreeMap<&'static str, u64>,
}

/// The workload certificate's state, shared by the manager and the admin endpoints.
#[derive(Debug)]
pub struct Status {
    mode: Mode,
    /// The SPIFFE ID this workload asks for (empty when disabled).
    identity: String,
    state: Mutex<State>,
}

const RENEWALS: &str = "trellis_identity_certificate_renewals_total";
const EXPIRY: &str = "trellis_identity_certificate_expiry_seconds";
const BUNDLE_UPDATES: &str = "trellis_identity_bundle_updates_total";

impl Status {
    pub fn new(mode: Mode, identity: String) -> Status {
        let mut state = State::default();
        if matches!(mode, Mode::Control { .. }) {
            state.results.insert("success", 0);
            for kind in Refusal::KINDS {
                state.results.insert(kind, 0);
            }
            for kind in BundleOutcome::KINDS {
                state.bundle_updates.insert(kind, 0);
            }
        }
        Status {
            mode,
            identity,
            state: Mutex::new(state),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A certificate is in use from now on.
    pub fn set_held(&self, cert: &WorkloadCert, bundle: &TrustBundle) {
        let leaf = cert.chain().first().map(|c| c.as_ref()).unwrap_or_default();
        let (serial, issuer) = match x509_parser::parse_x509_certificate(leaf) {
            Ok((_, c)) => (serial_hex(c.raw_serial()), c.issuer().to_string()),
            Err(_) => (String::new(), String::new()),
        };
        let roots = roots_of(bundle);
        self.state().held = Some(Held {
            identity: cert.identity().to_string(),
            serial,
            issuer,
            chain_length: cert.chain().len(),
            not_before: cert.not_before(),
            not_after: cert.not_after(),
            received_at: SystemTime::now(),
            roots,
        });
    }

    /// Where the certificate comes from.
    pub fn mode(&self) -> &Mode {
        &self.mode
    }

    /// A pushed trust bundle is in use from now on (the certificate is unchanged).
    pub fn set_bundle(&self, bundle: &TrustBundle) {
        if let Some(held) = self.state().held.as_mut() {
            held.roots = roots_of(bundle);
        }
    }

    /// Counts one pushed trust bundle.
    pub fn count_bundle(&self, outcome: &BundleOutcome) {
        *self
            .state()
            .bundle_updates
            .entry(outcome.kind())
            .or_default() += 1;
    }

    /// Counts one Certify attempt.
    pub fn count(&self, result: &'static str) {
        *self.state().results.entry(result).or_default() += 1;
    }

    pub fn set_next_renewal(&self, at: Option<SystemTime>) {
        self.state().next_renewal = at;
    }

    pub fn set_error(&self, error: Option<String>) {
        self.state().last_error = error.map(|e| (SystemTime::now(), e));
    }

    /// The serial (hex) of the certificate in use.
    pub fn serial(&self) -> Option<String> {
        self.state().held.as_ref().map(|h| h.serial.clone())
    }

    /// Appends the identity metrics to a Prometheus text page (nothing when mTLS is disabled).
    pub fn encode_prometheus(&self, out: &mut String) {
        let state = self.state();
        if !state.results.is_empty() {
            let _ = writeln!(
                out,
                "# HELP {RENEWALS} Requests for this workload's certificate (the first included), by result: success, or why none was obtained."
            );
            let _ = writeln!(out, "# TYPE {RENEWALS} counter");
            for (result, n) in &state.results {
                let _ = writeln!(out, "{RENEWALS}{{result=\"{result}\"}} {n}");
            }
        }
        if !state.bundle_updates.is_empty() {
            let _ = writeln!(
                out,
                "# HELP {BUNDLE_UPDATES} Trust bundles pushed by the control plane (root rotation), by result: applied, unchanged, no_certificate, invalid, refused (does not verify this proxy's own certificate)."
            );
            let _ = writeln!(out, "# TYPE {BUNDLE_UPDATES} counter");
            for (result, n) in &state.bundle_updates {
                let _ = writeln!(out, "{BUNDLE_UPDATES}{{result=\"{result}\"}} {n}");
            }
        }
        if let Some(held) = &state.held {
            let _ = writeln!(
                out,
                "# HELP {EXPIRY} When the workload certificate in use expires, seconds since the Unix epoch."
            );
            let _ = writeln!(out, "# TYPE {EXPIRY} gauge");
            let _ = writeln!(out, "{EXPIRY} {}", secs(held.not_after));
        }
    }

    /// The `/certs` document.
    pub fn certs_json(&self) -> serde_json::Value {
        let state = self.state();
        let now = SystemTime::now();
        let source = match &self.mode {
            Mode::Disabled => serde_json::json!({ "type": "none" }),
            Mode::Control { address } => {
                serde_json::json!({ "type": "control", "address": address })
            }
            Mode::Files {
                cert_chain,
                key,
                trust_bundle,
            } => serde_json::json!({
                "type": "files", "cert_chain": cert_chain, "key": key, "trust_bundle": trust_bundle,
            }),
        };
        let certificate = state.held.as_ref().map(|h| {
            serde_json::json!({
                "identity": h.identity,
                "serial_number": h.serial,
                "issuer": h.issuer,
                "chain_length": h.chain_length,
                "valid_from": rfc3339(h.not_before),
                "expiration_time": rfc3339(h.not_after),
                "seconds_until_expiration": secs(h.not_after) - secs(now),
                "expired": now >= h.not_after,
                "received_at": rfc3339(h.received_at),
            })
        });
        let roots: Vec<_> = state
            .held
            .iter()
            .flat_map(|h| &h.roots)
            .map(|r| {
                serde_json::json!({
                    "subject": r.subject,
                    "serial_number": r.serial,
                    "expiration_time": r.not_after.map(rfc3339),
                })
            })
            .collect();
        serde_json::json!({
            "identity": self.identity,
            "source": source,
            "mtls_available": state.held.is_some(),
            "certificate": certificate,
            "trust_bundle": roots,
            "next_renewal": state.next_renewal.map(rfc3339),
            "last_error": state.last_error.as_ref().map(|(at, e)| serde_json::json!({
                "at": rfc3339(*at), "error": e,
            })),
            "renewals": state.results,
            "bundle_updates": state.bundle_updates,
        })
    }
}

/// The roots of `bundle` as `/certs` lists them.
fn roots_of(bundle: &TrustBundle) -> Vec<Root> {
    bundle
        .roots()
        .iter()
        .map(|r| match x509_parser::parse_x509_certificate(r) {
            Ok((_, c)) => Root {
                subject: c.subject().to_string(),
                serial: serial_hex(c.raw_serial()),
                not_after: unix(c.validity().not_after.timestamp()),
            },
            Err(e) => Root {
                subject: format!("(unreadable: {e})"),
                serial: String::new(),
                not_after: None,
            },
        })
        .collect()
}

/// The serial number as hex digits of the integer: DER's sign-padding `00` byte left out.
fn serial_hex(raw: &[u8]) -> String {
    let start = raw
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    hex::encode(&raw[start..])
}

fn unix(secs: i64) -> Option<SystemTime> {
    u64::try_from(secs)
        .ok()
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
}

fn secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

/// `2026-11-21T09:25:55.000Z` (UTC), as the rest of Trellis writes times.
pub fn rfc3339(t: SystemTime) -> String {
    trellis_api::time::rfc3339_millis(trellis_api::time::unix_millis(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_read_as_integers() {
        assert_eq!(serial_hex(&[0x00, 0x9f, 0x01]), "9f01");
        assert_eq!(serial_hex(&[0x7f, 0x00]), "7f00");
        assert_eq!(serial_hex(&[0x00]), "00");
    }

    #[test]
    fn disabled_exports_no_metrics_and_control_starts_at_zero() {
        let mut out = String::new();
        Status::new(Mode::Disabled, String::new()).encode_prometheus(&mut out);
        assert!(out.is_empty());
        let status = Status::new(
            Mode::Control {
                address: "127.0.0.1:15010".into(),
            },
            "spiffe://cluster.local/ns/default/sa/default".into(),
        );
        status.count("unauthenticated");
        status.encode_prometheus(&mut out);
        assert!(
            out.contains("trellis_identity_certificate_renewals_total{result=\"success\"} 0\n")
        );
        assert!(out.contains(
            "trellis_identity_certificate_renewals_total{result=\"unauthenticated\"} 1\n"
        ));
        assert!(!out.contains(EXPIRY));
    }
}
