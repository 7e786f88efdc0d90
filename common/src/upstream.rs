//! Calling another AgentSec service: lazily connected channels that carry
//! the caller's trace context, bearer metadata, and a service identity (a
//! service client's token obtained from identity-svc with client
//! credentials and renewed before it expires).

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use agentsec_proto::identity::v1::identity_service_client::IdentityServiceClient;
use agentsec_proto::identity::v1::issue_token_request::ClientAuthentication;
use agentsec_proto::identity::v1::{GrantType, IssueTokenRequest};
use tokio::sync::Mutex;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

use serde::{Deserialize, Serialize};

use crate::config::{check_http_url, ConfigError};
use crate::error::ApiError;
use crate::telemetry::TraceContextInterceptor;
use crate::tls::ClientTls;

pub type TracedChannel = InterceptedService<Channel, TraceContextInterceptor>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A service token is renewed this long before it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(30);

/// A lazily connected channel to `url` (validated with the config; `key`
/// names the setting in errors), each call bounded by `timeout`; over TLS
/// (`tls`) for an `https://` URL.
pub fn channel(
    key: &str,
    url: &str,
    timeout: Duration,
    tls: &Arc<ClientTls>,
) -> Result<Channel, String> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|err| format!("{key}: {err}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(timeout);
    Ok(tls.connect_lazy(endpoint))
}

/// How a service reaches identity-svc with its own service identity (the
/// `[identity]` table of exchange-svc and policy-svc): a service client of
/// identity-svc (`service_clients`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceIdentityConfig {
    /// identity-svc's gRPC base URL.
    pub endpoint: Option<String>,
    /// The service's client id at identity-svc.
    pub client_id: String,
    /// Its client secret (prefer AGENTSEC_IDENTITY__CLIENT_SECRET).
    pub client_secret: String,
    /// Deadline of each call to identity-svc.
    pub timeout_ms: u64,
}

impl Default for ServiceIdentityConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            client_id: String::new(),
            client_secret: String::new(),
            timeout_ms: 2_000,
        }
    }
}

impl std::fmt::Debug for ServiceIdentityConfig {
    // The secret never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceIdentityConfig")
            .field("endpoint", &self.endpoint)
            .field("client_id", &self.client_id)
            .field("client_secret", &crate::redact::REDACTED)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

impl ServiceIdentityConfig {
    /// Checks the values; errors name the `identity.<key>` at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.endpoint {
            check_http_url("identity.endpoint", url)?;
            if self.client_id.is_empty() || self.client_secret.is_empty() {
                return Err(ConfigError::invalid(
                    "identity.client_id",
                    "identity.client_id and identity.client_secret are required with \
                     identity.endpoint",
                ));
            }
        }
        if !(10..=60_000).contains(&self.timeout_ms) {
            return Err(ConfigError::invalid(
                "identity.timeout_ms",
                "must be between 10 and 60000",
            ));
        }
        Ok(())
    }

    /// A lazily connected client of identity-svc; `None` without an
    /// endpoint.
    pub fn client(
        &self,
        tls: &Arc<ClientTls>,
    ) -> Result<Option<IdentityServiceClient<TracedChannel>>, String> {
        let Some(url) = &self.endpoint else {
            return Ok(None);
        };
        let channel = channel(
            "identity.endpoint",
            url,
            Duration::from_millis(self.timeout_ms),
            tls,
        )?;
        Ok(Some(IdentityServiceClient::with_interceptor(
            channel,
            TraceContextInterceptor,
        )))
    }

    /// The service's identity (named `holder` in logs) over `client`, for
    /// `audience` and `scope`.
    pub fn identity(
        &self,
        holder: &'static str,
        client: &IdentityServiceClient<TracedChannel>,
        audience: &str,
        scope: &str,
    ) -> ServiceIdentity {
        ServiceIdentity::new(
            holder,
            client.clone(),
            self.client_id.clone(),
            self.client_secret.clone(),
            audience.to_owned(),
            scope.to_owned(),
        )
    }
}

/// `message` with `authorization: Bearer <token>`.
pub fn authorized<T>(message: T, token: &str) -> Result<tonic::Request<T>, ApiError> {
    let mut request = tonic::Request::new(message);
    let value = format!("Bearer {token}")
        .parse()
        .map_err(|_| ApiError::internal("service token", "not a header value"))?;
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

/// Where a service's bearer token for one callee comes from: a
/// [`ServiceIdentity`], or identity-svc signing its own.
pub trait TokenSource: Send + Sync + 'static {
    /// The token; a new one when `stale` names the one just refused.
    fn token<'a>(
        &'a self,
        stale: Option<&'a str>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, ApiError>> + Send + 'a>>;
}

impl TokenSource for ServiceIdentity {
    fn token<'a>(
        &'a self,
        stale: Option<&'a str>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, ApiError>> + Send + 'a>>
    {
        Box::pin(ServiceIdentity::token(self, stale))
    }
}

/// What a failed call to `service` means for the caller: the answer is
/// unknown, so whatever depended on it fails closed.
pub fn unavailable(service: &str, status: &tonic::Status) -> ApiError {
    tracing::warn!(service, code = ?status.code(), message = status.message(), "upstream call failed");
    ApiError::Unavailable {
        what: service.to_owned(),
    }
}

/// A service's own identity at identity-svc: a token for one audience and
/// the scopes it needs, obtained with the service's client credentials and
/// renewed shortly before it expires.
pub struct ServiceIdentity {
    /// Names the holder in logs ("exchange-svc").
    holder: &'static str,
    client: IdentityServiceClient<TracedChannel>,
    client_id: String,
    client_secret: String,
    audience: String,
    /// Space-delimited; empty = every scope the client holds.
    scope: String,
    /// The current token and when to renew it; read on every call.
    token: RwLock<Option<(String, Instant)>>,
    /// Held while a new token is obtained, so that one request does it.
    renewal: Mutex<()>,
}

impl ServiceIdentity {
    pub fn new(
        holder: &'static str,
        client: IdentityServiceClient<TracedChannel>,
        client_id: String,
        client_secret: String,
        audience: String,
        scope: String,
    ) -> Self {
        Self {
            holder,
            client,
            client_id,
            client_secret,
            audience,
            scope,
            token: RwLock::new(None),
            renewal: Mutex::new(()),
        }
    }

    /// The identity-svc client the token comes from.
    pub fn identity_client(&self) -> IdentityServiceClient<TracedChannel> {
        self.client.clone()
    }

    /// The service token, obtained again when it is close to expiry or
    /// `stale` names the one just refused.
    pub async fn token(&self, stale: Option<&str>) -> Result<String, ApiError> {
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
                scope: self.scope.clone(),
                audience: self.audience.clone(),
                ..IssueTokenRequest::default()
            })
            .await
            .map_err(|status| match status.code() {
                Code::Unauthenticated | Code::PermissionDenied | Code::InvalidArgument => {
                    tracing::error!(
                        holder = self.holder,
                        message = status.message(),
                        "identity-svc refused this service's identity (its client_id)"
                    );
                    ApiError::Unavailable {
                        what: format!(
                            "identity-svc ({}'s service identity was refused)",
                            self.holder
                        ),
                    }
                }
                _ => unavailable("identity-svc", &status),
            })?
            .into_inner();
        let lifetime = Duration::from_secs(response.expires_in.max(0) as u64);
        let renew_at = Instant::now() + lifetime.saturating_sub(RENEW_BEFORE);
        *self
            .token
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) =
            Some((response.access_token.clone(), renew_at));
        Ok(response.access_token)
    }

    /// The cached token, unless it is due for renewal or `stale`.
    fn usable_token(&self, stale: Option<&str>) -> Option<String> {
        let cached = self
            .token
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        cached
            .as_ref()
            .filter(|(token, renew_at)| Instant::now() < *renew_at && stale != Some(token.as_str()))
            .map(|(token, _)| token.clone())
    }

    /// Runs `call` with the service token, once more with a new token if
    /// the callee no longer accepts the cached one.
    pub async fn with_token<T, F, Fut>(&self, call: F) -> Result<T, tonic::Status>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        let token = self.token(None).await.map_err(tonic::Status::from)?;
        match call(token.clone()).await {
            Err(status) if status.code() == Code::Unauthenticated => {
                let token = self
                    .token(Some(&token))
                    .await
                    .map_err(tonic::Status::from)?;
                call(token).await
            }
            other => other,
        }
    }
}
