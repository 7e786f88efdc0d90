//! identity-svc as exchange-svc uses it: introspection of actor tokens and
//! the status of the agents in a chain, read with exchange-svc's own
//! service identity (a service client's token with `agentsec:agents:read`,
//! renewed before it expires); the same service client provides
//! exchange-svc's tokens towards policy-svc and audit-svc.

use std::sync::Arc;

use agentsec_common::admin_token::{AGENTS_READ_SCOPE, AUDIT_APPEND_SCOPE};
use agentsec_common::error::ApiError;
use agentsec_common::tls::ClientTls;
use agentsec_common::upstream::{ServiceIdentity, TokenSource};
use agentsec_proto::identity::v1::{
    AgentStatus, GetAgentRequest, IntrospectTokenRequest, IntrospectTokenResponse,
};
use tonic::Code;

use super::{authorized, unavailable};
use crate::config::IdentityConfig;
use crate::error::ExchangeError;
use crate::grants::AgentDirectory;

const SERVICE: &str = "identity-svc";

pub struct IdentityClient {
    /// For identity-svc itself (the admin audience).
    identity: ServiceIdentity,
    /// For policy-svc (`policy.audience`).
    policy_caller: ServiceIdentity,
    /// For audit-svc (`audit.audience`).
    auditor: Arc<ServiceIdentity>,
}

impl IdentityClient {
    /// `None` when `identity.endpoint` is unset.
    pub fn new(
        config: &IdentityConfig,
        admin_audience: &str,
        policy_audience: &str,
        audit_audience: &str,
        tls: &Arc<ClientTls>,
    ) -> Result<Option<Self>, String> {
        let Some(client) = config.client(tls)? else {
            return Ok(None);
        };
        let identity =
            |audience: &str, scope: &str| config.identity("exchange-svc", &client, audience, scope);
        Ok(Some(Self {
            identity: identity(admin_audience, AGENTS_READ_SCOPE),
            // policy-svc asks for the audience alone.
            policy_caller: identity(policy_audience, ""),
            auditor: Arc::new(identity(audit_audience, AUDIT_APPEND_SCOPE)),
        }))
    }

    /// exchange-svc's token towards audit-svc.
    pub fn audit_token(&self) -> Arc<dyn TokenSource> {
        self.auditor.clone()
    }

    /// exchange-svc's token towards policy-svc.
    pub async fn policy_token(&self) -> Result<String, ApiError> {
        self.policy_caller.token(None).await
    }

    /// Introspects an actor token; `None` when it is not active.
    pub async fn introspect(
        &self,
        token: &str,
    ) -> Result<Option<IntrospectTokenResponse>, ApiError> {
        let response = self
            .identity
            .with_token(|service_token| {
                let mut client = self.identity.identity_client();
                let message = IntrospectTokenRequest {
                    token: token.to_owned(),
                    token_type_hint: String::new(),
                };
                async move {
                    let request = authorized(message, &service_token)?;
                    client.introspect_token(request).await
                }
            })
            .await
            .map_err(|status| upstream_error(&status))?
            .into_inner();
        Ok(response.active.then_some(response))
    }

    /// Whether the agent exists, belongs to `tenant` and is ACTIVE.
    pub async fn agent_is_active(&self, tenant: &str, agent_id: &str) -> Result<bool, ApiError> {
        let result = self
            .identity
            .with_token(|service_token| {
                let mut client = self.identity.identity_client();
                let message = GetAgentRequest {
                    agent_id: agent_id.to_owned(),
                };
                async move {
                    let request = authorized(message, &service_token)?;
                    client.get_agent(request).await
                }
            })
            .await;
        match result {
            Ok(response) => Ok(response.into_inner().agent.is_some_and(|agent| {
                agent.tenant == tenant && agent.status == AgentStatus::Active as i32
            })),
            Err(status) if status.code() == Code::NotFound => Ok(false),
            Err(status) => Err(upstream_error(&status)),
        }
    }
}

impl AgentDirectory for IdentityClient {
    async fn agent_is_active(&self, tenant: &str, agent_id: &str) -> Result<bool, ExchangeError> {
        Ok(IdentityClient::agent_is_active(self, tenant, agent_id).await?)
    }
}

fn upstream_error(status: &tonic::Status) -> ApiError {
    unavailable(SERVICE, status)
}
