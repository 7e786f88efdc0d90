//! Introspection (RFC 7662), the callers of the protected endpoints,
//! revocation (RFC 7009), and the revocation listing of enforcement points.

use std::sync::Arc;

use agentsec_common::error::{ApiError, OAuthError, OAuthErrorCode};
use agentsec_common::jwt::{self, Clock, JwtError, Times};
use agentsec_common::keys;
use agentsec_proto::common::v1::Outcome;
use chrono::Utc;

use super::claims::{AccessClaims, AdminScope, ADMIN_SCOPE, MAX_TOKEN_BYTES};
use super::{oauth, server_error, store_failed, Caller, Client, ClientCredentials, TokenService};
use crate::domain::agent::Status;
use crate::error::IdentityError;
use crate::events::{AuditRecord, Invalidation, InvalidationKind};
use crate::store::{revocations, tokens};
use agentsec_common::store::db_err;
use agentsec_common::verified;

impl TokenService {
    /// What enforcement points need to know about revocations (see
    /// `store::revocations`). Only a global admin may list it: it spans
    /// every tenant.
    pub async fn revocations(
        &self,
        admin: &AdminScope,
        since: Option<chrono::DateTime<Utc>>,
        now: chrono::DateTime<Utc>,
    ) -> Result<revocations::Revocations, IdentityError> {
        if *admin != AdminScope::Global {
            return Err(IdentityError::denied(
                "listing revocations needs a global admin",
            ));
        }
        Ok(revocations::list(&self.db, since, now)
            .await
            .map_err(db_err("listing revocations"))?)
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
        let internal = ApiError::from;
        if self
            .standing
            .is_revoked(&claims.jti)
            .await
            .map_err(internal)?
        {
            return Ok(None);
        }
        let is_configured_client = self
            .bootstrap
            .as_ref()
            .is_some_and(|admin| admin.client_id == claims.sub)
            || self.service_clients.contains_key(&claims.sub);
        if is_configured_client {
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

    /// Introspection as `caller` may see it (RFC 7662 §4 lets the answer
    /// depend on who asks): an agent sees only tokens of its own tenant, a
    /// tenant admin those of its tenant; any other token is not active for
    /// them, so that no caller learns of another tenant's agents and owners.
    pub async fn introspect_for(
        &self,
        caller: &Caller,
        token: &str,
    ) -> Result<Option<AccessClaims>, ApiError> {
        let claims = self.introspect(token).await?;
        Ok(claims.filter(|claims| {
            let tenant = claims.tenant.as_deref();
            match caller {
                Caller::Admin(scope) => {
                    tenant.map_or(*scope == AdminScope::Global, |tenant| scope.covers(tenant))
                }
                Caller::Agent { tenant: own, .. } => tenant == Some(own.as_str()),
                // The platform's own services (policy-svc, exchange-svc)
                // act for every tenant.
                Caller::Service { .. } => true,
            }
        }))
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
        let times = Times {
            expires_at: claims.exp,
            not_before: Some(claims.nbf),
            issued_at: Some(claims.iat),
        };
        jwt::check_times(times, Utc::now().timestamp(), 0)
            .is_ok()
            .then_some(claims)
    }

    /// The claims of a token this service signed, if its signature and
    /// issuer hold (and, with `check_time`, it is within nbf/exp). A kid we
    /// do not know may be another replica's new key: re-read once.
    async fn verify_signature(&self, token: &str, check_time: bool) -> Option<AccessClaims> {
        let clock = if check_time {
            Clock::At(Utc::now().timestamp())
        } else {
            Clock::Ignored
        };
        let rules = keys::own_token_rules(&self.issuer);
        let verify = || self.keys.current().jwks.verify(token, &rules, clock);
        let verified = match verify() {
            Ok(verified) => verified,
            Err(JwtError::UnknownKid) if self.keys.refresh_for_unknown_kid().await => {
                verify().ok()?
            }
            Err(_) => return None,
        };
        verified.claims_as().ok()
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
        let for_admin_audience = claims.aud == self.config.admin_audience;
        let caller = if for_admin_audience && claims.has_scope(ADMIN_SCOPE) {
            Caller::Admin(AdminScope::of(claims.tenant.clone()))
        } else if claims.tenant.is_none() && self.service_clients.contains_key(&claims.sub) {
            Caller::Service {
                id: claims.sub.clone(),
                scopes: if for_admin_audience {
                    claims.scope.split(' ').map(str::to_owned).collect()
                } else {
                    Vec::new()
                },
            }
        } else {
            Caller::Agent {
                id: claims.sub.clone(),
                tenant: claims.tenant.clone().unwrap_or_default(),
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
            Client::Service(service) => Ok(Caller::Service {
                id: service.client_id,
                scopes: service.scopes,
            }),
            Client::Agent { agent, .. } if agent.status == Status::Active => Ok(Caller::Agent {
                id: agent.id,
                tenant: agent.tenant,
            }),
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
            Caller::Agent { id, .. } | Caller::Service { id, .. } => *id == claims.sub,
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
            .map_err(db_err("revoke"))
            .map_err(store_failed("revoke"))?;
        tokens::revoke(&txn, &claims.jti, &claims.sub, claims.exp, now)
            .await
            .map_err(db_err("revoke"))
            .map_err(store_failed("revoke"))?;
        self.events.audit(record).await.map_err(|err| match err {
            ApiError::Unavailable { what } => oauth(
                OAuthErrorCode::TemporarilyUnavailable,
                format!("{what} is unavailable"),
            ),
            other => server_error("audit", other),
        })?;
        txn.commit()
            .await
            .map_err(db_err("revoke"))
            .map_err(store_failed("revoke"))?;
        self.standing.note_revoked(&claims.jti, claims.exp);
        let mut invalidation =
            Invalidation::new(InvalidationKind::TokenRevoked, &tenant, &claims.sub);
        invalidation.token_jti = claims.jti.clone();
        invalidation.token_expire_time = chrono::DateTime::from_timestamp(claims.exp, 0);
        self.events.invalidate(invalidation).await;
        Ok(())
    }
}
