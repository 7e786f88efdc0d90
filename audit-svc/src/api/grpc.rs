//! gRPC handlers of `agentsec.audit.v1.AuditService`: convert the request,
//! call the chain writer or the store, convert the answer.

use std::sync::Arc;

use agentsec_common::audit::MAX_BATCH_EVENTS;
use agentsec_proto::audit::v1::audit_service_server::AuditService;
use agentsec_proto::audit::v1::*;
use futures::stream::FuturesOrdered;
use futures::StreamExt as _;
use sea_orm::DatabaseConnection;
use tokio::sync::watch;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status, Streaming};

use super::auth::{Callers, Reader};
use super::{convert, streams};
use crate::chain::prepare::{prepare, PreparedEvent};
use crate::chain::scan::scan;
use crate::chain::verification;
use crate::chain::writer::{AppendOutcome, ChainWriter, WriteError};
use crate::domain::filter::Order;
use crate::error::AuditError;
use crate::store::queries;

type AppendReply = Result<Vec<AppendOutcome>, Arc<WriteError>>;

/// Append requests of one stream in flight at once.
const STREAM_PIPELINE: usize = 8;

pub struct AuditApi {
    db: DatabaseConnection,
    writer: ChainWriter,
    active_key_id: String,
    stopping: watch::Receiver<bool>,
    callers: Callers,
}

impl AuditApi {
    pub fn new(
        db: DatabaseConnection,
        writer: ChainWriter,
        active_key_id: String,
        stopping: watch::Receiver<bool>,
        callers: Callers,
    ) -> Self {
        Self {
            db,
            writer,
            active_key_id,
            stopping,
            callers,
        }
    }

    /// The request's filter, limited to what `reader` may see.
    fn readable_filter(
        reader: &Reader,
        filter: Option<EventFilter>,
    ) -> Result<crate::domain::filter::EventFilter, Status> {
        let mut filter = convert::filter(filter)?;
        filter.tenant = reader.limit(filter.tenant.take())?;
        Ok(filter)
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
        self.callers.appender(&request).await?;
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
        self.callers.appender(&request).await?;
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
        let reader = self.callers.reader(&request).await?;
        let request = request.into_inner();
        let filter = Self::readable_filter(&reader, request.filter)?;
        let (cursor, page) = convert::cursor(
            convert::order(request.order)?,
            request.page,
            &format!("events|{filter:?}"),
        )?;
        let (from, to) = match (cursor.order, cursor.after) {
            (_, None) => (1, u64::MAX),
            (Order::OldestFirst, Some(after)) => (after.saturating_add(1), u64::MAX),
            (Order::NewestFirst, Some(after)) => (1, after.saturating_sub(1)),
        };
        let records = scan(&self.db, &filter, cursor.order, from, to, cursor.limit)
            .await
            .map_err(AuditError::Read)?
            .records;
        let (records, next_page_token) =
            convert::finish_page(&page, records, |record| record.sequence);
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
        let reader = self.callers.reader(&request).await?;
        let request = request.into_inner();
        let filter = Self::readable_filter(&reader, request.filter)?;
        let head = self.writer.head();
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
        let stream = streams::tail(self.db.clone(), filter, start, head, self.stopping.clone());
        Ok(Response::new(stream))
    }

    async fn verify_chain(
        &self,
        request: Request<VerifyChainRequest>,
    ) -> Result<Response<VerifyChainResponse>, Status> {
        self.callers.reader(&request).await?;
        let request = request.into_inner();
        let report =
            verification::verify_range(&self.db, request.start_sequence, request.end_sequence)
                .await?;
        Ok(Response::new(convert::verify_response(report)))
    }

    async fn list_checkpoints(
        &self,
        request: Request<ListCheckpointsRequest>,
    ) -> Result<Response<ListCheckpointsResponse>, Status> {
        self.callers.reader(&request).await?;
        let request = request.into_inner();
        let (cursor, page) =
            convert::cursor(convert::order(request.order)?, request.page, "checkpoints")?;
        let checkpoints = queries::list_checkpoints(&self.db, &cursor)
            .await
            .map_err(AuditError::Read)?;
        let (checkpoints, next_page_token) =
            convert::finish_page(&page, checkpoints, |checkpoint| checkpoint.sequence);
        Ok(Response::new(ListCheckpointsResponse {
            checkpoints: checkpoints.into_iter().map(convert::checkpoint).collect(),
            page: Some(agentsec_proto::common::v1::PageResponse { next_page_token }),
        }))
    }

    async fn get_checkpoint(
        &self,
        request: Request<GetCheckpointRequest>,
    ) -> Result<Response<GetCheckpointResponse>, Status> {
        self.callers.reader(&request).await?;
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
            .map_err(AuditError::Keys)?;
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
        let reader = self.callers.reader(&request).await?;
        let request = request.into_inner();
        let filter = Self::readable_filter(&reader, request.filter)?;
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
        let stream = streams::export(self.db.clone(), filter, start, end, self.stopping.clone());
        Ok(Response::new(stream))
    }
}
