//! Transparent capture as in a pod: inside a network namespace made for the test, iptables
//! REDIRECTs the application's outbound connections to the proxy, which reads SO_ORIGINAL_DST and
//! routes HTTP by original destination (IPv4 and IPv6), proxies opaque TCP (declared and detected),
//! and passes unknown destinations through (ALLOW_ANY). The proxy runs as uid 1337, whose own
//! connections are not redirected, as with Istio.
//!
//! Needs root, `ip`, `iptables`/`ip6tables` and `setpriv`; without them it says so and passes,
//! unless TRELLIS_REQUIRE_NETNS=1 (set by CI), where it fails.

mod common;

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use testkit::client::HttpClient;
use testkit::echo::EchoServer;
use testkit::process::{ConfigDir, ProxyProcess};
use testkit::tcp::TcpEchoServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PROXY_UID: &str = "1337";

fn sh(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A network namespace that is deleted on drop.
struct Netns(String);

impl Netns {
    fn create() -> Result<Netns, String> {
        let name = format!("trellis-test-{}", std::process::id());
        let _ = sh(&["ip", "netns", "del", &name]);
        sh(&["ip", "netns", "add", &name])?;
        let ns = Netns(name);
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    fn exec(&self, args: &[&str]) -> Result<(), String> {
        let mut all = vec!["ip", "netns", "exec", &self.0];
        all.extend_from_slice(args);
        sh(&all)
    }

    /// Runs `f` on a thread that lives in the namespace; sockets and child processes it creates
    /// belong to the namespace.
    fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        let path = format!("/var/run/netns/{}", self.0);
        std::thread::scope(|s| {
            s.spawn(|| {
                let file = File::open(&path).expect("open netns");
                // SAFETY: setns on this thread only, with a valid namespace fd.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .expect("netns thread")
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sh(&["ip", "netns", "del", &self.0]);
    }
}

fn prerequisites() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not root".into());
    }
    for tool in ["ip", "iptables", "setpriv"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            return Err(format!("{tool} not installed"));
        }
    }
    Ok(())
}

#[test]
fn transparent_capture_in_a_network_namespace() {
    if let Err(why) = prerequisites() {
        assert!(
            std::env::var("TRELLIS_REQUIRE_NETNS").as_deref() != Ok("1"),
            "transparent capture test cannot run: {why}"
        );
        eprintln!("skipping transparent capture test: {why}");
        return;
    }
    let ns = Netns::create().expect("create network namespace");
    // Redirect the app's connections to the service ports; the proxy's own (uid 1337) go out.
    for ipt in ["iptables", "ip6tables"] {
        ns.exec(&[
            ipt,
            "-t",
            "nat",
            "-A",
            "OUTPUT",
            "-p",
            "tcp",
            "-m",
            "owner",
            "--uid-owner",
            PROXY_UID,
            "-j",
            "RETURN",
        ])
        .unwrap();
        ns.exec(&[
            ipt,
            "-t",
            "nat",
            "-A",
            "OUTPUT",
            "-p",
            "tcp",
            "-m",
            "multiport",
            "--dports",
            "9080,5432,6000,7000",
            "-j",
            "REDIRECT",
            "--to-ports",
            "15001",
        ])
        .unwrap();
    }
    ns.run(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(scenario())
    });
}

async fn scenario() {
    let reviews = EchoServer::start("reviews-v1").await;
    let reviews6 = EchoServer::start_at("reviews-v6", "[::1]:0".parse().unwrap())
        .await
        .unwrap();
    let db = TcpEchoServer::start("db").await;
    let db_b = TcpEchoServer::start("db-b").await;
    let external = EchoServer::start_at("external", "127.0.0.1:7000".parse().unwrap())
        .await
        .unwrap();
    let opaque = TcpEchoServer::start("opaque").await;

    let dir = ConfigDir::new();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    dir.write(
        "services.yaml",
        &format!(
            r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews.default.svc.cluster.local]
  addresses: [127.10.0.10, "::1"]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  endpoints:
  - address: 127.0.0.1
    ports: {{http: {r4}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: reviews6, namespace: default}}
spec:
  hosts: [reviews6.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  endpoints:
  - address: "::1"
    ports: {{http: {r6}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: db, namespace: default}}
spec:
  hosts: [db.default.svc.cluster.local]
  addresses: [127.10.0.20]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 5432, name: tcp-postgres, protocol: TCP}}]
  endpoints:
  - address: 127.0.0.1
    ports: {{tcp-postgres: {db}}}
    labels: {{v: a}}
  - address: 127.0.0.1
    ports: {{tcp-postgres: {db_b}}}
    labels: {{v: b}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: db, namespace: default}}
spec:
  host: db
  subsets: [{{name: a, labels: {{v: a}}}}, {{name: b, labels: {{v: b}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: db, namespace: default}}
spec:
  hosts: [db]
  tcp:
  - route:
    - {{destination: {{host: db, subset: a}}, weight: 75}}
    - {{destination: {{host: db, subset: b}}, weight: 25}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: opaque, namespace: default}}
spec:
  hosts: [opaque.default.svc.cluster.local]
  addresses: [127.10.0.30]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 6000, name: stuff}}]
  endpoints:
  - address: 127.0.0.1
    ports: {{stuff: {op}}}
"#,
            r4 = reviews.port(),
            r6 = reviews6.port(),
            db = db.addr().port(),
            db_b = db_b.addr().port(),
            op = opaque.addr().port(),
        ),
    );
    let bin = Path::new(common::BIN);
    let args = [
        "--reuid",
        PROXY_UID,
        "--regid",
        PROXY_UID,
        "--clear-groups",
        "--",
        common::BIN,
        "--config",
        dir.path().to_str().unwrap(),
        "--outbound",
        "[::]:15001",
        "--inbound",
        "127.0.0.1:15006",
        "--admin",
        "127.0.0.1:15000",
        "--stats",
        "127.0.0.1:15020",
        "--access-log",
        "stdout",
        "--detection-seconds",
        "0.3",
    ];
    assert!(bin.exists());
    let mut proxy = ProxyProcess::spawn("setpriv", &args, &[]).expect("start proxy as uid 1337");
    let ready = testkit::client::wait_until(Duration::from_secs(10), || async {
        testkit::client::get("127.0.0.1:15000".parse().unwrap(), "admin", "/ready", &[])
            .await
            .is_ok_and(|r| r.status == 200)
    })
    .await;
    assert!(ready, "proxy ready; stderr: {:?}", proxy.stderr_lines());

    // HTTP to the service address with a Host the registry does not know: routed by original destination.
    let r = HttpClient::http1("127.10.0.10:9080".parse().unwrap())
        .get("some-alias", "/by-address", &[])
        .await
        .unwrap();
    assert_eq!((r.status.as_u16(), r.upstream()), (200, Some("reviews-v1")));
    // And by name, to a different service on the same port: the Host wins.
    let r = HttpClient::http1("127.10.0.10:9080".parse().unwrap())
        .get("reviews6", "/by-name", &[])
        .await
        .unwrap();
    assert_eq!(r.upstream(), Some("reviews-v6"));
    // IPv6.
    let r = HttpClient::http1("[::1]:9080".parse().unwrap())
        .get("unknown", "/v6", &[])
        .await
        .unwrap();
    assert_eq!(
        (r.status.as_u16(), r.upstream()),
        (200, Some("reviews-v1")),
        "[::1]:9080 is a reviews address"
    );

    // Declared TCP: bytes flow both ways, even though the server speaks first; tcp routes split
    // connections by weight.
    let mut s = tokio::net::TcpStream::connect("127.10.0.20:5432")
        .await
        .unwrap();
    expect_echo(&mut s, b"db", b"\x00\x00\x00\x08startup").await;
    drop(s);
    let mut to_b = 0;
    for _ in 0..600 {
        let mut s = tokio::net::TcpStream::connect("127.10.0.20:5432")
            .await
            .unwrap();
        let mut greeting = [0u8; 3];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut greeting))
            .await
            .unwrap()
            .unwrap();
        if &greeting == b"db-" {
            to_b += 1;
        }
    }
    let share = to_b as f64 / 600.0;
    assert!(
        (share - 0.25).abs() < 0.07,
        "weighted TCP share of b: {share}"
    );
    // Undeclared port, not HTTP: detected as opaque TCP.
    let mut s = tokio::net::TcpStream::connect("127.10.0.30:6000")
        .await
        .unwrap();
    s.write_all(b"\x16\x03\x01hello").await.unwrap();
    expect_echo(&mut s, b"opaque\n", b"").await;
    drop(s);
    // Not in the registry: passed through to where it was going (ALLOW_ANY).
    let r = HttpClient::http1("127.0.0.1:7000".parse().unwrap())
        .get("anything", "/out", &[])
        .await
        .unwrap();
    assert_eq!(r.upstream(), Some("external"));

    // TCP connections are logged when they close.
    let log = || -> Vec<serde_json::Value> {
        proxy
            .stdout_lines()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let logged = testkit::client::wait_until(Duration::from_secs(5), || async {
        let log = log();
        log.iter()
            .any(|r| r["upstream_cluster"] == "PassthroughCluster")
            && log.iter().any(|r| {
                r["protocol"] == "TCP"
                    && r["upstream_cluster"] == "outbound|5432|a|db.default.svc.cluster.local"
            })
            && log.iter().any(|r| {
                r["protocol"] == "TCP"
                    && r["upstream_cluster"] == "outbound|6000||opaque.default.svc.cluster.local"
            })
    })
    .await;
    assert!(logged, "{:#?}", log());
    proxy.kill();
    drop((reviews, reviews6, db, db_b, external, opaque));
}

/// Reads the greeting, then writes `payload` and reads it back.
async fn expect_echo(s: &mut tokio::net::TcpStream, greeting: &[u8], payload: &[u8]) {
    let mut want = greeting.to_vec();
    want.extend_from_slice(payload);
    if !payload.is_empty() {
        s.write_all(payload).await.unwrap();
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while got.len() < want.len() {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("read in time")
            .unwrap();
        assert!(n > 0, "closed early; got {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(greeting), "{got:?}");
}
