//! Conversions between the contract and audit-svc's domain types; request
//! validation happens here, once, at the boundary.

use agentsec_proto::audit::v1 as pb;
use chrono::{DateTime, Utc};

use crate::chain::prepare::{outcome_name, to_contract_event};
use crate::chain::verification::VerifyReport;
use crate::domain::block::ChainRecord;
use crate::domain::canonical::CanonicalEvent;
use crate::domain::checkpoint::Checkpoint;
use crate::domain::filter::{EventFilter, Order, PageCursor};
use crate::domain::to_hex;
use crate::domain::verify::Failure;
use crate::error::AuditError;
use agentsec_common::page::Page;

const MAX_FILTER_KINDS: usize = 32;

pub fn filter(filter: Option<pb::EventFilter>) -> Result<EventFilter, AuditError> {
    let filter = filter.unwrap_or_default();
    if filter.kinds.len() > MAX_FILTER_KINDS {
        return Err(AuditError::invalid(
            "filter.kinds",
            format!("has more than {MAX_FILTER_KINDS} entries"),
        ));
    }
    let outcome = match filter.outcome {
        0 => None,
        value => match outcome_name(value) {
            "" => {
                return Err(AuditError::invalid(
                    "filter.outcome",
                    format!("has unknown value {value}"),
                ))
            }
            name => Some(name.to_owned()),
        },
    };
    let non_empty = |value: String| (!value.is_empty()).then_some(value);
    Ok(EventFilter {
        tenant: non_empty(filter.tenant),
        agent_id: non_empty(filter.agent_id),
        person_subject: non_empty(filter.person_subject),
        trace_id: non_empty(filter.trace_id),
        decision_id: non_empty(filter.decision_id),
        kinds: filter.kinds,
        outcome,
        start_time: filter
            .start_time
            .map(|t| time("filter.start_time", t))
            .transpose()?,
        end_time: filter
            .end_time
            .map(|t| time("filter.end_time", t))
            .transpose()?,
    })
}

fn time(
    field: &'static str,
    timestamp: prost_types::Timestamp,
) -> Result<DateTime<Utc>, AuditError> {
    let nanos = u32::try_from(timestamp.nanos)
        .map_err(|_| AuditError::invalid(field, "has negative nanos"))?;
    DateTime::from_timestamp(timestamp.seconds, nanos)
        .ok_or_else(|| AuditError::invalid(field, "is out of range"))
}

pub fn order(value: i32) -> Result<Order, AuditError> {
    match pb::Order::try_from(value) {
        Ok(pb::Order::Unspecified | pb::Order::NewestFirst) => Ok(Order::NewestFirst),
        Ok(pb::Order::OldestFirst) => Ok(Order::OldestFirst),
        Err(_) => Err(AuditError::invalid(
            "order",
            format!("has unknown value {value}"),
        )),
    }
}

/// A page request as a cursor; the token is the last sequence of the
/// previous page (so pages stay stable while events arrive), bound to the
/// `listing` (its filter) and the order. The cursor's limit is one more
/// than the page size: [`finish_page`] tells from it whether another page
/// follows.
pub fn cursor(
    order: Order,
    page: Option<agentsec_proto::common::v1::PageRequest>,
    listing: &str,
) -> Result<(PageCursor, Page), AuditError> {
    let page = Page::parse(page.as_ref(), format!("{listing}|{order:?}"))?;
    let after = page
        .after
        .as_deref()
        .map(|after| {
            after.parse::<u64>().map_err(|_| {
                AuditError::invalid("page.page_token", "is not a cursor of this listing")
            })
        })
        .transpose()?;
    let cursor = PageCursor {
        order,
        after,
        limit: page.size + 1,
    };
    Ok((cursor, page))
}

/// The rows of `page` (fetched with [`cursor`]'s limit) and the token of
/// the next page, empty on the last.
pub fn finish_page<T>(
    page: &Page,
    mut rows: Vec<T>,
    sequence: impl Fn(&T) -> u64,
) -> (Vec<T>, String) {
    let more = rows.len() as u64 > page.size;
    rows.truncate(usize::try_from(page.size).unwrap_or(usize::MAX));
    let last = rows.last().map(|row| sequence(row).to_string());
    let token = page.next_token(last.as_deref(), more);
    (rows, token)
}

pub fn stored_event(record: ChainRecord) -> Result<pb::StoredEvent, AuditError> {
    let canonical = CanonicalEvent::from_bytes(record.body.as_bytes()).map_err(|err| {
        AuditError::Read(sea_orm::DbErr::Custom(format!(
            "stored event {} is not canonical JSON: {err}",
            record.sequence
        )))
    })?;
    let time = canonical.parsed_time().ok_or_else(|| {
        AuditError::Read(sea_orm::DbErr::Custom(format!(
            "stored event {} has no valid time",
            record.sequence
        )))
    })?;
    Ok(pb::StoredEvent {
        sequence: record.sequence,
        event: Some(to_contract_event(canonical, time)),
        prev_hash: to_hex(&record.prev_hash),
        hash: to_hex(&record.hash),
    })
}

pub fn checkpoint(value: Checkpoint) -> pb::Checkpoint {
    pb::Checkpoint {
        sequence: value.sequence,
        head_hash: to_hex(&value.head_hash),
        time: Some(prost_types::Timestamp {
            seconds: value.time.timestamp(),
            nanos: i32::try_from(value.time.timestamp_subsec_nanos()).unwrap_or(0),
        }),
        key_id: value.key_id,
        signature: value.signature,
    }
}

/// One export line: JCS of `{"event":…,"hash":…,"prev_hash":…,"sequence":n}`;
/// `event` is the stored canonical bytes verbatim.
pub fn export_line(record: &ChainRecord, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"event\":");
    out.extend_from_slice(record.body.as_bytes());
    out.extend_from_slice(b",\"hash\":\"");
    out.extend_from_slice(to_hex(&record.hash).as_bytes());
    out.extend_from_slice(b"\",\"prev_hash\":\"");
    out.extend_from_slice(to_hex(&record.prev_hash).as_bytes());
    out.extend_from_slice(b"\",\"sequence\":");
    out.extend_from_slice(record.sequence.to_string().as_bytes());
    out.extend_from_slice(b"}\n");
}

/// The contract answer of a verification.
pub fn verify_response(report: VerifyReport) -> pb::VerifyChainResponse {
    let base = pb::VerifyChainResponse {
        start_sequence: report.start,
        end_sequence: report.end,
        ..pb::VerifyChainResponse::default()
    };
    match report.outcome {
        Ok(verified) => pb::VerifyChainResponse {
            ok: true,
            events_verified: verified.events,
            checkpoints_verified: verified.checkpoints,
            ..base
        },
        Err(broken) => pb::VerifyChainResponse {
            ok: false,
            first_broken_sequence: broken.sequence,
            failure: failure_value(broken.failure) as i32,
            reason: broken.reason,
            ..base
        },
    }
}

fn failure_value(failure: Failure) -> pb::VerifyFailure {
    match failure {
        Failure::HashMismatch => pb::VerifyFailure::HashMismatch,
        Failure::PrevHashMismatch => pb::VerifyFailure::PrevHashMismatch,
        Failure::SequenceGap => pb::VerifyFailure::SequenceGap,
        Failure::CheckpointMismatch => pb::VerifyFailure::CheckpointMismatch,
        Failure::CheckpointSignatureInvalid => pb::VerifyFailure::CheckpointSignatureInvalid,
    }
}
