//! Client authentication at the token endpoint: secrets (compared in
//! constant time against the remembered or freshly read hashes) and
//! `private_key_jwt` assertions (RFC 7523 §2.2 and §3, jti single-use).

use std::sync::Arc;

use agentsec_common::error::{OAuthError, OAuthErrorCode};
use agentsec_common::jwt::{AudienceRule, Clock, JwtError, Rules, TokenType, Unverified};
use agentsec_common::remote_jwks;
use chrono::Utc;
use sha2::{Digest as _, Sha256};

use super::assertion::AssertionClaims;
use super::{
    oauth, server_error, store_failed, Client, ClientCredentials, TokenService, AUTH_FAILED,
    MAX_CLIENT_ID, MAX_SECRET,
};
use crate::domain::credential::Kind;
use crate::domain::credentials::MAX_SECRETS;
use crate::standing::ClientRecord;
use crate::store::{tokens, AgentStore, CredentialStore};

impl TokenService {
    /// Authenticates a client by secret or assertion.
    pub(super) async fn authenticate(
        &self,
        credentials: ClientCredentials,
    ) -> Result<Client, OAuthError> {
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
        if let Some(service) = self.service_clients.get(client_id) {
            return if self
                .pepper
                .find_match(secret, &[service.secret_hash.as_slice()])
                .is_some()
            {
                Ok(Client::Service(service.clone()))
            } else {
                Err(failed())
            };
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
        let Some(agent) = self
            .store
            .agent(agent_id)
            .await
            .map_err(store_failed("agent lookup"))?
        else {
            return Ok(None);
        };
        let secrets = self
            .store
            .credentials(
                &agent.id,
                Some(Kind::ClientSecret),
                None,
                u64::from(MAX_SECRETS),
            )
            .await
            .map_err(store_failed("credential lookup"))?;
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
        let invalid = |why: &str| oauth(OAuthErrorCode::InvalidClient, why.to_owned());
        let refused = |err: JwtError| match err {
            JwtError::TooLarge { .. } => oauth(
                OAuthErrorCode::InvalidRequest,
                err.about("client_assertion"),
            ),
            JwtError::WrongAudience => {
                invalid("client_assertion `aud` must be the token endpoint or the issuer")
            }
            JwtError::WrongIssuer | JwtError::WrongSubject => {
                invalid("client_assertion `iss` and `sub` must both be the client id")
            }
            _ => invalid(&err.about("client_assertion")),
        };
        let unverified = Unverified::parse(assertion).map_err(refused)?;
        let subject = unverified
            .subject()
            .ok_or_else(|| invalid("client_assertion has no `sub`"))?;
        if client_id.is_some_and(|id| id != subject) {
            return Err(invalid("client_id differs from the client_assertion `sub`"));
        }
        if !agentsec_common::ids::is_id(subject, "agt_") {
            return Err(invalid(AUTH_FAILED));
        }
        let kid = unverified
            .kid()
            .ok_or_else(|| refused(JwtError::MissingKid))?;
        let agent = self
            .store
            .agent(subject)
            .await
            .map_err(store_failed("agent lookup"))?
            .ok_or_else(|| invalid(AUTH_FAILED))?;
        let credential = self
            .store
            .public_key(&agent.id, kid)
            .await
            .map_err(store_failed("credential lookup"))?
            .filter(|credential| !credential.is_expired(Utc::now()))
            .ok_or_else(|| {
                invalid("client_assertion `kid` is not a registered key of this client")
            })?;
        let jwk: jsonwebtoken::jwk::Jwk = credential
            .jwk
            .as_deref()
            .and_then(|json| serde_json::from_str(json).ok())
            .ok_or_else(|| server_error("stored jwk", "unreadable public key"))?;
        let registered = jwk
            .common
            .key_algorithm
            .and_then(|alg| alg.to_string().parse::<jsonwebtoken::Algorithm>().ok())
            .ok_or_else(|| server_error("stored jwk", "public key without alg"))?;
        let endpoint = self.token_endpoint();
        // RFC 7523 §3: `iss` and `sub` are the client; `aud` the token
        // endpoint or the issuer; the one algorithm is the key's.
        let rules = Rules {
            issuer: agent.id.clone(),
            algorithms: vec![registered],
            token_type: TokenType::Any,
            audience: AudienceRule::OneOf(vec![endpoint, self.issuer.clone()]),
            subject: Some(agent.id.clone()),
            leeway_secs: self.config.leeway_secs,
        };
        let (alg, _) = unverified.check_header(&rules).map_err(|err| match err {
            JwtError::AlgorithmNotAllowed { .. } => {
                invalid("client_assertion `alg` is not the algorithm registered for this key")
            }
            other => refused(other),
        })?;
        let key =
            remote_jwks::decoding_key(&jwk, alg).map_err(|err| server_error("stored jwk", err))?;
        let now = Utc::now().timestamp();
        let verified = unverified
            .verify(&key, alg, &rules, Clock::At(now))
            .map_err(refused)?;
        let leeway = self.config.leeway_secs as i64;
        let expires_at = verified.times.expires_at;
        if expires_at - now > self.config.max_assertion_lifetime_secs as i64 + leeway {
            return Err(invalid(&format!(
                "client_assertion expires more than {} seconds from now",
                self.config.max_assertion_lifetime_secs
            )));
        }
        let claims: AssertionClaims = verified
            .claims_as()
            .map_err(|_| invalid("client_assertion `jti` must be a string"))?;
        let jti = claims
            .jti
            .filter(|jti| !jti.is_empty() && jti.len() <= 256)
            .ok_or_else(|| invalid("client_assertion needs a `jti` of 1-256 chars"))?;
        let ttl = (expires_at - now + leeway).max(1);
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
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
