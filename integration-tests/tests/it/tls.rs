//! TLS on the services' ports and between them: a client that does not
//! trust the CA is refused, a port requiring client certificates refuses a
//! client without one, a rotated certificate is served without a restart,
//! and identity-svc and audit-svc talk over mutual TLS (audit events one
//! way, the key set the other).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use agentsec_common::audit::client::AuditClientConfig;
use agentsec_common::tls::{ClientAuth, ClientTls, TlsConfig};
use agentsec_integration_tests::cluster::{ADMIN_AUDIENCE, ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET};
use agentsec_integration_tests::tls::{
    client, endpoint, health, loopback, serve_until_healthy, served_leaf, service_tls,
    standalone_identity, write, TestCa,
};
use agentsec_integration_tests::{eventually, with_bearer, Service, TestBackend, TestCluster};
use agentsec_proto::audit::v1::audit_service_client::AuditServiceClient;
use agentsec_proto::audit::v1::QueryEventsRequest;
use agentsec_proto::identity::v1::identity_service_client::IdentityServiceClient;
use agentsec_proto::identity::v1::issue_token_request::ClientAuthentication;
use agentsec_proto::identity::v1::{GrantType, IssueTokenRequest};
use anyhow::{bail, Context as _};
use tokio::sync::watch;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::CertificateDer;

const DEADLINE: Duration = Duration::from_secs(15);

/// An audit-svc replica of `cluster` whose port has `tls`.
async fn audit_with(
    cluster: &TestCluster,
    tls: TlsConfig,
    client: &Arc<ClientTls>,
) -> anyhow::Result<(SocketAddr, watch::Sender<bool>)> {
    let mut config = cluster.audit_config(cluster.backend.database(Service::Audit.name()))?;
    config.tls = tls;
    serve_until_healthy(client, loopback().await?, move |listener, shutdown| {
        agentsec_audit::serve(config, listener, shutdown)
    })
    .await
}

fn status_text(result: anyhow::Result<Result<(), tonic::Status>>) -> anyhow::Result<String> {
    match result? {
        Ok(()) => bail!("the call succeeded"),
        Err(status) => Ok(format!("{status:?}")),
    }
}

#[tokio::test]
async fn tls_a_client_that_does_not_trust_the_ca_fails() -> anyhow::Result<()> {
    let cluster = TestCluster::start_only(&[Service::Audit]).await?;
    let dir = tempfile::tempdir()?;
    let (ca, other) = (
        TestCa::new("agentsec test CA")?,
        TestCa::new("someone else")?,
    );
    let tls = service_tls(dir.path(), &ca, "audit-svc", ClientAuth::None)?;
    let trusting = client(tls.client.ca_file.clone(), None)?;
    let (addr, stop) = audit_with(&cluster, tls, &trusting).await?;

    // The trusting client reads the trail over TLS.
    let channel = trusting.connect(endpoint(addr)?).await?;
    AuditServiceClient::new(channel)
        .query_events(with_bearer(
            QueryEventsRequest::default(),
            &cluster.audit_token().await?,
        ))
        .await?;

    let distrusting = client(Some(write(dir.path(), "other.crt", &other.pem)?), None)?;
    let refused = status_text(health(&distrusting, addr).await)?;
    assert!(refused.contains("UnknownIssuer"), "{refused}");
    // No CA configured: the Mozilla roots, which hold no private CA.
    let public_roots = ClientTls::public_roots()?;
    assert!(health(&public_roots, addr).await?.is_err());
    // Plaintext gRPC to the TLS port.
    let plain = agentsec_integration_tests::cluster::channel(addr).await;
    let plain_answer = match plain {
        Ok(channel) => tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .is_ok(),
        Err(_) => false,
    };
    assert!(!plain_answer, "a plaintext client was served");

    stop.send(true)?;
    cluster.shutdown().await
}

#[tokio::test]
async fn tls_with_client_certificates_required_a_client_without_one_fails() -> anyhow::Result<()> {
    let cluster = TestCluster::start_only(&[Service::Audit]).await?;
    let dir = tempfile::tempdir()?;
    let (ca, other) = (
        TestCa::new("agentsec test CA")?,
        TestCa::new("someone else")?,
    );
    let tls = service_tls(dir.path(), &ca, "audit-svc", ClientAuth::Required)?;
    let ca_file = tls.client.ca_file.clone();
    let with_certificate = |name: &str, issuer: &TestCa| -> anyhow::Result<Arc<ClientTls>> {
        let (cert, key) = issuer.leaf(name)?;
        client(
            ca_file.clone(),
            Some((
                write(dir.path(), &format!("{name}.crt"), &cert)?,
                write(dir.path(), &format!("{name}.key"), &key)?,
            )),
        )
    };
    let member = with_certificate("exchange-svc", &ca)?;
    let (addr, stop) = audit_with(&cluster, tls, &member).await?;

    // TLS 1.3: the client's handshake ends before the server judges its
    // certificate; the refusal arrives with the first read, so the call
    // fails.
    let anonymous = client(ca_file.clone(), None)?;
    let refused = status_text(health(&anonymous, addr).await)?;
    assert!(refused.contains("CertificateRequired"), "{refused}");
    let stranger = with_certificate("stranger", &other)?;
    let refused = status_text(health(&stranger, addr).await)?;
    assert!(refused.contains("UnknownCA"), "{refused}");
    health(&member, addr).await??;

    stop.send(true)?;
    cluster.shutdown().await
}

#[tokio::test]
async fn tls_a_rotated_certificate_is_served_without_a_restart() -> anyhow::Result<()> {
    let cluster = TestCluster::start_only(&[Service::Audit]).await?;
    let dir = tempfile::tempdir()?;
    let ca = TestCa::new("agentsec test CA")?;
    let tls = service_tls(dir.path(), &ca, "audit-svc", ClientAuth::None)?;
    let (cert_file, key_file) = (
        tls.cert_file.clone().context("a certificate")?,
        tls.key_file.clone().context("a key")?,
    );
    let trusting = client(tls.client.ca_file.clone(), None)?;
    let (addr, stop) = audit_with(&cluster, tls, &trusting).await?;
    let first = CertificateDer::from_pem_slice(&std::fs::read(&cert_file)?)?;
    assert_eq!(served_leaf(&trusting, addr).await?, first);

    // cert-manager writes a new pair; the service polls its files.
    let (cert, key) = ca.leaf("audit-svc, rotated")?;
    std::fs::write(&key_file, &key)?;
    std::fs::write(&cert_file, &cert)?;
    let rotated = CertificateDer::from_pem_slice(cert.as_bytes())?;
    eventually("the rotated certificate served", DEADLINE, || async {
        Ok((served_leaf(&trusting, addr).await? == rotated).then_some(()))
    })
    .await?;
    health(&trusting, addr).await??;

    stop.send(true)?;
    cluster.shutdown().await
}

#[tokio::test]
async fn tls_identity_and_audit_talk_over_mutual_tls() -> anyhow::Result<()> {
    let backend = TestBackend::from_env().await?;
    let dir = tempfile::tempdir()?;
    let ca = TestCa::new("agentsec test CA")?;
    let (identity_listener, audit_listener) = (loopback().await?, loopback().await?);
    let issuer = format!("https://{}", identity_listener.local_addr()?);

    // audit-svc takes only clients with a certificate of the CA, and
    // fetches identity-svc's key set over TLS.
    let mut audit = agentsec_audit::Config::for_test(backend.database(Service::Audit.name()));
    audit.trust_identity(&issuer);
    audit.tls = service_tls(dir.path(), &ca, "audit-svc", ClientAuth::Required)?;
    // identity-svc serves TLS and sends its audit events over mutual TLS.
    let mut identity = standalone_identity(&backend, &issuer);
    identity.audit = AuditClientConfig {
        endpoint: format!("https://{}", audit_listener.local_addr()?),
        flush_interval_ms: 2,
        retry_initial_backoff_ms: 10,
        retry_max_backoff_ms: 200,
        shutdown_flush_timeout_secs: 5,
        ..AuditClientConfig::default()
    };
    identity.tls = service_tls(dir.path(), &ca, "identity-svc", ClientAuth::None)?;
    // The operator's client: trusts the CA, holds a certificate of it.
    let operator = client(
        audit.tls.client.ca_file.clone(),
        Some((
            audit
                .tls
                .client
                .cert_file
                .clone()
                .context("a certificate")?,
            audit.tls.client.key_file.clone().context("a key")?,
        )),
    )?;

    let (audit_addr, stop_audit) =
        serve_until_healthy(&operator, audit_listener, move |listener, shutdown| {
            agentsec_audit::serve(audit, listener, shutdown)
        })
        .await?;
    let (identity_addr, stop_identity) =
        serve_until_healthy(&operator, identity_listener, move |listener, shutdown| {
            agentsec_identity::serve(identity, listener, shutdown)
        })
        .await?;

    // A token issued over TLS: identity-svc audits it to audit-svc.
    let mut identity_client =
        IdentityServiceClient::new(operator.connect(endpoint(identity_addr)?).await?);
    let admin = identity_client
        .issue_token(IssueTokenRequest {
            grant_type: GrantType::ClientCredentials as i32,
            client_id: ADMIN_CLIENT_ID.to_owned(),
            client_authentication: Some(ClientAuthentication::ClientSecret(
                ADMIN_CLIENT_SECRET.to_owned(),
            )),
            audience: ADMIN_AUDIENCE.to_owned(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .access_token;
    // audit-svc verifies the admin token with the key set it fetched from
    // identity-svc over TLS, and holds the event identity-svc sent.
    let audit_client = AuditServiceClient::new(operator.connect(endpoint(audit_addr)?).await?);
    eventually("identity-svc's audit event at audit-svc", DEADLINE, || {
        let mut audit_client = audit_client.clone();
        let request = with_bearer(QueryEventsRequest::default(), &admin);
        async move {
            let events = audit_client
                .query_events(request)
                .await?
                .into_inner()
                .events;
            Ok(events
                .iter()
                .any(|stored| {
                    stored
                        .event
                        .as_ref()
                        .is_some_and(|event| event.service == "identity-svc")
                })
                .then_some(()))
        }
    })
    .await?;

    stop_identity.send(true)?;
    stop_audit.send(true)?;
    backend
        .clean_up(&[Service::Identity.name(), Service::Audit.name()])
        .await
}
