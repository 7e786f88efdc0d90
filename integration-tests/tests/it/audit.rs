//! audit-svc end to end: append (unary and streaming), idempotent retries,
//! queries, tail, checkpoints, verification against direct tampering with
//! the database, and export checked by the standalone verifier script.

use std::collections::HashMap;
use std::time::Duration;

use agentsec_integration_tests::cluster::AuditClient;
use agentsec_integration_tests::{eventually, Service, TestCluster};
use agentsec_proto::audit::v1::*;
use agentsec_proto::common::v1::{Actor, ActorChain, Outcome, PageRequest};
use sea_orm::ConnectionTrait;
use tokio_stream::StreamExt as _;

pub fn event(id: &str, second: i64) -> Event {
    Event {
        id: id.to_owned(),
        time: Some(prost_types::Timestamp {
            seconds: 1_790_000_000 + second,
            nanos: 123_456_789,
        }),
        service: "policy-svc".into(),
        kind: "decision".into(),
        tenant: "acme".into(),
        agent_id: "agt_1".into(),
        person_subject: "alice".into(),
        actor_chain: Some(ActorChain {
            actors: vec![Actor {
                agent_id: "agt_1".into(),
                issuer: "http://127.0.0.1:7401".into(),
            }],
        }),
        action: "tools/call".into(),
        resource_type: "mcp.tool".into(),
        resource_id: "mcp:github/create_issue".into(),
        audience: "mcp:github".into(),
        outcome: Outcome::Allow as i32,
        reason: "allowed by p1 — ü \"quoted\"\n".into(),
        policy_ids: vec!["p1".into()],
        decision_id: format!("dec_{id}"),
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        span_id: "00f067aa0ba902b7".into(),
        attributes: HashMap::from([("scope_issued".into(), "repo:read".into())]),
    }
}

async fn client(cluster: &TestCluster) -> anyhow::Result<AuditClient> {
    cluster.audit_client().await
}

async fn append(client: &mut AuditClient, events: Vec<Event>) -> anyhow::Result<Vec<AppendResult>> {
    Ok(client
        .append_events(AppendEventsRequest { events })
        .await?
        .into_inner()
        .results)
}

async fn query(
    client: &mut AuditClient,
    filter: EventFilter,
    order: Order,
) -> anyhow::Result<Vec<StoredEvent>> {
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let response = client
            .query_events(QueryEventsRequest {
                filter: Some(filter.clone()),
                order: order as i32,
                page: Some(PageRequest {
                    page_size: 7,
                    page_token,
                }),
            })
            .await?
            .into_inner();
        all.extend(response.events);
        page_token = response.page.unwrap_or_default().next_page_token;
        if page_token.is_empty() {
            return Ok(all);
        }
    }
}

async fn verify(client: &mut AuditClient) -> anyhow::Result<VerifyChainResponse> {
    Ok(client
        .verify_chain(VerifyChainRequest::default())
        .await?
        .into_inner())
}

#[tokio::test]
async fn appends_are_durable_ordered_and_idempotent() -> anyhow::Result<()> {
    let cluster = TestCluster::start_only(&[Service::Audit]).await?;
    let mut audit = client(&cluster).await?;
    let batch: Vec<Event> = (0..5).map(|n| event(&format!("evt_a{n}"), n)).collect();
    let first = append(&mut audit, batch.clone()).await?;
    assert_eq!(
        first.iter().map(|r| r.sequence).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    assert!(first.iter().all(|r| !r.duplicate));

    // A retried batch, plus one new event: nothing is stored twice.
    let mut retry = batch.clone();
    retry.push(event("evt_a5", 5));
    let second = append(&mut audit, retry).await?;
    assert_eq!(
        second
            .iter()
            .map(|r| (r.sequence, r.duplicate))
            .collect::<Vec<_>>()[..5],
        [(1, true), (2, true), (3, true), (4, true), (5, true)]
    );
    assert_eq!((second[5].sequence, second[5].duplicate), (6, false));

    let stored = query(&mut audit, EventFilter::default(), Order::OldestFirst).await?;
    assert_eq!(stored.len(), 6);
    let round_trip = stored[0].event.clone().unwrap_or_default();
    let mut expected = batch[0].clone();
    expected.time = Some(prost_types::Timestamp {
        seconds: 1_790_000_000,
        nanos: 123_456_000,
    });
    assert_eq!(
        round_trip, expected,
        "stored as sent, time truncated to microseconds"
    );
    assert_eq!(stored[0].prev_hash, "0".repeat(64));
    assert_eq!(stored[1].prev_hash, stored[0].hash);
    cluster.shutdown().await
}

#[tokio::test]
async fn bad_input_is_refused_and_stores_nothing() -> anyhow::Result<()> {
    let cluster = TestCluster::start_only(&[Service::Audit]).await?;
    let mut audit = client(&cluster).await?;
    let mut bad = event("evt_b1", 1);
    bad.kind = String::new();
    let status = audit
        .append_events(AppendEventsRequest {
            events: vec![event("evt_b0", 0), bad],
        })
        .await
        .expect_err("missing kind");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("events[1].kind"),
        "{}",
        status.message()
    );

    let mut oversized = event("evt_b2", 2);
    oversized.attributes = (0..60)
        .map(|n| (format!("k{n}"), "x".repeat(4_000)))
        .collect();
    let status = audit
        .append_events(AppendEventsRequest {
            events: vec![oversized],
        })
        .await
        .expect_err("too big");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("32768"), "{}", status.message());

    let status = audit
        .append_events(AppendEventsRequest { events: Vec::new() })
        .await
        .expect_err("empty");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let too_many: Vec<Event> = (0..1_001)
        .map(|n| event(&format!("evt_many{n}"), n))
        .collect();
    let status = audit
        .append_events(AppendEventsRequest { events: too_many })
        .await
        .expect_err("too many");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);

    let status = audit
        .query_events(QueryEventsRequest {
            page: Some(PageRequest {
                page_size: 10,
                page_token: "forged".into(),
            }),
            ..QueryEventsRequest::default()
        })
        .await
        .expect_err("bad token");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    // common.proto: a page size above 1,000 is read as 1,000.
    audit
        .query_events(QueryEventsRequest {
            page: Some(PageRequest {
                page_size: 5_000,
                page_token: String::new(),
            }),
            ..QueryEventsRequest::default()
        })
        .await?;

    assert!(
        query(&mut audit, EventFilter::default(), Order::OldestFirst)
            .await?
            .is_empty()
    );
    cluster.shutdown().await
}

#[tokio::test]
async fn queries_filter_order_and_page() -> anyhow::Result<()> {
    let cluster = TestCluster::start_only(&[Service::Audit]).await?;
    let mut audit = client(&cluster).await?;
    let events: Vec<Event> = (0..30)
        .map(|n| {
            let mut e = event(&format!("evt_q{n}"), n);
            e.agent_id = format!("agt_{}", n % 3);
            e.person_subject = if n % 2 == 0 {
                "alice".into()
            } else {
                "bob".into()
            };
            e.kind = if n % 5 == 0 {
                "token.refused".into()
            } else {
                "decision".into()
            };
            e.outcome = if n % 5 == 0 {
                Outcome::Deny as i32
            } else {
                Outcome::Allow as i32
            };
            e.trace_id = format!("{:032x}", n / 10);
            e.tenant = if n < 20 {
                "acme".into()
            } else {
                "globex".into()
            };
            e
        })
        .collect();
    append(&mut audit, events).await?;

    let newest = query(&mut audit, EventFilter::default(), Order::Unspecified).await?;
    assert_eq!(newest.len(), 30);
    assert!(
        newest.windows(2).all(|w| w[0].sequence > w[1].sequence),
        "newest first by default"
    );

    let by_agent = query(
        &mut audit,
        EventFilter {
            agent_id: "agt_1".into(),
            ..EventFilter::default()
        },
        Order::OldestFirst,
    )
    .await?;
    assert_eq!(by_agent.len(), 10);
    let by_person_and_tenant = query(
        &mut audit,
        EventFilter {
            person_subject: "bob".into(),
            tenant: "globex".into(),
            ..EventFilter::default()
        },
        Order::OldestFirst,
    )
    .await?;
    assert_eq!(by_person_and_tenant.len(), 5);
    let by_trace = query(
        &mut audit,
        EventFilter {
            trace_id: format!("{:032x}", 2),
            ..EventFilter::default()
        },
        Order::OldestFirst,
    )
    .await?;
    assert_eq!(by_trace.len(), 10);
    let by_decision = query(
        &mut audit,
        EventFilter {
            decision_id: "dec_evt_q7".into(),
            ..EventFilter::default()
        },
        Order::OldestFirst,
    )
    .await?;
    assert_eq!(
        by_decision.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        vec![8]
    );
    let denied = query(
        &mut audit,
        EventFilter {
            outcome: Outcome::Deny as i32,
            kinds: vec!["token.refused".into()],
            ..EventFilter::default()
        },
        Order::OldestFirst,
    )
    .await?;
    assert_eq!(denied.len(), 6);
    let window = query(
        &mut audit,
        EventFilter {
            start_time: Some(prost_types::Timestamp {
                seconds: 1_790_000_010,
                nanos: 0,
            }),
            end_time: Some(prost_types::Timestamp {
                seconds: 1_790_000_015,
                nanos: 0,
            }),
            ..EventFilter::default()
        },
        Order::OldestFirst,
    )
    .await?;
    assert_eq!(
        window.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        vec![11, 12, 13, 14, 15]
    );
    cluster.shutdown().await
}

#[tokio::test]
async fn streaming_append_checkpoints_and_verification() -> anyhow::Result<()> {
    let cluster = TestCluster::start_only(&[Service::Audit]).await?;
    let mut audit = client(&cluster).await?;
    let messages: Vec<AppendEventStreamRequest> = (0..25)
        .map(|m| AppendEventStreamRequest {
            events: (0..20)
                .map(|n| event(&format!("evt_s{m}_{n}"), m * 20 + n))
                .collect(),
        })
        .collect();
    // Send one message twice: the stream's duplicate is counted, not stored.
    let mut with_retry = messages.clone();
    with_retry.push(messages[3].clone());
    let summary = audit
        .append_event_stream(tokio_stream::iter(with_retry))
        .await?
        .into_inner();
    assert_eq!(
        (
            summary.appended_count,
            summary.duplicate_count,
            summary.last_sequence
        ),
        (500, 20, 500)
    );

    let report = verify(&mut audit).await?;
    assert!(report.ok, "{report:?}");
    assert_eq!(report.events_verified, 500);
    // Checkpoints come at the end of the group commit that passes 100
    // events since the last one: at least one for 500 events.
    assert!(report.checkpoints_verified >= 1, "{report:?}");

    // The timer signs whatever head the cadence left uncovered.
    let latest = eventually("the head checkpointed", Duration::from_secs(20), || {
        let mut audit = audit.clone();
        async move {
            let latest = audit
                .get_checkpoint(GetCheckpointRequest { sequence: 0 })
                .await?
                .into_inner()
                .checkpoint
                .unwrap_or_default();
            Ok((latest.sequence == 500).then_some(latest))
        }
    })
    .await?;
    assert_eq!(latest.signature.len(), 64);
    let keys = audit
        .get_verification_keys(GetVerificationKeysRequest {})
        .await?
        .into_inner();
    assert_eq!(keys.active_key_id, latest.key_id);
    let listed = audit
        .list_checkpoints(ListCheckpointsRequest {
            order: Order::OldestFirst as i32,
            page: None,
        })
        .await?
        .into_inner()
        .checkpoints;
    assert!(
        listed.first().is_some_and(|c| c.sequence >= 100),
        "{listed:?}"
    );
    assert!(listed.windows(2).all(|w| w[0].sequence < w[1].sequence));
    assert!(verify(&mut audit).await?.checkpoints_verified >= 2);
    let missing = audit
        .get_checkpoint(GetCheckpointRequest { sequence: 123 })
        .await
        .expect_err("none at 123");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    cluster.shutdown().await
}

#[tokio::test]
async fn a_timer_checkpoints_a_quiet_chain() -> anyhow::Result<()> {
    let cluster = TestCluster::start_only(&[Service::Audit]).await?;
    let mut audit = client(&cluster).await?;
    append(&mut audit, vec![event("evt_t0", 0), event("evt_t1", 1)]).await?;
    // Two events are far below the 100-event cadence; the 1-second timer
    // signs the head. Wait for it with a deadline (NOT_FOUND until then).
    let found = eventually("a timed checkpoint", Duration::from_secs(20), || {
        let mut audit = audit.clone();
        async move {
            Ok(audit
                .get_checkpoint(GetCheckpointRequest { sequence: 2 })
                .await
                .ok())
        }
    })
    .await?;
    assert_eq!(found.into_inner().checkpoint.map(|c| c.sequence), Some(2));
    cluster.shutdown().await
}

/// Runs `sql` with bound text values, in the backend's placeholder style
/// (`{}` in `sql` marks each).
async fn tamper(
    db: &sea_orm::DatabaseConnection,
    sql: &str,
    values: &[&str],
) -> anyhow::Result<()> {
    let backend = db.get_database_backend();
    let mut text = String::new();
    for (index, part) in sql.split("{}").enumerate() {
        if index > 0 {
            text.push_str(&match backend {
                sea_orm::DbBackend::Postgres => format!("${index}"),
                _ => "?".to_owned(),
            });
        }
        text.push_str(part);
    }
    let values: Vec<sea_orm::Value> = values.iter().map(|v| (*v).into()).collect();
    db.execute(sea_orm::Statement::from_sql_and_values(
        backend, text, values,
    ))
    .await?;
    Ok(())
}

/// The stored canonical bytes of event `sequence`, from an export.
async fn stored_line(client: &mut AuditClient, sequence: u64) -> anyhow::Result<String> {
    let mut export = client
        .export_events(ExportEventsRequest {
            start_sequence: sequence,
            end_sequence: sequence,
            ..ExportEventsRequest::default()
        })
        .await?
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = export.next().await {
        bytes.extend(chunk?.data);
    }
    let line = String::from_utf8(bytes)?;
    let body = line
        .strip_prefix("{\"event\":")
        .and_then(|rest| rest.split(",\"hash\":\"").next())
        .ok_or_else(|| anyhow::anyhow!("unexpected export line {line}"))?;
    Ok(body.to_owned())
}

/// Appends `blocks` requests of `per_block` events one after the other:
/// each request is its own group commit, so its own block.
async fn append_blocks(
    client: &mut AuditClient,
    prefix: &str,
    blocks: i64,
    per_block: i64,
) -> anyhow::Result<()> {
    for block in 0..blocks {
        let events = (0..per_block)
            .map(|n| {
                event(
                    &format!("{prefix}{}", block * per_block + n),
                    block * per_block + n,
                )
            })
            .collect();
        append(client, events).await?;
    }
    Ok(())
}

#[tokio::test]
async fn verification_finds_edited_and_deleted_events_and_blocks() -> anyhow::Result<()> {
    let cluster = TestCluster::start_only(&[Service::Audit]).await?;
    let mut audit = client(&cluster).await?;
    // Blocks 1-10, 11-20, 21-30, 31-40, 41-50.
    append_blocks(&mut audit, "evt_v", 5, 10).await?;
    assert!(verify(&mut audit).await?.ok);
    let part = audit
        .verify_chain(VerifyChainRequest {
            start_sequence: 15,
            end_sequence: 35,
        })
        .await?
        .into_inner();
    assert!(part.ok, "{part:?}");
    assert_eq!(part.events_verified, 21, "a range across three blocks");
    let db = cluster.database(Service::Audit).await?;

    // One event's bytes edited inside its block.
    let original = stored_line(&mut audit, 17).await?;
    let edited = original.replace("allowed by p1", "denied by p1");
    assert_ne!(original, edited);
    tamper(
        &db,
        "UPDATE audit_blocks SET events = REPLACE(events, {}, {}) WHERE first_sequence = 11",
        &[&original, &edited],
    )
    .await?;
    let report = verify(&mut audit).await?;
    assert!(!report.ok);
    assert_eq!(
        (report.first_broken_sequence, report.failure),
        (17, VerifyFailure::HashMismatch as i32),
        "{report:?}"
    );
    tamper(
        &db,
        "UPDATE audit_blocks SET events = REPLACE(events, {}, {}) WHERE first_sequence = 11",
        &[&edited, &original],
    )
    .await?;
    assert!(verify(&mut audit).await?.ok, "restored bytes verify again");

    // A block's key summary edited: queries by agent would miss its events.
    let hidden = if cluster.backend.is_postgres() {
        "UPDATE audit_blocks SET agent_ids = ARRAY['agt_hidden'] WHERE first_sequence = 21"
    } else {
        "UPDATE audit_blocks SET agent_ids = '[\"agt_hidden\"]' WHERE first_sequence = 21"
    };
    db.execute_unprepared(hidden).await?;
    let report = verify(&mut audit).await?;
    assert_eq!(
        (report.first_broken_sequence, report.failure),
        (21, VerifyFailure::HashMismatch as i32),
        "{report:?}"
    );
    assert!(report.reason.contains("agent_ids"), "{}", report.reason);
    let restore = if cluster.backend.is_postgres() {
        "UPDATE audit_blocks SET agent_ids = ARRAY['agt_1'] WHERE first_sequence = 21"
    } else {
        "UPDATE audit_blocks SET agent_ids = '[\"agt_1\"]' WHERE first_sequence = 21"
    };
    db.execute_unprepared(restore).await?;
    assert!(
        verify(&mut audit).await?.ok,
        "restored summary verifies again"
    );

    // One event removed from inside its block.
    let line = stored_line(&mut audit, 33).await?;
    tamper(
        &db,
        "UPDATE audit_blocks SET events = REPLACE(events, {}, '') WHERE first_sequence = 31",
        &[&format!("{line}\n")],
    )
    .await?;
    let report = verify(&mut audit).await?;
    assert_eq!(
        (report.first_broken_sequence, report.failure),
        (33, VerifyFailure::HashMismatch as i32),
        "{report:?}"
    );

    // A whole block deleted: a gap, reported before the later breakage.
    db.execute_unprepared("DELETE FROM audit_blocks WHERE first_sequence = 21")
        .await?;
    let report = verify(&mut audit).await?;
    assert_eq!(
        (report.first_broken_sequence, report.failure),
        (21, VerifyFailure::SequenceGap as i32),
        "{report:?}"
    );
    db.close().await?;
    cluster.shutdown().await
}

#[tokio::test]
async fn tail_delivers_backlog_then_live_events_and_resumes() -> anyhow::Result<()> {
    let cluster = TestCluster::start_only(&[Service::Audit]).await?;
    let mut audit = client(&cluster).await?;
    append(
        &mut audit,
        (0..5).map(|n| event(&format!("evt_l{n}"), n)).collect(),
    )
    .await?;
    let filter = EventFilter {
        agent_id: "agt_1".into(),
        ..EventFilter::default()
    };
    let mut tail = audit
        .tail_events(TailEventsRequest {
            filter: Some(filter.clone()),
            start_sequence: 2,
        })
        .await?
        .into_inner();
    let mut other = event("evt_other", 10);
    other.agent_id = "agt_2".into();
    let mut writer = client(&cluster).await?;
    append(&mut writer, vec![other, event("evt_l5", 11)]).await?;
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let next = tokio::time::timeout(Duration::from_secs(10), tail.next()).await?;
        let item = next.ok_or_else(|| anyhow::anyhow!("tail ended"))??;
        seen.push(item.event.map(|e| e.sequence).unwrap_or_default());
    }
    assert_eq!(
        seen,
        vec![2, 3, 4, 5, 7],
        "backlog from 2, live 7; 6 is another agent's"
    );
    drop(tail);

    // A reader that reconnects after 7 gets what came since, nothing twice.
    append(&mut writer, vec![event("evt_l6", 12)]).await?;
    let mut resumed = audit
        .tail_events(TailEventsRequest {
            filter: Some(filter),
            start_sequence: 8,
        })
        .await?
        .into_inner();
    let next = tokio::time::timeout(Duration::from_secs(10), resumed.next()).await?;
    let item = next.ok_or_else(|| anyhow::anyhow!("tail ended"))??;
    assert_eq!(item.event.map(|e| e.sequence), Some(8));
    cluster.shutdown().await
}

#[tokio::test]
async fn export_verifies_with_the_standalone_script() -> anyhow::Result<()> {
    let cluster = TestCluster::start_only(&[Service::Audit]).await?;
    let mut audit = client(&cluster).await?;
    append(
        &mut audit,
        (0..120).map(|n| event(&format!("evt_x{n}"), n)).collect(),
    )
    .await?;
    let mut export = audit
        .export_events(ExportEventsRequest::default())
        .await?
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = export.next().await {
        bytes.extend(chunk?.data);
    }
    assert_eq!(bytes.iter().filter(|b| **b == b'\n').count(), 120);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("export.jsonl");
    std::fs::write(&path, &bytes)?;
    let (ok, output) = run_verifier(&path)?;
    assert!(ok, "{output}");
    assert!(output.contains("ok: 120 events"), "{output}");

    let tampered = String::from_utf8(bytes)?.replacen("allowed by p1", "denied by p1", 1);
    std::fs::write(&path, tampered)?;
    let (ok, output) = run_verifier(&path)?;
    assert!(!ok);
    assert!(output.contains("line 1"), "{output}");
    cluster.shutdown().await
}

fn run_verifier(path: &std::path::Path) -> anyhow::Result<(bool, String)> {
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts/verify_audit_export.py");
    let output = std::process::Command::new("python3")
        .arg(script)
        .arg(path)
        .output()?;
    Ok((
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    ))
}

#[tokio::test]
async fn deleting_the_newest_events_is_caught_by_a_later_checkpoint() -> anyhow::Result<()> {
    let cluster = TestCluster::start_only(&[Service::Audit]).await?;
    let mut audit = client(&cluster).await?;
    // Blocks of 50 events; checkpoints at 100 and 200 (every 100 events in
    // tests).
    append_blocks(&mut audit, "evt_n", 5, 50).await?;
    let at_200 = audit
        .get_checkpoint(GetCheckpointRequest { sequence: 200 })
        .await?
        .into_inner();
    assert!(at_200.checkpoint.is_some());

    let db = cluster.database(Service::Audit).await?;
    db.execute_unprepared("DELETE FROM audit_blocks WHERE first_sequence >= 151")
        .await?;
    let report = verify(&mut audit).await?;
    assert_eq!(
        (report.first_broken_sequence, report.failure),
        (151, VerifyFailure::SequenceGap as i32),
        "{report:?}"
    );

    let status = audit
        .verify_chain(VerifyChainRequest {
            start_sequence: 1,
            end_sequence: 10_000,
        })
        .await
        .expect_err("beyond the head");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    db.close().await?;
    cluster.shutdown().await
}

#[tokio::test]
async fn query_cursors_are_bound_to_their_listing() -> anyhow::Result<()> {
    let cluster = TestCluster::start_only(&[Service::Audit]).await?;
    let mut audit = client(&cluster).await?;
    // A cursor works only with the filter and order it was made with, and
    // the last page has none.
    let stored = (0..3).map(|n| event(&format!("evt_page{n}"), n)).collect();
    append(&mut audit, stored).await?;
    let first = audit
        .query_events(QueryEventsRequest {
            order: Order::OldestFirst as i32,
            page: Some(PageRequest {
                page_size: 2,
                page_token: String::new(),
            }),
            ..QueryEventsRequest::default()
        })
        .await?
        .into_inner();
    let cursor = first.page.unwrap_or_default().next_page_token;
    assert!(!cursor.is_empty());
    for (what, order, tenant) in [
        ("another order", Order::NewestFirst, ""),
        ("another filter", Order::OldestFirst, "globex"),
    ] {
        let status = audit
            .query_events(QueryEventsRequest {
                filter: Some(EventFilter {
                    tenant: tenant.to_owned(),
                    ..EventFilter::default()
                }),
                order: order as i32,
                page: Some(PageRequest {
                    page_size: 2,
                    page_token: cursor.clone(),
                }),
            })
            .await
            .expect_err(what);
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{what}");
    }
    let last = audit
        .query_events(QueryEventsRequest {
            order: Order::OldestFirst as i32,
            page: Some(PageRequest {
                page_size: 1,
                page_token: cursor,
            }),
            ..QueryEventsRequest::default()
        })
        .await?
        .into_inner();
    assert_eq!(last.events.len(), 1);
    assert!(
        last.page.unwrap_or_default().next_page_token.is_empty(),
        "an exactly full last page has no cursor"
    );
    cluster.shutdown().await
}
