//! `trellis token create|list|revoke`: join tokens, the credential a proxy presents to the control
//! plane's CA to get its workload certificate (`trellis-proxy --join-token`). `create` prints only
//! the token, so `TOKEN=$(trellis token create ...)` works.

use super::CliError;
use super::client::{Client, WriteMeta, encode};
use super::table::{Table, short_time};
use bytes::Bytes;
use clap::{Args, Subcommand};
use http::Method;
use serde::Deserialize;
use std::io::Write;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token for one namespace and service account; prints the token (shown only once).
    Create(CreateArgs),
    /// The stored tokens (ids, scopes, expiry; never the tokens themselves).
    List,
    /// Revoke a token by the id `trellis token list` shows; proxies using it get no new
    /// certificates (those already issued stay valid until they expire).
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Namespace of the workloads that will use the token.
    #[arg(short, long)]
    pub namespace: String,
    /// Service account of the workloads: their identity is spiffe://<trust-domain>/ns/NS/sa/SA.
    #[arg(long)]
    pub service_account: String,
    /// How long the token may be used (it is presented at every renewal); default 720h.
    #[arg(long)]
    pub ttl: Option<String>,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The token's id, as `trellis token list` shows it.
    pub id: String,
}

#[derive(Debug, Deserialize)]
struct Created {
    token: String,
}

#[derive(Debug, Deserialize)]
struct TokenList {
    tokens: Vec<TokenInfo>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenInfo {
    id: String,
    namespace: String,
    service_account: String,
    expires: String,
    #[serde(default)]
    expired: bool,
}

pub async fn token(
    client: &Client,
    args: &TokenArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ExitCode, CliError> {
    match &args.command {
        TokenCommand::Create(args) => create(client, args, out).await,
        TokenCommand::List => list(client, out, err).await,
        TokenCommand::Revoke(args) => revoke(client, args, out).await,
    }
}

async fn create(
    client: &Client,
    args: &CreateArgs,
    out: &mut dyn Write,
) -> Result<ExitCode, CliError> {
    let mut body = serde_json::json!({
        "namespace": args.namespace,
        "serviceAccount": args.service_account,
    });
    if let Some(ttl) = &args.ttl {
        body["ttl"] = ttl.clone().into();
    }
    let created: Created = client
        .write(
            Method::POST,
            "/tokens",
            Some(("application/json", Bytes::from(body.to_string()))),
            &WriteMeta::default(),
        )
        .await?;
    writeln!(out, "{}", created.token)?;
    Ok(ExitCode::SUCCESS)
}

async fn list(
    client: &Client,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ExitCode, CliError> {
    let list: TokenList = client.get("/tokens").await?;
    if list.tokens.is_empty() {
        writeln!(err, "No join tokens on {}", client.base())?;
        return Ok(ExitCode::SUCCESS);
    }
    out.write_all(render(&list.tokens).as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

fn render(tokens: &[TokenInfo]) -> String {
    let mut t = Table::new(&["ID", "NAMESPACE", "SERVICE ACCOUNT", "EXPIRES", "STATUS"]);
    for token in tokens {
        t.row(vec![
            token.id.clone(),
            token.namespace.clone(),
            token.service_account.clone(),
            short_time(&token.expires),
            if token.expired { "expired" } else { "valid" }.to_string(),
        ]);
    }
    t.render()
}

async fn revoke(
    client: &Client,
    args: &RevokeArgs,
    out: &mut dyn Write,
) -> Result<ExitCode, CliError> {
    let _: serde_json::Value = client
        .write(
            Method::DELETE,
            &format!("/tokens/{}", encode(args.id.trim())),
            None,
            &WriteMeta::default(),
        )
        .await?;
    writeln!(out, "join token {} revoked", args.id.trim())?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let list: TokenList = serde_json::from_str(
            r#"{"tokens":[{"id":"0123456789ab","namespace":"default","serviceAccount":"reviews","expires":"2026-12-21T09:00:00.000Z","expired":false},
                          {"id":"ba9876543210","namespace":"shop","serviceAccount":"cart","expires":"2026-01-01T00:00:00.000Z","expired":true}]}"#,
        )
        .unwrap();
        assert_eq!(
            render(&list.tokens),
            "ID             NAMESPACE   SERVICE ACCOUNT   EXPIRES               STATUS\n\
             0123456789ab   default     reviews           2026-12-21 09:00:00   valid\n\
             ba9876543210   shop        cart              2026-01-01 00:00:00   expired\n"
        );
    }
}
