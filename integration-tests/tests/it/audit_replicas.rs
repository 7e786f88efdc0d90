//! Two audit-svc replicas on one PostgreSQL schema extend one chain without
//! gaps or forks: each group commit holds the chain's advisory lock.

use std::net::SocketAddr;

use agentsec_common::server::bind;
use agentsec_integration_tests::{Service, TestCluster};
use agentsec_proto::audit::v1::{AppendEventsRequest, VerifyChainRequest};

use crate::audit::event;

#[tokio::test]
async fn two_replicas_extend_one_chain() -> anyhow::Result<()> {
    let cluster = TestCluster::start_only(&[Service::Audit]).await?;
    if !cluster.backend.is_postgres() {
        // SQLite is single-process by design; this runs in the PostgreSQL
        // pass of the suite (AGENTSEC_TEST_DATABASE_URL).
        eprintln!("two_replicas_extend_one_chain: needs PostgreSQL, not run on SQLite");
        return cluster.shutdown().await;
    }
    let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let second_addr = listener.local_addr()?;
    let (stop_second, mut stopped) = tokio::sync::watch::channel(false);
    let config = cluster.audit_config(cluster.backend.database(Service::Audit.name()))?;
    let second = tokio::spawn(agentsec_audit::serve(config, listener, async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    }));

    let replicas = [cluster.addr(Service::Audit), second_addr];
    let mut writers = Vec::new();
    for writer in 0..6usize {
        let mut client = cluster.audit_client_at(replicas[writer % 2]).await?;
        writers.push(tokio::spawn(async move {
            for batch in 0..10usize {
                let events = (0..20usize)
                    .map(|n| event(&format!("evt_r{writer}_{batch}_{n}"), n as i64))
                    .collect();
                client.append_events(AppendEventsRequest { events }).await?;
            }
            anyhow::Ok(())
        }));
    }
    for writer in writers {
        writer.await??;
    }

    let mut audit = cluster.audit_client_at(second_addr).await?;
    let report = audit
        .verify_chain(VerifyChainRequest::default())
        .await?
        .into_inner();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.events_verified, 6 * 10 * 20);
    assert_eq!(
        report.end_sequence,
        6 * 10 * 20,
        "gap-free: the head is the count"
    );

    let _ = stop_second.send(true);
    second.await??;
    cluster.shutdown().await
}
