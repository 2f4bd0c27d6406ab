//! A throwaway PostgreSQL cluster for tests: initdb + pg_ctl, trust auth, on a free port and a
//! private socket directory, stopped and removed on drop (even when the test fails).
//! Included with `#[path = "common/postgres.rs"] mod postgres;`.
//!
//! Without PostgreSQL installed, [`start_cluster`] prints "skipped: ..." and returns `None`,
//! unless `TRELLIS_REQUIRE_POSTGRES=1` (CI), where it panics.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use tempfile::TempDir;

/// A running PostgreSQL cluster in a temporary directory, stopped and removed on drop.
pub struct Cluster {
    pg_ctl: PathBuf,
    data: PathBuf,
    /// Runs the server binaries as this system user (initdb refuses to run as root).
    user: Option<String>,
    port: u16,
    _dir: TempDir,
}

impl Cluster {
    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let stopped = as_user(self.user.as_deref(), &self.pg_ctl)
            .args(["-D".as_ref(), self.data.as_os_str()])
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !stopped.is_ok_and(|s| s.success()) {
            eprintln!(
                "could not stop the test PostgreSQL in {}",
                self.data.display()
            );
        }
    }
}

/// `program`, run as `user` through runuser when one is given.
fn as_user(user: Option<&str>, program: &Path) -> Command {
    match user {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--"]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// Why the test cannot run here: a skip, or a failure when PostgreSQL is required.
fn unavailable(why: &str) -> Option<Cluster> {
    if std::env::var("TRELLIS_REQUIRE_POSTGRES").as_deref() == Ok("1") {
        panic!("PostgreSQL is required (TRELLIS_REQUIRE_POSTGRES=1) but {why}");
    }
    eprintln!("skipped: {why}");
    None
}

/// The newest `/usr/lib/postgresql/<version>/bin` with initdb and pg_ctl.
fn find_bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, bin)| bin)
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn run(mut command: Command, what: &str) {
    let out = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts a cluster, or says why it cannot (see the module docs).
pub fn start_cluster() -> Option<Cluster> {
    let Some(bin) = find_bin_dir() else {
        return unavailable(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin (install the `postgresql` package)",
        );
    };
    let is_root = command_output("id", &["-u"]).as_deref() == Some("0");
    let user = if is_root {
        if command_output("id", &["-u", "postgres"]).is_none() {
            return unavailable("running as root and there is no `postgres` user to run initdb as");
        }
        Some("postgres".to_string())
    } else {
        None
    };

    let dir = tempfile::Builder::new()
        .prefix("trellis-pg")
        .tempdir()
        .expect("temporary directory");
    if let Some(user) = &user {
        let id = |flag: &str| -> u32 {
            command_output("id", &[flag, user])
                .and_then(|s| s.parse().ok())
                .expect("uid/gid of the postgres user")
        };
        std::os::unix::fs::chown(dir.path(), Some(id("-u")), Some(id("-g")))
            .expect("hand the temporary directory to the postgres user");
    }
    let data = dir.path().join("data");
    let mut initdb = as_user(user.as_deref(), &bin.join("initdb"));
    initdb.args(["-D".as_ref(), data.as_os_str()]).args([
        "-U",
        "postgres",
        "--auth=trust",
        "--no-sync",
        "-E",
        "UTF8",
    ]);
    run(initdb, "initdb");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let options = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
        dir.path().display()
    );
    let cluster = Cluster {
        pg_ctl: bin.join("pg_ctl"),
        data: data.clone(),
        user: user.clone(),
        port,
        _dir: dir,
    };
    // -l: the server's output goes to a file, not to a pipe this process would wait on.
    let mut start = as_user(user.as_deref(), &cluster.pg_ctl);
    start
        .args(["-D".as_ref(), data.as_os_str()])
        .args(["-l".as_ref(), data.join("server.log").as_os_str()])
        .args(["-o", &options, "-w", "-t", "30", "start"]);
    run(start, "pg_ctl start");
    Some(cluster)
}
