//! The config store on PostgreSQL: a throwaway cluster (initdb + pg_ctl, trust auth, on a free
//! port and a private socket directory) runs the store's whole life cycle, then is stopped even if
//! the test fails.
//!
//! Without PostgreSQL installed the test prints "skipped: ..." and passes, unless
//! `TRELLIS_REQUIRE_POSTGRES=1` (CI), where it fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use tempfile::TempDir;
use trellis_api::resources::Spec;
use trellis_api::{Kind, Resource, ResourceKey, load_str};
use trellis_control::store::{Action, ChangeInfo, Store, StoreError};

const VS: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
";

const DR: &str = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  subsets:
  - name: v1
    labels: {version: v1}
";

/// A running PostgreSQL cluster in a temporary directory, stopped and removed on drop.
struct Cluster {
    pg_ctl: PathBuf,
    data: PathBuf,
    /// Runs the server binaries as this system user (initdb refuses to run as root).
    user: Option<String>,
    port: u16,
    _dir: TempDir,
}

impl Cluster {
    fn url(&self) -> String {
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

fn start_cluster() -> Option<Cluster> {
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

fn load(text: &str) -> Vec<Resource> {
    load_str(text, "test.yaml").unwrap()
}

fn key(kind: Kind, name: &str) -> ResourceKey {
    ResourceKey {
        kind,
        namespace: "default".into(),
        name: name.into(),
    }
}

fn who(author: &str, message: &str) -> ChangeInfo {
    ChangeInfo {
        author: author.into(),
        message: message.into(),
    }
}

fn subset(store: &Store) -> Option<String> {
    let config = store.current();
    let r = config.get(&key(Kind::VirtualService, "reviews"))?;
    let Spec::VirtualService(vs) = &r.spec else {
        return None;
    };
    vs.http[0].route[0].destination.as_ref()?.subset.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_life_cycle_on_postgres() {
    let Some(cluster) = start_cluster() else {
        return;
    };
    let url = cluster.url();
    let store = Store::open(&url).await.expect("open on PostgreSQL");
    assert_eq!(store.revision(), 0);

    // Apply, unchanged, replace, delete.
    let out = store
        .apply(load(&format!("{VS}---\n{DR}")), &who("ana", "first"), false)
        .await
        .unwrap();
    assert_eq!(out.revision, Some(1));
    let v2 = load(&VS.replace("subset: v1", "subset: v2"));
    let out = store.apply(load(VS), &who("ana", ""), false).await.unwrap();
    assert_eq!(
        (out.revision, out.changes[0].action),
        (None, Action::Unchanged)
    );
    let out = store.apply(v2, &who("bo", "canary"), false).await.unwrap();
    assert_eq!(
        (out.revision, out.changes[0].action),
        (Some(2), Action::Configured)
    );
    store
        .delete(&[key(Kind::DestinationRule, "reviews")], &who("cy", "drop"))
        .await
        .unwrap();
    assert!(matches!(
        store
            .delete(&[key(Kind::DestinationRule, "reviews")], &who("cy", ""))
            .await,
        Err(StoreError::NotFound(_))
    ));

    // A rejected apply writes nothing.
    let mut bad = load(DR);
    if let Spec::DestinationRule(dr) = &mut bad[0].spec {
        dr.host.clear();
    }
    assert!(matches!(
        store.apply(bad, &who("x", ""), false).await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(store.revision(), 3);

    // History, detail, diff.
    let history = store.history(10).await.unwrap();
    let authors: Vec<&str> = history.iter().map(|r| r.author.as_str()).collect();
    assert_eq!(authors, ["cy", "bo", "ana"]);
    assert_eq!(history[2].changes.len(), 2);
    let detail = store.revision_detail(2).await.unwrap();
    assert_eq!(
        detail.resources[0].before.as_ref().unwrap()["spec"]["http"][0]["route"][0]["destination"]
            ["subset"],
        "v1"
    );
    let diff = store.diff(1, 3).await.unwrap();
    assert_eq!(diff.changes.len(), 2);
    assert!(
        diff.diff
            .contains("-            subset: v1\n+            subset: v2\n"),
        "{}",
        diff.diff
    );
    let back = store.diff(3, 1).await.unwrap();
    assert!(
        back.diff
            .contains("-            subset: v2\n+            subset: v1\n"),
        "{}",
        back.diff
    );

    // Rollback.
    let out = store.rollback(1, &who("ops", "")).await.unwrap();
    assert_eq!(out.revision, Some(4));
    assert_eq!(subset(&store).as_deref(), Some("v1"));
    assert_eq!(store.history(1).await.unwrap()[0].message, "rollback to 1");
    assert_eq!(
        store.rollback(1, &who("ops", "")).await.unwrap().revision,
        None
    );
    assert_eq!(
        store.state_at(4).await.unwrap(),
        store.state_at(1).await.unwrap()
    );

    // Concurrent writers get distinct revisions.
    let writes: Vec<_> = (0..4)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let text = VS.replace("name: reviews", &format!("name: r{i}"));
                store
                    .apply(load(&text), &who("a", ""), false)
                    .await
                    .unwrap()
                    .revision
            })
        })
        .collect();
    let mut revisions = Vec::new();
    for w in writes {
        revisions.push(w.await.unwrap().unwrap());
    }
    revisions.sort();
    assert_eq!(revisions, [5, 6, 7, 8]);
    store.close().await;

    // A row a newer validation would refuse is kept but not loaded after a restart.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    sqlx::query("UPDATE resources SET body = $1 WHERE kind = 'VirtualService' AND name = 'r0'")
        .bind(r#"{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"r0"},"spec":{"hosts":[]}}"#)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let store = Store::open(&url).await.expect("reopen");
    assert_eq!(store.revision(), 8);
    assert_eq!(subset(&store).as_deref(), Some("v1"));
    let names: Vec<String> = store
        .current()
        .iter()
        .map(|r| r.name().to_string())
        .collect();
    assert_eq!(names, ["r1", "r2", "r3", "reviews", "reviews"]);
    assert_eq!(store.state_at(8).await.unwrap().len(), 6);
    store.close().await;
    drop(cluster);
}
