//! `agentctl token ...`: tokens as the services issue and judge them —
//! client-credentials tokens from identity-svc, RFC 8693 exchanges at
//! exchange-svc, introspection at either, a decoder that verifies a token
//! against its issuer's JWKS and draws its `act` chain — and the
//! development person-token issuer of `agentctl dev` (`user`,
//! `dev-issuer`).

mod decode;
mod oauth;

use std::io::Read as _;
use std::path::PathBuf;
use std::sync::Arc;

use agentsec_common::tls::ClientTls;
use anyhow::Context as _;
use serde_json::json;

use crate::admin::{AdminArgs, ServiceUrls};
use crate::dev_users;
use crate::output::{Column, OutputArgs};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  agentctl token client-credentials --client-id agt_... --client-secret-file bot.secret \\
    --audience http://127.0.0.1:7403 --token-only
  agentctl token exchange --subject-token \"$(agentctl token user --sub alice)\" \\
    --actor-token \"$ACTOR\" --audience https://api.example.dev --scope read
  agentctl token decode --token \"$TOKEN\"      # verified against the issuer's JWKS
  agentctl token introspect --token \"$TOKEN\"
  agentctl token user --sub alice --scope read
  agentctl token dev-issuer                    # issuer, audience and JWKS of `token user`

A token argument of `-` is read from stdin.")]
pub struct TokenArgs {
    #[command(flatten)]
    urls: ServiceUrls,
    #[command(flatten)]
    admin: AdminArgs,
    #[command(flatten)]
    output: OutputArgs,
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Debug, clap::Subcommand)]
enum TokenCommand {
    /// A client-credentials token of identity-svc (an agent's, or a
    /// service client's).
    ClientCredentials(oauth::ClientCredentials),
    /// Exchange a person's (or a delegated) token and an agent's token for
    /// a delegated token at exchange-svc (RFC 8693).
    Exchange(oauth::Exchange),
    /// Ask the issuing service whether a token is active (RFC 7662), as an
    /// admin.
    Introspect(oauth::Introspect),
    /// Show a token's header and claims, verified against its issuer's
    /// JWKS, with its `act` chain drawn.
    Decode(decode::Decode),
    /// Print a person token signed by the development issuer.
    User {
        /// The person (`sub`).
        #[arg(long)]
        sub: String,
        /// The person's tenant (`tenant` claim).
        #[arg(long, default_value = crate::stack::DEFAULT_TENANT)]
        tenant: String,
        /// A scope the token carries (repeatable); none = no `scope` claim.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// An agent id allowed to act for the person without a grant
        /// (RFC 8693 `may_act`).
        #[arg(long)]
        may_act: Option<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 600)]
        lifetime_secs: i64,
        #[command(flatten)]
        data_dir: DataDir,
    },
    /// The development person-token issuer: its `iss`, the `aud` of its
    /// tokens and its JWKS, to make a separately started exchange-svc
    /// trust it (`[[user_issuers]]`).
    DevIssuer {
        #[command(flatten)]
        data_dir: DataDir,
    },
}

#[derive(Debug, clap::Args)]
struct DataDir {
    /// The data directory of `agentctl dev`.
    #[arg(long, env = "AGENTCTL_DATA_DIR", default_value = ".agentsec")]
    data_dir: PathBuf,
}

/// A token given on the command line: as written, or from stdin for `-`.
pub fn token_argument(token: String, flag: &str) -> anyhow::Result<String> {
    if token != "-" {
        return Ok(token);
    }
    let mut read = String::new();
    std::io::stdin()
        .read_to_string(&mut read)
        .with_context(|| format!("{flag} -: reading stdin"))?;
    let token = read.trim().to_owned();
    anyhow::ensure!(!token.is_empty(), "{flag} -: stdin held no token");
    Ok(token)
}

pub async fn run(args: TokenArgs, tls: &Arc<ClientTls>) -> anyhow::Result<()> {
    let format = args.output.output;
    let printed = match args.command {
        TokenCommand::ClientCredentials(command) => command.run(&args.urls, tls, format).await?,
        TokenCommand::Exchange(command) => command.run(&args.urls, tls, format).await?,
        TokenCommand::Introspect(command) => {
            command.run(&args.urls, &args.admin, tls, format).await?
        }
        TokenCommand::Decode(command) => command.run(tls, format).await?,
        TokenCommand::User {
            sub,
            tenant,
            scopes,
            may_act,
            lifetime_secs,
            data_dir,
        } => {
            anyhow::ensure!(
                (1..=86_400).contains(&lifetime_secs),
                "--lifetime-secs must be 1-86400"
            );
            let key = dev_users::load(&data_dir.data_dir)?;
            let token = dev_users::person_token(
                &key,
                &dev_users::PersonClaims {
                    sub: &sub,
                    tenant: &tenant,
                    scopes: &scopes,
                    may_act: may_act.as_deref(),
                    lifetime_secs,
                },
            )?;
            // The token alone, for `$(agentctl token user ...)`.
            format!("{token}\n")
        }
        TokenCommand::DevIssuer { data_dir } => {
            let key = dev_users::load(&data_dir.data_dir)?;
            let issuer = json!({
                "issuer": dev_users::DEV_USER_ISSUER,
                "audience": dev_users::DEV_USER_AUDIENCE,
                "jwks": {"keys": [key.public_jwk()]},
            });
            format.one(
                &issuer,
                &[
                    Column::new("ISSUER", "issuer"),
                    Column::new("AUDIENCE", "audience"),
                    Column::drawn("JWKS", |issuer| issuer["jwks"].to_string()),
                ],
            )
        }
    };
    print!("{printed}");
    Ok(())
}
