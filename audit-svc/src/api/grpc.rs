//! gRPC handlers of `agentsec.audit.v1.AuditService`: convert the request,
//! call the chain writer or the store, convert the answer.

use std::sync::Arc;
use std::time::Duration;

use agentsec_common::audit::MAX_BATCH_EVENTS;
use agentsec_proto::audit::v1::audit_service_server::AuditService;
use agentsec_proto::audit::v1::*;
use futures::stream::FuturesOrdered;
use futures::StreamExt as _;
use sea_orm::DatabaseConnection;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status, Streaming};

use super::convert;
use crate::chain::prepare::{prepare, PreparedEvent};
use crate::chain::writer::{AppendOutcome, ChainWriter, WriteError};
use crate::domain::filter::{EventFilter, Order, PageCursor};
use crate::domain::verify::{check_record, ChainVerifier, Failure};
use crate::domain::GENESIS_HASH;
use crate::error::AuditError;
use crate::store::queries;

type AppendReply = Result<Vec<AppendOutcome>, Arc<WriteError>>;

/// Rows read per round trip by verification, tail and export.
const SCAN_PAGE: u64 = 5_000;
/// Pages verification reads ahead of the one it checks.
const PAGES_AHEAD: usize = 2;
/// Export message size bound from the contract.
const EXPORT_CHUNK_BYTES: usize = 1 << 20;
/// Append requests of one stream in flight at once.
const STREAM_PIPELINE: usize = 8;
/// How often a tail looks for events written by other replicas.
const TAIL_POLL: Duration = Duration::from_millis(500);

pub struct AuditApi {
    db: DatabaseConnection,
    writer: ChainWriter,
    active_key_id: String,
    stopping: watch::Receiver<bool>,
}

impl AuditApi {
    pub fn new(
        db: DatabaseConnection,
        writer: ChainWriter,
        active_key_id: String,
        stopping: watch::Receiver<bool>,
    ) -> Self {
        Self {
            db,
            writer,
            active_key_id,
            stopping,
        }
    }
}

fn prepare_batch(events: Vec<Event>) -> Result<Vec<PreparedEvent>, AuditError> {
    if events.is_empty() {
        return Err(AuditError::invalid(
            "events",
            "must hold at least one event",
        ));
    }
    if events.len() > MAX_BATCH_EVENTS {
        return Err(AuditError::invalid(
            "events",
            format!("must hold at most {MAX_BATCH_EVENTS} events"),
        ));
    }
    events
        .into_iter()
        .enumerate()
        .map(|(index, event)| prepare(index, event))
        .collect()
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    async fn append_events(
        &self,
        request: Request<AppendEventsRequest>,
    ) -> Result<Response<AppendEventsResponse>, Status> {
        let events = prepare_batch(request.into_inner().events)?;
        let outcomes = self
            .writer
            .append(events)
            .await
            .map_err(AuditError::Write)?;
        let results = outcomes
            .into_iter()
            .map(|outcome| AppendResult {
                event_id: outcome.event_id,
                sequence: outcome.sequence,
                duplicate: outcome.duplicate,
            })
            .collect();
        Ok(Response::new(AppendEventsResponse { results }))
    }

    async fn append_event_stream(
        &self,
        request: Request<Streaming<AppendEventStreamRequest>>,
    ) -> Result<Response<AppendEventStreamResponse>, Status> {
        let mut stream = request.into_inner();
        let mut in_flight: FuturesOrdered<futures::future::BoxFuture<'static, AppendReply>> =
            FuturesOrdered::new();
        let mut summary = AppendEventStreamResponse::default();
        let mut absorb = |outcomes: Vec<AppendOutcome>| {
            for outcome in outcomes {
                if outcome.duplicate {
                    summary.duplicate_count += 1;
                } else {
                    summary.appended_count += 1;
                    summary.last_sequence = summary.last_sequence.max(outcome.sequence);
                }
            }
        };
        // Pipeline: keep reading while earlier messages wait for their
        // group commit, so one stream fills groups by itself.
        loop {
            if in_flight.len() >= STREAM_PIPELINE {
                if let Some(result) = in_flight.next().await {
                    absorb(result.map_err(AuditError::Write)?);
                }
                continue;
            }
            match stream.message().await? {
                Some(message) => {
                    let events = prepare_batch(message.events)?;
                    let writer = self.writer.clone();
                    in_flight.push_back(Box::pin(async move { writer.append(events).await }));
                }
                None => break,
            }
        }
        while let Some(result) = in_flight.next().await {
            absorb(result.map_err(AuditError::Write)?);
        }
        Ok(Response::new(summary))
    }

    async fn query_events(
        &self,
        request: Request<QueryEventsRequest>,
    ) -> Result<Response<QueryEventsResponse>, Status> {
        let request = request.into_inner();
        let filter = convert::filter(request.filter)?;
        let cursor = convert::cursor(convert::order(request.order)?, request.page)?;
        let records = queries::query_records(&self.db, &filter, &cursor, None)
            .await
            .map_err(AuditError::Read)?;
        let next_page_token = convert::next_token(
            records.len(),
            cursor.limit,
            records.last().map(|r| r.sequence),
        );
        let events = records
            .into_iter()
            .map(convert::stored_event)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Response::new(QueryEventsResponse {
            events,
            page: Some(agentsec_proto::common::v1::PageResponse { next_page_token }),
        }))
    }

    type TailEventsStream = BoxStream<TailEventsResponse>;

    async fn tail_events(
        &self,
        request: Request<TailEventsRequest>,
    ) -> Result<Response<Self::TailEventsStream>, Status> {
        let request = request.into_inner();
        let filter = convert::filter(request.filter)?;
        let mut head = self.writer.head();
        let start = match request.start_sequence {
            0 => {
                queries::head(&self.db)
                    .await
                    .map_err(AuditError::Read)?
                    .map(|(s, _)| s)
                    .unwrap_or(0)
                    + 1
            }
            n => n,
        };
        let (sender, receiver) = mpsc::channel(256);
        let db = self.db.clone();
        let mut stopping = self.stopping.clone();
        tokio::spawn(async move {
            let mut next = start;
            loop {
                let page = read_after(&db, &filter, next).await;
                let records = match page {
                    Ok(records) => records,
                    Err(err) => {
                        let _ = sender.send(Err(Status::from(err))).await;
                        return;
                    }
                };
                let full_page = records.len() as u64 == SCAN_PAGE;
                for record in records {
                    next = record.sequence + 1;
                    let item = convert::stored_event(record)
                        .map(|event| TailEventsResponse { event: Some(event) })
                        .map_err(Status::from);
                    if sender.send(item).await.is_err() {
                        return;
                    }
                }
                if full_page {
                    continue;
                }
                // Wake on this replica's commits, or poll for other replicas'.
                tokio::select! {
                    changed = head.changed() => if changed.is_err() { return; },
                    () = tokio::time::sleep(TAIL_POLL) => {},
                    () = sender.closed() => return,
                    _ = stopping.wait_for(|stopping| *stopping) => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn verify_chain(
        &self,
        request: Request<VerifyChainRequest>,
    ) -> Result<Response<VerifyChainResponse>, Status> {
        let request = request.into_inner();
        Ok(Response::new(
            verify(&self.db, request.start_sequence, request.end_sequence).await?,
        ))
    }

    async fn list_checkpoints(
        &self,
        request: Request<ListCheckpointsRequest>,
    ) -> Result<Response<ListCheckpointsResponse>, Status> {
        let request = request.into_inner();
        let cursor = convert::cursor(convert::order(request.order)?, request.page)?;
        let checkpoints = queries::list_checkpoints(&self.db, &cursor)
            .await
            .map_err(AuditError::Read)?;
        let next_page_token = convert::next_token(
            checkpoints.len(),
            cursor.limit,
            checkpoints.last().map(|c| c.sequence),
        );
        Ok(Response::new(ListCheckpointsResponse {
            checkpoints: checkpoints.into_iter().map(convert::checkpoint).collect(),
            page: Some(agentsec_proto::common::v1::PageResponse { next_page_token }),
        }))
    }

    async fn get_checkpoint(
        &self,
        request: Request<GetCheckpointRequest>,
    ) -> Result<Response<GetCheckpointResponse>, Status> {
        let sequence = request.into_inner().sequence;
        let wanted = (sequence != 0).then_some(sequence);
        let checkpoint = queries::checkpoint_at(&self.db, wanted)
            .await
            .map_err(AuditError::Read)?
            .ok_or_else(|| AuditError::NotFound {
                what: wanted.map_or_else(|| "latest".to_owned(), |s| s.to_string()),
            })?;
        Ok(Response::new(GetCheckpointResponse {
            checkpoint: Some(convert::checkpoint(checkpoint)),
        }))
    }

    async fn get_verification_keys(
        &self,
        _request: Request<GetVerificationKeysRequest>,
    ) -> Result<Response<GetVerificationKeysResponse>, Status> {
        // Read per call: another replica may have stored a key since start.
        let keys = agentsec_common::keys::store::all_keys(&self.db)
            .await
            .map_err(|err| AuditError::Read(sea_orm::DbErr::Custom(err.to_string())))?;
        Ok(Response::new(GetVerificationKeysResponse {
            jwks: Some((&keys).into()),
            active_key_id: self.active_key_id.clone(),
        }))
    }

    type ExportEventsStream = BoxStream<ExportEventsResponse>;

    async fn export_events(
        &self,
        request: Request<ExportEventsRequest>,
    ) -> Result<Response<Self::ExportEventsStream>, Status> {
        let request = request.into_inner();
        let filter = convert::filter(request.filter)?;
        let head = queries::head(&self.db)
            .await
            .map_err(AuditError::Read)?
            .map(|(s, _)| s)
            .unwrap_or(0);
        let start = request.start_sequence.max(1);
        let end = match request.end_sequence {
            0 => head,
            n => n,
        };
        if end < start && request.end_sequence != 0 {
            return Err(AuditError::invalid("end_sequence", "is before start_sequence").into());
        }
        let (sender, receiver) = mpsc::channel(8);
        let db = self.db.clone();
        tokio::spawn(async move {
            let mut next = start;
            let mut chunk = Vec::with_capacity(EXPORT_CHUNK_BYTES);
            while next <= end {
                let records = match read_after(&db, &filter, next).await {
                    Ok(records) => records,
                    Err(err) => {
                        let _ = sender.send(Err(Status::from(err))).await;
                        return;
                    }
                };
                let exhausted = records.len() as u64 != SCAN_PAGE;
                for record in records.iter().take_while(|r| r.sequence <= end) {
                    let before = chunk.len();
                    convert::export_line(record, &mut chunk);
                    if chunk.len() > EXPORT_CHUNK_BYTES {
                        let rest = chunk.split_off(before);
                        let full = std::mem::replace(&mut chunk, rest);
                        if sender
                            .send(Ok(ExportEventsResponse { data: full }))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
                match records.last() {
                    Some(last) if !exhausted => next = last.sequence + 1,
                    _ => break,
                }
            }
            if !chunk.is_empty() {
                let _ = sender.send(Ok(ExportEventsResponse { data: chunk })).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}

/// The next page of matching records with sequence >= `from`, oldest first.
async fn read_after(
    db: &DatabaseConnection,
    filter: &EventFilter,
    from: u64,
) -> Result<Vec<crate::domain::verify::ChainRecord>, AuditError> {
    let cursor = PageCursor {
        order: Order::OldestFirst,
        after: None,
        limit: SCAN_PAGE,
    };
    Ok(queries::query_records(db, filter, &cursor, Some(from)).await?)
}

/// Verifies `start..=end` (0 = from the first / to the head).
async fn verify(
    db: &DatabaseConnection,
    start: u64,
    end: u64,
) -> Result<VerifyChainResponse, AuditError> {
    let stored_head = queries::head(db).await?.map(|(s, _)| s).unwrap_or(0);
    // A checkpoint above the stored head proves that the newest events were
    // deleted: verify up to it, so the gap is reported.
    let head = stored_head.max(queries::last_checkpoint_sequence(db).await?);
    let start = start.max(1);
    let end = match end {
        0 => head,
        beyond if beyond > head => {
            return Err(AuditError::invalid(
                "end_sequence",
                format!("is beyond the head of the chain ({head})"),
            ))
        }
        explicit if explicit < start => {
            return Err(AuditError::invalid(
                "end_sequence",
                "is before start_sequence",
            ))
        }
        explicit => explicit,
    };
    if end < start {
        // An empty chain: nothing to verify.
        return Ok(VerifyChainResponse {
            ok: true,
            start_sequence: start,
            end_sequence: end,
            ..VerifyChainResponse::default()
        });
    }
    let keys = agentsec_common::keys::store::all_keys(db)
        .await
        .map_err(|err| AuditError::Read(sea_orm::DbErr::Custom(err.to_string())))?;
    let checkpoints = queries::checkpoints_in_range(db, start, end).await?;
    let broken_response = |broken: crate::domain::verify::Broken| VerifyChainResponse {
        ok: false,
        start_sequence: start,
        end_sequence: end,
        first_broken_sequence: broken.sequence,
        failure: failure_value(broken.failure) as i32,
        reason: broken.reason,
        ..VerifyChainResponse::default()
    };
    let expected_prev = if start == 1 {
        GENESIS_HASH
    } else {
        match queries::record_at(db, start - 1).await? {
            Some(record) => record.hash.as_slice().try_into().unwrap_or(GENESIS_HASH),
            None => {
                return Ok(broken_response(crate::domain::verify::Broken {
                    sequence: start - 1,
                    failure: Failure::SequenceGap,
                    reason: format!("sequence {} is missing: an event was deleted", start - 1),
                }))
            }
        }
    };
    let mut verifier = ChainVerifier::new(start, end, expected_prev, checkpoints, &keys);
    // Pages are exact sequence ranges (no LIMIT: the planner then always
    // walks the primary key). Reads run ahead of the check on their own
    // connections, so the database and the hashing overlap.
    let read_page = |from: u64| {
        let db = db.clone();
        let to = end.min(from.saturating_add(SCAN_PAGE - 1));
        tokio::spawn(async move { queries::records_in_range(&db, from, to).await })
    };
    let mut next_page = start;
    let mut reading = std::collections::VecDeque::new();
    loop {
        while reading.len() < PAGES_AHEAD && next_page <= end {
            reading.push_back(read_page(next_page));
            next_page = next_page.saturating_add(SCAN_PAGE);
        }
        let Some(page) = reading.pop_front() else {
            break;
        };
        let records = page
            .await
            .map_err(|err| AuditError::Read(sea_orm::DbErr::Custom(err.to_string())))??;
        for (record, result) in check_in_parallel(records).await {
            if let Err(broken) = verifier.link(&record, result) {
                return Ok(broken_response(broken));
            }
        }
    }
    match verifier.finish() {
        Ok(verified) => Ok(VerifyChainResponse {
            ok: true,
            start_sequence: start,
            end_sequence: end,
            events_verified: verified.events,
            checkpoints_verified: verified.checkpoints,
            ..VerifyChainResponse::default()
        }),
        Err(broken) => Ok(broken_response(broken)),
    }
}

type Checked = Vec<(
    crate::domain::verify::ChainRecord,
    Result<(), crate::domain::verify::Broken>,
)>;

/// Runs [`check_record`] (hashing and parsing) on every core; linking stays
/// sequential.
async fn check_in_parallel(records: Vec<crate::domain::verify::ChainRecord>) -> Checked {
    let workers = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
        .max(1);
    let chunk_len = records.len().div_ceil(workers).max(1);
    let mut chunks = Vec::new();
    let mut rest = records;
    while !rest.is_empty() {
        let tail = rest.split_off(chunk_len.min(rest.len()));
        chunks.push(std::mem::replace(&mut rest, tail));
    }
    let handles: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            tokio::task::spawn_blocking(move || {
                chunk
                    .into_iter()
                    .map(|record| {
                        let result = check_record(&record);
                        (record, result)
                    })
                    .collect::<Checked>()
            })
        })
        .collect();
    let mut checked = Vec::new();
    for handle in handles {
        match handle.await {
            Ok(part) => checked.extend(part),
            // A panicking check is a bug; fail verification rather than pass.
            Err(err) => tracing::error!(error = %err, "verification worker failed"),
        }
    }
    checked
}

fn failure_value(failure: Failure) -> VerifyFailure {
    match failure {
        Failure::HashMismatch => VerifyFailure::HashMismatch,
        Failure::PrevHashMismatch => VerifyFailure::PrevHashMismatch,
        Failure::SequenceGap => VerifyFailure::SequenceGap,
        Failure::CheckpointMismatch => VerifyFailure::CheckpointMismatch,
        Failure::CheckpointSignatureInvalid => VerifyFailure::CheckpointSignatureInvalid,
    }
}
