//! audit-svc authenticates every call but GetVerificationKeys: services
//! append with a service token holding `agentsec:audit:append`; admins and
//! auditors (`agentsec:audit:read`) read, a tenant's only its tenant's
//! events; nobody else gets anything.

use std::time::Duration;

use agentsec_identity::POLICY_SVC_CLIENT_ID;
use agentsec_integration_tests::cluster::{channel, AUDIT_AUDIENCE, POLICY_CLIENT_SECRET};
use agentsec_integration_tests::{with_optional_bearer, Service, TestCluster};
use agentsec_proto::audit::v1::audit_service_client::AuditServiceClient;
use agentsec_proto::audit::v1::*;
use tokio_stream::StreamExt as _;
use tonic::Code;

use crate::audit::event;
use crate::identity_support::{agentsec_token, get_token, new_agent, register, test_client};

type Raw = AuditServiceClient<tonic::transport::Channel>;

fn in_tenant(id: &str, tenant: &str) -> Event {
    Event {
        tenant: tenant.to_owned(),
        ..event(id, 1)
    }
}

/// The code of each call made with `token` ("" = none), or OK.
async fn every_call(client: &mut Raw, token: &str) -> Vec<(&'static str, Code)> {
    let code = |result: Result<(), tonic::Status>| {
        result.map_or_else(|status| status.code(), |()| Code::Ok)
    };
    let append = AppendEventsRequest {
        events: vec![event("evt_probe", 1)],
    };
    let stream_append = tokio_stream::iter(vec![AppendEventStreamRequest {
        events: vec![event("evt_probe_stream", 1)],
    }]);
    vec![
        (
            "AppendEvents",
            code(
                client
                    .append_events(with_optional_bearer(append, token))
                    .await
                    .map(drop),
            ),
        ),
        (
            "AppendEventStream",
            code(
                client
                    .append_event_stream(with_optional_bearer(stream_append, token))
                    .await
                    .map(drop),
            ),
        ),
        (
            "QueryEvents",
            code(
                client
                    .query_events(with_optional_bearer(QueryEventsRequest::default(), token))
                    .await
                    .map(drop),
            ),
        ),
        (
            "TailEvents",
            code(
                client
                    .tail_events(with_optional_bearer(TailEventsRequest::default(), token))
                    .await
                    .map(drop),
            ),
        ),
        (
            "ExportEvents",
            code(
                client
                    .export_events(with_optional_bearer(ExportEventsRequest::default(), token))
                    .await
                    .map(drop),
            ),
        ),
        (
            "VerifyChain",
            code(
                client
                    .verify_chain(with_optional_bearer(VerifyChainRequest::default(), token))
                    .await
                    .map(drop),
            ),
        ),
        (
            "ListCheckpoints",
            code(
                client
                    .list_checkpoints(with_optional_bearer(
                        ListCheckpointsRequest::default(),
                        token,
                    ))
                    .await
                    .map(drop),
            ),
        ),
        (
            "GetVerificationKeys",
            code(
                client
                    .get_verification_keys(with_optional_bearer(
                        GetVerificationKeysRequest {},
                        token,
                    ))
                    .await
                    .map(drop),
            ),
        ),
    ]
}

fn assert_codes(who: &str, got: Vec<(&'static str, Code)>, expected: [Code; 8]) {
    for ((call, code), want) in got.into_iter().zip(expected) {
        assert_eq!(code, want, "{who}: {call}");
    }
}

/// The tenants of the events `token` reads with QueryEvents.
async fn tenants_read(client: &mut Raw, token: &str, tenant: &str) -> Result<Vec<String>, Code> {
    let request = QueryEventsRequest {
        filter: Some(EventFilter {
            tenant: tenant.to_owned(),
            kinds: vec!["decision".to_owned()],
            ..EventFilter::default()
        }),
        ..QueryEventsRequest::default()
    };
    let events = client
        .query_events(with_optional_bearer(request, token))
        .await
        .map_err(|status| status.code())?
        .into_inner()
        .events;
    Ok(events
        .into_iter()
        .filter_map(|stored| stored.event.map(|event| event.tenant))
        .collect())
}

#[tokio::test]
async fn audit_svc_authenticates_every_call_and_holds_readers_to_their_tenant() -> anyhow::Result<()>
{
    use tonic::Code::{Ok as Allowed, PermissionDenied as Denied, Unauthenticated as Anonymous};
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let mut client: Raw = AuditServiceClient::new(channel(cluster.addr(Service::Audit)).await?);
    cluster
        .audit_client()
        .await?
        .append_events(AppendEventsRequest {
            events: vec![
                in_tenant("evt_acme", "acme"),
                in_tenant("evt_globex", "globex"),
            ],
        })
        .await?;

    // Nobody: only the verification keys.
    let mut anonymous = [Anonymous; 8];
    anonymous[7] = Allowed;
    assert_codes("no token", every_call(&mut client, "").await, anonymous);

    // A global admin reads everything and appends nothing.
    assert_codes(
        "a global admin",
        every_call(&mut client, &admin).await,
        [
            Denied, Denied, Allowed, Allowed, Allowed, Allowed, Allowed, Allowed,
        ],
    );
    let mut everyone = tenants_read(&mut client, &admin, "")
        .await
        .map_err(|code| anyhow::anyhow!("the admin's query: {code:?}"))?;
    everyone.sort();
    assert_eq!(everyone, ["acme", "globex"]);

    // A service appends and reads nothing.
    let service = cluster
        .client_token(
            POLICY_SVC_CLIENT_ID,
            POLICY_CLIENT_SECRET,
            AUDIT_AUDIENCE,
            "",
        )
        .await?;
    assert_codes(
        "policy-svc's service token",
        every_call(&mut client, &service).await,
        [
            Allowed, Allowed, Denied, Denied, Denied, Denied, Denied, Allowed,
        ],
    );

    // A tenant's admin and a tenant's auditor read that tenant only, and
    // append nothing.
    let acme_admin = test_client(
        &cluster,
        &admin,
        "acme",
        "acme-admin",
        &["agentsec"],
        &["agentsec:admin"],
    )
    .await?;
    let acme_admin = agentsec_token(&cluster, &acme_admin, "agentsec:admin").await?;
    let auditor = test_client(
        &cluster,
        &admin,
        "acme",
        "acme-auditor",
        &[AUDIT_AUDIENCE],
        &["agentsec:audit:read"],
    )
    .await?;
    let auditor = get_token(&cluster, &auditor, &[("audience", AUDIT_AUDIENCE)]).await?;
    for (who, token) in [("acme's admin", &acme_admin), ("acme's auditor", &auditor)] {
        assert_codes(
            who,
            every_call(&mut client, token).await,
            [
                Denied, Denied, Allowed, Allowed, Allowed, Allowed, Allowed, Allowed,
            ],
        );
        let mut read = tenants_read(&mut client, token, "").await;
        if let Ok(tenants) = &mut read {
            tenants.dedup();
        }
        assert_eq!(read, Ok(vec!["acme".to_owned()]), "{who}");
        assert_eq!(
            tenants_read(&mut client, token, "globex").await,
            Err(Denied),
            "{who}"
        );
        // Tail and export are held to the tenant as well.
        let mut tail = client
            .tail_events(with_optional_bearer(
                TailEventsRequest {
                    start_sequence: 1,
                    ..TailEventsRequest::default()
                },
                token,
            ))
            .await?
            .into_inner();
        let first = tokio::time::timeout(Duration::from_secs(10), tail.next())
            .await?
            .transpose()?
            .and_then(|message| message.event)
            .and_then(|stored| stored.event)
            .map(|event| event.tenant);
        assert_eq!(first.as_deref(), Some("acme"), "{who}: tail");
        let mut export = client
            .export_events(with_optional_bearer(ExportEventsRequest::default(), token))
            .await?
            .into_inner();
        let mut text = String::new();
        while let Some(chunk) = export.next().await {
            text.push_str(&String::from_utf8(chunk?.data)?);
        }
        assert!(text.contains("evt_acme"), "{who}: export");
        assert!(!text.contains("globex"), "{who}: export");
    }

    // A token of another issuer is nobody's.
    let stranger = agentsec_common::keys::SigningKey::generate(
        agentsec_common::keys::SigningAlgorithm::EdDsa,
    )?
    .sign(
        "at+jwt",
        &serde_json::json!({
            "iss": cluster.issuer(Service::Identity), "sub": "x", "aud": AUDIT_AUDIENCE,
            "scope": "agentsec:audit:append agentsec:audit:read", "exp": 4_000_000_000_i64,
        }),
    )?;
    assert_codes(
        "a forged token",
        every_call(&mut client, &stranger).await,
        anonymous,
    );

    // No agent may hold the append scope.
    let refused = register(
        &cluster,
        &admin,
        new_agent(
            "acme",
            "forger",
            &[AUDIT_AUDIENCE],
            &["agentsec:audit:append"],
        ),
    )
    .await
    .expect_err("an agent with the append scope");
    assert!(refused.to_string().contains("service client"), "{refused}");
    cluster.shutdown().await
}
