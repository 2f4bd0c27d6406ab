//! `trellis history`, `diff` and `rollback`: the revision log the store keeps for every change.

use super::apply::report;
use super::client::{Client, WriteMeta};
use super::table::{Table, short_time, truncate};
use super::types::{ApplyOutcome, Change, DiffBody, RevisionList};
use super::{CliError, DiffArgs, HistoryArgs, RollbackArgs};
use bytes::Bytes;
use http::Method;
use serde_json::json;
use std::io::Write;
use std::process::ExitCode;

/// Changes listed in full in the CHANGES column before the rest is counted.
const CHANGES_SHOWN: usize = 2;

pub async fn history(
    client: &Client,
    args: &HistoryArgs,
    out: &mut dyn Write,
) -> Result<ExitCode, CliError> {
    let path = match args.limit {
        Some(n) => format!("/revisions?limit={n}"),
        None => "/revisions".to_string(),
    };
    let list: RevisionList = client.get(&path).await?;
    let mut t = Table::new(&["REVISION", "TIME", "AUTHOR", "CHANGES", "MESSAGE"]);
    for r in &list.revisions {
        t.row(vec![
            r.revision.to_string(),
            short_time(&r.time),
            r.author.clone(),
            changes_cell(&r.changes),
            truncate(&r.message, 60),
        ]);
    }
    if list.revisions.is_empty() {
        writeln!(out, "no revisions yet")?;
    } else {
        out.write_all(t.render().as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `VirtualService default/reviews configured, DestinationRule default/reviews created, +3 more`.
fn changes_cell(changes: &[Change]) -> String {
    let mut parts: Vec<String> = changes
        .iter()
        .take(CHANGES_SHOWN)
        .map(Change::summary)
        .collect();
    if changes.len() > CHANGES_SHOWN {
        parts.push(format!("+{} more", changes.len() - CHANGES_SHOWN));
    }
    parts.join(", ")
}

pub async fn diff(
    client: &Client,
    args: &DiffArgs,
    color: bool,
    out: &mut dyn Write,
) -> Result<ExitCode, CliError> {
    let body: DiffBody = client
        .get(&format!("/diff?from={}&to={}", args.from, args.to))
        .await?;
    for line in body.diff.lines() {
        writeln!(out, "{}", paint(line, color))?;
    }
    if body.changes.is_empty() {
        writeln!(
            out,
            "no changes between revision {} and revision {}",
            args.from, args.to
        )?;
    } else {
        if !body.diff.is_empty() {
            writeln!(out)?;
        }
        let n = body.changes.len();
        writeln!(
            out,
            "{n} change{} from revision {} to revision {}:",
            if n == 1 { "" } else { "s" },
            args.from,
            args.to
        )?;
        for c in &body.changes {
            writeln!(out, "  {}", c.summary())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// ANSI colors for a unified diff line, as `git diff` shows them.
fn paint(line: &str, color: bool) -> String {
    if !color {
        return line.to_string();
    }
    let code = if line.starts_with("+++") || line.starts_with("---") {
        "1"
    } else if line.starts_with('+') {
        "32"
    } else if line.starts_with('-') {
        "31"
    } else if line.starts_with("@@") {
        "36"
    } else {
        return line.to_string();
    };
    format!("\x1b[{code}m{line}\x1b[0m")
}

pub async fn rollback(
    client: &Client,
    args: &RollbackArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ExitCode, CliError> {
    let body = Bytes::from(json!({ "revision": args.revision }).to_string());
    let meta = WriteMeta {
        message: args.message.as_deref(),
        file: None,
    };
    let outcome: ApplyOutcome = client
        .write(
            Method::POST,
            "/rollback",
            Some(("application/json", body)),
            &meta,
        )
        .await?;
    let changed = ApplyOutcome {
        revision: None,
        changes: outcome
            .changes
            .iter()
            .filter(|c| c.action != "unchanged")
            .cloned()
            .collect(),
        ..outcome
    };
    report(&changed, out, err)?;
    match outcome.revision {
        Some(rev) => writeln!(out, "revision {rev} (restores revision {})", args.revision)?,
        None => writeln!(
            out,
            "the configuration already equals revision {}; nothing changed",
            args.revision
        )?,
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(name: &str) -> Change {
        Change {
            kind: "VirtualService".into(),
            namespace: "default".into(),
            name: name.into(),
            action: "configured".into(),
        }
    }

    #[test]
    fn changes_are_summarized() {
        assert_eq!(
            changes_cell(&[change("a")]),
            "VirtualService default/a configured"
        );
        assert_eq!(
            changes_cell(&[change("a"), change("b"), change("c"), change("d")]),
            "VirtualService default/a configured, VirtualService default/b configured, +2 more"
        );
        assert_eq!(paint("+x", false), "+x");
        assert_eq!(paint("+x", true), "\x1b[32m+x\x1b[0m");
        assert_eq!(paint("--- a", true), "\x1b[1m--- a\x1b[0m");
    }
}
