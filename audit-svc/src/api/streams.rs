//! The long-lived server streams: tail (backlog, then live) and export
//! (JSON lines in chunks). Each runs in its own task feeding a bounded
//! channel, and ends when the reader hangs up or the service shuts down.

use std::time::Duration;

use agentsec_proto::audit::v1::{ExportEventsResponse, TailEventsResponse};
use sea_orm::DatabaseConnection;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::Status;

use super::convert;
use crate::chain::scan::{scan, ScanPage, SCAN_PAGE};
use crate::domain::filter::{EventFilter, Order};
use crate::error::AuditError;

/// Export message size bound from the contract.
const EXPORT_CHUNK_BYTES: usize = 1 << 20;
/// How often a tail looks for events written by other replicas.
const TAIL_POLL: Duration = Duration::from_millis(500);

/// Matching events from `start` on, then live ones as they commit.
pub fn tail(
    db: DatabaseConnection,
    filter: EventFilter,
    start: u64,
    mut head: watch::Receiver<u64>,
    mut stopping: watch::Receiver<bool>,
) -> BoxStream<TailEventsResponse> {
    let (sender, receiver) = mpsc::channel(256);
    tokio::spawn(async move {
        let mut next = start;
        loop {
            let page = match read_after(&db, &filter, next, u64::MAX).await {
                Ok(page) => page,
                Err(err) => {
                    let _ = sender.send(Err(Status::from(err))).await;
                    return;
                }
            };
            // Past the blocks examined, even when none of their events
            // matched: the next poll does not read them again.
            next = page.resume;
            for record in page.records {
                let item = convert::stored_event(record)
                    .map(|event| TailEventsResponse { event: Some(event) })
                    .map_err(Status::from);
                if sender.send(item).await.is_err() {
                    return;
                }
            }
            if !page.exhausted {
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
    Box::pin(ReceiverStream::new(receiver))
}

/// Matching events of `start..=end` as JSON lines.
pub fn export(
    db: DatabaseConnection,
    filter: EventFilter,
    start: u64,
    end: u64,
    stopping: watch::Receiver<bool>,
) -> BoxStream<ExportEventsResponse> {
    let (sender, receiver) = mpsc::channel(8);
    tokio::spawn(async move {
        let mut next = start;
        let mut chunk = Vec::with_capacity(EXPORT_CHUNK_BYTES);
        while next <= end {
            if *stopping.borrow() {
                return;
            }
            let page = match read_after(&db, &filter, next, end).await {
                Ok(page) => page,
                Err(err) => {
                    let _ = sender.send(Err(Status::from(err))).await;
                    return;
                }
            };
            for record in &page.records {
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
            if page.exhausted {
                break;
            }
            next = page.resume;
        }
        if !chunk.is_empty() {
            let _ = sender.send(Ok(ExportEventsResponse { data: chunk })).await;
        }
    });
    Box::pin(ReceiverStream::new(receiver))
}

/// The next page of matching events of `from..=to`, oldest first.
async fn read_after(
    db: &DatabaseConnection,
    filter: &EventFilter,
    from: u64,
    to: u64,
) -> Result<ScanPage, AuditError> {
    Ok(scan(db, filter, Order::OldestFirst, from, to, SCAN_PAGE).await?)
}
