//! The OAuth 2.0 token service: client authentication, issuance,
//! introspection (RFC 7662) and revocation (RFC 7009). The HTTP endpoints
//! and the gRPC calls both come here, so they behave identically.

pub mod assertion;
pub mod claims;
mod client_auth;
pub mod http;
mod introspection;
pub mod metrics;
pub mod own_token;

use std::sync::Arc;

use agentsec_common::error::{ApiError, OAuthError, OAuthErrorCode};
use agentsec_common::redis::RedisHandle;
use agentsec_common::store::StoreError;
use agentsec_proto::common::v1::Outcome;
use chrono::Utc;
use sea_orm::DatabaseConnection;

use crate::config::TokenConfig;
use crate::domain::agent::{Agent, Status};
use crate::domain::scope;
use crate::events::{AuditRecord, Events};
use crate::secrets::Pepper;
use crate::store::SqlRegistryStore;
use claims::{AccessClaims, AdminScope, ADMIN_SCOPE};

pub const CLIENT_CREDENTIALS: &str = "client_credentials";
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Largest client secret accepted (proto: 256 chars).
const MAX_SECRET: usize = 256;
/// Largest client id accepted.
const MAX_CLIENT_ID: usize = 256;
/// The description every failed client authentication gets, whatever the
/// cause, so that nobody learns which client ids exist.
const AUTH_FAILED: &str = "client authentication failed";
/// What the token endpoint is doing, in logs of its internal errors.
const TOKEN_REQUEST: &str = "token request";

/// How a client proves who it is at the token endpoint.
#[derive(Debug)]
pub enum ClientCredentials {
    /// client_secret_basic (`basic`) or client_secret_post.
    Secret {
        client_id: String,
        secret: String,
        basic: bool,
    },
    /// private_key_jwt.
    Assertion {
        client_id: Option<String>,
        assertion: String,
    },
}

impl ClientCredentials {
    fn basic(&self) -> bool {
        matches!(self, Self::Secret { basic: true, .. })
    }

    fn claimed_client_id(&self) -> &str {
        match self {
            Self::Secret { client_id, .. } => client_id,
            Self::Assertion { client_id, .. } => client_id.as_deref().unwrap_or(""),
        }
    }
}

/// A token request, as HTTP form or gRPC message.
#[derive(Debug)]
pub struct TokenRequest {
    pub grant_type: String,
    /// The `client_id` parameter ("" when absent); for jwt-bearer it picks
    /// the agent when the assertion matches several.
    pub client_id: String,
    pub credentials: Option<ClientCredentials>,
    /// The jwt-bearer grant's external JWT (RFC 7523 §2.1); "" otherwise.
    pub assertion: String,
    pub scope: String,
    pub audience: String,
    pub resource: String,
}

#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub access_token: String,
    pub expires_in: i64,
    pub scope: String,
}

/// An authenticated client or bearer.
#[derive(Debug, Clone)]
pub enum Caller {
    Admin(AdminScope),
    Agent {
        id: String,
        tenant: String,
    },
    /// A service client (`service_clients`); `scopes` are those its token
    /// holds for the admin audience (none for any other audience).
    Service {
        id: String,
        scopes: Vec<String>,
    },
}

/// A service client's credential (`service_clients`), its secret hashed.
#[derive(Clone)]
pub struct ServiceClient {
    pub client_id: String,
    pub secret_hash: [u8; 32],
    pub audiences: Vec<String>,
    pub scopes: Vec<String>,
}

/// The bootstrap admin credential, hashed.
#[derive(Clone)]
pub struct BootstrapAdmin {
    pub client_id: String,
    pub secret_hash: [u8; 32],
}

pub struct TokenService {
    /// The token tables (revocation list, assertion replay store).
    pub db: DatabaseConnection,
    /// Agents and their credentials.
    pub store: SqlRegistryStore,
    pub redis: Option<RedisHandle>,
    pub keys: Arc<crate::keyring::LiveKeys>,
    pub issuer: String,
    pub config: TokenConfig,
    pub pepper: Pepper,
    pub bootstrap: Option<BootstrapAdmin>,
    /// By client id.
    pub service_clients: std::collections::HashMap<String, ServiceClient>,
    pub events: Events,
    pub federation: Arc<crate::federation::Federation>,
    pub standing: Arc<crate::standing::Standing>,
    pub verified: agentsec_common::verified::VerifiedTokens<claims::AccessClaims>,
    pub metrics: metrics::TokenMetrics,
}

fn oauth(code: OAuthErrorCode, description: impl Into<String>) -> OAuthError {
    OAuthError::new(code, description)
}

fn server_error(context: &'static str, err: impl std::fmt::Display) -> OAuthError {
    tracing::error!(context, error = %err, "token endpoint internal error");
    oauth(OAuthErrorCode::ServerError, "internal error")
}

/// A failed store call at a token endpoint: `temporarily_unavailable`
/// when the database is unreachable, `server_error` otherwise.
fn store_failed(context: &'static str) -> impl Fn(StoreError) -> OAuthError {
    move |err| OAuthError::from_api(err.into(), context)
}

/// Who a client authenticated as.
enum Client {
    BootstrapAdmin,
    Service(ServiceClient),
    Agent {
        agent: Box<Agent>,
        credential_id: String,
    },
}

impl TokenService {
    pub fn token_endpoint(&self) -> String {
        format!("{}/oauth2/token", self.issuer)
    }

    /// The token endpoint: issues a token or refuses, auditing and
    /// counting either way.
    pub async fn issue(&self, request: TokenRequest) -> Result<IssuedToken, OAuthError> {
        let grant_type = request.grant_type.clone();
        let answer = self.issue_audited(request).await;
        self.metrics.record(&grant_type, &answer);
        answer
    }

    async fn issue_audited(&self, request: TokenRequest) -> Result<IssuedToken, OAuthError> {
        let claimed = request
            .credentials
            .as_ref()
            .map(|c| {
                c.claimed_client_id()
                    .chars()
                    .take(MAX_CLIENT_ID)
                    .collect::<String>()
            })
            .unwrap_or_else(|| request.client_id.chars().take(MAX_CLIENT_ID).collect());
        // For a refused jwt-bearer request, the external token's claimed
        // issuer and subject tell which workload tried (unverified, so only
        // recorded, never trusted).
        let external = (!request.assertion.is_empty())
            .then(|| assertion::unverified_issuer_and_subject(&request.assertion))
            .flatten();
        let mut subject: Option<(String, String)> = None;
        let result = self.issue_inner(request, &mut subject).await;
        let (tenant, agent_id) = subject.unwrap_or_default();
        let record = match &result {
            Ok((issued, audience)) => {
                AuditRecord::new("token.issued", &tenant, &agent_id, Outcome::Allow)
                    .audience(audience)
                    .attribute("scope", issued.scope.clone())
            }
            Err(err) => {
                let mut record =
                    AuditRecord::new("token.refused", &tenant, &agent_id, Outcome::Deny)
                        .reason(format!("{}: {}", err.code(), err.error_description))
                        .attribute("client_id", claimed);
                if let Some((issuer, subject)) = external {
                    record = record
                        .attribute("assertion_iss", issuer)
                        .attribute("assertion_sub", subject);
                }
                record
            }
        };
        // Nothing is handed out unaudited: a token whose event cannot be
        // queued is not returned.
        if let Err(err) = self.events.audit(record).await {
            return Err(match err {
                ApiError::Unavailable { what } => oauth(
                    OAuthErrorCode::TemporarilyUnavailable,
                    format!("{what} is unavailable"),
                ),
                other => server_error("audit", other),
            });
        }
        result.map(|(issued, _)| issued)
    }

    async fn issue_inner(
        &self,
        request: TokenRequest,
        subject: &mut Option<(String, String)>,
    ) -> Result<(IssuedToken, String), OAuthError> {
        let client = match request.grant_type.as_str() {
            CLIENT_CREDENTIALS => {
                let credentials = request.credentials.ok_or_else(|| {
                    oauth(
                        OAuthErrorCode::InvalidClient,
                        "client authentication is required",
                    )
                })?;
                let basic = credentials.basic();
                self.authenticate(credentials).await.map_err(|mut err| {
                    err.basic_auth_challenge = basic;
                    err
                })?
            }
            "" => {
                return Err(oauth(
                    OAuthErrorCode::InvalidRequest,
                    "grant_type is required",
                ))
            }
            JWT_BEARER => {
                self.federation.check_enabled()?;
                // RFC 7523 §3.1: client authentication is optional with this
                // grant; when given it must hold and name the matched agent.
                let mut client_id = (!request.client_id.is_empty()).then_some(request.client_id);
                if let Some(credentials) = request.credentials {
                    let basic = credentials.basic();
                    match self.authenticate(credentials).await.map_err(|mut err| {
                        err.basic_auth_challenge = basic;
                        err
                    })? {
                        Client::Agent { agent, .. } => client_id = Some(agent.id),
                        Client::BootstrapAdmin | Client::Service(_) => {
                            return Err(oauth(
                                OAuthErrorCode::UnauthorizedClient,
                                "only agents can use the jwt-bearer grant",
                            ))
                        }
                    }
                }
                let matched = self
                    .federation
                    .authenticate(&self.store, &request.assertion, client_id.as_deref())
                    .await?;
                Client::Agent {
                    agent: Box::new(matched.agent),
                    credential_id: matched.credential_id,
                }
            }
            _ => {
                return Err(oauth(
                    OAuthErrorCode::UnsupportedGrantType,
                    if self.federation.is_enabled() {
                        "grant_type must be client_credentials or urn:ietf:params:oauth:grant-type:jwt-bearer"
                    } else {
                        "grant_type must be client_credentials"
                    },
                ))
            }
        };
        let now = Utc::now().timestamp();
        let lifetime = self.config.lifetime_secs as i64;
        let jti =
            agentsec_common::ids::new_id("tok_").map_err(|err| server_error("token id", err))?;
        // Configured clients belong to no tenant and have no credential row
        // or generation: their tokens live as long as their configuration.
        let configured = |client_id: String, audiences: &[String], scopes: &[String]| {
            let audience = scope::audience(&request.audience, &request.resource, audiences)
                .map_err(|err| err.into_oauth(TOKEN_REQUEST))?;
            let scopes = scope::grant(&request.scope, scopes)
                .map_err(|err| err.into_oauth(TOKEN_REQUEST))?;
            Ok::<_, OAuthError>(AccessClaims {
                iss: self.issuer.clone(),
                sub: client_id.clone(),
                aud: audience,
                exp: now + lifetime,
                iat: now,
                nbf: now,
                jti: jti.clone(),
                scope: scopes.join(" "),
                client_id,
                tenant: None,
                owner: None,
                cred: None,
                gen: None,
            })
        };
        let claims = match client {
            Client::BootstrapAdmin => {
                let client_id = self
                    .bootstrap
                    .as_ref()
                    .map(|admin| admin.client_id.clone())
                    .unwrap_or_default();
                configured(
                    client_id,
                    std::slice::from_ref(&self.config.admin_audience),
                    &[ADMIN_SCOPE.to_owned()],
                )?
            }
            Client::Service(service) => {
                configured(service.client_id, &service.audiences, &service.scopes)?
            }
            Client::Agent {
                agent,
                credential_id,
            } => {
                *subject = Some((agent.tenant.clone(), agent.id.clone()));
                if agent.status != Status::Active {
                    return Err(oauth(
                        OAuthErrorCode::UnauthorizedClient,
                        format!("the agent is {}", agent.status.as_str()),
                    ));
                }
                let audience = scope::audience(
                    &request.audience,
                    &request.resource,
                    &agent.fields.ceiling_audiences,
                )
                .map_err(|err| err.into_oauth(TOKEN_REQUEST))?;
                let scopes = scope::grant(&request.scope, &agent.fields.ceiling_scopes)
                    .map_err(|err| err.into_oauth(TOKEN_REQUEST))?;
                AccessClaims {
                    iss: self.issuer.clone(),
                    sub: agent.id.clone(),
                    aud: audience,
                    exp: now + lifetime,
                    iat: now,
                    nbf: now,
                    jti,
                    scope: scopes.join(" "),
                    client_id: agent.id.clone(),
                    tenant: Some(agent.tenant.clone()),
                    owner: Some(agent.fields.owner.clone()),
                    cred: Some(credential_id),
                    gen: Some(agent.token_generation),
                }
            }
        };
        let access_token = self
            .keys
            .current()
            .active
            .sign("at+jwt", &claims)
            .map_err(|err| server_error("sign", err))?;
        Ok((
            IssuedToken {
                access_token,
                expires_in: lifetime,
                scope: claims.scope,
            },
            claims.aud,
        ))
    }

    /// Activates a new signing key (global admin). The previous key stays
    /// published until every token it signed has expired, counting the time
    /// other replicas may still sign with it before they re-read the keys.
    pub async fn rotate_signing_key(
        &self,
        algorithm: Option<agentsec_common::keys::SigningAlgorithm>,
    ) -> Result<Vec<agentsec_common::keys::store::StoredKey>, ApiError> {
        if self.keys.uses_key_file() {
            return Err(ApiError::FailedPrecondition {
                reason: "the signing key comes from signing.key_file; rotate by replacing the file"
                    .to_owned(),
            });
        }
        let publish_for = chrono::Duration::seconds(
            (self.config.lifetime_secs + self.config.leeway_secs) as i64
                + 2 * crate::keyring::REFRESH_EVERY.as_secs() as i64,
        );
        let published = self
            .keys
            .rotate(algorithm, publish_for)
            .await
            .map_err(|err| ApiError::internal("signing key rotation", err))?;
        let new_kid = published
            .first()
            .map(|key| key.jwk.kid.clone())
            .unwrap_or_default();
        self.events
            .audit(
                AuditRecord::new("signing_key.rotated", "", "", Outcome::Allow)
                    .attribute("kid", new_kid),
            )
            .await?;
        Ok(published)
    }
}
