//! `agentctl grant create`: a person lets an agent act for them, proving
//! who they are with their own token (e.g. from `agentctl token user`).

use std::sync::Arc;

use agentsec_common::tls::ClientTls;
use agentsec_proto::exchange::v1::exchange_service_client::ExchangeServiceClient;
use agentsec_proto::exchange::v1::{CreateGrantRequest, Grant};
use anyhow::Context as _;

use crate::admin::{bearer, connect, failed, ServiceUrls};

#[derive(Debug, clap::Args)]
pub struct GrantArgs {
    #[command(flatten)]
    urls: ServiceUrls,
    #[command(subcommand)]
    command: GrantCommand,
}

#[derive(Debug, clap::Subcommand)]
enum GrantCommand {
    /// Create a grant; prints it as JSON.
    Create {
        /// The granting person's token.
        #[arg(long, env = "AGENTSEC_PERSON_TOKEN")]
        person_token: String,
        #[arg(long)]
        agent_id: String,
        /// An audience the agent may get tokens for (repeatable).
        #[arg(long = "audience", required = true)]
        audiences: Vec<String>,
        /// A scope that may be delegated (repeatable).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Seconds until the grant ends.
        #[arg(long, default_value_t = 3600)]
        expires_in: i64,
        /// Deepest agent chain below the person (1 = this agent only).
        #[arg(long, default_value_t = 1)]
        max_chain_depth: u32,
        #[arg(long)]
        purpose: String,
    },
}

pub async fn run(args: GrantArgs, tls: &Arc<ClientTls>) -> anyhow::Result<()> {
    match args.command {
        GrantCommand::Create {
            person_token,
            agent_id,
            audiences,
            scopes,
            expires_in,
            max_chain_depth,
            purpose,
        } => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .context("the clock is before 1970")?
                .as_secs() as i64;
            let grant = Grant {
                agent_id,
                audiences,
                scopes,
                expire_time: Some(prost_types::Timestamp {
                    seconds: now + expires_in,
                    nanos: 0,
                }),
                max_chain_depth,
                purpose,
                ..Grant::default()
            };
            let mut client = ExchangeServiceClient::new(
                connect(&args.urls.exchange, "exchange-svc", tls).await?,
            );
            let grant = client
                .create_grant(bearer(
                    CreateGrantRequest { grant: Some(grant) },
                    &person_token,
                )?)
                .await
                .map_err(failed)?
                .into_inner()
                .grant
                .unwrap_or_default();
            println!(
                "{}",
                serde_json::json!({
                    "id": grant.id,
                    "tenant": grant.tenant,
                    "person": grant.person_subject,
                    "agent_id": grant.agent_id,
                    "audiences": grant.audiences,
                    "scopes": grant.scopes,
                    "max_chain_depth": grant.max_chain_depth,
                })
            );
            Ok(())
        }
    }
}
