//! `agentctl policy ...`: a tenant's policy sets at policy-svc, over its
//! admin gRPC API with an admin token. `apply` (alias `put`) stores a set
//! from a YAML or JSON file as a new version, `validate` and `test` try a
//! file without storing it, `list` shows the current set, `history` the
//! versions, `diff` what changed between two versions or what a file would
//! change, and `rollback` makes an earlier version's content current again.

mod cases;
mod diff;
mod document;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use agentsec_common::tls::ClientTls;
use agentsec_proto::common::v1::Decision;
use agentsec_proto::policy::v1::policy_service_client::PolicyServiceClient;
use agentsec_proto::policy::v1::{
    test_policy_set_request, GetPolicySetRequest, ListPolicyVersionsRequest, PolicySetVersion,
    PutPolicySetRequest, RollbackPolicySetRequest, TestCaseResult, TestPolicySetRequest,
    ValidatePolicySetRequest, ValidationError,
};
use serde_json::{json, Value};
use tonic::transport::Channel;

use crate::admin::{bearer, connect, failed, failed_then, AdminArgs, ServiceUrls};
use crate::output::{enum_name, time, Column, Format, OutputArgs};
use crate::page::{LimitArgs, Pager};
use document::{assignment_json, attribute_json, policy_set_json, rule_json, Input};

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
    Apply(Apply),
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
    Validate(Validate),
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
    Test(Test),
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
    List(List),
    /// List a tenant's policy set versions, newest (the current) first:
    /// when, by whom, why, and a hash of the content.
    #[command(after_help = "Examples:
  agentctl policy history --tenant acme
  agentctl policy history --tenant acme --limit 5 -o json")]
    History(History),
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
    Diff(Diff),
    /// Make an earlier version's content current again, as a new version
    /// (history is never rewritten); prints that version.
    #[command(after_help = "Examples:
  agentctl policy history --tenant acme
  agentctl policy rollback --tenant acme --to 3
  agentctl policy rollback --tenant acme --to 3 --expected-version 5 \\
    --description 'back out the delete rule'")]
    Rollback(Rollback),
}

#[derive(Debug, clap::Args)]
struct Apply {
    /// The tenant whose policy set is replaced (a new tenant gets version 1).
    #[arg(long)]
    tenant: String,
    /// The policy file (YAML or JSON; `-` for stdin).
    #[arg(long)]
    file: PathBuf,
    /// Store only if this is the current version (0: the tenant has none
    /// yet); refused otherwise.
    #[arg(long)]
    expected_version: Option<u64>,
    /// Why, recorded with the version.
    #[arg(long, default_value = "agentctl policy apply")]
    description: String,
}

#[derive(Debug, clap::Args)]
struct Validate {
    /// The tenant the set is meant for (it need not exist yet).
    #[arg(long)]
    tenant: String,
    /// The policy file (YAML or JSON; `-` for stdin).
    #[arg(long)]
    file: PathBuf,
}

#[derive(Debug, clap::Args)]
struct Test {
    /// The tenant whose policy is tested.
    #[arg(long)]
    tenant: String,
    /// The policy file to test (YAML or JSON; `-` for stdin).
    #[arg(long)]
    file: Option<PathBuf>,
    /// Test this stored version instead of a file (0: the current one).
    #[arg(long, conflicts_with = "file", default_value_t = 0)]
    version: u64,
    /// The cases file (YAML or JSON; `-` for stdin).
    #[arg(long)]
    cases: PathBuf,
}

#[derive(Debug, clap::Args)]
struct List {
    /// The tenant.
    #[arg(long)]
    tenant: String,
    /// This version instead of the current one.
    #[arg(long, default_value_t = 0)]
    version: u64,
}

#[derive(Debug, clap::Args)]
struct History {
    /// The tenant.
    #[arg(long)]
    tenant: String,
    #[command(flatten)]
    limit: LimitArgs,
}

#[derive(Debug, clap::Args)]
struct Diff {
    /// The tenant.
    #[arg(long)]
    tenant: String,
    /// The older side: a stored version (with --file, default the
    /// current one).
    #[arg(long, required_unless_present = "file")]
    from: Option<u64>,
    /// The newer side: a stored version (default the current one).
    #[arg(long, conflicts_with = "file")]
    to: Option<u64>,
    /// The newer side: a policy file (YAML or JSON; `-` for stdin).
    #[arg(long)]
    file: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct Rollback {
    /// The tenant.
    #[arg(long)]
    tenant: String,
    /// The version whose content becomes current again.
    #[arg(long)]
    to: u64,
    /// Roll back only if this is the current version; refused otherwise.
    #[arg(long)]
    expected_version: Option<u64>,
    /// Why, recorded with the new version.
    #[arg(long, default_value = "agentctl policy rollback")]
    description: String,
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
        PolicyCommand::Apply(apply) => run_apply(&mut admin().await?, apply).await?,
        PolicyCommand::Validate(validate) => run_validate(&mut admin().await?, validate).await?,
        PolicyCommand::Test(test) => run_test(&mut admin().await?, test).await?,
        PolicyCommand::List(list) => run_list(&mut admin().await?, list).await?,
        PolicyCommand::History(history) => run_history(&mut admin().await?, history).await?,
        PolicyCommand::Rollback(rollback) => run_rollback(&mut admin().await?, rollback).await?,
        PolicyCommand::Diff(diff) => {
            let compared = async { diff::run(&mut admin().await?, diff).await }.await;
            return Ok(diff::exit_code(compared));
        }
    }
    Ok(ExitCode::SUCCESS)
}

const VERSION: [Column; 9] = [
    Column::new("TENANT", "tenant"),
    Column::new("VERSION", "version"),
    Column::new("CREATED", "create_time"),
    Column::new("AUTHOR", "author"),
    Column::new("DESCRIPTION", "description"),
    Column::drawn("ROLLED BACK FROM", |version| {
        match version["rolled_back_from"].as_u64() {
            Some(restored) if restored > 0 => restored.to_string(),
            _ => "-".to_owned(),
        }
    }),
    Column::new("RULES", "rule_count"),
    Column::new("ROLE ASSIGNMENTS", "role_assignment_count"),
    Column::new("SHA256", "content_sha256"),
];

const HISTORY: [Column; 6] = [
    Column::new("VERSION", "version"),
    Column::new("CREATED", "create_time"),
    Column::new("AUTHOR", "author"),
    Column::new("RULES", "rule_count"),
    Column::drawn("SHA256", |version| {
        version["content_sha256"]
            .as_str()
            .map_or("-".to_owned(), |sha| sha.chars().take(12).collect())
    }),
    Column::drawn("DESCRIPTION", |version| {
        let description = crate::output::cell(&version["description"]);
        match version["rolled_back_from"].as_u64() {
            Some(restored) if restored > 0 => format!("{description} (content of {restored})"),
            _ => description,
        }
    }),
];

/// A version's metadata as agentctl prints it in JSON (proto field names).
fn version_json(version: &PolicySetVersion) -> Value {
    json!({
        "tenant": version.tenant,
        "version": version.version,
        "create_time": time(version.create_time.as_ref()),
        "author": version.author,
        "description": version.description,
        "rolled_back_from": version.rolled_back_from,
        "rule_count": version.rule_count,
        "role_assignment_count": version.role_assignment_count,
        "content_sha256": version.content_sha256,
    })
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

async fn run_apply(admin: &mut Admin, apply: Apply) -> anyhow::Result<()> {
    let set = Input::read(&apply.file)?.policy_set()?;
    let version = admin
        .client
        .put_policy_set(bearer(
            PutPolicySetRequest {
                tenant: apply.tenant.clone(),
                policy_set: Some(set),
                expected_version: apply.expected_version,
                description: apply.description,
            },
            &admin.token,
        )?)
        .await
        .map_err(|status| change_refused(status, &apply.tenant, Some(&apply.file)))?
        .into_inner()
        .version
        .unwrap_or_default();
    print!("{}", admin.format.one(&version_json(&version), &VERSION));
    Ok(())
}

const FINDINGS: [Column; 4] = [
    Column::new("POLICY", "policy_id"),
    Column::new("FIELD", "field"),
    Column::drawn("AT", |finding| {
        match (finding["line"].as_u64(), finding["column"].as_u64()) {
            (Some(line), Some(column)) if line > 0 => format!("{line}:{column}"),
            _ => "-".to_owned(),
        }
    }),
    Column::new("MESSAGE", "message"),
];

fn finding_json(finding: &ValidationError) -> Value {
    json!({
        "policy_id": finding.policy_id,
        "field": finding.field,
        "line": finding.line,
        "column": finding.column,
        "message": finding.message,
    })
}

async fn run_validate(admin: &mut Admin, validate: Validate) -> anyhow::Result<()> {
    let input = Input::read(&validate.file)?;
    let set = input.policy_set()?;
    let (rules, assignments) = (set.rules.len(), set.role_assignments.len());
    let answer = admin
        .client
        .validate_policy_set(bearer(
            ValidatePolicySetRequest {
                tenant: validate.tenant.clone(),
                policy_set: Some(set),
            },
            &admin.token,
        )?)
        .await
        .map_err(failed)?
        .into_inner();
    let findings: Vec<Value> = answer.errors.iter().map(finding_json).collect();
    match admin.format {
        Format::Json => print!(
            "{}",
            Format::Json.one(
                &json!({
                    "valid": answer.valid,
                    "error_count": answer.error_count,
                    "errors": findings,
                }),
                &[]
            )
        ),
        Format::Table if answer.valid => println!(
            "{}: valid ({}, {})",
            input.name(),
            counted(rules, "rule", "rules"),
            counted(assignments, "role assignment", "role assignments"),
        ),
        Format::Table => print!("{}", Format::Table.list(&findings, &FINDINGS, "")),
    }
    anyhow::ensure!(
        answer.valid,
        "{} is not valid: {}{}; fix the rules named and validate again",
        input.name(),
        counted(answer.error_count as usize, "finding", "findings"),
        if answer.error_count as usize > findings.len() {
            format!(" ({} listed)", findings.len())
        } else {
            String::new()
        }
    );
    Ok(())
}

const RESULTS: [Column; 5] = [
    Column::new("CASE", "name"),
    Column::enumeration("EXPECTED", "expected_effect", "EFFECT_"),
    Column::drawn("GOT", |result| {
        let effect = enum_name(
            result["actual"]["effect"].as_str().unwrap_or_default(),
            "EFFECT_",
        );
        match result["actual"]["policy_ids"].as_array() {
            Some(ids) if !ids.is_empty() => {
                format!(
                    "{effect} ({})",
                    crate::output::cell(&result["actual"]["policy_ids"])
                )
            }
            _ => effect,
        }
    }),
    Column::drawn("PASS", |result| {
        if result["passed"].as_bool() == Some(true) {
            "pass".to_owned()
        } else {
            "FAIL".to_owned()
        }
    }),
    Column::new("WHY", "message"),
];

fn result_json(result: &TestCaseResult, expected: &agentsec_proto::policy::v1::TestCase) -> Value {
    let decision = |decision: &Decision| {
        json!({
            "effect": decision.effect().as_str_name(),
            "reason": decision.reason,
            "policy_ids": decision.policy_ids,
            "policy_version": decision.policy_version,
            "evaluation_error": decision.evaluation_error,
        })
    };
    json!({
        "name": result.name,
        "passed": result.passed,
        "expected_effect": expected.expected_effect().as_str_name(),
        "expected_policy_ids": expected.expected_policy_ids,
        "actual": result.actual.as_ref().map(decision),
        "message": result.message,
    })
}

async fn run_test(admin: &mut Admin, test: Test) -> anyhow::Result<()> {
    anyhow::ensure!(
        !(test.cases.as_os_str() == "-"
            && test.file.as_ref().is_some_and(|f| f.as_os_str() == "-")),
        "only one of --file and --cases can be read from stdin"
    );
    let target = match &test.file {
        Some(file) => test_policy_set_request::Target::PolicySet(Input::read(file)?.policy_set()?),
        None => test_policy_set_request::Target::Version(test.version),
    };
    let cases_input = Input::read(&test.cases)?;
    let cases = cases::test_cases(&cases_input, &test.tenant)?;
    let answer = admin
        .client
        .test_policy_set(bearer(
            TestPolicySetRequest {
                tenant: test.tenant.clone(),
                target: Some(target),
                cases: cases.clone(),
            },
            &admin.token,
        )?)
        .await
        .map_err(|status| match status.code() {
            tonic::Code::NotFound => version_not_found(status, &test.tenant),
            tonic::Code::InvalidArgument => failed_then(
                status,
                &format!(
                    "`cases[<i>]` are the cases of {} counted from 0; a policy file is checked \
                     by `agentctl policy validate`",
                    cases_input.name()
                ),
            ),
            _ => failed(status),
        })?
        .into_inner();
    let results: Vec<Value> = answer
        .results
        .iter()
        .zip(&cases)
        .map(|(result, case)| result_json(result, case))
        .collect();
    match admin.format {
        Format::Json => print!(
            "{}",
            Format::Json.one(
                &json!({
                    "passed_count": answer.passed_count,
                    "failed_count": answer.failed_count,
                    "results": results,
                }),
                &[]
            )
        ),
        Format::Table => print!(
            "{}",
            Format::Table.list(&results, &RESULTS, "no cases in the file")
        ),
    }
    anyhow::ensure!(
        answer.failed_count == 0,
        "{} of {} failed (FAIL in the table, with why)",
        answer.failed_count,
        counted(answer.results.len(), "case", "cases"),
    );
    Ok(())
}

const RULES: [Column; 8] = [
    Column::new("ID", "id"),
    Column::enumeration("EFFECT", "effect", "EFFECT_"),
    Column::new("AGENT", "agent"),
    Column::new("PERSON", "person"),
    Column::new("AUDIENCE", "audience"),
    Column::new("RESOURCE", "resource"),
    Column::new("ACTIONS", "actions"),
    Column::drawn("CONDITION", |rule| {
        diff::one_line(&crate::output::cell(&rule["condition"]))
    }),
];

const ASSIGNMENTS: [Column; 2] = [Column::new("MEMBER", "member"), Column::new("ROLE", "role")];

const ATTRIBUTES: [Column; 4] = [
    Column::enumeration("SOURCE", "source", "ATTRIBUTE_SOURCE_"),
    Column::new("NAME", "name"),
    Column::enumeration("TYPE", "type", "ATTRIBUTE_TYPE_"),
    Column::new("DESCRIPTION", "description"),
];

async fn run_list(admin: &mut Admin, list: List) -> anyhow::Result<()> {
    let answer = admin
        .client
        .get_policy_set(bearer(
            GetPolicySetRequest {
                tenant: list.tenant.clone(),
                version: list.version,
            },
            &admin.token,
        )?)
        .await
        .map_err(|status| version_not_found(status, &list.tenant))?
        .into_inner();
    let version = answer.version.unwrap_or_default();
    let set = answer.policy_set.unwrap_or_default();
    if admin.format == Format::Json {
        print!(
            "{}",
            Format::Json.one(
                &json!({"version": version_json(&version), "policy_set": policy_set_json(&set)}),
                &[]
            )
        );
        return Ok(());
    }
    println!(
        "{} version {} ({}, {}): {}, {}, {}\n",
        version.tenant,
        version.version,
        crate::output::cell(&time(version.create_time.as_ref())),
        crate::output::cell(&Value::from(version.author.as_str())),
        counted(set.rules.len(), "rule", "rules"),
        counted(
            set.role_assignments.len(),
            "role assignment",
            "role assignments"
        ),
        counted(
            set.attributes.len(),
            "attribute declaration",
            "attribute declarations"
        ),
    );
    let rules: Vec<Value> = set.rules.iter().map(rule_json).collect();
    print!("{}", Format::Table.list(&rules, &RULES, "no rules"));
    if !set.role_assignments.is_empty() {
        let assignments: Vec<Value> = set.role_assignments.iter().map(assignment_json).collect();
        print!("\n{}", Format::Table.list(&assignments, &ASSIGNMENTS, ""));
    }
    if !set.attributes.is_empty() {
        let attributes: Vec<Value> = set.attributes.iter().map(attribute_json).collect();
        print!("\n{}", Format::Table.list(&attributes, &ATTRIBUTES, ""));
    }
    Ok(())
}

async fn run_history(admin: &mut Admin, history: History) -> anyhow::Result<()> {
    let mut pager = Pager::new(&history.limit);
    let mut versions = Vec::new();
    while let Some(page) = pager.next_page() {
        let answer = admin
            .client
            .list_policy_versions(bearer(
                ListPolicyVersionsRequest {
                    tenant: history.tenant.clone(),
                    page: Some(page),
                },
                &admin.token,
            )?)
            .await
            .map_err(failed)?
            .into_inner();
        pager.take(&mut versions, answer.versions, answer.page);
    }
    let versions: Vec<Value> = versions.iter().map(version_json).collect();
    let none = format!(
        "tenant {} has no policy set versions: `agentctl policy apply` stores the first",
        history.tenant
    );
    print!("{}", admin.format.list(&versions, &HISTORY, &none));
    Ok(())
}

async fn run_rollback(admin: &mut Admin, rollback: Rollback) -> anyhow::Result<()> {
    let version = admin
        .client
        .rollback_policy_set(bearer(
            RollbackPolicySetRequest {
                tenant: rollback.tenant.clone(),
                to_version: rollback.to,
                expected_version: rollback.expected_version,
                description: rollback.description,
            },
            &admin.token,
        )?)
        .await
        .map_err(|status| change_refused(status, &rollback.tenant, None))?
        .into_inner()
        .version
        .unwrap_or_default();
    print!("{}", admin.format.one(&version_json(&version), &VERSION));
    Ok(())
}
