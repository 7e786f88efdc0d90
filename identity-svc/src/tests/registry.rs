//! Registration, reads within the admin's scope, updates and the agent
//! lifecycle.

use agentsec_common::invalidation::InvalidationKind;
use tonic::Code;

use super::*;
use crate::domain::agent::{AgentQuery, Status};
use crate::domain::registry::Transition;
use crate::error::IdentityError;

fn code(err: IdentityError) -> Code {
    tonic::Status::from(err).code()
}

#[tokio::test]
async fn a_registered_agent_is_stored_audited_and_its_attributes_published() {
    let mut harness = Harness::new();
    let plain = harness
        .registry
        .register(&global(), new_agent("acme", "builder"))
        .await
        .unwrap();
    assert_eq!(plain.status, Status::Active);
    assert_eq!(plain.token_generation, 0);
    assert!(plain.id.starts_with("agt_"));
    assert!(harness.published().is_empty(), "no attributes, no event");
    let mut with_attributes = new_agent("acme", "reviewer");
    with_attributes
        .fields
        .attributes
        .insert("trust_tier".into(), "2".into());
    let tagged = harness
        .registry
        .register(&tenant_admin("acme"), with_attributes)
        .await
        .unwrap();
    let stored = harness.stored().await;
    assert_eq!(stored.agents.get(&plain.id), Some(&plain));
    assert_eq!(stored.agents.get(&tagged.id), Some(&tagged));
    assert_eq!(harness.audited(), 2);
    let published = harness.published();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].event.kind, InvalidationKind::AgentUpdated);
    assert_eq!(published[0].event.agent_id, tagged.id);
}

#[tokio::test]
async fn a_refused_registration_stores_nothing_and_audits_nothing() {
    let mut harness = Harness::new();
    harness
        .registry
        .register(&global(), new_agent("acme", "builder"))
        .await
        .unwrap();
    let before = harness.stored().await.agents;
    let audited = harness.audited();
    harness.published();

    let mut no_ceiling = new_agent("acme", "other");
    no_ceiling.fields.ceiling = None;
    let mut bad_scope = new_agent("acme", "other");
    bad_scope.fields.ceiling.as_mut().unwrap().scopes = vec!["a b".into()];
    let refusals = [
        (
            global(),
            new_agent("Acme", "other"),
            Code::InvalidArgument,
            "agent.tenant",
        ),
        (global(), no_ceiling, Code::InvalidArgument, "agent.ceiling"),
        (
            global(),
            bad_scope,
            Code::InvalidArgument,
            "agent.ceiling.scopes[0]",
        ),
        (
            tenant_admin("other"),
            new_agent("acme", "other"),
            Code::PermissionDenied,
            "own tenant",
        ),
        (
            global(),
            new_agent("acme", "builder"),
            Code::AlreadyExists,
            "agent named `builder`",
        ),
    ];
    for (admin, agent, expected, names) in refusals {
        let status =
            tonic::Status::from(harness.registry.register(&admin, agent).await.unwrap_err());
        assert_eq!(status.code(), expected, "{}", status.message());
        assert!(status.message().contains(names), "{}", status.message());
    }
    assert_eq!(harness.stored().await.agents, before);
    assert_eq!(harness.audited(), audited);
    assert!(harness.published().is_empty());

    // The same name in another tenant is another agent.
    harness
        .registry
        .register(&global(), new_agent("globex", "builder"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_tenant_admin_neither_sees_nor_changes_other_tenants_agents() {
    let harness = Harness::new();
    let registry = &harness.registry;
    let ours = registry
        .register(&global(), new_agent("acme", "builder"))
        .await
        .unwrap();
    let theirs = registry
        .register(&global(), new_agent("globex", "builder"))
        .await
        .unwrap();
    let acme = tenant_admin("acme");

    assert_eq!(registry.get(&acme, &ours.id).await.unwrap(), ours);
    let err = registry.get(&acme, &theirs.id).await.unwrap_err();
    assert_eq!(err.to_string(), format!("agent `{}` not found", theirs.id));
    assert_eq!(registry.get(&global(), &theirs.id).await.unwrap(), theirs);

    let (listed, next) = registry
        .list(&acme, AgentQuery::default(), None)
        .await
        .unwrap();
    assert_eq!(listed, vec![ours.clone()]);
    assert_eq!(next, "");
    let named = AgentQuery {
        tenant: "globex".into(),
        ..AgentQuery::default()
    };
    let err = registry.list(&acme, named.clone(), None).await.unwrap_err();
    assert_eq!(code(err), Code::PermissionDenied);
    let (listed, _) = registry.list(&global(), named, None).await.unwrap();
    assert_eq!(listed, vec![theirs.clone()]);

    let audited = harness.audited();
    let err = registry
        .update(&acme, &theirs.id, fields("renamed"), vec!["name".into()])
        .await
        .unwrap_err();
    assert_eq!(code(err), Code::NotFound);
    let err = registry
        .transition(&acme, &theirs.id, Transition::Revoke, "gone")
        .await
        .unwrap_err();
    assert_eq!(code(err), Code::NotFound);
    assert_eq!(harness.stored().await.agents.get(&theirs.id), Some(&theirs));
    assert_eq!(harness.audited(), audited);
}

#[tokio::test]
async fn an_update_replaces_the_masked_fields_and_is_audited() {
    let mut harness = Harness::new();
    let agent = harness
        .registry
        .register(&global(), new_agent("acme", "builder"))
        .await
        .unwrap();
    harness
        .registry
        .register(&global(), new_agent("acme", "taken"))
        .await
        .unwrap();
    let audited = harness.audited();
    let mut update = fields("renamed");
    update.owner = "mallory".into();
    let updated = harness
        .registry
        .update(
            &tenant_admin("acme"),
            &agent.id,
            update,
            vec!["name".into()],
        )
        .await
        .unwrap();
    assert_eq!(updated.fields.name, "renamed");
    assert_eq!(updated.fields.owner, "alice", "not in the mask");
    assert_eq!(harness.stored().await.agents.get(&agent.id), Some(&updated));
    assert_eq!(harness.audited(), audited + 1);
    let published = harness.published();
    assert_eq!(
        published.last().map(|p| p.event.kind),
        Some(InvalidationKind::AgentUpdated)
    );

    // Refused: a taken name, a field that cannot be updated, no mask.
    for (mask, name, expected) in [
        (vec!["name".to_owned()], "taken", Code::AlreadyExists),
        (vec!["status".to_owned()], "x", Code::InvalidArgument),
        (Vec::new(), "x", Code::InvalidArgument),
    ] {
        let err = harness
            .registry
            .update(&global(), &agent.id, fields(name), mask)
            .await
            .unwrap_err();
        assert_eq!(code(err), expected);
    }
    assert_eq!(harness.stored().await.agents.get(&agent.id), Some(&updated));
    assert_eq!(harness.audited(), audited + 1);
}

#[tokio::test]
async fn suspend_reactivate_and_revoke_follow_the_lifecycle() {
    let mut harness = Harness::new();
    let registry = &harness.registry;
    let agent = registry
        .register(&global(), new_agent("acme", "builder"))
        .await
        .unwrap();
    let admin = tenant_admin("acme");

    let suspended = registry
        .transition(&admin, &agent.id, Transition::Suspend, "investigating")
        .await
        .unwrap();
    assert_eq!(suspended.status, Status::Suspended);
    assert_eq!(suspended.status_reason, "investigating");
    assert_eq!(suspended.token_generation, 1, "earlier tokens stop");
    assert!(suspended.generation_time.is_some());

    let reactivated = registry
        .transition(&admin, &agent.id, Transition::Reactivate, "cleared")
        .await
        .unwrap();
    assert_eq!(reactivated.status, Status::Active);
    assert_eq!(
        reactivated.token_generation, 1,
        "suspended tokens stay inactive"
    );

    let revoked = registry
        .transition(&admin, &agent.id, Transition::Revoke, "compromised")
        .await
        .unwrap();
    assert_eq!(revoked.status, Status::Revoked);
    assert_eq!(revoked.token_generation, 2);
    assert_eq!(harness.stored().await.agents.get(&agent.id), Some(&revoked));
    assert_eq!(harness.audited(), 4, "registered and three transitions");
    let kinds: Vec<_> = harness.published().iter().map(|p| p.event.kind).collect();
    assert_eq!(
        kinds,
        [
            InvalidationKind::AgentSuspended,
            InvalidationKind::AgentReactivated,
            InvalidationKind::AgentRevoked,
        ]
    );

    // Revoked is final: no way back, no update.
    let registry = &harness.registry;
    for transition in [Transition::Suspend, Transition::Reactivate] {
        let err = registry
            .transition(&admin, &agent.id, transition, "again")
            .await
            .unwrap_err();
        assert_eq!(code(err), Code::FailedPrecondition);
    }
    let err = registry
        .update(&admin, &agent.id, fields("renamed"), vec!["name".into()])
        .await
        .unwrap_err();
    assert_eq!(code(err), Code::FailedPrecondition);
    assert_eq!(harness.stored().await.agents.get(&agent.id), Some(&revoked));
    assert_eq!(harness.audited(), 4);
}

#[tokio::test]
async fn a_transition_to_the_current_status_changes_nothing() {
    let mut harness = Harness::new();
    let registry = &harness.registry;
    let agent = registry
        .register(&global(), new_agent("acme", "builder"))
        .await
        .unwrap();
    let again = registry
        .transition(&global(), &agent.id, Transition::Reactivate, "no-op")
        .await
        .unwrap();
    assert_eq!(again, agent, "an active agent stays as it was");
    let suspended = registry
        .transition(&global(), &agent.id, Transition::Suspend, "first")
        .await
        .unwrap();
    let again = registry
        .transition(&global(), &agent.id, Transition::Suspend, "second")
        .await
        .unwrap();
    assert_eq!(again, suspended, "reason, generation and time unchanged");
    let revoked = registry
        .transition(&global(), &agent.id, Transition::Revoke, "first")
        .await
        .unwrap();
    let again = registry
        .transition(&global(), &agent.id, Transition::Revoke, "second")
        .await
        .unwrap();
    assert_eq!(again, revoked);
    assert_eq!(harness.stored().await.agents.get(&agent.id), Some(&revoked));
    assert_eq!(harness.audited(), 3, "registered, suspended, revoked");
    assert_eq!(harness.published().len(), 2);

    let err = harness
        .registry
        .transition(&global(), &agent.id, Transition::Revoke, "")
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "invalid `reason`: is required");
}

#[tokio::test]
async fn a_listing_pages_by_id_and_filters() {
    let harness = Harness::new();
    let registry = &harness.registry;
    let mut ids = Vec::new();
    for index in 0..5 {
        let mut agent = new_agent("acme", &format!("agent-{index}"));
        if index % 2 == 0 {
            agent.fields.attributes.insert("env".into(), "prod".into());
        }
        ids.push(registry.register(&global(), agent).await.unwrap().id);
    }
    registry
        .register(&global(), new_agent("globex", "elsewhere"))
        .await
        .unwrap();
    ids.sort();
    let acme = AgentQuery {
        tenant: "acme".into(),
        ..AgentQuery::default()
    };

    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let request = page(2, &token);
        let (agents, next) = registry
            .list(&global(), acme.clone(), Some(&request))
            .await
            .unwrap();
        assert!(agents.len() <= 2);
        seen.extend(agents.into_iter().map(|agent| agent.id));
        pages += 1;
        if next.is_empty() {
            break;
        }
        token = next;
    }
    assert_eq!(seen, ids, "every agent once, by id");
    assert_eq!(pages, 3);

    // A cursor belongs to its listing's filters.
    let (_, next) = registry
        .list(&global(), acme.clone(), Some(&page(2, "")))
        .await
        .unwrap();
    let other = AgentQuery {
        owner: "alice".into(),
        ..acme.clone()
    };
    let err = registry
        .list(&global(), other, Some(&page(2, &next)))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid `page.page_token`: is not a cursor of this listing"
    );

    let prod = AgentQuery {
        attributes: [("env".to_string(), "prod".to_string())].into(),
        ..acme
    };
    let (agents, next) = registry
        .list(&global(), prod.clone(), Some(&page(2, "")))
        .await
        .unwrap();
    assert_eq!(agents.len(), 2);
    assert!(agents
        .iter()
        .all(|agent| agent.fields.attributes.get("env").map(String::as_str) == Some("prod")));
    let (rest, last) = registry
        .list(&global(), prod, Some(&page(2, &next)))
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(last, "");

    let suspended = AgentQuery {
        status: Some(Status::Suspended),
        ..AgentQuery::default()
    };
    let (agents, _) = registry.list(&global(), suspended, None).await.unwrap();
    assert!(agents.is_empty());
}

#[tokio::test]
async fn an_outage_is_unavailable_and_changes_nothing() {
    let mut harness = Harness::new();
    let agent = harness
        .registry
        .register(&global(), new_agent("acme", "builder"))
        .await
        .unwrap();
    let audited = harness.audited();
    harness.published();
    harness.tables().set_unreachable(true);

    let registry = &harness.registry;
    let err = registry
        .register(&global(), new_agent("acme", "other"))
        .await
        .unwrap_err();
    assert_eq!(code(err), Code::Unavailable);
    let err = registry
        .transition(&global(), &agent.id, Transition::Suspend, "outage")
        .await
        .unwrap_err();
    assert_eq!(code(err), Code::Unavailable);
    let err = registry
        .update(&global(), &agent.id, fields("renamed"), vec!["name".into()])
        .await
        .unwrap_err();
    assert_eq!(code(err), Code::Unavailable);
    let err = registry.get(&global(), &agent.id).await.unwrap_err();
    assert_eq!(code(err), Code::Unavailable);
    let err = registry
        .list(&global(), AgentQuery::default(), None)
        .await
        .unwrap_err();
    assert_eq!(code(err), Code::Unavailable);

    harness.tables().set_unreachable(false);
    let stored = harness.stored().await;
    assert_eq!(stored.agents.len(), 1);
    assert_eq!(stored.agents.get(&agent.id), Some(&agent));
    assert_eq!(harness.audited(), audited);
    assert!(harness.published().is_empty());
}
