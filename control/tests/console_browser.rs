//! The console end to end in headless Chromium, over a running mesh: a productpage client calling
//! a `reviews` service with two versions, traffic flowing the whole time. The browser reads the
//! graph, moves the traffic to 80/20 with the wizard and watches the split arrive, rolls it back
//! from the config history, and opens a trace's waterfall. Every page is saved as a PNG under
//! `target/console-screenshots/` for a person to look at.

mod common;

use common::browser::{Browser, Chromedriver};
use common::{Control, SERVICE, observed, text};
use fantoccini::Locator;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use testkit::EchoServer;
use testkit::client::HttpClient;

/// `target/console-screenshots/` in the workspace, or `TRELLIS_SCREENSHOT_DIR` when set.
fn screenshot_dir() -> PathBuf {
    std::env::var_os("TRELLIS_SCREENSHOT_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots"),
        PathBuf::from,
    )
}

/// Prints the control plane's log when the test fails (the browser waits print the page).
struct LogOnPanic<'a>(&'a Control);

impl Drop for LogOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- trellis control stderr ---\n{}",
                self.0.process.stderr_lines().join("\n")
            );
        }
    }
}

/// Requests through the client's sidecar until dropped: ~40 per second, counting the answers.
struct Traffic {
    task: tokio::task::JoinHandle<()>,
    ok: Arc<AtomicU64>,
}

impl Traffic {
    fn start(client: HttpClient) -> Traffic {
        let ok = Arc::new(AtomicU64::new(0));
        let counter = ok.clone();
        let task = tokio::spawn(async move {
            loop {
                if let Ok(r) = client.get("reviews:9080", "/", &[]).await
                    && r.status == 200
                {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        });
        Traffic { task, ok }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The number before `suffix` in `text` ("…, 80.5% of the source's traffic" → 80.5).
fn number_before(text: &str, suffix: &str) -> Option<f64> {
    let end = text.find(suffix)?;
    let start = text[..end]
        .rfind(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or(0, |i| i + 1);
    text[start..end].parse().ok()
}

/// The share of the reviews service's requests going to each version, from the collector's
/// graph (`/api/v1/graph`) over the last `window`.
async fn api_split(control: &Control, window: &str) -> Option<(f64, f64)> {
    let graph = control
        .api(&format!(
            "graph?namespaces=default&graphType=versionedApp&duration={window}"
        ))
        .await;
    let nodes = graph["nodes"].as_array()?;
    let id_of = |pred: &dyn Fn(&serde_json::Value) -> bool| {
        nodes
            .iter()
            .find(|n| pred(n))
            .and_then(|n| n["id"].as_str())
            .map(str::to_string)
    };
    let service = id_of(&|n| n["nodeType"] == "service" && n["service"] == "reviews")?;
    let version = |v: &'static str| {
        id_of(&|n| n["nodeType"] == "app" && n["app"] == "reviews" && n["version"] == v)
    };
    let (v1, v2) = (version("v1")?, version("v2")?);
    let rate = |target: &str| {
        graph["edges"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["source"] == service.as_str() && e["target"] == target)
            .filter_map(|e| e["requestsPerSecond"].as_f64())
            .sum::<f64>()
    };
    let (r1, r2) = (rate(&v1), rate(&v2));
    (r1 + r2 > 0.0).then(|| (100.0 * r1 / (r1 + r2), 100.0 * r2 / (r1 + r2)))
}

/// The graph's edge tooltips (`<title>`s) and node tooltips, as the browser has them.
async fn graph_titles(browser: &Browser) -> (Vec<String>, Vec<String>) {
    (
        browser.texts("svg.graph-svg g.nodes a.node > title").await,
        browser.texts("svg.graph-svg g.edges a.edge > title").await,
    )
}

/// The share shown on the edge from the reviews service to `version`, from its tooltip.
fn shown_share(edges: &[String], version: &str) -> Option<f64> {
    let from = format!("from reviews to reviews {version}:");
    edges
        .iter()
        .find(|t| t.contains(&from))
        .and_then(|t| number_before(t, "% of the source's traffic"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_browser_graph_wizard_rollback_and_traces() {
    let shots = screenshot_dir();
    // Start the browser first: a missing chromium fails at once, with what to install.
    let driver = Chromedriver::start().await;

    let data = tempfile::tempdir().unwrap();
    let control = Control::start(data.path()).await;
    let _log = LogOnPanic(&control);
    let files = tempfile::tempdir().unwrap();
    let config = files.path().join("reviews.yaml");
    std::fs::write(&config, SERVICE).unwrap();
    let out = control.cli(&["apply", "-f", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));

    let echo_v1 = EchoServer::start("reviews-v1").await;
    let echo_v2 = EchoServer::start("reviews-v2").await;
    let push = control.push;
    let _v1 = observed(
        push,
        "reviews-v1",
        "app=reviews,version=v1",
        Some(echo_v1.port()),
    )
    .await;
    let _v2 = observed(
        push,
        "reviews-v2",
        "app=reviews,version=v2",
        Some(echo_v2.port()),
    )
    .await;
    let productpage = observed(push, "productpage-v1", "app=productpage,version=v1", None).await;
    control.wait_synced(3, 1, Duration::from_secs(10)).await;
    let traffic = Traffic::start(HttpClient::http1(productpage.outbound_addr()));

    let browser = driver.browser().await;
    let base = control.server_url();

    // a. The versioned-app graph: productpage v1 -> the reviews service -> reviews v1 and v2.
    let graph = format!("{base}/graph?namespaces=default&graphType=versionedApp");
    browser.goto(&graph).await;
    browser
        .wait_css("svg.graph-svg", Duration::from_secs(5))
        .await;
    let wanted_nodes = [
        "app productpage v1",
        "service reviews",
        "app reviews v1",
        "app reviews v2",
    ];
    let wanted_edges = [
        "from productpage v1 to reviews:",
        "from reviews to reviews v1:",
        "from reviews to reviews v2:",
    ];
    let complete = browser
        .poll(Duration::from_secs(20), Duration::from_secs(1), || async {
            let (nodes, edges) = graph_titles(&browser).await;
            let all = wanted_nodes
                .iter()
                .all(|w| nodes.iter().any(|n| n.contains(w)))
                && wanted_edges
                    .iter()
                    .all(|w| edges.iter().any(|e| e.contains(w)));
            if all {
                Some(())
            } else {
                browser.client.refresh().await.ok()?;
                None
            }
        })
        .await;
    let (nodes, edges) = graph_titles(&browser).await;
    assert!(
        complete.is_some(),
        "the graph lacks nodes or edges\nnodes: {nodes:#?}\nedges: {edges:#?}\n{}",
        browser.html().await
    );
    browser.screenshot(&shots, "01-graph-versioned-app").await;

    // b. The service page, then the wizard's weights: 80/20, preview, apply.
    browser
        .goto(&format!("{base}/namespaces/default/services/reviews"))
        .await;
    browser.wait_css("main h1", Duration::from_secs(5)).await;
    browser.screenshot(&shots, "02-service-reviews").await;

    browser
        .goto(&format!(
            "{base}/namespaces/default/services/reviews/wizard?tab=weights"
        ))
        .await;
    let v1 = r#"input[name="weight.v1"]"#;
    let v2 = r#"input[name="weight.v2"]"#;
    // The sliders' script may rebalance the other field: set both, then check the pair.
    for _ in 0..3 {
        browser.type_into(v1, "80").await;
        browser.type_into(v2, "20").await;
        if (browser.value(v1).await, browser.value(v2).await) == ("80".into(), "20".into()) {
            break;
        }
    }
    assert_eq!(
        (browser.value(v1).await, browser.value(v2).await),
        ("80".to_string(), "20".to_string()),
        "the weight fields do not hold 80/20"
    );
    browser.screenshot(&shots, "03-wizard-weights").await;
    browser
        .click(r#"button[name="action"][value="preview"]"#)
        .await;
    let yaml = browser
        .wait_css(".wizard-yaml pre", Duration::from_secs(5))
        .await
        .text()
        .await
        .unwrap_or_default();
    for w in [
        "kind: VirtualService",
        "subset: v1",
        "weight: 80",
        "subset: v2",
        "weight: 20",
    ] {
        assert!(yaml.contains(w), "the preview lacks {w:?}:\n{yaml}");
    }
    browser.screenshot(&shots, "04-wizard-preview").await;
    assert_eq!(browser.value(v1).await, "80", "the preview lost the fields");
    browser
        .click(r#"button[name="action"][value="apply"]"#)
        .await;
    let done = browser
        .wait_css(".wizard-done .success", Duration::from_secs(5))
        .await
        .text()
        .await
        .unwrap_or_default();
    let Some(applied) = done
        .strip_prefix("Applied as revision ")
        .and_then(|s| s.trim_end_matches('.').parse::<u64>().ok())
    else {
        panic!("not applied: {done:?}\n{}", browser.html().await);
    };
    assert!(applied >= 2, "{done}");
    let applied_at = std::time::Instant::now();
    browser.screenshot(&shots, "05-wizard-applied").await;

    // The split arrives in the graph within seconds: traffic-share labels over a short window,
    // checked against the collector's own numbers, once the 10 s window holds only traffic sent
    // after the apply (before that it mixes in the even split from before).
    let share_graph = format!("{graph}&edges=share&duration=10s");
    browser.goto(&share_graph).await;
    let settled = Duration::from_secs(12);
    let in_range = |(a, b): (f64, f64)| (70.0..=90.0).contains(&a) && (10.0..=30.0).contains(&b);
    let split = browser
        .poll(Duration::from_secs(30), Duration::from_secs(2), || async {
            browser.client.refresh().await.ok()?;
            let (_, edges) = graph_titles(&browser).await;
            let shown = (shown_share(&edges, "v1")?, shown_share(&edges, "v2")?);
            let measured = api_split(&control, "10s").await?;
            let done = in_range(shown) && in_range(measured) && applied_at.elapsed() > settled;
            done.then_some((shown, measured))
        })
        .await;
    let (_, edges) = graph_titles(&browser).await;
    let measured = api_split(&control, "10s").await;
    let (shown, _) = split.unwrap_or_else(|| {
        panic!(
            "no 80/20 split within 30 s (collector: {measured:?}, {} requests answered)\nedges: {edges:#?}",
            traffic.ok.load(Ordering::Relaxed)
        )
    });
    let labels = browser.texts("svg.graph-svg text.edge-label").await;
    // Shares of 10 % and more are drawn with one decimal, as in the tooltips.
    for share in [shown.0, shown.1] {
        let label = format!("{share:.1}%");
        assert!(labels.contains(&label), "no edge label {label}: {labels:?}");
    }
    browser.screenshot(&shots, "06-graph-split-80-20").await;

    // c. Roll the wizard's change back from the history: confirm, then see the new revision.
    browser.goto(&format!("{base}/config/history")).await;
    browser.wait_css("main table", Duration::from_secs(5)).await;
    browser.screenshot(&shots, "07-config-history").await;
    let before = applied - 1;
    browser
        .click(&format!(r#"a[href="/config/rollback?revision={before}"]"#))
        .await;
    browser
        .wait_css("form.confirm", Duration::from_secs(5))
        .await;
    let page = browser.html().await;
    assert!(
        page.contains("VirtualService"),
        "the confirmation shows no diff:\n{page}"
    );
    browser.screenshot(&shots, "08-rollback-confirm").await;
    browser.click("form.confirm button[type=submit]").await;
    let outcome = browser
        .wait_css("main p.success", Duration::from_secs(5))
        .await
        .text()
        .await
        .unwrap_or_default();
    let expected = format!(
        "Rolled back to revision {before}: written as revision {}",
        applied + 1
    );
    assert!(
        outcome.contains(&expected),
        "{outcome:?}, wanted {expected:?}"
    );
    browser.screenshot(&shots, "09-rollback-done").await;
    let resources = control.api("resources").await;
    let items = resources["items"].as_array().unwrap();
    assert!(
        items.iter().all(|i| i["kind"] != "VirtualService"),
        "the VirtualService survived the rollback: {resources:#}"
    );
    assert_eq!(items.len(), 2, "{resources:#}");

    // d. Traces: search the client's service, open a trace, expand a span.
    browser.goto(&format!("{base}/traces")).await;
    let options = browser.texts("select#service option").await;
    let service = ["productpage", "reviews"]
        .iter()
        .find_map(|s| options.iter().find(|o| o.contains(s)))
        .unwrap_or_else(|| panic!("no productpage or reviews service to search: {options:?}"))
        .clone();
    let select = browser
        .wait_css("select#service", Duration::from_secs(5))
        .await;
    select
        .select_by_label(&service)
        .await
        .unwrap_or_else(|e| panic!("select {service:?}: {e}"));
    browser
        .client
        .find(Locator::XPath("//button[normalize-space()='Find traces']"))
        .await
        .expect("the search button")
        .click()
        .await
        .expect("search");
    // A trace whose spans from both sidecars have arrived (the newest may still lack one).
    let with_both = "for (const row of document.querySelectorAll('table.trace-results tbody tr')) {\
        const spans = parseInt(row.querySelector('td.num').textContent, 10);\
        if (spans >= 2) return row.querySelector('a').getAttribute('href'); }\
        return null;";
    let href = browser
        .poll(Duration::from_secs(10), Duration::from_secs(1), || async {
            let found = browser.client.execute(with_both, vec![]).await.ok()?;
            let href = found.as_str().map(str::to_string);
            if href.is_none() {
                browser.client.refresh().await.ok()?;
            }
            href
        })
        .await;
    let Some(href) = href else {
        panic!("no trace with two spans:\n{}", browser.html().await);
    };
    browser.screenshot(&shots, "10-traces-search").await;
    browser
        .click(&format!("table.trace-results a[href='{href}']"))
        .await;
    browser
        .wait_css("ol.spans li.span-row", Duration::from_secs(5))
        .await;
    let rows = browser
        .texts("ol.spans li.span-row summary .span-label")
        .await;
    assert!(rows.len() >= 2, "fewer than two spans: {rows:?}");
    for who in ["productpage", "reviews"] {
        assert!(
            rows.iter().any(|r| r.contains(who)),
            "no {who} span: {rows:?}"
        );
    }
    browser
        .click("ol.spans li.span-row:nth-child(2) summary")
        .await;
    let details = browser
        .wait_css(
            "ol.spans li.span-row details[open] .span-details",
            Duration::from_secs(5),
        )
        .await;
    assert!(
        details.is_displayed().await.unwrap_or(false),
        "the span's details did not open"
    );
    browser.screenshot(&shots, "11-trace-waterfall").await;

    // e. The other pages, each checked for its content.
    for (name, path, wanted) in [
        ("12-overview", "/", vec!["default", "3 connected"]),
        (
            "13-proxies",
            "/proxies",
            vec!["productpage-v1", "reviews-v1", "reviews-v2"],
        ),
        ("14-services", "/services", vec!["reviews"]),
        (
            "15-workload-reviews-v1",
            "/namespaces/default/workloads/reviews-v1",
            vec!["reviews-v1", "productpage-v1"],
        ),
        (
            "16-config",
            "/config",
            vec!["ServiceEntry", "DestinationRule"],
        ),
    ] {
        browser.goto(&format!("{base}{path}")).await;
        browser.wait_css("main", Duration::from_secs(5)).await;
        let page = browser.html().await;
        for w in wanted {
            assert!(page.contains(w), "{path} lacks {w:?}:\n{page}");
        }
        browser.screenshot(&shots, name).await;
    }
    assert!(
        traffic.ok.load(Ordering::Relaxed) > 100,
        "too little traffic"
    );
    browser.close().await;
}
