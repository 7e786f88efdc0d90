//! The audit client against a scripted transport and a real audit-svc
//! double: batching, retries, shutdown, the memory bound.

use std::future::Future;

use agentsec_proto::audit::v1::{AppendEventsRequest, AppendEventsResponse};
use tonic::Status;

use super::super::MAX_BATCH_EVENTS;
use super::transport::*;
use super::worker::*;
use super::*;

/// No TLS settings: `http://` endpoints, as these tests use.
fn plain() -> Arc<ClientTls> {
    ClientTls::start(&crate::tls::ClientTlsConfig::default(), None).unwrap()
}
use agentsec_proto::audit::v1::AppendResult;
use agentsec_proto::common::v1::Outcome;
use std::collections::HashSet;
use std::sync::Mutex;

fn event(id: &str) -> Event {
    Event {
        id: id.to_owned(),
        time: Some(prost_types::Timestamp {
            seconds: 1_790_000_000,
            nanos: 0,
        }),
        service: "identity-svc".into(),
        kind: "token.issued".into(),
        outcome: Outcome::Allow as i32,
        ..Event::default()
    }
}

fn ids(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i}")).collect()
}

/// Polls `condition` until it holds or 10 seconds pass.
async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn unreachable_config() -> AuditClientConfig {
    AuditClientConfig {
        // Port 1 on loopback: nobody listens, connections are refused.
        endpoint: "http://127.0.0.1:1".into(),
        retry_initial_backoff_ms: 5,
        retry_max_backoff_ms: 20,
        shutdown_flush_timeout_secs: 1,
        ..AuditClientConfig::default()
    }
}

fn fake_config() -> AuditClientConfig {
    AuditClientConfig {
        retry_initial_backoff_ms: 1,
        retry_max_backoff_ms: 4,
        ..AuditClientConfig::default()
    }
}

/// An in-memory audit-svc: stores ids idempotently, can fail the next
/// calls with UNAVAILABLE and refuse chosen ids with INVALID_ARGUMENT.
#[derive(Clone, Default)]
struct FakeAuditSvc {
    state: Arc<Mutex<FakeState>>,
}

#[derive(Default)]
struct FakeState {
    calls: Vec<Vec<String>>,
    stored: Vec<String>,
    unavailable_calls: usize,
    refused_ids: HashSet<String>,
}

impl FakeAuditSvc {
    fn calls(&self) -> Vec<Vec<String>> {
        self.state.lock().unwrap().calls.clone()
    }
    fn stored(&self) -> Vec<String> {
        self.state.lock().unwrap().stored.clone()
    }
}

impl AppendTransport for FakeAuditSvc {
    fn append(
        &self,
        request: AppendEventsRequest,
    ) -> impl Future<Output = Result<AppendEventsResponse, Status>> + Send + 'static {
        let state = Arc::clone(&self.state);
        async move {
            let mut state = state.lock().unwrap();
            let ids: Vec<String> = request.events.iter().map(|e| e.id.clone()).collect();
            state.calls.push(ids.clone());
            if state.unavailable_calls > 0 {
                state.unavailable_calls -= 1;
                return Err(Status::unavailable("audit-svc is restarting"));
            }
            if let Some(index) = ids.iter().position(|id| state.refused_ids.contains(id)) {
                return Err(Status::invalid_argument(format!(
                    "events[{index}].id is refused"
                )));
            }
            let mut results = Vec::new();
            for id in ids {
                let duplicate = state.stored.contains(&id);
                if !duplicate {
                    state.stored.push(id.clone());
                }
                results.push(AppendResult {
                    event_id: id,
                    sequence: 0,
                    duplicate,
                });
            }
            Ok(AppendEventsResponse { results })
        }
    }
}

#[test]
fn config_defaults_validate_and_bad_values_are_named() {
    AuditClientConfig::default().validate().unwrap();
    AuditClientConfig {
        endpoint: "https://audit:7404".into(),
        ..Default::default()
    }
    .validate()
    .unwrap();
    let cases: Vec<(AuditClientConfig, &str)> = vec![
        (
            AuditClientConfig {
                endpoint: "not a url".into(),
                ..Default::default()
            },
            "audit.endpoint",
        ),
        (
            AuditClientConfig {
                endpoint: "ftp://audit:7404".into(),
                ..Default::default()
            },
            "audit.endpoint",
        ),
        (
            AuditClientConfig {
                queue_capacity: 0,
                ..Default::default()
            },
            "audit.queue_capacity",
        ),
        (
            AuditClientConfig {
                max_batch: 0,
                ..Default::default()
            },
            "audit.max_batch",
        ),
        (
            AuditClientConfig {
                max_batch: MAX_BATCH_EVENTS + 1,
                ..Default::default()
            },
            "audit.max_batch",
        ),
        (
            AuditClientConfig {
                retry_initial_backoff_ms: 0,
                ..Default::default()
            },
            "audit.retry_initial_backoff_ms",
        ),
        (
            AuditClientConfig {
                retry_max_backoff_ms: 10,
                ..Default::default()
            },
            "audit.retry_max_backoff_ms",
        ),
        (
            AuditClientConfig {
                shutdown_flush_timeout_secs: 0,
                ..Default::default()
            },
            "audit.shutdown_flush_timeout_secs",
        ),
    ];
    for (config, key) in cases {
        let message = config.validate().unwrap_err().to_string();
        assert!(message.contains(&format!("`{key}`")), "{message}");
    }
}

#[test]
fn config_parses_partially_and_refuses_unknown_keys() {
    let config: AuditClientConfig =
        serde_json::from_str(r#"{"endpoint": "http://audit:7404", "when_full": "fail"}"#).unwrap();
    assert_eq!(config.when_full, WhenFull::Fail);
    assert_eq!(config.queue_capacity, 10_000);
    let err = serde_json::from_str::<AuditClientConfig>(r#"{"queue_capacty": 5}"#).unwrap_err();
    assert!(err.to_string().contains("queue_capacty"), "{err}");
}

#[test]
fn backoff_grows_is_capped_and_jitters_within_bounds() {
    for attempt in 1..100 {
        for random in [0, 1, 7, u64::MAX / 3, u64::MAX] {
            let delay = backoff_delay(attempt, 50, 5_000, random).as_millis() as u64;
            let ceiling = (50_u64 << (attempt - 1).min(20)).min(5_000);
            assert!(
                delay >= ceiling / 2 && delay <= ceiling,
                "attempt {attempt}: {delay}"
            );
        }
    }
    assert_eq!(backoff_delay(1, 50, 5_000, 0), Duration::from_millis(25));
    assert_eq!(
        backoff_delay(30, 50, 5_000, 0),
        Duration::from_millis(2_500)
    );
}

#[test]
fn batches_are_bounded_by_count_and_request_size() {
    let mut batch = Batch::new(2);
    assert!(batch.push(event("a")).is_none());
    assert!(batch.push(event("b")).is_none());
    assert_eq!(batch.push(event("c")).unwrap().id, "c");

    let big = |id: &str| Event {
        reason: "x".repeat(2_000),
        attributes: (0..7)
            .map(|i| (format!("k{i}"), "y".repeat(4_000)))
            .collect(),
        ..event(id)
    };
    assert!(big("a").encoded_len() > 30_000 && big("a").encoded_len() <= MAX_EVENT_BYTES);
    let mut batch = Batch::new(MAX_BATCH_EVENTS);
    let mut accepted = 0;
    while batch.push(big(&format!("e{accepted}"))).is_none() {
        accepted += 1;
    }
    assert!(batch.encoded_bytes <= MAX_REQUEST_BYTES);
    assert_eq!(
        AppendEventsRequest {
            events: batch.events
        }
        .encoded_len(),
        batch.encoded_bytes,
        "the running size is the exact request size"
    );
    assert!(accepted > 100 && accepted < MAX_BATCH_EVENTS, "{accepted}");
}

#[tokio::test]
async fn record_refuses_an_invalid_event_naming_the_field() {
    let (client, sender) = start_with_transport(&fake_config(), FakeAuditSvc::default());
    let err = client
        .record(Event {
            time: None,
            ..event("e1")
        })
        .await
        .unwrap_err();
    match err {
        AuditClientError::InvalidEvent { source } => assert_eq!(source.field, "time"),
        other => panic!("unexpected {other:?}"),
    }
    let oversized = Event {
        attributes: (0..10)
            .map(|i| (format!("k{i}"), "y".repeat(4_000)))
            .collect(),
        ..event("e2")
    };
    assert!(matches!(
        client.record(oversized).await,
        Err(AuditClientError::InvalidEvent { source }) if source.field == "event"
    ));
    assert_eq!(client.pending(), 0);
    sender.shutdown().await.unwrap();
}

#[tokio::test]
async fn delivers_everything_in_order_in_bounded_batches() {
    let fake = FakeAuditSvc::default();
    let config = AuditClientConfig {
        max_batch: 3,
        flush_interval_ms: 1,
        ..fake_config()
    };
    let (client, sender) = start_with_transport(&config, fake.clone());
    let expected = ids("e", 20);
    for id in &expected {
        client.record(event(id)).await.unwrap();
    }
    wait_until("everything is acknowledged", || client.pending() == 0).await;
    assert_eq!(fake.stored(), expected);
    assert!(fake
        .calls()
        .iter()
        .all(|call| (1..=3).contains(&call.len())));
    sender.shutdown().await.unwrap();
}

#[tokio::test]
async fn retries_the_same_batch_until_audit_svc_answers() {
    let fake = FakeAuditSvc::default();
    fake.state.lock().unwrap().unavailable_calls = 3;
    let config = AuditClientConfig {
        max_batch: 2,
        // Long: the batch is sent because it is full, so it is exactly
        // the two events.
        flush_interval_ms: 60_000,
        ..fake_config()
    };
    let (client, sender) = start_with_transport(&config, fake.clone());
    client.record(event("a")).await.unwrap();
    client.record(event("b")).await.unwrap();
    wait_until("the batch is acknowledged", || client.pending() == 0).await;
    let same = vec!["a".to_owned(), "b".to_owned()];
    assert_eq!(fake.calls(), vec![same.clone(); 4]);
    assert_eq!(fake.stored(), same);
    sender.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_refused_batch_is_split_and_only_the_bad_event_is_rejected() {
    let fake = FakeAuditSvc::default();
    fake.state
        .lock()
        .unwrap()
        .refused_ids
        .insert("e-1".to_owned());
    let config = AuditClientConfig {
        max_batch: 4,
        flush_interval_ms: 60_000,
        ..fake_config()
    };
    let (client, sender) = start_with_transport(&config, fake.clone());
    for id in ids("e", 4) {
        client.record(event(&id)).await.unwrap();
    }
    wait_until("the batch is settled", || client.pending() == 0).await;
    assert_eq!(client.rejected(), 1);
    assert_eq!(fake.stored(), vec!["e-0", "e-2", "e-3"]);
    let calls = fake.calls();
    assert_eq!(calls[0], ids("e", 4));
    assert_eq!(
        calls[1..],
        [vec!["e-0"], vec!["e-1"], vec!["e-2"], vec!["e-3"]]
    );
    sender.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_sends_a_partial_batch_at_once_then_refuses_events() {
    let fake = FakeAuditSvc::default();
    let config = AuditClientConfig {
        max_batch: 100,
        flush_interval_ms: 60_000,
        ..fake_config()
    };
    let (client, sender) = start_with_transport(&config, fake.clone());
    for id in ids("e", 5) {
        client.record(event(&id)).await.unwrap();
    }
    // Does not wait for the 60 s flush interval.
    tokio::time::timeout(Duration::from_secs(5), sender.shutdown())
        .await
        .expect("shutdown waited for the flush interval")
        .unwrap();
    assert_eq!(fake.stored(), ids("e", 5));
    assert_eq!(client.pending(), 0);
    assert!(matches!(
        client.record(event("late")).await,
        Err(AuditClientError::Closed)
    ));
}

#[tokio::test]
async fn fail_mode_refuses_when_full_with_exact_pending_count() {
    let config = AuditClientConfig {
        queue_capacity: 4,
        max_batch: 3,
        // Long: the task takes a batch off the queue only once it is
        // full, so the batch in flight is exactly `max_batch` events.
        flush_interval_ms: 60_000,
        when_full: WhenFull::Fail,
        ..unreachable_config()
    };
    let (client, sender) = AuditClient::start(config, None, &plain()).unwrap();
    let metrics = crate::metrics::Metrics::new();
    client.register_metrics(&metrics);
    for id in ids("flight", 3) {
        client.record(event(&id)).await.unwrap();
    }
    // The batch leaves the queue and stays in flight, failing, and the
    // task takes nothing more until it is acknowledged.
    wait_until("the batch is in flight", || client.queue.capacity() == 4).await;
    for id in ids("queued", 4) {
        client.record(event(&id)).await.unwrap();
    }
    let err = client.record(event("one-too-many")).await.unwrap_err();
    assert!(
        matches!(err, AuditClientError::QueueFull { capacity: 4 }),
        "{err:?}"
    );
    assert_eq!(client.pending(), 4 + 3);
    assert_eq!(client.rejected(), 0);
    let text = metrics.encode();
    for line in [
        "agentsec_audit_client_queued_events 4\n",
        "agentsec_audit_client_pending_events 7\n",
        "agentsec_audit_client_queue_full_total 1\n",
        "agentsec_audit_client_unflushed_events_total 0\n",
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }

    let err = sender.shutdown().await.unwrap_err();
    assert!(
        matches!(err, AuditClientError::Unflushed { count: 7 }),
        "{err:?}"
    );
    assert_eq!(client.pending(), 0);
    let text = metrics.encode();
    assert!(
        text.contains("agentsec_audit_client_unflushed_events_total 7\n"),
        "{text}"
    );
    assert!(
        text.contains("agentsec_audit_client_append_duration_seconds_count{code=\"UNAVAILABLE\"}"),
        "{text}"
    );
}

#[tokio::test]
async fn shutdown_with_audit_svc_down_reports_the_unflushed_count() {
    let (client, sender) = AuditClient::start(unreachable_config(), None, &plain()).unwrap();
    for id in ids("e", 25) {
        client.record(event(&id)).await.unwrap();
    }
    assert_eq!(client.pending(), 25);
    let started = Instant::now();
    let err = sender.shutdown().await.unwrap_err();
    assert!(
        matches!(err, AuditClientError::Unflushed { count: 25 }),
        "{err:?}"
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    assert_eq!(client.pending(), 0);
    assert!(matches!(
        client.record(event("late")).await,
        Err(AuditClientError::Closed)
    ));
}

#[tokio::test]
async fn a_caller_waiting_for_room_gets_closed_at_shutdown() {
    let config = AuditClientConfig {
        queue_capacity: 1,
        max_batch: 1,
        ..unreachable_config()
    };
    let (client, sender) = AuditClient::start(config, None, &plain()).unwrap();
    client.record(event("in-flight")).await.unwrap();
    wait_until("the batch is in flight", || client.queue.capacity() == 1).await;
    client.record(event("queued")).await.unwrap();
    let mut waiting = tokio::spawn({
        let client = client.clone();
        async move { client.record(event("waiting")).await }
    });
    // Still waiting after a while: the queue is full.
    assert!(
        tokio::time::timeout(Duration::from_millis(100), &mut waiting)
            .await
            .is_err()
    );
    let err = sender.shutdown().await.unwrap_err();
    assert!(
        matches!(err, AuditClientError::Unflushed { count: 2 }),
        "{err:?}"
    );
    assert!(matches!(
        waiting.await.unwrap(),
        Err(AuditClientError::Closed)
    ));
    assert_eq!(client.pending(), 0);
}

#[tokio::test]
async fn start_refuses_a_bad_endpoint() {
    let config = AuditClientConfig {
        endpoint: "ftp://audit".into(),
        ..AuditClientConfig::default()
    };
    assert!(matches!(
        AuditClient::start(config, None, &plain()),
        Err(AuditClientError::InvalidConfig { .. })
    ));
}
