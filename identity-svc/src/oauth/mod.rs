//! The OAuth 2.0 token service: client authentication, issuance,
//! introspection (RFC 7662) and revocation (RFC 7009). The HTTP endpoints
//! and the gRPC calls both come here, so they behave identically.

pub mod assertion;
pub mod claims;
pub mod http;
mod verified;

use std::sync::Arc;

use agentsec_common::error::{ApiError, OAuthError, OAuthErrorCode};
use agentsec_common::keys::VerifyError;
use agentsec_common::redis::RedisHandle;
use agentsec_proto::common::v1::Outcome;
use chrono::Utc;
use jsonwebtoken::Validation;
use sea_orm::DatabaseConnection;
use sha2::{Digest as _, Sha256};

use crate::config::TokenConfig;
use crate::domain::agent::{Agent, Status};
use crate::domain::scope;
use crate::events::{AuditRecord, Events, Invalidation, InvalidationKind};
use crate::secrets::Pepper;
use crate::standing::ClientRecord;
use crate::store::{agents, credentials, tokens};
use claims::{AccessClaims, AdminScope, ADMIN_SCOPE, MAX_TOKEN_BYTES};

pub const CLIENT_CREDENTIALS: &str = "client_credentials";
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Largest client secret accepted (proto: 256 chars).
const MAX_SECRET: usize = 256;
/// Largest client id accepted.
const MAX_CLIENT_ID: usize = 256;
/// The description every failed client authentication gets, whatever the
/// cause, so that nobody learns which client ids exist.
const AUTH_FAILED: &str = "client authentication failed";

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
    Agent { id: String },
}

/// The bootstrap admin credential, hashed.
#[derive(Clone)]
pub struct BootstrapAdmin {
    pub client_id: String,
    pub secret_hash: [u8; 32],
}

pub struct TokenService {
    pub db: DatabaseConnection,
    pub redis: Option<RedisHandle>,
    pub keys: Arc<crate::keyring::LiveKeys>,
    pub issuer: String,
    pub config: TokenConfig,
    pub pepper: Pepper,
    pub bootstrap: Option<BootstrapAdmin>,
    pub events: Events,
    pub federation: Arc<crate::federation::Federation>,
    pub standing: Arc<crate::standing::Standing>,
    pub verified: verified::VerifiedTokens,
}

fn oauth(code: OAuthErrorCode, description: impl Into<String>) -> OAuthError {
    OAuthError::new(code, description)
}

fn server_error(context: &'static str, err: impl std::fmt::Display) -> OAuthError {
    tracing::error!(context, error = %err, "token endpoint internal error");
    oauth(OAuthErrorCode::ServerError, "internal error")
}

/// Who a client authenticated as.
enum Client {
    BootstrapAdmin,
    Agent {
        agent: Box<Agent>,
        credential_id: String,
    },
}

impl TokenService {
    pub fn token_endpoint(&self) -> String {
        format!("{}/oauth2/token", self.issuer)
    }

    /// The token endpoint: issues a token or refuses, auditing either way.
    pub async fn issue(&self, request: TokenRequest) -> Result<IssuedToken, OAuthError> {
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
                        Client::BootstrapAdmin => {
                            return Err(oauth(
                                OAuthErrorCode::UnauthorizedClient,
                                "the bootstrap admin cannot use the jwt-bearer grant",
                            ))
                        }
                    }
                }
                let matched = self
                    .federation
                    .authenticate(&self.db, &request.assertion, client_id.as_deref())
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
        let claims = match client {
            Client::BootstrapAdmin => {
                let admin_ceiling = [self.config.admin_audience.clone()];
                let audience =
                    scope::audience(&request.audience, &request.resource, &admin_ceiling)?;
                let scopes = scope::grant(&request.scope, &[ADMIN_SCOPE.to_owned()])?;
                let client_id = self
                    .bootstrap
                    .as_ref()
                    .map(|admin| admin.client_id.clone())
                    .unwrap_or_default();
                AccessClaims {
                    iss: self.issuer.clone(),
                    sub: client_id.clone(),
                    aud: audience,
                    exp: now + lifetime,
                    iat: now,
                    nbf: now,
                    jti,
                    scope: scopes.join(" "),
                    client_id,
                    tenant: None,
                    owner: None,
                    cred: None,
                    gen: None,
                }
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
                )?;
                let scopes = scope::grant(&request.scope, &agent.fields.ceiling_scopes)?;
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

    /// Authenticates a client by secret or assertion.
    async fn authenticate(&self, credentials: ClientCredentials) -> Result<Client, OAuthError> {
        match credentials {
            ClientCredentials::Secret {
                client_id, secret, ..
            } => self.authenticate_secret(&client_id, &secret).await,
            ClientCredentials::Assertion {
                client_id,
                assertion,
            } => {
                self.authenticate_assertion(client_id.as_deref(), &assertion)
                    .await
            }
        }
    }

    async fn authenticate_secret(
        &self,
        client_id: &str,
        secret: &str,
    ) -> Result<Client, OAuthError> {
        if client_id.len() > MAX_CLIENT_ID || secret.len() > MAX_SECRET {
            return Err(oauth(
                OAuthErrorCode::InvalidRequest,
                format!("client_id and client_secret are limited to {MAX_CLIENT_ID} chars"),
            ));
        }
        let failed = || oauth(OAuthErrorCode::InvalidClient, AUTH_FAILED);
        if let Some(admin) = &self.bootstrap {
            if admin.client_id == client_id {
                return if self
                    .pepper
                    .find_match(secret, &[admin.secret_hash.as_slice()])
                    .is_some()
                {
                    Ok(Client::BootstrapAdmin)
                } else {
                    Err(failed())
                };
            }
        }
        if !agentsec_common::ids::is_id(client_id, "agt_") {
            let _ = self.pepper.find_match(secret, &[]);
            return Err(failed());
        }
        // The remembered client first; a secret it does not know may be one
        // created since (on this or another replica), so read again before
        // refusing.
        if let Some(record) = self.standing.cached_client(client_id) {
            if let Some(client) = self.match_secret(&record, secret) {
                return Ok(client);
            }
        }
        let epoch = self.standing.epoch();
        let Some(record) = self.load_client(client_id).await? else {
            let _ = self.pepper.find_match(secret, &[]);
            return Err(failed());
        };
        let record = Arc::new(record);
        self.standing.remember_client(epoch, record.clone());
        self.match_secret(&record, secret).ok_or_else(failed)
    }

    async fn load_client(&self, agent_id: &str) -> Result<Option<ClientRecord>, OAuthError> {
        let Some(agent) = agents::get(&self.db, agent_id)
            .await
            .map_err(|err| server_error("agent lookup", err))?
        else {
            return Ok(None);
        };
        let secrets = credentials::list(
            &self.db,
            &agent.id,
            Some(credentials::Kind::ClientSecret),
            None,
            u64::from(crate::registry::MAX_SECRETS),
        )
        .await
        .map_err(|err| server_error("credential lookup", err))?;
        Ok(Some(ClientRecord { agent, secrets }))
    }

    /// The client if `secret` matches one of its unexpired secrets (every
    /// candidate compared in constant time).
    fn match_secret(&self, record: &ClientRecord, secret: &str) -> Option<Client> {
        let now = Utc::now();
        let usable: Vec<_> = record
            .secrets
            .iter()
            .filter(|c| !c.is_expired(now) && c.secret_hash.is_some())
            .collect();
        let hashes: Vec<&[u8]> = usable
            .iter()
            .filter_map(|c| c.secret_hash.as_deref())
            .collect();
        let index = self.pepper.find_match(secret, &hashes)?;
        Some(Client::Agent {
            credential_id: usable[index].id.clone(),
            agent: Box::new(record.agent.clone()),
        })
    }

    async fn authenticate_assertion(
        &self,
        client_id: Option<&str>,
        assertion: &str,
    ) -> Result<Client, OAuthError> {
        if assertion.len() > MAX_TOKEN_BYTES {
            return Err(oauth(
                OAuthErrorCode::InvalidRequest,
                format!("client_assertion is larger than {MAX_TOKEN_BYTES} bytes"),
            ));
        }
        let invalid = |why: &str| oauth(OAuthErrorCode::InvalidClient, why.to_owned());
        let head = assertion::head(assertion).map_err(invalid)?;
        if client_id.is_some_and(|id| id != head.subject) {
            return Err(invalid("client_id differs from the client_assertion `sub`"));
        }
        if !agentsec_common::ids::is_id(&head.subject, "agt_") {
            return Err(invalid(AUTH_FAILED));
        }
        let agent = agents::get(&self.db, &head.subject)
            .await
            .map_err(|err| server_error("agent lookup", err))?
            .ok_or_else(|| invalid(AUTH_FAILED))?;
        let credential = credentials::public_key(&self.db, &agent.id, &head.kid)
            .await
            .map_err(|err| server_error("credential lookup", err))?
            .filter(|credential| !credential.is_expired(Utc::now()))
            .ok_or_else(|| {
                invalid("client_assertion `kid` is not a registered key of this client")
            })?;
        let jwk: jsonwebtoken::jwk::Jwk = credential
            .jwk
            .as_deref()
            .and_then(|json| serde_json::from_str(json).ok())
            .ok_or_else(|| server_error("stored jwk", "unreadable public key"))?;
        let alg = jwk
            .common
            .key_algorithm
            .and_then(|alg| alg.to_string().parse::<jsonwebtoken::Algorithm>().ok())
            .ok_or_else(|| server_error("stored jwk", "public key without alg"))?;
        if head.alg != alg {
            return Err(invalid(
                "client_assertion `alg` is not the algorithm registered for this key",
            ));
        }
        let key = jsonwebtoken::DecodingKey::from_jwk(&jwk)
            .map_err(|err| server_error("stored jwk", err))?;
        let endpoint = self.token_endpoint();
        let claims = assertion::verify(
            assertion,
            &key,
            alg,
            &agent.id,
            &[endpoint.as_str(), self.issuer.as_str()],
            self.config.leeway_secs,
        )
        .map_err(|why| invalid(&why))?;
        let now = Utc::now().timestamp();
        let leeway = self.config.leeway_secs as i64;
        if claims.exp - now > self.config.max_assertion_lifetime_secs as i64 + leeway {
            return Err(invalid(&format!(
                "client_assertion expires more than {} seconds from now",
                self.config.max_assertion_lifetime_secs
            )));
        }
        if claims.iat.is_some_and(|iat| iat > now + leeway) {
            return Err(invalid("client_assertion `iat` is in the future"));
        }
        let jti = claims
            .jti
            .filter(|jti| !jti.is_empty() && jti.len() <= 256)
            .ok_or_else(|| invalid("client_assertion needs a `jti` of 1-256 chars"))?;
        let ttl = (claims.exp - now + leeway).max(1);
        if !self.claim_assertion(&agent.id, &jti, ttl).await? {
            return Err(invalid(
                "client_assertion was already used (replayed `jti`)",
            ));
        }
        Ok(Client::Agent {
            credential_id: credential.id,
            agent: Box::new(agent),
        })
    }

    /// Marks a (client, jti) pair used for `ttl` seconds; false if it was
    /// used before. Redis when configured (shared by replicas), else the
    /// database. Fails closed when the store cannot answer.
    async fn claim_assertion(
        &self,
        client_id: &str,
        jti: &str,
        ttl: i64,
    ) -> Result<bool, OAuthError> {
        let key = hex(&Sha256::digest(format!("{client_id}\n{jti}").as_bytes()));
        match &self.redis {
            Some(redis) => {
                let mut connection = redis.connection.clone();
                let stored: Option<String> = redis::cmd("SET")
                    .arg(redis.key(&format!("agentsec:identity:assertion:{key}")))
                    .arg(1)
                    .arg("NX")
                    .arg("EX")
                    .arg(ttl)
                    .query_async(&mut connection)
                    .await
                    .map_err(|err| {
                        tracing::error!(error = %err, "assertion replay store unavailable");
                        oauth(
                            OAuthErrorCode::TemporarilyUnavailable,
                            "the assertion replay store is unavailable",
                        )
                    })?;
                Ok(stored.is_some())
            }
            None => {
                let now = Utc::now();
                tokens::claim_assertion(&self.db, &key, now.timestamp() + ttl, now)
                    .await
                    .map_err(|err| server_error("assertion replay store", err))
            }
        }
    }

    /// Checks a token of this service: signature, issuer, time, revocation
    /// list, the agent's standing and the credential. `None` = not active.
    pub async fn introspect(&self, token: &str) -> Result<Option<AccessClaims>, ApiError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Ok(None);
        }
        let Some(claims) = self.verified_claims(token).await else {
            return Ok(None);
        };
        let internal = |err: sea_orm::DbErr| ApiError::internal("introspection", err);
        if self
            .standing
            .is_revoked(&claims.jti)
            .await
            .map_err(internal)?
        {
            return Ok(None);
        }
        let is_bootstrap = self
            .bootstrap
            .as_ref()
            .is_some_and(|admin| admin.client_id == claims.sub);
        if is_bootstrap {
            return Ok(Some(claims.as_ref().clone()));
        }
        let (Some(credential), Some(generation)) = (&claims.cred, claims.gen) else {
            return Ok(None);
        };
        if !self
            .standing
            .credential_exists(credential)
            .await
            .map_err(internal)?
        {
            return Ok(None);
        }
        if !self
            .standing
            .agent_active(&claims.sub, generation)
            .await
            .map_err(internal)?
        {
            return Ok(None);
        }
        Ok(Some(claims.as_ref().clone()))
    }

    /// The claims of a token this service signed whose signature and issuer
    /// hold and which is within nbf/exp now.
    async fn verified_claims(&self, token: &str) -> Option<Arc<AccessClaims>> {
        let digest = verified::digest(token);
        let claims = match self.verified.get(&digest) {
            Some(claims) => claims,
            None => {
                let claims = Arc::new(self.verify_signature(token, false).await?);
                self.verified.insert(digest, claims.clone());
                claims
            }
        };
        let now = Utc::now().timestamp();
        (claims.nbf <= now && now <= claims.exp).then_some(claims)
    }

    /// The claims of a token this service signed, if its signature and
    /// issuer hold (and, with `check_time`, it is within nbf/exp). A kid we
    /// do not know may be another replica's new key: re-read once.
    async fn verify_signature(&self, token: &str, check_time: bool) -> Option<AccessClaims> {
        let mut validation = Validation::new(jsonwebtoken::Algorithm::EdDSA);
        validation.set_issuer(&[self.issuer.as_str()]);
        validation.validate_aud = false;
        validation.leeway = 0;
        validation.validate_exp = check_time;
        validation.validate_nbf = check_time;
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        let verify = || {
            self.keys
                .current()
                .jwks
                .verify::<AccessClaims>(token, &validation)
        };
        match verify() {
            Ok(claims) => Some(claims),
            Err(VerifyError::UnknownKid(_)) if self.keys.refresh_for_unknown_kid().await => {
                verify().ok()
            }
            Err(_) => None,
        }
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

    /// The caller behind an `Authorization: Bearer` token: an active token
    /// of this service.
    pub async fn bearer_caller(&self, token: &str) -> Result<(Caller, AccessClaims), ApiError> {
        let claims = self
            .introspect(token)
            .await?
            .ok_or_else(|| ApiError::Unauthenticated {
                reason: "the bearer token is not an active token of this service".to_owned(),
            })?;
        let caller = if claims.aud == self.config.admin_audience && claims.has_scope(ADMIN_SCOPE) {
            Caller::Admin(match &claims.tenant {
                Some(tenant) => AdminScope::Tenant(tenant.clone()),
                None => AdminScope::Global,
            })
        } else {
            Caller::Agent {
                id: claims.sub.clone(),
            }
        };
        Ok((caller, claims))
    }

    /// The caller behind client credentials (introspection and revocation
    /// accept them as RFC 7662 and RFC 7009 allow).
    pub async fn client_caller(
        &self,
        credentials: ClientCredentials,
    ) -> Result<Caller, OAuthError> {
        let basic = credentials.basic();
        let client = self.authenticate(credentials).await.map_err(|mut err| {
            err.basic_auth_challenge = basic;
            err
        })?;
        match client {
            Client::BootstrapAdmin => Ok(Caller::Admin(AdminScope::Global)),
            Client::Agent { agent, .. } if agent.status == Status::Active => {
                Ok(Caller::Agent { id: agent.id })
            }
            Client::Agent { agent, .. } => Err(oauth(
                OAuthErrorCode::UnauthorizedClient,
                format!("the agent is {}", agent.status.as_str()),
            )),
        }
    }

    /// RFC 7009: revokes `token` for `caller`. An unknown, invalid or
    /// expired token is fine (nothing to do); someone else's token is not.
    pub async fn revoke(&self, caller: &Caller, token: &str) -> Result<(), OAuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Ok(());
        }
        let Some(claims) = self.verify_signature(token, true).await else {
            return Ok(());
        };
        let tenant = claims.tenant.clone().unwrap_or_default();
        let allowed = match caller {
            Caller::Admin(scope) => claims
                .tenant
                .as_deref()
                .map_or(*scope == AdminScope::Global, |tenant| scope.covers(tenant)),
            Caller::Agent { id, .. } => *id == claims.sub,
        };
        if !allowed {
            return Err(oauth(
                OAuthErrorCode::UnauthorizedClient,
                "the token was not issued to this client",
            ));
        }
        let now = Utc::now();
        let record = AuditRecord::new("token.revoked", &tenant, &claims.sub, Outcome::Allow)
            .audience(&claims.aud)
            .attribute("jti", claims.jti.clone());
        let txn = sea_orm::TransactionTrait::begin(&self.db)
            .await
            .map_err(|err| server_error("revoke", err))?;
        tokens::revoke(&txn, &claims.jti, &claims.sub, claims.exp, now)
            .await
            .map_err(|err| server_error("revoke", err))?;
        self.events.audit(record).await.map_err(|err| match err {
            ApiError::Unavailable { what } => oauth(
                OAuthErrorCode::TemporarilyUnavailable,
                format!("{what} is unavailable"),
            ),
            other => server_error("audit", other),
        })?;
        txn.commit()
            .await
            .map_err(|err| server_error("revoke", err))?;
        self.standing.note_revoked(&claims.jti, claims.exp);
        let mut invalidation =
            Invalidation::new(InvalidationKind::TokenRevoked, &tenant, &claims.sub);
        invalidation.token_jti = claims.jti.clone();
        invalidation.token_expire_time = chrono::DateTime::from_timestamp(claims.exp, 0);
        self.events.invalidate(invalidation).await;
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
