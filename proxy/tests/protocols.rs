//! Protocols through the real binary: HTTP/2 prior knowledge, gRPC with trailers and status codes,
//! WebSocket, opaque TCP on the inbound side, and malformed requests.

mod common;

use common::{Mesh, service_entry};
use std::time::Duration;
use testkit::client::{HttpClient, WsClient, count_by_upstream, raw_http};
use testkit::echo::EchoServer;
use testkit::grpc::{EchoClient, EchoRequest, GrpcEchoServer};
use testkit::tcp::TcpEchoServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread")]
async fn http2_prior_knowledge_end_to_end() {
    let up = EchoServer::start("h2up").await;
    let se = service_entry(
        "web",
        "web.default.svc.cluster.local",
        8080,
        "HTTP2",
        &[(up.addr(), "")],
    );
    let m = Mesh::start(&[("se.yaml", &se)]).await;
    let c = HttpClient::http2(m.outbound());
    let tally = count_by_upstream(200, 20, || c.get("web:8080", "/h2", &[])).await;
    assert_eq!(tally.status(200), 200, "{tally:?}");
    let r = c.get("web:8080", "/h2", &[]).await.unwrap();
    assert_eq!(r.version, http::Version::HTTP_2);
    assert_eq!(
        r.json().unwrap().version,
        "HTTP/2.0",
        "HTTP2 port speaks HTTP/2 upstream"
    );
    // An HTTP/1.1 client on an HTTP2 port is upgraded to HTTP/2 towards the upstream.
    let r = HttpClient::http1(m.outbound())
        .get("web:8080", "/h1", &[])
        .await
        .unwrap();
    assert_eq!(r.json().unwrap().version, "HTTP/2.0");
    let rec = m.wait_log(|r| r["path"] == "/h2").await;
    assert_eq!(rec["protocol"], "HTTP/2");
}

async fn grpc_client(m: &Mesh, authority: &str) -> EchoClient<tonic::transport::Channel> {
    testkit::grpc::client(m.outbound(), authority).expect("gRPC client")
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_unary_streaming_status_and_retries() {
    let a = GrpcEchoServer::start("ga").await;
    let b = GrpcEchoServer::start("gb").await;
    let se = service_entry(
        "echo",
        "echo.default.svc.cluster.local",
        9000,
        "GRPC",
        &[(a.addr(), "v=a"), (b.addr(), "v=b")],
    );
    let vs = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo]
  http:
  - route: [{destination: {host: echo}}]
    retries: {attempts: 3, retryOn: unavailable}
"#;
    let dr = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: echo, namespace: default}\nspec:\n  host: echo\n  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}\n";
    let m = Mesh::start(&[("se.yaml", &se), ("vs.yaml", vs), ("dr.yaml", dr)]).await;
    let mut client = grpc_client(&m, "echo:9000").await;

    let reply = client
        .unary(EchoRequest {
            message: "hi".into(),
            fail_with_code: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.message, "hi");

    let mut stream = client
        .server_stream(EchoRequest {
            message: "s".into(),
            fail_with_code: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut n = 0;
    while let Some(msg) = stream.message().await.unwrap() {
        assert_eq!(msg.message, format!("s {n}"));
        n += 1;
    }
    assert_eq!(
        n,
        testkit::grpc::STREAM_LEN,
        "every streamed message arrives"
    );

    // A status in trailers reaches the client intact.
    let err = client
        .unary(EchoRequest {
            message: "x".into(),
            fail_with_code: 5,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    let rec = m.wait_log(|r| r["grpc_status"] == 5).await;
    assert_eq!(rec["response_code"], 200);

    // UNAVAILABLE from one endpoint is retried on the other.
    a.set_fail_code(Some(14));
    for i in 0..10 {
        let reply = client
            .unary(EchoRequest {
                message: format!("r{i}"),
                fail_with_code: 0,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.server, "gb");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_gets_grpc_errors_from_the_proxy() {
    let se = service_entry(
        "echo",
        "echo.default.svc.cluster.local",
        9000,
        "GRPC",
        &[(testkit::free_addr(), "")],
    );
    let vs = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: echo, namespace: default}\nspec:\n  hosts: [echo]\n  http:\n  - route: [{destination: {host: echo}}]\n    retries: {attempts: 0}\n";
    let m = Mesh::start(&[("se.yaml", &se), ("vs.yaml", vs)]).await;
    let mut client = grpc_client(&m, "echo:9000").await;
    let err = client
        .unary(EchoRequest {
            message: "x".into(),
            fail_with_code: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    let mut client = grpc_client(&m, "nothing:9000").await;
    let err = client
        .unary(EchoRequest {
            message: "x".into(),
            fail_with_code: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::Unimplemented,
        "no route maps to UNIMPLEMENTED: {err:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_echo_through_the_proxy() {
    let up = EchoServer::start("ws").await;
    let se = service_entry(
        "chat",
        "chat.default.svc.cluster.local",
        80,
        "HTTP",
        &[(up.addr(), "")],
    );
    let m = Mesh::start(&[("se.yaml", &se)]).await;
    let mut ws = WsClient::connect(m.outbound(), "chat", "/ws")
        .await
        .expect("websocket handshake through the proxy");
    for i in 0..5 {
        let answer = ws.roundtrip(&format!("hello {i}")).await.unwrap();
        assert_eq!(answer, format!("ws: hello {i}"));
    }
    ws.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn inbound_forwards_http_and_opaque_tcp_to_the_app() {
    let app = EchoServer::start("app").await;
    let m = Mesh::start_with(&[], &["--app-port", &app.port().to_string()]).await;
    let r = HttpClient::http1(m.proxy.inbound_addr())
        .get("anything", "/in", &[])
        .await
        .unwrap();
    assert_eq!((r.status.as_u16(), r.upstream()), (200, Some("app")));
    let rec = m.wait_log(|r| r["direction"] == "inbound").await;
    assert_eq!(rec["upstream_cluster"], format!("inbound|{}||", app.port()));

    let tcp_app = TcpEchoServer::start("db").await;
    let m = Mesh::start_with(&[], &["--app-port", &tcp_app.addr().port().to_string()]).await;
    let mut s = tokio::net::TcpStream::connect(m.proxy.inbound_addr())
        .await
        .unwrap();
    s.write_all(b"\x00\x01binary-ping").await.unwrap();
    let mut buf = vec![0u8; 64];
    let mut got = Vec::new();
    while !got.ends_with(b"binary-ping") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection closed early: {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"db\n"), "{got:?}");
    drop(s);
    let rec = m.wait_log(|r| r["protocol"] == "TCP").await;
    assert_eq!(rec["bytes_received"], 13);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_oversized_requests_get_4xx() {
    let up = EchoServer::start("up").await;
    let se = service_entry(
        "web",
        "web.default.svc.cluster.local",
        80,
        "HTTP",
        &[(up.addr(), "")],
    );
    let m = Mesh::start(&[("se.yaml", &se)]).await;
    let bad = raw_http(
        m.outbound(),
        b"GET /\x01 HTTP/1.1\r\nHost: web\r\n\r\n",
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert!(
        String::from_utf8_lossy(&bad).starts_with("HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&bad)
    );
    let big = format!(
        "GET / HTTP/1.1\r\nHost: web\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let resp = raw_http(m.outbound(), big.as_bytes(), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&resp).starts_with("HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&resp)
    );
    // The proxy is still serving.
    let r = HttpClient::http1(m.outbound())
        .get("web", "/", &[])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
}
