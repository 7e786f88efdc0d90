//! The policy set rules through the in-memory version store: what a change
//! stores, audits and installs, and what a refused change leaves alone.

use agentsec_common::admin_token::AdminScope;
use agentsec_common::audit::client::{AuditClient, AuditClientConfig};
use agentsec_common::invalidation::Publisher;
use agentsec_common::tls::ClientTls;
use agentsec_proto::common::v1::Effect;
use tonic::Code;

use super::*;
use crate::auth::Admin;
use crate::store::versions::MemoryPolicyVersionStore;

/// A real audit client whose events wait in its queue (no audit-svc).
fn events() -> (Events, AuditClient) {
    let config = AuditClientConfig {
        endpoint: "http://127.0.0.1:1".to_owned(),
        ..AuditClientConfig::default()
    };
    let tls = ClientTls::public_roots().expect("public roots");
    let (audit, _sender) = AuditClient::start(config, None, &tls).expect("audit client");
    (
        Events::new(audit.clone(), Publisher::new(None, None, String::new())),
        audit,
    )
}

async fn policies() -> (
    Policies<MemoryPolicyVersionStore>,
    MemoryPolicyVersionStore,
    AuditClient,
) {
    let store = MemoryPolicyVersionStore::default();
    let (events, audit) = events();
    let policies = Policies::load(store.clone(), events).await.expect("load");
    (policies, store, audit)
}

fn admin(scope: AdminScope) -> Admin {
    Admin {
        subject: "root".to_owned(),
        scope,
    }
}

fn allow_read(id: &str) -> pb::PolicySet {
    pb::PolicySet {
        rules: vec![pb::PolicyRule {
            id: id.to_owned(),
            effect: Effect::Allow as i32,
            agent: "*".to_owned(),
            audience: "*".to_owned(),
            resource: "doc:reports/*".to_owned(),
            actions: vec!["read".to_owned()],
            ..pb::PolicyRule::default()
        }],
        ..pb::PolicySet::default()
    }
}

fn put(tenant: &str, set: pb::PolicySet, expected: Option<u64>) -> pb::PutPolicySetRequest {
    pb::PutPolicySetRequest {
        tenant: tenant.to_owned(),
        policy_set: Some(set),
        description: "change".to_owned(),
        expected_version: expected,
    }
}

fn code(err: PolicyError) -> Code {
    tonic::Status::from(err).code()
}

#[tokio::test]
async fn a_change_stores_the_next_version_audits_it_and_installs_it() {
    let (policies, store, audit) = policies().await;
    let root = admin(AdminScope::Global);
    let first = policies
        .put(&root, put("acme", allow_read("r1"), Some(0)))
        .await
        .unwrap();
    assert_eq!(first.version, 1);
    assert_eq!(first.rule_count, 1);
    assert_eq!(first.content_sha256.len(), 64);
    let second = policies
        .put(&root, put("acme", allow_read("r2"), None))
        .await
        .unwrap();
    assert_eq!(second.version, 2);
    assert_eq!(store.current_version("acme").await.unwrap(), 2);
    assert_eq!(audit.pending(), 2, "one policy.changed event per change");
    assert_eq!(policies.installed_version("acme"), 2);
    assert_eq!(policies.installed_version("globex"), 0);
}

#[tokio::test]
async fn a_refused_change_stores_audits_and_installs_nothing() {
    let (policies, store, audit) = policies().await;
    let root = admin(AdminScope::Global);
    policies
        .put(&root, put("acme", allow_read("r1"), None))
        .await
        .unwrap();
    let stale = policies
        .put(&root, put("acme", allow_read("r2"), Some(0)))
        .await
        .unwrap_err();
    assert_eq!(code(stale), Code::FailedPrecondition);

    let mut broken = allow_read("r3");
    broken.rules[0].condition = "request.nope ==".to_owned();
    let invalid = policies
        .put(&root, put("acme", broken, None))
        .await
        .unwrap_err();
    assert_eq!(code(invalid), Code::InvalidArgument);

    let other_tenant = policies
        .put(
            &admin(AdminScope::Tenant("globex".to_owned())),
            put("acme", allow_read("r4"), None),
        )
        .await
        .unwrap_err();
    assert_eq!(code(other_tenant), Code::PermissionDenied);

    let mut long = put("acme", allow_read("r5"), None);
    long.description = "x".repeat(policy_set_max_description() + 1);
    assert_eq!(
        code(policies.put(&root, long).await.unwrap_err()),
        Code::InvalidArgument
    );

    assert_eq!(store.current_version("acme").await.unwrap(), 1);
    assert_eq!(audit.pending(), 1, "only the first change was audited");
    assert_eq!(policies.installed_version("acme"), 1);
}

fn policy_set_max_description() -> usize {
    crate::domain::policy_set::MAX_DESCRIPTION
}

#[tokio::test]
async fn a_rollback_stores_the_old_content_as_a_new_version() {
    let (policies, _store, _audit) = policies().await;
    let root = admin(AdminScope::Global);
    let first = policies
        .put(&root, put("acme", allow_read("r1"), None))
        .await
        .unwrap();
    policies
        .put(&root, put("acme", allow_read("r2"), None))
        .await
        .unwrap();
    let rolled = policies
        .rollback(
            &root,
            pb::RollbackPolicySetRequest {
                tenant: "acme".to_owned(),
                to_version: 1,
                description: "back".to_owned(),
                expected_version: Some(2),
            },
        )
        .await
        .unwrap();
    assert_eq!(rolled.version, 3);
    assert_eq!(rolled.rolled_back_from, 1);
    assert_eq!(rolled.content_sha256, first.content_sha256);
    let missing = policies
        .rollback(
            &root,
            pb::RollbackPolicySetRequest {
                tenant: "acme".to_owned(),
                to_version: 9,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(code(missing), Code::NotFound);
}

#[tokio::test]
async fn versions_are_listed_newest_first_in_pages() {
    let (policies, _store, _audit) = policies().await;
    let root = admin(AdminScope::Global);
    for id in ["r1", "r2", "r3"] {
        policies
            .put(&root, put("acme", allow_read(id), None))
            .await
            .unwrap();
    }
    let request = |token: &str| pb::ListPolicyVersionsRequest {
        tenant: "acme".to_owned(),
        page: Some(agentsec_proto::common::v1::PageRequest {
            page_size: 2,
            page_token: token.to_owned(),
        }),
    };
    let (first, next) = policies.list(&request("")).await.unwrap();
    assert_eq!(
        first.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![3, 2]
    );
    let (rest, last) = policies.list(&request(&next)).await.unwrap();
    assert_eq!(rest.iter().map(|v| v.version).collect::<Vec<_>>(), vec![1]);
    assert!(last.is_empty());
    assert_eq!(
        code(policies.get("acme", 7).await.unwrap_err()),
        Code::NotFound
    );
    assert_eq!(policies.get("acme", 0).await.unwrap().version, 3);
}

#[tokio::test]
async fn a_database_outage_is_unavailable_and_changes_nothing() {
    let (policies, store, audit) = policies().await;
    let root = admin(AdminScope::Global);
    store.0.set_unreachable(true);
    let err = policies
        .put(&root, put("acme", allow_read("r1"), None))
        .await
        .unwrap_err();
    assert_eq!(code(err), Code::Unavailable);
    store.0.set_unreachable(false);
    assert_eq!(store.current_version("acme").await.unwrap(), 0);
    assert_eq!(audit.pending(), 0);
    assert_eq!(policies.installed_version("acme"), 0);
}

#[tokio::test]
async fn a_replica_installs_what_another_stored() {
    let store = MemoryPolicyVersionStore::default();
    let (writer_events, _a) = events();
    let (reader_events, _b) = events();
    let writer = Policies::load(store.clone(), writer_events).await.unwrap();
    let reader = Policies::load(store.clone(), reader_events).await.unwrap();
    writer
        .put(
            &admin(AdminScope::Global),
            put("acme", allow_read("r1"), None),
        )
        .await
        .unwrap();
    assert_eq!(reader.installed_version("acme"), 0);
    reader.policy_changed("acme", 1).await;
    assert_eq!(reader.installed_version("acme"), 1);
    writer
        .put(
            &admin(AdminScope::Global),
            put("acme", allow_read("r2"), None),
        )
        .await
        .unwrap();
    reader.reload_all().await.unwrap();
    assert_eq!(reader.installed_version("acme"), 2);
}
