//! The Traces pages and the live tap through the router against the in-memory fixture: the
//! search form, results (table and scatter), sorting, the waterfall's order and geometry, span
//! details (escaped), the Jaeger link, the error paths, and the tap page and its event stream.

use crate::memory::MemoryBackend;
use crate::model::{TapDirection, TapEvent};
use crate::pages::tap;
use crate::server::{ConsoleOptions, router};
use crate::test_support as support;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

const OK_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const ERROR_TRACE: &str = "00f067aa0ba902b7c3c1c1b1a1f1e1d1";
/// The fixture's traces start at 10:00 and 10:01 UTC on this day.
const WINDOW: &str = "lookback=custom&start=2025-11-21T09:55&end=2025-11-21T10:05";

async fn get_with(options: ConsoleOptions, uri: &str) -> (StatusCode, String) {
    let request = Request::get(uri).body(Body::empty()).unwrap();
    support::send_with(&support::fixture(), options, request).await
}

async fn get(uri: &str) -> (StatusCode, String) {
    get_with(ConsoleOptions::default(), uri).await
}

/// The text from `start` to the next `end` after it.
fn section<'a>(html: &'a str, start: &str, end: &str) -> &'a str {
    let from = html
        .find(start)
        .unwrap_or_else(|| panic!("{start:?} not in {html}"));
    let rest = &html[from..];
    &rest[..rest.find(end).map_or(rest.len(), |i| i + end.len())]
}

fn position(html: &str, needle: &str) -> usize {
    html.find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in {html}"))
}

#[tokio::test]
async fn search_form_keeps_what_was_typed() {
    let (status, html) = get(&format!(
        "/traces?service=reviews&operation=GET%20%2Freviews%2F0&tags=http.response.status_code%3D503&minDuration=1ms&maxDuration=1.5s&limit=5&sort=longest&{WINDOW}"
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains(r#"aria-current="page">Traces</a>"#), "{html}");
    let form = section(&html, r#"aria-label="Find traces""#, "</form>");
    for expected in [
        r#"value="GET /reviews/0""#,
        r#"value="http.response.status_code=503""#,
        r#"value="1ms""#,
        r#"value="1.5s""#,
        r#"value="5""#,
        r#"value="2025-11-21T09:55""#,
        r#"value="2025-11-21T10:05""#,
    ] {
        assert!(form.contains(expected), "{expected} in {form}");
    }
    // Services come from the backend; the chosen one, the lookback and the sort stay selected.
    assert!(
        form.contains(r#"<option value="productpage">productpage</option>"#),
        "{form}"
    );
    assert!(
        form.contains(r#"<option value="reviews" selected"#),
        "{form}"
    );
    assert!(
        form.contains(r#"<option value="custom" selected"#),
        "{form}"
    );
    assert!(
        form.contains(r#"<option value="longest" selected"#),
        "{form}"
    );
    // Only the error trace has a 503.
    assert!(html.contains("<h2 role=\"status\">1 trace</h2>"), "{html}");
}

#[tokio::test]
async fn without_a_service_the_page_asks_for_one() {
    let (status, html) = get("/traces").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("Choose a service and press Find traces."),
        "{html}"
    );
    assert!(html.contains(r#"<option value="1h" selected"#), "{html}");
    assert!(!html.contains(r#"<table class="trace-results""#), "{html}");
}

#[tokio::test]
async fn results_list_and_plot_every_trace() {
    let (status, html) = get(&format!("/traces?service=productpage&{WINDOW}")).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("2 traces"), "{html}");
    let ok = section(&html, &format!(r#"<a href="/traces/{OK_TRACE}">"#), "</tr>");
    assert!(ok.contains("productpage: GET /productpage"), "{ok}");
    assert!(ok.contains(r#"<td class="num">7</td>"#), "{ok}");
    assert!(
        ok.contains("4 (details, productpage, ratings, reviews)"),
        "{ok}"
    );
    assert!(ok.contains("none"), "{ok}");
    assert!(ok.contains(r#"<td class="num">24ms</td>"#), "{ok}");
    assert!(ok.contains("2025-11-21 10:00:00.000 UTC"), "{ok}");
    let failed = section(
        &html,
        &format!(r#"<a href="/traces/{ERROR_TRACE}">"#),
        "</tr>",
    );
    assert!(failed.contains(r#"<td class="num">5</td>"#), "{failed}");
    assert!(failed.contains("2 errors"), "{failed}");
    assert!(failed.contains("12ms"), "{failed}");

    let svg = section(&html, "<svg", "</svg>");
    assert_eq!(svg.matches("<circle").count(), 2, "{svg}");
    let ok_dot = section(svg, &format!(r#"<a href="/traces/{OK_TRACE}""#), "</a>");
    let error_dot = section(svg, &format!(r#"<a href="/traces/{ERROR_TRACE}""#), "</a>");
    assert!(ok_dot.contains(r#"class="dot""#), "{ok_dot}");
    assert!(
        error_dot.contains(r#"class="dot dot-error""#),
        "{error_dot}"
    );
    assert!(
        ok_dot.contains("<title>productpage: GET /productpage — 24ms, 7 spans</title>"),
        "{ok_dot}"
    );
    assert!(
        error_dot.contains("12ms, 5 spans, 2 errors</title>"),
        "{error_dot}"
    );
    // Earlier start: further left; longer: higher (smaller y); more spans: bigger.
    let attr = |dot: &str, name: &str| -> f64 {
        let start = position(dot, &format!(" {name}=\"")) + name.len() + 3;
        let value = &dot[start..];
        value[..position(value, "\"")].parse().unwrap()
    };
    assert!(attr(ok_dot, "cx") < attr(error_dot, "cx"));
    assert!(attr(ok_dot, "cy") < attr(error_dot, "cy"));
    assert!(attr(ok_dot, "r") > attr(error_dot, "r"));
}

#[tokio::test]
async fn results_sort_like_jaeger() {
    let order = |html: &str| {
        let table = section(html, "<table class=\"trace-results\"", "</table>").to_string();
        position(&table, OK_TRACE) < position(&table, ERROR_TRACE)
    };
    for (sort, ok_first) in [
        ("", false), // most recent first: the error trace started a minute later
        ("recent", false),
        ("longest", true),
        ("shortest", false),
        ("most-spans", true),
    ] {
        let (status, html) =
            get(&format!("/traces?service=productpage&sort={sort}&{WINDOW}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(order(&html), ok_first, "sort={sort}");
    }
}

#[tokio::test]
async fn bad_fields_get_a_400_with_the_message_beside_them() {
    let (status, html) = get(
        "/traces?service=productpage&minDuration=fast&tags=error&limit=0&lookback=custom&start=yesterday",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{html}");
    for (field, message) in [
        ("minDuration", r#""fast" is not a duration like 100ms"#),
        ("tags", r#""error" is not key=value"#),
        ("limit", "from 1 to 1500"),
        ("start", r#""yesterday" is not a time"#),
    ] {
        let block = section(&html, &format!(r#"<label for="{field}""#), "</div>");
        assert!(block.contains(r#"aria-invalid="true""#), "{block}");
        assert!(
            block.contains(&format!(r#"aria-describedby="{field}-error""#)),
            "{block}"
        );
        let error = section(block, &format!(r#"id="{field}-error""#), "</span>");
        assert!(error.contains(message), "{field}: {error}");
    }
    assert!(
        html.contains(r#"value="fast""#),
        "the typed value stays: {html}"
    );
    assert!(
        !html.contains(r#"<table class="trace-results""#),
        "no search ran: {html}"
    );

    let (status, html) = get("/traces?service=productpage&minDuration=2s&maxDuration=1s").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let error = section(&html, r#"id="maxDuration-error""#, "</span>");
    assert!(error.contains("below the minimum"), "{error}");
}

#[tokio::test]
async fn the_waterfall_nests_spans_on_the_time_axis() {
    let (status, html) = get(&format!("/traces/{OK_TRACE}")).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(
        html.contains("<h1>productpage: GET /productpage</h1>"),
        "{html}"
    );
    let header = section(&html, r#"aria-label="Trace summary""#, "</section>");
    for fact in [
        OK_TRACE,
        "2025-11-21 10:00:00.000 UTC",
        "<dd>24ms</dd>",
        "4 (productpage, details, reviews, ratings)",
        "<dt>Depth</dt><dd>5</dd>",
        "<dt>Total spans</dt><dd>7</dd>",
        "<dt>Errors</dt><dd>0</dd>",
    ] {
        assert!(header.contains(fact), "{fact} in {header}");
    }
    // Every row: its depth, its label and where its bar sits.
    let rows: Vec<(usize, String, f64, f64)> = html
        .split(r#"<li data-depth=""#)
        .skip(1)
        .map(|row| {
            let depth = row[..position(row, "\"")].parse().unwrap();
            let label = section(row, "<strong>", "<span");
            let label = ["<strong>", "</strong>", "<!>", "</span>", "<span"]
                .iter()
                .fold(label.to_string(), |l, tag| l.replace(tag, ""));
            let bar = section(row, "class=\"span-bar\" style=\"left:", ";background");
            let numbers: Vec<f64> = bar["class=\"span-bar\" style=\"left:".len()..]
                .trim_end_matches(";background")
                .split(";width:")
                .map(|n| n.trim_end_matches('%').parse().unwrap())
                .collect();
            (depth, label, numbers[0], numbers[1])
        })
        .collect();
    let expected = [
        (0, "productpage: GET /productpage", 0.0, 100.0),
        (1, "productpage: GET details", 4.167, 12.5),
        (2, "details: GET /details/0", 6.25, 8.333),
        (1, "productpage: GET reviews", 20.833, 70.833),
        (2, "reviews: GET /reviews/0", 22.917, 66.667),
        (3, "reviews: GET ratings", 29.167, 33.333),
        (4, "ratings: GET /ratings/0", 31.25, 29.167),
    ];
    assert_eq!(rows.len(), expected.len(), "{rows:?}");
    for (row, (depth, label, left, width)) in rows.iter().zip(expected) {
        assert_eq!((row.0, row.1.as_str()), (depth, label), "{rows:?}");
        assert!(
            (row.2 - left).abs() < 0.001 && (row.3 - width).abs() < 0.001,
            "{row:?}"
        );
    }
    // The axis is labelled in durations.
    let axis = section(&html, r#"class="waterfall-axis""#, "</div>");
    assert!(
        axis.contains(">12ms</span>") && axis.contains(">24ms</span>"),
        "{axis}"
    );
    // Details open without script.
    let first = section(&html, r#"<li data-depth="0""#, "</li>");
    assert!(
        first.contains("<details>") && first.contains("<summary>"),
        "{first}"
    );
    assert!(
        first.contains("none (root)") && first.contains("<dd>server</dd>"),
        "{first}"
    );
    assert!(!html.contains("Open in Jaeger"), "no Jaeger configured");
}

#[tokio::test]
async fn span_details_show_errors_events_and_escape_them() {
    let (status, html) = get(&format!("/traces/{ERROR_TRACE}")).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    let header = section(&html, r#"aria-label="Trace summary""#, "</section>");
    assert!(header.contains("<dt>Depth</dt><dd>3</dd>"), "{header}");
    assert!(header.contains("<dt>Errors</dt><dd>2</dd>"), "{header}");
    let reviews = section(
        &html,
        "<strong>reviews</strong>: <!>GET /reviews/0",
        "</li>",
    );
    assert!(reviews.contains("⚠ error"), "{reviews}");
    assert!(
        reviews.contains("<code>00000000000000b1</code>"),
        "{reviews}"
    );
    assert!(
        reviews.contains("<code>00000000000000a3</code>"),
        "parent: {reviews}"
    );
    assert!(
        reviews.contains("<code>http.response.status_code</code></th><td><code>503</code>"),
        "{reviews}"
    );
    assert!(
        reviews.contains("<code>trellis.proxy</code>"),
        "process: {reviews}"
    );
    assert!(reviews.contains("<strong>exception</strong>"), "{reviews}");
    assert!(
        reviews.contains("upstream connect error &lt;reset&gt; &amp; retries exhausted"),
        "{reviews}"
    );
    assert!(!html.contains("<reset>"), "unescaped event text");
    let failed_row = section(
        &html,
        r#"<li data-depth="2" class="span-row span-failed""#,
        "</li>",
    );
    assert!(failed_row.contains("GET /reviews/0"), "{failed_row}");
}

#[tokio::test]
async fn jaeger_link_only_when_configured() {
    let options = ConsoleOptions {
        jaeger_ui_url: Some("http://jaeger.example:16686/".into()),
        ..ConsoleOptions::default()
    };
    let (status, html) = get_with(options, &format!("/traces/{}", OK_TRACE.to_uppercase())).await;
    assert_eq!(status, StatusCode::OK);
    let link = section(&html, r#"<p class="links">"#, "</p>");
    assert!(
        link.contains(&format!(
            r#"href="http://jaeger.example:16686/trace/{OK_TRACE}""#
        )),
        "{link}"
    );
    assert!(link.contains("Open in Jaeger"), "{link}");
}

#[tokio::test]
async fn bad_and_unknown_trace_ids() {
    let (status, html) = get("/traces/not-a-trace%3Cb%3E").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{html}");
    let error = section(&html, r#"id="traceId-error""#, "</span>");
    assert!(error.contains("16 or 32 hexadecimal digits"), "{error}");
    assert!(error.contains(r#""not-a-trace&lt;b&gt;""#), "{error}");
    assert!(html.contains(r#"value="not-a-trace&lt;b&gt;""#), "{html}");

    let (status, html) = get("/traces/0123456789abcdef").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{html}");
    assert!(
        html.contains("No trace with id 0123456789abcdef is stored"),
        "{html}"
    );

    // The lookup form: a good id goes to the trace, a bad one stays with its message.
    let app = router(
        Arc::new(MemoryBackend::fixture()),
        ConsoleOptions::default(),
    );
    let uri = format!("/traces?traceId={}", OK_TRACE.to_uppercase());
    let response = app
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        response.headers()[header::LOCATION],
        format!("/traces/{OK_TRACE}")
    );
    let (status, html) = get("/traces?traceId=abc").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(section(&html, r#"id="traceId-error""#, "</span>").contains("not a trace id"));
}

#[tokio::test]
async fn backend_failure_is_a_502_page() {
    let backend = MemoryBackend::fixture();
    backend.set_failure(Some("span store is down"));
    let app = router(Arc::new(backend), ConsoleOptions::default());
    let response = app
        .oneshot(
            Request::get(format!("/traces/{OK_TRACE}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn tap_page_lists_the_last_requests_without_script() {
    let (status, html) = get("/proxies/tap?namespace=shop").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(
        html.contains(r#"aria-current="page">Proxies</a>"#),
        "{html}"
    );
    assert!(
        html.contains("Live tap needs JavaScript; here are the last 5 requests."),
        "{html}"
    );
    let body = section(&html, r#"<tbody id="tap-rows""#, "</tbody>");
    assert!(
        body.contains(r#"data-tap-src="/proxies/tap/events?namespace=shop""#),
        "{body}"
    );
    assert_eq!(body.matches("<tr>").count(), 5, "{body}");
    assert!(!body.contains("grafana"), "another namespace: {body}");
    // Newest first, escaped, with status and mTLS.
    assert!(
        position(body, "/reviews/2") < position(body, "/reviews/0"),
        "{body}"
    );
    assert!(body.contains("/productpage?u=&lt;x&gt;"), "{body}");
    let failed = section(body, "<tr>", "</tr>");
    assert!(failed.contains("/reviews/2"), "{failed}");
    let nack = &body[position(body, "/reviews/1")..];
    assert!(
        nack.contains(r#"<td class="status-error">503</td>"#),
        "{nack}"
    );
    assert!(html.contains(r#"<option value="shop" selected"#), "{html}");
    assert!(
        html.contains(r#"<output id="tap-dropped">0</output>"#),
        "{html}"
    );
}

#[tokio::test]
async fn tap_refuses_a_bad_filter_beside_the_field() {
    let (status, html) = get("/proxies/tap?workload=%3Cscript%3E").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{html}");
    let error = section(&html, r#"id="workload-error""#, "</span>");
    assert!(
        error.contains(r#""&lt;script&gt;" is not a workload name"#),
        "{error}"
    );
    let (status, _) = get("/proxies/tap/events?namespace=a%20b").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn proxies_page_links_to_the_tap() {
    let (_, html) = get("/proxies").await;
    assert!(html.contains(r#"href="/proxies/tap""#), "{html}");
    assert!(
        html.contains(r#"href="/proxies/tap?namespace=shop&amp;workload=reviews-v2""#),
        "{html}"
    );
}

#[tokio::test]
async fn tap_events_stream_rows_then_end() {
    let app = router(
        Arc::new(MemoryBackend::fixture()),
        ConsoleOptions::default(),
    );
    let response = app
        .oneshot(
            Request::get("/proxies/tap/events?workload=reviews-v1")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    let mut body = response.into_body().into_data_stream();
    let mut text = String::new();
    while !text.contains("event: end") {
        let chunk = tokio::time::timeout(Duration::from_secs(2), body.next())
            .await
            .expect("an event within 2 s")
            .expect("the stream ends with an end event")
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert_eq!(text.matches("event: request").count(), 3, "{text}");
    assert!(
        text.contains("data: <tr><td><time datetime=\"2026-11-21T10:09:01.000Z\""),
        "{text}"
    );
    assert!(text.contains("/reviews/2"), "{text}");
    assert!(!text.contains("reviews-v2"), "another workload: {text}");
    assert!(text.contains("data: the tap source ended"), "{text}");
}

fn tap_event(n: u64, dropped_before: u64) -> TapEvent {
    TapEvent {
        time: format!("2026-11-21T10:00:{:02}.000Z", n % 60),
        direction: TapDirection::Inbound,
        source: "a.shop".into(),
        destination: "b.shop".into(),
        method: "GET".into(),
        authority: "b:80".into(),
        path: format!("/{n}"),
        status: 200,
        duration_ms: 1.0,
        flags: "-".into(),
        mtls: true,
        dropped_before,
    }
}

#[tokio::test]
async fn tap_is_rate_limited_and_counts_what_it_drops() {
    let source = futures_util::stream::iter((0..30).map(|n| tap_event(n, u64::from(n == 0) * 4)));
    let events: Vec<String> = tap::bounded(Box::pin(source), 20, Duration::from_secs(60))
        .map(|e| format!("{:?}", e.unwrap()))
        .collect()
        .await;
    let text = events.join("\n");
    assert_eq!(text.matches("event: request").count(), 20, "{text}");
    // 4 the source dropped, then 10 over the limit; reported before the end.
    assert!(text.contains("event: dropped\\ndata: 4\\n"), "{text}");
    assert!(text.contains("event: dropped\\ndata: 14\\n"), "{text}");
    assert!(events.last().unwrap().contains("event: end"), "{text}");
}

#[tokio::test]
async fn tap_stops_at_its_time_limit() {
    let source = futures_util::stream::pending::<TapEvent>();
    let events: Vec<String> = tap::bounded(Box::pin(source), 20, Duration::from_millis(50))
        .map(|e| format!("{:?}", e.unwrap()))
        .collect()
        .await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].contains("time limit reached"), "{events:?}");
}
