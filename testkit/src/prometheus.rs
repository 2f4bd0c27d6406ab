//! A real Prometheus server for end-to-end tests, and `promtool check metrics`.
//!
//! [`Prometheus::start`] writes a config scraping the given targets at a short interval into a
//! temporary directory, runs `prometheus` on a free loopback port with its TSDB in that directory,
//! and waits until `/-/ready`; dropping it stops the server and removes the directory. Queries go
//! through the HTTP API (`/api/v1/query`), as Grafana and Kiali send them.
//!
//! When `prometheus`/`promtool` is not installed, [`available`] says so: tests skip with a message,
//! unless `TRELLIS_REQUIRE_PROMETHEUS=1` (CI), where they fail.

use crate::process::ProxyProcess;
use crate::{Error, HttpClient};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long [`Prometheus::start`] waits for `/-/ready`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether `bin` (`prometheus`, `promtool`) can be run. When it cannot: panics if
/// `TRELLIS_REQUIRE_PROMETHEUS=1`, else prints why `test` is skipped and returns `false`.
pub fn available(bin: &str, test: &str) -> bool {
    if find(bin).is_some() {
        return true;
    }
    if std::env::var("TRELLIS_REQUIRE_PROMETHEUS").is_ok_and(|v| v == "1") {
        panic!("{bin} is not installed and TRELLIS_REQUIRE_PROMETHEUS=1");
    }
    eprintln!("skipping {test}: {bin} is not installed (set TRELLIS_REQUIRE_PROMETHEUS=1 to fail)");
    false
}

/// `bin` on `PATH`, or in `/usr/bin` (where the Debian package puts it).
fn find(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(bin))
        .find(|p| p.is_file())
}

/// What `promtool check metrics` said about an exposition.
#[derive(Debug, Clone)]
pub struct PromtoolReport {
    /// Exit status code: 0 clean, 3 lint problems only, other values parse errors.
    pub code: i32,
    /// One line per problem (lint findings and errors).
    pub problems: Vec<String>,
}

impl PromtoolReport {
    /// The text parsed; lint findings are allowed only if each contains one of `allowed`.
    pub fn is_valid_except(&self, allowed: &[&str]) -> bool {
        matches!(self.code, 0 | 3)
            && self
                .problems
                .iter()
                .all(|p| allowed.iter().any(|a| p.contains(a)))
    }
}

/// Runs `promtool check metrics` on `exposition` (Prometheus text format).
pub fn promtool_check_metrics(exposition: &str) -> Result<PromtoolReport, Error> {
    let bin = find("promtool").ok_or("promtool is not installed")?;
    let mut child = Command::new(bin)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().ok_or("promtool stdin")?;
    let text = exposition.to_string();
    // Written from a thread: promtool may answer before reading everything.
    let writer = std::thread::spawn(move || stdin.write_all(text.as_bytes()));
    let out = child.wait_with_output()?;
    let _ = writer.join();
    let problems = String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    Ok(PromtoolReport {
        code: out.status.code().unwrap_or(-1),
        problems,
    })
}

/// One series of an instant-vector query result.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }
}

/// Parses Prometheus text exposition (as a proxy's `/stats/prometheus` serves it) into samples,
/// the metric name under `__name__` as Prometheus stores it. Comments are skipped.
pub fn parse_exposition(text: &str) -> Result<Vec<Sample>, Error> {
    let mut samples = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: &str| -> Error { format!("line {}: {why}: {line}", n + 1).into() };
        let name_end = line
            .find(|c: char| c == '{' || c.is_whitespace())
            .ok_or_else(|| bad("no value"))?;
        let mut labels = BTreeMap::new();
        labels.insert("__name__".to_string(), line[..name_end].to_string());
        let mut rest = &line[name_end..];
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices().peekable();
            let end = loop {
                // name="value" pairs, comma-separated, then `}`.
                while chars.peek().is_some_and(|(_, c)| *c == ',' || *c == ' ') {
                    chars.next();
                }
                let Some(&(start, c)) = chars.peek() else {
                    return Err(bad("unterminated labels"));
                };
                if c == '}' {
                    break start + 1;
                }
                let eq = body[start..]
                    .find('=')
                    .ok_or_else(|| bad("label without ="))?
                    + start;
                let name = body[start..eq].trim().to_string();
                while chars.peek().is_some_and(|(i, _)| *i <= eq) {
                    chars.next();
                }
                if chars.next().map(|(_, c)| c) != Some('"') {
                    return Err(bad("label value not quoted"));
                }
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some((_, '"')) => break,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => value.push('\n'),
                            Some((_, c)) => value.push(c),
                            None => return Err(bad("unterminated escape")),
                        },
                        Some((_, c)) => value.push(c),
                        None => return Err(bad("unterminated label value")),
                    }
                }
                labels.insert(name, value);
            };
            rest = &body[end..];
        }
        let value = rest
            .split_whitespace()
            .next()
            .ok_or_else(|| bad("no value"))?;
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|_| bad("value is not a number"))?,
        };
        samples.push(Sample { labels, value });
    }
    Ok(samples)
}

/// A running Prometheus server; stopped (and its data removed) when dropped.
pub struct Prometheus {
    // Declared before `dir` so the server stops before its directory goes away.
    process: ProxyProcess,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (`host:port`, path `metrics_path`) every
    /// `scrape_interval`, and waits until it is ready.
    pub async fn start(
        targets: &[(&str, SocketAddr)],
        metrics_path: &str,
        scrape_interval: Duration,
    ) -> Result<Prometheus, Error> {
        Prometheus::start_with_config(&config_text(targets, metrics_path, scrape_interval)).await
    }

    /// Starts Prometheus on `config` (a whole prometheus.yml, e.g. a shipped one with its targets
    /// moved), and waits until it is ready.
    pub async fn start_with_config(config: &str) -> Result<Prometheus, Error> {
        let bin = find("prometheus").ok_or("prometheus is not installed")?;
        let dir = tempfile::Builder::new()
            .prefix("trellis-prometheus-")
            .tempdir()?;
        let file = dir.path().join("prometheus.yml");
        std::fs::write(&file, config)?;
        let addr = crate::free_addr();
        let args = [
            format!("--config.file={}", file.display()),
            format!("--web.listen-address={addr}"),
            format!("--storage.tsdb.path={}", dir.path().join("data").display()),
            "--log.level=warn".to_string(),
        ];
        let process = ProxyProcess::spawn(&bin, &args, &[])?;
        let prometheus = Prometheus {
            process,
            addr,
            _dir: dir,
        };
        prometheus.wait_ready().await?;
        Ok(prometheus)
    }

    async fn wait_ready(&self) -> Result<(), Error> {
        let client = HttpClient::http1(self.addr).with_timeout(Duration::from_secs(2));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(r) = client.get(&self.addr.to_string(), "/-/ready", &[]).await
                && r.status == 200
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "prometheus at {} not ready within {READY_TIMEOUT:?}; stderr:\n{}",
                    self.addr,
                    self.process.stderr_lines().join("\n")
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The HTTP API's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Evaluates `promql` now (`/api/v1/query`) and returns the answer's `data` as it is (any
    /// result type).
    pub async fn query_data(&self, promql: &str) -> Result<serde_json::Value, Error> {
        let path = format!("/api/v1/query?query={}", url_encode(promql));
        let resp = HttpClient::http1(self.addr)
            .with_timeout(Duration::from_secs(10))
            .get(&self.addr.to_string(), &path, &[])
            .await?;
        let body: serde_json::Value = serde_json::from_str(&resp.body)
            .map_err(|e| format!("query {promql:?}: answer is not JSON ({e}): {}", resp.body))?;
        if body["status"] != "success" {
            return Err(format!("query {promql:?} failed: {}", resp.body).into());
        }
        Ok(body["data"].clone())
    }

    /// Evaluates `promql` now (`/api/v1/query`) and returns the instant vector.
    pub async fn query(&self, promql: &str) -> Result<Vec<Sample>, Error> {
        let data = self.query_data(promql).await?;
        if data["resultType"] != "vector" {
            return Err(format!("query {promql:?}: not an instant vector: {data}").into());
        }
        let results = data["result"].as_array().cloned().unwrap_or_default();
        results
            .iter()
            .map(|r| {
                let labels = r["metric"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                let value = r["value"][1]
                    .as_str()
                    .and_then(|v| v.parse::<f64>().ok())
                    .ok_or_else(|| format!("query {promql:?}: bad sample {r}"))?;
                Ok(Sample { labels, value })
            })
            .collect()
    }

    /// Repeats `promql` until `accept` takes its result or `timeout` passes; returns the last
    /// result either way, so a failing test shows what Prometheus had.
    pub async fn query_until(
        &self,
        promql: &str,
        timeout: Duration,
        accept: impl Fn(&[Sample]) -> bool,
    ) -> Result<(bool, Vec<Sample>), Error> {
        let deadline = Instant::now() + timeout;
        loop {
            let samples = self.query(promql).await?;
            if accept(&samples) {
                return Ok((true, samples));
            }
            if Instant::now() >= deadline {
                return Ok((false, samples));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The scrape targets' health, as `/api/v1/targets` reports it (`job` -> `up`/`down`, and
    /// the last error).
    pub async fn targets(&self) -> Result<Vec<(String, String, String)>, Error> {
        let resp = HttpClient::http1(self.addr)
            .get(&self.addr.to_string(), "/api/v1/targets", &[])
            .await?;
        let body: serde_json::Value = serde_json::from_str(&resp.body)?;
        Ok(body["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|t| {
                (
                    t["labels"]["job"].as_str().unwrap_or_default().to_string(),
                    t["health"].as_str().unwrap_or_default().to_string(),
                    t["lastError"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect())
    }

    /// The server's data directory (for a test that wants to look).
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }
}

/// A scrape config with one job per target (the job is the target's name).
fn config_text(targets: &[(&str, SocketAddr)], metrics_path: &str, interval: Duration) -> String {
    let ms = interval.as_millis().max(100);
    let mut text = format!(
        "global:\n  scrape_interval: {ms}ms\n  scrape_timeout: {ms}ms\n  evaluation_interval: {ms}ms\nscrape_configs:\n"
    );
    for (job, addr) in targets {
        text.push_str(&format!(
            "  - job_name: {job:?}\n    metrics_path: {metrics_path:?}\n    static_configs:\n      - targets: [\"{addr}\"]\n"
        ));
    }
    text
}

/// Percent-encodes a query parameter value.
fn url_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for &b in value.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_parses_into_samples() {
        let text = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\",y=\"q\\\"\\\\z\",e=\"\"} 3\nb 2.5\nc_bucket{le=\"+Inf\"} 4\n";
        let samples = parse_exposition(text).unwrap();
        assert_eq!(samples.len(), 3);
        assert_eq!(samples[0].label("__name__"), Some("a_total"));
        assert_eq!(samples[0].label("y"), Some("q\"\\z"));
        assert_eq!(samples[0].label("e"), Some(""));
        assert_eq!(samples[0].value, 3.0);
        assert_eq!(samples[1].value, 2.5);
        assert_eq!(samples[2].label("le"), Some("+Inf"));
        assert!(parse_exposition("a{x=1} 2\n").is_err());
        assert!(parse_exposition("a{x=\"1\" 2\n").is_err());
        assert!(parse_exposition("a x\n").is_err());
    }

    #[test]
    fn queries_are_url_encoded() {
        assert_eq!(
            url_encode("sum(rate(x{a=\"b\"}[1m])) by (le)"),
            "sum%28rate%28x%7Ba%3D%22b%22%7D%5B1m%5D%29%29%20by%20%28le%29"
        );
    }

    #[test]
    fn config_names_one_job_per_target() {
        let text = config_text(
            &[("proxy-a", "127.0.0.1:1500".parse().unwrap())],
            "/stats/prometheus",
            Duration::from_secs(1),
        );
        assert!(text.contains("scrape_interval: 1000ms"));
        assert!(text.contains("job_name: \"proxy-a\""));
        assert!(text.contains("targets: [\"127.0.0.1:1500\"]"));
        assert!(text.contains("metrics_path: \"/stats/prometheus\""));
    }

    #[test]
    fn promtool_tells_parse_errors_from_lint() {
        if !available("promtool", "promtool_tells_parse_errors_from_lint") {
            return;
        }
        let lint = promtool_check_metrics("# TYPE x_milliseconds counter\nx_milliseconds 1\n")
            .expect("promtool runs");
        assert!(!lint.is_valid_except(&[]), "{lint:?}");
        let clean =
            promtool_check_metrics("# HELP x_total Things.\n# TYPE x_total counter\nx_total 1\n")
                .expect("promtool runs");
        assert!(clean.is_valid_except(&[]), "{clean:?}");
        let broken = promtool_check_metrics("x{ 1\n").expect("promtool runs");
        assert!(!broken.is_valid_except(&["anything"]), "{broken:?}");
    }
}
