//! Child processes (the `trellis-proxy` binary) with captured output, and config directories.

use std::ffi::OsStr;
use std::io::{self, BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::Error;

type Lines = Arc<Mutex<Vec<String>>>;

/// How long [`ProxyProcess::trellis_proxy`] waits for `GET /ready` to answer 200.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Listener addresses of a proxy started with [`ProxyProcess::trellis_proxy`].
#[derive(Debug, Clone, Copy)]
struct ProxyAddrs {
    outbound: SocketAddr,
    inbound: SocketAddr,
    admin: SocketAddr,
    stats: SocketAddr,
}

/// A child process in its own process group, with stdout/stderr captured line by line.
///
/// Dropping it sends SIGTERM to the group, then SIGKILL if it has not exited within 3 s. If the
/// current thread is panicking (a failed test), the captured output is printed to stderr.
/// Set `TESTKIT_SHOW_OUTPUT=1` to also print the child's output live.
pub struct ProxyProcess {
    child: Child,
    exit: Option<ExitStatus>,
    stdout: Lines,
    stderr: Lines,
    /// Set by the capture threads when their pipe reaches end of file.
    closed: [Arc<std::sync::atomic::AtomicBool>; 2],
    addrs: Option<ProxyAddrs>,
    label: String,
}

impl ProxyProcess {
    /// Spawns `bin` with `args` and extra environment variables.
    pub fn spawn<S: AsRef<OsStr>>(
        bin: impl AsRef<Path>,
        args: &[S],
        env: &[(&str, &str)],
    ) -> io::Result<ProxyProcess> {
        let bin = bin.as_ref();
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn()?;
        let label = bin
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let label = format!("{label}[{}]", child.id());
        let show = std::env::var_os("TESTKIT_SHOW_OUTPUT").is_some_and(|v| v != "0");
        let (stdout, out_closed) = capture(child.stdout.take(), format!("{label} out"), show);
        let (stderr, err_closed) = capture(child.stderr.take(), format!("{label} err"), show);
        Ok(ProxyProcess {
            child,
            exit: None,
            stdout,
            stderr,
            closed: [out_closed, err_closed],
            addrs: None,
            label,
        })
    }

    /// Starts `trellis-proxy` on free loopback ports and waits until `GET /ready` answers 200.
    ///
    /// Passes `--config DIR --workload test --namespace default --access-log stdout` and
    /// `--outbound/--inbound/--admin/--stats 127.0.0.1:PORT`; any of these given in `extra`
    /// (`--flag value` or `--flag=value`) replaces the default. Retries with new ports if the
    /// process exits complaining that an address is in use.
    pub async fn trellis_proxy(
        bin: impl AsRef<Path>,
        config_dir: &Path,
        extra: &[&str],
    ) -> Result<ProxyProcess, Error> {
        Self::trellis_proxy_with_env(bin, config_dir, extra, &[]).await
    }

    /// [`trellis_proxy`](Self::trellis_proxy) with extra environment variables.
    pub async fn trellis_proxy_with_env(
        bin: impl AsRef<Path>,
        config_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<ProxyProcess, Error> {
        let source = ("--config", config_dir.display().to_string());
        Self::start_trellis_proxy(bin.as_ref(), source, extra, env).await
    }

    /// [`trellis_proxy`](Self::trellis_proxy) taking config from a control plane at `control`
    /// (`--control ADDR` instead of `--config DIR`); ready once the first config is applied.
    pub async fn trellis_proxy_control(
        bin: impl AsRef<Path>,
        control: SocketAddr,
        extra: &[&str],
    ) -> Result<ProxyProcess, Error> {
        let source = ("--control", control.to_string());
        Self::start_trellis_proxy(bin.as_ref(), source, extra, &[]).await
    }

    async fn start_trellis_proxy(
        bin: &Path,
        source: (&str, String),
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<ProxyProcess, Error> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let ports = crate::free_addrs(4);
            let defaults: [(&str, String); 8] = [
                (source.0, source.1.clone()),
                ("--workload", "test".into()),
                ("--namespace", "default".into()),
                ("--access-log", "stdout".into()),
                ("--outbound", ports[0].to_string()),
                ("--inbound", ports[1].to_string()),
                ("--admin", ports[2].to_string()),
                ("--stats", ports[3].to_string()),
            ];
            // Each default unless `extra` sets the flag; remember the effective values.
            let mut args: Vec<String> = Vec::new();
            let mut effective: Vec<String> = Vec::new();
            for (flag, default) in &defaults {
                effective.push(flag_value(extra, flag).unwrap_or_else(|| {
                    args.push(flag.to_string());
                    args.push(default.clone());
                    default.clone()
                }));
            }
            let addr = |i: usize| -> Result<SocketAddr, Error> {
                let (flag, v) = (defaults[i].0, &effective[i]);
                v.parse()
                    .map_err(|e| format!("{flag} {v}: not an address: {e}").into())
            };
            let addrs = ProxyAddrs {
                outbound: addr(4)?,
                inbound: addr(5)?,
                admin: addr(6)?,
                stats: addr(7)?,
            };
            args.extend(extra.iter().map(|s| s.to_string()));

            let mut p = ProxyProcess::spawn(bin, &args, env)?;
            p.addrs = Some(addrs);
            match p.wait_ready(READY_TIMEOUT).await {
                Ok(()) => return Ok(p),
                Err(e) => {
                    let in_use = p
                        .stderr_lines()
                        .iter()
                        .chain(p.stdout_lines().iter())
                        .any(|l| l.to_ascii_lowercase().contains("in use"));
                    if in_use && attempt < 3 {
                        continue;
                    }
                    return Err(format!(
                        "{} {}: {e}\n--- stderr ---\n{}\n--- stdout ---\n{}",
                        bin.display(),
                        args.join(" "),
                        tail(&p.stderr_lines(), 40),
                        tail(&p.stdout_lines(), 40)
                    )
                    .into());
                }
            }
        }
    }

    /// Polls `GET http://ADMIN/ready` until 200, the process exits, or `timeout` passes.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<(), Error> {
        let admin = self.admin_addr();
        let client = crate::HttpClient::http1(admin).with_timeout(Duration::from_secs(1));
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return Err(format!("exited before ready: {status}").into());
            }
            if let Ok(r) = client.get(&admin.to_string(), "/ready", &[]).await
                && r.status == 200
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("GET http://{admin}/ready not 200 within {timeout:?}").into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn addrs(&self) -> ProxyAddrs {
        self.addrs
            .expect("listener addresses are known only for ProxyProcess::trellis_proxy")
    }

    pub fn outbound_addr(&self) -> SocketAddr {
        self.addrs().outbound
    }

    pub fn inbound_addr(&self) -> SocketAddr {
        self.addrs().inbound
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.addrs().admin
    }

    pub fn stats_addr(&self) -> SocketAddr {
        self.addrs().stats
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stdout lines so far (without line endings).
    pub fn stdout_lines(&self) -> Vec<String> {
        lock(&self.stdout).clone()
    }

    /// Stderr lines so far (without line endings).
    pub fn stderr_lines(&self) -> Vec<String> {
        lock(&self.stderr).clone()
    }

    /// Waits for a stdout line matching `pred` (lines already read count); returns it.
    pub async fn wait_for_stdout(
        &self,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Option<String> {
        wait_line(&self.stdout, pred, timeout).await
    }

    /// Waits for a stderr line matching `pred` (lines already read count); returns it.
    pub async fn wait_for_stderr(
        &self,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Option<String> {
        wait_line(&self.stderr, pred, timeout).await
    }

    /// Sends a signal (e.g. `libc::SIGHUP`) to the process.
    pub fn send_signal(&mut self, signal: i32) -> io::Result<()> {
        if self.try_status().is_some() {
            return Err(io::Error::other("process has exited"));
        }
        // SAFETY: plain kill(2) on our own, not yet reaped, child.
        if unsafe { libc::kill(self.child.id() as libc::pid_t, signal) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// The exit status if the process has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    /// Waits up to `timeout` for the process to exit and its output to be read to the end.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_status() {
                let read = |c: &Arc<std::sync::atomic::AtomicBool>| {
                    c.load(std::sync::atomic::Ordering::Acquire)
                };
                while !self.closed.iter().all(read) && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM to the process group, SIGKILL after 3 s; blocks until reaped.
    pub fn kill(&mut self) {
        if self.try_status().is_some() {
            return;
        }
        let group = -(self.child.id() as libc::pid_t);
        // SAFETY: signals our child's own process group (created by `process_group(0)`).
        unsafe { libc::kill(group, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if self.try_status().is_some() {
                // Take down anything it left behind in its group.
                unsafe { libc::kill(group, libc::SIGKILL) };
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        unsafe { libc::kill(group, libc::SIGKILL) };
        self.exit = self.child.wait().ok();
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- {} stdout (last 100 lines) ---\n{}\n--- {} stderr (last 100 lines) ---\n{}",
                self.label,
                tail(&self.stdout_lines(), 100),
                self.label,
                tail(&self.stderr_lines(), 100)
            );
        }
    }
}

/// Value of `--flag value` or `--flag=value` in `args`.
fn flag_value(args: &[&str], flag: &str) -> Option<String> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if *a == flag {
            return it.next().map(|v| v.to_string());
        }
        if let Some(v) = a.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
            return Some(v.to_string());
        }
    }
    None
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn tail(lines: &[String], n: usize) -> String {
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Reads `pipe` on a thread into a shared line buffer (lossy UTF-8); the flag is set at its end.
fn capture(
    pipe: Option<impl Read + Send + 'static>,
    label: String,
    show: bool,
) -> (Lines, Arc<std::sync::atomic::AtomicBool>) {
    let lines: Lines = Arc::default();
    let closed = Arc::new(std::sync::atomic::AtomicBool::new(pipe.is_none()));
    if let Some(pipe) = pipe {
        let sink = lines.clone();
        let done = closed.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(pipe);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf);
                        let line = line.trim_end_matches(['\n', '\r']).to_string();
                        if show {
                            eprintln!("[{label}] {line}");
                        }
                        lock(&sink).push(line);
                    }
                }
            }
            done.store(true, std::sync::atomic::Ordering::Release);
        });
    }
    (lines, closed)
}

async fn wait_line(
    lines: &Lines,
    pred: impl Fn(&str) -> bool,
    timeout: Duration,
) -> Option<String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(l) = lock(lines).iter().find(|l| pred(l)) {
            return Some(l.clone());
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A temporary config directory; files are replaced atomically so a watching proxy never reads
/// half a file. Removed when dropped.
pub struct ConfigDir {
    root: tempfile::TempDir,
    dir: PathBuf,
}

static STAGED: AtomicU64 = AtomicU64::new(0);

impl ConfigDir {
    pub fn new() -> ConfigDir {
        let root = tempfile::Builder::new()
            .prefix("trellis-test-")
            .tempdir()
            .expect("create temp dir");
        let dir = root.path().join("config");
        std::fs::create_dir(&dir).expect("create config dir");
        std::fs::create_dir(root.path().join("staging")).expect("create staging dir");
        ConfigDir { root, dir }
    }

    /// The directory to pass as `--config`.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Writes `name` (e.g. `"routes.yaml"`): a temp file outside the directory, then a rename.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let n = STAGED.fetch_add(1, Ordering::Relaxed);
        let staged = self.root.path().join("staging").join(format!("{n}.tmp"));
        let target = self.dir.join(name);
        let write = || -> io::Result<()> {
            let mut f = std::fs::File::create(&staged)?;
            io::Write::write_all(&mut f, contents.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&staged, &target)
        };
        write().unwrap_or_else(|e| panic!("write {}: {e}", target.display()));
        target
    }

    /// Removes `name` if present.
    pub fn remove(&self, name: &str) {
        let _ = std::fs::remove_file(self.dir.join(name));
    }
}

impl Default for ConfigDir {
    fn default() -> Self {
        Self::new()
    }
}
