//! The story AgentSec exists for, told against a running stack: an agent
//! gets its identity by workload identity federation, a person delegates
//! to it, it exchanges the person's token for a delegated one, policy
//! decides its tool calls at an Envoy ext_authz gateway, it hands work on
//! to another agent, the person revokes the grant, and the audit trail of
//! all of it is found by trace id and its hash chain verified. Each step
//! checks its answer against the one the story expects. Each chapter is a
//! module (`identity`, `delegation`, `exchange`, `gateway`, `chain`,
//! `revocation`, `audit`); this one holds the setting, the order of the
//! chapters and what they share.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentsec_common::keys::SigningKey;
use agentsec_common::tls::ClientTls;
use agentsec_proto::audit::v1::{
    Event, EventFilter, Order, QueryEventsRequest, StoredEvent, VerifyChainRequest,
};
use agentsec_proto::common::v1::{Effect, Outcome, PageRequest};
use agentsec_proto::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use agentsec_proto::envoy::service::auth::v3::check_response::HttpResponse;
use agentsec_proto::envoy::service::auth::v3::{AttributeContext, CheckRequest, CheckResponse};
use agentsec_proto::exchange::v1::{
    CreateGrantRequest, ExchangeRequest, ExchangeResponse, Grant, GrantStatus, RevokeGrantRequest,
};
use agentsec_proto::identity::v1::federated_credential_info::SubjectMatch;
use agentsec_proto::identity::v1::{
    AddFederatedCredentialRequest, Agent, AgentStatus, Ceiling, CreateClientSecretRequest,
    FederatedCredentialInfo, GrantType, IssueTokenRequest, RegisterAgentRequest,
};
use agentsec_proto::policy::v1::{
    AttributeDefinition, AttributeSource, AttributeType, PolicyRule, PolicySet, PutPolicySetRequest,
};
use anyhow::Context as _;
use serde_json::{json, Value};

use super::calls::{Calls, Endpoints};
use super::transcript::{Step, Transcript};
use super::workload::{WorkloadIssuer, WORKLOAD_AUDIENCE, WORKLOAD_ISSUER};
use crate::admin::{client_credentials, failed, status_text};
use crate::dev_users::{self, PersonClaims};

mod audit;
mod chain;
mod delegation;
mod exchange;
mod gateway;
mod identity;
mod revocation;

use gateway::*;

/// The tenant of the story on a stack of its own; on a running stack, a
/// run id follows it (`payments-3f9a0c`), so that runs do not meet.
pub const TENANT: &str = "payments";
pub const ALICE: &str = "alice";
pub const TRIAGE: &str = "triage-bot";
pub const SUMMARIZER: &str = "summarizer-bot";
pub const REPORTER: &str = "reporter-bot";
/// The Envoy gateway in front of the MCP servers, as policy-svc's caller.
pub const GATEWAY: &str = "mcp-gateway";
/// The target system of the story: a GitHub MCP server behind Envoy.
pub const MCP_GITHUB: &str = "mcp:github";
/// Another MCP server behind the same gateway.
pub const MCP_JIRA: &str = "mcp:jira";

const TRIAGE_SCOPES: &[&str] = &["issues:read", "issues:write", "repo:admin"];
const GRANTED_SCOPES: &[&str] = &["issues:read", "issues:write"];
const READ_SCOPE: &str = "issues:read";
/// How long alice's grant and her token last.
const ONE_HOUR: i64 = 3_600;
/// The deepest chain alice's grant allows (triage-bot, then one more).
const GRANT_DEPTH: u32 = 2;

const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// The host Envoy fronts the MCP servers on.
const GATEWAY_HOST: &str = "mcp-gateway.payments.internal";
/// How long an audit event may take to reach audit-svc.
const AUDIT_DEADLINE: Duration = Duration::from_secs(10);
/// How long a revocation may take to reach policy-svc and still count as
/// "at once".
const REVOCATION_DEADLINE: Duration = Duration::from_secs(2);

/// The admin client the story registers agents and reads the audit trail
/// with.
pub struct AdminClient {
    pub client_id: String,
    pub secret: String,
    /// The audience of admin tokens (identity-svc's `tokens.admin_audience`).
    pub audience: String,
}

/// What the story needs to know of the stack it runs against.
pub struct Setting {
    pub endpoints: Endpoints,
    pub admin: AdminClient,
    /// The development person-token issuer's key (alice's token).
    pub person_issuer: SigningKey,
    pub workload_issuer: WorkloadIssuer,
    /// The tenant of this run's agents, grant and policy set.
    pub tenant: String,
    /// exchange-svc's issuer, also the audience of actor tokens and of
    /// tokens handed on to the next agent.
    pub exchange_issuer: String,
    /// exchange-svc's `exchange.max_token_lifetime_secs`, when known (a
    /// stack of the demo's own); a running stack's is not visible from
    /// outside.
    pub exchange_max_lifetime_secs: Option<i64>,
    /// policy-svc's `decisions.caller_audience`.
    pub policy_audience: String,
}

impl Setting {
    /// The service account of triage-bot's workload, in this run's tenant.
    fn workload_subject(&self) -> String {
        format!("system:serviceaccount:{}:{TRIAGE}", self.tenant)
    }
}

/// Runs the story; the transcript says how far it got.
pub async fn tell(setting: &Setting, tls: &Arc<ClientTls>) -> Transcript {
    let started = Instant::now();
    let mut transcript = Transcript::default();
    for (name, url) in setting.endpoints.named() {
        transcript.services.insert(name.to_owned(), url.to_owned());
    }
    match Calls::connect(&setting.endpoints, tls).await {
        Ok(calls) => {
            transcript.trace_id = calls.trace_id.clone();
            let mut story = Story {
                setting,
                calls,
                transcript,
                names: HashMap::new(),
                exchanges: 0,
                caller: String::new(),
            };
            if let Err(err) = story.run().await {
                story.transcript.stopped = format!("{err:#}");
            }
            transcript = story.transcript;
        }
        Err(err) => transcript.stopped = format!("{err:#}"),
    }
    transcript.elapsed_ms = started.elapsed().as_millis();
    transcript
}

/// An agent and its own access token for exchange-svc (its actor token).
struct Actor {
    id: String,
    token: String,
    /// The token's `exp`.
    expires_at: i64,
}

/// alice's token from the development person-token issuer.
struct Person {
    token: String,
    expires_at: i64,
}

struct Story<'a> {
    setting: &'a Setting,
    calls: Calls,
    transcript: Transcript,
    /// Agent ids by name, for the transcript.
    names: HashMap<String, String>,
    /// Exchanges asked for (each is one `token.exchanged` audit event).
    exchanges: usize,
    /// The gateway's credential towards policy-svc (its own token, once
    /// registered).
    caller: String,
}

impl Story<'_> {
    async fn run(&mut self) -> anyhow::Result<()> {
        let admin = self.admin_token().await?;
        self.transcript
            .chapter("triage-bot gets an identity, and a token by workload identity federation");
        let triage = self.federated_triage_bot(&admin).await?;

        self.transcript
            .chapter("alice lets triage-bot act for her (a delegation grant)");
        let alice = self.alice()?;
        let grant = self.grant(&alice, &triage).await?;

        self.transcript.chapter(
            "triage-bot trades alice's token and its own for an mcp:github token (RFC 8693)",
        );
        self.policy(&admin).await?;
        let github = self.first_exchange(&alice, &triage, &grant).await?;

        self.transcript
            .chapter("the MCP gateway asks policy-svc, as Envoy ext_authz does");
        self.gateway(&admin, &github).await?;

        self.transcript
            .chapter("triage-bot hands work on to summarizer-bot (nested act)");
        let nested = self.chain(&admin, &alice, &triage).await?;

        self.transcript.chapter("alice revokes the grant");
        self.revocation(&alice, &triage, &grant, &github, &nested)
            .await?;

        self.transcript
            .chapter("the audit trail of all of it, found by trace id");
        self.audit_trail(&admin).await
    }

    /// Records `step`; an error when it did not go as expected and the
    /// story cannot go on without it.
    fn require(&mut self, step: Step) -> anyhow::Result<()> {
        let title = step.title.clone();
        if self.transcript.step(step) {
            Ok(())
        } else {
            anyhow::bail!("`{title}` did not go as expected, and the rest of the story needs it")
        }
    }

    /// The answer of a call the story cannot go on without; on a refusal,
    /// `step` is recorded with it and the story stops.
    fn needed<T>(
        &mut self,
        step: Step,
        answer: Result<T, tonic::Status>,
    ) -> anyhow::Result<(T, Step)> {
        match answer {
            Ok(value) => Ok((value, step)),
            Err(status) => {
                let title = step.title.clone();
                self.transcript.step(step.answered(status_text(&status)));
                anyhow::bail!("`{title}` was refused, and the rest of the story needs it")
            }
        }
    }

    /// `id` with the agent's name, e.g. `agt_01J... (triage-bot)`.
    fn named(&self, id: &str) -> String {
        match self.names.get(id) {
            Some(name) => format!("{id} ({name})"),
            None => id.to_owned(),
        }
    }

    fn name_of(&self, id: &str) -> String {
        self.names.get(id).cloned().unwrap_or_else(|| id.to_owned())
    }

    async fn admin_token(&mut self) -> anyhow::Result<String> {
        let admin = &self.setting.admin;
        let request = self.calls.plain(client_credentials(
            &admin.client_id,
            &admin.secret,
            &admin.audience,
        ));
        crate::admin::admin_token(&mut self.calls.identity, request).await
    }

    /// Registers an agent of the tenant owned by alice, whose tokens may be
    /// for `audience`.
    async fn register(
        &mut self,
        admin: &str,
        name: &str,
        attributes: &[(&str, &str)],
        audience: &str,
        scopes: &[&str],
    ) -> anyhow::Result<Agent> {
        let agent = Agent {
            tenant: self.setting.tenant.clone(),
            owner: ALICE.to_owned(),
            name: name.to_owned(),
            attributes: attributes
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect(),
            ceiling: Some(Ceiling {
                audiences: vec![audience.to_owned()],
                scopes: strings(scopes),
            }),
            ..Agent::default()
        };
        let request = self
            .calls
            .bearer(RegisterAgentRequest { agent: Some(agent) }, admin)?;
        let agent = self
            .calls
            .identity
            .register_agent(request)
            .await
            .map_err(failed)
            .with_context(|| format!("registering {name}"))?
            .into_inner()
            .agent
            .unwrap_or_default();
        self.names.insert(agent.id.clone(), name.to_owned());
        Ok(agent)
    }
}

/// A refused call as the transcript shows it: the gRPC status and the
/// message (for OAuth errors, `<error>: <description>`).
/// The OAuth error code of a refused exchange (before the `:`).
fn oauth_error(status: &tonic::Status) -> String {
    status
        .message()
        .split_once(':')
        .map_or(status.message(), |(code, _)| code)
        .to_owned()
}

/// A JWT's claims, unverified (the services verified it; the transcript
/// only shows what it says).
fn claims(token: &str) -> anyhow::Result<Value> {
    let parsed = agentsec_common::jwt::Unverified::parse(token)
        .map_err(|err| anyhow::anyhow!("the token is not a JWT: {err}"))?;
    Ok(Value::Object(parsed.unverified_claims().clone()))
}

/// A JSON value as text: strings without quotes, arrays space-separated.
fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        Value::Array(values) => values.iter().map(text).collect::<Vec<_>>().join(" "),
        other => other.to_string(),
    }
}

fn strings_of(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|values| values.iter().map(text).collect())
        .unwrap_or_default()
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| (*value).to_owned()).collect()
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[cfg(test)]
mod tests {
    use super::exchange::{describe_rule, policy_set};
    use super::*;

    #[test]
    fn actors_walk_the_nested_act_claim_outermost_first() {
        let claims = json!({
            "sub": "alice",
            "act": {"sub": "agt_b", "act": {"sub": "agt_a"}},
        });
        assert_eq!(Story::actors(&claims), ["agt_b", "agt_a"]);
        assert!(Story::actors(&json!({"sub": "alice"})).is_empty());
    }

    #[test]
    fn the_policy_set_names_the_hand_off_audience_and_declares_trust_tier() {
        let set = policy_set("http://127.0.0.1:9");
        assert_eq!(set.rules.len(), 5);
        assert!(set
            .rules
            .iter()
            .any(|rule| rule.resource == "audience:http://127.0.0.1:9"));
        assert_eq!(set.attributes[0].name, "trust_tier");
        let described: Vec<String> = set.rules.iter().map(describe_rule).collect();
        assert!(
            described
                .iter()
                .any(|line| line.contains("github-tools")
                    && line.contains("if agent.trust_tier >= 2"))
        );
    }

    #[test]
    fn an_oauth_error_is_the_code_before_the_colon() {
        let status = tonic::Status::permission_denied("invalid_grant: a chain of 3 agents");
        assert_eq!(oauth_error(&status), "invalid_grant");
        assert_eq!(
            status_text(&status),
            "PermissionDenied: invalid_grant: a chain of 3 agents"
        );
    }
}
