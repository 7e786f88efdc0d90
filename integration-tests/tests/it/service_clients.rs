//! Least privilege between services: exchange-svc and policy-svc call with
//! identity-svc service clients that hold only the scopes they need
//! (`agentsec:agents:read`, `agentsec:revocations:read`), never admin
//! rights; each scope is honoured where it applies and nowhere else.

use agentsec_identity::{EXCHANGE_SVC_CLIENT_ID, POLICY_SVC_CLIENT_ID};
use agentsec_integration_tests::cluster::{
    ADMIN_AUDIENCE, EXCHANGE_CLIENT_SECRET, POLICY_AUDIENCE, POLICY_CLIENT_SECRET,
};
use agentsec_integration_tests::{with_bearer, Service, TestCluster};
use agentsec_proto::exchange::v1::exchange_service_client::ExchangeServiceClient;
use agentsec_proto::exchange::v1::ListRevokedGrantsRequest;
use agentsec_proto::identity::v1::{
    GetAgentRequest, IntrospectTokenRequest, ListAgentsRequest, ListRevocationsRequest,
    RegisterAgentRequest, SuspendAgentRequest,
};
use agentsec_proto::policy::v1::PolicySet;
use tonic::Code;

use crate::identity_support::{identity, new_agent, register};
use crate::policy_sets::{policy, put};

/// What each call answered for one caller: `Ok` or the status code.
type Answers = Vec<(&'static str, Result<(), Code>)>;
/// A caller, its token and what each call of [`answers`] must answer.
type Expected<'a> = (&'a str, &'a str, [Result<(), Code>; 7]);

async fn answers(
    cluster: &TestCluster,
    token: &str,
    other_tenant_agent: &str,
) -> anyhow::Result<Answers> {
    let mut identity = identity(cluster).await?;
    let mut exchange = ExchangeServiceClient::new(cluster.channel(Service::Exchange).await?);
    let mut policy = policy(cluster).await?;
    let code = |result: Result<(), tonic::Status>| result.map_err(|status| status.code());
    Ok(vec![
        (
            "GetAgent of another tenant",
            code(
                identity
                    .get_agent(with_bearer(
                        GetAgentRequest {
                            agent_id: other_tenant_agent.to_owned(),
                        },
                        token,
                    ))
                    .await
                    .map(drop),
            ),
        ),
        (
            "ListAgents of every tenant",
            code(
                identity
                    .list_agents(with_bearer(ListAgentsRequest::default(), token))
                    .await
                    .map(drop),
            ),
        ),
        (
            "ListRevocations",
            code(
                identity
                    .list_revocations(with_bearer(ListRevocationsRequest::default(), token))
                    .await
                    .map(drop),
            ),
        ),
        (
            "ListRevokedGrants",
            code(
                exchange
                    .list_revoked_grants(with_bearer(ListRevokedGrantsRequest::default(), token))
                    .await
                    .map(drop),
            ),
        ),
        (
            "RegisterAgent",
            code(
                identity
                    .register_agent(with_bearer(
                        RegisterAgentRequest {
                            agent: Some(new_agent("globex", "intruder", &["x"], &["read"])),
                        },
                        token,
                    ))
                    .await
                    .map(drop),
            ),
        ),
        (
            "SuspendAgent",
            code(
                identity
                    .suspend_agent(with_bearer(
                        SuspendAgentRequest {
                            agent_id: other_tenant_agent.to_owned(),
                            reason: "not allowed".to_owned(),
                        },
                        token,
                    ))
                    .await
                    .map(drop),
            ),
        ),
        (
            "PutPolicySet",
            code(
                put(&mut policy, token, "globex", PolicySet::default())
                    .await
                    .map(drop),
            ),
        ),
    ])
}

#[tokio::test]
async fn service_clients_read_across_tenants_only_what_their_scopes_cover() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let globex = register(
        &cluster,
        &admin,
        new_agent("globex", "worker", &["x"], &["read"]),
    )
    .await?;
    let policy_token = cluster
        .client_token(
            POLICY_SVC_CLIENT_ID,
            POLICY_CLIENT_SECRET,
            ADMIN_AUDIENCE,
            "",
        )
        .await?;
    let exchange_token = cluster
        .client_token(
            EXCHANGE_SVC_CLIENT_ID,
            EXCHANGE_CLIENT_SECRET,
            ADMIN_AUDIENCE,
            "",
        )
        .await?;
    // The same client's token for policy-svc holds the scope too, but for
    // another audience: it reads nothing at identity-svc.
    let exchange_decider = cluster
        .client_token(
            EXCHANGE_SVC_CLIENT_ID,
            EXCHANGE_CLIENT_SECRET,
            POLICY_AUDIENCE,
            "",
        )
        .await?;

    let denied = Err(Code::PermissionDenied);
    let expected: [Expected; 3] = [
        (
            "policy-svc's client",
            &policy_token,
            [Ok(()), Ok(()), Ok(()), Ok(()), denied, denied, denied],
        ),
        (
            "exchange-svc's client",
            &exchange_token,
            [Ok(()), Ok(()), denied, denied, denied, denied, denied],
        ),
        (
            "exchange-svc's client, token for policy-svc",
            &exchange_decider,
            [denied, denied, denied, denied, denied, denied, denied],
        ),
    ];
    for (who, token, codes) in expected {
        let got = answers(&cluster, token, &globex.id).await?;
        for ((call, answer), code) in got.into_iter().zip(codes) {
            assert_eq!(answer, code, "{who}: {call}");
        }
    }

    // A service token is an active token of identity-svc (it has no
    // credential row or generation).
    let introspected = identity(&cluster)
        .await?
        .introspect_token(with_bearer(
            IntrospectTokenRequest {
                token: policy_token.clone(),
                token_type_hint: String::new(),
            },
            &admin,
        ))
        .await?
        .into_inner();
    assert!(introspected.active);
    assert!(
        introspected.tenant.is_empty(),
        "no tenant: {introspected:?}"
    );
    cluster.shutdown().await
}

#[tokio::test]
async fn service_clients_get_only_their_audiences_and_scopes() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let ask = |client_id: &'static str,
               secret: &'static str,
               audience: &'static str,
               scope: &'static str| {
        let cluster = &cluster;
        async move {
            let response = cluster
                .client_token_response(client_id, secret, audience, scope)
                .await?;
            anyhow::Ok((response.status, response.json()?))
        }
    };
    let cases = [
        (
            "admin rights",
            ask(
                POLICY_SVC_CLIENT_ID,
                POLICY_CLIENT_SECRET,
                ADMIN_AUDIENCE,
                "agentsec:admin",
            )
            .await?,
            "invalid_scope",
        ),
        (
            "a scope it does not hold",
            ask(
                EXCHANGE_SVC_CLIENT_ID,
                EXCHANGE_CLIENT_SECRET,
                ADMIN_AUDIENCE,
                "agentsec:revocations:read",
            )
            .await?,
            "invalid_scope",
        ),
        (
            "an audience it does not hold",
            ask(
                POLICY_SVC_CLIENT_ID,
                POLICY_CLIENT_SECRET,
                POLICY_AUDIENCE,
                "",
            )
            .await?,
            "invalid_target",
        ),
        (
            "another client's secret",
            ask(
                POLICY_SVC_CLIENT_ID,
                EXCHANGE_CLIENT_SECRET,
                ADMIN_AUDIENCE,
                "",
            )
            .await?,
            "invalid_client",
        ),
    ];
    for (case, (status, body), error) in cases {
        assert_eq!(body["error"], error, "{case}: {status} {body}");
        assert!(!body.to_string().contains(POLICY_CLIENT_SECRET), "{case}");
    }

    // No agent may hold a service scope: it would read across tenants.
    let admin = cluster.admin_token().await?;
    let status = register(
        &cluster,
        &admin,
        new_agent(
            "acme",
            "sneaky",
            &[ADMIN_AUDIENCE],
            &["agentsec:agents:read"],
        ),
    )
    .await
    .expect_err("a service scope in an agent's ceiling");
    assert!(status.to_string().contains("service client"), "{status}");
    cluster.shutdown().await
}
