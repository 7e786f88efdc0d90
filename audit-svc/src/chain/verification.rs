//! Verification of a stored range of the chain: reads exact sequence
//! ranges ahead of the check, checks records on every core, links them in
//! order, and reports the first breakage.

use sea_orm::DatabaseConnection;

use crate::domain::verify::{check_record, Broken, ChainRecord, ChainVerifier, Failure, Verified};
use crate::domain::GENESIS_HASH;
use crate::error::AuditError;
use crate::store::queries::{self, SCAN_PAGE};

/// Pages read ahead of the one being checked.
const PAGES_AHEAD: usize = 2;

/// The resolved range and what verifying it found.
#[derive(Debug)]
pub struct VerifyReport {
    pub start: u64,
    pub end: u64,
    pub outcome: Result<Verified, Broken>,
}

/// Verifies `start..=end` (0 = from the first / to the head).
pub async fn verify_range(
    db: &DatabaseConnection,
    start: u64,
    end: u64,
) -> Result<VerifyReport, AuditError> {
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
        return Ok(VerifyReport {
            start,
            end,
            outcome: Ok(Verified::default()),
        });
    }
    let keys = agentsec_common::keys::store::all_keys(db).await?;
    let checkpoints = queries::checkpoints_in_range(db, start, end).await?;
    let broken_response = |broken: Broken| VerifyReport {
        start,
        end,
        outcome: Err(broken),
    };
    let expected_prev = if start == 1 {
        GENESIS_HASH
    } else {
        match queries::record_at(db, start - 1).await? {
            Some(record) => record.hash.as_slice().try_into().unwrap_or(GENESIS_HASH),
            None => {
                return Ok(broken_response(Broken {
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
        let records = page.await??;
        for (record, result) in check_in_parallel(records).await {
            if let Err(broken) = verifier.link(&record, result) {
                return Ok(broken_response(broken));
            }
        }
    }
    Ok(VerifyReport {
        start,
        end,
        outcome: verifier.finish(),
    })
}

type Checked = Vec<(ChainRecord, Result<(), Broken>)>;

/// Runs [`check_record`] (hashing and parsing) on every core; linking stays
/// sequential.
async fn check_in_parallel(records: Vec<ChainRecord>) -> Checked {
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
