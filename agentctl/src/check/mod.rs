//! `agentctl check` and `agentctl explain`: ask policy-svc for a decision
//! (Check, or CheckToken with `--token`, as ext_authz sees a request) or
//! for a decision with the evaluation of every candidate rule (Explain),
//! the question given by flags or a JSON file.

pub mod question;

use std::sync::Arc;

use agentsec_common::tls::ClientTls;
use agentsec_proto::common::v1::{Decision, Principal};
use agentsec_proto::policy::v1::policy_service_client::PolicyServiceClient;
use agentsec_proto::policy::v1::{
    CheckRequest, CheckTokenRequest, ExplainRequest, ExplainResponse, RuleEvaluation,
};
use serde_json::{json, Value};
use tonic::transport::Channel;

use crate::admin::{bearer, connect, failed, AdminArgs, ServiceUrls};
use crate::output::{cell, enum_name, Column, Format, OutputArgs};
use question::{attribute_json, QuestionArgs};

const QUESTION_HELP: &str = "The question, from flags:
  agentctl check --tenant payments --agent agt_... --person alice \\
    --audience mcp:github --action tools/call \\
    --resource-type mcp.tool --resource mcp:github/list_issues \\
    --agent-attribute trust_tier=2 --environment prod

or from a JSON file (--file question.json), proto field names (snake_case
or lowerCamelCase), attributes as plain JSON values or proto-JSON
AttributeValues:
  {\"principal\": {\"tenant\": \"payments\", \"agent_id\": \"agt_...\",
                 \"person_subject\": \"alice\",
                 \"agent_attributes\": {\"trust_tier\": 2},
                 \"actor_chain\": [\"agt_...\", \"agt_..\"]},
   \"audience\": \"mcp:github\", \"action\": \"tools/call\",
   \"resource\": {\"type\": \"mcp.tool\", \"id\": \"mcp:github/list_issues\"},
   \"context\": {\"time\": \"2026-01-05T09:00:00Z\", \"environment\": \"prod\",
               \"risk_score\": 10, \"attributes\": {\"source_ip\": \"10.0.0.1\"}}}

VALUES of --*-attribute key=value: true/false a boolean, 12 an integer,
0.5 a double, [a,b] a list of strings, \"12\" (quoted) or anything else a
string.";

#[derive(Debug, clap::Args)]
#[command(after_help = format!("{QUESTION_HELP}

With --token the principal is the token's (as ext_authz and CheckToken see
it; give no --tenant/--agent/--person then):
  agentctl check --token \"$TOKEN\" --audience mcp:github --action tools/call \\
    --resource-type mcp.tool --resource mcp:github/list_issues
  agentctl check --token - ...   (the token on stdin)

A deny is an answer, not an error: the exit status is 0 for both."))]
pub struct CheckArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(flatten)]
    urls: ServiceUrls,
    #[command(flatten)]
    output: OutputArgs,
    /// Decide for the bearer of this token (`-` reads it from stdin).
    #[arg(long)]
    token: Option<String>,
    #[command(flatten)]
    question: QuestionArgs,
}

#[derive(Debug, clap::Args)]
#[command(after_help = QUESTION_HELP)]
pub struct ExplainArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(flatten)]
    urls: ServiceUrls,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    question: QuestionArgs,
}

const DECISION: [Column; 7] = [
    Column::enumeration("DECISION", "effect", "EFFECT_"),
    Column::new("REASON", "reason"),
    Column::new("POLICIES", "policy_ids"),
    Column::new("POLICY VERSION", "policy_version"),
    Column::new("DECISION ID", "decision_id"),
    Column::new("CACHED", "cached"),
    Column::new("EVALUATION ERROR", "evaluation_error"),
];

const TOKEN_DECISION: [Column; 10] = [
    DECISION[0],
    DECISION[1],
    DECISION[2],
    DECISION[3],
    DECISION[4],
    Column::drawn("TENANT", |value| principal_part(value, "tenant")),
    Column::drawn("AGENT", |value| principal_part(value, "agent_id")),
    Column::drawn("PERSON", |value| principal_part(value, "person_subject")),
    Column::drawn("ACTOR CHAIN", |value| {
        value["principal"]["actor_chain"]
            .as_array()
            .filter(|chain| !chain.is_empty())
            .map_or("-".to_owned(), |chain| {
                chain
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" <- ")
            })
    }),
    Column::drawn("AGENT ATTRIBUTES", |value| {
        cell(&value["principal"]["agent_attributes"])
    }),
];

const EXPLAIN: [Column; 4] = [
    DECISION[0],
    DECISION[1],
    Column::new("AGENT ROLES", "agent_roles"),
    Column::new("PERSON ROLES", "person_roles"),
];

const EVALUATIONS: [Column; 9] = [
    Column::new("POLICY", "policy_id"),
    Column::enumeration("EFFECT", "effect", "EFFECT_"),
    Column::new("MATCHED", "matched"),
    Column::new("AGENT", "agent_matched"),
    Column::new("PERSON", "person_matched"),
    Column::new("AUDIENCE", "audience_matched"),
    Column::new("RESOURCE", "resource_matched"),
    Column::new("ACTION", "action_matched"),
    Column::drawn("CONDITION", |evaluation| {
        let result = enum_name(
            evaluation["condition_result"].as_str().unwrap_or_default(),
            "CONDITION_RESULT_",
        );
        match evaluation["condition_detail"].as_str() {
            Some(detail) if !detail.is_empty() => format!("{result}: {detail}"),
            _ => result,
        }
    }),
];

fn principal_part(value: &Value, key: &str) -> String {
    match value["principal"][key].as_str() {
        Some(text) if !text.is_empty() => text.to_owned(),
        _ => "-".to_owned(),
    }
}

/// A decision as agentctl prints it in JSON (proto field names).
fn decision_json(decision: &Decision) -> Value {
    json!({
        "effect": decision.effect().as_str_name(),
        "reason": decision.reason,
        "policy_ids": decision.policy_ids,
        "policy_version": decision.policy_version,
        "decision_id": decision.decision_id,
        "cached": decision.cached,
        "cache_ttl": decision.cache_ttl.map(|ttl| format!("{}s", ttl.seconds)),
        "evaluation_error": decision.evaluation_error,
    })
}

fn principal_json(principal: &Principal) -> Value {
    let attributes = |map: &std::collections::HashMap<_, _>| -> Value {
        map.iter()
            .map(|(key, value): (&String, _)| (key.clone(), attribute_json(value)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    json!({
        "tenant": principal.tenant,
        "agent_id": principal.agent_id,
        "agent_attributes": attributes(&principal.agent_attributes),
        "person_subject": principal.person_subject,
        "person_attributes": attributes(&principal.person_attributes),
        "actor_chain": principal.actor_chain.as_ref().map_or_else(Vec::new, |chain| {
            chain.actors.iter().map(|actor| actor.agent_id.clone()).collect()
        }),
    })
}

fn evaluation_json(evaluation: &RuleEvaluation) -> Value {
    json!({
        "policy_id": evaluation.policy_id,
        "effect": evaluation.effect().as_str_name(),
        "matched": evaluation.matched,
        "agent_matched": evaluation.agent_matched,
        "person_matched": evaluation.person_matched,
        "audience_matched": evaluation.audience_matched,
        "resource_matched": evaluation.resource_matched,
        "action_matched": evaluation.action_matched,
        "condition_result": evaluation.condition_result().as_str_name(),
        "condition_detail": evaluation.condition_detail,
    })
}

fn explanation_json(explained: &ExplainResponse) -> Value {
    let mut value = decision_json(&explained.decision.clone().unwrap_or_default());
    value["agent_roles"] = json!(explained.agent_roles);
    value["person_roles"] = json!(explained.person_roles);
    value["total_rules"] = json!(explained.total_rules);
    value["evaluations"] = explained.evaluations.iter().map(evaluation_json).collect();
    value
}

/// policy-svc with a token that may ask: an admin token is a decision
/// caller by default, and the only one Explain takes.
async fn policy_client(
    admin: &AdminArgs,
    urls: &ServiceUrls,
    tls: &Arc<ClientTls>,
) -> anyhow::Result<(PolicyServiceClient<Channel>, String)> {
    let (_, token) = admin.connect_and_token(&urls.identity, tls).await?;
    let client = PolicyServiceClient::new(connect(&urls.policy, "policy-svc", tls).await?);
    Ok((client, token))
}

pub async fn check(args: CheckArgs, tls: &Arc<ClientTls>) -> anyhow::Result<()> {
    let format = args.output.output;
    let token = args
        .token
        .map(|token| crate::token::token_argument(token, "--token"))
        .transpose()?;
    let question = args.question.question(token.is_none())?;
    let (mut client, caller) = policy_client(&args.admin, &args.urls, tls).await?;
    let printed = match token {
        None => {
            let request = CheckRequest {
                principal: question.principal,
                audience: question.audience,
                action: question.action,
                resource: Some(question.resource),
                context: question.context,
            };
            let decision = client
                .check(bearer(request, &caller)?)
                .await
                .map_err(failed)?
                .into_inner()
                .decision
                .unwrap_or_default();
            format.one(&decision_json(&decision), &DECISION)
        }
        Some(token) => {
            let request = CheckTokenRequest {
                token,
                audience: question.audience,
                action: question.action,
                resource: Some(question.resource),
                context: question.context,
            };
            let answer = client
                .check_token(bearer(request, &caller)?)
                .await
                .map_err(failed)?
                .into_inner();
            let mut value = decision_json(&answer.decision.unwrap_or_default());
            value["principal"] = principal_json(&answer.principal.unwrap_or_default());
            format.one(&value, &TOKEN_DECISION)
        }
    };
    print!("{printed}");
    Ok(())
}

pub async fn explain(args: ExplainArgs, tls: &Arc<ClientTls>) -> anyhow::Result<()> {
    let format = args.output.output;
    let question = args.question.question(true)?;
    let (mut client, caller) = policy_client(&args.admin, &args.urls, tls).await?;
    let request = ExplainRequest {
        principal: question.principal,
        audience: question.audience,
        action: question.action,
        resource: Some(question.resource),
        context: question.context,
    };
    let explained = client
        .explain(bearer(request, &caller)?)
        .await
        .map_err(failed)?
        .into_inner();
    let value = explanation_json(&explained);
    match format {
        Format::Json => print!("{}", format.one(&value, &EXPLAIN)),
        Format::Table => {
            print!("{}", format.one(&value, &EXPLAIN));
            println!(
                "\n{} of {} rules considered:",
                explained.evaluations.len(),
                explained.total_rules
            );
            let evaluations = value["evaluations"].as_array().cloned().unwrap_or_default();
            print!(
                "{}",
                format.list(&evaluations, &EVALUATIONS, "(no rule is a candidate)")
            );
        }
    }
    Ok(())
}
