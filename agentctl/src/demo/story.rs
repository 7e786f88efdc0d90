//! The story AgentSec exists for, told against a running stack: an agent
//! gets its identity by workload identity federation, a person delegates
//! to it, it exchanges the person's token for a delegated one, policy
//! decides its tool calls at an Envoy ext_authz gateway, it hands work on
//! to another agent, the person revokes the grant, and the audit trail of
//! all of it is found by trace id and its hash chain verified. Each step
//! checks its answer against the one the story expects.

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
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

use super::calls::{Calls, Endpoints};
use super::transcript::{Step, Transcript};
use super::workload::{WorkloadIssuer, WORKLOAD_AUDIENCE, WORKLOAD_ISSUER};
use crate::admin::{client_credentials, failed};
use crate::dev_users::{self, PersonClaims};

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
        Ok(self
            .calls
            .identity
            .issue_token(request)
            .await
            .map_err(|status| anyhow::anyhow!("admin token refused: {}", status.message()))?
            .into_inner()
            .access_token)
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

    async fn federated_triage_bot(&mut self, admin: &str) -> anyhow::Result<Actor> {
        let agent = self
            .register(
                admin,
                TRIAGE,
                &[("trust_tier", "2")],
                &self.setting.exchange_issuer.clone(),
                TRIAGE_SCOPES,
            )
            .await?;
        let registered = Step::new("register triage-bot")
            .asked(format!(
                "as the admin ({}): identity-svc RegisterAgent\n\
                 tenant {}, owner {ALICE}, name {TRIAGE}, attribute trust_tier=2,\n\
                 ceiling: audience {} (exchange-svc), scopes {}",
                self.setting.admin.client_id,
                self.setting.tenant,
                self.setting.exchange_issuer,
                TRIAGE_SCOPES.join(" ")
            ))
            .answered(format!(
                "agent {}, {}, attributes {:?}",
                agent.id,
                agent.status().as_str_name(),
                agent.attributes
            ))
            .why(
                "every agent has an identity of its own in the registry, with an accountable \
                 owner; its ceiling bounds every token it can ever hold, and its attributes \
                 (trust_tier) reach policy decisions",
            )
            .ok(agent.id.starts_with("agt_")
                && agent.status() == AgentStatus::Active
                && agent.attributes.get("trust_tier").map(String::as_str) == Some("2"))
            .fact("agent_id", &agent.id);
        self.require(registered)?;

        let request = self.calls.bearer(
            AddFederatedCredentialRequest {
                agent_id: agent.id.clone(),
                federated: Some(FederatedCredentialInfo {
                    issuer: WORKLOAD_ISSUER.to_owned(),
                    subject_match: Some(SubjectMatch::Subject(self.setting.workload_subject())),
                    audience: WORKLOAD_AUDIENCE.to_owned(),
                }),
                description: "triage-bot's Kubernetes workload".to_owned(),
                expire_time: None,
            },
            admin,
        )?;
        let credential = self
            .calls
            .identity
            .add_federated_credential(request)
            .await
            .map_err(failed)
            .context("adding triage-bot's federated credential")?
            .into_inner()
            .credential
            .unwrap_or_default();
        let federated = Step::new("trust triage-bot's workload identity")
            .asked(format!(
                "identity-svc AddFederatedCredential for {TRIAGE}:\n\
                 issuer {WORKLOAD_ISSUER}, subject {}, audience {WORKLOAD_AUDIENCE}",
                self.setting.workload_subject()
            ))
            .answered(format!("credential {}", credential.id))
            .why(format!(
                "identity-svc trusts the workload issuer {WORKLOAD_ISSUER} (its trusted_issuers \
                 entry holds the public key the demo generated); the credential says which of \
                 its workloads is {TRIAGE}, so {TRIAGE} keeps no secret at all"
            ))
            .ok(!credential.id.is_empty())
            .fact("credential_id", &credential.id);
        self.require(federated)?;

        let request = self.calls.plain(IssueTokenRequest {
            grant_type: GrantType::JwtBearer as i32,
            assertion: self
                .setting
                .workload_issuer
                .token(&self.setting.workload_subject(), unix_now())?,
            audience: self.setting.exchange_issuer.clone(),
            ..IssueTokenRequest::default()
        });
        let issued = self.calls.identity.issue_token(request).await;
        let step =
            Step::new("triage-bot's token by the jwt-bearer grant (RFC 7523)").asked(format!(
                "{TRIAGE}'s workload presents a JWT signed by the workload issuer\n\
             (iss {WORKLOAD_ISSUER}, sub {}, aud {WORKLOAD_AUDIENCE}, valid 2 min):\n\
             identity-svc IssueToken grant_type=jwt-bearer, audience {} (to act at exchange-svc)",
                self.setting.workload_subject(),
                self.setting.exchange_issuer
            ));
        let (response, step) = self.needed(step, issued)?;
        let response = response.into_inner();
        let claims = claims(&response.access_token)?;
        let sub = text(&claims["sub"]);
        let step = step
            .answered(format!(
                "access token: sub {}, aud {}, scope {:?}, expires in {} s",
                self.named(&sub),
                text(&claims["aud"]),
                response.scope,
                response.expires_in
            ))
            .why(format!(
                "the JWT's issuer, subject and audience match {TRIAGE}'s federated credential and \
                 its signature verifies with the trusted key: identity-svc issues {TRIAGE}'s own \
                 token, with its whole ceiling (no scope was asked for)"
            ))
            .ok(sub == agent.id && response.scope == TRIAGE_SCOPES.join(" "))
            .fact("sub", &sub)
            .fact("scope", &response.scope);
        self.require(step)?;
        Ok(Actor {
            id: agent.id,
            token: response.access_token,
            expires_at: claims["exp"].as_i64().unwrap_or_default(),
        })
    }

    fn alice(&self) -> anyhow::Result<Person> {
        let token = dev_users::person_token(
            &self.setting.person_issuer,
            &PersonClaims {
                sub: ALICE,
                tenant: &self.setting.tenant,
                scopes: &[],
                may_act: None,
                lifetime_secs: ONE_HOUR,
            },
        )?;
        let expires_at = claims(&token)?["exp"].as_i64().unwrap_or_default();
        Ok(Person { token, expires_at })
    }

    async fn grant(&mut self, alice: &Person, triage: &Actor) -> anyhow::Result<Grant> {
        let audiences = vec![MCP_GITHUB.to_owned(), self.setting.exchange_issuer.clone()];
        let request = self.calls.bearer(
            CreateGrantRequest {
                grant: Some(Grant {
                    agent_id: triage.id.clone(),
                    audiences: audiences.clone(),
                    scopes: strings(GRANTED_SCOPES),
                    expire_time: Some(prost_types::Timestamp {
                        seconds: unix_now() + ONE_HOUR,
                        nanos: 0,
                    }),
                    max_chain_depth: GRANT_DEPTH,
                    purpose: "triage the payments team's GitHub issues".to_owned(),
                    ..Grant::default()
                }),
            },
            &alice.token,
        )?;
        let created = self.calls.exchange.create_grant(request).await;
        let step = Step::new("alice grants triage-bot delegation").asked(format!(
            "{ALICE}, with her own token (development person-token issuer {}, sub {ALICE}, \
             tenant {}, 1 h):\n\
             exchange-svc CreateGrant: agent {}, audiences {}, scopes {},\n\
             expires in 1 h, max_chain_depth {GRANT_DEPTH}",
            dev_users::DEV_USER_ISSUER,
            self.setting.tenant,
            self.named(&triage.id),
            audiences.join(" "),
            GRANTED_SCOPES.join(" ")
        ));
        let (response, step) = self.needed(step, created)?;
        let grant = response.into_inner().grant.unwrap_or_default();
        let step = step
            .answered(format!(
                "grant {}, {}, person {} ({}), tenant {}, max_chain_depth {}",
                grant.id,
                grant.status().as_str_name(),
                grant.person_subject,
                grant.person_issuer,
                grant.tenant,
                grant.max_chain_depth
            ))
            .why(format!(
                "a grant is the person's own consent: only her token can create it, never an \
                 admin's; {MCP_GITHUB} is where triage-bot works, and exchange-svc itself is the \
                 audience of tokens handed on to a next agent (chapter 5)"
            ))
            .ok(grant.status() == GrantStatus::Active
                && grant.person_subject == ALICE
                && grant.tenant == self.setting.tenant
                && grant.max_chain_depth == GRANT_DEPTH)
            .fact("grant_id", &grant.id);
        self.require(step)?;
        Ok(grant)
    }

    async fn policy(&mut self, admin: &str) -> anyhow::Result<()> {
        let set = policy_set(&self.setting.exchange_issuer);
        let described: Vec<String> = set.rules.iter().map(describe_rule).collect();
        let request = self.calls.bearer(
            PutPolicySetRequest {
                tenant: self.setting.tenant.clone(),
                policy_set: Some(set),
                expected_version: None,
                description: "agentctl demo".to_owned(),
            },
            admin,
        )?;
        let put = self.calls.policy.put_policy_set(request).await;
        let step = Step::new("the payments tenant's policy set").asked(format!(
            "as the admin: policy-svc PutPolicySet for tenant {}\n\
             (agent attribute trust_tier declared as int):\n{}",
            self.setting.tenant,
            described.join("\n")
        ));
        let (response, step) = self.needed(step, put)?;
        let version = response.into_inner().version.unwrap_or_default();
        let step = step
            .answered(format!(
                "version {} of tenant {}, {} rules, sha256 {}",
                version.version, version.tenant, version.rule_count, version.content_sha256
            ))
            .why(
                "exchange-svc asks policy-svc whether token:exchange is allowed, for the \
                 audience and for each scope; the same set decides the MCP tool calls of \
                 chapter 4",
            )
            .ok(version.version >= 1 && version.rule_count == 5);
        self.require(step)
    }

    async fn exchange(
        &mut self,
        subject: &str,
        subject_type: &str,
        actor: &str,
        audience: &str,
        scope: &str,
    ) -> Result<ExchangeResponse, tonic::Status> {
        self.exchanges += 1;
        let request = self.calls.plain(ExchangeRequest {
            subject_token: subject.to_owned(),
            subject_token_type: subject_type.to_owned(),
            actor_token: actor.to_owned(),
            actor_token_type: ACCESS_TOKEN_TYPE.to_owned(),
            audience: vec![audience.to_owned()],
            scope: scope.to_owned(),
            ..ExchangeRequest::default()
        });
        self.calls
            .exchange
            .exchange(request)
            .await
            .map(tonic::Response::into_inner)
    }

    /// The agents of a delegated token's `act`, outermost first.
    fn actors(claims: &Value) -> Vec<String> {
        let mut actors = Vec::new();
        let mut act = &claims["act"];
        while let Some(sub) = act.get("sub").and_then(Value::as_str) {
            actors.push(sub.to_owned());
            act = &act["act"];
        }
        actors
    }

    /// A delegated token's claims, as the transcript shows them.
    fn describe_delegated(&self, claims: &Value) -> String {
        let mut parts = vec![format!("sub {}", text(&claims["sub"]))];
        let mut path = String::from("act");
        for actor in Self::actors(claims) {
            parts.push(format!("{path}.sub {}", self.named(&actor)));
            path.push_str(".act");
        }
        parts.push(format!("aud {}", text(&claims["aud"])));
        parts.push(format!("scope {:?}", text(&claims["scope"])));
        parts.join(", ")
    }

    /// Facts of a delegated token for the transcript: `sub`, `act.sub`,
    /// `act.act.sub` (as agent names), `aud`, `scope`.
    fn delegated_facts(&self, step: Step, claims: &Value) -> Step {
        let mut step = step
            .fact("sub", text(&claims["sub"]))
            .fact("aud", text(&claims["aud"]))
            .fact("scope", text(&claims["scope"]));
        let mut path = String::from("act");
        for actor in Self::actors(claims) {
            step = step.fact(&format!("{path}.sub"), self.name_of(&actor));
            path.push_str(".act");
        }
        step
    }

    async fn first_exchange(
        &mut self,
        alice: &Person,
        triage: &Actor,
        grant: &Grant,
    ) -> anyhow::Result<String> {
        let exchanged = self
            .exchange(&alice.token, JWT_TYPE, &triage.token, MCP_GITHUB, "")
            .await;
        let step = Step::new("triage-bot exchanges for an mcp:github token").asked(format!(
            "{TRIAGE}: exchange-svc Exchange (RFC 8693), subject_token = alice's token,\n\
             actor_token = {TRIAGE}'s own token (scopes {}), audience {MCP_GITHUB}, no scope \
             (all that may be delegated)",
            TRIAGE_SCOPES.join(" ")
        ));
        let (response, step) = self.needed(step, exchanged)?;
        let claims = claims(&response.access_token)?;
        let issued_at = claims["iat"].as_i64().unwrap_or_default();
        let expires_at = claims["exp"].as_i64().unwrap_or_default();
        let grant_ends = grant
            .expire_time
            .as_ref()
            .map_or(i64::MAX, |time| time.seconds);
        let mut bounds = vec![
            ("alice's token", alice.expires_at),
            ("triage-bot's token", triage.expires_at),
            ("the grant", grant_ends),
        ];
        if let Some(max) = self.setting.exchange_max_lifetime_secs {
            bounds.push(("exchange-svc's maximum", issued_at + max));
        }
        let earliest = bounds
            .iter()
            .min_by_key(|(_, at)| *at)
            .map_or(("", 0), |(what, at)| (*what, *at));
        let mut bounds_text: Vec<String> = bounds
            .iter()
            .map(|(what, at)| format!("{what} {} s", at - issued_at))
            .collect();
        // A running stack's maximum is its own configuration: a lifetime
        // below every known bound is that maximum.
        let (earliest, lifetime_ok) = if self.setting.exchange_max_lifetime_secs.is_some() {
            (earliest.0, expires_at == earliest.1)
        } else if expires_at < earliest.1 {
            bounds_text.push("exchange-svc's maximum (its configuration)".to_owned());
            ("exchange-svc's maximum", true)
        } else {
            bounds_text.push("exchange-svc's maximum (its configuration)".to_owned());
            (earliest.0, expires_at == earliest.1)
        };
        let actors = Self::actors(&claims);
        let step = step
            .answered(format!(
                "{}, expires in {} s, grant_id {}",
                self.describe_delegated(&claims),
                response.expires_in,
                text(&claims["grant_id"])
            ))
            .why(format!(
                "sub stays the person and act names the agent acting for her (RFC 8693 §4.1);\n\
                 scope = triage-bot's token ∩ alice's grant ∩ what policy allows: repo:admin is \
                 dropped;\n\
                 lifetime = the earliest of {}: {}",
                bounds_text.join(", "),
                earliest
            ))
            .ok(text(&claims["sub"]) == ALICE
                && actors == [triage.id.clone()]
                && response.scope == GRANTED_SCOPES.join(" ")
                && lifetime_ok
                && response.expires_in < ONE_HOUR)
            .fact("expires_in", response.expires_in.to_string());
        let step = self.delegated_facts(step, &claims);
        self.require(step)?;
        Ok(response.access_token)
    }

    async fn envoy_check(
        &mut self,
        token: &str,
        audience: &str,
        server: &str,
        tool: &str,
    ) -> anyhow::Result<CheckResponse> {
        // Envoy's own credential, as its gRPC initial metadata: policy-svc
        // answers only callers with a token of identity-svc for its
        // decisions.caller_audience, unless it is configured with
        // `decisions.callers = "any"`.
        let request = self
            .calls
            .bearer(mcp_check(token, audience, server, tool), &self.caller)?;
        Ok(self
            .calls
            .envoy
            .check(request)
            .await
            .map_err(failed)
            .context("policy-svc ext_authz Check")?
            .into_inner())
    }

    /// policy-svc's audit event of decision `decision_id`, once it is
    /// stored.
    async fn decision_event(
        &mut self,
        admin: &str,
        decision_id: &str,
    ) -> anyhow::Result<Option<Event>> {
        let filter = EventFilter {
            decision_id: decision_id.to_owned(),
            kinds: vec!["decision".to_owned()],
            ..EventFilter::default()
        };
        let found = self
            .events_until(admin, filter, |events| !events.is_empty())
            .await?;
        Ok(found.into_iter().find_map(|stored| stored.event))
    }

    async fn gateway(&mut self, admin: &str, github: &str) -> anyhow::Result<()> {
        let policy_audience = self.setting.policy_audience.clone();
        let gateway = self
            .secret_agent(admin, GATEWAY, &policy_audience, &[])
            .await?;
        self.caller = gateway.token;
        let step = Step::new("register the MCP gateway, policy-svc's caller")
            .asked(format!(
                "as the admin: identity-svc RegisterAgent {GATEWAY} (tenant {}, ceiling: \
                 audience {policy_audience}, no scopes), CreateClientSecret;\n\
                 {GATEWAY}: IssueToken client_credentials, audience {policy_audience}",
                self.setting.tenant
            ))
            .answered(format!(
                "{}, with a token for {policy_audience}",
                self.named(&gateway.id)
            ))
            .why(format!(
                "the gateway is a workload with an identity of its own: policy-svc answers \
                 decision callers that show a token for its caller audience \
                 ({policy_audience}), so a stranger cannot probe the policy; the token grants \
                 nothing else"
            ))
            .ok(true);
        self.require(step)?;

        let asked = |tool: &str, audience: &str, server: &str| {
            format!(
                "an Envoy in front of the MCP servers: policy-svc \
                 envoy.service.auth.v3.Authorization/Check, with its own token\n\
                 ({GATEWAY}'s) as gRPC metadata; POST https://{GATEWAY_HOST}/mcp, JSON-RPC \
                 tools/call {tool},\n\
                 Authorization: Bearer <the {MCP_GITHUB} token of chapter 3>,\n\
                 route context extensions agentsec_audience={audience}, agentsec_mcp_server={server}"
            )
        };

        let allowed = self
            .envoy_check(github, MCP_GITHUB, "github", "list_issues")
            .await?;
        let step = Step::new("tools/call list_issues on mcp:github is allowed").asked(asked(
            "list_issues",
            MCP_GITHUB,
            "github",
        ));
        let step = match allowed_decision(&allowed) {
            Some(decision_id) => {
                let event = self.decision_event(admin, &decision_id).await?;
                let (reason, policy_ids) = event.map_or_else(
                    || ("(no audit event found)".to_owned(), Vec::new()),
                    |event| (event.reason, event.policy_ids),
                );
                step.answered(format!(
                    "OK: allowed, x-agentsec-decision-id {decision_id} added upstream;\n\
                     policy-svc's decision: {reason} (policy_ids {policy_ids:?})"
                ))
                .why(format!(
                    "the token is for {MCP_GITHUB}, triage-bot acts for alice, the tool is \
                     resource mcp:github/list_issues, and github-tools allows tools/call on \
                     mcp:github/* for agents with trust_tier >= 2 (triage-bot's is 2, from the \
                     registry)"
                ))
                .ok(policy_ids == ["github-tools"])
                .fact("decision_id", &decision_id)
                .fact("policy_ids", policy_ids.join(","))
            }
            None => step.answered(format!("refused: {}", denial_text(&allowed))),
        };
        self.transcript.step(step);

        let denied = self
            .envoy_check(github, MCP_GITHUB, "github", "delete_repo")
            .await?;
        let (code, body) = denial(&denied);
        let policy_ids = strings_of(&body["policy_ids"]);
        let step = Step::new("tools/call delete_repo on mcp:github is denied")
            .asked(asked("delete_repo", MCP_GITHUB, "github"))
            .answered(format!(
                "{code} {}: {} (policy_ids {policy_ids:?}, decision {})",
                http_reason(code),
                text(&body["reason"]),
                text(&body["decision_id"])
            ))
            .why(
                "no-repo-deletion denies tools/call on mcp:*/delete_*; an explicit deny beats \
                 any allow (github-tools matches too), so the call never reaches the server",
            )
            .ok(code == 403 && policy_ids == ["no-repo-deletion"])
            .fact("status", code.to_string())
            .fact("reason", text(&body["reason"]))
            .fact("policy_ids", policy_ids.join(","));
        self.transcript.step(step);

        let elsewhere = self
            .envoy_check(github, MCP_JIRA, "jira", "list_issues")
            .await?;
        let (code, body) = denial(&elsewhere);
        let step = Step::new("the same token at mcp:jira is denied (wrong audience)")
            .asked(asked("list_issues", MCP_JIRA, "jira"))
            .answered(format!(
                "{code} {}: {}",
                http_reason(code),
                text(&body["reason"])
            ))
            .why(format!(
                "the token's aud is {MCP_GITHUB}: a delegated token is good only at the target \
                 it was exchanged for, so a leaked token cannot be replayed at another server"
            ))
            .ok(code == 403 && text(&body["reason"]).contains("audience"))
            .fact("status", code.to_string())
            .fact("reason", text(&body["reason"]));
        self.transcript.step(step);
        Ok(())
    }

    /// Registers an agent with a client secret and gets its token for
    /// `audience`.
    async fn secret_agent(
        &mut self,
        admin: &str,
        name: &str,
        audience: &str,
        scopes: &[&str],
    ) -> anyhow::Result<Actor> {
        let agent = self.register(admin, name, &[], audience, scopes).await?;
        let request = self.calls.bearer(
            CreateClientSecretRequest {
                agent_id: agent.id.clone(),
                ..CreateClientSecretRequest::default()
            },
            admin,
        )?;
        let secret = self
            .calls
            .identity
            .create_client_secret(request)
            .await
            .map_err(failed)
            .with_context(|| format!("creating {name}'s client secret"))?
            .into_inner();
        let request = self.calls.plain(client_credentials(
            &secret.client_id,
            &secret.client_secret,
            audience,
        ));
        let token = self
            .calls
            .identity
            .issue_token(request)
            .await
            .map_err(failed)
            .with_context(|| format!("{name}'s token"))?
            .into_inner()
            .access_token;
        Ok(Actor {
            id: agent.id,
            expires_at: claims(&token)?["exp"].as_i64().unwrap_or_default(),
            token,
        })
    }

    async fn chain(
        &mut self,
        admin: &str,
        alice: &Person,
        triage: &Actor,
    ) -> anyhow::Result<String> {
        let exchange = self.setting.exchange_issuer.clone();
        let summarizer = self
            .secret_agent(admin, SUMMARIZER, &exchange, &[READ_SCOPE])
            .await?;
        let reporter = self
            .secret_agent(admin, REPORTER, &exchange, &[READ_SCOPE])
            .await?;
        let step = Step::new("register summarizer-bot and reporter-bot")
            .asked(format!(
                "as the admin: identity-svc RegisterAgent {SUMMARIZER} and {REPORTER} (tenant \
                 {}, owner {ALICE}, scope {READ_SCOPE}), CreateClientSecret for each;\n\
                 each: IssueToken client_credentials, audience {}",
                self.setting.tenant,
                self.setting.exchange_issuer
            ))
            .answered(format!(
                "{}, {}, each with its own token for exchange-svc",
                self.named(&summarizer.id),
                self.named(&reporter.id)
            ))
            .why("these agents authenticate with client secrets; either way, each agent acts with a token of its own")
            .ok(true);
        self.require(step)?;

        let handed = self
            .exchange(&alice.token, JWT_TYPE, &triage.token, &exchange, READ_SCOPE)
            .await;
        let step =
            Step::new("triage-bot hands work on: a token for exchange-svc itself").asked(format!(
                "{TRIAGE}: exchange-svc Exchange, subject_token = alice's token, actor_token = \
                 its own,\naudience {exchange} (exchange-svc), scope {READ_SCOPE}"
            ));
        let handed = self.delegated(
            step,
            handed,
            |claims, actors| text(&claims["aud"]) == exchange && actors == [triage.id.clone()],
            "a token for exchange-svc is one the next agent can present as its subject token; \
            triage-bot passes on only what the summary needs (issues:read)",
        )?;

        let nested = self
            .exchange(
                &handed,
                ACCESS_TOKEN_TYPE,
                &summarizer.token,
                MCP_GITHUB,
                "",
            )
            .await;
        let step = Step::new("summarizer-bot exchanges it: nested act").asked(format!(
            "{SUMMARIZER}: exchange-svc Exchange, subject_token = triage-bot's hand-off token,\n\
             actor_token = {SUMMARIZER}'s own, audience {MCP_GITHUB}"
        ));
        let nested = self.delegated(
            step,
            nested,
            |claims, actors| {
                text(&claims["sub"]) == ALICE
                    && actors == [summarizer.id.clone(), triage.id.clone()]
                    && text(&claims["scope"]) == READ_SCOPE
            },
            "each hop nests the earlier actors (RFC 8693 §4.1): summarizer-bot acts, for \
            triage-bot, for alice; a chain of 2 agents is within the grant's max_chain_depth (2)",
        )?;

        let onward = self
            .exchange(&handed, ACCESS_TOKEN_TYPE, &summarizer.token, &exchange, "")
            .await;
        let step =
            Step::new("summarizer-bot hands on too: a token for exchange-svc").asked(format!(
                "{SUMMARIZER}: exchange-svc Exchange, subject_token = triage-bot's hand-off \
                 token,\nactor_token = {SUMMARIZER}'s own, audience {exchange}"
            ));
        let onward = self.delegated(
            step,
            onward,
            |_, actors| actors == [summarizer.id.clone(), triage.id.clone()],
            "still 2 agents in the chain; whoever presents this token next would be the third",
        )?;

        let third = self
            .exchange(&onward, ACCESS_TOKEN_TYPE, &reporter.token, MCP_GITHUB, "")
            .await;
        let step = Step::new("a third hop, beyond the grant's depth, is refused").asked(format!(
            "{REPORTER}: exchange-svc Exchange, subject_token = summarizer-bot's hand-off \
             token,\nactor_token = {REPORTER}'s own, audience {MCP_GITHUB}"
        ));
        let step = match third {
            Ok(response) => {
                let claims = claims(&response.access_token)?;
                step.answered(format!("issued: {}", self.describe_delegated(&claims)))
            }
            Err(status) => step
                .answered(status_text(&status))
                .ok(status.code() == tonic::Code::PermissionDenied
                    && status.message().starts_with("invalid_grant:"))
                .fact("error", oauth_error(&status)),
        };
        let step = step.why(format!(
            "reporter-bot would be the third agent in the chain; alice's grant allows \
             {GRANT_DEPTH}, so nothing is issued"
        ));
        self.transcript.step(step);
        Ok(nested)
    }

    /// Records an exchange that should issue a token satisfying `expected`
    /// (given its claims and its actors); returns the token.
    fn delegated(
        &mut self,
        step: Step,
        exchanged: Result<ExchangeResponse, tonic::Status>,
        expected: impl Fn(&Value, &[String]) -> bool,
        why: &str,
    ) -> anyhow::Result<String> {
        let (response, step) = self.needed(step, exchanged)?;
        let claims = claims(&response.access_token)?;
        let actors = Self::actors(&claims);
        let step = step
            .answered(format!(
                "{}, expires in {} s",
                self.describe_delegated(&claims),
                response.expires_in
            ))
            .why(why)
            .ok(expected(&claims, &actors));
        let step = self.delegated_facts(step, &claims);
        self.require(step)?;
        Ok(response.access_token)
    }

    async fn revocation(
        &mut self,
        alice: &Person,
        triage: &Actor,
        grant: &Grant,
        github: &str,
        nested: &str,
    ) -> anyhow::Result<()> {
        let request = self.calls.bearer(
            RevokeGrantRequest {
                grant_id: grant.id.clone(),
                reason: "triage is done".to_owned(),
            },
            &alice.token,
        )?;
        let revoked = self.calls.exchange.revoke_grant(request).await;
        let revoked_at = Instant::now();
        let step = Step::new("alice revokes the grant").asked(format!(
            "{ALICE}, with her own token: exchange-svc RevokeGrant {}, reason \"triage is done\"",
            grant.id
        ));
        let (response, step) = self.needed(step, revoked)?;
        let revoked = response.into_inner().grant.unwrap_or_default();
        let step = step
            .answered(format!(
                "grant {} {}, revoked by {}",
                revoked.id,
                revoked.status().as_str_name(),
                revoked.revoked_by
            ))
            .why("from the moment RevokeGrant returns, no exchange uses the grant and every token issued under it, including later hops, is inactive")
            .ok(revoked.status() == GrantStatus::Revoked);
        self.require(step)?;

        let again = self
            .exchange(&alice.token, JWT_TYPE, &triage.token, MCP_GITHUB, "")
            .await;
        let step = Step::new("the next exchange is refused").asked(format!(
            "{TRIAGE}: exchange-svc Exchange, subject_token = alice's token, actor_token = its \
             own, audience {MCP_GITHUB} (as in chapter 3)"
        ));
        let step = match again {
            Ok(_) => step.answered("issued a token"),
            Err(status) => step
                .answered(status_text(&status))
                .ok(status.code() == tonic::Code::PermissionDenied
                    && status.message().starts_with("invalid_grant:"))
                .fact("error", oauth_error(&status)),
        };
        self.transcript.step(step.why(
            "alice has no active grant to triage-bot any more; a person's token alone lets no \
             agent act for her",
        ));

        for (title, token, whose) in [
            (
                "the next ext_authz check is refused",
                github,
                "triage-bot's mcp:github token of chapter 3",
            ),
            (
                "summarizer-bot's nested token is refused too",
                nested,
                "summarizer-bot's nested mcp:github token of chapter 5",
            ),
        ] {
            let (response, waited) = self.refused_after_revocation(token, revoked_at).await?;
            let (code, body) = denial(&response);
            let step = Step::new(title)
                .asked(format!(
                    "an Envoy: policy-svc Authorization/Check, tools/call list_issues at \
                     {MCP_GITHUB},\nAuthorization: Bearer <{whose}>"
                ))
                .answered(format!(
                    "{code} {}: {} ({} ms after RevokeGrant returned)",
                    http_reason(code),
                    text(&body["reason"]),
                    waited.as_millis()
                ))
                .why(
                    "exchange-svc announced the revocation (GRANT_REVOKED) and policy-svc's \
                     revocation view refuses every token whose grant_id names the grant, with \
                     no call to exchange-svc per request",
                )
                .ok(code == 401)
                .fact("status", code.to_string())
                .fact("reason", text(&body["reason"]));
            self.transcript.step(step);
        }
        Ok(())
    }

    /// Asks ext_authz about `token` until it is refused, for at most
    /// [`REVOCATION_DEADLINE`] after `since`; the last answer and when it
    /// came.
    async fn refused_after_revocation(
        &mut self,
        token: &str,
        since: Instant,
    ) -> anyhow::Result<(CheckResponse, Duration)> {
        loop {
            let response = self
                .envoy_check(token, MCP_GITHUB, "github", "list_issues")
                .await?;
            let waited = since.elapsed();
            if allowed_decision(&response).is_none() || waited > REVOCATION_DEADLINE {
                return Ok((response, waited));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The events matching `filter` (oldest first) once `complete` holds
    /// for them, polled for at most [`AUDIT_DEADLINE`]; what there is then.
    async fn events_until(
        &mut self,
        admin: &str,
        filter: EventFilter,
        complete: impl Fn(&[StoredEvent]) -> bool,
    ) -> anyhow::Result<Vec<StoredEvent>> {
        let deadline = Instant::now() + AUDIT_DEADLINE;
        loop {
            let request = self.calls.bearer(
                QueryEventsRequest {
                    filter: Some(filter.clone()),
                    order: Order::OldestFirst as i32,
                    page: Some(PageRequest {
                        page_size: 1_000,
                        page_token: String::new(),
                    }),
                },
                admin,
            )?;
            let events = self
                .calls
                .audit
                .query_events(request)
                .await
                .map_err(failed)
                .context("audit-svc QueryEvents")?
                .into_inner()
                .events;
            if complete(&events) || Instant::now() > deadline {
                return Ok(events);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn audit_trail(&mut self, admin: &str) -> anyhow::Result<()> {
        let exchanges = self.exchanges;
        let filter = EventFilter {
            trace_id: self.calls.trace_id.clone(),
            ..EventFilter::default()
        };
        let stored = self
            .events_until(admin, filter, |events| {
                let count = |kind: &str, outcome: Option<Outcome>| {
                    events
                        .iter()
                        .filter_map(|stored| stored.event.as_ref())
                        .filter(|event| {
                            event.kind == kind
                                && outcome.is_none_or(|outcome| event.outcome == outcome as i32)
                        })
                        .count()
                };
                count("token.exchanged", None) >= exchanges
                    && count("grant.revoked", None) >= 1
                    && count("decision", Some(Outcome::Deny)) >= 1
            })
            .await?;
        let events: Vec<(u64, Event)> = stored
            .into_iter()
            .filter_map(|stored| stored.event.map(|event| (stored.sequence, event)))
            .collect();
        let count = |kind: &str, outcome: Outcome| {
            events
                .iter()
                .filter(|(_, event)| event.kind == kind && event.outcome == outcome as i32)
                .count()
        };
        let mut kinds: Vec<(String, usize)> = Vec::new();
        for (_, event) in &events {
            match kinds.iter_mut().find(|(kind, _)| *kind == event.kind) {
                Some((_, n)) => *n += 1,
                None => kinds.push((event.kind.clone(), 1)),
            }
        }
        let exchanged =
            count("token.exchanged", Outcome::Allow) + count("token.exchanged", Outcome::Deny);
        let lines: Vec<String> = events
            .iter()
            .map(|(sequence, event)| self.describe_event(*sequence, event))
            .collect();
        let kinds_text: Vec<String> = kinds
            .iter()
            .map(|(kind, n)| format!("{n} {kind}"))
            .collect();
        let step = Step::new("the events of the demo's trace")
            .asked(format!(
                "as the admin: audit-svc QueryEvents, filter trace_id {}",
                self.calls.trace_id
            ))
            .answered(format!(
                "{} events ({}):\n{}",
                events.len(),
                kinds_text.join(", "),
                lines.join("\n")
            ))
            .why(
                "every call of the demo carried one W3C traceparent; each service continued \
                 that trace in its spans, and every audit event names the trace and span that \
                 caused it, across all four services",
            )
            .ok(count("token.issued", Outcome::Allow) >= 1
                && count("grant.created", Outcome::Allow) == 1
                && exchanged == exchanges
                && count("token.exchanged", Outcome::Deny) == 2
                && count("decision", Outcome::Allow) >= 1
                && count("decision", Outcome::Deny) >= 1
                && count("grant.revoked", Outcome::Allow) == 1)
            .fact("events", events.len().to_string())
            .fact("exchanges", exchanged.to_string());
        self.transcript.step(step);

        let request = self.calls.bearer(
            VerifyChainRequest {
                start_sequence: 0,
                end_sequence: 0,
            },
            admin,
        )?;
        let verified = self
            .calls
            .audit
            .verify_chain(request)
            .await
            .map_err(failed)
            .context("audit-svc VerifyChain")?
            .into_inner();
        let last = events.last().map_or(0, |(sequence, _)| *sequence);
        let step = Step::new("the hash chain is verified")
            .asked("as the admin: audit-svc VerifyChain, from the first event to the head")
            .answered(if verified.ok {
                format!(
                    "chain verified: sequences {}-{}, {} events and {} signed checkpoints",
                    verified.start_sequence,
                    verified.end_sequence,
                    verified.events_verified,
                    verified.checkpoints_verified
                )
            } else {
                format!(
                    "broken at sequence {}: {}",
                    verified.first_broken_sequence, verified.reason
                )
            })
            .why(
                "each stored event's hash covers the previous hash and the event's canonical \
                 bytes: changing, removing or reordering any event of the trail breaks every \
                 hash after it",
            )
            .ok(verified.ok && verified.end_sequence >= last)
            .fact("chain", if verified.ok { "verified" } else { "broken" })
            .fact("events_verified", verified.events_verified.to_string());
        self.transcript.step(step);
        Ok(())
    }

    fn describe_event(&self, sequence: u64, event: &Event) -> String {
        let outcome = Outcome::try_from(event.outcome).map_or("?", |outcome| match outcome {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
            Outcome::Error => "error",
            Outcome::Unspecified => "?",
        });
        let mut who = Vec::new();
        if !event.person_subject.is_empty() {
            who.push(format!("person {}", event.person_subject));
        }
        if !event.agent_id.is_empty() {
            who.push(format!("agent {}", self.name_of(&event.agent_id)));
        }
        if !event.audience.is_empty() {
            who.push(format!("at {}", event.audience));
        }
        if !event.policy_ids.is_empty() {
            who.push(format!("policies {}", event.policy_ids.join(",")));
        }
        let mut reason = event.reason.clone();
        if reason.chars().count() > 80 {
            reason = reason.chars().take(77).collect::<String>() + "...";
        }
        format!(
            "#{sequence:<3} {:<12} {:<16} {outcome:<5} {}{}",
            event.service,
            event.kind,
            who.join(", "),
            if reason.is_empty() {
                String::new()
            } else {
                format!(": {reason}")
            }
        )
    }
}

/// The tenant's policy set: alice's agents may exchange for mcp:github and
/// hand work on through exchange-svc, with `issues:` scopes; tier-2 agents
/// may call the GitHub MCP server's tools; no agent deletes a repository.
fn policy_set(exchange_issuer: &str) -> PolicySet {
    let rule =
        |id: &str, effect: Effect, person: &str, resource: String, action: &str| PolicyRule {
            id: id.to_owned(),
            effect: effect as i32,
            agent: "*".to_owned(),
            person: person.to_owned(),
            resource,
            actions: vec![action.to_owned()],
            ..PolicyRule::default()
        };
    let person = format!("person:{ALICE}");
    let mut tools = rule(
        "github-tools",
        Effect::Allow,
        "*",
        "mcp:github/*".to_owned(),
        "tools/call",
    );
    tools.audience = MCP_GITHUB.to_owned();
    tools.condition = "agent.trust_tier >= 2".to_owned();
    PolicySet {
        rules: vec![
            rule(
                "exchange-github",
                Effect::Allow,
                &person,
                format!("audience:{MCP_GITHUB}"),
                "token:exchange",
            ),
            rule(
                "exchange-hand-off",
                Effect::Allow,
                &person,
                format!("audience:{exchange_issuer}"),
                "token:exchange",
            ),
            rule(
                "issue-scopes",
                Effect::Allow,
                &person,
                "scope:issues:*".to_owned(),
                "token:exchange",
            ),
            tools,
            rule(
                "no-repo-deletion",
                Effect::Deny,
                "*",
                "mcp:*/delete_*".to_owned(),
                "tools/call",
            ),
        ],
        role_assignments: Vec::new(),
        attributes: vec![AttributeDefinition {
            source: AttributeSource::Agent as i32,
            name: "trust_tier".to_owned(),
            r#type: AttributeType::Int as i32,
            description: "how far the payments team trusts an agent".to_owned(),
        }],
    }
}

fn describe_rule(rule: &PolicyRule) -> String {
    let effect = if rule.effect == Effect::Deny as i32 {
        "deny "
    } else {
        "allow"
    };
    let mut text = format!(
        "  {:<18} {effect} {} on {}",
        rule.id,
        rule.actions.join(","),
        rule.resource
    );
    if !rule.person.is_empty() && rule.person != "*" {
        text.push_str(&format!(" for {}", rule.person));
    }
    if !rule.audience.is_empty() {
        text.push_str(&format!(" at {}", rule.audience));
    }
    if !rule.condition.is_empty() {
        text.push_str(&format!(" if {}", rule.condition));
    }
    text
}

/// An Envoy ext_authz request for an MCP `tools/call` of `tool` through the
/// gateway, on a route for `audience` and MCP server `server`.
fn mcp_check(token: &str, audience: &str, server: &str, tool: &str) -> CheckRequest {
    let body = json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": tool, "arguments": {"repo": "payments/ledger"}},
    })
    .to_string();
    let headers = HashMap::from([
        (":authority".to_owned(), GATEWAY_HOST.to_owned()),
        ("authorization".to_owned(), format!("Bearer {token}")),
        ("content-type".to_owned(), "application/json".to_owned()),
    ]);
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                time: None,
                http: Some(HttpRequest {
                    method: "POST".to_owned(),
                    path: "/mcp".to_owned(),
                    host: GATEWAY_HOST.to_owned(),
                    headers,
                    body,
                    ..HttpRequest::default()
                }),
            }),
            context_extensions: HashMap::from([
                ("agentsec_audience".to_owned(), audience.to_owned()),
                ("agentsec_mcp_server".to_owned(), server.to_owned()),
            ]),
            ..AttributeContext::default()
        }),
    }
}

/// The decision id of an allow, `None` for any refusal.
fn allowed_decision(response: &CheckResponse) -> Option<String> {
    if response.status.as_ref().map(|status| status.code) != Some(0) {
        return None;
    }
    let Some(HttpResponse::OkResponse(ok)) = &response.http_response else {
        return None;
    };
    ok.headers
        .iter()
        .filter_map(|option| option.header.as_ref())
        .find(|header| header.key == "x-agentsec-decision-id")
        .map(|header| header.value.clone())
}

/// The HTTP status and JSON body of a refusal (0 and null for an allow).
fn denial(response: &CheckResponse) -> (i32, Value) {
    let Some(HttpResponse::DeniedResponse(denied)) = &response.http_response else {
        return (0, Value::Null);
    };
    (
        denied.status.as_ref().map_or(0, |status| status.code),
        decision_of(serde_json::from_str(&denied.body).unwrap_or(Value::Null)),
    )
}

/// The decision in a denial body: the body itself, or for an MCP message
/// the JSON-RPC error's `data` (its message as the reason when it has
/// none).
fn decision_of(body: Value) -> Value {
    match body.get("error") {
        Some(error) if error.is_object() => error
            .get("data")
            .cloned()
            .unwrap_or_else(|| json!({ "reason": error["message"] })),
        _ => body,
    }
}

fn denial_text(response: &CheckResponse) -> String {
    let (code, body) = denial(response);
    format!("{code} {}", text(&body["reason"]))
}

fn http_reason(code: i32) -> &'static str {
    match code {
        401 => "Unauthorized",
        403 => "Forbidden",
        503 => "Service Unavailable",
        0 => "(allowed)",
        _ => "",
    }
}

/// A refused call as the transcript shows it: the gRPC status and the
/// message (for OAuth errors, `<error>: <description>`).
fn status_text(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

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
    let payload = token.split('.').nth(1).context("the token is not a JWT")?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .context("the token's payload is not base64url")?;
    serde_json::from_slice(&bytes).context("the token's payload is not JSON")
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
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

#[cfg(test)]
mod tests {
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
