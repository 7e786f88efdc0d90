//! The audit client loses nothing across an audit-svc crash: events sent
//! while audit-svc is killed and restarted are all stored, each exactly once.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use agentsec_common::audit::client::{AuditClient, AuditClientConfig};
use agentsec_common::tls::ClientTls;
use agentsec_integration_tests::cluster::FixedToken;
use agentsec_integration_tests::{Service, TestCluster};
use agentsec_proto::audit::v1::{QueryEventsRequest, VerifyChainRequest};
use agentsec_proto::common::v1::PageRequest;

use crate::audit::event;

const EVENTS: usize = 3_000;

#[tokio::test]
async fn every_event_is_stored_exactly_once_across_a_crash() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start_only(&[Service::Audit]).await?;
    let config = AuditClientConfig {
        endpoint: format!("http://{}", cluster.addr(Service::Audit)),
        max_batch: 100,
        flush_interval_ms: 2,
        retry_initial_backoff_ms: 10,
        retry_max_backoff_ms: 200,
        ..AuditClientConfig::default()
    };
    let token = FixedToken(cluster.audit_token().await?);
    let (client, sender) =
        AuditClient::start(config, Some(Arc::new(token)), &ClientTls::public_roots()?)?;

    let produce = |client: AuditClient, range: std::ops::Range<usize>| async move {
        for n in range {
            client
                .record(event(&format!("evt_c{n:05}"), n as i64))
                .await?;
        }
        anyhow::Ok(())
    };
    // A third goes out while audit-svc runs, the rest while it is down and
    // after it is back; the crash lands while batches are in flight.
    produce(client.clone(), 0..EVENTS / 3).await?;
    cluster.kill(Service::Audit).await?;
    produce(client.clone(), EVENTS / 3..2 * EVENTS / 3).await?;
    assert!(
        client.pending() > 0,
        "audit-svc is down: events wait in the client"
    );
    cluster.restart(Service::Audit).await?;
    produce(client.clone(), 2 * EVENTS / 3..EVENTS).await?;

    sender.shutdown().await?;
    assert_eq!(client.pending(), 0);
    assert_eq!(client.rejected(), 0);

    let mut audit = cluster.audit_client().await?;
    let mut ids = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = audit
            .query_events(QueryEventsRequest {
                page: Some(PageRequest {
                    page_size: 1_000,
                    page_token,
                }),
                ..QueryEventsRequest::default()
            })
            .await?
            .into_inner();
        ids.extend(
            page.events
                .into_iter()
                .filter_map(|e| e.event.map(|e| e.id)),
        );
        page_token = page.page.unwrap_or_default().next_page_token;
        if page_token.is_empty() {
            break;
        }
    }
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), EVENTS, "stored exactly once");
    assert_eq!(distinct.len(), EVENTS);
    let report = audit
        .verify_chain(VerifyChainRequest::default())
        .await?
        .into_inner();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.events_verified, EVENTS as u64);
    cluster.shutdown().await
}

#[tokio::test]
async fn shutdown_reports_what_it_could_not_deliver() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start_only(&[Service::Audit]).await?;
    let endpoint = format!("http://{}", cluster.addr(Service::Audit));
    cluster.kill(Service::Audit).await?;
    let token = FixedToken(cluster.audit_token().await?);
    let (client, sender) = AuditClient::start(
        AuditClientConfig {
            endpoint,
            shutdown_flush_timeout_secs: 1,
            ..AuditClientConfig::default()
        },
        Some(Arc::new(token)),
        &ClientTls::public_roots()?,
    )?;
    for n in 0..7 {
        client.record(event(&format!("evt_u{n}"), n)).await?;
    }
    let outcome = tokio::time::timeout(Duration::from_secs(30), sender.shutdown()).await?;
    let message = outcome.expect_err("audit-svc never came back").to_string();
    assert!(message.contains('7'), "{message}");
    cluster.restart(Service::Audit).await?;
    cluster.shutdown().await
}
