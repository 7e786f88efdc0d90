//! The credentials of an agent at identity-svc: client secrets (shown
//! once, stored only as hashes, capped) and public keys (validated,
//! registered, listed).

use agentsec_common::keys;
use agentsec_integration_tests::{with_bearer, Service, TestCluster};
use agentsec_proto::common::v1::Jwk;
use agentsec_proto::identity::v1::{
    credential, AddPublicKeyRequest, CreateClientSecretRequest, CredentialType,
    DeleteCredentialRequest, ListCredentialsRequest,
};
use anyhow::bail;
use sea_orm::ConnectionTrait;
use tonic::Code;

use crate::identity_support::*;

// ---------------------------------------------------------------------------
// Credentials
// ---------------------------------------------------------------------------

#[tokio::test]
async fn client_secrets_are_shown_once_listed_by_prefix_and_capped_at_five() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let mut client = identity(&cluster).await?;
    let agent = register(
        &cluster,
        &admin,
        new_agent("acme", "secretive", &[AUDIENCE], SCOPES),
    )
    .await?;
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(create_secret(&cluster, &admin, &agent.id).await?);
    }
    for response in &created {
        assert_eq!(response.client_id, agent.id, "client_id is the agent id");
        let secret = &response.client_secret;
        assert!(
            (43..=128).contains(&secret.len()),
            "256 bits of entropy, at most 128 chars: {} chars",
            secret.len()
        );
        assert!(
            secret
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.~".contains(c)),
            "URL-safe characters only"
        );
        let credential = response.credential.clone().unwrap_or_default();
        assert_prefixed_ulid(&credential.id, "cred_");
        assert_eq!(credential.agent_id, agent.id);
        assert_eq!(credential.r#type, CredentialType::ClientSecret as i32);
        assert!(credential.create_time.is_some());
        let Some(credential::Details::ClientSecret(info)) = credential.details else {
            bail!("a client secret credential without client_secret details");
        };
        assert_eq!(info.prefix, secret[..8]);
    }
    let mut secrets: Vec<&str> = created.iter().map(|c| c.client_secret.as_str()).collect();
    secrets.sort();
    secrets.dedup();
    assert_eq!(secrets.len(), 5, "every secret is new");

    let listed = client
        .list_credentials(with_bearer(
            ListCredentialsRequest {
                agent_id: agent.id.clone(),
                ..Default::default()
            },
            &admin,
        ))
        .await?
        .into_inner();
    let mut expected_ids: Vec<String> = created
        .iter()
        .map(|c| c.credential.clone().unwrap_or_default().id)
        .collect();
    expected_ids.sort();
    assert_eq!(
        listed
            .credentials
            .iter()
            .map(|c| c.id.clone())
            .collect::<Vec<_>>(),
        expected_ids,
        "ordered by id"
    );
    let listing = format!("{listed:?}");
    for response in &created {
        assert!(
            !listing.contains(&response.client_secret),
            "ListCredentials never shows a secret"
        );
    }
    for credential in &listed.credentials {
        assert_eq!(credential.r#type, CredentialType::ClientSecret as i32);
        let Some(credential::Details::ClientSecret(info)) = &credential.details else {
            bail!("listed secret without details");
        };
        assert_eq!(info.prefix.len(), 8);
    }

    assert_code(
        client
            .create_client_secret(with_bearer(
                CreateClientSecretRequest {
                    agent_id: agent.id.clone(),
                    ..Default::default()
                },
                &admin,
            ))
            .await,
        Code::FailedPrecondition,
        "a sixth client secret",
    )?;

    // Deleting one makes room again; deleting it twice is NOT_FOUND.
    let first = created[0].credential.clone().unwrap_or_default().id;
    let delete = |credential_id: String| DeleteCredentialRequest {
        agent_id: agent.id.clone(),
        credential_id,
    };
    client
        .delete_credential(with_bearer(delete(first.clone()), &admin))
        .await?;
    assert_code(
        client
            .delete_credential(with_bearer(delete(first), &admin))
            .await,
        Code::NotFound,
        "deleting a deleted credential",
    )?;
    assert_code(
        client
            .delete_credential(with_bearer(
                delete("cred_01JD8X3Q6V6K2T1M9Q0Z7W4B5C".into()),
                &admin,
            ))
            .await,
        Code::NotFound,
        "deleting an unknown credential",
    )?;
    create_secret(&cluster, &admin, &agent.id).await?;
    assert_code(
        client
            .create_client_secret(with_bearer(
                CreateClientSecretRequest {
                    agent_id: UNKNOWN_AGENT.into(),
                    ..Default::default()
                },
                &admin,
            ))
            .await,
        Code::NotFound,
        "a secret for an unknown agent",
    )?;
    cluster.shutdown().await
}

#[tokio::test]
async fn the_database_never_holds_a_client_secret() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let first = default_client(&cluster, &admin, "stored-1").await?;
    let second = create_secret(&cluster, &admin, &first.id).await?;
    // A token was issued: the secret was checked against what is stored.
    get_token(&cluster, &first, &[]).await?;

    let db = cluster.database(Service::Identity).await?;
    let rows = db
        .query_all(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT * FROM credentials",
        ))
        .await?;
    assert!(rows.len() >= 2, "both secrets have a row");
    let mut text_values = 0;
    for row in &rows {
        for index in 0..64 {
            if let Ok(Some(text)) = row.try_get_by_index::<Option<String>>(index) {
                text_values += 1;
                for secret in [&first.secret, &second.client_secret] {
                    assert!(
                        !text.contains(secret.as_str()),
                        "column {index} holds a client secret"
                    );
                }
            }
            if let Ok(Some(bytes)) = row.try_get_by_index::<Option<Vec<u8>>>(index) {
                for secret in [&first.secret, &second.client_secret] {
                    assert!(
                        !bytes
                            .windows(secret.len())
                            .any(|window| window == secret.as_bytes()),
                        "column {index} holds a client secret as bytes"
                    );
                }
            }
        }
    }
    assert!(text_values > 0, "the rows were readable as text");
    cluster.shutdown().await
}

#[tokio::test]
async fn public_keys_are_validated_registered_and_listed() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let mut client = identity(&cluster).await?;
    let agent = register(
        &cluster,
        &admin,
        new_agent("acme", "keyholder", &[AUDIENCE], SCOPES),
    )
    .await?;
    let key = keys::SigningKey::generate(keys::SigningAlgorithm::EdDsa)?;
    let jwk = Jwk::from(key.public_jwk());
    let add = |jwk: Jwk| AddPublicKeyRequest {
        agent_id: agent.id.clone(),
        jwk: Some(jwk),
        description: "laptop key".into(),
        ..Default::default()
    };
    let credential = client
        .add_public_key(with_bearer(add(jwk.clone()), &admin))
        .await?
        .into_inner()
        .credential
        .unwrap_or_default();
    assert_prefixed_ulid(&credential.id, "cred_");
    assert_eq!(credential.r#type, CredentialType::PublicKey as i32);
    assert_eq!(credential.description, "laptop key");
    let Some(credential::Details::PublicKey(info)) = &credential.details else {
        bail!("a public key credential without public_key details");
    };
    assert_eq!(info.thumbprint, key.public_jwk().thumbprint());
    let stored = info.jwk.clone().unwrap_or_default();
    assert_eq!(
        (stored.kty.as_str(), stored.kid.as_str(), stored.x.as_str()),
        ("OKP", key.kid(), jwk.x.as_str())
    );

    assert_code(
        client
            .add_public_key(with_bearer(add(jwk.clone()), &admin))
            .await,
        Code::AlreadyExists,
        "the same kid again",
    )?;

    // No kid: the RFC 7638 thumbprint becomes the kid. P-256 is accepted.
    let ec = keys::SigningKey::generate(keys::SigningAlgorithm::Es256)?;
    let ec_jwk = Jwk {
        kid: String::new(),
        ..Jwk::from(ec.public_jwk())
    };
    let ec_credential = client
        .add_public_key(with_bearer(add(ec_jwk), &admin))
        .await?
        .into_inner()
        .credential
        .unwrap_or_default();
    let Some(credential::Details::PublicKey(ec_info)) = &ec_credential.details else {
        bail!("no public_key details");
    };
    assert_eq!(
        ec_info.jwk.clone().unwrap_or_default().kid,
        ec.public_jwk().thumbprint()
    );

    let other = keys::SigningKey::generate(keys::SigningAlgorithm::EdDsa)?;
    let base = Jwk::from(other.public_jwk());
    let bad: Vec<(&str, Jwk)> = vec![
        (
            "symmetric key type",
            Jwk {
                kty: "oct".into(),
                crv: String::new(),
                ..base.clone()
            },
        ),
        (
            "unknown key type",
            Jwk {
                kty: "XYZ".into(),
                ..base.clone()
            },
        ),
        (
            "OKP on X25519 (not a signing curve)",
            Jwk {
                crv: "X25519".into(),
                ..base.clone()
            },
        ),
        (
            "no alg",
            Jwk {
                alg: String::new(),
                ..base.clone()
            },
        ),
        (
            "x that is not base64url",
            Jwk {
                x: "***".into(),
                ..base.clone()
            },
        ),
    ];
    for (what, jwk) in bad {
        assert_code(
            client.add_public_key(with_bearer(add(jwk), &admin)).await,
            Code::InvalidArgument,
            what,
        )?;
    }

    create_secret(&cluster, &admin, &agent.id).await?;
    let list = |r#type: CredentialType| ListCredentialsRequest {
        agent_id: agent.id.clone(),
        r#type: r#type as i32,
        ..Default::default()
    };
    let keys_only = client
        .list_credentials(with_bearer(list(CredentialType::PublicKey), &admin))
        .await?
        .into_inner()
        .credentials;
    assert_eq!(keys_only.len(), 2, "two keys registered");
    assert!(keys_only
        .iter()
        .all(|c| c.r#type == CredentialType::PublicKey as i32));
    let all = client
        .list_credentials(with_bearer(list(CredentialType::Unspecified), &admin))
        .await?
        .into_inner()
        .credentials;
    assert_eq!(all.len(), 3, "two keys and a secret");
    let secrets_only = client
        .list_credentials(with_bearer(list(CredentialType::ClientSecret), &admin))
        .await?
        .into_inner()
        .credentials;
    assert_eq!(secrets_only.len(), 1);
    cluster.shutdown().await
}
