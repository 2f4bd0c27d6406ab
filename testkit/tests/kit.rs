//! testkit's own tests: each server, client and the process runner, on loopback.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use testkit::client::{self, WsClient};
use testkit::grpc::{self, EchoRequest};
use testkit::{
    ConfigDir, EchoServer, GrpcEchoServer, HttpClient, ProxyProcess, TcpEchoServer,
    count_by_upstream, wait_until,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn echo_http1_describes_request() {
    let echo = EchoServer::start("e1").await;
    let r = client::get(
        echo.addr(),
        "svc.example:9000",
        "/a/b?x=1&y=2",
        &[("x-multi", "1"), ("x-multi", "2"), ("X-Case", "v")],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream(), Some("e1"));
    let info = r.json().unwrap();
    assert_eq!(info.server, "e1");
    assert_eq!(info.method, "GET");
    assert_eq!(info.path, "/a/b");
    assert_eq!(info.query.as_deref(), Some("x=1&y=2"));
    assert_eq!(info.authority.as_deref(), Some("svc.example:9000"));
    assert_eq!(info.version, "HTTP/1.1");
    assert_eq!(info.header("x-multi"), Some("1,2"));
    assert_eq!(info.header("X-Case"), Some("v"));
    assert_eq!(info.body_len, 0);
    assert_eq!(echo.requests(), 1);
    assert_eq!(echo.last_headers().unwrap()["x-case"], "v");
    assert_eq!(echo.last_request().unwrap(), info);
}

#[tokio::test]
async fn echo_http2_prior_knowledge() {
    let echo = EchoServer::start("e2").await;
    let r = client::get_h2(echo.addr(), "reviews.default.svc.cluster.local", "/h2", &[])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.version, http::Version::HTTP_2);
    let info = r.json().unwrap();
    assert_eq!(info.version, "HTTP/2.0");
    assert_eq!(
        info.authority.as_deref(),
        Some("reviews.default.svc.cluster.local")
    );
    assert_eq!(info.path, "/h2");
}

#[tokio::test]
async fn echo_absolute_form_request() {
    let echo = EchoServer::start("e3").await;
    let r = client::proxy_get(echo.addr(), "http://ratings.default:8080/p?q", &[])
        .await
        .unwrap();
    let info = r.json().unwrap();
    assert_eq!(info.authority.as_deref(), Some("ratings.default:8080"));
    assert_eq!(info.header("host"), Some("ratings.default:8080"));
    assert_eq!(
        (info.path.as_str(), info.query.as_deref()),
        ("/p", Some("q"))
    );
}

#[tokio::test]
async fn echo_behaviour_headers_and_setters() {
    let echo = EchoServer::start("e4").await;
    let c = HttpClient::http1(echo.addr());

    let r = c
        .get(
            "s",
            "/",
            &[
                ("x-echo-status", "503"),
                ("x-echo-set-header", "k1=v1"),
                ("x-echo-set-header", "k2=v2"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 503);
    assert_eq!((r.header("k1"), r.header("k2")), (Some("v1"), Some("v2")));
    assert_eq!(r.json().unwrap().server, "e4");

    let t = Instant::now();
    let r = c
        .get("s", "/", &[("x-echo-delay-ms", "200")])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(200));

    echo.set_status(Some(500));
    assert_eq!(c.get("s", "/", &[]).await.unwrap().status, 500);
    echo.set_status(None);
    echo.set_delay(Some(Duration::from_millis(300)));
    let slow = c.clone().with_timeout(Duration::from_millis(100));
    let err = slow.get("s", "/", &[]).await.unwrap_err();
    assert!(err.to_string().contains("timed out"), "{err}");
    echo.set_delay(None);

    let r = c
        .request(
            Method::POST,
            "http://s/upload",
            &[],
            Bytes::from(vec![7u8; 1000]),
        )
        .await
        .unwrap();
    assert_eq!(r.json().unwrap().body_len, 1000);
    assert_eq!(r.json().unwrap().method, "POST");

    assert_eq!(echo.requests(), 5);
    echo.reset_counts();
    assert_eq!(echo.requests(), 0);
}

#[tokio::test]
async fn echo_websocket_and_connection_counts() {
    let echo = EchoServer::start("ws1").await;
    let mut ws = WsClient::connect(echo.addr(), "ws.example", "/ws")
        .await
        .unwrap();
    assert_eq!(ws.roundtrip("hello").await.unwrap(), "ws1: hello");
    assert_eq!(ws.roundtrip("again").await.unwrap(), "ws1: again");
    ws.send(tokio_tungstenite::tungstenite::Message::binary(vec![
        1u8, 2,
    ]))
    .await
    .unwrap();
    match ws.recv().await.unwrap() {
        tokio_tungstenite::tungstenite::Message::Binary(b) => {
            assert_eq!(&b[..], b"ws1: \x01\x02")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(echo.open_connections(), 1);
    assert_eq!(echo.last_request().unwrap().path, "/ws");
    ws.close().await.unwrap();
    assert!(wait_until(5 * SECOND, || async { echo.open_connections() == 0 }).await);
    assert_eq!(echo.total_connections(), 1);
}

#[tokio::test]
async fn echo_raw_upgrade() {
    let echo = EchoServer::start("up").await;
    let out = client::raw_http(
        echo.addr(),
        b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: foo\r\n\r\nping",
        Duration::from_millis(500),
    )
    .await
    .unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 101"), "{out}");
    assert!(out.to_ascii_lowercase().contains("upgrade: foo"), "{out}");
    assert!(out.ends_with("\r\n\r\nup\nping"), "{out}");
}

#[tokio::test]
async fn echo_shutdown_refuses_connections() {
    let echo = EchoServer::start("gone").await;
    let addr = echo.addr();
    let mut ws = WsClient::connect(addr, "h", "/ws").await.unwrap();
    echo.shutdown().await;
    assert!(TcpStream::connect(addr).await.is_err());
    // The open upgraded connection was closed too.
    assert!(ws.roundtrip("x").await.is_err());
    // And the port can be served again.
    let again = EchoServer::start_at("back", addr).await.unwrap();
    let r = client::get(addr, "h", "/", &[]).await.unwrap();
    assert_eq!(r.upstream(), Some("back"));
    drop(again);
}

#[tokio::test]
async fn tally_counts_upstreams_statuses_and_errors() {
    let a = EchoServer::start("a").await;
    let b = EchoServer::start("b").await;
    b.set_status(Some(503));
    let clients = Arc::new([
        HttpClient::http1(a.addr()),
        HttpClient::http2(b.addr()),
        HttpClient::http1(testkit::free_addr()).with_timeout(SECOND),
    ]);
    let i = AtomicUsize::new(0);
    let tally = count_by_upstream(90, 8, || {
        let c = clients[i.fetch_add(1, Ordering::SeqCst) % 3].clone();
        async move { c.get("svc", "/", &[]).await }
    })
    .await;
    assert_eq!(tally.upstream("a"), 30, "{tally:?}");
    assert_eq!(tally.upstream("b"), 30);
    assert_eq!((tally.status(200), tally.status(503)), (30, 30));
    assert_eq!(tally.errors, 30);
    assert!(tally.first_error.is_some());
    assert_eq!(tally.total(), 90);
    assert!((tally.share("a") - 1.0 / 3.0).abs() < 1e-9);
    // Pooled: far fewer connections than requests.
    assert!(a.total_connections() <= 8, "{}", a.total_connections());
}

#[tokio::test]
async fn wait_until_is_bounded() {
    let t = Instant::now();
    assert!(!wait_until(Duration::from_millis(100), || async { false }).await);
    assert!(t.elapsed() < SECOND);
    // A condition that never resolves is cut off too.
    assert!(!wait_until(Duration::from_millis(100), std::future::pending::<bool>).await);
    let n = AtomicUsize::new(0);
    assert!(wait_until(SECOND, || async { n.fetch_add(1, Ordering::SeqCst) >= 3 }).await);
}

#[tokio::test]
async fn grpc_unary_stream_and_failures() {
    let srv = GrpcEchoServer::start("g1").await;
    let mut c = grpc::client(srv.addr(), "echo.default.svc.cluster.local:9000").unwrap();
    let r = c
        .unary(EchoRequest {
            message: "hi".into(),
            fail_with_code: 0,
        })
        .await
        .unwrap();
    assert_eq!(r.metadata().get("x-upstream").unwrap(), "g1");
    let r = r.into_inner();
    assert_eq!((r.message.as_str(), r.server.as_str()), ("hi", "g1"));

    let err = c
        .unary(EchoRequest {
            message: "x".into(),
            fail_with_code: 14,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert_eq!(err.metadata().get("x-upstream").unwrap(), "g1");

    let mut stream = c
        .server_stream(EchoRequest {
            message: "s".into(),
            fail_with_code: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while let Some(m) = stream.message().await.unwrap() {
        got.push(m.message);
    }
    assert_eq!(got, ["s 0", "s 1", "s 2"]);

    srv.set_fail_code(Some(8));
    let err = c.unary(EchoRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    srv.set_fail_code(None);
    assert!(c.unary(EchoRequest::default()).await.is_ok());
    assert_eq!(srv.requests(), 5);
    assert_eq!(srv.total_connections(), 1);
}

/// `grpc::channel` dials one address but sends the given `:authority`, as a proxy needs.
#[tokio::test]
async fn grpc_channel_sets_authority() {
    let echo = EchoServer::start("http").await;
    let mut c = grpc::client(echo.addr(), "echo.default.svc.cluster.local:9000").unwrap();
    // The echo server is not a gRPC server, so the call fails, but it saw the request.
    let _ = c.unary(EchoRequest::default()).await;
    let seen = echo.last_request().unwrap();
    assert_eq!(
        seen.authority.as_deref(),
        Some("echo.default.svc.cluster.local:9000")
    );
    assert_eq!(seen.version, "HTTP/2.0");
    assert_eq!(seen.path, "/trellis.test.Echo/Unary");
    assert_eq!(seen.header("content-type"), Some("application/grpc"));
}

#[tokio::test]
async fn tcp_echo_greets_and_echoes() {
    let srv = TcpEchoServer::start("t1").await;
    let mut s = TcpStream::connect(srv.addr()).await.unwrap();
    let mut greeting = [0u8; 3];
    s.read_exact(&mut greeting).await.unwrap();
    assert_eq!(&greeting, b"t1\n");
    s.write_all(b"abc").await.unwrap();
    let mut back = [0u8; 3];
    tokio::time::timeout(SECOND, s.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&back, b"abc");
    assert_eq!((srv.connections(), srv.open_connections()), (1, 1));
    drop(s);
    assert!(wait_until(5 * SECOND, || async { srv.open_connections() == 0 }).await);
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::kill(pid, 0) == 0 }
}

#[tokio::test]
async fn process_captures_output_and_kills_group_on_drop() {
    let p = ProxyProcess::spawn(
        "/bin/sh",
        &[
            "-c",
            "echo hi; echo oops >&2; sleep 30 & echo child=$!; wait",
        ],
        &[("FOO", "bar")],
    )
    .unwrap();
    let pid = p.pid() as i32;
    assert!(p.wait_for_stdout(|l| l == "hi", 5 * SECOND).await.is_some());
    assert!(
        p.wait_for_stderr(|l| l.contains("oops"), 5 * SECOND)
            .await
            .is_some()
    );
    let child = p
        .wait_for_stdout(|l| l.starts_with("child="), 5 * SECOND)
        .await
        .unwrap();
    let child: i32 = child["child=".len()..].parse().unwrap();
    assert!(
        p.wait_for_stdout(|l| l == "never", Duration::from_millis(50))
            .await
            .is_none()
    );
    assert_eq!(p.stdout_lines()[0], "hi");
    let t = Instant::now();
    drop(p);
    assert!(t.elapsed() < 2 * SECOND, "SIGTERM should have been enough");
    assert!(!alive(pid));
    assert!(wait_until(5 * SECOND, || async { !alive(child) }).await);
}

#[tokio::test]
async fn process_signal_and_exit_status() {
    let mut p = ProxyProcess::spawn(
        "/bin/sh",
        &[
            "-c",
            "trap 'echo got-hup; exit 3' HUP; echo ready; while :; do sleep 0.05; done",
        ],
        &[],
    )
    .unwrap();
    p.wait_for_stdout(|l| l == "ready", 5 * SECOND)
        .await
        .unwrap();
    assert!(p.wait_exit(Duration::from_millis(50)).await.is_none());
    p.send_signal(libc::SIGHUP).unwrap();
    let status = p.wait_exit(5 * SECOND).await.unwrap();
    assert_eq!(status.code(), Some(3));
    assert!(p.stdout_lines().iter().any(|l| l == "got-hup"));
    assert!(p.send_signal(libc::SIGHUP).is_err());
}

#[tokio::test]
async fn process_sigkill_when_sigterm_ignored() {
    let p = ProxyProcess::spawn(
        "/bin/sh",
        &[
            "-c",
            "trap '' TERM; echo ready; while :; do sleep 0.2; done",
        ],
        &[],
    )
    .unwrap();
    p.wait_for_stdout(|l| l == "ready", 5 * SECOND)
        .await
        .unwrap();
    let pid = p.pid() as i32;
    let t = Instant::now();
    drop(p);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(2900) && took < 6 * SECOND,
        "{took:?}"
    );
    assert!(!alive(pid));
}

#[tokio::test]
async fn trellis_proxy_picks_ports_and_waits_ready() {
    let dir = ConfigDir::new();
    let bin = env!("CARGO_BIN_EXE_testkit-fake-proxy");
    let p = ProxyProcess::trellis_proxy(bin, dir.path(), &["--workload=other", "--log", "debug"])
        .await
        .unwrap();
    let args = p
        .wait_for_stdout(|l| l.starts_with("args: "), 5 * SECOND)
        .await
        .unwrap();
    let expect = [
        format!("--config {}", dir.path().display()),
        format!("--outbound {}", p.outbound_addr()),
        format!("--inbound {}", p.inbound_addr()),
        format!("--admin {}", p.admin_addr()),
        format!("--stats {}", p.stats_addr()),
        "--namespace default".into(),
        "--access-log stdout".into(),
        "--workload=other --log debug".into(),
    ];
    for e in expect {
        assert!(args.contains(&e), "{e:?} missing in {args}");
    }
    assert!(!args.contains("--workload test"), "{args}");
    let ports = [
        p.outbound_addr(),
        p.inbound_addr(),
        p.admin_addr(),
        p.stats_addr(),
    ];
    assert!(ports.iter().all(|a| a.ip().is_loopback()));
    let mut uniq: Vec<u16> = ports.iter().map(|a| a.port()).collect();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), 4);
}

#[tokio::test]
async fn trellis_proxy_reports_early_exit() {
    let dir = ConfigDir::new();
    let t = Instant::now();
    let err = ProxyProcess::trellis_proxy("/bin/sh", dir.path(), &[])
        .await
        .err()
        .expect("sh is not a proxy");
    assert!(t.elapsed() < 5 * SECOND);
    let err = err.to_string();
    assert!(err.contains("exited before ready"), "{err}");
    assert!(err.contains("--- stderr ---"), "{err}");
}

#[test]
fn config_dir_writes_atomically() {
    let dir = ConfigDir::new();
    let p = dir.write("routes.yaml", "a: 1\n");
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "a: 1\n");
    dir.write("routes.yaml", "a: 2\n");
    dir.write("more.yaml", "b: 1\n");
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "a: 2\n");
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["more.yaml", "routes.yaml"]);
    dir.remove("more.yaml");
    assert!(!dir.path().join("more.yaml").exists());
    let root = dir.path().to_path_buf();
    drop(dir);
    assert!(!root.exists());
}

#[test]
fn free_addrs_are_distinct_loopback() {
    let addrs = testkit::free_addrs(20);
    let mut ports: Vec<u16> = addrs.iter().map(|a| a.port()).collect();
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), 20);
    assert!(addrs.iter().all(|a| a.ip().is_loopback()));
    assert!(!ports.contains(&testkit::free_addr().port()));
}
