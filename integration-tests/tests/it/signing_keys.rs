//! The signing services publish their keys over gRPC and HTTP, and keep them
//! across restarts.

use agentsec_integration_tests::http;
use agentsec_integration_tests::{Service, TestCluster};
use agentsec_proto::audit::v1::audit_service_client::AuditServiceClient;
use agentsec_proto::audit::v1::GetVerificationKeysRequest;
use agentsec_proto::exchange::v1::exchange_service_client::ExchangeServiceClient;
use agentsec_proto::identity::v1::identity_service_client::IdentityServiceClient;
use agentsec_proto::identity::v1::GetJwksRequest;

#[tokio::test]
async fn jwks_is_the_same_over_grpc_and_http_and_survives_restart() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let mut identity = IdentityServiceClient::new(cluster.channel(Service::Identity).await?);
    let grpc_jwks = identity
        .get_jwks(GetJwksRequest {})
        .await?
        .into_inner()
        .jwks
        .unwrap_or_default();
    assert_eq!(grpc_jwks.keys.len(), 1);
    let key = &grpc_jwks.keys[0];
    assert_eq!(
        (key.kty.as_str(), key.crv.as_str(), key.alg.as_str()),
        ("OKP", "Ed25519", "EdDSA")
    );
    assert_eq!(key.r#use, "sig");
    assert_eq!(
        key.kid.len(),
        43,
        "an RFC 7638 SHA-256 thumbprint, base64url"
    );

    let response = http::get(cluster.addr(Service::Identity), "/.well-known/jwks.json").await?;
    assert_eq!(response.status, 200);
    let http_jwks = response.json()?;
    assert_eq!(http_jwks["keys"][0]["kid"], key.kid.as_str());
    assert_eq!(http_jwks["keys"][0]["x"], key.x.as_str());

    let mut exchange = ExchangeServiceClient::new(cluster.channel(Service::Exchange).await?);
    let exchange_jwks = exchange
        .get_jwks(agentsec_proto::exchange::v1::GetJwksRequest {})
        .await?
        .into_inner()
        .jwks
        .unwrap_or_default();
    assert_eq!(exchange_jwks.keys.len(), 1);
    assert_ne!(
        exchange_jwks.keys[0].kid, key.kid,
        "each service has its own key"
    );

    let mut audit = AuditServiceClient::new(cluster.channel(Service::Audit).await?);
    let audit_keys = audit
        .get_verification_keys(GetVerificationKeysRequest {})
        .await?
        .into_inner();
    let audit_jwks = audit_keys.jwks.unwrap_or_default();
    assert_eq!(audit_jwks.keys.len(), 1);
    assert_eq!(audit_jwks.keys[0].kid, audit_keys.active_key_id);

    // Same databases, new processes: the published key does not change.
    let backend = cluster.stop().await?;
    let restarted = TestCluster::start_on(backend).await?;
    let mut identity = IdentityServiceClient::new(restarted.channel(Service::Identity).await?);
    let after_restart = identity
        .get_jwks(GetJwksRequest {})
        .await?
        .into_inner()
        .jwks
        .unwrap_or_default();
    assert_eq!(after_restart, grpc_jwks);
    restarted.shutdown().await
}

#[tokio::test]
async fn unknown_http_paths_are_404_json() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let response = http::get(cluster.addr(Service::Policy), "/no/such/endpoint").await?;
    assert_eq!(response.status, 404);
    assert_eq!(response.json()?["error"], "not_found");
    cluster.shutdown().await
}
