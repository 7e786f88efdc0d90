//! Probes tell the truth: a service cut off its database reports its gRPC
//! service name (readiness) NOT_SERVING while the overall status
//! (liveness) stays SERVING, answers a request that needs the database
//! UNAVAILABLE after a short wait instead of queueing for it, and recovers
//! with the database.

use std::net::SocketAddr;
use std::time::Duration;

use agentsec_common::server::bind;
use agentsec_integration_tests::cluster::health_status;
use agentsec_integration_tests::eventually::eventually;
use agentsec_integration_tests::relay::TcpRelay;
use agentsec_integration_tests::{Service, TestCluster};
use agentsec_proto::audit::v1::QueryEventsRequest;
use anyhow::Context as _;
use tonic_health::pb::health_check_response::ServingStatus;

const WITHIN: Duration = Duration::from_secs(20);

/// A database URL cut around its `host:port`: what comes before, the
/// host and port, what comes after.
fn around_host(url: &str) -> anyhow::Result<(&str, &str, &str)> {
    let start = url.find("://").context("no scheme")? + 3;
    let authority_end = url[start..].find('/').map_or(url.len(), |end| start + end);
    let host_start = url[start..authority_end]
        .rfind('@')
        .map_or(start, |at| start + at + 1);
    Ok((
        &url[..host_start],
        &url[host_start..authority_end],
        &url[authority_end..],
    ))
}

async fn status_is(addr: SocketAddr, name: &str, wanted: ServingStatus) -> anyhow::Result<()> {
    eventually(&format!("`{name}` {wanted:?}"), WITHIN, || async move {
        let status = health_status(addr, name).await.ok();
        Ok((status == Some(wanted)).then_some(()))
    })
    .await
}

#[tokio::test]
async fn readiness_follows_the_database_and_requests_fail_fast() -> anyhow::Result<()> {
    let cluster = TestCluster::start_only(&[Service::Audit]).await?;
    if !cluster.backend.is_postgres() {
        // A SQLite file cannot become unreachable; this runs in the
        // PostgreSQL pass of the suite (AGENTSEC_TEST_DATABASE_URL).
        eprintln!("readiness_follows_the_database: needs PostgreSQL, not run on SQLite");
        return cluster.shutdown().await;
    }
    let mut database = cluster.backend.database(Service::Audit.name());
    let (before, upstream, after) = around_host(&database.url)?;
    let relay = TcpRelay::start(upstream.to_owned()).await?;
    database.url = format!("{before}{}{after}", relay.addr);
    database.acquire_timeout_ms = 300;

    let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let replica = tokio::spawn(agentsec_audit::serve(
        cluster.audit_config(database)?,
        listener,
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        },
    ));
    let readiness = Service::Audit.grpc_name();
    status_is(addr, "", ServingStatus::Serving).await?;
    status_is(addr, readiness, ServingStatus::Serving).await?;
    let mut audit = cluster.audit_client_at(addr).await?;
    audit.query_events(QueryEventsRequest::default()).await?;

    relay.cut();
    status_is(addr, readiness, ServingStatus::NotServing).await?;
    assert_eq!(
        health_status(addr, "").await?,
        ServingStatus::Serving,
        "liveness: the process is not wedged"
    );
    let refused = audit
        .query_events(QueryEventsRequest::default())
        .await
        .expect_err("no database");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");

    relay.restore();
    status_is(addr, readiness, ServingStatus::Serving).await?;
    eventually("a query answered again", WITHIN, || {
        let mut audit = audit.clone();
        async move {
            Ok(audit
                .query_events(QueryEventsRequest::default())
                .await
                .ok()
                .map(|_| ()))
        }
    })
    .await?;

    let _ = stop.send(true);
    replica.await??;
    cluster.shutdown().await
}
