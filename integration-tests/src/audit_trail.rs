//! Waiting for audit events to reach a [`TestCluster`]'s audit-svc: the
//! services send them in the background, so tests poll with
//! [`crate::eventually`].

use std::cell::RefCell;
use std::time::Duration;

use agentsec_proto::audit::v1::{Event, EventFilter, Order, QueryEventsRequest, StoredEvent};
use agentsec_proto::common::v1::PageRequest;
use anyhow::Context as _;

use crate::{eventually, TestCluster};

/// The events matching `filter` (oldest first, at most 1,000) once
/// `complete` holds for them, polled for at most `within`; the error says
/// `what` did not happen and which kinds audit-svc had.
pub async fn events_until(
    cluster: &TestCluster,
    what: &str,
    within: Duration,
    filter: EventFilter,
    complete: impl Fn(&[StoredEvent]) -> bool,
) -> anyhow::Result<Vec<StoredEvent>> {
    let audit = cluster.audit_client().await?;
    let last_kinds = RefCell::new(None);
    let (complete, last_kinds_ref) = (&complete, &last_kinds);
    eventually(what, within, || {
        let mut audit = audit.clone();
        let filter = filter.clone();
        async move {
            let events = audit
                .query_events(QueryEventsRequest {
                    filter: Some(filter),
                    order: Order::OldestFirst as i32,
                    page: Some(PageRequest {
                        page_size: 1_000,
                        page_token: String::new(),
                    }),
                })
                .await?
                .into_inner()
                .events;
            if complete(&events) {
                return Ok(Some(events));
            }
            last_kinds_ref.replace(Some(kinds(&events)));
            Ok(None)
        }
    })
    .await
    .map_err(|err| match last_kinds.take() {
        Some(kinds) => err.context(format!("audit-svc has only {kinds:?}")),
        None => err,
    })
}

/// The first event matching `filter` once audit-svc has one, polled for at
/// most `within`.
pub async fn first_event(
    cluster: &TestCluster,
    what: &str,
    within: Duration,
    filter: EventFilter,
) -> anyhow::Result<Event> {
    events_until(cluster, what, within, filter, |events| {
        events.iter().any(|stored| stored.event.is_some())
    })
    .await?
    .into_iter()
    .find_map(|stored| stored.event)
    .context("checked above")
}

/// The events of `agent` (oldest first) once every kind of `wanted` is
/// there, polled for at most `within`.
pub async fn agent_events(
    cluster: &TestCluster,
    agent: &str,
    wanted: &[&str],
    within: Duration,
) -> anyhow::Result<Vec<StoredEvent>> {
    events_until(
        cluster,
        &format!("audit events {wanted:?} of {agent}"),
        within,
        EventFilter {
            agent_id: agent.to_owned(),
            ..EventFilter::default()
        },
        |events| {
            let kinds = kinds(events);
            wanted.iter().all(|kind| kinds.iter().any(|k| k == kind))
        },
    )
    .await
}

/// The kinds of `events`, in their order.
fn kinds(events: &[StoredEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|stored| stored.event.as_ref().map(|event| event.kind.clone()))
        .collect()
}
