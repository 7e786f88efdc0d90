//! `agentctl agent ...`: register agents and give them credentials through
//! identity-svc's gRPC API, authenticated as an admin client.

use std::collections::HashMap;
use std::path::PathBuf;

use agentsec_proto::identity::v1::identity_service_client::IdentityServiceClient;
use agentsec_proto::identity::v1::{
    issue_token_request::ClientAuthentication, Agent, Ceiling, CreateClientSecretRequest,
    GrantType, IssueTokenRequest, RegisterAgentRequest, SuspendAgentRequest,
};
use anyhow::Context as _;
use tonic::transport::Channel;

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// identity-svc base URL.
    #[arg(
        long,
        env = "AGENTSEC_IDENTITY_URL",
        default_value = "http://127.0.0.1:7401",
        global = true
    )]
    identity: String,
    /// Admin client id (the bootstrap admin, or an agent with admin scope).
    #[arg(long, env = "AGENTSEC_ADMIN_CLIENT_ID", default_value = crate::dev::DEV_ADMIN_CLIENT_ID, global = true)]
    admin_client_id: String,
    /// File holding the admin client secret (`agentctl dev` writes one).
    #[arg(
        long,
        env = "AGENTSEC_ADMIN_SECRET_FILE",
        default_value = ".agentsec/admin-secret",
        global = true
    )]
    admin_secret_file: PathBuf,
    /// The audience of admin tokens.
    #[arg(long, default_value = "agentsec", global = true)]
    admin_audience: String,
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

fn bearer<T>(message: T, token: &str) -> anyhow::Result<tonic::Request<T>> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}")
            .parse()
            .context("admin token is not valid metadata")?,
    );
    Ok(request)
}

async fn admin_token(
    client: &mut IdentityServiceClient<Channel>,
    args: &AgentArgs,
) -> anyhow::Result<String> {
    let secret = std::fs::read_to_string(&args.admin_secret_file).with_context(|| {
        format!(
            "reading the admin secret from {}",
            args.admin_secret_file.display()
        )
    })?;
    let response = client
        .issue_token(IssueTokenRequest {
            grant_type: GrantType::ClientCredentials as i32,
            client_id: args.admin_client_id.clone(),
            client_authentication: Some(ClientAuthentication::ClientSecret(
                secret.trim().to_owned(),
            )),
            audience: args.admin_audience.clone(),
            ..Default::default()
        })
        .await
        .map_err(|status| anyhow::anyhow!("admin token refused: {}", status.message()))?;
    Ok(response.into_inner().access_token)
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let channel = Channel::from_shared(args.identity.clone())
        .context("--identity is not a valid URL")?
        .connect()
        .await
        .with_context(|| format!("connecting to identity-svc at {}", args.identity))?;
    let mut client = IdentityServiceClient::new(channel);
    let token = admin_token(&mut client, &args).await?;
    let failed =
        |status: tonic::Status| anyhow::anyhow!("{:?}: {}", status.code(), status.message());
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
