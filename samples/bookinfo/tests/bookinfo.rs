//! Starts the built `bookinfo` services on free loopback ports (no sidecars) and checks the page,
//! the versions, the stars, trace-header forwarding and error handling.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running service; killed when dropped.
struct Svc {
    child: Child,
    url: String,
}

impl Drop for Svc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(args: &[&str]) -> Svc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bookinfo"))
        .args(args)
        .args(["--listen", "127.0.0.1:0", "--log", "error"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn bookinfo");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("read the listening line");
    let url = line
        .trim()
        .rsplit(' ')
        .next()
        .filter(|u| u.starts_with("http://"))
        .unwrap_or_else(|| panic!("{args:?}: unexpected first line {line:?}"))
        .to_string();
    Svc { child, url }
}

/// A blocking HTTP/1.1 GET with `Connection: close`; returns (status, body).
fn get(url: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let addr = url.strip_prefix("http://").unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp[9..12].parse().unwrap();
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn json(url: &str, path: &str, headers: &[(&str, &str)]) -> serde_json::Value {
    let (status, body) = get(url, path, headers);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// A loopback address where nothing listens.
fn dead_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

#[test]
fn bookinfo_end_to_end() {
    let details = start(&["details"]);
    let ratings = start(&["ratings", "--version", "v1"]);
    let reviews_v1 = start(&["reviews", "--version", "v1", "--ratings", &dead_url()]);
    let reviews_v2 = start(&["reviews", "--version", "v2", "--ratings", &ratings.url]);
    let reviews_v3 = start(&["reviews", "--version", "v3", "--ratings", &ratings.url]);
    let dead = dead_url();
    let reviews_no_ratings = start(&["reviews", "--version", "v2", "--ratings", &dead]);
    let page = |reviews: &Svc| {
        start(&[
            "productpage",
            "--details",
            &details.url,
            "--reviews",
            &reviews.url,
        ])
    };
    let (pp1, pp2, pp3, pp_down) = (
        page(&reviews_v1),
        page(&reviews_v2),
        page(&reviews_v3),
        page(&reviews_no_ratings),
    );

    for svc in [&details, &ratings, &reviews_v1, &pp1] {
        assert_eq!(get(&svc.url, "/health", &[]).0, 200);
    }

    // v1: details and reviews without stars; ratings is not called (its URL is dead).
    let (status, html) = get(&pp1.url, "/productpage", &[]);
    assert_eq!(status, 200);
    assert!(html.contains("details v1"), "{html}");
    assert!(html.contains("William Shakespeare"), "{html}");
    assert!(html.contains("reviews v1 (no stars)"), "{html}");
    assert!(!html.contains('\u{2605}'), "v1 shows no stars: {html}");
    assert!(!html.contains("unavailable"), "{html}");

    // v2: black stars from ratings; v3: red stars.
    let (_, html) = get(&pp2.url, "/productpage", &[]);
    assert!(html.contains("reviews v2 (black stars)"), "{html}");
    assert!(html.contains("color:black\" title=\"5 of 5"), "{html}");
    assert!(
        html.contains("\u{2605}\u{2605}\u{2605}\u{2605}\u{2606}"),
        "Reviewer2 has 4 stars: {html}"
    );
    let (_, html) = get(&pp3.url, "/productpage", &[]);
    assert!(html.contains("reviews v3 (red stars)"), "{html}");
    assert!(html.contains("color:red"), "{html}");

    // Trace headers and the signed-in user travel productpage -> reviews -> ratings.
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let v = json(
        &pp2.url,
        "/api/v1/productpage?u=jason",
        &[
            ("traceparent", tp),
            ("x-request-id", "req-42"),
            ("x-b3-sampled", "1"),
        ],
    );
    let at_ratings = &v["reviews"]["ratings_service"]["received"];
    assert_eq!(at_ratings["traceparent"], tp, "{v}");
    assert_eq!(at_ratings["x-request-id"], "req-42", "{v}");
    assert_eq!(at_ratings["x-b3-sampled"], "1", "{v}");
    assert_eq!(at_ratings["end-user"], "jason", "{v}");
    assert_eq!(v["details"]["received"]["traceparent"], tp, "{v}");
    assert_eq!(v["details"]["received"]["end-user"], "jason", "{v}");
    // The end-user cookie works too, and the page shows who is signed in.
    let (_, html) = get(
        &pp2.url,
        "/productpage",
        &[("cookie", "a=b; end-user=jason")],
    );
    assert!(html.contains("Signed in as <b>jason</b>"), "{html}");

    // Ratings down: the page still answers 200 and says why there are no stars.
    let (status, html) = get(&pp_down.url, "/productpage", &[]);
    assert_eq!(status, 200);
    assert!(html.contains("reviews v2"), "{html}");
    assert!(html.contains("ratings unavailable:"), "{html}");
    assert!(!html.contains('\u{2605}'), "{html}");

    // Reviews answering an error status: shown on the page with the status.
    let pp_404 = start(&[
        "productpage",
        "--details",
        &details.url,
        "--reviews",
        &details.url,
    ]);
    let (status, html) = get(&pp_404.url, "/productpage", &[]);
    assert_eq!(status, 200);
    assert!(
        html.contains("reviews unavailable: 404 Not Found"),
        "{html}"
    );
    assert!(html.contains("details v1"), "{html}");
}

#[test]
fn outbound_mode_and_timeouts() {
    let details = start(&["details", "--version", "v2"]);
    // Through an "outbound" address (here details itself): the upstream URLs only name hosts.
    let pp = start(&[
        "productpage",
        "--outbound",
        details.url.strip_prefix("http://").unwrap(),
        "--details",
        "http://details:9080",
        "--reviews",
        "http://reviews:9080",
    ]);
    let (status, html) = get(&pp.url, "/productpage", &[]);
    assert_eq!(status, 200);
    assert!(html.contains("details v2"), "{html}");
    assert!(html.contains("reviews unavailable: 404"), "{html}");

    // An upstream that accepts but never answers: the call times out, the page still renders.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let pp = start(&[
        "productpage",
        "--timeout-seconds",
        "0.3",
        "--details",
        &details.url,
        "--reviews",
        &silent_url,
    ]);
    let started = std::time::Instant::now();
    let (status, html) = get(&pp.url, "/productpage", &[]);
    assert_eq!(status, 200);
    assert!(
        html.contains("reviews unavailable: timed out after 0.3 s"),
        "{html}"
    );
    assert!(html.contains("details v2"), "{html}");
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(silent);
}
