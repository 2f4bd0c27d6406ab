//! `trellis ca show|rotate`: the roots proxies trust, and rotating the root. A rotation puts a new
//! root in every proxy's trust bundle at once, lets it sign after the propagation delay, and keeps
//! the old root trusted for the grace period, so no request fails on the way.

use super::CliError;
use super::client::{Client, WriteMeta};
use super::table::{Table, short_time};
use bytes::Bytes;
use clap::{Args, Subcommand};
use http::Method;
use serde::Deserialize;
use std::io::Write;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct CaArgs {
    #[command(subcommand)]
    pub command: CaCommand,
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// The roots in the trust bundle: fingerprint, expiry, which one signs, until when a
    /// replaced one stays trusted.
    Show,
    /// Replace the root: the new root is trusted by every proxy at once and signs after the
    /// propagation delay; the old one stays trusted for the grace period.
    Rotate(RotateArgs),
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// How long the old root stays trusted once the new one signs, like 48h; at least the
    /// certificate lifetime (--cert-ttl), default twice it.
    #[arg(long)]
    pub grace: Option<String>,
    /// How long the new root is only trusted before it signs, like 30s; default the control
    /// plane's --root-propagation.
    #[arg(long)]
    pub propagation: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Root {
    subject: String,
    sha256: String,
    not_after: String,
    role: String,
    #[serde(default)]
    signs_from: Option<String>,
    #[serde(default)]
    trusted_until: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Roots {
    roots: Vec<Root>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rotated {
    new_root: Root,
    replaced: Vec<Root>,
    signs_from: String,
    old_trusted_until: String,
}

pub async fn ca(
    client: &Client,
    args: &CaArgs,
    out: &mut dyn Write,
    _err: &mut dyn Write,
) -> Result<ExitCode, CliError> {
    match &args.command {
        CaCommand::Show => {
            let roots: Roots = client.get("/ca").await?;
            out.write_all(render(&roots.roots).as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        CaCommand::Rotate(args) => rotate(client, args, out).await,
    }
}

async fn rotate(
    client: &Client,
    args: &RotateArgs,
    out: &mut dyn Write,
) -> Result<ExitCode, CliError> {
    let mut body = serde_json::json!({});
    if let Some(grace) = &args.grace {
        body["grace"] = grace.clone().into();
    }
    if let Some(propagation) = &args.propagation {
        body["propagation"] = propagation.clone().into();
    }
    let rotated: Rotated = client
        .write(
            Method::POST,
            "/ca/rotate",
            Some(("application/json", Bytes::from(body.to_string()))),
            &WriteMeta::default(),
        )
        .await?;
    out.write_all(describe(&rotated).as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

fn describe(rotated: &Rotated) -> String {
    let mut text = String::new();
    for old in &rotated.replaced {
        text.push_str(&format!(
            "old root: {} (sha256 {}), trusted until {}\n",
            old.subject,
            old.sha256,
            short_time(&rotated.old_trusted_until)
        ));
    }
    text.push_str(&format!(
        "new root: {} (sha256 {}), in every proxy's trust bundle now, signing from {}\n",
        rotated.new_root.subject,
        rotated.new_root.sha256,
        short_time(&rotated.signs_from)
    ));
    text
}

fn render(roots: &[Root]) -> String {
    let mut t = Table::new(&["ROOT", "SHA256", "EXPIRES", "ROLE"]);
    for root in roots {
        let role = match (root.role.as_str(), &root.signs_from, &root.trusted_until) {
            ("next", Some(at), _) => format!("next (signs from {})", short_time(at)),
            ("previous", _, Some(until)) => {
                format!("previous (trusted until {})", short_time(until))
            }
            (role, _, _) => role.to_string(),
        };
        t.row(vec![
            root.subject.clone(),
            root.sha256.get(..16).unwrap_or(&root.sha256).to_string(),
            short_time(&root.not_after),
            role,
        ]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_and_rotate_output() {
        let roots: Roots = serde_json::from_str(
            r#"{"roots":[
              {"subject":"O=cluster.local, CN=Trellis root CA bb","sha256":"bbbbbbbbbbbbbbbbffff","notAfter":"2036-11-21T09:00:00.000Z","role":"signing"},
              {"subject":"O=cluster.local, CN=Trellis root CA aa","sha256":"aaaaaaaaaaaaaaaaffff","notAfter":"2036-11-20T09:00:00.000Z","role":"previous","trustedUntil":"2026-11-23T09:00:00.000Z"}]}"#,
        )
        .unwrap();
        assert_eq!(
            render(&roots.roots),
            "ROOT                                     SHA256             EXPIRES               ROLE\n\
             O=cluster.local, CN=Trellis root CA bb   bbbbbbbbbbbbbbbb   2036-11-21 09:00:00   signing\n\
             O=cluster.local, CN=Trellis root CA aa   aaaaaaaaaaaaaaaa   2036-11-20 09:00:00   previous (trusted until 2026-11-23 09:00:00)\n"
        );
        let rotated: Rotated = serde_json::from_str(
            r#"{"newRoot":{"subject":"CN=new","sha256":"11","notAfter":"2036-11-21T09:00:00.000Z","role":"next","signsFrom":"2026-11-21T09:00:30.000Z"},
                "replaced":[{"subject":"CN=old","sha256":"22","notAfter":"2036-01-01T00:00:00.000Z","role":"signing"}],
                "signsFrom":"2026-11-21T09:00:30.000Z","oldTrustedUntil":"2026-11-23T09:00:30.000Z"}"#,
        )
        .unwrap();
        assert_eq!(
            describe(&rotated),
            "old root: CN=old (sha256 22), trusted until 2026-11-23 09:00:30\n\
             new root: CN=new (sha256 11), in every proxy's trust bundle now, signing from 2026-11-21 09:00:30\n"
        );
    }
}
