//! The grant rules through the in-memory store, a real audit client (its
//! events wait in its queue: audit-svc is unreachable) and the in-process
//! invalidation bus.

use std::collections::HashSet;
use std::sync::Arc;

use agentsec_common::audit::client::{AuditClient, AuditClientConfig, AuditSender};
use agentsec_common::error::OAuthErrorCode;
use agentsec_common::invalidation::{LocalBus, Publisher};
use agentsec_common::tls::{ClientTls, ClientTlsConfig};
use chrono::{DateTime, Duration, Utc};
use tokio::sync::broadcast;
use tonic::Code;

use super::selection::FirstHop;
use super::*;
use crate::domain::caller::Admin;
use crate::domain::grant::{Grant, GrantStatus};
use crate::domain::hop::{self, DepthLimits};
use crate::events::{Events, SERVICE};
use crate::store::grants::MemoryGrantStore;

const ISSUER: &str = "https://users.test";
const TENANT: &str = "acme";
const AUDIENCE: &str = "mcp:github";

/// The agents identity-svc knows as ACTIVE, as (tenant, agent id); `down`
/// answers every question with an outage.
struct Directory {
    active: HashSet<(String, String)>,
    down: bool,
}

impl AgentDirectory for Directory {
    async fn agent_is_active(&self, tenant: &str, agent_id: &str) -> Result<bool, ExchangeError> {
        if self.down {
            return Err(ExchangeError::Unavailable {
                what: "identity-svc".to_owned(),
            });
        }
        Ok(self
            .active
            .contains(&(tenant.to_owned(), agent_id.to_owned())))
    }
}

struct Fixture {
    grants: Grants<MemoryGrantStore, Directory>,
    store: MemoryGrantStore,
    audit: AuditClient,
    _sender: AuditSender,
    invalidations: broadcast::Receiver<Arc<[u8]>>,
    /// An ACTIVE agent of `acme`.
    agent: String,
}

fn agent_id() -> String {
    agentsec_common::ids::new_id("agt_").unwrap()
}

fn fixture_with(directory: Option<Directory>) -> Fixture {
    let config = AuditClientConfig {
        // Nobody listens on port 1: events stay queued and countable.
        endpoint: "http://127.0.0.1:1".into(),
        shutdown_flush_timeout_secs: 1,
        ..AuditClientConfig::default()
    };
    let tls = ClientTls::start(&ClientTlsConfig::default(), None).unwrap();
    let (audit, sender) = AuditClient::start(config, None, &tls).unwrap();
    let bus = LocalBus::new();
    let invalidations = bus.subscribe();
    let events = Events::new(
        SERVICE,
        audit.clone(),
        Publisher::new(None, Some(bus), "https://exchange.test".into()),
    );
    let store = MemoryGrantStore::default();
    let grants = Grants::new(
        store.clone(),
        events,
        GrantConfig::default(),
        directory.map(Arc::new),
    );
    Fixture {
        grants,
        store,
        audit,
        _sender: sender,
        invalidations,
        agent: String::new(),
    }
}

fn fixture() -> Fixture {
    let agent = agent_id();
    let mut fixture = fixture_with(Some(Directory {
        active: HashSet::from([(TENANT.to_owned(), agent.clone())]),
        down: false,
    }));
    fixture.agent = agent;
    fixture
}

impl Fixture {
    fn published(&mut self) -> usize {
        let mut count = 0;
        while self.invalidations.try_recv().is_ok() {
            count += 1;
        }
        count
    }

    async fn stored(&self) -> Vec<Grant> {
        self.store.all().await.unwrap()
    }

    fn request(&self) -> GrantRequest {
        GrantRequest {
            agent_id: self.agent.clone(),
            audiences: vec![AUDIENCE.into(), "mcp:jira".into()],
            scopes: vec!["repo:read".into(), "repo:write".into()],
            expire_time: Some(Utc::now() + Duration::hours(1)),
            max_chain_depth: 0,
            purpose: "triage issues".into(),
        }
    }

    async fn create_for(&self, subject: &str) -> Grant {
        self.grants
            .create(&person(subject), self.request())
            .await
            .unwrap()
            .grant
    }
}

fn person(subject: &str) -> Person {
    Person {
        issuer: ISSUER.into(),
        subject: subject.into(),
        tenant: Some(TENANT.into()),
    }
}

fn as_person(subject: &str) -> Caller {
    Caller::Person(person(subject))
}

fn admin(tenant: Option<&str>) -> Caller {
    Caller::Admin(Admin {
        subject: "root".into(),
        tenant: tenant.map(str::to_owned),
    })
}

fn code(err: ExchangeError) -> Code {
    tonic::Status::from(err).code()
}

fn invalid_field(err: ExchangeError) -> String {
    match err {
        ExchangeError::Invalid { field, .. } => field,
        other => panic!("not INVALID_ARGUMENT: {other:?}"),
    }
}

#[tokio::test]
async fn a_created_grant_is_stored_active_and_audited() {
    let fixture = fixture();
    let created = fixture
        .grants
        .create(&person("alice"), fixture.request())
        .await
        .unwrap();
    assert_eq!(created.status, GrantStatus::Active);
    assert_eq!(created.grant.tenant, TENANT);
    assert_eq!(created.grant.person_issuer, ISSUER);
    assert_eq!(created.grant.max_chain_depth, 1, "0 asks for one agent");
    assert!(created.grant.id.starts_with("grt_"));
    assert_eq!(fixture.stored().await, [created.grant]);
    assert_eq!(fixture.audit.pending(), 1);
}

#[tokio::test]
async fn a_person_without_a_tenant_grants_in_the_default_tenant() {
    let agent = agent_id();
    let fixture = fixture_with(Some(Directory {
        active: HashSet::from([("default".to_owned(), agent.clone())]),
        down: false,
    }));
    let person = Person {
        tenant: None,
        ..person("alice")
    };
    let request = GrantRequest {
        agent_id: agent,
        ..fixture.request()
    };
    let created = fixture.grants.create(&person, request).await.unwrap();
    assert_eq!(created.grant.tenant, "default");
}

#[tokio::test]
async fn each_refused_grant_names_its_field_stores_nothing_and_audits_nothing() {
    let fixture = fixture();
    let base = || fixture.request();
    let now = Utc::now();
    let cases: Vec<(GrantRequest, &str)> = vec![
        (
            GrantRequest {
                agent_id: String::new(),
                ..base()
            },
            "grant.agent_id",
        ),
        (
            GrantRequest {
                agent_id: "planner".into(),
                ..base()
            },
            "grant.agent_id",
        ),
        (
            GrantRequest {
                audiences: Vec::new(),
                ..base()
            },
            "grant.audiences",
        ),
        (
            GrantRequest {
                audiences: vec!["a".into(), "a".into()],
                ..base()
            },
            "grant.audiences[1]",
        ),
        (
            GrantRequest {
                scopes: vec!["repo:read repo:write".into()],
                ..base()
            },
            "grant.scopes[0]",
        ),
        (
            GrantRequest {
                expire_time: None,
                ..base()
            },
            "grant.expire_time",
        ),
        (
            GrantRequest {
                expire_time: Some(now - Duration::seconds(10)),
                ..base()
            },
            "grant.expire_time",
        ),
        (
            GrantRequest {
                expire_time: Some(now + Duration::days(400)),
                ..base()
            },
            "grant.expire_time",
        ),
        (
            GrantRequest {
                max_chain_depth: 17,
                ..base()
            },
            "grant.max_chain_depth",
        ),
        (
            GrantRequest {
                purpose: String::new(),
                ..base()
            },
            "grant.purpose",
        ),
    ];
    for (request, field) in cases {
        let err = fixture
            .grants
            .create(&person("alice"), request)
            .await
            .unwrap_err();
        assert_eq!(invalid_field(err), field);
    }
    assert!(fixture.stored().await.is_empty());
    assert_eq!(fixture.audit.pending(), 0);
}

#[tokio::test]
async fn a_grant_to_an_agent_that_is_not_active_in_the_tenant_is_a_failed_precondition() {
    let fixture = fixture();
    let unknown = GrantRequest {
        agent_id: agent_id(),
        ..fixture.request()
    };
    let err = fixture
        .grants
        .create(&person("alice"), unknown)
        .await
        .unwrap_err();
    assert_eq!(code(err), Code::FailedPrecondition);
    // The same agent seen from another tenant.
    let elsewhere = Person {
        tenant: Some("globex".into()),
        ..person("alice")
    };
    let err = fixture
        .grants
        .create(&elsewhere, fixture.request())
        .await
        .unwrap_err();
    assert_eq!(code(err), Code::FailedPrecondition);
    assert!(fixture.stored().await.is_empty());
    assert_eq!(fixture.audit.pending(), 0);
}

#[tokio::test]
async fn without_the_agent_directory_nothing_is_granted() {
    let down = fixture_with(Some(Directory {
        active: HashSet::new(),
        down: true,
    }));
    let request = GrantRequest {
        agent_id: agent_id(),
        ..fixture().request()
    };
    let err = down
        .grants
        .create(&person("alice"), request.clone())
        .await
        .unwrap_err();
    assert_eq!(code(err), Code::Unavailable);
    assert!(down.stored().await.is_empty());
    assert_eq!(down.audit.pending(), 0);

    let unconfigured = fixture_with(None);
    let err = unconfigured
        .grants
        .create(&person("alice"), request)
        .await
        .unwrap_err();
    assert_eq!(code(err), Code::Unavailable);
    assert!(unconfigured.stored().await.is_empty());
}

#[tokio::test]
async fn a_store_outage_is_unavailable_and_changes_nothing() {
    let mut fixture = fixture();
    let grant = fixture.create_for("alice").await;
    fixture.store.set_unreachable(true);
    let err = fixture
        .grants
        .create(&person("alice"), fixture.request())
        .await
        .unwrap_err();
    assert_eq!(code(err), Code::Unavailable);
    let err = fixture
        .grants
        .revoke(&as_person("alice"), &grant.id, "done")
        .await
        .unwrap_err();
    assert_eq!(code(err), Code::Unavailable);
    let err = fixture
        .grants
        .get(&as_person("alice"), &grant.id)
        .await
        .unwrap_err();
    assert_eq!(code(err), Code::Unavailable);
    fixture.store.set_unreachable(false);
    assert_eq!(fixture.stored().await, [grant]);
    assert_eq!(fixture.audit.pending(), 1, "the creation only");
    assert_eq!(fixture.published(), 0);
}

#[tokio::test]
async fn revoking_is_idempotent_audited_once_and_published_once() {
    let mut fixture = fixture();
    let grant = fixture.create_for("alice").await;
    let revoked = fixture
        .grants
        .revoke(&as_person("alice"), &grant.id, "no longer needed")
        .await
        .unwrap();
    assert_eq!(revoked.status, GrantStatus::Revoked);
    assert_eq!(revoked.grant.revoked_by, "alice");
    assert_eq!(revoked.grant.revoke_reason, "no longer needed");
    assert_eq!(fixture.audit.pending(), 2);
    assert_eq!(fixture.published(), 1);

    let again = fixture
        .grants
        .revoke(&as_person("alice"), &grant.id, "other reason")
        .await
        .unwrap();
    assert_eq!(again.grant, revoked.grant, "the first revocation stands");
    assert_eq!(fixture.audit.pending(), 2);
    assert_eq!(fixture.published(), 0);
    assert_eq!(fixture.stored().await, [revoked.grant]);
}

#[tokio::test]
async fn only_the_owner_or_an_admin_of_its_tenant_revokes_a_grant() {
    let mut fixture = fixture();
    let grant = fixture.create_for("alice").await;
    for stranger in [as_person("bob"), admin(Some("globex"))] {
        let err = fixture
            .grants
            .revoke(&stranger, &grant.id, "")
            .await
            .unwrap_err();
        assert!(matches!(err, ExchangeError::NotFound { .. }), "{err:?}");
        let err = fixture.grants.get(&stranger, &grant.id).await.unwrap_err();
        assert_eq!(code(err), Code::NotFound);
    }
    assert_eq!(fixture.stored().await, std::slice::from_ref(&grant));
    assert_eq!(fixture.audit.pending(), 1);
    assert_eq!(fixture.published(), 0);

    let revoked = fixture
        .grants
        .revoke(&admin(Some(TENANT)), &grant.id, "offboarding")
        .await
        .unwrap();
    assert_eq!(revoked.grant.revoked_by, "root");
    assert_eq!(fixture.published(), 1);
}

#[tokio::test]
async fn revocation_requests_are_checked_first() {
    let fixture = fixture();
    let grant = fixture.create_for("alice").await;
    let err = fixture
        .grants
        .revoke(&as_person("alice"), "", "")
        .await
        .unwrap_err();
    assert_eq!(invalid_field(err), "grant_id");
    let err = fixture
        .grants
        .revoke(&as_person("alice"), &grant.id, &"r".repeat(1025))
        .await
        .unwrap_err();
    assert_eq!(invalid_field(err), "reason");
    assert_eq!(fixture.stored().await, [grant]);
}

#[tokio::test]
async fn a_person_lists_only_their_own_grants() {
    let fixture = fixture();
    let own = fixture.create_for("alice").await;
    fixture.create_for("bob").await;
    let page = fixture
        .grants
        .list(&as_person("alice"), &ListQuery::default(), None)
        .await
        .unwrap();
    let ids: Vec<_> = page.grants.iter().map(|view| &view.grant.id).collect();
    assert_eq!(ids, [&own.id]);
    assert!(page.next_page_token.is_empty());

    let err = fixture
        .grants
        .list(
            &as_person("alice"),
            &ListQuery {
                person_subject: "bob".into(),
                ..ListQuery::default()
            },
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(code(err), Code::PermissionDenied);

    let tenant = fixture
        .grants
        .list(&admin(Some(TENANT)), &ListQuery::default(), None)
        .await
        .unwrap();
    assert_eq!(tenant.grants.len(), 2);
    let other = fixture
        .grants
        .list(&admin(Some("globex")), &ListQuery::default(), None)
        .await
        .unwrap();
    assert!(other.grants.is_empty());
}

#[tokio::test]
async fn inactive_grants_are_listed_only_when_asked_for() {
    let fixture = fixture();
    let active = fixture.create_for("alice").await;
    let revoked = fixture.create_for("alice").await;
    fixture
        .grants
        .revoke(&as_person("alice"), &revoked.id, "")
        .await
        .unwrap();
    let mut expired = fixture.create_for("alice").await;
    expired.expire_time = Utc::now() - Duration::minutes(1);
    fixture.store.put(expired.clone()).await.unwrap();

    let listed = |include_inactive| {
        let query = ListQuery {
            include_inactive,
            ..ListQuery::default()
        };
        let grants = &fixture.grants;
        async move {
            grants
                .list(&as_person("alice"), &query, None)
                .await
                .unwrap()
                .grants
                .into_iter()
                .map(|view| (view.grant.id, view.status))
                .collect::<Vec<_>>()
        }
    };
    let current = listed(false).await;
    assert!(current.contains(&(active.id.clone(), GrantStatus::Active)));
    assert!(!current
        .iter()
        .any(|(id, _)| *id == revoked.id || *id == expired.id));
    let all = listed(true).await;
    assert!(all.contains(&(revoked.id, GrantStatus::Revoked)));
    assert!(all.contains(&(expired.id, GrantStatus::Expired)));
    assert_eq!(all.len(), 3);
}

#[tokio::test]
async fn pages_walk_every_grant_once_newest_first() {
    let fixture = fixture();
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(fixture.create_for("alice").await.id);
    }
    created.reverse();
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let request = PageRequest {
            page_size: 2,
            page_token: token.clone(),
        };
        let page = fixture
            .grants
            .list(&as_person("alice"), &ListQuery::default(), Some(&request))
            .await
            .unwrap();
        pages += 1;
        seen.extend(page.grants.into_iter().map(|view| view.grant.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, created);
    assert_eq!(pages, 3);

    // A cursor is bound to its listing.
    let first = fixture
        .grants
        .list(
            &as_person("alice"),
            &ListQuery::default(),
            Some(&PageRequest {
                page_size: 2,
                page_token: String::new(),
            }),
        )
        .await
        .unwrap();
    let err = fixture
        .grants
        .list(
            &as_person("alice"),
            &ListQuery {
                include_inactive: true,
                ..ListQuery::default()
            },
            Some(&PageRequest {
                page_size: 2,
                page_token: first.next_page_token,
            }),
        )
        .await
        .unwrap_err();
    assert_eq!(code(err), Code::InvalidArgument);
}

#[tokio::test]
async fn revocations_are_listed_back_to_the_longest_token_lifetime() {
    let fixture = fixture();
    let now = Utc::now();
    let mut recent = fixture.create_for("alice").await;
    recent.revoke_time = Some(now - Duration::hours(1));
    let mut old = fixture.create_for("alice").await;
    old.revoke_time = Some(now - Duration::days(3));
    let live = fixture.create_for("alice").await;
    fixture.store.put(recent.clone()).await.unwrap();
    fixture.store.put(old).await.unwrap();

    let ids = |revoked: Vec<RevokedGrant>| {
        revoked
            .into_iter()
            .map(|grant| grant.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(fixture.grants.revoked(None, now).await.unwrap()),
        [recent.id.clone()]
    );
    let since_long_ago = Some(now - Duration::days(30));
    assert_eq!(
        ids(fixture.grants.revoked(since_long_ago, now).await.unwrap()),
        [recent.id]
    );
    let since_now = Some(now - Duration::minutes(1));
    assert!(fixture
        .grants
        .revoked(since_now, now)
        .await
        .unwrap()
        .is_empty());
    assert!(!live.id.is_empty());
}

fn first_hop<'a>(agent: &'a str, subject: &'a str, audience: &'a str) -> FirstHop<'a> {
    FirstHop {
        person_issuer: ISSUER,
        person_subject: subject,
        tenant: TENANT,
        agent_id: agent,
        audience,
    }
}

fn refusal(err: ExchangeError) -> OAuthErrorCode {
    err.into_oauth("exchange").error
}

#[tokio::test]
async fn an_exchange_selects_the_active_grant_of_the_person_to_the_agent_for_the_audience() {
    let fixture = fixture();
    let now = Utc::now();
    let matching = fixture.create_for("alice").await;
    // Grants that must not be chosen, all newer than the matching one.
    let mut others = Vec::new();
    let mut other_person = fixture.create_for("bob").await;
    other_person.person_subject = "bob".into();
    others.push(other_person);
    let mut other_agent = fixture.create_for("alice").await;
    other_agent.agent_id = agent_id();
    others.push(other_agent);
    let mut other_tenant = fixture.create_for("alice").await;
    other_tenant.tenant = "globex".into();
    others.push(other_tenant);
    let mut other_issuer = fixture.create_for("alice").await;
    other_issuer.person_issuer = "https://other.test".into();
    others.push(other_issuer);
    let mut other_audience = fixture.create_for("alice").await;
    other_audience.audiences = vec!["mcp:slack".into()];
    others.push(other_audience);
    let mut expired = fixture.create_for("alice").await;
    expired.expire_time = now;
    others.push(expired);
    let mut revoked = fixture.create_for("alice").await;
    revoked.revoke_time = Some(now);
    others.push(revoked);
    for other in others {
        fixture.store.put(other).await.unwrap();
    }

    let selected = fixture
        .grants
        .for_first_hop(first_hop(&fixture.agent, "alice", AUDIENCE), now)
        .await
        .unwrap();
    assert_eq!(selected.id, matching.id);

    // Scopes narrow to what the grant holds.
    let agent_scopes = vec!["repo:read".into(), "repo:admin".into()];
    assert_eq!(
        hop::delegable_scopes(Some(&selected), None, &agent_scopes, None).unwrap(),
        ["repo:read"]
    );
    let beyond = vec!["repo:admin".to_owned()];
    let err =
        hop::delegable_scopes(Some(&selected), None, &agent_scopes, Some(&beyond)).unwrap_err();
    assert_eq!(refusal(err), OAuthErrorCode::InvalidScope);

    // Nothing for an audience no grant covers, nor for another person.
    let err = fixture
        .grants
        .for_first_hop(first_hop(&fixture.agent, "alice", "mcp:slack-x"), now)
        .await
        .unwrap_err();
    assert_eq!(refusal(err), OAuthErrorCode::InvalidGrant);
    let err = fixture
        .grants
        .for_first_hop(first_hop(&fixture.agent, "carol", AUDIENCE), now)
        .await
        .unwrap_err();
    assert_eq!(refusal(err), OAuthErrorCode::InvalidGrant);
}

#[tokio::test]
async fn a_revoked_or_expired_grant_authorizes_no_further_hop() {
    let fixture = fixture();
    let grant = fixture.create_for("alice").await;
    let limits = DepthLimits {
        grants: 4,
        may_act: 1,
    };
    let now = Utc::now();
    let next = |now: DateTime<Utc>| {
        fixture
            .grants
            .for_next_hop(&grant.id, AUDIENCE, 1, limits, now)
    };
    assert_eq!(next(now).await.unwrap().id, grant.id);
    assert!(fixture.grants.is_active(&grant.id, now).await.unwrap());
    let later = grant.expire_time + Duration::seconds(1);
    assert_eq!(
        refusal(next(later).await.unwrap_err()),
        OAuthErrorCode::InvalidGrant
    );
    fixture
        .grants
        .revoke(&as_person("alice"), &grant.id, "")
        .await
        .unwrap();
    let now = Utc::now();
    assert_eq!(
        refusal(next(now).await.unwrap_err()),
        OAuthErrorCode::InvalidGrant
    );
    assert!(!fixture.grants.is_active(&grant.id, now).await.unwrap());
    assert!(!fixture.grants.is_active("grt_missing", now).await.unwrap());
    let err = fixture
        .grants
        .for_first_hop(first_hop(&fixture.agent, "alice", AUDIENCE), now)
        .await
        .unwrap_err();
    assert_eq!(refusal(err), OAuthErrorCode::InvalidGrant);
}

#[tokio::test]
async fn a_store_outage_fails_the_selection_as_temporarily_unavailable() {
    let fixture = fixture();
    let grant = fixture.create_for("alice").await;
    fixture.store.set_unreachable(true);
    let now = Utc::now();
    let err = fixture
        .grants
        .for_first_hop(first_hop(&fixture.agent, "alice", AUDIENCE), now)
        .await
        .unwrap_err();
    assert_eq!(refusal(err), OAuthErrorCode::TemporarilyUnavailable);
    let limits = DepthLimits {
        grants: 4,
        may_act: 1,
    };
    let err = fixture
        .grants
        .for_next_hop(&grant.id, AUDIENCE, 1, limits, now)
        .await
        .unwrap_err();
    assert_eq!(refusal(err), OAuthErrorCode::TemporarilyUnavailable);
    assert_eq!(
        code(fixture.grants.is_active(&grant.id, now).await.unwrap_err()),
        Code::Unavailable
    );
}

#[test]
fn long_attribute_lists_are_cut() {
    let values = vec!["é".repeat(3000)];
    assert!(attribute_list(&values).len() <= MAX_ATTRIBUTE_BYTES);
}
