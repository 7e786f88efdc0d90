//! No secret and no token reaches the logs or the audit trail: the four
//! services run with every log line captured at DEBUG level through a
//! token, grant, exchange, decision, introspection and revocation flow (and
//! a refused client secret); none of the secrets they were configured with,
//! nor any token handed out, appears in the output or in an audit event. A
//! test binary of its own: the capture is the process's global subscriber.

use std::io::Write;
use std::sync::{Arc, Mutex};

use agentsec_integration_tests::cluster::{
    test_user_issuer_key, ADMIN_AUDIENCE, ADMIN_CLIENT_SECRET, AUDIT_CLIENT_SECRET,
    EXCHANGE_CLIENT_SECRET, POLICY_CLIENT_SECRET, TEST_PEPPER, TEST_TARGET, TEST_USER_AUDIENCE,
    TEST_USER_ISSUER,
};
use agentsec_integration_tests::http::{self, HttpResponse};
use agentsec_integration_tests::{with_bearer, Service, TestCluster};
use agentsec_proto::common::v1::Effect;
use agentsec_proto::exchange::v1::exchange_service_client::ExchangeServiceClient;
use agentsec_proto::exchange::v1::{CreateGrantRequest, Grant};
use agentsec_proto::identity::v1::identity_service_client::IdentityServiceClient;
use agentsec_proto::identity::v1::{
    Agent, Ceiling, CreateClientSecretRequest, RegisterAgentRequest,
};
use agentsec_proto::policy::v1::policy_service_client::PolicyServiceClient;
use agentsec_proto::policy::v1::{PolicyRule, PolicySet, PutPolicySetRequest};
use anyhow::Context as _;
use tracing_subscriber::fmt::MakeWriter;

/// Every line written, in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn token_of(response: &HttpResponse, what: &str) -> anyhow::Result<String> {
    let body = response.json()?;
    body["access_token"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("{what}: {} {body}", response.status))
}

fn allow(id: &str, resource: &str, action: &str) -> PolicyRule {
    PolicyRule {
        id: id.to_owned(),
        effect: Effect::Allow as i32,
        agent: "*".to_owned(),
        resource: resource.to_owned(),
        actions: vec![action.to_owned()],
        description: "@match-all: the flow under test".to_owned(),
        ..PolicyRule::default()
    }
}

#[tokio::test]
async fn no_secret_or_token_reaches_the_logs() -> anyhow::Result<()> {
    let captured = Captured::default();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(captured.clone())
        .with_ansi(false)
        .try_init()
        .map_err(|err| anyhow::anyhow!("{err}"))?;

    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let mut identity = IdentityServiceClient::new(cluster.channel(Service::Identity).await?);
    let exchange_issuer = cluster.issuer(Service::Exchange);
    let agent = identity
        .register_agent(with_bearer(
            RegisterAgentRequest {
                agent: Some(Agent {
                    tenant: "acme".to_owned(),
                    owner: "alice".to_owned(),
                    name: "logged-bot".to_owned(),
                    ceiling: Some(Ceiling {
                        audiences: vec![exchange_issuer.clone()],
                        scopes: vec!["repo:read".to_owned()],
                    }),
                    ..Agent::default()
                }),
            },
            &admin,
        ))
        .await?
        .into_inner()
        .agent
        .context("no agent")?;
    let created = identity
        .create_client_secret(with_bearer(
            CreateClientSecretRequest {
                agent_id: agent.id.clone(),
                ..CreateClientSecretRequest::default()
            },
            &admin,
        ))
        .await?
        .into_inner();
    let client_secret = created.client_secret;
    let token_form = |secret: &str| {
        vec![
            ("grant_type", "client_credentials".to_owned()),
            ("client_id", agent.id.clone()),
            ("client_secret", secret.to_owned()),
            ("audience", exchange_issuer.clone()),
        ]
    };
    let post = |service: Service, path: &'static str, form: Vec<(&'static str, String)>| {
        let addr = cluster.addr(service);
        async move {
            let pairs: Vec<(&str, &str)> = form
                .iter()
                .map(|(name, value)| (*name, value.as_str()))
                .collect();
            http::post_form(addr, path, &[], &pairs).await
        }
    };
    let actor_token = token_of(
        &post(
            Service::Identity,
            "/oauth2/token",
            token_form(&client_secret),
        )
        .await?,
        "agent token",
    )?;
    let wrong_secret = "a-wrong-secret-that-must-not-be-logged-0123";
    let refused = post(Service::Identity, "/oauth2/token", token_form(wrong_secret)).await?;
    assert_eq!(refused.status, 401);

    let mut policy = PolicyServiceClient::new(cluster.channel(Service::Policy).await?);
    policy
        .put_policy_set(with_bearer(
            PutPolicySetRequest {
                tenant: "acme".to_owned(),
                policy_set: Some(PolicySet {
                    rules: vec![
                        allow("exchange", "audience:*", "token:exchange"),
                        allow("scopes", "scope:*", "token:exchange"),
                        allow("tools", "mcp:github/*", "tools/call"),
                    ],
                    ..PolicySet::default()
                }),
                ..PutPolicySetRequest::default()
            },
            &admin,
        ))
        .await?;

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let person_token = test_user_issuer_key().context("no user issuer key")?.sign(
        "JWT",
        &serde_json::json!({
            "iss": TEST_USER_ISSUER, "sub": "alice", "aud": TEST_USER_AUDIENCE,
            "tenant": "acme", "iat": now, "nbf": now, "exp": now + 600,
        }),
    )?;
    let now_secs = i64::try_from(now)?;
    ExchangeServiceClient::new(cluster.channel(Service::Exchange).await?)
        .create_grant(with_bearer(
            CreateGrantRequest {
                grant: Some(Grant {
                    agent_id: agent.id.clone(),
                    audiences: vec![TEST_TARGET.to_owned()],
                    scopes: vec!["repo:read".to_owned()],
                    expire_time: Some(prost_types::Timestamp {
                        seconds: now_secs + 3_600,
                        nanos: 0,
                    }),
                    max_chain_depth: 1,
                    purpose: "logs".to_owned(),
                    ..Grant::default()
                }),
            },
            &person_token,
        ))
        .await?;
    let delegated = token_of(
        &post(
            Service::Exchange,
            "/oauth2/token",
            vec![
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange".to_owned(),
                ),
                ("subject_token", person_token.clone()),
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:jwt".to_owned(),
                ),
                ("actor_token", actor_token.clone()),
                (
                    "actor_token_type",
                    "urn:ietf:params:oauth:token-type:access_token".to_owned(),
                ),
                ("audience", TEST_TARGET.to_owned()),
            ],
        )
        .await?,
        "exchange",
    )?;
    let decision = policy
        .check_token(agentsec_integration_tests::check_token(
            &delegated,
            TEST_TARGET,
            "mcp:github/list_issues",
        ))
        .await?
        .into_inner();
    assert_eq!(
        decision.decision.unwrap_or_default().effect,
        Effect::Allow as i32
    );
    let introspected = post(
        Service::Identity,
        "/oauth2/introspect",
        vec![
            ("token", actor_token.clone()),
            ("client_id", agent.id.clone()),
            ("client_secret", client_secret.clone()),
        ],
    )
    .await?;
    assert_eq!(introspected.json()?["active"], true);
    let revoked = post(
        Service::Identity,
        "/oauth2/revoke",
        vec![
            ("token", actor_token.clone()),
            ("client_id", agent.id.clone()),
            ("client_secret", client_secret.clone()),
        ],
    )
    .await?;
    assert_eq!(revoked.status, 200);
    let service_token = cluster
        .client_token(
            agentsec_identity::POLICY_SVC_CLIENT_ID,
            POLICY_CLIENT_SECRET,
            ADMIN_AUDIENCE,
            "",
        )
        .await?;
    // The audit trail of all of it (reasons and attributes included).
    let mut audit = cluster.audit_client().await?;
    let mut trail = String::new();
    let mut page_token = String::new();
    loop {
        let page = audit
            .query_events(agentsec_proto::audit::v1::QueryEventsRequest {
                page: Some(agentsec_proto::common::v1::PageRequest {
                    page_size: 1_000,
                    page_token,
                }),
                ..Default::default()
            })
            .await?
            .into_inner();
        trail.push_str(&format!("{:?}", page.events));
        page_token = page.page.unwrap_or_default().next_page_token;
        if page_token.is_empty() {
            break;
        }
    }
    assert!(
        trail.contains("token.refused"),
        "the refusal is audited: {trail}"
    );
    cluster.shutdown().await?;

    let logs = String::from_utf8_lossy(
        &captured
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()),
    )
    .into_owned();
    assert!(logs.lines().count() > 20, "the services logged: {logs}");
    let known = [
        ("the credential pepper", TEST_PEPPER.to_owned()),
        (
            "the bootstrap admin's secret",
            ADMIN_CLIENT_SECRET.to_owned(),
        ),
        (
            "exchange-svc's client secret",
            EXCHANGE_CLIENT_SECRET.to_owned(),
        ),
        (
            "policy-svc's client secret",
            POLICY_CLIENT_SECRET.to_owned(),
        ),
        ("the audit client's secret", AUDIT_CLIENT_SECRET.to_owned()),
        ("the agent's client secret", client_secret),
        ("a refused client secret", wrong_secret.to_owned()),
        ("the admin token", admin),
        ("the agent's token", actor_token),
        ("the person's token", person_token),
        ("the delegated token", delegated),
        ("a service token", service_token),
    ];
    for (what, secret) in known {
        // A token's signature alone would identify it as well.
        let signature = secret.rsplit('.').next().unwrap_or(&secret);
        assert!(
            !logs.contains(&secret) && !logs.contains(signature),
            "{what} is in the logs"
        );
        assert!(
            !trail.contains(&secret) && !trail.contains(signature),
            "{what} is in the audit trail"
        );
    }
    Ok(())
}
