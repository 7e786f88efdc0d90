//! Verification of a stored range of the chain: reads the blocks of
//! sequence spans ahead of the check, checks blocks on every core, links
//! them in order, and reports the first breakage.

use sea_orm::DatabaseConnection;

use crate::domain::block::{Block, BlockSummary, MAX_BLOCK_EVENTS};
use crate::domain::verify::{check_block, Broken, ChainVerifier, Failure, Verified};
use crate::domain::GENESIS_HASH;
use crate::error::AuditError;
use crate::store::queries;

/// Pages read and checked ahead of the one being linked.
const PAGES_AHEAD: usize = 2;
/// Sequences per page: one full block (~2.7 MB at ~650 bytes an event). At
/// most `PAGES_AHEAD + 1` pages are in memory: ~8 MB for such events, and
/// at most 3 x 4,096 x 32 KiB = 384 MB for events at the size limit.
const PAGE_SEQUENCES: u64 = MAX_BLOCK_EVENTS as u64;

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
        match queries::hash_at(db, start - 1).await? {
            Some(hash) => hash,
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
    // Pages are sequence spans: the first holds the blocks overlapping it,
    // each later one the blocks that start in it, so every block is read
    // once. Each page is read and checked in its own task, ahead of the
    // linking, so the database, the hashing of several pages and the
    // linking overlap.
    let check_page = |from: u64| {
        let db = db.clone();
        let to = end.min(from.saturating_add(PAGE_SEQUENCES - 1));
        tokio::spawn(async move {
            let blocks = if from == start {
                queries::blocks_in_range(&db, from, to).await?
            } else {
                queries::blocks_starting_in(&db, from, to).await?
            };
            check_in_parallel(blocks, start, end).await
        })
    };
    let mut next_page = start;
    let mut checking = std::collections::VecDeque::new();
    loop {
        while checking.len() <= PAGES_AHEAD && next_page <= end {
            checking.push_back(check_page(next_page));
            next_page = next_page.saturating_add(PAGE_SEQUENCES);
        }
        let Some(page) = checking.pop_front() else {
            break;
        };
        for (block, result) in page.await?? {
            if let Err(broken) = verifier.link(&block, result) {
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

type Checked = Vec<(Block, Result<(), Broken>)>;

/// Runs [`check_block`] (hashing and key checks) on every core, one task
/// per block; linking stays sequential.
async fn check_in_parallel(
    blocks: Vec<(Block, BlockSummary)>,
    from: u64,
    to: u64,
) -> Result<Checked, AuditError> {
    let handles: Vec<_> = blocks
        .into_iter()
        .map(|(block, summary)| {
            tokio::task::spawn_blocking(move || {
                let result = check_block(&block, &summary, from, to);
                (block, result)
            })
        })
        .collect();
    let mut checked = Vec::with_capacity(handles.len());
    for handle in handles {
        // A panicking check is a bug; fail verification rather than pass.
        checked.push(handle.await?);
    }
    Ok(checked)
}
