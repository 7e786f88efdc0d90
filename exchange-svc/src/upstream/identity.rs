//! identity-svc as exchange-svc uses it: introspection of actor tokens and
//! the status of the agents in a chain, read with exchange-svc's own
//! service identity (an admin token obtained with client credentials and
//! renewed before it expires).

use std::sync::RwLock;
use std::time::{Duration, Instant};

use agentsec_common::admin_token::ADMIN_SCOPE;
use agentsec_common::error::ApiError;
use agentsec_common::telemetry::TraceContextInterceptor;
use agentsec_proto::identity::v1::identity_service_client::IdentityServiceClient;
use agentsec_proto::identity::v1::issue_token_request::ClientAuthentication;
use agentsec_proto::identity::v1::{
    AgentStatus, GetAgentRequest, GrantType, IntrospectTokenRequest, IntrospectTokenResponse,
    IssueTokenRequest,
};
use tokio::sync::Mutex;
use tonic::Code;

use super::{authorized, channel, unavailable, TracedChannel};
use crate::config::IdentityConfig;

/// A service token is renewed this long before it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(30);
const SERVICE: &str = "identity-svc";

pub struct IdentityClient {
    client: IdentityServiceClient<TracedChannel>,
    client_id: String,
    client_secret: String,
    admin_audience: String,
    /// The current service token and when to renew it; read on every call.
    service_token: RwLock<Option<(String, Instant)>>,
    /// Held while a new token is obtained, so that one request does it.
    renewal: Mutex<()>,
}

impl IdentityClient {
    /// `None` when `identity.endpoint` is unset.
    pub fn new(config: &IdentityConfig, admin_audience: &str) -> Result<Option<Self>, String> {
        let Some(endpoint) = &config.endpoint else {
            return Ok(None);
        };
        let channel = channel(
            "identity.endpoint",
            endpoint,
            Duration::from_millis(config.timeout_ms),
        )?;
        Ok(Some(Self {
            client: IdentityServiceClient::with_interceptor(channel, TraceContextInterceptor),
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone(),
            admin_audience: admin_audience.to_owned(),
            service_token: RwLock::new(None),
            renewal: Mutex::new(()),
        }))
    }

    /// exchange-svc's admin token from identity-svc (also its credential
    /// towards policy-svc), obtained again when it is close to expiry or
    /// `stale` names the one just refused.
    pub async fn service_token(&self, stale: Option<&str>) -> Result<String, ApiError> {
        if let Some(token) = self.usable_token(stale) {
            return Ok(token);
        }
        let _renewing = self.renewal.lock().await;
        // Another request may have renewed it while this one waited.
        if let Some(token) = self.usable_token(stale) {
            return Ok(token);
        }
        let response = self
            .client
            .clone()
            .issue_token(IssueTokenRequest {
                grant_type: GrantType::ClientCredentials as i32,
                client_id: self.client_id.clone(),
                client_authentication: Some(ClientAuthentication::ClientSecret(
                    self.client_secret.clone(),
                )),
                scope: ADMIN_SCOPE.to_owned(),
                audience: self.admin_audience.clone(),
                ..IssueTokenRequest::default()
            })
            .await
            .map_err(|status| match status.code() {
                Code::Unauthenticated | Code::PermissionDenied | Code::InvalidArgument => {
                    tracing::error!(
                        message = status.message(),
                        "identity-svc refused exchange-svc's service identity (identity.client_id)"
                    );
                    ApiError::Unavailable {
                        what: "identity-svc (exchange-svc's service identity was refused)"
                            .to_owned(),
                    }
                }
                _ => unavailable(SERVICE, &status),
            })?
            .into_inner();
        let lifetime = Duration::from_secs(response.expires_in.max(0) as u64);
        let renew_at = Instant::now() + lifetime.saturating_sub(RENEW_BEFORE);
        *self
            .service_token
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) =
            Some((response.access_token.clone(), renew_at));
        Ok(response.access_token)
    }

    /// The cached service token, unless it is due for renewal or `stale`.
    fn usable_token(&self, stale: Option<&str>) -> Option<String> {
        let cached = self
            .service_token
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        cached
            .as_ref()
            .filter(|(token, renew_at)| Instant::now() < *renew_at && stale != Some(token.as_str()))
            .map(|(token, _)| token.clone())
    }

    /// Runs `call` with the service token, once more with a new token if
    /// identity-svc no longer accepts the cached one.
    async fn with_token<T, F, Fut>(&self, call: F) -> Result<T, tonic::Status>
    where
        F: Fn(IdentityServiceClient<TracedChannel>, String) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        let token = self
            .service_token(None)
            .await
            .map_err(tonic::Status::from)?;
        match call(self.client.clone(), token.clone()).await {
            Err(status) if status.code() == Code::Unauthenticated => {
                let token = self
                    .service_token(Some(&token))
                    .await
                    .map_err(tonic::Status::from)?;
                call(self.client.clone(), token).await
            }
            other => other,
        }
    }

    /// Introspects an actor token; `None` when it is not active.
    pub async fn introspect(
        &self,
        token: &str,
    ) -> Result<Option<IntrospectTokenResponse>, ApiError> {
        let response = self
            .with_token(|mut client, service_token| {
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
            .with_token(|mut client, service_token| {
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

fn upstream_error(status: &tonic::Status) -> ApiError {
    unavailable(SERVICE, status)
}
