//! `agentctl agent ...`: the agent registry of identity-svc (register, get,
//! list, update, suspend, reactivate, revoke) and agents' credentials
//! (`agentctl agent credential ...`), over its gRPC API as an admin client.

mod credential;

use std::collections::HashMap;
use std::sync::Arc;

use agentsec_common::tls::ClientTls;
use agentsec_proto::identity::v1::identity_service_client::IdentityServiceClient;
use agentsec_proto::identity::v1::{
    Agent, AgentStatus, Ceiling, GetAgentRequest, ListAgentsRequest, ReactivateAgentRequest,
    RegisterAgentRequest, RevokeAgentRequest, SuspendAgentRequest, UpdateAgentRequest,
};
use serde_json::{json, Value};
use tonic::transport::Channel;

use crate::admin::{bearer, failed, AdminArgs, ServiceUrls};
use crate::output::{time, Column, Format, OutputArgs};
use crate::page::{LimitArgs, Pager};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  agentctl agent register --tenant demo --owner alice --name builder \\
    --audience github-mcp --scope repo:read --attribute trust_tier=2
  agentctl agent list --tenant demo --status active
  agentctl agent get --agent-id agt_...
  agentctl agent update --agent-id agt_... --scope repo:read --scope repo:write
  agentctl agent suspend --agent-id agt_... --reason 'leaked secret'
  agentctl agent credential add-secret --agent-id agt_...
  agentctl agent list --output json")]
pub struct AgentArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(flatten)]
    urls: ServiceUrls,
    #[command(flatten)]
    output: OutputArgs,
    #[command(subcommand)]
    command: AgentCommand,
}

#[derive(Debug, clap::Subcommand)]
enum AgentCommand {
    /// Register an agent (status active); prints it, with its id.
    Register {
        #[arg(long)]
        tenant: String,
        /// The accountable person's subject.
        #[arg(long)]
        owner: String,
        /// Display name, unique in the tenant.
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        /// The model the agent runs on, e.g. claude-sonnet-4.
        #[arg(long, default_value = "")]
        model: String,
        /// The model provider, e.g. anthropic.
        #[arg(long, default_value = "")]
        provider: String,
        /// An audience the agent may get tokens for (repeatable).
        #[arg(long = "audience")]
        audiences: Vec<String>,
        /// A scope the agent may be granted (repeatable).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// An attribute `key=value` for policy (repeatable).
        #[arg(long = "attribute", value_parser = parse_attribute)]
        attributes: Vec<(String, String)>,
    },
    /// Print one agent.
    Get {
        #[arg(long)]
        agent_id: String,
    },
    /// List agents (by id, i.e. oldest first).
    List {
        /// Only this tenant.
        #[arg(long, default_value = "")]
        tenant: String,
        /// Only agents of this owner.
        #[arg(long, default_value = "")]
        owner: String,
        /// Only agents in this status.
        #[arg(long, value_enum)]
        status: Option<Status>,
        /// Only agents with this attribute `key=value` (repeatable; all
        /// must match).
        #[arg(long = "attribute", value_parser = parse_attribute)]
        attributes: Vec<(String, String)>,
        #[command(flatten)]
        limit: LimitArgs,
    },
    /// Change an agent's fields; only the fields given change (the
    /// ceiling keeps what is not given; attributes are merged).
    Update(Update),
    /// Suspend an agent: its tokens stop working at once.
    Suspend(Transition),
    /// Return a suspended agent to active (tokens issued before the
    /// suspension stay inactive).
    Reactivate(Transition),
    /// Revoke an agent for good: tokens and credentials stop working, and
    /// it can never be reactivated.
    Revoke(Transition),
    /// An agent's credentials: client secrets, public keys, federated
    /// credentials.
    #[command(subcommand)]
    Credential(credential::CredentialCommand),
    /// The same as `agentctl agent credential add-secret`.
    #[command(hide = true)]
    Secret(credential::AddSecret),
}

#[derive(Debug, clap::Args)]
struct Update {
    #[arg(long)]
    agent_id: String,
    #[arg(long)]
    owner: Option<String>,
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    description: Option<String>,
    #[arg(long)]
    model: Option<String>,
    #[arg(long)]
    provider: Option<String>,
    /// Replaces the ceiling's audiences (repeatable).
    #[arg(long = "audience")]
    audiences: Vec<String>,
    /// Replaces the ceiling's scopes (repeatable).
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// Sets an attribute `key=value` (repeatable).
    #[arg(long = "attribute", value_parser = parse_attribute)]
    attributes: Vec<(String, String)>,
    /// Removes an attribute (repeatable).
    #[arg(long = "remove-attribute")]
    removed_attributes: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct Transition {
    #[arg(long)]
    agent_id: String,
    /// Why; stored with the agent and audited.
    #[arg(long)]
    reason: String,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Status {
    Active,
    Suspended,
    Revoked,
}

impl From<Status> for AgentStatus {
    fn from(status: Status) -> Self {
        match status {
            Status::Active => Self::Active,
            Status::Suspended => Self::Suspended,
            Status::Revoked => Self::Revoked,
        }
    }
}

/// A `key=value` flag.
pub fn parse_attribute(value: &str) -> Result<(String, String), String> {
    value
        .split_once('=')
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .ok_or_else(|| format!("`{value}` is not key=value"))
}

/// Fields of an agent a table shows for one agent.
const AGENT: [Column; 12] = [
    Column::new("ID", "id"),
    Column::new("TENANT", "tenant"),
    Column::new("NAME", "name"),
    Column::new("OWNER", "owner"),
    Column::enumeration("STATUS", "status", "AGENT_STATUS_"),
    Column::new("STATUS REASON", "status_reason"),
    Column::new("DESCRIPTION", "description"),
    Column::drawn("MODEL", |agent| {
        let model = agent["model"].as_str().unwrap_or_default();
        let provider = agent["provider"].as_str().unwrap_or_default();
        match (model, provider) {
            ("", "") => "-".to_owned(),
            (model, "") => model.to_owned(),
            (model, provider) => format!("{model} ({provider})"),
        }
    }),
    Column::new("ATTRIBUTES", "attributes"),
    Column::drawn("CEILING", ceiling),
    Column::new("CREATED", "create_time"),
    Column::new("UPDATED", "update_time"),
];

/// Columns of an agent list.
const AGENTS: [Column; 7] = [
    Column::new("ID", "id"),
    Column::new("TENANT", "tenant"),
    Column::new("NAME", "name"),
    Column::new("OWNER", "owner"),
    Column::enumeration("STATUS", "status", "AGENT_STATUS_"),
    Column::new("ATTRIBUTES", "attributes"),
    Column::drawn("CEILING", ceiling),
];

/// `audiences: scopes` of an agent's ceiling.
fn ceiling(agent: &Value) -> String {
    let join = |key: &str| {
        agent["ceiling"][key]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default()
    };
    format!("{}: {}", join("audiences"), join("scopes"))
}

/// An agent as agentctl prints it in JSON (proto field names).
fn agent_json(agent: &Agent) -> Value {
    let ceiling = agent.ceiling.clone().unwrap_or_default();
    json!({
        "id": agent.id,
        "tenant": agent.tenant,
        "owner": agent.owner,
        "name": agent.name,
        "description": agent.description,
        "model": agent.model,
        "provider": agent.provider,
        "status": agent.status().as_str_name(),
        "status_reason": agent.status_reason,
        "attributes": agent.attributes,
        "ceiling": {"audiences": ceiling.audiences, "scopes": ceiling.scopes},
        "create_time": time(agent.create_time.as_ref()),
        "update_time": time(agent.update_time.as_ref()),
    })
}

/// An admin's connection to identity-svc.
pub struct Admin {
    client: IdentityServiceClient<Channel>,
    token: String,
}

impl Admin {
    /// The agent `agent_id`.
    async fn agent(&mut self, agent_id: &str) -> anyhow::Result<Agent> {
        let request = GetAgentRequest {
            agent_id: agent_id.to_owned(),
        };
        Ok(self
            .client
            .get_agent(bearer(request, &self.token)?)
            .await
            .map_err(failed)?
            .into_inner()
            .agent
            .unwrap_or_default())
    }
}

pub async fn run(args: AgentArgs, tls: &Arc<ClientTls>) -> anyhow::Result<()> {
    let (client, token) = args
        .admin
        .connect_and_token(&args.urls.identity, tls)
        .await?;
    let mut admin = Admin { client, token };
    print!(
        "{}",
        args.command.run(&mut admin, args.output.output).await?
    );
    Ok(())
}

impl AgentCommand {
    /// Runs the command; what it prints.
    async fn run(self, admin: &mut Admin, format: Format) -> anyhow::Result<String> {
        let token = admin.token.clone();
        let client = &mut admin.client;
        let agent = match self {
            Self::Register {
                tenant,
                owner,
                name,
                description,
                model,
                provider,
                audiences,
                scopes,
                attributes,
            } => {
                let agent = Agent {
                    tenant,
                    owner,
                    name,
                    description,
                    model,
                    provider,
                    attributes: attributes.into_iter().collect::<HashMap<_, _>>(),
                    ceiling: Some(Ceiling { audiences, scopes }),
                    ..Agent::default()
                };
                client
                    .register_agent(bearer(RegisterAgentRequest { agent: Some(agent) }, &token)?)
                    .await
                    .map_err(failed)?
                    .into_inner()
                    .agent
            }
            Self::Get { agent_id } => Some(admin.agent(&agent_id).await?),
            Self::List {
                tenant,
                owner,
                status,
                attributes,
                limit,
            } => {
                let mut pager = Pager::new(&limit);
                let mut agents = Vec::new();
                while let Some(page) = pager.next_page() {
                    let request = ListAgentsRequest {
                        tenant: tenant.clone(),
                        owner: owner.clone(),
                        status: status.map_or(AgentStatus::Unspecified, Into::into) as i32,
                        attributes: attributes.iter().cloned().collect(),
                        page: Some(page),
                        updated_since: None,
                    };
                    let response = client
                        .list_agents(bearer(request, &token)?)
                        .await
                        .map_err(failed)?
                        .into_inner();
                    pager.take(&mut agents, response.agents, response.page);
                }
                let agents: Vec<Value> = agents.iter().map(agent_json).collect();
                return Ok(format.list(&agents, &AGENTS, "no agents"));
            }
            Self::Update(update) => Some(update.run(admin).await?),
            Self::Suspend(Transition { agent_id, reason }) => {
                client
                    .suspend_agent(bearer(SuspendAgentRequest { agent_id, reason }, &token)?)
                    .await
                    .map_err(failed)?
                    .into_inner()
                    .agent
            }
            Self::Reactivate(Transition { agent_id, reason }) => {
                client
                    .reactivate_agent(bearer(ReactivateAgentRequest { agent_id, reason }, &token)?)
                    .await
                    .map_err(failed)?
                    .into_inner()
                    .agent
            }
            Self::Revoke(Transition { agent_id, reason }) => {
                client
                    .revoke_agent(bearer(RevokeAgentRequest { agent_id, reason }, &token)?)
                    .await
                    .map_err(failed)?
                    .into_inner()
                    .agent
            }
            Self::Credential(command) => return command.run(admin, format).await,
            Self::Secret(add) => return add.run(admin, format).await,
        };
        Ok(format.one(&agent_json(&agent.unwrap_or_default()), &AGENT))
    }
}

impl Update {
    /// The agent with the given fields changed: the current agent is read
    /// so that a partly given ceiling or attribute set keeps the rest.
    async fn run(self, admin: &mut Admin) -> anyhow::Result<Agent> {
        let current = admin.agent(&self.agent_id).await?;
        let mut agent = Agent::default();
        let mut paths = Vec::new();
        let mut set = |path: &str, value: Option<String>, field: &mut String| {
            if let Some(value) = value {
                *field = value;
                paths.push(path.to_owned());
            }
        };
        set("owner", self.owner, &mut agent.owner);
        set("name", self.name, &mut agent.name);
        set("description", self.description, &mut agent.description);
        set("model", self.model, &mut agent.model);
        set("provider", self.provider, &mut agent.provider);
        if !self.audiences.is_empty() || !self.scopes.is_empty() {
            let mut ceiling = current.ceiling.clone().unwrap_or_default();
            if !self.audiences.is_empty() {
                ceiling.audiences = self.audiences;
            }
            if !self.scopes.is_empty() {
                ceiling.scopes = self.scopes;
            }
            agent.ceiling = Some(ceiling);
            paths.push("ceiling".to_owned());
        }
        if !self.attributes.is_empty() || !self.removed_attributes.is_empty() {
            agent.attributes = current.attributes.clone();
            for key in &self.removed_attributes {
                anyhow::ensure!(
                    agent.attributes.remove(key).is_some(),
                    "agent {} has no attribute `{key}` to remove",
                    self.agent_id
                );
            }
            agent.attributes.extend(self.attributes);
            paths.push("attributes".to_owned());
        }
        anyhow::ensure!(
            !paths.is_empty(),
            "nothing to update: give at least one of --owner, --name, --description, \
             --model, --provider, --audience, --scope, --attribute, --remove-attribute"
        );
        let request = UpdateAgentRequest {
            agent_id: self.agent_id,
            agent: Some(agent),
            update_mask: Some(prost_types::FieldMask { paths }),
        };
        Ok(admin
            .client
            .update_agent(bearer(request, &admin.token)?)
            .await
            .map_err(failed)?
            .into_inner()
            .agent
            .unwrap_or_default())
    }
}
