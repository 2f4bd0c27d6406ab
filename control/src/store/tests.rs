//! The store on SQLite files in temporary directories (the PostgreSQL run of the same behaviour is
//! `tests/store_postgres.rs`).

use super::*;
use tempfile::TempDir;
use trellis_api::resources::Spec;
use trellis_api::{Kind, load_str};

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

fn actions(outcome: &ApplyOutcome) -> Vec<String> {
    outcome
        .changes
        .iter()
        .map(|c| format!("{} {}/{} {}", c.kind, c.namespace, c.name, c.action))
        .collect()
}

async fn open_temp() -> (TempDir, String, Store) {
    let dir = tempfile::tempdir().unwrap();
    let url = Store::default_url(&dir.path().join("data")).unwrap();
    let store = Store::open(&url).await.unwrap();
    (dir, url, store)
}

/// The VirtualService's first destination's subset, as the active set has it.
fn subset(store: &Store) -> Option<String> {
    let config = store.current();
    let r = config.get(&key(Kind::VirtualService, "reviews"))?;
    let Spec::VirtualService(vs) = &r.spec else {
        return None;
    };
    vs.http[0].route[0].destination.as_ref()?.subset.clone()
}

#[tokio::test]
async fn apply_replace_unchanged_delete() {
    let (_dir, _url, store) = open_temp().await;
    assert_eq!(store.revision(), 0);
    let mut updates = store.subscribe();

    let out = store
        .apply(load(&format!("{VS}---\n{DR}")), &who("ana", "first"), false)
        .await
        .unwrap();
    assert_eq!(out.revision, Some(1));
    assert_eq!(
        actions(&out),
        [
            "VirtualService default/reviews created",
            "DestinationRule default/reviews created"
        ]
    );
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    assert_eq!(store.revision(), 1);
    assert_eq!(store.current().len(), 2);
    assert!(updates.has_changed().unwrap());
    assert_eq!(*updates.borrow_and_update(), 1);

    // Same documents again: nothing to write.
    let out = store
        .apply(load(VS), &who("ana", "again"), false)
        .await
        .unwrap();
    assert_eq!(out.revision, None);
    assert_eq!(actions(&out), ["VirtualService default/reviews unchanged"]);
    assert_eq!(store.revision(), 1);
    assert!(!updates.has_changed().unwrap());

    // A replacement, checked by a dry run first.
    let v2 = load(&VS.replace("subset: v1", "subset: v2"));
    let out = store
        .apply(v2.clone(), &who("bo", "v2"), true)
        .await
        .unwrap();
    assert_eq!((out.revision, out.dry_run), (None, true));
    assert_eq!(actions(&out), ["VirtualService default/reviews configured"]);
    assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
    assert!(out.warnings[0].message.contains("subset `v2`"));
    assert_eq!(out.warnings[0].file.as_deref(), Some("test.yaml"));
    assert_eq!(store.revision(), 1);
    assert_eq!(subset(&store).as_deref(), Some("v1"));

    let out = store.apply(v2, &who("bo", "v2"), false).await.unwrap();
    assert_eq!(out.revision, Some(2));
    assert_eq!(subset(&store).as_deref(), Some("v2"));
    assert_eq!(*updates.borrow_and_update(), 2);

    // Deleted once, then unknown.
    let dr = key(Kind::DestinationRule, "reviews");
    let out = store
        .delete(&[dr.clone(), dr.clone()], &who("cy", "cleanup"))
        .await
        .unwrap();
    assert_eq!(out.revision, Some(3));
    assert_eq!(actions(&out), ["DestinationRule default/reviews deleted"]);
    assert_eq!(store.current().len(), 1);
    match store.delete(&[dr], &who("cy", "again")).await {
        Err(StoreError::NotFound(what)) => assert_eq!(what, "DestinationRule default/reviews"),
        other => panic!("{other:?}"),
    }
    assert_eq!(store.revision(), 3);
}

#[tokio::test]
async fn deleting_a_destination_rule_warns_about_its_routes() {
    let (_dir, _url, store) = open_temp().await;
    store
        .apply(load(&format!("{VS}---\n{DR}")), &who("a", ""), false)
        .await
        .unwrap();
    let out = store
        .delete(&[key(Kind::DestinationRule, "reviews")], &who("a", ""))
        .await
        .unwrap();
    assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
    assert_eq!(
        out.warnings[0].resource.as_deref(),
        Some("VirtualService default/reviews")
    );
}

#[tokio::test]
async fn rejected_apply_changes_nothing() {
    let (_dir, url, store) = open_temp().await;
    let mut resources = load(&format!("{DR}---\n{VS}"));
    // Typed value invalid (as if built by hand): validation catches it.
    if let Spec::VirtualService(vs) = &mut resources[1].spec {
        vs.hosts.clear();
    }
    match store.apply(resources, &who("a", ""), false).await {
        Err(StoreError::Invalid(diags)) => {
            assert_eq!(diags.len(), 1, "{diags:?}");
            assert!(diags[0].message.contains("at least one host"), "{diags:?}");
            assert_eq!(diags[0].file.as_deref(), Some("test.yaml"));
        }
        other => panic!("{other:?}"),
    }

    // A document that would not read back after a restart.
    let mut resources = load(VS);
    resources[0].raw["spec"]["bogus"] = serde_json::json!(1);
    assert!(matches!(
        store.apply(resources, &who("a", ""), false).await,
        Err(StoreError::Invalid(_))
    ));

    // The same resource twice in one apply.
    let twice = [load(VS), load(VS)].concat();
    match store.apply(twice, &who("a", ""), false).await {
        Err(StoreError::Invalid(diags)) => {
            assert!(diags[0].message.contains("given twice"), "{diags:?}")
        }
        other => panic!("{other:?}"),
    }

    assert_eq!(store.revision(), 0);
    assert!(store.current().is_empty());
    store.close().await;
    let store = Store::open(&url).await.unwrap();
    assert_eq!(store.revision(), 0);
    assert!(store.current().is_empty());
    assert!(store.history(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn history_says_who_when_what() {
    let (_dir, _url, store) = open_temp().await;
    let before = trellis_api::time::now_millis();
    store
        .apply(load(DR), &who("ana", "add DR"), false)
        .await
        .unwrap();
    store
        .apply(load(VS), &who("bo", "route"), false)
        .await
        .unwrap();
    store
        .delete(&[key(Kind::VirtualService, "reviews")], &who("cy", "drop"))
        .await
        .unwrap();

    let history = store.history(10).await.unwrap();
    let summary: Vec<(u64, &str, &str, Vec<String>)> = history
        .iter()
        .map(|r| {
            let changes = r
                .changes
                .iter()
                .map(|c| format!("{} {}", c.kind, c.action))
                .collect();
            (r.revision, r.author.as_str(), r.message.as_str(), changes)
        })
        .collect();
    assert_eq!(
        summary,
        [
            (3, "cy", "drop", vec!["VirtualService deleted".to_string()]),
            (2, "bo", "route", vec!["VirtualService created".to_string()]),
            (
                1,
                "ana",
                "add DR",
                vec!["DestinationRule created".to_string()]
            ),
        ]
    );
    for r in &history {
        assert!(r.time_unix_ms >= before && r.time_unix_ms <= trellis_api::time::now_millis());
        assert_eq!(r.time, rfc3339_millis(r.time_unix_ms));
        assert!(r.time.ends_with('Z') && r.time.len() == 24, "{}", r.time);
    }
    assert_eq!(store.history(1).await.unwrap().len(), 1);
    assert!(store.history(0).await.unwrap().is_empty());

    let detail = store.revision_detail(3).await.unwrap();
    assert_eq!(detail.revision.author, "cy");
    assert_eq!(detail.resources.len(), 1);
    let r = &detail.resources[0];
    assert_eq!((r.action, r.after.is_none()), (Action::Deleted, true));
    assert_eq!(r.before.as_ref().unwrap()["spec"]["hosts"][0], "reviews");
    let json = serde_json::to_value(&detail).unwrap();
    assert_eq!(json["revision"], 3);
    assert_eq!(json["resources"][0]["action"], "deleted");
    assert!(matches!(
        store.revision_detail(4).await,
        Err(StoreError::NoSuchRevision(4, 3))
    ));
    assert!(matches!(
        store.revision_detail(0).await,
        Err(StoreError::NoSuchRevision(0, 3))
    ));
}

#[tokio::test]
async fn diff_between_revisions_both_ways() {
    let (_dir, _url, store) = open_temp().await;
    store.apply(load(DR), &who("a", ""), false).await.unwrap(); // 1
    store.apply(load(VS), &who("a", ""), false).await.unwrap(); // 2
    let v2 = VS.replace("subset: v1", "subset: v2");
    store.apply(load(&v2), &who("a", ""), false).await.unwrap(); // 3
    store
        .delete(&[key(Kind::DestinationRule, "reviews")], &who("a", ""))
        .await
        .unwrap(); // 4

    let d = store.diff(1, 3).await.unwrap();
    assert_eq!(
        d.changes,
        [Change::new(
            &key(Kind::VirtualService, "reviews"),
            Action::Created
        )]
    );
    assert!(
        d.diff
            .starts_with("--- /dev/null\n+++ VirtualService default/reviews@3\n"),
        "{}",
        d.diff
    );
    assert!(d.diff.contains("+            subset: v2\n"), "{}", d.diff);

    let d = store.diff(2, 4).await.unwrap();
    let changes: Vec<String> = d
        .changes
        .iter()
        .map(|c| format!("{} {}", c.kind, c.action))
        .collect();
    assert_eq!(
        changes,
        ["VirtualService configured", "DestinationRule deleted"]
    );
    assert!(
        d.diff.contains(
            "--- VirtualService default/reviews@2\n+++ VirtualService default/reviews@4\n"
        ),
        "{}",
        d.diff
    );
    assert!(
        d.diff
            .contains("-            subset: v1\n+            subset: v2\n"),
        "{}",
        d.diff
    );
    assert!(
        d.diff
            .contains("--- DestinationRule default/reviews@2\n+++ /dev/null\n"),
        "{}",
        d.diff
    );

    let back = store.diff(4, 2).await.unwrap();
    let changes: Vec<String> = back
        .changes
        .iter()
        .map(|c| format!("{} {}", c.kind, c.action))
        .collect();
    assert_eq!(
        changes,
        ["VirtualService configured", "DestinationRule created"]
    );
    assert!(
        back.diff
            .contains("-            subset: v2\n+            subset: v1\n"),
        "{}",
        back.diff
    );
    assert_eq!((back.from, back.to), (4, 2));

    let same = store.diff(3, 3).await.unwrap();
    assert!(same.changes.is_empty() && same.diff.is_empty());
    assert_eq!(store.diff(0, 1).await.unwrap().changes.len(), 1);
    assert!(matches!(
        store.diff(1, 9).await,
        Err(StoreError::NoSuchRevision(9, 4))
    ));
}

#[tokio::test]
async fn rollback_is_a_new_revision() {
    let (_dir, url, store) = open_temp().await;
    store
        .apply(load(&format!("{VS}---\n{DR}")), &who("a", ""), false)
        .await
        .unwrap(); // 1
    let v2 = VS.replace("subset: v1", "subset: v2");
    store.apply(load(&v2), &who("a", ""), false).await.unwrap(); // 2
    store
        .delete(&[key(Kind::DestinationRule, "reviews")], &who("a", ""))
        .await
        .unwrap(); // 3

    let out = store.rollback(1, &who("ops", "bad canary")).await.unwrap();
    assert_eq!(out.revision, Some(4));
    assert_eq!(
        actions(&out),
        [
            "VirtualService default/reviews configured",
            "DestinationRule default/reviews created"
        ]
    );
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    assert_eq!(subset(&store).as_deref(), Some("v1"));
    assert_eq!(store.current().len(), 2);
    assert_eq!(
        store.state_at(4).await.unwrap(),
        store.state_at(1).await.unwrap()
    );
    let history = store.history(10).await.unwrap();
    assert_eq!(history.len(), 4);
    assert_eq!(history[0].message, "rollback to 1: bad canary");
    assert_eq!(history[0].author, "ops");

    // Already there: no revision.
    let out = store.rollback(1, &who("ops", "")).await.unwrap();
    assert_eq!((out.revision, out.changes.len()), (None, 0));

    // Back to nothing, then to the latest-but-one again.
    let out = store.rollback(0, &who("ops", "")).await.unwrap();
    assert_eq!(out.revision, Some(5));
    assert!(store.current().is_empty());
    assert_eq!(store.history(1).await.unwrap()[0].message, "rollback to 0");
    store.rollback(2, &who("ops", "")).await.unwrap();
    assert_eq!(subset(&store).as_deref(), Some("v2"));
    assert!(matches!(
        store.rollback(60, &who("ops", "")).await,
        Err(StoreError::NoSuchRevision(60, 6))
    ));

    // All of it survives a restart.
    store.close().await;
    let store = Store::open(&url).await.unwrap();
    assert_eq!(store.revision(), 6);
    assert_eq!(store.current().len(), 2);
    assert_eq!(subset(&store).as_deref(), Some("v2"));
    assert_eq!(store.history(100).await.unwrap().len(), 6);
    let state = store.state_at(6).await.unwrap();
    let current = store.current();
    let active: BTreeMap<ResourceKey, Value> =
        current.iter().map(|r| (r.key(), r.raw.clone())).collect();
    assert_eq!(state, active);
}

#[tokio::test]
async fn a_row_that_no_longer_validates_is_kept_but_not_loaded() {
    let (_dir, url, store) = open_temp().await;
    store
        .apply(load(&format!("{VS}---\n{DR}")), &who("a", ""), false)
        .await
        .unwrap();
    // As if a newer validation refused what an older version stored.
    sqlx::query("UPDATE resources SET body = $1 WHERE kind = 'VirtualService'")
        .bind(r#"{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"reviews"},"spec":{"hosts":["reviews"],"tls":[]}}"#)
        .execute(&store.inner.pool)
        .await
        .unwrap();
    store.close().await;

    let store = Store::open(&url).await.unwrap();
    assert_eq!(store.revision(), 1);
    let names: Vec<String> = store
        .current()
        .iter()
        .map(|r| r.key().to_string())
        .collect();
    assert_eq!(names, ["DestinationRule default/reviews"]);
    let row = sqlx::query("SELECT COUNT(*) AS n FROM resources")
        .fetch_one(&store.inner.pool)
        .await
        .unwrap();
    assert_eq!(sqlx::Row::try_get::<i64, _>(&row, "n").unwrap(), 2);

    // Applying a valid version replaces it (it exists, so "configured"); deleting works too.
    let out = store.apply(load(VS), &who("a", ""), false).await.unwrap();
    assert_eq!(actions(&out), ["VirtualService default/reviews configured"]);
    assert_eq!(store.current().len(), 2);
    store
        .delete(&[key(Kind::VirtualService, "reviews")], &who("a", ""))
        .await
        .unwrap();
    assert_eq!(store.current().len(), 1);
}

#[tokio::test]
async fn a_rollback_that_would_restore_an_invalid_resource_is_refused() {
    let (_dir, _url, store) = open_temp().await;
    store.apply(load(VS), &who("a", ""), false).await.unwrap();
    store
        .delete(&[key(Kind::VirtualService, "reviews")], &who("a", ""))
        .await
        .unwrap();
    sqlx::query("UPDATE changes SET after_json = $1 WHERE revision = 1")
        .bind(r#"{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"reviews"},"spec":{"hosts":[]}}"#)
        .execute(&store.inner.pool)
        .await
        .unwrap();
    match store.rollback(1, &who("a", "")).await {
        Err(StoreError::Invalid(diags)) => {
            assert!(
                diags[0]
                    .to_string()
                    .contains("revision 1: VirtualService default/reviews"),
                "{diags:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(store.revision(), 2);
    assert!(store.current().is_empty());
}

#[tokio::test]
async fn concurrent_writes_get_distinct_revisions() {
    let (_dir, _url, store) = open_temp().await;
    let writes = (0..8).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            let text = VS.replace("name: reviews", &format!("name: r{i}"));
            store
                .apply(load(&text), &who("a", ""), false)
                .await
                .unwrap()
                .revision
        })
    });
    let mut revisions = Vec::new();
    for w in writes {
        revisions.push(w.await.unwrap().unwrap());
    }
    revisions.sort();
    assert_eq!(revisions, (1..=8).collect::<Vec<u64>>());
    assert_eq!(store.current().len(), 8);
    assert_eq!(store.snapshot().revision, 8);
}

#[tokio::test]
async fn bad_urls_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("sqlite://{}/nope/trellis.db", dir.path().display());
    match Store::open(&missing).await {
        Err(StoreError::Database(msg)) => assert!(msg.contains("cannot open"), "{msg}"),
        other => panic!("{other:?}"),
    }
    match Store::open("mysql2://x").await {
        Err(StoreError::Database(msg)) => assert!(msg.contains("cannot open"), "{msg}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn default_url_is_an_absolute_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("a?b#c%d");
    let url = Store::default_url(&data).unwrap();
    assert!(data.is_dir());
    assert!(url.starts_with("sqlite:///"), "{url}");
    assert!(url.ends_with("/a%3Fb%23c%25d/trellis.db?mode=rwc"), "{url}");
}

#[tokio::test]
async fn default_url_opens_paths_that_need_escaping() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("odd ?#% dir");
    let url = Store::default_url(&data).unwrap();
    let store = Store::open(&url).await.unwrap();
    store.apply(load(VS), &who("a", ""), false).await.unwrap();
    assert!(data.join("trellis.db").is_file());
}

#[tokio::test]
async fn a_plain_sqlite_url_creates_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fresh.db");
    let store = Store::open(&format!("sqlite://{}", path.display()))
        .await
        .expect("a new database file is created");
    assert_eq!(store.revision(), 0);
    store.close().await;
    assert!(path.exists());
}
