//! Reading events back for queries, tail and export: the store returns the
//! blocks whose key summaries admit the filter, and the events of those
//! blocks are matched one by one here.

use sea_orm::{ConnectionTrait, DbErr};

use crate::domain::block::{Block, ChainRecord, EventKeys};
use crate::domain::filter::{EventFilter, Order};
use crate::store::queries;

/// Events read per round of tail and export: large enough to amortise the
/// round trip, small enough to bound memory.
pub const SCAN_PAGE: u64 = 5_000;
/// Candidate blocks read per statement.
const BLOCKS_PER_READ: u64 = 4;

/// Matching events of one scan, in the scan's order.
#[derive(Debug, Default)]
pub struct ScanPage {
    pub records: Vec<ChainRecord>,
    /// Where the next scan in the same direction starts: past the last
    /// returned event, or past every block examined when the range was
    /// exhausted (blocks commit in sequence order, so nothing can appear
    /// below it later).
    pub resume: u64,
    /// The scan ended because no stored block was left in the range.
    pub exhausted: bool,
}

/// Up to `limit` events of `from..=to` matching `filter`, in `order`.
pub async fn scan(
    db: &impl ConnectionTrait,
    filter: &EventFilter,
    order: Order,
    from: u64,
    to: u64,
    limit: u64,
) -> Result<ScanPage, DbErr> {
    let (mut low, mut high) = (from.max(1), to);
    let mut records = Vec::new();
    let unfiltered = *filter == EventFilter::default();
    loop {
        if low > high || limit == 0 {
            return Ok(ScanPage {
                records,
                resume: resume_point(order, low, high),
                exhausted: true,
            });
        }
        let blocks =
            queries::candidate_blocks(db, filter, order, low, high, BLOCKS_PER_READ).await?;
        for block in &blocks {
            let mut events = events_in(block, low, high);
            if order == Order::NewestFirst {
                events.reverse();
            }
            for (sequence, body) in events {
                let wanted =
                    unfiltered || EventKeys::parse(body).is_some_and(|keys| keys.matches(filter));
                if !wanted {
                    continue;
                }
                records.push(ChainRecord {
                    sequence,
                    body: body.to_owned(),
                    prev_hash: block.prev_hash_of(sequence).unwrap_or_default().to_vec(),
                    hash: block.hash_at(sequence).unwrap_or_default().to_vec(),
                });
                if records.len() as u64 >= limit {
                    return Ok(ScanPage {
                        records,
                        resume: match order {
                            Order::OldestFirst => sequence + 1,
                            Order::NewestFirst => sequence.saturating_sub(1),
                        },
                        exhausted: false,
                    });
                }
            }
        }
        match (order, blocks.last()) {
            (Order::OldestFirst, Some(last)) => low = last.last_sequence.saturating_add(1),
            (Order::NewestFirst, Some(last)) => high = last.first_sequence.saturating_sub(1),
            (_, None) => {}
        }
        if (blocks.len() as u64) < BLOCKS_PER_READ {
            return Ok(ScanPage {
                records,
                resume: resume_point(order, low, high),
                exhausted: true,
            });
        }
    }
}

fn resume_point(order: Order, low: u64, high: u64) -> u64 {
    match order {
        Order::OldestFirst => low,
        Order::NewestFirst => high,
    }
}

/// The events of `block` within `from..=to`, oldest first.
fn events_in(block: &Block, from: u64, to: u64) -> Vec<(u64, &str)> {
    (block.first_sequence..=block.last_sequence)
        .zip(block.lines())
        .filter(|(sequence, _)| (from..=to).contains(sequence))
        .collect()
}
