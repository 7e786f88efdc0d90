//! `agentctl policy ...`: a tenant's policy sets at policy-svc, over its
//! admin gRPC API with an admin token. `apply` (alias `put`) stores a set
//! from a YAML or JSON file as a new version, `validate` and `test` try a
//! file without storing it, `list` shows the current set, `history` the
//! versions, `diff` what changed between two versions or what a file would
//! change, and `rollback` makes an earlier version's content current again.

mod cases;
mod diff;
mod document;
mod trial;
mod versions;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use agentsec_common::tls::ClientTls;
use agentsec_proto::policy::v1::policy_service_client::PolicyServiceClient;
use tonic::transport::Channel;

use crate::admin::{connect, failed, failed_then, AdminArgs, ServiceUrls};
use crate::output::{Format, OutputArgs};

const FORMAT_HELP: &str = "\
POLICY FILES hold one policy set, in YAML or JSON (told apart by the
extension .yaml, .yml or .json; `--file -` reads stdin and takes a text
opening with `{` as JSON): its `rules`, `role_assignments` and `attributes`
with the field names of docs/policy-model.md section 3 (snake_case, or the
lowerCamelCase of proto-JSON). Enum values are written short or as their
proto names: effect allow, deny (EFFECT_ALLOW, EFFECT_DENY); attribute
source agent, person, resource, context (ATTRIBUTE_SOURCE_AGENT, ...);
attribute type string, int, double, bool, string_list (ATTRIBUTE_TYPE_INT,
...). A file is refused here only for its shape (with the line and column);
what its rules say is checked by policy-svc: see `agentctl policy validate`.

  rules:
    - id: github-read
      effect: allow
      agent: role:bots
      audience: mcp:github
      resource: mcp:github/list_*
      actions: [tools/call]
      condition: agent.trust_tier >= 2
    - id: no-delete
      effect: deny
      resource: mcp:github/delete_*
      actions: [tools/call]
  role_assignments:
    - {member: \"agent:agt_...\", role: bots}
  attributes:
    - {source: agent, name: trust_tier, type: int}

The same set in JSON, with proto-JSON names:

  {\"rules\": [{\"id\": \"github-read\", \"effect\": \"EFFECT_ALLOW\", \"agent\": \"role:bots\",
              \"audience\": \"mcp:github\", \"resource\": \"mcp:github/list_*\",
              \"actions\": [\"tools/call\"], \"condition\": \"agent.trust_tier >= 2\"},
             {\"id\": \"no-delete\", \"effect\": \"EFFECT_DENY\",
              \"resource\": \"mcp:github/delete_*\", \"actions\": [\"tools/call\"]}],
   \"roleAssignments\": [{\"member\": \"agent:agt_...\", \"role\": \"bots\"}],
   \"attributes\": [{\"source\": \"ATTRIBUTE_SOURCE_AGENT\", \"name\": \"trust_tier\",
                   \"type\": \"ATTRIBUTE_TYPE_INT\"}]}

`agentctl policy list --tenant T -o json` prints a tenant's set in this form
(under `policy_set`).

Examples:
  agentctl policy validate --tenant acme --file policy.yaml
  agentctl policy test --tenant acme --file policy.yaml --cases cases.yaml
  agentctl policy diff --tenant acme --file policy.yaml
  agentctl policy apply --tenant acme --file policy.yaml --expected-version 3
  agentctl policy history --tenant acme
  agentctl policy diff --tenant acme --from 3 --to 4
  agentctl policy rollback --tenant acme --to 3
  agentctl policy list --tenant acme";

#[derive(Debug, clap::Args)]
#[command(after_help = FORMAT_HELP)]
pub struct PolicyArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(flatten)]
    urls: ServiceUrls,
    #[command(flatten)]
    output: OutputArgs,
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(Debug, clap::Subcommand)]
enum PolicyCommand {
    /// Store the file's policy set as the tenant's new current version;
    /// prints that version.
    #[command(
        visible_alias = "put",
        after_help = "The file's format is in `agentctl policy --help`.

Examples:
  agentctl policy apply --tenant acme --file policy.yaml
  agentctl policy apply --tenant acme --file policy.json --expected-version 3 \\
    --description 'allow list_* for bots'
  generate-policy | agentctl policy apply --tenant acme --file -"
    )]
    Apply(versions::Apply),
    /// Check the file's policy set without storing it: every finding with
    /// its rule, field and place; exits 1 when the set is invalid.
    #[command(
        after_help = "Each finding names the rule (POLICY), the field in the set
(`policy_set.rules[<i>].<field>`, rules counted from 0 in file order), and
for conditions the line and column within the condition.

Examples:
  agentctl policy validate --tenant acme --file policy.yaml
  agentctl policy validate --tenant acme --file policy.json -o json"
    )]
    Validate(trial::Validate),
    /// Decide fixture cases against the file's policy set (or a stored
    /// version) without storing or auditing anything; exits 1 when a case
    /// fails.
    #[command(
        after_help = "CASES FILES (YAML or JSON, as policy files) list the cases; each
request has the form `agentctl check --file` takes (see `agentctl check
--help`), its principal's tenant defaulting to --tenant:

  cases:
    - name: trusted bot lists issues
      request:
        principal: {agent_id: agt_..., agent_attributes: {trust_tier: 2}}
        audience: mcp:github
        action: tools/call
        resource: {type: mcp.tool, id: mcp:github/list_issues}
      expected_effect: allow                 # or EFFECT_ALLOW
      expected_policy_ids: [github-read]     # optional: exactly these decided
    - name: nobody deletes repositories
      request:
        principal: {agent_id: agt_...}
        audience: mcp:github
        action: tools/call
        resource: {type: mcp.tool, id: mcp:github/delete_repo}
      expected_effect: deny

(proto-JSON names work too: expectedEffect, expectedPolicyIds, agentId, ...)

Examples:
  agentctl policy test --tenant acme --file policy.yaml --cases cases.yaml
  agentctl policy test --tenant acme --cases cases.yaml              # the current version
  agentctl policy test --tenant acme --version 3 --cases cases.json -o json"
    )]
    Test(trial::Test),
    /// Print a tenant's current policy set (or an earlier version): its
    /// rules, role assignments and attribute declarations.
    #[command(
        after_help = "policy-svc has no call that lists tenants, so `list` shows the set of the
tenant given. With `-o json` it prints {\"version\": ..., \"policy_set\": ...},
the set in the policy file format.

Examples:
  agentctl policy list --tenant acme
  agentctl policy list --tenant acme --version 2
  agentctl policy list --tenant acme -o json | jq .policy_set > policy.json"
    )]
    List(versions::List),
    /// List a tenant's policy set versions, newest (the current) first:
    /// when, by whom, why, and a hash of the content.
    #[command(after_help = "Examples:
  agentctl policy history --tenant acme
  agentctl policy history --tenant acme --limit 5 -o json")]
    History(versions::History),
    /// Show which rules, role assignments and attribute declarations
    /// differ between two versions, or between a version and a file;
    /// exits 0 when they are the same, 1 when they differ, 2 on error.
    #[command(
        after_help = "Rules are matched by id: added, removed, or changed (with the fields that
changed, before -> after). With --file, the stored version (--from, default
the current one) is compared with the file: what applying the file would
change. The exit status is that of diff(1): 0 the same, 1 different,
2 trouble.

Examples:
  agentctl policy diff --tenant acme --from 3                # version 3 -> current
  agentctl policy diff --tenant acme --from 3 --to 5
  agentctl policy diff --tenant acme --file policy.yaml      # current -> file
  agentctl policy diff --tenant acme --file policy.yaml -o json"
    )]
    Diff(diff::Diff),
    /// Make an earlier version's content current again, as a new version
    /// (history is never rewritten); prints that version.
    #[command(after_help = "Examples:
  agentctl policy history --tenant acme
  agentctl policy rollback --tenant acme --to 3
  agentctl policy rollback --tenant acme --to 3 --expected-version 5 \\
    --description 'back out the delete rule'")]
    Rollback(versions::Rollback),
}

/// `n` and the noun, singular or plural as `n` says.
fn counted(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// An authenticated connection to policy-svc's admin API, and the form
/// answers are printed in.
struct Admin {
    client: PolicyServiceClient<Channel>,
    token: String,
    format: Format,
}

impl Admin {
    async fn connect(
        admin: &AdminArgs,
        urls: &ServiceUrls,
        format: Format,
        tls: &Arc<ClientTls>,
    ) -> anyhow::Result<Self> {
        let (_, token) = admin.connect_and_token(&urls.identity, tls).await?;
        let channel = connect(&urls.policy, "policy-svc", tls).await?;
        Ok(Self {
            client: PolicyServiceClient::new(channel),
            token,
            format,
        })
    }
}

/// Runs a policy subcommand. Its exit status is success, or for `diff`
/// the answer itself (see [`diff::exit_code`]); other failures are errors.
pub async fn run(args: PolicyArgs, tls: &Arc<ClientTls>) -> anyhow::Result<ExitCode> {
    let format = args.output.output;
    let admin = || Admin::connect(&args.admin, &args.urls, format, tls);
    match args.command {
        PolicyCommand::Apply(apply) => versions::apply(&mut admin().await?, apply).await?,
        PolicyCommand::Validate(validate) => trial::validate(&mut admin().await?, validate).await?,
        PolicyCommand::Test(test) => trial::test(&mut admin().await?, test).await?,
        PolicyCommand::List(list) => versions::list(&mut admin().await?, list).await?,
        PolicyCommand::History(history) => versions::history(&mut admin().await?, history).await?,
        PolicyCommand::Rollback(rollback) => {
            versions::rollback(&mut admin().await?, rollback).await?
        }
        PolicyCommand::Diff(diff) => {
            let compared = async { diff::run(&mut admin().await?, diff).await }.await;
            return Ok(diff::exit_code(compared));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What to do after policy-svc refused a change of `tenant`'s set.
fn change_refused(status: tonic::Status, tenant: &str, file: Option<&PathBuf>) -> anyhow::Error {
    match status.code() {
        tonic::Code::InvalidArgument => match file {
            Some(file) => failed_then(
                status,
                &format!(
                    "`agentctl policy validate --tenant {tenant} --file {}` lists every finding",
                    file.display()
                ),
            ),
            None => failed(status),
        },
        tonic::Code::FailedPrecondition => failed_then(
            status,
            &format!(
                "`agentctl policy diff --tenant {tenant} --from <the version you started from>` \
                 shows what changed since; then give the current version (`agentctl policy \
                 history --tenant {tenant}`) as --expected-version"
            ),
        ),
        tonic::Code::NotFound => version_not_found(status, tenant),
        _ => failed(status),
    }
}

fn version_not_found(status: tonic::Status, tenant: &str) -> anyhow::Error {
    failed_then(
        status,
        &format!(
            "`agentctl policy history --tenant {tenant}` lists the versions there are; a \
             tenant has none until `agentctl policy apply` stores its first"
        ),
    )
}
