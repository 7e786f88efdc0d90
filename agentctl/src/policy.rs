//! `agentctl policy put`: replace a tenant's policy set with the rules and
//! role assignments of a JSON file (a new version; admin token).
//!
//! The file:
//! ```json
//! {"rules": [{"id": "exchange", "effect": "allow", "agent": "*",
//!             "resource": "audience:*", "actions": ["token:exchange"],
//!             "description": "@match-all"}],
//!  "role_assignments": [{"member": "agent:agt_...", "role": "bots"}]}
//! ```
//! Rule fields as in docs/policy-model.md (`person`, `audience`,
//! `condition` optional). Attribute declarations are not read from the
//! file.

use std::sync::Arc;

use agentsec_common::tls::ClientTls;
use std::path::PathBuf;

use agentsec_proto::common::v1::Effect;
use agentsec_proto::policy::v1::policy_service_client::PolicyServiceClient;
use agentsec_proto::policy::v1::{PolicyRule, PolicySet, PutPolicySetRequest, RoleAssignment};
use anyhow::Context as _;
use serde::Deserialize;

use crate::admin::{bearer, connect, failed, AdminArgs, ServiceUrls};

#[derive(Debug, clap::Args)]
pub struct PolicyArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(flatten)]
    urls: ServiceUrls,
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(Debug, clap::Subcommand)]
enum PolicyCommand {
    /// Replace the tenant's policy set with the file's; prints the new
    /// version as JSON.
    Put {
        #[arg(long)]
        tenant: String,
        /// The JSON file (see `agentctl policy --help`).
        #[arg(long)]
        file: PathBuf,
        /// Why, recorded with the version.
        #[arg(long, default_value = "agentctl policy put")]
        description: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    rules: Vec<Rule>,
    #[serde(default)]
    role_assignments: Vec<Assignment>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    id: String,
    effect: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    agent: String,
    #[serde(default)]
    person: String,
    #[serde(default)]
    audience: String,
    resource: String,
    actions: Vec<String>,
    #[serde(default)]
    condition: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Assignment {
    member: String,
    role: String,
}

fn policy_set(file: File) -> anyhow::Result<PolicySet> {
    let rules = file
        .rules
        .into_iter()
        .enumerate()
        .map(|(index, rule)| {
            let effect = match rule.effect.as_str() {
                "allow" => Effect::Allow,
                "deny" => Effect::Deny,
                other => anyhow::bail!("rules[{index}].effect: `{other}` is not allow or deny"),
            };
            Ok(PolicyRule {
                id: rule.id,
                description: rule.description,
                effect: effect as i32,
                agent: rule.agent,
                person: rule.person,
                audience: rule.audience,
                resource: rule.resource,
                actions: rule.actions,
                condition: rule.condition,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(PolicySet {
        rules,
        role_assignments: file
            .role_assignments
            .into_iter()
            .map(|assignment| RoleAssignment {
                member: assignment.member,
                role: assignment.role,
            })
            .collect(),
        attributes: Vec::new(),
    })
}

pub async fn run(args: PolicyArgs, tls: &Arc<ClientTls>) -> anyhow::Result<()> {
    match args.command {
        PolicyCommand::Put {
            tenant,
            file,
            description,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let parsed: File = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a policy file", file.display()))?;
            let set = policy_set(parsed)?;
            let (_, token) = args
                .admin
                .connect_and_token(&args.urls.identity, tls)
                .await?;
            let mut client =
                PolicyServiceClient::new(connect(&args.urls.policy, "policy-svc", tls).await?);
            let version = client
                .put_policy_set(bearer(
                    PutPolicySetRequest {
                        tenant,
                        policy_set: Some(set),
                        expected_version: None,
                        description,
                    },
                    &token,
                )?)
                .await
                .map_err(failed)?
                .into_inner()
                .version
                .unwrap_or_default();
            println!(
                "{}",
                serde_json::json!({
                    "tenant": version.tenant,
                    "version": version.version,
                    "rule_count": version.rule_count,
                    "content_sha256": version.content_sha256,
                })
            );
            Ok(())
        }
    }
}
