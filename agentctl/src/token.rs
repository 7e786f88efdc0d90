//! `agentctl token user`: a person token from the development issuer of
//! `agentctl dev`, for trying grants and exchanges on a laptop.

use std::path::PathBuf;

use crate::dev_users;

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
            println!("{token}");
            Ok(())
        }
    }
}
