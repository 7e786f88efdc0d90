use agentsec_common::invalidation::Invalidation;
use agentsec_proto::common::v1::{Actor, ActorChain, Principal};
use chrono::TimeZone as _;

use super::*;

const AGENT: &str = "agt_01JTESTAGENT0000000000000A";
const MIDDLE: &str = "agt_01JTESTAGENT0000000000000B";
const STALENESS: Duration = Duration::from_secs(2);

/// Test times are offsets from a recent moment: entries older than the
/// longest token lifetime before the wall clock are pruned.
fn base() -> i64 {
    static BASE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| Utc::now().timestamp() - 10_000)
}

fn at(offset: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(base() + offset, 0).single().unwrap()
}

/// An agent's own token issued at `iat` in generation `gen`.
fn own_token(iat: i64, gen: i64) -> VerifiedToken {
    let iat = base() + iat;
    VerifiedToken {
        principal: Principal {
            tenant: "acme".to_owned(),
            agent_id: AGENT.to_owned(),
            actor_chain: Some(ActorChain {
                actors: vec![Actor {
                    agent_id: AGENT.to_owned(),
                    issuer: "http://id".to_owned(),
                }],
            }),
            ..Principal::default()
        },
        audiences: vec!["mcp:github".to_owned()],
        expires_at: iat + 600,
        issued_at: iat,
        not_before: Some(iat),
        jti: Some("jti-1".to_owned()),
        credential: Some("crd_1".to_owned()),
        generation: Some(gen),
        grant_id: None,
        scopes: Vec::new(),
    }
}

/// A delegated token of alice, AGENT acting after MIDDLE, under grant g1.
fn delegated_token(iat: i64) -> VerifiedToken {
    let iat = base() + iat;
    VerifiedToken {
        principal: Principal {
            tenant: "acme".to_owned(),
            agent_id: AGENT.to_owned(),
            person_subject: "alice".to_owned(),
            actor_chain: Some(ActorChain {
                actors: [AGENT, MIDDLE]
                    .into_iter()
                    .map(|agent| Actor {
                        agent_id: agent.to_owned(),
                        issuer: "http://id".to_owned(),
                    })
                    .collect(),
            }),
            ..Principal::default()
        },
        audiences: vec!["mcp:github".to_owned()],
        expires_at: iat + 600,
        issued_at: iat,
        not_before: Some(iat),
        jti: Some("jti-delegated".to_owned()),
        credential: None,
        generation: None,
        grant_id: Some("grt_1".to_owned()),
        scopes: vec!["repo:read".to_owned()],
    }
}

fn loaded(revocations: Revocations, as_of: i64) -> RevocationView {
    let view = RevocationView::new(true, STALENESS);
    view.replace(revocations, at(as_of));
    view
}

fn code(result: Result<(), ApiError>) -> Option<tonic::Code> {
    result.err().map(|err| tonic::Status::from(err).code())
}

fn event(
    kind: InvalidationKind,
    time: i64,
    fill: impl FnOnce(&mut Invalidation),
) -> ReceivedInvalidation {
    let mut event = Invalidation::new(kind, "acme", AGENT);
    fill(&mut event);
    ReceivedInvalidation {
        event,
        issuer: "http://id".to_owned(),
        time: Some(at(time)),
    }
}

#[test]
fn readiness_needs_a_loaded_and_current_view() {
    let view = RevocationView::new(true, STALENESS);
    assert!(view.readiness(at(1_000)).is_err(), "not loaded");
    view.replace(Revocations::default(), at(1_000));
    assert_eq!(view.readiness(at(1_000)), Ok(()));
    let stale = at(1_000) + chrono::Duration::from_std(STALENESS).unwrap() * 2;
    let reason = view.readiness(stale).unwrap_err();
    assert!(reason.contains("revocations.max_staleness_ms"), "{reason}");
    let disabled = RevocationView::new(false, STALENESS);
    assert_eq!(disabled.readiness(at(1_000)), Ok(()));
}

#[test]
fn nothing_is_decided_before_the_first_load() {
    let view = RevocationView::new(true, STALENESS);
    assert_eq!(
        code(view.check(&own_token(1_000, 0), at(1_000))),
        Some(tonic::Code::Unavailable)
    );
    let disabled = RevocationView::new(false, STALENESS);
    assert_eq!(code(disabled.check(&own_token(1_000, 0), at(1_000))), None);
}

#[test]
fn each_kind_of_revocation_refuses_its_tokens_and_only_those() {
    let view = loaded(Revocations::default(), 1_000);
    assert_eq!(code(view.check(&own_token(1_000, 0), at(1_000))), None);
    assert_eq!(code(view.check(&delegated_token(1_000), at(1_000))), None);

    let cases: [(Revocations, VerifiedToken); 4] = [
        (
            Revocations {
                tokens: vec![("jti-1".to_owned(), base() + 5_000)],
                ..Revocations::default()
            },
            own_token(1_000, 0),
        ),
        (
            Revocations {
                credentials: vec![("crd_1".to_owned(), base() + 1_000)],
                ..Revocations::default()
            },
            own_token(1_000, 0),
        ),
        (
            Revocations {
                grants: vec![("grt_1".to_owned(), base() + 1_000)],
                ..Revocations::default()
            },
            delegated_token(1_000),
        ),
        (
            Revocations {
                agents: vec![(
                    MIDDLE.to_owned(),
                    AgentStanding {
                        active: false,
                        generation: 1,
                        generation_time: base() + 1_000,
                    },
                )],
                ..Revocations::default()
            },
            delegated_token(900),
        ),
    ];
    for (revocations, token) in cases {
        let view = loaded(revocations, 1_000);
        assert_eq!(
            code(view.check(&token, at(1_001))),
            Some(tonic::Code::Unauthenticated),
            "{token:?}"
        );
    }
    // A revoked grant does not touch an agent's own token, nor a revoked
    // jti another token.
    let view = loaded(
        Revocations {
            tokens: vec![("jti-other".to_owned(), base() + 5_000)],
            grants: vec![("grt_1".to_owned(), base() + 1_000)],
            ..Revocations::default()
        },
        1_000,
    );
    assert_eq!(code(view.check(&own_token(1_000, 0), at(1_001))), None);
}

#[test]
fn a_reactivated_agent_gets_no_old_token_back() {
    let view = loaded(Revocations::default(), 1_000);
    view.set_in_process(true);
    view.apply(&event(InvalidationKind::AgentSuspended, 1_010, |event| {
        event.token_generation = 1
    }));
    assert_eq!(
        code(view.check(&own_token(1_000, 0), at(1_011))),
        Some(tonic::Code::Unauthenticated)
    );
    view.apply(&event(InvalidationKind::AgentReactivated, 1_020, |event| {
        event.token_generation = 1
    }));
    // Own tokens: by generation.
    assert_eq!(
        code(view.check(&own_token(1_005, 0), at(1_021))),
        Some(tonic::Code::Unauthenticated)
    );
    assert_eq!(code(view.check(&own_token(1_021, 1), at(1_021))), None);
    // Delegated tokens: by issue time against the suspension's second.
    assert_eq!(
        code(view.check(&delegated_token(1_010), at(1_021))),
        Some(tonic::Code::Unauthenticated)
    );
    assert_eq!(code(view.check(&delegated_token(1_011), at(1_021))), None);
}

#[test]
fn a_listing_never_takes_an_agent_back_to_an_older_generation() {
    let view = loaded(Revocations::default(), 1_000);
    view.set_in_process(true);
    view.apply(&event(InvalidationKind::AgentRevoked, 1_010, |event| {
        event.token_generation = 2
    }));
    view.merge(
        Revocations {
            agents: vec![(
                AGENT.to_owned(),
                AgentStanding {
                    active: true,
                    generation: 1,
                    generation_time: base() + 900,
                },
            )],
            ..Revocations::default()
        },
        at(1_011),
    );
    assert_eq!(
        code(view.check(&own_token(1_011, 1), at(1_011))),
        Some(tonic::Code::Unauthenticated)
    );
}

#[test]
fn a_view_not_confirmed_within_the_bound_fails_closed() {
    let view = loaded(Revocations::default(), 1_000);
    assert_eq!(code(view.check(&own_token(1_000, 0), at(1_002))), None);
    assert_eq!(
        code(view.check(&own_token(1_000, 0), at(1_003))),
        Some(tonic::Code::Unavailable)
    );
    view.confirm(at(1_003));
    assert_eq!(code(view.check(&own_token(1_000, 0), at(1_004))), None);
    // Events in process: current whenever subscribed.
    view.set_in_process(true);
    assert_eq!(code(view.check(&own_token(1_000, 0), at(9_999))), None);
}

#[test]
fn entries_go_once_no_token_they_affect_can_be_alive() {
    let lifetime = LONGEST_TOKEN_LIFETIME.as_secs() as i64;
    let view = loaded(
        Revocations {
            tokens: vec![("jti-1".to_owned(), base() + 1_500)],
            credentials: vec![("crd_1".to_owned(), base() + 1_000)],
            grants: vec![("grt_1".to_owned(), base() + 1_000)],
            agents: vec![(
                AGENT.to_owned(),
                AgentStanding {
                    active: false,
                    generation: 1,
                    generation_time: base() + 1_000,
                },
            )],
            attributes: Vec::new(),
        },
        1_000,
    );
    assert_eq!(read(&view.state).entries(), 4);
    view.merge(Revocations::default(), at(1_000 + lifetime + 1));
    assert_eq!(read(&view.state).entries(), 0);
}

#[tokio::test]
async fn only_requests_soon_after_start_wait_for_the_first_load() {
    let view = RevocationView::new(true, STALENESS);
    // Within the limit since start: the call waits (it is not ready at once).
    let waiting = tokio::time::timeout(Duration::ZERO, view.wait_loaded(Duration::from_secs(60)));
    assert!(waiting.await.is_err());
    // Past the limit since start: it returns at once, and the check refuses.
    let at_once = tokio::time::timeout(Duration::ZERO, view.wait_loaded(Duration::from_nanos(1)));
    assert!(at_once.await.is_ok());
    // Once loaded, nobody waits.
    view.replace(Revocations::default(), Utc::now());
    let loaded = tokio::time::timeout(Duration::ZERO, view.wait_loaded(Duration::from_secs(60)));
    assert!(loaded.await.is_ok());
}

/// Registry attributes `project = <project>` of an agent of acme.
fn in_project(project: &str) -> Registered {
    Registered {
        tenant: "acme".to_owned(),
        attributes: [("project".to_owned(), project.to_owned())].into(),
    }
}

fn project_of(
    view: &RevocationView,
    tenant: &str,
    agent_id: &str,
) -> Option<attribute_value::Kind> {
    view.attributes_of(tenant, agent_id)
        .get("project")
        .and_then(|value| value.kind.clone())
}

#[test]
fn an_attribute_refresh_overtaken_by_a_later_one_is_dropped() {
    let view = RevocationView::new(true, STALENESS);
    let first = view.refresh_started(AGENT);
    let second = view.refresh_started(AGENT);
    view.set_attributes(AGENT, second, in_project("gemini"));
    view.set_attributes(AGENT, first, in_project("apollo"));
    assert_eq!(
        project_of(&view, "acme", AGENT),
        Some(attribute_value::Kind::StringValue("gemini".to_owned()))
    );
}

#[test]
fn attributes_apply_to_principals_of_the_agents_own_tenant_only() {
    let view = RevocationView::new(true, STALENESS);
    view.replace_attributes(vec![(AGENT.to_owned(), in_project("apollo"))]);
    assert!(project_of(&view, "acme", AGENT).is_some());
    assert_eq!(project_of(&view, "globex", AGENT), None);
}

#[test]
fn a_catch_up_sets_and_clears_attributes_and_overtakes_refreshes_under_way() {
    let view = RevocationView::new(true, STALENESS);
    view.replace_attributes(vec![(MIDDLE.to_owned(), in_project("apollo"))]);
    let under_way = view.refresh_started(AGENT);
    view.merge(
        Revocations {
            attributes: vec![
                (AGENT.to_owned(), in_project("gemini")),
                (MIDDLE.to_owned(), Registered::default()),
            ],
            ..Revocations::default()
        },
        Utc::now(),
    );
    view.set_attributes(AGENT, under_way, in_project("apollo"));
    assert_eq!(
        project_of(&view, "acme", AGENT),
        Some(attribute_value::Kind::StringValue("gemini".to_owned()))
    );
    assert_eq!(
        project_of(&view, "acme", MIDDLE),
        None,
        "attributes removed"
    );
}
