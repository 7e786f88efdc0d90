//! The token verifier's conformance table: every rule of
//! `agentsec_common::jwt` against every place that accepts a JWT, on a
//! running cluster. Each site gets one valid token of its kind, changed in
//! exactly one way and signed again with the key the site trusts (read from
//! the issuing service's key store where the service signs its own), and
//! must answer as [`Rule::expect`] says. Read the table as the
//! specification: a row is a rule, a column a site.

use agentsec_common::keys::store::newest_active_key;
use agentsec_common::keys::SigningKey;
use agentsec_integration_tests::cluster::{
    channel, extra_token_issuer_key, test_user_issuer_key, EXTRA_TOKEN_ISSUER, TEST_TARGET,
};
use agentsec_integration_tests::{check_token, with_bearer, Service, TestCluster};
use agentsec_proto::audit::v1::audit_service_client::AuditServiceClient;
use agentsec_proto::audit::v1::QueryEventsRequest;
use agentsec_proto::common::v1::{Effect, Jwk, PageRequest};
use agentsec_proto::exchange::v1::ListGrantsRequest;
use agentsec_proto::identity::v1::federated_credential_info::SubjectMatch;
use agentsec_proto::identity::v1::{
    AddFederatedCredentialRequest, AddPublicKeyRequest, FederatedCredentialInfo, ListAgentsRequest,
};
use agentsec_proto::policy::v1::GetPolicySetRequest;
use anyhow::{bail, Context as _};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};
use tonic::Code;

use crate::exchange_grants::{claims as person_claims, now, person_token};
use crate::exchange_tokens::{exchange_policy, request, Fixture};
use crate::identity_support::{
    identity, new_agent, random_id, register, token_endpoint, unverified_claims,
};
use crate::policy_sets::{policy, put, rule};

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const FEDERATION_ISSUER: &str = "https://workloads.test";
const FEDERATION_SUBJECT: &str = "system:serviceaccount:conformance:bot";
const FEDERATION_AUDIENCE: &str = "agentsec-conformance";
const CHECKED_AUDIENCE: &str = "mcp:conformance";

/// Whether a site verifies access tokens (RFC 9068 `typ` required) or
/// other JWTs (client assertions, external identity and person tokens).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    AccessToken,
    AnyJwt,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Accept,
    Refuse,
}

/// One rule of the verifier, as a change to a valid token.
#[derive(Clone, Copy, Debug)]
enum Rule {
    Valid,
    AlgNone,
    HmacWithThePublicKey,
    CritHeader,
    TypJwt,
    NoTyp,
    TypAsMediaType,
    NoKid,
    UnpublishedKey,
    ChangedAfterSigning,
    OtherIssuer,
    NoSub,
    OtherAudience,
    EmptyAudience,
    NoExp,
    Expired,
    NotYetValid,
    IssuedInFuture,
    LargerThan8KiB,
}

const RULES: [Rule; 19] = [
    Rule::Valid,
    Rule::AlgNone,
    Rule::HmacWithThePublicKey,
    Rule::CritHeader,
    Rule::TypJwt,
    Rule::NoTyp,
    Rule::TypAsMediaType,
    Rule::NoKid,
    Rule::UnpublishedKey,
    Rule::ChangedAfterSigning,
    Rule::OtherIssuer,
    Rule::NoSub,
    Rule::OtherAudience,
    Rule::EmptyAudience,
    Rule::NoExp,
    Rule::Expired,
    Rule::NotYetValid,
    Rule::IssuedInFuture,
    Rule::LargerThan8KiB,
];

impl Rule {
    /// What every site of a kind must answer. The audience of an
    /// introspected token is the resource server's to check (RFC 7662
    /// §4), so introspection answers active for another audience.
    fn expect(self, site: &Site) -> Expect {
        match self {
            Rule::Valid | Rule::TypAsMediaType => Expect::Accept,
            Rule::TypJwt | Rule::NoTyp if site.kind == Kind::AnyJwt => Expect::Accept,
            Rule::OtherAudience if site.introspection => Expect::Accept,
            _ => Expect::Refuse,
        }
    }

    /// The token: `claims` and a header of `key`, changed per the rule.
    fn token(self, key: &SigningKey, kind: Kind, claims: &Value) -> anyhow::Result<String> {
        let mut header = json!({
            "alg": key.algorithm().as_str(),
            "kid": key.kid(),
            "typ": if kind == Kind::AccessToken { "at+jwt" } else { "JWT" },
        });
        let mut claims = claims.clone();
        let now = now();
        match self {
            Rule::Valid | Rule::ChangedAfterSigning | Rule::UnpublishedKey => {}
            Rule::AlgNone => {
                header["alg"] = json!("none");
                return Ok(format!("{}.{}.", encode(&header), encode(&claims)));
            }
            Rule::HmacWithThePublicKey => {
                header["alg"] = json!("HS256");
                let input = format!("{}.{}", encode(&header), encode(&claims));
                let secret = jsonwebtoken::EncodingKey::from_secret(key.public_jwk().x.as_bytes())?;
                let signature = jsonwebtoken::crypto::sign(
                    input.as_bytes(),
                    &secret,
                    jsonwebtoken::Algorithm::HS256,
                )?;
                return Ok(format!("{input}.{signature}"));
            }
            Rule::CritHeader => header["crit"] = json!(["exp"]),
            Rule::TypJwt => header["typ"] = json!("JWT"),
            Rule::NoTyp => remove(&mut header, "typ"),
            Rule::TypAsMediaType => {
                if kind == Kind::AccessToken {
                    header["typ"] = json!("application/at+jwt");
                }
            }
            Rule::NoKid => remove(&mut header, "kid"),
            Rule::OtherIssuer => claims["iss"] = json!("https://someone-else.test"),
            Rule::NoSub => remove(&mut claims, "sub"),
            Rule::OtherAudience => claims["aud"] = json!("https://elsewhere.test"),
            Rule::EmptyAudience => claims["aud"] = json!([]),
            Rule::NoExp => remove(&mut claims, "exp"),
            Rule::Expired => {
                claims["exp"] = json!(now - 3600);
                claims["iat"] = json!(now - 7200);
                claims["nbf"] = json!(now - 7200);
            }
            Rule::NotYetValid => claims["nbf"] = json!(now + 3600),
            Rule::IssuedInFuture => claims["iat"] = json!(now + 3600),
            Rule::LargerThan8KiB => claims["padding"] = json!("A".repeat(9000)),
        }
        let signer = match self {
            Rule::UnpublishedKey => &SigningKey::generate(key.algorithm())?,
            _ => key,
        };
        if matches!(self, Rule::UnpublishedKey) {
            header["kid"] = json!(signer.kid());
        }
        let input = format!("{}.{}", encode(&header), encode(&claims));
        let signature = URL_SAFE_NO_PAD.encode(signer.sign_bytes(input.as_bytes())?);
        if matches!(self, Rule::ChangedAfterSigning) {
            claims["scope"] = json!("everything");
            return Ok(format!(
                "{}.{}.{signature}",
                encode(&header),
                encode(&claims)
            ));
        }
        Ok(format!("{input}.{signature}"))
    }
}

fn encode(json: &Value) -> String {
    URL_SAFE_NO_PAD.encode(json.to_string())
}

fn remove(object: &mut Value, member: &str) {
    if let Some(map) = object.as_object_mut() {
        map.remove(member);
    }
}

/// Where a token is presented.
#[derive(Clone, Copy, Debug)]
enum At {
    /// identity-svc: its own token as a bearer (ListAgents).
    IdentityBearer,
    /// identity-svc: a `private_key_jwt` client assertion.
    ClientAssertion,
    /// identity-svc: the jwt-bearer grant of a federated workload.
    Federation,
    /// exchange-svc: a person's token (ListGrants).
    PersonToken,
    /// exchange-svc: identity-svc's token as the exchange's actor_token.
    ActorToken,
    /// exchange-svc: introspection of its own delegated token.
    ExchangeIntrospection,
    /// policy-svc: CheckToken of a trusted issuer's token.
    CheckToken,
    /// policy-svc: identity-svc's admin token (GetPolicySet).
    PolicyAdmin,
    /// audit-svc: identity-svc's auditor token (QueryEvents).
    AuditReader,
}

struct Site {
    at: At,
    kind: Kind,
    /// Answers with the token's activity, whatever its audience.
    introspection: bool,
    key: SigningKey,
    claims: Value,
    /// The site refuses a replayed `jti` (client assertions).
    fresh_jti: bool,
}

enum Answer {
    Accepted,
    Refused(String),
}

/// A gRPC answer: OK is accepted; a refusal of the caller or the request
/// is refused; anything else (UNAVAILABLE, INTERNAL) is a broken harness.
fn grpc<T>(result: Result<T, tonic::Status>) -> anyhow::Result<Answer> {
    match result {
        Ok(_) => Ok(Answer::Accepted),
        Err(status)
            if matches!(
                status.code(),
                Code::Unauthenticated | Code::PermissionDenied | Code::InvalidArgument
            ) =>
        {
            Ok(Answer::Refused(format!("{:?}", status.code())))
        }
        Err(status) => bail!("unexpected answer {status:?}"),
    }
}

struct Conformance {
    fixture: Fixture,
    /// alice's person token, with a grant to agent a.
    subject: String,
}

impl Conformance {
    async fn present(&mut self, at: At, token: &str) -> anyhow::Result<Answer> {
        let cluster = &self.fixture.cluster;
        match at {
            At::IdentityBearer => grpc(
                identity(cluster)
                    .await?
                    .list_agents(with_bearer(
                        ListAgentsRequest {
                            tenant: "acme".to_owned(),
                            ..Default::default()
                        },
                        token,
                    ))
                    .await,
            ),
            At::ClientAssertion => {
                let response = token_endpoint(
                    cluster,
                    &[],
                    &[
                        ("grant_type", "client_credentials"),
                        ("client_assertion_type", ASSERTION_TYPE),
                        ("client_assertion", token),
                    ],
                )
                .await?;
                oauth(response.status, &response.body)
            }
            At::Federation => {
                let response = token_endpoint(
                    cluster,
                    &[],
                    &[("grant_type", JWT_BEARER), ("assertion", token)],
                )
                .await?;
                oauth(response.status, &response.body)
            }
            At::PersonToken => grpc(
                self.fixture
                    .exchange
                    .list_grants(with_bearer(ListGrantsRequest::default(), token))
                    .await,
            ),
            At::ActorToken => {
                let exchange = request(&self.subject, token, TEST_TARGET, "repo:read");
                grpc(self.fixture.exchange(exchange).await)
            }
            At::ExchangeIntrospection => {
                let answer = self.fixture.introspect(token).await?;
                Ok(if answer.active {
                    Answer::Accepted
                } else {
                    Answer::Refused("inactive".to_owned())
                })
            }
            At::CheckToken => {
                let decision = policy(cluster)
                    .await?
                    .check_token(check_token(
                        token,
                        CHECKED_AUDIENCE,
                        &format!("{CHECKED_AUDIENCE}/read"),
                    ))
                    .await;
                match decision {
                    Ok(response) => {
                        let decision = response.into_inner().decision.unwrap_or_default();
                        Ok(if decision.effect == Effect::Allow as i32 {
                            Answer::Accepted
                        } else {
                            Answer::Refused(format!("DENY: {}", decision.reason))
                        })
                    }
                    Err(status) => grpc::<()>(Err(status)),
                }
            }
            At::PolicyAdmin => grpc(
                policy(cluster)
                    .await?
                    .get_policy_set(with_bearer(
                        GetPolicySetRequest {
                            tenant: "acme".to_owned(),
                            version: 0,
                        },
                        token,
                    ))
                    .await,
            ),
            At::AuditReader => grpc(
                AuditServiceClient::new(channel(cluster.addr(Service::Audit)).await?)
                    .query_events(with_bearer(
                        QueryEventsRequest {
                            page: Some(PageRequest {
                                page_size: 1,
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                        token,
                    ))
                    .await,
            ),
        }
    }
}

/// An answer of the token endpoint: 200 is accepted, an RFC 6749 error
/// from the client's side (400, 401) refused.
fn oauth(status: u16, body: &[u8]) -> anyhow::Result<Answer> {
    match status {
        200 => Ok(Answer::Accepted),
        400 | 401 => {
            let error: Value = serde_json::from_slice(body)?;
            Ok(Answer::Refused(format!(
                "{} {}",
                error["error"].as_str().unwrap_or_default(),
                error["error_description"].as_str().unwrap_or_default()
            )))
        }
        other => bail!(
            "token endpoint answered {other}: {}",
            String::from_utf8_lossy(body)
        ),
    }
}

/// The cluster's signing key of `service` (its private half is in its
/// store: playing someone who holds the issuer's key).
async fn signing_key(cluster: &TestCluster, service: Service) -> anyhow::Result<SigningKey> {
    newest_active_key(&cluster.database(service).await?)
        .await?
        .context("the service has no signing key")
}

async fn sites(conformance: &mut Conformance) -> anyhow::Result<Vec<Site>> {
    let fixture = &mut conformance.fixture;
    let cluster = &fixture.cluster;
    let admin = fixture.admin.clone();
    let identity_key = signing_key(cluster, Service::Identity).await?;
    let exchange_key = signing_key(cluster, Service::Exchange).await?;
    let now = now();

    // An agent with a registered key, for client assertions.
    let holder = register(
        cluster,
        &admin,
        new_agent("acme", "assertion-holder", &["mcp:github"], &["repo:read"]),
    )
    .await?;
    let holder_key = SigningKey::generate(agentsec_common::keys::SigningAlgorithm::EdDsa)?;
    identity(cluster)
        .await?
        .add_public_key(with_bearer(
            AddPublicKeyRequest {
                agent_id: holder.id.clone(),
                jwk: Some(Jwk::from(holder_key.public_jwk())),
                ..Default::default()
            },
            &admin,
        ))
        .await?;
    // A federated workload.
    let workload = register(
        cluster,
        &admin,
        new_agent(
            "acme",
            "federated-workload",
            &["mcp:github"],
            &["repo:read"],
        ),
    )
    .await?;
    identity(cluster)
        .await?
        .add_federated_credential(with_bearer(
            AddFederatedCredentialRequest {
                agent_id: workload.id.clone(),
                federated: Some(FederatedCredentialInfo {
                    issuer: FEDERATION_ISSUER.to_owned(),
                    subject_match: Some(SubjectMatch::Subject(FEDERATION_SUBJECT.to_owned())),
                    audience: FEDERATION_AUDIENCE.to_owned(),
                }),
                description: "conformance".to_owned(),
                expire_time: None,
            },
            &admin,
        ))
        .await?;
    // agent a may call the checked audience's tools.
    let mut set = exchange_policy();
    set.rules.push(rule(
        "conformance",
        Effect::Allow,
        &format!("agent:{}", fixture.a.agent.id),
        &format!("{CHECKED_AUDIENCE}/*"),
        "tools/call",
    ));
    put(&mut policy(cluster).await?, &admin, "acme", set).await?;
    // A delegated token of exchange-svc.
    let actor = fixture.actor_token(&fixture.a).await?;
    let delegated = fixture
        .exchange(request(
            &conformance.subject,
            &actor,
            TEST_TARGET,
            "repo:read",
        ))
        .await?
        .access_token;
    let cluster = &fixture.cluster;
    let auditor = cluster.audit_token().await?;
    let site = |at, kind, key: &SigningKey, claims: Value| -> anyhow::Result<Site> {
        Ok(Site {
            at,
            kind,
            introspection: matches!(at, At::ExchangeIntrospection),
            key: SigningKey::from_pkcs8_der(key.algorithm(), key.pkcs8_der())?,
            claims,
            fresh_jti: matches!(at, At::ClientAssertion),
        })
    };
    [
        site(
            At::IdentityBearer,
            Kind::AccessToken,
            &identity_key,
            unverified_claims(&admin)?,
        ),
        site(
            At::ClientAssertion,
            Kind::AnyJwt,
            &holder_key,
            json!({
                "iss": holder.id, "sub": holder.id,
                "aud": format!("{}/oauth2/token", cluster.issuer(Service::Identity)),
                "iat": now, "exp": now + 120,
            }),
        ),
        site(
            At::Federation,
            Kind::AnyJwt,
            federation_key()?,
            json!({
                "iss": FEDERATION_ISSUER, "sub": FEDERATION_SUBJECT, "aud": FEDERATION_AUDIENCE,
                "iat": now, "nbf": now, "exp": now + 300,
            }),
        ),
        site(
            At::PersonToken,
            Kind::AnyJwt,
            test_user_issuer_key().context("no user-issuer key")?,
            person_claims("alice@example.com", json!({"tenant": "acme"})),
        ),
        site(
            At::ActorToken,
            Kind::AccessToken,
            &identity_key,
            unverified_claims(&actor)?,
        ),
        site(
            At::ExchangeIntrospection,
            Kind::AccessToken,
            &exchange_key,
            unverified_claims(&delegated)?,
        ),
        site(
            At::CheckToken,
            Kind::AccessToken,
            extra_token_issuer_key().context("no extra-issuer key")?,
            json!({
                "iss": EXTRA_TOKEN_ISSUER, "sub": fixture.a.agent.id, "aud": CHECKED_AUDIENCE,
                "tenant": "acme", "iat": now, "nbf": now, "exp": now + 300,
            }),
        ),
        site(
            At::PolicyAdmin,
            Kind::AccessToken,
            &identity_key,
            unverified_claims(&admin)?,
        ),
        site(
            At::AuditReader,
            Kind::AccessToken,
            &identity_key,
            unverified_claims(&auditor)?,
        ),
    ]
    .into_iter()
    .collect()
}

/// The key of [`FEDERATION_ISSUER`] (one per test process).
fn federation_key() -> anyhow::Result<&'static SigningKey> {
    static KEY: std::sync::OnceLock<Option<SigningKey>> = std::sync::OnceLock::new();
    KEY.get_or_init(|| SigningKey::generate(agentsec_common::keys::SigningAlgorithm::Es256).ok())
        .as_ref()
        .context("no federation issuer key")
}

#[tokio::test]
async fn every_rule_of_the_token_verifier_holds_at_every_site() -> anyhow::Result<()> {
    let jwks = json!({ "keys": [federation_key()?.public_jwk()] }).to_string();
    let cluster = TestCluster::start_with_identity(move |config| {
        config.trusted_issuers = serde_json::from_value(json!([{
            "issuer": FEDERATION_ISSUER,
            "jwks": jwks,
            "algorithms": ["ES256"],
        }]))
        .unwrap_or_default();
    })
    .await?;
    let mut fixture = Fixture::on(cluster).await?;
    let a = fixture.a.agent.id.clone();
    fixture
        .grant("alice@example.com", &a, &["repo:read"], 1)
        .await?;
    let mut conformance = Conformance {
        fixture,
        subject: person_token("alice@example.com")?,
    };
    let sites = sites(&mut conformance).await?;

    let mut table = String::from("| rule |");
    for site in &sites {
        table.push_str(&format!(" {:?} |", site.at));
    }
    let mut broken = Vec::new();
    for rule in RULES {
        table.push_str(&format!("\n| {rule:?} |"));
        for site in &sites {
            let mut claims = site.claims.clone();
            if site.fresh_jti {
                claims["jti"] = json!(random_id()?);
            }
            let token = rule.token(&site.key, site.kind, &claims)?;
            let answer = conformance
                .present(site.at, &token)
                .await
                .with_context(|| format!("{rule:?} at {:?}", site.at))?;
            let (got, why) = match answer {
                Answer::Accepted => (Expect::Accept, String::new()),
                Answer::Refused(why) => (Expect::Refuse, why),
            };
            let expected = rule.expect(site);
            table.push_str(&format!(" {got:?} |"));
            if got != expected {
                broken.push(format!(
                    "{rule:?} at {:?}: expected {expected:?}, got {got:?} {why}",
                    site.at
                ));
            }
        }
    }
    println!("{table}");
    assert!(broken.is_empty(), "{table}\n\n{}", broken.join("\n"));
    conformance.fixture.cluster.shutdown().await
}
