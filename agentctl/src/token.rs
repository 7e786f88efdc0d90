//! `agentctl token user`: a person token from the development issuer of
//! `agentctl dev`, for trying grants and exchanges on a laptop.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::dev_users::{self, DEV_USER_AUDIENCE, DEV_USER_ISSUER};

#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Debug, clap::Subcommand)]
enum TokenCommand {
    /// Print a person token signed by the development issuer.
    User {
        /// The person (`sub`).
        #[arg(long)]
        sub: String,
        /// The person's tenant (`tenant` claim).
        #[arg(long, default_value = "default")]
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
        /// The data directory of `agentctl dev`.
        #[arg(long, default_value = ".agentsec")]
        data_dir: PathBuf,
    },
}

pub fn run(args: TokenArgs) -> anyhow::Result<()> {
    match args.command {
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
            let key = dev_users::load(&data_dir)?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .context("the clock is before 1970")?
                .as_secs() as i64;
            let mut claims = serde_json::json!({
                "iss": DEV_USER_ISSUER,
                "sub": sub,
                "aud": DEV_USER_AUDIENCE,
                "tenant": tenant,
                "iat": now,
                "nbf": now,
                "exp": now + lifetime_secs,
            });
            if !scopes.is_empty() {
                claims["scope"] = scopes.join(" ").into();
            }
            if let Some(agent) = may_act {
                claims["may_act"] = serde_json::json!({ "sub": agent });
            }
            let token = key
                .sign("JWT", &claims)
                .map_err(|err| anyhow::anyhow!("signing: {err}"))?;
            println!("{token}");
            Ok(())
        }
    }
}
