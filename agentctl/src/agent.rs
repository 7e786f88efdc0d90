//! `agentctl agent ...`: register agents and give them credentials through
//! identity-svc's gRPC API, authenticated as an admin client.

use std::sync::Arc;

use agentsec_common::tls::ClientTls;
use std::collections::HashMap;

use agentsec_proto::identity::v1::{
    Agent, Ceiling, CreateClientSecretRequest, RegisterAgentRequest, SuspendAgentRequest,
};

use crate::admin::{bearer, failed, AdminArgs, ServiceUrls};

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(flatten)]
    urls: ServiceUrls,
    #[command(subcommand)]
    command: AgentCommand,
}

#[derive(Debug, clap::Subcommand)]
enum AgentCommand {
    /// Register an agent; prints it as JSON.
    Register {
        #[arg(long)]
        tenant: String,
        /// The accountable person's subject.
        #[arg(long)]
        owner: String,
        #[arg(long)]
        name: String,
        /// An audience the agent may get tokens for (repeatable).
        #[arg(long = "audience")]
        audiences: Vec<String>,
        /// A scope the agent may be granted (repeatable).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// An attribute `key=value` (repeatable).
        #[arg(long = "attribute", value_parser = parse_attribute)]
        attributes: Vec<(String, String)>,
    },
    /// Create a client secret; prints client_id and client_secret as JSON
    /// (the secret is shown only this once).
    Secret {
        #[arg(long)]
        agent_id: String,
    },
    /// Suspend an agent: its tokens stop working at once.
    Suspend {
        #[arg(long)]
        agent_id: String,
        #[arg(long)]
        reason: String,
    },
}

fn parse_attribute(value: &str) -> Result<(String, String), String> {
    value
        .split_once('=')
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .ok_or_else(|| "expected key=value".to_owned())
}

pub async fn run(args: AgentArgs, tls: &Arc<ClientTls>) -> anyhow::Result<()> {
    let (mut client, token) = args
        .admin
        .connect_and_token(&args.urls.identity, tls)
        .await?;
    let output = match &args.command {
        AgentCommand::Register {
            tenant,
            owner,
            name,
            audiences,
            scopes,
            attributes,
        } => {
            let agent = Agent {
                tenant: tenant.clone(),
                owner: owner.clone(),
                name: name.clone(),
                attributes: attributes.iter().cloned().collect::<HashMap<_, _>>(),
                ceiling: Some(Ceiling {
                    audiences: audiences.clone(),
                    scopes: scopes.clone(),
                }),
                ..Agent::default()
            };
            let agent = client
                .register_agent(bearer(RegisterAgentRequest { agent: Some(agent) }, &token)?)
                .await
                .map_err(failed)?
                .into_inner()
                .agent
                .unwrap_or_default();
            serde_json::json!({
                "id": agent.id,
                "tenant": agent.tenant,
                "name": agent.name,
                "owner": agent.owner,
                "audiences": agent.ceiling.as_ref().map(|c| c.audiences.clone()).unwrap_or_default(),
                "scopes": agent.ceiling.as_ref().map(|c| c.scopes.clone()).unwrap_or_default(),
            })
        }
        AgentCommand::Secret { agent_id } => {
            let created = client
                .create_client_secret(bearer(
                    CreateClientSecretRequest {
                        agent_id: agent_id.clone(),
                        ..Default::default()
                    },
                    &token,
                )?)
                .await
                .map_err(failed)?
                .into_inner();
            serde_json::json!({
                "client_id": created.client_id,
                "client_secret": created.client_secret,
                "credential_id": created.credential.map(|c| c.id).unwrap_or_default(),
            })
        }
        AgentCommand::Suspend { agent_id, reason } => {
            let agent = client
                .suspend_agent(bearer(
                    SuspendAgentRequest {
                        agent_id: agent_id.clone(),
                        reason: reason.clone(),
                    },
                    &token,
                )?)
                .await
                .map_err(failed)?
                .into_inner()
                .agent
                .unwrap_or_default();
            serde_json::json!({ "id": agent.id, "status": agent.status().as_str_name() })
        }
    };
    println!("{output}");
    Ok(())
}
