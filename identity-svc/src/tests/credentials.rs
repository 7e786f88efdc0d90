//! Client secrets, public keys and federated credentials of an agent.

use agentsec_common::invalidation::InvalidationKind;
use tonic::Code;

use super::*;
use crate::domain::agent::Agent;
use crate::domain::credential::{
    CredentialQuery, FederatedInput, Kind, NewFederated, NewPublicKey, NewSecret, SubjectMatch, Ttl,
};
use crate::domain::credentials::MAX_SECRETS;
use crate::domain::jwk::Jwk;
use crate::domain::registry::Transition;
use crate::error::IdentityError;

fn code(err: IdentityError) -> Code {
    tonic::Status::from(err).code()
}

async fn agent(harness: &Harness, tenant: &str, name: &str) -> Agent {
    harness
        .registry
        .register(&global(), new_agent(tenant, name))
        .await
        .unwrap()
}

fn secret(agent_id: &str) -> NewSecret {
    NewSecret {
        agent_id: agent_id.into(),
        description: "ci".into(),
        ttl: None,
    }
}

fn public_key(agent_id: &str) -> NewPublicKey {
    let key = SigningKey::generate(SigningAlgorithm::Es256).unwrap();
    let public = key.public_jwk();
    NewPublicKey {
        agent_id: agent_id.into(),
        description: "laptop".into(),
        jwk: Some(Jwk {
            kty: public.kty.clone(),
            alg: public.alg.clone(),
            crv: public.crv.clone(),
            x: public.x.clone(),
            y: public.y.clone().unwrap_or_default(),
            ..Jwk::default()
        }),
        expire_time: None,
    }
}

fn federated(agent_id: &str, issuer: &str) -> NewFederated {
    NewFederated {
        agent_id: agent_id.into(),
        description: "k8s".into(),
        federated: Some(FederatedInput {
            issuer: issuer.into(),
            subject: Some(SubjectMatch::Pattern("system:serviceaccount:ci:*".into())),
            audience: "agentsec".into(),
        }),
        expire_time: None,
    }
}

#[tokio::test]
async fn a_client_secret_is_kept_only_as_its_hash_up_to_max_secrets() {
    let harness = Harness::new();
    let agent = agent(&harness, "acme", "builder").await;
    let mut secrets = Vec::new();
    for _ in 0..MAX_SECRETS {
        let (credential, secret) = harness
            .registry
            .create_secret(&tenant_admin("acme"), secret(&agent.id))
            .await
            .unwrap();
        assert_eq!(credential.kind, Kind::ClientSecret);
        assert_eq!(
            credential.secret_hash.as_deref(),
            Some(harness.registry.pepper.hash(&secret).as_slice())
        );
        assert!(secret.starts_with(credential.secret_prefix.as_deref().unwrap()));
        secrets.push(credential);
    }
    let audited = harness.audited();
    let err = harness
        .registry
        .create_secret(&global(), secret(&agent.id))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "failed precondition: the agent already has {MAX_SECRETS} credentials of type \
             client_secret; delete one first"
        )
    );
    let stored = harness.stored().await.credentials;
    assert_eq!(stored.len(), MAX_SECRETS as usize);
    assert!(secrets.iter().all(|c| stored.get(&c.id) == Some(c)));
    assert_eq!(harness.audited(), audited);

    // Other kinds have caps of their own.
    harness
        .registry
        .add_public_key(&global(), public_key(&agent.id))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_refused_credential_stores_nothing_and_audits_nothing() {
    let harness = Harness::new();
    let agent = agent(&harness, "acme", "builder").await;
    let audited = harness.audited();
    let long = NewSecret {
        description: "x".repeat(257),
        ..secret(&agent.id)
    };
    let forever = NewSecret {
        ttl: Some(Ttl {
            seconds: 3 * 365 * 24 * 3600,
            nanos: 0,
        }),
        ..secret(&agent.id)
    };
    let past = NewPublicKey {
        expire_time: Some(chrono::Utc::now() - chrono::Duration::seconds(1)),
        ..public_key(&agent.id)
    };
    let no_jwk = NewPublicKey {
        jwk: None,
        ..public_key(&agent.id)
    };
    let registry = &harness.registry;
    let refusals = [
        registry.create_secret(&global(), long).await.map(|_| ()),
        registry.create_secret(&global(), forever).await.map(|_| ()),
        registry
            .create_secret(&global(), secret("agt_missing"))
            .await
            .map(|_| ()),
        registry.add_public_key(&global(), past).await.map(|_| ()),
        registry.add_public_key(&global(), no_jwk).await.map(|_| ()),
        registry
            .add_federated_credential(&global(), federated(&agent.id, "https://untrusted.test"))
            .await
            .map(|_| ()),
    ];
    let codes: Vec<Code> = refusals
        .into_iter()
        .map(|refused| code(refused.unwrap_err()))
        .collect();
    assert_eq!(
        codes,
        [
            Code::InvalidArgument,
            Code::InvalidArgument,
            Code::NotFound,
            Code::InvalidArgument,
            Code::InvalidArgument,
            Code::FailedPrecondition,
        ]
    );
    assert!(harness.stored().await.credentials.is_empty());
    assert_eq!(harness.audited(), audited);
}

#[tokio::test]
async fn a_public_key_kid_names_one_key_of_the_agent() {
    let harness = Harness::new();
    let agent = agent(&harness, "acme", "builder").await;
    let other = self::agent(&harness, "acme", "reviewer").await;
    let key = public_key(&agent.id);
    let stored = harness
        .registry
        .add_public_key(&global(), key.clone())
        .await
        .unwrap();
    assert_eq!(stored.kind, Kind::PublicKey);
    let kid = stored.kid.clone().unwrap();
    let audited = harness.audited();
    let err = harness
        .registry
        .add_public_key(&global(), key.clone())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("public key kid `{kid}` already exists")
    );
    assert_eq!(harness.audited(), audited);
    // The same key may be another agent's.
    harness
        .registry
        .add_public_key(
            &global(),
            NewPublicKey {
                agent_id: other.id.clone(),
                ..key
            },
        )
        .await
        .unwrap();
    assert_eq!(harness.stored().await.credentials.len(), 2);
}

#[tokio::test]
async fn a_federated_credential_names_a_trusted_issuer() {
    let harness = Harness::new();
    let agent = agent(&harness, "acme", "builder").await;
    let credential = harness
        .registry
        .add_federated_credential(&global(), federated(&agent.id, TRUSTED_ISSUER))
        .await
        .unwrap();
    assert_eq!(credential.kind, Kind::Federated);
    assert_eq!(
        credential.federated.as_ref().map(|f| f.issuer.as_str()),
        Some(TRUSTED_ISSUER)
    );
    let mut leading_star = federated(&agent.id, TRUSTED_ISSUER);
    leading_star.federated.as_mut().unwrap().subject = Some(SubjectMatch::Pattern("*".into()));
    let err = harness
        .registry
        .add_federated_credential(&global(), leading_star)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("federated.subject_pattern"),
        "{err}"
    );
    assert_eq!(harness.stored().await.credentials.len(), 1);
}

#[tokio::test]
async fn a_revoked_agent_gets_no_credential_but_may_lose_one() {
    let mut harness = Harness::new();
    let agent = agent(&harness, "acme", "builder").await;
    let (kept, _) = harness
        .registry
        .create_secret(&global(), secret(&agent.id))
        .await
        .unwrap();
    harness
        .registry
        .transition(&global(), &agent.id, Transition::Revoke, "gone")
        .await
        .unwrap();
    let audited = harness.audited();
    let registry = &harness.registry;
    let refusals = [
        registry
            .create_secret(&global(), secret(&agent.id))
            .await
            .map(|_| ()),
        registry
            .add_public_key(&global(), public_key(&agent.id))
            .await
            .map(|_| ()),
        registry
            .add_federated_credential(&global(), federated(&agent.id, TRUSTED_ISSUER))
            .await
            .map(|_| ()),
    ];
    for refused in refusals {
        let err = refused.unwrap_err();
        assert_eq!(err.to_string(), "failed precondition: the agent is revoked");
    }
    assert_eq!(harness.stored().await.credentials.len(), 1);
    assert_eq!(harness.audited(), audited);

    harness.published();
    harness
        .registry
        .delete_credential(&global(), &agent.id, &kept.id)
        .await
        .unwrap();
    assert!(harness.stored().await.credentials.is_empty());
    assert_eq!(harness.audited(), audited + 1);
}

#[tokio::test]
async fn a_deleted_credential_is_gone_tombstoned_and_published() {
    let mut harness = Harness::new();
    let agent = agent(&harness, "acme", "builder").await;
    let other = self::agent(&harness, "acme", "reviewer").await;
    let (credential, _) = harness
        .registry
        .create_secret(&global(), secret(&agent.id))
        .await
        .unwrap();
    harness.published();
    let audited = harness.audited();

    // Only through its own agent.
    let err = harness
        .registry
        .delete_credential(&global(), &other.id, &credential.id)
        .await
        .unwrap_err();
    assert_eq!(code(err), Code::NotFound);
    let err = harness
        .registry
        .delete_credential(&tenant_admin("globex"), &agent.id, &credential.id)
        .await
        .unwrap_err();
    assert_eq!(code(err), Code::NotFound);
    assert_eq!(harness.stored().await.credentials.len(), 1);
    assert_eq!(harness.audited(), audited);

    harness
        .registry
        .delete_credential(&tenant_admin("acme"), &agent.id, &credential.id)
        .await
        .unwrap();
    let stored = harness.stored().await;
    assert!(stored.credentials.is_empty());
    assert_eq!(
        stored
            .deleted_credentials
            .get(&credential.id)
            .map(|(agent_id, _)| agent_id),
        Some(&agent.id)
    );
    assert_eq!(harness.audited(), audited + 1);
    let published = harness.published();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].event.kind, InvalidationKind::CredentialDeleted);
    assert_eq!(published[0].event.credential_id, credential.id);

    let err = harness
        .registry
        .delete_credential(&global(), &agent.id, &credential.id)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("credential `{}` not found", credential.id)
    );
    assert_eq!(harness.audited(), audited + 1);
}

#[tokio::test]
async fn credentials_list_by_agent_and_kind_in_pages() {
    let harness = Harness::new();
    let agent = agent(&harness, "acme", "builder").await;
    let other = self::agent(&harness, "globex", "builder").await;
    let mut secrets = Vec::new();
    for _ in 0..3 {
        let (credential, _) = harness
            .registry
            .create_secret(&global(), secret(&agent.id))
            .await
            .unwrap();
        secrets.push(credential.id);
    }
    let key = harness
        .registry
        .add_public_key(&global(), public_key(&agent.id))
        .await
        .unwrap();
    harness
        .registry
        .create_secret(&global(), secret(&other.id))
        .await
        .unwrap();
    secrets.sort();

    let query = |kind| CredentialQuery {
        agent_id: agent.id.clone(),
        kind,
    };
    let registry = &harness.registry;
    let (first, next) = registry
        .list_credentials(
            &global(),
            query(Some(Kind::ClientSecret)),
            Some(&page(2, "")),
        )
        .await
        .unwrap();
    let (second, last) = registry
        .list_credentials(
            &global(),
            query(Some(Kind::ClientSecret)),
            Some(&page(2, &next)),
        )
        .await
        .unwrap();
    assert_eq!(last, "");
    let listed: Vec<_> = first.iter().chain(&second).map(|c| c.id.clone()).collect();
    assert_eq!(listed, secrets);
    let err = registry
        .list_credentials(&global(), query(None), Some(&page(2, &next)))
        .await
        .unwrap_err();
    assert_eq!(code(err), Code::InvalidArgument, "a cursor of another kind");

    let (keys, _) = registry
        .list_credentials(&global(), query(Some(Kind::PublicKey)), None)
        .await
        .unwrap();
    assert_eq!(keys, vec![key]);
    let (all, _) = registry
        .list_credentials(&tenant_admin("acme"), query(None), None)
        .await
        .unwrap();
    assert_eq!(all.len(), 4);
    let err = registry
        .list_credentials(&tenant_admin("globex"), query(None), None)
        .await
        .unwrap_err();
    assert_eq!(code(err), Code::NotFound);
}

#[tokio::test]
async fn a_credential_outage_is_unavailable_and_stores_nothing() {
    let harness = Harness::new();
    let agent = agent(&harness, "acme", "builder").await;
    let (credential, _) = harness
        .registry
        .create_secret(&global(), secret(&agent.id))
        .await
        .unwrap();
    let audited = harness.audited();
    harness.tables().set_unreachable(true);
    let registry = &harness.registry;
    let outcomes = [
        registry
            .create_secret(&global(), secret(&agent.id))
            .await
            .map(|_| ()),
        registry
            .add_public_key(&global(), public_key(&agent.id))
            .await
            .map(|_| ()),
        registry
            .delete_credential(&global(), &agent.id, &credential.id)
            .await,
        registry
            .list_credentials(
                &global(),
                CredentialQuery {
                    agent_id: agent.id.clone(),
                    kind: None,
                },
                None,
            )
            .await
            .map(|_| ()),
    ];
    for outcome in outcomes {
        assert_eq!(code(outcome.unwrap_err()), Code::Unavailable);
    }
    harness.tables().set_unreachable(false);
    let stored = harness.stored().await;
    assert_eq!(stored.credentials.len(), 1);
    assert!(stored.credentials.contains_key(&credential.id));
    assert!(stored.deleted_credentials.is_empty());
    assert_eq!(harness.audited(), audited);
}
