//! `trellis apply` and `trellis delete`: writes, one request per file (or per named resource), in
//! order, stopping at the first failure. Files are validated locally first, so a typo is reported
//! with file and line even when no control plane is running.

use super::client::{Client, WriteMeta, encode};
use super::files::load_inputs;
use super::types::{ApplyOutcome, Change};
use super::{ApplyArgs, CliError, DeleteArgs, kind_resource};
use bytes::Bytes;
use http::Method;
use std::io::Write;
use std::process::ExitCode;
use trellis_api::{Diagnostic, Kind};

pub async fn apply(
    client: &Client,
    args: &ApplyArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ExitCode, CliError> {
    let files = load_inputs(&args.files.files).map_err(invalid)?;
    if files.iter().all(|(_, resources)| resources.is_empty()) {
        return Err(CliError::msg("no objects passed to apply"));
    }
    let path = format!("/apply?dryRun={}", args.dry_run);
    for (input, resources) in &files {
        if resources.is_empty() {
            continue;
        }
        let meta = WriteMeta {
            message: args.message.as_deref(),
            file: Some(&input.name),
        };
        let body = Bytes::from(input.text.clone());
        let outcome: ApplyOutcome = client
            .write(Method::POST, &path, Some(("application/yaml", body)), &meta)
            .await?;
        report(&outcome, out, err)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn delete(
    client: &Client,
    args: &DeleteArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ExitCode, CliError> {
    let mut targets: Vec<(Kind, String, String, Option<String>)> = Vec::new();
    if args.files.is_empty() {
        let (Some(kind), Some(name)) = (&args.kind, &args.name) else {
            return Err(CliError::msg(
                "resource(s) were provided, but no name was specified: use `trellis delete KIND NAME` or `-f FILE`",
            ));
        };
        let kind = super::get::parse_kind(kind)?;
        let namespace = args.namespace.clone().unwrap_or_else(|| "default".into());
        targets.push((kind, namespace, name.clone(), None));
    } else {
        for (input, resources) in load_inputs(&args.files).map_err(invalid)? {
            for r in resources {
                targets.push((
                    r.kind(),
                    r.namespace().to_string(),
                    r.name().to_string(),
                    Some(input.name.clone()),
                ));
            }
        }
        if targets.is_empty() {
            return Err(CliError::msg("no objects passed to delete"));
        }
    }
    for (kind, namespace, name, file) in &targets {
        let path = format!(
            "/resources/{}/{}/{}",
            encode(kind.as_str()),
            encode(namespace),
            encode(name)
        );
        let meta = WriteMeta {
            message: args.message.as_deref(),
            file: file.as_deref(),
        };
        match client
            .write::<ApplyOutcome>(Method::DELETE, &path, None, &meta)
            .await
        {
            Ok(outcome) => report(&outcome, out, err)?,
            Err(CliError::NotFound(_)) if args.ignore_not_found => {}
            Err(e) => return Err(e),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Local validation failed: every problem, one per line.
fn invalid(diagnostics: Vec<Diagnostic>) -> CliError {
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    CliError::Diagnostics {
        error: format!(
            "{errors} error{} in the input; nothing was sent",
            if errors == 1 { "" } else { "s" }
        ),
        diagnostics,
    }
}

/// kubectl's lines (`virtualservice.networking.istio.io/reviews created`), the revision, and the
/// server's warnings on stderr.
pub(super) fn report(
    outcome: &ApplyOutcome,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), CliError> {
    for w in &outcome.warnings {
        writeln!(err, "{w}")?;
    }
    let dry = if outcome.dry_run { " (dry run)" } else { "" };
    for change in &outcome.changes {
        writeln!(out, "{}{dry}", change_line(change))?;
    }
    if let Some(rev) = outcome.revision {
        writeln!(out, "revision {rev}")?;
    }
    Ok(())
}

/// `virtualservice.networking.istio.io/reviews created`, or kubectl's delete wording
/// `virtualservice.networking.istio.io "reviews" deleted` (kubectl names no namespace either).
pub(super) fn change_line(change: &Change) -> String {
    let resource = kind_resource(&change.kind);
    if change.action == "deleted" {
        format!("{resource} \"{}\" deleted", change.name)
    } else {
        format!("{resource}/{} {}", change.name, change.action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(ns: &str, action: &str) -> Change {
        Change {
            kind: "VirtualService".into(),
            namespace: ns.into(),
            name: "reviews".into(),
            action: action.into(),
        }
    }

    #[test]
    fn kubectl_lines() {
        assert_eq!(
            change_line(&change("default", "created")),
            "virtualservice.networking.istio.io/reviews created"
        );
        assert_eq!(
            change_line(&change("prod", "configured")),
            "virtualservice.networking.istio.io/reviews configured"
        );
        assert_eq!(
            change_line(&change("default", "deleted")),
            "virtualservice.networking.istio.io \"reviews\" deleted"
        );
        let mut out = Vec::new();
        let mut err = Vec::new();
        let outcome = ApplyOutcome {
            revision: Some(7),
            dry_run: false,
            changes: vec![change("default", "unchanged")],
            warnings: vec![Diagnostic::warning("odd").with_file("a.yaml")],
        };
        report(&outcome, &mut out, &mut err).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "virtualservice.networking.istio.io/reviews unchanged\nrevision 7\n"
        );
        assert_eq!(String::from_utf8(err).unwrap(), "a.yaml: warning: odd\n");
    }
}
