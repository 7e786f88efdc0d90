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
//! What can be lost: the queued and in-flight events, only if the process
//! dies, or if [`AuditSender::shutdown`] reaches its timeout while audit-svc
//! is still unreachable; in the latter case their count and the first and
//! last event ids are logged at error level and returned as `Unflushed`.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agentsec_proto::audit::v1::audit_service_client::AuditServiceClient;
use agentsec_proto::audit::v1::{AppendEventsRequest, AppendEventsResponse, Event};
use opentelemetry::trace::TraceContextExt as _;
use prost::Message as _;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::error::{TryRecvError, TrySendError};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::{validate_event, EventError, MAX_BATCH_EVENTS, MAX_EVENT_BYTES};
use crate::config::{check_http_url, ConfigError};
use crate::telemetry::{self, TraceContextInterceptor};
use crate::tls::ClientTls;
use crate::upstream::{authorized, TokenSource};

/// `audit.proto`: an `AppendEventsRequest` is at most 4 MiB, which is also
/// tonic's default decoding limit on the server.
const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
/// How long one TCP/HTTP2 connection attempt to audit-svc may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one `AppendEvents` call may take before it is retried; retrying a
/// call that did commit is harmless because appends are idempotent by id.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How the audit client reaches audit-svc and how much it buffers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditClientConfig {
    /// audit-svc base URL, e.g. `http://127.0.0.1:7404`.
    pub endpoint: String,
    /// Most events waiting in memory (not counting the batch in flight).
    pub queue_capacity: usize,
    /// Most events per `AppendEvents` call (at most 1,000).
    pub max_batch: usize,
    /// Longest wait for a batch to fill before a partial batch is sent.
    pub flush_interval_ms: u64,
    /// What `record()` does when the queue is full.
    pub when_full: WhenFull,
    /// First retry delay after a failed call; doubles on each further failure.
    pub retry_initial_backoff_ms: u64,
    /// Largest retry delay.
    pub retry_max_backoff_ms: u64,
    /// How long shutdown keeps sending queued events before it gives up.
    pub shutdown_flush_timeout_secs: u64,
    /// The audience of the service's token towards audit-svc (audit-svc's
    /// `audience`); the token holds `agentsec:audit:append`.
    pub audience: String,
}

impl Default for AuditClientConfig {
    fn default() -> Self {
        Self {
            endpoint: "http://127.0.0.1:7404".to_owned(),
            queue_capacity: 10_000,
            max_batch: 500,
            flush_interval_ms: 20,
            when_full: WhenFull::Wait,
            retry_initial_backoff_ms: 50,
            retry_max_backoff_ms: 5_000,
            shutdown_flush_timeout_secs: 30,
            audience: "agentsec-audit".to_owned(),
        }
    }
}

impl AuditClientConfig {
    /// Checks the values; errors name the key as `audit.<key>`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = check_http_url("audit.endpoint", &self.endpoint)?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(ConfigError::invalid("audit.endpoint", "must name a host"));
        }
        if !(1..=1_000_000).contains(&self.queue_capacity) {
            return Err(ConfigError::invalid(
                "audit.queue_capacity",
                "must be between 1 and 1000000",
            ));
        }
        if !(1..=MAX_BATCH_EVENTS).contains(&self.max_batch) {
            return Err(ConfigError::invalid(
                "audit.max_batch",
                format!("must be between 1 and {MAX_BATCH_EVENTS}"),
            ));
        }
        if self.flush_interval_ms > 60_000 {
            return Err(ConfigError::invalid(
                "audit.flush_interval_ms",
                "must be at most 60000",
            ));
        }
        if !(1..=60_000).contains(&self.retry_initial_backoff_ms) {
            return Err(ConfigError::invalid(
                "audit.retry_initial_backoff_ms",
                "must be between 1 and 60000",
            ));
        }
        if self.retry_max_backoff_ms < self.retry_initial_backoff_ms
            || self.retry_max_backoff_ms > 600_000
        {
            return Err(ConfigError::invalid(
                "audit.retry_max_backoff_ms",
                "must be at least audit.retry_initial_backoff_ms and at most 600000",
            ));
        }
        if !(1..=3_600).contains(&self.shutdown_flush_timeout_secs) {
            return Err(ConfigError::invalid(
                "audit.shutdown_flush_timeout_secs",
                "must be between 1 and 3600",
            ));
        }
        if self.audience.is_empty() || self.audience.len() > 256 {
            return Err(ConfigError::invalid(
                "audit.audience",
                "must be 1-256 chars",
            ));
        }
        Ok(())
    }
}

/// What `record()` does when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Wait for room: the caller is slowed down to audit-svc's pace.
    #[default]
    Wait,
    /// Return `QueueFull` at once, so the caller can fail its action closed.
    Fail,
}

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
                TrySendError::Full(()) => AuditClientError::QueueFull {
                    capacity: self.queue.max_capacity(),
                },
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

/// Sends one `AppendEvents` call. The tonic client in production, a fake in
/// tests. The future is `'static` so the task can race it against shutdown.
trait AppendTransport: Send + 'static {
    fn append(
        &self,
        request: AppendEventsRequest,
    ) -> impl Future<Output = Result<AppendEventsResponse, Status>> + Send + 'static;
}

/// The tonic client, with the service's bearer token.
struct GrpcTransport {
    client: GrpcAuditClient,
    tokens: Option<Arc<dyn TokenSource>>,
    /// The token audit-svc last refused: the next call asks for a new one.
    refused: Arc<std::sync::Mutex<Option<String>>>,
}

impl AppendTransport for GrpcTransport {
    fn append(
        &self,
        request: AppendEventsRequest,
    ) -> impl Future<Output = Result<AppendEventsResponse, Status>> + Send + 'static {
        // Cloning shares the channel (and its connection).
        let mut client = self.client.clone();
        let tokens = self.tokens.clone();
        let refused = Arc::clone(&self.refused);
        async move {
            let Some(tokens) = tokens else {
                return client
                    .append_events(request)
                    .await
                    .map(tonic::Response::into_inner);
            };
            let stale = refused
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .take();
            let token = tokens.token(stale.as_deref()).await?;
            let result = client
                .append_events(authorized(request, &token)?)
                .await
                .map(tonic::Response::into_inner);
            if matches!(&result, Err(status) if status.code() == Code::Unauthenticated) {
                *refused
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(token);
            }
            result
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

/// The retry delay before attempt `attempt + 1`: exponential from
/// `initial_ms`, capped at `max_ms`, with "equal jitter" (half fixed, half
/// random) so that many clients retrying after an audit-svc restart spread
/// out without any of them retrying in a tight loop.
fn backoff_delay(attempt: u32, initial_ms: u64, max_ms: u64, random: u64) -> Duration {
    let exponent = attempt.saturating_sub(1).min(63);
    let ceiling = initial_ms.saturating_mul(1_u64 << exponent).min(max_ms);
    let fixed = ceiling / 2;
    let jitter = random % (ceiling - fixed + 1);
    Duration::from_millis(fixed + jitter)
}

/// Events for one call, bounded by count and by encoded request size.
struct Batch {
    events: Vec<Event>,
    encoded_bytes: usize,
    max_events: usize,
}

impl Batch {
    fn new(max_events: usize) -> Self {
        Self {
            events: Vec::new(),
            encoded_bytes: 0,
            max_events,
        }
    }

    fn is_full(&self) -> bool {
        self.events.len() >= self.max_events
    }

    /// Adds `event`, or hands it back when it would overflow the batch. The
    /// first event always fits (events are at most 32 KiB).
    #[must_use = "an event that does not fit must be kept for the next batch"]
    fn push(&mut self, event: Event) -> Option<Event> {
        let length = event.encoded_len();
        // Field 1 of AppendEventsRequest: one key byte, the varint length,
        // then the event.
        let framed = 1 + prost::encoding::encoded_len_varint(length as u64) + length;
        let overflows = self.is_full() || self.encoded_bytes + framed > MAX_REQUEST_BYTES;
        if overflows && !self.events.is_empty() {
            return Some(event);
        }
        self.encoded_bytes += framed;
        self.events.push(event);
        None
    }
}

/// The outcome of sending one batch with retries.
enum Sent {
    Acknowledged,
    /// audit-svc answered INVALID_ARGUMENT; not retried as is.
    Refused(Box<Status>),
    /// The shutdown deadline passed before an acknowledgment.
    Stopped,
}

/// What interrupted a wait in the task.
enum Interruption {
    ShutdownBegan(Instant),
    DeadlinePassed,
}

/// The start of the current run of failed calls, for the recovery log.
struct Outage {
    since: Instant,
    failed_calls: u64,
}

/// The background task: one batch in flight at a time, in queue order.
struct Worker<T> {
    transport: T,
    queue: mpsc::Receiver<Event>,
    closing: watch::Receiver<Option<Instant>>,
    /// Set once shutdown has begun (the queue is then closed).
    deadline: Option<Instant>,
    /// An event taken off the queue that did not fit the previous batch.
    carry: Option<Event>,
    shared: Arc<Shared>,
    endpoint: String,
    max_batch: usize,
    flush_interval: Duration,
    retry_initial_backoff_ms: u64,
    retry_max_backoff_ms: u64,
    outage: Option<Outage>,
}

impl<T: AppendTransport> Worker<T> {
    async fn run(mut self) -> Result<(), AuditClientError> {
        while let Some(batch) = self.next_batch().await {
            if let Err(unsent) = self.deliver(batch).await {
                return Err(self.give_up(unsent).await);
            }
        }
        Ok(())
    }

    fn begin_shutdown(&mut self, deadline: Instant) {
        self.deadline = Some(deadline);
        // Refuses new events but keeps the queued ones for us to drain.
        self.queue.close();
    }

    /// Waits for shutdown to begin (before it has) or for its deadline.
    fn interruption(&mut self) -> impl Future<Output = Interruption> + '_ {
        let deadline = self.deadline;
        let closing = &mut self.closing;
        async move {
            match deadline {
                Some(deadline) => {
                    sleep_until(deadline).await;
                    Interruption::DeadlinePassed
                }
                None => Interruption::ShutdownBegan(wait_for_closing(closing).await),
            }
        }
    }

    /// The next batch: waits for a first event, then up to `flush_interval`
    /// for the batch to fill. `None` once the queue is closed and empty.
    async fn next_batch(&mut self) -> Option<Vec<Event>> {
        let mut batch = Batch::new(self.max_batch);
        let first = match self.carry.take() {
            Some(event) => event,
            None => self.first_event().await?,
        };
        // The first event always fits; kept for the next batch if not.
        if let Some(event) = batch.push(first) {
            self.carry = Some(event);
        }
        let fill_deadline = Instant::now() + self.flush_interval;
        while !batch.is_full() {
            let received = match self.queue.try_recv() {
                Ok(event) => Some(event),
                Err(TryRecvError::Disconnected) => None,
                // Closed but a sender holds a permit: its event comes at once.
                Err(TryRecvError::Empty) if self.deadline.is_some() => self.queue.recv().await,
                Err(TryRecvError::Empty) => {
                    tokio::select! {
                        received = self.queue.recv() => received,
                        () = sleep_until(fill_deadline) => break,
                        closing = wait_for_closing(&mut self.closing) => {
                            self.begin_shutdown(closing);
                            continue;
                        }
                    }
                }
            };
            let Some(event) = received else {
                break;
            };
            if let Some(event) = batch.push(event) {
                self.carry = Some(event);
                break;
            }
        }
        Some(batch.events)
    }

    async fn first_event(&mut self) -> Option<Event> {
        loop {
            if self.deadline.is_some() {
                // The queue is closed: this returns at once.
                return self.queue.recv().await;
            }
            tokio::select! {
                received = self.queue.recv() => return received,
                closing = wait_for_closing(&mut self.closing) => self.begin_shutdown(closing),
            }
        }
    }

    /// Sends `events` until acknowledged; on INVALID_ARGUMENT resends them
    /// one by one so that only the events audit-svc refuses are rejected.
    /// `Err` hands back the events not acknowledged by the deadline.
    async fn deliver(&mut self, events: Vec<Event>) -> Result<(), Vec<Event>> {
        let status = match self.send_with_retry(&events).await {
            Sent::Acknowledged => {
                self.acknowledge(events.len());
                return Ok(());
            }
            Sent::Stopped => return Err(events),
            Sent::Refused(status) => status,
        };
        if let [event] = events.as_slice() {
            self.reject(event, &status);
            return Ok(());
        }
        // Events were validated before queueing, so this is a contract
        // mismatch between client and audit-svc; find the culprits.
        tracing::error!(
            batch_size = events.len(),
            first_event_id = %first_id(&events),
            last_event_id = %last_id(&events),
            status = %status.message(),
            "audit-svc refused a batch of validated audit events; resending them one by one"
        );
        let mut remaining = events.into_iter();
        while let Some(event) = remaining.next() {
            match self.send_with_retry(std::slice::from_ref(&event)).await {
                Sent::Acknowledged => self.acknowledge(1),
                Sent::Refused(status) => self.reject(&event, &status),
                Sent::Stopped => {
                    let mut unsent = vec![event];
                    unsent.extend(remaining);
                    return Err(unsent);
                }
            }
        }
        Ok(())
    }

    fn acknowledge(&self, count: usize) {
        self.shared.pending.fetch_sub(count, Ordering::SeqCst);
    }

    fn reject(&self, event: &Event, status: &Status) {
        tracing::error!(
            event_id = %event.id,
            status = %status.message(),
            "audit-svc refused an audit event as invalid; it is not stored"
        );
        self.shared.rejected.fetch_add(1, Ordering::SeqCst);
        self.shared.pending.fetch_sub(1, Ordering::SeqCst);
    }

    /// Sends the same events (same ids) until audit-svc answers, retrying
    /// every error but INVALID_ARGUMENT with backoff, until the shutdown
    /// deadline.
    async fn send_with_retry(&mut self, events: &[Event]) -> Sent {
        let mut attempt: u32 = 0;
        loop {
            if self
                .deadline
                .is_some_and(|deadline| Instant::now() >= deadline)
            {
                return Sent::Stopped;
            }
            let span = append_span(events);
            let call = self
                .transport
                .append(AppendEventsRequest {
                    events: events.to_vec(),
                })
                .instrument(span.clone());
            tokio::pin!(call);
            let result = loop {
                tokio::select! {
                    result = &mut call => break result,
                    interruption = self.interruption() => match interruption {
                        Interruption::ShutdownBegan(deadline) => self.begin_shutdown(deadline),
                        Interruption::DeadlinePassed => return Sent::Stopped,
                    },
                }
            };
            telemetry::record_grpc_status(
                &span,
                result.as_ref().map_or_else(Status::code, |_| Code::Ok),
                false,
            );
            let status = match result {
                Ok(response) => {
                    self.note_recovery();
                    if response.results.len() != events.len() {
                        // The call succeeded, so audit-svc committed the
                        // batch; only its report is off.
                        tracing::warn!(
                            batch_size = events.len(),
                            results = response.results.len(),
                            first_event_id = %first_id(events),
                            "audit-svc acknowledged a batch with a result count that differs from its size"
                        );
                    }
                    return Sent::Acknowledged;
                }
                Err(status) if status.code() == Code::InvalidArgument => {
                    self.note_recovery();
                    return Sent::Refused(Box::new(status));
                }
                Err(status) => status,
            };
            attempt = attempt.saturating_add(1);
            let outage = self.outage.get_or_insert(Outage {
                since: Instant::now(),
                failed_calls: 0,
            });
            outage.failed_calls += 1;
            // Jitter is best effort: without OS randomness the delay is just
            // the fixed half.
            let random = getrandom::u64().unwrap_or(0);
            let backoff = backoff_delay(
                attempt,
                self.retry_initial_backoff_ms,
                self.retry_max_backoff_ms,
                random,
            );
            tracing::warn!(
                attempt,
                backoff_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX),
                code = ?status.code(),
                status = %status.message(),
                endpoint = %self.endpoint,
                batch_size = events.len(),
                first_event_id = %first_id(events),
                "audit append failed; retrying the same batch"
            );
            let wake_at = Instant::now() + backoff;
            loop {
                tokio::select! {
                    () = sleep_until(wake_at) => break,
                    interruption = self.interruption() => match interruption {
                        Interruption::ShutdownBegan(deadline) => self.begin_shutdown(deadline),
                        Interruption::DeadlinePassed => return Sent::Stopped,
                    },
                }
            }
        }
    }

    fn note_recovery(&mut self) {
        if let Some(outage) = self.outage.take() {
            tracing::info!(
                endpoint = %self.endpoint,
                failed_calls = outage.failed_calls,
                outage_ms = u64::try_from(outage.since.elapsed().as_millis()).unwrap_or(u64::MAX),
                "audit-svc reachable again; sending resumed"
            );
        }
    }

    /// After the deadline: collects every event not acknowledged (the
    /// unsent batch, the held-back event, the rest of the queue), logs their
    /// count and first and last ids, and uncounts them from `pending`.
    async fn give_up(&mut self, mut unsent: Vec<Event>) -> AuditClientError {
        unsent.extend(self.carry.take());
        // The queue is closed by now (a deadline implies shutdown began).
        self.queue.close();
        loop {
            match self.queue.try_recv() {
                Ok(event) => unsent.push(event),
                Err(TryRecvError::Disconnected) => break,
                // A sender holds a permit and is about to send: take it too.
                Err(TryRecvError::Empty) => tokio::task::yield_now().await,
            }
        }
        let count = unsent.len();
        tracing::error!(
            unflushed = count,
            first_event_id = %first_id(&unsent),
            last_event_id = %last_id(&unsent),
            endpoint = %self.endpoint,
            "audit-svc did not acknowledge these audit events before the shutdown timeout; they are lost"
        );
        self.shared.pending.fetch_sub(count, Ordering::SeqCst);
        AuditClientError::Unflushed { count }
    }
}

/// The full name of the method that appends events.
const APPEND_METHOD: &str = "agentsec.audit.v1.AuditService/AppendEvents";
/// OpenTelemetry's default limit of links per span.
const MAX_LINKS: usize = 128;

/// The client span of one AppendEvents call, in the trace context of the
/// service that sent the events. A batch whose events all come from one
/// trace continues it, as a child of its first event's span, so the append
/// and audit-svc's handling of it show up in the trace of the action they
/// record; a batch mixing traces starts a trace of its own and links to
/// each event's span rather than join whichever came first.
fn append_span(events: &[Event]) -> tracing::Span {
    let span = telemetry::grpc_client_span(APPEND_METHOD);
    if span.is_disabled() {
        return span;
    }
    let service = events
        .first()
        .map(|event| event.service.clone())
        .unwrap_or_default();
    let causes: Vec<_> = events
        .iter()
        .filter_map(|event| telemetry::remote_span_context(&event.trace_id, &event.span_id))
        .collect();
    let one_trace = causes.len() == events.len()
        && causes
            .windows(2)
            .all(|pair| pair[0].trace_id() == pair[1].trace_id());
    let mut parent = telemetry::service_context(service);
    match causes.first() {
        Some(first) if one_trace => parent = parent.with_remote_span_context(first.clone()),
        _ => {
            let mut linked: Vec<&opentelemetry::trace::SpanContext> = Vec::new();
            for cause in &causes {
                if linked.len() == MAX_LINKS {
                    break;
                }
                if !linked.contains(&cause) {
                    linked.push(cause);
                    span.add_link(cause.clone());
                }
            }
        }
    }
    // Fails only when no OpenTelemetry layer is installed.
    let _ = span.set_parent(parent);
    span.set_attribute("agentsec.audit.batch_size", events.len() as i64);
    span
}

fn first_id(events: &[Event]) -> &str {
    events
        .first()
        .map(|event| event.id.as_str())
        .unwrap_or_default()
}

fn last_id(events: &[Event]) -> &str {
    events
        .last()
        .map(|event| event.id.as_str())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
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
            serde_json::from_str(r#"{"endpoint": "http://audit:7404", "when_full": "fail"}"#)
                .unwrap();
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

        let err = sender.shutdown().await.unwrap_err();
        assert!(
            matches!(err, AuditClientError::Unflushed { count: 7 }),
            "{err:?}"
        );
        assert_eq!(client.pending(), 0);
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
}
