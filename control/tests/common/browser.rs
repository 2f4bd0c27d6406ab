//! Headless Chromium driven over WebDriver (chromedriver from apt, fantoccini as the client), for
//! the console's end-to-end tests. Missing binaries fail the test with what to install: CI
//! installs them, so a skip would hide a broken console.

use fantoccini::{Client, ClientBuilder, Locator};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The viewport every screenshot starts from.
pub const WIDTH: u32 = 1400;
pub const HEIGHT: u32 = 1000;
/// Full-page screenshots stop growing here (a long list would make a huge PNG).
const MAX_HEIGHT: u32 = 3000;

/// The first of `names` found on `PATH`.
fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// `chromedriver` in its own process group, with the browser it starts; both killed on drop
/// (also when the test panics), and the browser's profile directory removed.
pub struct Chromedriver {
    child: Child,
    pub url: String,
    chromium: PathBuf,
    profile: tempfile::TempDir,
}

impl Chromedriver {
    /// Starts chromedriver on a free port and waits until it is ready.
    pub async fn start() -> Chromedriver {
        let install = "install them with `apt-get install -y chromium chromium-driver` \
                       (.ci/run does); the console's browser test needs them";
        let chromium = on_path(&["chromium", "chromium-browser", "google-chrome"])
            .unwrap_or_else(|| panic!("no chromium on PATH: {install}"));
        let driver = on_path(&["chromedriver"])
            .unwrap_or_else(|| panic!("no chromedriver on PATH: {install}"));
        let port = testkit::free_addrs(1)[0].port();
        let mut command = Command::new(&driver);
        command
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start: {e}", driver.display()));
        let this = Chromedriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            chromium,
            profile: tempfile::tempdir().expect("a profile directory"),
        };
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let client = testkit::client::HttpClient::http1(addr).with_timeout(Duration::from_secs(1));
        let ready = testkit::client::wait_until(Duration::from_secs(15), || {
            let client = client.clone();
            async move {
                client
                    .get("localhost", "/status", &[])
                    .await
                    .is_ok_and(|r| r.status == 200 && r.body.contains("\"ready\":true"))
            }
        })
        .await;
        assert!(ready, "chromedriver on port {port} did not become ready");
        this
    }

    /// A new headless browser session with a fresh profile.
    pub async fn browser(&self) -> Browser {
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            &format!("--window-size={WIDTH},{HEIGHT}"),
            &format!("--user-data-dir={}", self.profile.path().display()),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({ "binary": self.chromium, "args": args }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("no browser session from chromedriver: {e}"));
        client
            .set_window_size(WIDTH, HEIGHT)
            .await
            .expect("window size");
        Browser { client }
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        // The whole group: chromedriver and the Chromium processes it started.
        let group = self.child.id() as i32;
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// One browser session on the console, with waits bounded in time.
pub struct Browser {
    pub client: Client,
}

impl Browser {
    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// The page's HTML as the browser has it now (for failure messages).
    pub async fn html(&self) -> String {
        self.client.source().await.unwrap_or_else(|e| e.to_string())
    }

    pub async fn url(&self) -> String {
        self.client
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default()
    }

    /// Waits up to `timeout` for an element matching the CSS selector.
    pub async fn wait_css(&self, css: &str, timeout: Duration) -> fantoccini::elements::Element {
        match self
            .client
            .wait()
            .at_most(timeout)
            .every(Duration::from_millis(100))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(e) => e,
            Err(e) => panic!(
                "no {css:?} on {} after {timeout:?}: {e}\n{}",
                self.url().await,
                self.html().await
            ),
        }
    }

    /// All elements matching the CSS selector now.
    pub async fn all_css(&self, css: &str) -> Vec<fantoccini::elements::Element> {
        self.client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_default()
    }

    /// The text content of every element matching `css` (SVG `<title>`s have no rendered text,
    /// so this reads `textContent`, not WebDriver's visible text).
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let script =
            "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.textContent);";
        let value = self
            .client
            .execute(script, vec![serde_json::json!(css)])
            .await
            .unwrap_or_else(|e| panic!("read {css:?}: {e}"));
        value
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Clicks the element matching `css` and waits for the page it leads to.
    pub async fn click(&self, css: &str) {
        let element = self.wait_css(css, Duration::from_secs(5)).await;
        element
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css:?}: {e}"));
    }

    /// Replaces the value of the input matching `css` by typing `text` into it.
    pub async fn type_into(&self, css: &str, text: &str) {
        let input = self.wait_css(css, Duration::from_secs(5)).await;
        input
            .clear()
            .await
            .unwrap_or_else(|e| panic!("clear {css:?}: {e}"));
        input
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("type into {css:?}: {e}"));
    }

    /// The current value of the input matching `css`.
    pub async fn value(&self, css: &str) -> String {
        let input = self.wait_css(css, Duration::from_secs(5)).await;
        input.prop("value").await.ok().flatten().unwrap_or_default()
    }

    /// Saves a PNG of the whole page (the window grows to the page's height, up to a limit) as
    /// `dir/name.png`.
    pub async fn screenshot(&self, dir: &Path, name: &str) -> PathBuf {
        let height = self
            .client
            .execute(
                "return Math.ceil(document.documentElement.scrollHeight);",
                vec![],
            )
            .await
            .ok()
            .and_then(|v| v.as_u64())
            .map_or(HEIGHT, |h| (h as u32).clamp(HEIGHT, MAX_HEIGHT));
        let _ = self.client.set_window_size(WIDTH, height).await;
        let png = self
            .client
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("screenshot {name}: {e}"));
        let _ = self.client.set_window_size(WIDTH, HEIGHT).await;
        std::fs::create_dir_all(dir).expect("screenshot directory");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("screenshot written");
        path
    }

    /// Polls `check` (which may reload the page) every `every` until it returns `Some`, or
    /// gives up after `timeout`.
    pub async fn poll<T, F, Fut>(
        &self,
        timeout: Duration,
        every: Duration,
        mut check: F,
    ) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(t) = check().await {
                return Some(t);
            }
            if Instant::now() + every > deadline {
                return None;
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Ends the session (the guard kills the processes anyway).
    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}
