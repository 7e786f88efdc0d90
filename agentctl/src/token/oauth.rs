//! `agentctl token client-credentials`, `exchange` and `introspect`: the
//! OAuth calls of identity-svc and exchange-svc, over their gRPC APIs.

use std::path::PathBuf;
use std::sync::Arc;

use agentsec_common::jwt::{Unverified, ACCESS_TOKEN_TYPE};
use agentsec_common::tls::ClientTls;
use agentsec_proto::exchange::v1::exchange_service_client::ExchangeServiceClient;
use agentsec_proto::exchange::v1::ExchangeRequest;
use agentsec_proto::identity::v1::identity_service_client::IdentityServiceClient;
use agentsec_proto::{exchange, identity};
use anyhow::Context as _;
use serde_json::{json, Value};

use super::token_argument;
use crate::admin::{bearer, client_credentials, connect, failed, AdminArgs, ServiceUrls};
use crate::output::{time, Column, Format};

/// RFC 8693 §3 token type URNs.
const ACCESS_TOKEN_URN: &str = "urn:ietf:params:oauth:token-type:access_token";
const JWT_URN: &str = "urn:ietf:params:oauth:token-type:jwt";

#[derive(Debug, clap::Args)]
pub struct ClientCredentials {
    /// The client id (an agent id, or a service client's id).
    #[arg(long)]
    client_id: String,
    /// A file holding the client secret.
    #[arg(long, env = "AGENTCTL_CLIENT_SECRET_FILE")]
    client_secret_file: PathBuf,
    /// The audience the token is for.
    #[arg(long)]
    audience: String,
    /// A scope to ask for (repeatable; none = every scope the client may
    /// hold for the audience).
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// Print the access token alone (for `$(...)`).
    #[arg(long)]
    token_only: bool,
}

#[derive(Debug, clap::Args)]
pub struct Exchange {
    /// The token of the party acted for: a person's token, or a token
    /// exchange-svc issued (a further hop). `-` reads stdin.
    #[arg(long, env = "AGENTCTL_SUBJECT_TOKEN", hide_env_values = true)]
    subject_token: String,
    /// The acting agent's access token from identity-svc.
    #[arg(long, env = "AGENTCTL_ACTOR_TOKEN", hide_env_values = true)]
    actor_token: String,
    /// The target system.
    #[arg(long)]
    audience: String,
    /// A scope to ask for (repeatable; none = all the grant allows).
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// Print the access token alone (for `$(...)`).
    #[arg(long)]
    token_only: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Issuer {
    Identity,
    Exchange,
}

#[derive(Debug, clap::Args)]
pub struct Introspect {
    /// The token (`-` reads stdin).
    #[arg(long)]
    token: String,
    /// The service that issued it (default: exchange-svc when the token's
    /// `iss` is --exchange's URL, identity-svc otherwise).
    #[arg(long = "at", value_enum)]
    issuer: Option<Issuer>,
}

const ISSUED: [Column; 4] = [
    Column::new("ACCESS TOKEN", "access_token"),
    Column::new("TOKEN TYPE", "token_type"),
    Column::new("EXPIRES IN", "expires_in"),
    Column::new("SCOPE", "scope"),
];

/// An issued token: alone, or with its facts.
fn issued(value: &Value, token_only: bool, format: Format) -> String {
    if token_only {
        return format!("{}\n", value["access_token"].as_str().unwrap_or_default());
    }
    format.one(value, &ISSUED)
}

impl ClientCredentials {
    pub async fn run(
        self,
        urls: &ServiceUrls,
        tls: &Arc<ClientTls>,
        format: Format,
    ) -> anyhow::Result<String> {
        let secret = std::fs::read_to_string(&self.client_secret_file).with_context(|| {
            format!(
                "reading the client secret from {}",
                self.client_secret_file.display()
            )
        })?;
        let mut request = client_credentials(&self.client_id, secret.trim(), &self.audience);
        request.scope = self.scopes.join(" ");
        let mut client =
            IdentityServiceClient::new(connect(&urls.identity, "identity-svc", tls).await?);
        let response = client
            .issue_token(request)
            .await
            .map_err(failed)?
            .into_inner();
        let value = json!({
            "access_token": response.access_token,
            "token_type": response.token_type,
            "expires_in": response.expires_in,
            "scope": response.scope,
        });
        Ok(issued(&value, self.token_only, format))
    }
}

impl Exchange {
    pub async fn run(
        self,
        urls: &ServiceUrls,
        tls: &Arc<ClientTls>,
        format: Format,
    ) -> anyhow::Result<String> {
        let subject_token = token_argument(self.subject_token, "--subject-token")?;
        let actor_token = token_argument(self.actor_token, "--actor-token")?;
        // A token of an AgentSec service (a further hop) is an access
        // token (RFC 9068 `at+jwt`); a person's token is a JWT.
        let subject_token_type = match Unverified::parse(&subject_token) {
            Ok(token)
                if token
                    .header()
                    .get("typ")
                    .and_then(Value::as_str)
                    .is_some_and(|typ| typ.eq_ignore_ascii_case(ACCESS_TOKEN_TYPE)) =>
            {
                ACCESS_TOKEN_URN
            }
            _ => JWT_URN,
        };
        let request = ExchangeRequest {
            subject_token,
            subject_token_type: subject_token_type.to_owned(),
            actor_token,
            actor_token_type: ACCESS_TOKEN_URN.to_owned(),
            audience: vec![self.audience],
            resource: Vec::new(),
            scope: self.scopes.join(" "),
            requested_token_type: String::new(),
        };
        let mut client =
            ExchangeServiceClient::new(connect(&urls.exchange, "exchange-svc", tls).await?);
        let response = client.exchange(request).await.map_err(failed)?.into_inner();
        let value = json!({
            "access_token": response.access_token,
            "issued_token_type": response.issued_token_type,
            "token_type": response.token_type,
            "expires_in": response.expires_in,
            "scope": response.scope,
        });
        Ok(issued(&value, self.token_only, format))
    }
}

const INTROSPECTED: [Column; 12] = [
    Column::new("ACTIVE", "active"),
    Column::new("ISSUER", "iss"),
    Column::new("SUBJECT", "sub"),
    Column::new("AUDIENCE", "aud"),
    Column::new("SCOPE", "scope"),
    Column::new("CLIENT", "client_id"),
    Column::new("TENANT", "tenant"),
    Column::drawn("ACT", |value| {
        value["act"]
            .as_array()
            .filter(|chain| !chain.is_empty())
            .map_or("-".to_owned(), |chain| {
                chain
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" <- ")
            })
    }),
    Column::new("GRANT", "grant_id"),
    Column::new("ISSUED", "iat"),
    Column::new("EXPIRES", "exp"),
    Column::new("JTI", "jti"),
];

fn identity_json(answer: &identity::v1::IntrospectTokenResponse) -> Value {
    json!({
        "active": answer.active,
        "scope": answer.scope,
        "client_id": answer.client_id,
        "token_type": answer.token_type,
        "exp": time(answer.exp.as_ref()),
        "iat": time(answer.iat.as_ref()),
        "nbf": time(answer.nbf.as_ref()),
        "sub": answer.sub,
        "aud": answer.aud,
        "iss": answer.iss,
        "jti": answer.jti,
        "tenant": answer.tenant,
        "owner": answer.owner,
    })
}

fn exchange_json(answer: &exchange::v1::IntrospectTokenResponse) -> Value {
    json!({
        "active": answer.active,
        "scope": answer.scope,
        "client_id": answer.client_id,
        "token_type": answer.token_type,
        "exp": time(answer.exp.as_ref()),
        "iat": time(answer.iat.as_ref()),
        "nbf": time(answer.nbf.as_ref()),
        "sub": answer.sub,
        "aud": answer.aud,
        "iss": answer.iss,
        "jti": answer.jti,
        "azp": answer.azp,
        "act": answer.act.as_ref().map_or_else(Vec::new, |chain| {
            chain.actors.iter().map(|actor| actor.agent_id.clone()).collect()
        }),
        "grant_id": answer.grant_id,
        "tenant": answer.tenant,
    })
}

impl Introspect {
    pub async fn run(
        self,
        urls: &ServiceUrls,
        admin: &AdminArgs,
        tls: &Arc<ClientTls>,
        format: Format,
    ) -> anyhow::Result<String> {
        let token = token_argument(self.token, "--token")?;
        let issuer = self.issuer.unwrap_or_else(|| {
            let iss = Unverified::parse(&token)
                .ok()
                .and_then(|token| token.issuer().ok().map(str::to_owned));
            match iss {
                Some(iss) if iss.trim_end_matches('/') == urls.exchange.trim_end_matches('/') => {
                    Issuer::Exchange
                }
                _ => Issuer::Identity,
            }
        });
        // Introspection needs an authenticated caller: the admin.
        let (_, caller) = admin.connect_and_token(&urls.identity, tls).await?;
        let value = match issuer {
            Issuer::Identity => {
                let mut client =
                    IdentityServiceClient::new(connect(&urls.identity, "identity-svc", tls).await?);
                let request = identity::v1::IntrospectTokenRequest {
                    token,
                    token_type_hint: String::new(),
                };
                identity_json(
                    &client
                        .introspect_token(bearer(request, &caller)?)
                        .await
                        .map_err(failed)?
                        .into_inner(),
                )
            }
            Issuer::Exchange => {
                let mut client =
                    ExchangeServiceClient::new(connect(&urls.exchange, "exchange-svc", tls).await?);
                let request = exchange::v1::IntrospectTokenRequest {
                    token,
                    token_type_hint: String::new(),
                };
                exchange_json(
                    &client
                        .introspect_token(bearer(request, &caller)?)
                        .await
                        .map_err(failed)?
                        .into_inner(),
                )
            }
        };
        if value["active"] == false {
            // RFC 7662 §2.2: an inactive token says nothing more.
            return Ok(format.one(&json!({"active": false}), &INTROSPECTED[..1]));
        }
        Ok(format.one(&value, &INTROSPECTED))
    }
}
