//! The audit client every AgentSec service sends its audit events through:
//! `record()` validates an event and puts it on a bounded in-memory queue; a
//! background task takes events off the queue in order, sends them to
//! audit-svc in `AppendEvents` batches, and retries a failing batch (same
//! event ids, so a retry is idempotent) until audit-svc acknowledges it.
//! Infrastructure layer: it knows the audit contract, no service's rules.
//!
//! Memory bound: at most `queue_capacity` queued events plus one batch in
//! flight (at most `max_batch` events and at most 4 MiB encoded, the
//! contract's request limit; held twice while a call is on the wire, as the
//! batch and as its request) plus one event held back for the next batch.
//! `record()` refuses any event that encodes to more than 32 KiB, so the bound
//! is about `queue_capacity × 32 KiB + 8 MiB`.
//!
//! `pending()` counts an event from the moment it is queued until audit-svc
//! acknowledges the batch that carried it (or refuses it one by one): queued
//! events plus the batch in flight. The task holds one batch at a time and
//! takes nothing more off the queue while that batch is failing, so while
//! audit-svc is down `pending()` is the queue's length plus that batch's.
//!
//! When audit-svc is down or restarting, events wait in memory and the task
//! retries with exponential backoff and jitter; the channel connects lazily
//! and reconnects by itself. Once the queue is full, callers either wait for
//! room (`WhenFull::Wait`) or get `QueueFull` at once (`WhenFull::Fail`) so
//! they can fail their own action closed. No event is ever dropped silently:
//! an event audit-svc refuses as invalid is logged with its id and counted in
//! [`AuditClient::rejected`].
//!
//! [`AuditClient::register_metrics`] puts the queue's depth, the pending
//! events, the refused and lost ones and the latency of every
//! `AppendEvents` call on the service's `/metrics`.
//!
//! What can be lost: the queued and in-flight events, only if the process
//! dies, or if [`AuditSender::shutdown`] reaches its timeout while audit-svc
//! is still unreachable; in the latter case their count and the first and
//! last event ids are logged at error level and returned as `Unflushed`.

mod config;
#[cfg(test)]
mod tests;
mod transport;
mod worker;

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agentsec_proto::audit::v1::audit_service_client::AuditServiceClient;
use agentsec_proto::audit::v1::Event;
use prost::Message as _;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use super::{validate_event, EventError, MAX_EVENT_BYTES};
use crate::config::ConfigError;
use crate::metrics::{latency_family, LatencyFamily, Metrics};
use crate::telemetry::TraceContextInterceptor;
use crate::tls::ClientTls;
use crate::upstream::TokenSource;

pub use config::{AuditClientConfig, WhenFull};
use transport::{AppendTransport, GrpcTransport};
use worker::Worker;

/// How long one TCP/HTTP2 connection attempt to audit-svc may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one `AppendEvents` call may take before it is retried; retrying a
/// call that did commit is harmless because appends are idempotent by id.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum AuditClientError {
    #[error("invalid audit event: {source}")]
    InvalidEvent {
        #[from]
        source: EventError,
    },
    #[error("audit queue is full ({capacity} events waiting for audit-svc)")]
    QueueFull { capacity: usize },
    #[error("audit client is shut down")]
    Closed,
    #[error("{count} audit events were not acknowledged by audit-svc before the shutdown timeout")]
    Unflushed { count: usize },
    #[error("invalid audit-svc endpoint `{endpoint}`: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },
    #[error("invalid audit client configuration: {source}")]
    InvalidConfig {
        #[source]
        source: ConfigError,
    },
}

/// State shared by the client handles, the sender and the background task.
struct Shared {
    /// Events queued or in flight, not yet acknowledged (or rejected).
    pending: AtomicUsize,
    /// Events audit-svc refused one by one as invalid.
    rejected: AtomicU64,
    /// Events `record()` refused because the queue was full.
    queue_full: AtomicU64,
    /// Events given up at the shutdown deadline.
    unflushed: AtomicU64,
    /// Every `AppendEvents` call, by gRPC status code.
    append_latency: LatencyFamily<[(&'static str, &'static str); 1]>,
    /// `Some(deadline)` once shutdown has begun.
    closing: watch::Sender<Option<Instant>>,
}

/// A handle for recording audit events; cheap to clone, shared by handlers.
#[derive(Clone)]
pub struct AuditClient {
    queue: mpsc::Sender<Event>,
    shared: Arc<Shared>,
    when_full: WhenFull,
}

impl fmt::Debug for AuditClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditClient")
            .field("pending", &self.pending())
            .field("rejected", &self.rejected())
            .field("queue_capacity", &self.queue.max_capacity())
            .field("when_full", &self.when_full)
            .finish()
    }
}

type GrpcAuditClient = AuditServiceClient<InterceptedService<Channel, TraceContextInterceptor>>;

impl AuditClient {
    /// Starts the background sender; must be called inside a tokio runtime.
    ///
    /// The connection is made lazily, so this succeeds while audit-svc is
    /// down; events wait in the queue until it is reachable.
    ///
    /// An `https://` endpoint is reached over TLS with `tls`.
    ///
    /// Every call carries a bearer token from `tokens` (renewed when
    /// audit-svc refuses it); `None` sends none, which an authenticating
    /// audit-svc refuses.
    pub fn start(
        config: AuditClientConfig,
        tokens: Option<Arc<dyn TokenSource>>,
        tls: &Arc<ClientTls>,
    ) -> Result<(AuditClient, AuditSender), AuditClientError> {
        config
            .validate()
            .map_err(|source| AuditClientError::InvalidConfig { source })?;
        let endpoint = Endpoint::from_shared(config.endpoint.clone())
            .map_err(|err| AuditClientError::InvalidEndpoint {
                endpoint: config.endpoint.clone(),
                reason: describe_error(&err),
            })?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT);
        let transport = GrpcTransport {
            client: AuditServiceClient::with_interceptor(
                tls.connect_lazy(endpoint),
                TraceContextInterceptor,
            ),
            tokens,
            refused: Arc::new(std::sync::Mutex::new(None)),
        };
        Ok(start_with_transport(&config, transport))
    }

    /// Validates and queues one event. Wait mode: awaits room in the queue.
    /// Fail mode: returns `QueueFull` at once so the caller can fail its
    /// action closed. Never drops an event silently: `Ok` means the event is
    /// queued and will be sent (or counted as unflushed at shutdown).
    pub async fn record(&self, event: Event) -> Result<(), AuditClientError> {
        validate_event(&event)?;
        check_encoded_size(&event)?;
        if self.shared.closing.borrow().is_some() {
            return Err(AuditClientError::Closed);
        }
        let permit = match self.when_full {
            WhenFull::Fail => self.queue.try_reserve().map_err(|err| match err {
                TrySendError::Full(()) => {
                    self.shared.queue_full.fetch_add(1, Ordering::Relaxed);
                    AuditClientError::QueueFull {
                        capacity: self.queue.max_capacity(),
                    }
                }
                TrySendError::Closed(()) => AuditClientError::Closed,
            })?,
            WhenFull::Wait => {
                // A caller waiting for room must not outlive shutdown: it
                // gets `Closed` as soon as shutdown begins.
                let mut closing = self.shared.closing.subscribe();
                tokio::select! {
                    reserved = self.queue.reserve() => {
                        reserved.map_err(|_| AuditClientError::Closed)?
                    }
                    _ = wait_for_closing(&mut closing) => return Err(AuditClientError::Closed),
                }
            }
        };
        // Counted before it is handed over, so the task can never acknowledge
        // an event (and decrement) before it was counted; `permit.send` cannot
        // fail, so the count is exact.
        self.shared.pending.fetch_add(1, Ordering::SeqCst);
        permit.send(event);
        Ok(())
    }

    /// Events queued or in flight but not yet acknowledged by audit-svc.
    pub fn pending(&self) -> usize {
        self.shared.pending.load(Ordering::SeqCst)
    }

    /// Events audit-svc refused as invalid (each logged at error level with
    /// its id); they are no longer pending.
    pub fn rejected(&self) -> u64 {
        self.shared.rejected.load(Ordering::SeqCst)
    }

    /// Registers this client's metrics in `metrics` (the queue is read at
    /// every scrape, without keeping it open).
    pub fn register_metrics(&self, metrics: &Metrics) {
        metrics.register_seconds(
            "agentsec_audit_client_append_duration",
            "AppendEvents calls to audit-svc, by gRPC status code (retries included)",
            self.shared.append_latency.clone(),
        );
        let shared = Arc::clone(&self.shared);
        let queue = self.queue.downgrade();
        let capacity = self.queue.max_capacity();
        metrics.register_scrape(move |scrape| {
            let queued = queue
                .upgrade()
                .map_or(0, |queue| capacity - queue.capacity());
            let count = |value: usize| i64::try_from(value).unwrap_or(i64::MAX);
            scrape.gauge(
                "agentsec_audit_client_queued_events",
                "Audit events waiting in the client's queue",
                count(queued),
            )?;
            scrape.gauge(
                "agentsec_audit_client_pending_events",
                "Audit events not yet acknowledged by audit-svc (queued or in flight)",
                count(shared.pending.load(Ordering::Relaxed)),
            )?;
            scrape.counter(
                "agentsec_audit_client_rejected_events",
                "Audit events audit-svc refused as invalid (not stored)",
                shared.rejected.load(Ordering::Relaxed),
            )?;
            scrape.counter(
                "agentsec_audit_client_queue_full",
                "Audit events refused because the queue was full (audit.when_full = \"fail\")",
                shared.queue_full.load(Ordering::Relaxed),
            )?;
            scrape.counter(
                "agentsec_audit_client_unflushed_events",
                "Audit events not acknowledged by audit-svc before the shutdown timeout (lost)",
                shared.unflushed.load(Ordering::Relaxed),
            )
        });
    }
}

/// Owns the background task; call [`AuditSender::shutdown`] before exit.
pub struct AuditSender {
    shared: Arc<Shared>,
    task: Option<JoinHandle<Result<(), AuditClientError>>>,
    shutdown_timeout: Duration,
}

impl fmt::Debug for AuditSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditSender")
            .field("pending", &self.shared.pending.load(Ordering::SeqCst))
            .field("shutdown_timeout", &self.shutdown_timeout)
            .finish()
    }
}

impl AuditSender {
    /// Stops accepting events (`record()` then returns `Closed`), sends
    /// everything queued, and returns once all are acknowledged or the
    /// shutdown timeout passes (then `Err(Unflushed { count })` and an error
    /// log naming the count and the first and last event ids).
    pub async fn shutdown(mut self) -> Result<(), AuditClientError> {
        let deadline = Instant::now() + self.shutdown_timeout;
        self.shared.closing.send_replace(Some(deadline));
        let Some(task) = self.task.take() else {
            return Ok(());
        };
        match task.await {
            Ok(result) => result,
            Err(join_error) => {
                // The task has no panicking code; this is a runtime shutting
                // down under us. Whatever was pending is lost: say so.
                let count = self.shared.pending.swap(0, Ordering::SeqCst);
                self.shared
                    .unflushed
                    .fetch_add(count as u64, Ordering::Relaxed);
                tracing::error!(
                    error = %join_error,
                    unflushed = count,
                    "audit sender task ended abnormally; pending audit events are lost"
                );
                Err(AuditClientError::Unflushed { count })
            }
        }
    }
}

impl Drop for AuditSender {
    fn drop(&mut self) {
        if self.task.is_some() {
            // The detached task keeps sending while the runtime runs, but
            // nothing waits for it: make the missed shutdown visible.
            tracing::warn!(
                pending = self.shared.pending.load(Ordering::SeqCst),
                "audit sender dropped without shutdown; pending audit events are sent only while the runtime keeps running"
            );
        }
    }
}

fn start_with_transport<T: AppendTransport>(
    config: &AuditClientConfig,
    transport: T,
) -> (AuditClient, AuditSender) {
    let (queue_sender, queue_receiver) = mpsc::channel(config.queue_capacity);
    let (closing_sender, closing_receiver) = watch::channel(None);
    let shared = Arc::new(Shared {
        pending: AtomicUsize::new(0),
        rejected: AtomicU64::new(0),
        queue_full: AtomicU64::new(0),
        unflushed: AtomicU64::new(0),
        append_latency: latency_family(),
        closing: closing_sender,
    });
    let worker = Worker {
        transport,
        queue: queue_receiver,
        closing: closing_receiver,
        deadline: None,
        carry: None,
        shared: Arc::clone(&shared),
        endpoint: config.endpoint.clone(),
        max_batch: config.max_batch,
        flush_interval: Duration::from_millis(config.flush_interval_ms),
        retry_initial_backoff_ms: config.retry_initial_backoff_ms,
        retry_max_backoff_ms: config.retry_max_backoff_ms,
        outage: None,
    };
    let task = tokio::spawn(worker.run());
    let client = AuditClient {
        queue: queue_sender,
        shared: Arc::clone(&shared),
        when_full: config.when_full,
    };
    let sender = AuditSender {
        shared,
        task: Some(task),
        shutdown_timeout: Duration::from_secs(config.shutdown_flush_timeout_secs),
    };
    (client, sender)
}

/// `validate_event` leaves the size to audit-svc (it checks the canonical
/// JSON bytes); refusing events whose protobuf encoding alone exceeds the
/// limit keeps the memory bound and the 4 MiB request limit honest. The
/// canonical JSON spells out every key and is larger than the protobuf
/// encoding for any realistic event, so this refuses nothing audit-svc would
/// accept; an event that passes here but not there is rejected and logged.
fn check_encoded_size(event: &Event) -> Result<(), EventError> {
    let size = event.encoded_len();
    if size > MAX_EVENT_BYTES {
        return Err(EventError {
            field: "event".to_owned(),
            reason: format!("encodes to {size} bytes, more than {MAX_EVENT_BYTES}"),
        });
    }
    Ok(())
}

/// Resolves with the deadline once shutdown has begun; never resolves if the
/// signal can no longer come.
async fn wait_for_closing(closing: &mut watch::Receiver<Option<Instant>>) -> Instant {
    let deadline = match closing.wait_for(Option::is_some).await {
        Ok(value) => *value,
        Err(_) => None,
    };
    match deadline {
        Some(deadline) => deadline,
        // The sender lives in `Shared`, which the waiter holds, so this is
        // unreachable in practice; waiting forever is the honest answer.
        None => std::future::pending().await,
    }
}

fn describe_error(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
