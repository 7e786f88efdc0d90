//! Reading the revocation state from its owners: identity-svc's
//! `ListRevocations` and exchange-svc's `ListRevokedGrants`, called with
//! policy-svc's service identity (`revocations.client_id`).

use std::sync::Arc;
use std::time::Duration;

use agentsec_common::admin_token::{AGENTS_READ_SCOPE, REVOCATIONS_READ_SCOPE};
use agentsec_common::follower::BoxError;
use agentsec_common::telemetry::TraceContextInterceptor;
use agentsec_common::time::{datetime, timestamp};
use agentsec_common::tls::ClientTls;
use agentsec_common::upstream::{authorized, channel, ServiceIdentity, TracedChannel};
use agentsec_proto::common::v1::PageRequest;
use agentsec_proto::exchange::v1::exchange_service_client::ExchangeServiceClient;
use agentsec_proto::exchange::v1::ListRevokedGrantsRequest;
use agentsec_proto::identity::v1::{
    AgentStatus, GetAgentRequest, ListAgentsRequest, ListRevocationsRequest,
};
use chrono::{DateTime, Utc};
use tokio::sync::Mutex;

use super::{AgentStanding, Registered, Revocations};
use crate::config::{IdentityConfig, RevocationConfig};

/// A catch-up asks for what changed since the previous listing's `as_of`
/// less this much: a change stamped before `as_of` may become visible
/// (commit) after it was read.
const COMMIT_MARGIN: chrono::Duration = chrono::Duration::seconds(10);

pub struct Owners {
    identity: ServiceIdentity,
    exchange: Option<ExchangeServiceClient<TracedChannel>>,
    /// Where the previous listing of each owner ended.
    identity_as_of: Mutex<Option<DateTime<Utc>>>,
    exchange_as_of: Mutex<Option<DateTime<Utc>>>,
}

/// policy-svc's service identity at identity-svc (`[identity]`), for
/// `audience` and `scope`; `None` without `identity.endpoint`.
pub fn service_identity(
    config: &IdentityConfig,
    audience: &str,
    scope: &str,
    tls: &Arc<ClientTls>,
) -> Result<Option<ServiceIdentity>, String> {
    Ok(config
        .client(tls)?
        .map(|client| config.identity("policy-svc", &client, audience, scope)))
}

fn missing(what: &str) -> BoxError {
    format!("{what} is missing in a revocation listing").into()
}

impl Owners {
    /// `None` without `identity.endpoint`.
    pub fn new(
        identity: &IdentityConfig,
        config: &RevocationConfig,
        admin_audience: &str,
        tls: &Arc<ClientTls>,
    ) -> Result<Option<Self>, String> {
        let timeout = Duration::from_millis(config.timeout_ms);
        let Some(identity) = service_identity(
            identity,
            admin_audience,
            &format!("{AGENTS_READ_SCOPE} {REVOCATIONS_READ_SCOPE}"),
            tls,
        )?
        else {
            return Ok(None);
        };
        let exchange = match &config.exchange_endpoint {
            Some(url) => Some(ExchangeServiceClient::with_interceptor(
                channel("revocations.exchange_endpoint", url, timeout, tls)?,
                TraceContextInterceptor,
            )),
            None => None,
        };
        Ok(Some(Self {
            identity,
            exchange,
            identity_as_of: Mutex::new(None),
            exchange_as_of: Mutex::new(None),
        }))
    }

    /// Everything in force (`full`), or what changed since the previous
    /// listing of each owner.
    pub async fn list(&self, full: bool) -> Result<Revocations, BoxError> {
        let mut revocations = Revocations::default();
        let identity = &self.identity;
        {
            let mut as_of = self.identity_as_of.lock().await;
            let since = if full { None } else { *as_of };
            let listed = self
                .list_identity(identity, since, &mut revocations)
                .await?;
            if let Some(since) = since {
                // Attributes change without revoking anything; events
                // carry them only while a stream is live.
                revocations.attributes = self.agent_attributes(Some(since - COMMIT_MARGIN)).await?;
            }
            *as_of = Some(listed);
        }
        if let Some(exchange) = &self.exchange {
            let mut as_of = self.exchange_as_of.lock().await;
            let since = if full { None } else { *as_of };
            *as_of = Some(
                self.list_exchange(identity, exchange, since, &mut revocations)
                    .await?,
            );
        }
        Ok(revocations)
    }

    /// Registry attributes read page by page with ListAgents: of every
    /// agent that has some, or (`updated_since`) of every agent updated
    /// since then, with or without attributes.
    pub async fn agent_attributes(
        &self,
        updated_since: Option<DateTime<Utc>>,
    ) -> Result<Vec<(String, Registered)>, BoxError> {
        let identity = &self.identity;
        let mut all = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = ListAgentsRequest {
                page: Some(PageRequest {
                    page_size: 1_000,
                    page_token: page_token.clone(),
                }),
                updated_since: updated_since.map(timestamp),
                ..ListAgentsRequest::default()
            };
            let page = identity
                .with_token(|token| {
                    let mut client = identity.identity_client();
                    let request = request.clone();
                    async move { client.list_agents(authorized(request, &token)?).await }
                })
                .await?
                .into_inner();
            all.extend(
                page.agents
                    .into_iter()
                    .filter(|agent| updated_since.is_some() || !agent.attributes.is_empty())
                    .map(|agent| {
                        let registered = Registered {
                            tenant: agent.tenant,
                            attributes: agent.attributes,
                        };
                        (agent.id, registered)
                    }),
            );
            page_token = page
                .page
                .map(|page| page.next_page_token)
                .unwrap_or_default();
            if page_token.is_empty() {
                return Ok(all);
            }
        }
    }

    /// One agent's registry attributes now (empty when it has none or is
    /// gone).
    pub async fn attributes_of(&self, agent_id: &str) -> Result<Registered, BoxError> {
        let identity = &self.identity;
        let request = GetAgentRequest {
            agent_id: agent_id.to_owned(),
        };
        let answer = identity
            .with_token(|token| {
                let mut client = identity.identity_client();
                let request = request.clone();
                async move { client.get_agent(authorized(request, &token)?).await }
            })
            .await;
        match answer {
            Ok(response) => Ok(response
                .into_inner()
                .agent
                .map(|agent| Registered {
                    tenant: agent.tenant,
                    attributes: agent.attributes,
                })
                .unwrap_or_default()),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(Registered::default()),
            Err(status) => Err(status.into()),
        }
    }

    async fn list_identity(
        &self,
        identity: &ServiceIdentity,
        since: Option<DateTime<Utc>>,
        into: &mut Revocations,
    ) -> Result<DateTime<Utc>, BoxError> {
        let request = ListRevocationsRequest {
            since: since.map(|since| timestamp(since - COMMIT_MARGIN)),
        };
        let mut stream = identity
            .with_token(|token| {
                let mut client = identity.identity_client();
                async move { client.list_revocations(authorized(request, &token)?).await }
            })
            .await?
            .into_inner();
        let mut as_of = None;
        while let Some(batch) = stream.message().await? {
            for token in batch.revoked_tokens {
                let exp = token
                    .expire_time
                    .ok_or_else(|| missing("a token's expire_time"))?;
                into.tokens.push((token.jti, exp.seconds));
            }
            for credential in batch.deleted_credentials {
                let deleted = credential
                    .delete_time
                    .ok_or_else(|| missing("a credential's delete_time"))?;
                into.credentials
                    .push((credential.credential_id, deleted.seconds));
            }
            for agent in batch.agents {
                into.agents.push((
                    agent.agent_id,
                    AgentStanding {
                        active: agent.status == AgentStatus::Active as i32,
                        generation: agent.token_generation,
                        generation_time: agent.generation_time.map_or(0, |time| time.seconds),
                    },
                ));
            }
            as_of = batch.as_of.as_ref().and_then(datetime).or(as_of);
        }
        as_of.ok_or_else(|| missing("as_of"))
    }

    async fn list_exchange(
        &self,
        identity: &ServiceIdentity,
        exchange: &ExchangeServiceClient<TracedChannel>,
        since: Option<DateTime<Utc>>,
        into: &mut Revocations,
    ) -> Result<DateTime<Utc>, BoxError> {
        let request = ListRevokedGrantsRequest {
            since: since.map(|since| timestamp(since - COMMIT_MARGIN)),
        };
        let mut stream = identity
            .with_token(|token| {
                let mut client = exchange.clone();
                async move {
                    client
                        .list_revoked_grants(authorized(request, &token)?)
                        .await
                }
            })
            .await?
            .into_inner();
        let mut as_of = None;
        while let Some(batch) = stream.message().await? {
            for grant in batch.grants {
                let revoked = grant
                    .revoke_time
                    .ok_or_else(|| missing("a grant's revoke_time"))?;
                into.grants.push((grant.grant_id, revoked.seconds));
            }
            as_of = batch.as_of.as_ref().and_then(datetime).or(as_of);
        }
        as_of.ok_or_else(|| missing("as_of"))
    }
}
