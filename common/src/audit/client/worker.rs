//! The background task: takes events off the queue in order, sends them
//! in batches bounded by count and request size, retries a failing batch
//! with backoff until audit-svc acknowledges it, and flushes at shutdown.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use agentsec_proto::audit::v1::{AppendEventsRequest, Event};
use prost::Message as _;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};
use tonic::{Code, Status};
use tracing::Instrument as _;

use super::transport::append_span;
use super::*;
use crate::metrics::requests::grpc_code_label;
use crate::telemetry;

/// `audit.proto`: an `AppendEventsRequest` is at most 4 MiB, which is also
/// tonic's default decoding limit on the server.
pub(super) const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// The retry delay before attempt `attempt + 1`: exponential from
/// `initial_ms`, capped at `max_ms`, with "equal jitter" (half fixed, half
/// random) so that many clients retrying after an audit-svc restart spread
/// out without any of them retrying in a tight loop.
pub(super) fn backoff_delay(attempt: u32, initial_ms: u64, max_ms: u64, random: u64) -> Duration {
    let exponent = attempt.saturating_sub(1).min(63);
    let ceiling = initial_ms.saturating_mul(1_u64 << exponent).min(max_ms);
    let fixed = ceiling / 2;
    let jitter = random % (ceiling - fixed + 1);
    Duration::from_millis(fixed + jitter)
}

/// Events for one call, bounded by count and by encoded request size.
pub(super) struct Batch {
    pub(super) events: Vec<Event>,
    pub(super) encoded_bytes: usize,
    pub(super) max_events: usize,
}

impl Batch {
    pub(super) fn new(max_events: usize) -> Self {
        Self {
            events: Vec::new(),
            encoded_bytes: 0,
            max_events,
        }
    }

    pub(super) fn is_full(&self) -> bool {
        self.events.len() >= self.max_events
    }

    /// Adds `event`, or hands it back when it would overflow the batch. The
    /// first event always fits (events are at most 32 KiB).
    #[must_use = "an event that does not fit must be kept for the next batch"]
    pub(super) fn push(&mut self, event: Event) -> Option<Event> {
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
pub(super) enum Sent {
    Acknowledged,
    /// audit-svc answered INVALID_ARGUMENT; not retried as is.
    Refused(Box<Status>),
    /// The shutdown deadline passed before an acknowledgment.
    Stopped,
}

/// What interrupted a wait in the task.
pub(super) enum Interruption {
    ShutdownBegan(Instant),
    DeadlinePassed,
}

/// The start of the current run of failed calls, for the recovery log.
pub(super) struct Outage {
    since: Instant,
    failed_calls: u64,
}

/// The background task: one batch in flight at a time, in queue order.
pub(super) struct Worker<T> {
    pub(super) transport: T,
    pub(super) queue: mpsc::Receiver<Event>,
    pub(super) closing: watch::Receiver<Option<Instant>>,
    /// Set once shutdown has begun (the queue is then closed).
    pub(super) deadline: Option<Instant>,
    /// An event taken off the queue that did not fit the previous batch.
    pub(super) carry: Option<Event>,
    pub(super) shared: Arc<Shared>,
    pub(super) endpoint: String,
    pub(super) max_batch: usize,
    pub(super) flush_interval: Duration,
    pub(super) retry_initial_backoff_ms: u64,
    pub(super) retry_max_backoff_ms: u64,
    pub(super) outage: Option<Outage>,
}

impl<T: AppendTransport> Worker<T> {
    pub(super) async fn run(mut self) -> Result<(), AuditClientError> {
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
            let started = Instant::now();
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
            let code = result.as_ref().map_or_else(Status::code, |_| Code::Ok);
            telemetry::record_grpc_status(&span, code, false);
            self.shared
                .append_latency
                .get_or_create(&[("code", grpc_code_label(code))])
                .observe(started.elapsed().as_secs_f64());
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
        self.shared
            .unflushed
            .fetch_add(count as u64, Ordering::Relaxed);
        AuditClientError::Unflushed { count }
    }
}

pub(super) fn first_id(events: &[Event]) -> &str {
    events
        .first()
        .map(|event| event.id.as_str())
        .unwrap_or_default()
}

pub(super) fn last_id(events: &[Event]) -> &str {
    events
        .last()
        .map(|event| event.id.as_str())
        .unwrap_or_default()
}
