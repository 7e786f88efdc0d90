//! Signing-key rotation with overlap, and replicas sharing PostgreSQL and
//! Redis: a change made through one replica holds on the other.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use agentsec_integration_tests::{http, with_bearer, Service, TestCluster};
use agentsec_proto::identity::v1::identity_service_client::IdentityServiceClient;
use agentsec_proto::identity::v1::{
    RotateSigningKeyRequest, SigningAlgorithm, SigningKeyStatus, SuspendAgentRequest,
};
use tonic::Code;

use crate::identity_support::{
    agentsec_token, bearer, default_client, get_token, identity, is_active, published_jwks,
    test_client, unverified_claims, verify_access_token, ADMIN_SCOPE, AUDIENCE,
};

fn kid(token: &str) -> anyhow::Result<String> {
    Ok(jsonwebtoken::decode_header(token)?.kid.unwrap_or_default())
}

#[tokio::test]
async fn rotation_signs_with_a_new_key_and_keeps_the_old_one_published() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let client = default_client(&cluster, &admin, "rotating").await?;
    let before = get_token(&cluster, &client, &[]).await?;
    let old_kid = kid(&before)?;

    let rotated = identity(&cluster)
        .await?
        .rotate_signing_key(with_bearer(
            RotateSigningKeyRequest {
                algorithm: SigningAlgorithm::Es256 as i32,
            },
            &admin,
        ))
        .await?
        .into_inner();
    let new_key = rotated.new_key.clone().unwrap_or_default();
    assert_ne!(new_key.kid, old_kid);
    assert_eq!(new_key.algorithm, SigningAlgorithm::Es256 as i32);
    assert_eq!(new_key.status, SigningKeyStatus::Active as i32);
    let statuses: Vec<(String, i32)> = rotated
        .published_keys
        .iter()
        .map(|key| (key.kid.clone(), key.status))
        .collect();
    assert_eq!(
        statuses,
        vec![
            (new_key.kid.clone(), SigningKeyStatus::Active as i32),
            (old_kid.clone(), SigningKeyStatus::Retiring as i32),
        ]
    );
    let retiring = &rotated.published_keys[1];
    let (retired, removed) = (
        retiring.retire_time.unwrap_or_default().seconds,
        retiring.remove_time.unwrap_or_default().seconds,
    );
    assert!(
        removed - retired >= 600,
        "the old key stays published at least a token lifetime"
    );

    let jwks = published_jwks(&cluster).await?;
    let kids: Vec<&str> = jwks.keys.iter().map(|key| key.kid.as_str()).collect();
    assert_eq!(kids, vec![new_key.kid.as_str(), old_kid.as_str()]);
    assert!(
        is_active(&cluster, &admin, &before).await?,
        "a token of the old key"
    );

    let after = get_token(&cluster, &client, &[]).await?;
    assert_eq!(kid(&after)?, new_key.kid);
    assert_eq!(
        jsonwebtoken::decode_header(&after)?.alg,
        jsonwebtoken::Algorithm::ES256
    );
    assert!(is_active(&cluster, &admin, &after).await?);
    let grpc_jwks = identity(&cluster)
        .await?
        .get_jwks(agentsec_proto::identity::v1::GetJwksRequest {})
        .await?
        .into_inner()
        .jwks
        .unwrap_or_default();
    assert_eq!(grpc_jwks.keys.len(), 2);
    // The token of the old key still verifies against the published set.
    verify_access_token(&cluster, &before, AUDIENCE).await?;
    cluster.shutdown().await
}

#[tokio::test]
async fn only_a_global_admin_rotates_keys() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let tenant_admin = test_client(
        &cluster,
        &admin,
        "acme",
        "tenant-admin",
        &[agentsec_integration_tests::cluster::ADMIN_AUDIENCE],
        &[ADMIN_SCOPE],
    )
    .await?;
    let token = agentsec_token(&cluster, &tenant_admin, ADMIN_SCOPE).await?;
    let mut client = identity(&cluster).await?;
    let refused = client
        .rotate_signing_key(with_bearer(RotateSigningKeyRequest::default(), &token))
        .await
        .expect_err("a tenant admin may not rotate");
    assert_eq!(refused.code(), Code::PermissionDenied);
    let unauthenticated = client
        .rotate_signing_key(RotateSigningKeyRequest::default())
        .await
        .expect_err("no token");
    assert_eq!(unauthenticated.code(), Code::Unauthenticated);
    assert_eq!(
        published_jwks(&cluster).await?.keys.len(),
        1,
        "nothing rotated"
    );
    cluster.shutdown().await
}

async fn introspect_at(addr: SocketAddr, admin: &str, token: &str) -> anyhow::Result<bool> {
    let response = http::post_form(
        addr,
        "/oauth2/introspect",
        &[("authorization", &bearer(admin))],
        &[("token", token)],
    )
    .await?;
    anyhow::ensure!(
        response.status == 200,
        "introspection answered {}",
        response.status
    );
    Ok(response.json()?["active"] == true)
}

/// How long until `token` introspects inactive at `addr`.
async fn time_until_inactive(
    addr: SocketAddr,
    admin: &str,
    token: &str,
    since: Instant,
) -> anyhow::Result<Duration> {
    let deadline = since + Duration::from_secs(5);
    loop {
        if !introspect_at(addr, admin, token).await? {
            return Ok(since.elapsed());
        }
        anyhow::ensure!(Instant::now() < deadline, "still active after 5 s");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test]
async fn a_replica_stops_vouching_for_a_suspended_agent_and_learns_new_keys() -> anyhow::Result<()>
{
    let mut cluster = TestCluster::start().await?;
    if !(cluster.backend.is_postgres() && cluster.backend.has_redis()) {
        // Replicas share PostgreSQL and Redis; SQLite is one process only.
        return cluster.shutdown().await;
    }
    let replica = cluster.start_replica(Service::Identity).await?;
    let admin = cluster.admin_token().await?;
    let client = default_client(&cluster, &admin, "replicated").await?;
    let token = get_token(&cluster, &client, &[]).await?;
    // The replica has the agent's standing in memory now.
    assert!(introspect_at(replica, &admin, &token).await?);
    assert!(introspect_at(replica, &admin, &token).await?);

    identity(&cluster)
        .await?
        .suspend_agent(with_bearer(
            SuspendAgentRequest {
                agent_id: client.id.clone(),
                reason: "replica test".into(),
            },
            &admin,
        ))
        .await?;
    let returned = Instant::now();
    let delay = time_until_inactive(replica, &admin, &token, returned).await?;
    eprintln!("replica answered inactive {delay:?} after SuspendAgent returned");
    assert!(!is_active(&cluster, &admin, &token).await?);

    // A key rotated through the first instance: the replica verifies its
    // tokens at once (unknown kid -> re-read) and signs with it soon after.
    let other = default_client(&cluster, &admin, "after-rotation").await?;
    let mut primary = IdentityServiceClient::new(cluster.channel(Service::Identity).await?);
    let new_kid = primary
        .rotate_signing_key(with_bearer(RotateSigningKeyRequest::default(), &admin))
        .await?
        .into_inner()
        .new_key
        .unwrap_or_default()
        .kid;
    let fresh = get_token(&cluster, &other, &[]).await?;
    assert_eq!(kid(&fresh)?, new_kid);
    assert_eq!(unverified_claims(&fresh)?["sub"], other.id.as_str());
    assert!(introspect_at(replica, &admin, &fresh).await?);
    cluster.shutdown().await
}

/// client_credentials at `addr` with client_secret_post; the HTTP status.
async fn token_status_at(addr: SocketAddr, client_id: &str, secret: &str) -> anyhow::Result<u16> {
    Ok(http::post_form(
        addr,
        "/oauth2/token",
        &[],
        &[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
        ],
    )
    .await?
    .status)
}

#[tokio::test]
async fn a_replica_accepts_a_secret_created_elsewhere_and_drops_a_deleted_one() -> anyhow::Result<()>
{
    use agentsec_proto::identity::v1::DeleteCredentialRequest;

    let mut cluster = TestCluster::start().await?;
    if !(cluster.backend.is_postgres() && cluster.backend.has_redis()) {
        // Replicas share PostgreSQL and Redis; SQLite is one process only.
        return cluster.shutdown().await;
    }
    let replica = cluster.start_replica(Service::Identity).await?;
    let admin = cluster.admin_token().await?;
    let client = default_client(&cluster, &admin, "rotating-secrets").await?;
    // The replica remembers the client with its first secret.
    assert_eq!(
        token_status_at(replica, &client.id, &client.secret).await?,
        200
    );

    let second = crate::identity_support::create_secret(&cluster, &admin, &client.id).await?;
    assert_eq!(
        token_status_at(replica, &client.id, &second.client_secret).await?,
        200,
        "a secret created through the other instance works at once"
    );

    identity(&cluster)
        .await?
        .delete_credential(with_bearer(
            DeleteCredentialRequest {
                agent_id: client.id.clone(),
                credential_id: client.credential_id.clone(),
            },
            &admin,
        ))
        .await?;
    let deleted = Instant::now();
    loop {
        if token_status_at(replica, &client.id, &client.secret).await? == 401 {
            break;
        }
        anyhow::ensure!(
            deleted.elapsed() < Duration::from_secs(5),
            "the replica still accepts a deleted secret"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    eprintln!(
        "replica refused the deleted secret {:?} after the call returned",
        deleted.elapsed()
    );
    assert_eq!(
        token_status_at(replica, &client.id, &second.client_secret).await?,
        200
    );
    cluster.shutdown().await
}
