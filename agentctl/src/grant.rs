//! `agentctl grant ...`: a person's delegations to agents at exchange-svc
//! (create, get, list, revoke), each call made as the person, with their
//! own token (e.g. from `agentctl token user`).

use std::sync::Arc;

use agentsec_common::tls::ClientTls;
use agentsec_proto::exchange::v1::exchange_service_client::ExchangeServiceClient;
use agentsec_proto::exchange::v1::{
    CreateGrantRequest, GetGrantRequest, Grant, ListGrantsRequest, RevokeGrantRequest,
};
use serde_json::{json, Value};

use crate::admin::{bearer, connect, failed, ServiceUrls};
use crate::output::{now, time, Column, OutputArgs};
use crate::page::{LimitArgs, Pager};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  export AGENTCTL_PERSON_TOKEN=\"$(agentctl token user --sub alice)\"
  agentctl grant create --agent-id agt_... --audience https://api.example.dev \\
    --scope issues:read --purpose 'triage my issues' --expires-in 3600
  agentctl grant list
  agentctl grant list --agent-id agt_... --all --output json
  agentctl grant revoke --grant-id grt_... --reason 'done'")]
pub struct GrantArgs {
    #[command(flatten)]
    urls: ServiceUrls,
    #[command(flatten)]
    output: OutputArgs,
    /// The person's token: every grant call is made as them.
    #[arg(
        long,
        env = "AGENTCTL_PERSON_TOKEN",
        global = true,
        hide_env_values = true
    )]
    person_token: Option<String>,
    #[command(subcommand)]
    command: GrantCommand,
}

#[derive(Debug, clap::Subcommand)]
enum GrantCommand {
    /// Let an agent act for the person; prints the grant.
    Create {
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
        /// Why, shown to people.
        #[arg(long)]
        purpose: String,
    },
    /// Print one grant.
    Get {
        #[arg(long)]
        grant_id: String,
    },
    /// List the person's grants, newest first (active ones unless --all).
    List {
        /// Only grants to this agent.
        #[arg(long, default_value = "")]
        agent_id: String,
        /// Expired and revoked grants too.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        limit: LimitArgs,
    },
    /// Revoke a grant: tokens issued under it stop working at once.
    Revoke {
        #[arg(long)]
        grant_id: String,
        /// Why; stored and audited.
        #[arg(long, default_value = "")]
        reason: String,
    },
}

const GRANT: [Column; 13] = [
    Column::new("ID", "id"),
    Column::new("TENANT", "tenant"),
    Column::new("PERSON", "person_subject"),
    Column::new("AGENT", "agent_id"),
    Column::new("AUDIENCES", "audiences"),
    Column::new("SCOPES", "scopes"),
    Column::new("MAX CHAIN DEPTH", "max_chain_depth"),
    Column::new("PURPOSE", "purpose"),
    Column::enumeration("STATUS", "status", "GRANT_STATUS_"),
    Column::new("CREATED", "create_time"),
    Column::new("EXPIRES", "expire_time"),
    Column::new("REVOKED", "revoke_time"),
    Column::new("REVOKE REASON", "revoke_reason"),
];

const GRANTS: [Column; 7] = [
    Column::new("ID", "id"),
    Column::new("AGENT", "agent_id"),
    Column::new("AUDIENCES", "audiences"),
    Column::new("SCOPES", "scopes"),
    Column::enumeration("STATUS", "status", "GRANT_STATUS_"),
    Column::new("EXPIRES", "expire_time"),
    Column::new("PURPOSE", "purpose"),
];

/// A grant as agentctl prints it in JSON (proto field names).
fn grant_json(grant: &Grant) -> Value {
    json!({
        "id": grant.id,
        "tenant": grant.tenant,
        "person_subject": grant.person_subject,
        "person_issuer": grant.person_issuer,
        "agent_id": grant.agent_id,
        "audiences": grant.audiences,
        "scopes": grant.scopes,
        "expire_time": time(grant.expire_time.as_ref()),
        "max_chain_depth": grant.max_chain_depth,
        "purpose": grant.purpose,
        "status": grant.status().as_str_name(),
        "create_time": time(grant.create_time.as_ref()),
        "revoke_time": time(grant.revoke_time.as_ref()),
        "revoked_by": grant.revoked_by,
        "revoke_reason": grant.revoke_reason,
    })
}

pub async fn run(args: GrantArgs, tls: &Arc<ClientTls>) -> anyhow::Result<()> {
    let Some(token) = args.person_token else {
        anyhow::bail!(
            "grant calls are made as a person: give their token with --person-token or \
             AGENTCTL_PERSON_TOKEN (on `agentctl dev`: agentctl token user --sub <person>)"
        );
    };
    let format = args.output.output;
    let mut client =
        ExchangeServiceClient::new(connect(&args.urls.exchange, "exchange-svc", tls).await?);
    let grant = match args.command {
        GrantCommand::Create {
            agent_id,
            audiences,
            scopes,
            expires_in,
            max_chain_depth,
            purpose,
        } => {
            let grant = Grant {
                agent_id,
                audiences,
                scopes,
                expire_time: Some(prost_types::Timestamp {
                    seconds: now()? + expires_in,
                    nanos: 0,
                }),
                max_chain_depth,
                purpose,
                ..Grant::default()
            };
            client
                .create_grant(bearer(CreateGrantRequest { grant: Some(grant) }, &token)?)
                .await
                .map_err(failed)?
                .into_inner()
                .grant
        }
        GrantCommand::Get { grant_id } => {
            client
                .get_grant(bearer(GetGrantRequest { grant_id }, &token)?)
                .await
                .map_err(failed)?
                .into_inner()
                .grant
        }
        GrantCommand::List {
            agent_id,
            all,
            limit,
        } => {
            let mut pager = Pager::new(&limit);
            let mut grants = Vec::new();
            while let Some(page) = pager.next_page() {
                let request = ListGrantsRequest {
                    person_subject: String::new(),
                    agent_id: agent_id.clone(),
                    include_inactive: all,
                    page: Some(page),
                };
                let response = client
                    .list_grants(bearer(request, &token)?)
                    .await
                    .map_err(failed)?
                    .into_inner();
                pager.take(&mut grants, response.grants, response.page);
            }
            let grants: Vec<Value> = grants.iter().map(grant_json).collect();
            let none = if all { "no grants" } else { "no active grants" };
            print!("{}", format.list(&grants, &GRANTS, none));
            return Ok(());
        }
        GrantCommand::Revoke { grant_id, reason } => {
            client
                .revoke_grant(bearer(RevokeGrantRequest { grant_id, reason }, &token)?)
                .await
                .map_err(failed)?
                .into_inner()
                .grant
        }
    };
    print!(
        "{}",
        format.one(&grant_json(&grant.unwrap_or_default()), &GRANT)
    );
    Ok(())
}
