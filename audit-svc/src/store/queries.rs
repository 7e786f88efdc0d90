//! The statements audit-svc runs. Write statements take a transaction from
//! the chain writer; read statements take any connection.
//!
//! Blocks are read and written with explicit SQL: the summary columns are
//! `TEXT[]` on PostgreSQL (GIN-indexed, filtered with `@>` and `&&`) and
//! JSON arrays in `TEXT` on SQLite (filtered with `json_each`).

use std::collections::HashMap;

use sea_orm::sea_query::ArrayType;
use sea_orm::{
    ActiveValue, ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Statement, Value,
};

use super::entities::checkpoint;
use crate::domain::block::{Block, BlockSummary, NewBlock, MAX_BLOCK_EVENTS};
use crate::domain::checkpoint::Checkpoint;
use crate::domain::filter::{EventFilter, Order, PageCursor};
use crate::domain::Hash;

/// PostgreSQL advisory lock key of the chain (`"agentsec-audit"` as bytes).
const CHAIN_LOCK_KEY: i64 = 0x6167_656e_7473_6563;

/// Event ids per statement on SQLite (2 parameters each, below its 32,766
/// bound parameters) and per lookup on both backends.
const ID_CHUNK: usize = 10_000;

/// The columns of a [`Block`], in the order [`block_from_row`] reads.
const BLOCK_COLUMNS: &str = "first_sequence, last_sequence, prev_hash, hashes, events";

/// The summary columns after [`BLOCK_COLUMNS`], in the order
/// [`summary_from_row`] reads.
const SUMMARY_SELECT: &str = "min_time_us, max_time_us, tenants, agent_ids, person_subjects, \
     trace_ids, decision_ids, kinds, outcomes";

/// Makes the calling transaction the chain's only writer until it ends.
/// PostgreSQL: a transaction-scoped advisory lock, released at commit,
/// rollback or connection loss, so a replica that dies hands over at once.
/// SQLite: one process writes, and its writer is a single task.
pub async fn lock_chain(tx: &impl ConnectionTrait) -> Result<(), DbErr> {
    if tx.get_database_backend() == DbBackend::Postgres {
        tx.execute(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock($1)",
            [CHAIN_LOCK_KEY.into()],
        ))
        .await?;
    }
    Ok(())
}

/// Builds the bound values of one statement with the backend's
/// placeholders.
struct Params {
    backend: DbBackend,
    values: Vec<Value>,
}

impl Params {
    fn new(backend: DbBackend) -> Self {
        Self {
            backend,
            values: Vec::new(),
        }
    }

    /// Binds `value`; returns its placeholder.
    fn bind(&mut self, value: impl Into<Value>) -> String {
        self.values.push(value.into());
        match self.backend {
            DbBackend::Postgres => format!("${}", self.values.len()),
            DbBackend::Sqlite | DbBackend::MySql => "?".to_owned(),
        }
    }

    /// Binds a summary array in the backend's representation.
    fn bind_array(&mut self, values: Vec<String>) -> String {
        match self.backend {
            DbBackend::Postgres => {
                let items = values
                    .into_iter()
                    .map(|v| Value::String(Some(Box::new(v))))
                    .collect();
                let placeholder = self.bind(Value::Array(ArrayType::String, Some(Box::new(items))));
                format!("{placeholder}::text[]")
            }
            // A list of plain strings always serialises.
            DbBackend::Sqlite | DbBackend::MySql => {
                self.bind(serde_json::to_string(&values).unwrap_or_default())
            }
        }
    }

    fn statement(self, sql: String) -> Statement {
        Statement::from_sql_and_values(self.backend, sql, self.values)
    }
}

/// The stored sequence of each of `ids` that exists.
pub async fn existing_ids(
    tx: &impl ConnectionTrait,
    ids: &[&str],
) -> Result<HashMap<String, u64>, DbErr> {
    let backend = tx.get_database_backend();
    let mut found = HashMap::new();
    for chunk in ids.chunks(ID_CHUNK) {
        let mut params = Params::new(backend);
        let condition = match backend {
            DbBackend::Postgres => {
                let list: Vec<String> = chunk.iter().map(|id| (*id).to_owned()).collect();
                format!("event_id = ANY({})", params.bind_array(list))
            }
            DbBackend::Sqlite | DbBackend::MySql => {
                let placeholders: Vec<String> = chunk.iter().map(|id| params.bind(*id)).collect();
                format!("event_id IN ({})", placeholders.join(", "))
            }
        };
        let rows = tx
            .query_all(params.statement(format!(
                "SELECT event_id, sequence FROM audit_event_ids WHERE {condition}"
            )))
            .await?;
        for row in rows {
            found.insert(
                row.try_get_by_index::<String>(0)?,
                to_u64(row.try_get_by_index::<i64>(1)?),
            );
        }
    }
    Ok(found)
}

/// The last stored sequence and its hash (the last 32 bytes of the last
/// block's hashes).
pub async fn head(db: &impl ConnectionTrait) -> Result<Option<(u64, Hash)>, DbErr> {
    let backend = db.get_database_backend();
    let last_hash = match backend {
        DbBackend::Postgres => "substring(hashes from octet_length(hashes) - 31)",
        DbBackend::Sqlite | DbBackend::MySql => "substr(hashes, -32)",
    };
    let row = db
        .query_one(Statement::from_string(
            backend,
            format!(
                "SELECT last_sequence, {last_hash} FROM audit_blocks \
                 ORDER BY first_sequence DESC LIMIT 1"
            ),
        ))
        .await?;
    row.map(|row| {
        let sequence = to_u64(row.try_get_by_index::<i64>(0)?);
        let hash = row.try_get_by_index::<Vec<u8>>(1)?;
        Ok((sequence, to_hash(&hash)?))
    })
    .transpose()
}

/// Records the sequence of each newly stored event id. A stored id fails
/// the statement with a unique violation.
pub async fn insert_event_ids(tx: &impl ConnectionTrait, ids: &[(&str, u64)]) -> Result<(), DbErr> {
    if ids.is_empty() {
        return Ok(());
    }
    let backend = tx.get_database_backend();
    if backend == DbBackend::Postgres {
        // One statement of two arrays: the same SQL text for every group,
        // prepared once per connection.
        let mut params = Params::new(backend);
        let names: Vec<String> = ids.iter().map(|(id, _)| (*id).to_owned()).collect();
        let sequences: Vec<Value> = ids
            .iter()
            .map(|(_, sequence)| Value::BigInt(Some(to_i64(*sequence))))
            .collect();
        let names = params.bind_array(names);
        let sequences = params.bind(Value::Array(ArrayType::BigInt, Some(Box::new(sequences))));
        tx.execute(params.statement(format!(
            "INSERT INTO audit_event_ids (event_id, sequence) \
             SELECT * FROM UNNEST({names}, {sequences}::bigint[])"
        )))
        .await?;
        return Ok(());
    }
    for chunk in ids.chunks(ID_CHUNK) {
        let mut params = Params::new(backend);
        let rows: Vec<String> = chunk
            .iter()
            .map(|(id, sequence)| {
                format!("({}, {})", params.bind(*id), params.bind(to_i64(*sequence)))
            })
            .collect();
        tx.execute(params.statement(format!(
            "INSERT INTO audit_event_ids (event_id, sequence) VALUES {}",
            rows.join(", ")
        )))
        .await?;
    }
    Ok(())
}

/// Inserts blocks the writer has built, one statement each.
pub async fn insert_blocks(tx: &impl ConnectionTrait, blocks: Vec<NewBlock>) -> Result<(), DbErr> {
    let backend = tx.get_database_backend();
    for NewBlock { block, summary } in blocks {
        let mut params = Params::new(backend);
        let mut placeholders = vec![
            params.bind(to_i64(block.first_sequence)),
            params.bind(to_i64(block.last_sequence)),
            params.bind(block.prev_hash),
            params.bind(block.hashes),
            params.bind(block.events),
            params.bind(summary.min_time.timestamp_micros()),
            params.bind(summary.max_time.timestamp_micros()),
        ];
        for values in summary.into_arrays() {
            placeholders.push(params.bind_array(values));
        }
        tx.execute(params.statement(format!(
            "INSERT INTO audit_blocks ({BLOCK_COLUMNS}, {SUMMARY_SELECT}) VALUES ({})",
            placeholders.join(", ")
        )))
        .await?;
    }
    Ok(())
}

/// The lowest `first_sequence` a block holding `sequence` can have: lets
/// range reads walk the primary key from a bound instead of from 1.
fn lowest_first(sequence: u64) -> i64 {
    to_i64(sequence.saturating_sub(MAX_BLOCK_EVENTS as u64 - 1).max(1))
}

/// The stored hash of `sequence`, if a block holds it.
pub async fn hash_at(db: &impl ConnectionTrait, sequence: u64) -> Result<Option<Hash>, DbErr> {
    Ok(blocks_in_range(db, sequence, sequence)
        .await?
        .iter()
        .find_map(|(block, _)| block.hash_at(sequence))
        .and_then(|hash| hash.try_into().ok()))
}

/// Blocks holding any of `from..=to`, with their summaries, in sequence
/// order.
pub async fn blocks_in_range(
    db: &impl ConnectionTrait,
    from: u64,
    to: u64,
) -> Result<Vec<(Block, BlockSummary)>, DbErr> {
    let backend = db.get_database_backend();
    let mut params = Params::new(backend);
    let sql = format!(
        "SELECT {BLOCK_COLUMNS}, {SUMMARY_SELECT} FROM audit_blocks \
         WHERE first_sequence BETWEEN {} AND {} AND last_sequence >= {} \
         ORDER BY first_sequence",
        params.bind(lowest_first(from)),
        params.bind(to_i64(to)),
        params.bind(to_i64(from)),
    );
    let rows = db.query_all(params.statement(sql)).await?;
    rows.iter()
        .map(|row| Ok((block_from_row(row)?, summary_from_row(row, backend)?)))
        .collect()
}

/// Blocks whose first sequence is in `from..=to`, with their summaries, in
/// sequence order.
pub async fn blocks_starting_in(
    db: &impl ConnectionTrait,
    from: u64,
    to: u64,
) -> Result<Vec<(Block, BlockSummary)>, DbErr> {
    let backend = db.get_database_backend();
    let mut params = Params::new(backend);
    let sql = format!(
        "SELECT {BLOCK_COLUMNS}, {SUMMARY_SELECT} FROM audit_blocks \
         WHERE first_sequence BETWEEN {} AND {} ORDER BY first_sequence",
        params.bind(to_i64(from)),
        params.bind(to_i64(to)),
    );
    let rows = db.query_all(params.statement(sql)).await?;
    rows.iter()
        .map(|row| Ok((block_from_row(row)?, summary_from_row(row, backend)?)))
        .collect()
}

/// Up to `limit` blocks holding sequences in `from..=to` whose summaries
/// admit `filter`, in `order`. Their events still have to be matched one
/// by one: a summary says a block may hold a match, not which event.
pub async fn candidate_blocks(
    db: &impl ConnectionTrait,
    filter: &EventFilter,
    order: Order,
    from: u64,
    to: u64,
    limit: u64,
) -> Result<Vec<Block>, DbErr> {
    let backend = db.get_database_backend();
    let mut params = Params::new(backend);
    let mut conditions = vec![
        format!("first_sequence >= {}", params.bind(lowest_first(from))),
        format!("first_sequence <= {}", params.bind(to_i64(to))),
        format!("last_sequence >= {}", params.bind(to_i64(from))),
    ];
    let equal = [
        ("tenants", &filter.tenant),
        ("agent_ids", &filter.agent_id),
        ("person_subjects", &filter.person_subject),
        ("trace_ids", &filter.trace_id),
        ("decision_ids", &filter.decision_id),
        ("outcomes", &filter.outcome),
    ];
    for (column, value) in equal {
        let Some(value) = value else { continue };
        conditions.push(match backend {
            DbBackend::Postgres => {
                format!("{column} @> {}", params.bind_array(vec![value.clone()]))
            }
            DbBackend::Sqlite | DbBackend::MySql => format!(
                "EXISTS (SELECT 1 FROM json_each({column}) WHERE value = {})",
                params.bind(value.clone())
            ),
        });
    }
    if !filter.kinds.is_empty() {
        conditions.push(match backend {
            DbBackend::Postgres => format!("kinds && {}", params.bind_array(filter.kinds.clone())),
            DbBackend::Sqlite | DbBackend::MySql => {
                let list: Vec<String> = filter
                    .kinds
                    .iter()
                    .map(|kind| params.bind(kind.clone()))
                    .collect();
                format!(
                    "EXISTS (SELECT 1 FROM json_each(kinds) WHERE value IN ({}))",
                    list.join(", ")
                )
            }
        });
    }
    if let Some(start) = filter.start_time {
        conditions.push(format!(
            "max_time_us >= {}",
            params.bind(start.timestamp_micros())
        ));
    }
    if let Some(end) = filter.end_time {
        conditions.push(format!(
            "min_time_us < {}",
            params.bind(end.timestamp_micros())
        ));
    }
    let direction = match order {
        Order::NewestFirst => "DESC",
        Order::OldestFirst => "ASC",
    };
    let sql = format!(
        "SELECT {BLOCK_COLUMNS} FROM audit_blocks WHERE {} \
         ORDER BY first_sequence {direction} LIMIT {}",
        conditions.join(" AND "),
        params.bind(to_i64(limit)),
    );
    let rows = db.query_all(params.statement(sql)).await?;
    rows.iter().map(block_from_row).collect()
}

fn block_from_row(row: &sea_orm::QueryResult) -> Result<Block, DbErr> {
    Ok(Block {
        first_sequence: to_u64(row.try_get_by_index::<i64>(0)?),
        last_sequence: to_u64(row.try_get_by_index::<i64>(1)?),
        prev_hash: row.try_get_by_index::<Vec<u8>>(2)?,
        hashes: row.try_get_by_index::<Vec<u8>>(3)?,
        events: row.try_get_by_index::<String>(4)?,
    })
}

/// Reads the summary columns that follow the block columns.
fn summary_from_row(row: &sea_orm::QueryResult, backend: DbBackend) -> Result<BlockSummary, DbErr> {
    let time = |index: usize| -> Result<chrono::DateTime<chrono::Utc>, DbErr> {
        let micros = row.try_get_by_index::<i64>(index)?;
        chrono::DateTime::from_timestamp_micros(micros)
            .ok_or_else(|| DbErr::Custom(format!("stored block time {micros} is out of range")))
    };
    let array = |index: usize| -> Result<Vec<String>, DbErr> {
        match backend {
            DbBackend::Postgres => row.try_get_by_index::<Vec<String>>(index),
            DbBackend::Sqlite | DbBackend::MySql => {
                let text = row.try_get_by_index::<String>(index)?;
                serde_json::from_str(&text).map_err(|err| {
                    DbErr::Custom(format!("stored block summary is not a JSON list: {err}"))
                })
            }
        }
    };
    Ok(BlockSummary {
        min_time: time(5)?,
        max_time: time(6)?,
        tenants: array(7)?,
        agent_ids: array(8)?,
        person_subjects: array(9)?,
        trace_ids: array(10)?,
        decision_ids: array(11)?,
        kinds: array(12)?,
        outcomes: array(13)?,
    })
}

/// The highest checkpointed sequence (0 when none).
pub async fn last_checkpoint_sequence(db: &impl ConnectionTrait) -> Result<u64, DbErr> {
    let row: Option<i64> = checkpoint::Entity::find()
        .select_only()
        .column(checkpoint::Column::Sequence)
        .order_by_desc(checkpoint::Column::Sequence)
        .limit(1)
        .into_tuple()
        .one(db)
        .await?;
    Ok(row.map(to_u64).unwrap_or(0))
}

pub async fn insert_checkpoint(tx: &impl ConnectionTrait, value: &Checkpoint) -> Result<(), DbErr> {
    checkpoint::Entity::insert(checkpoint::ActiveModel {
        sequence: ActiveValue::Set(to_i64(value.sequence)),
        head_hash: ActiveValue::Set(value.head_hash.to_vec()),
        time: ActiveValue::Set(value.time),
        key_id: ActiveValue::Set(value.key_id.clone()),
        signature: ActiveValue::Set(value.signature.clone()),
    })
    .exec_without_returning(tx)
    .await?;
    Ok(())
}

/// Checkpoints with a sequence in `from..=to`.
pub async fn checkpoints_in_range(
    db: &impl ConnectionTrait,
    from: u64,
    to: u64,
) -> Result<Vec<Checkpoint>, DbErr> {
    let rows = checkpoint::Entity::find()
        .filter(checkpoint::Column::Sequence.between(to_i64(from), to_i64(to)))
        .order_by_asc(checkpoint::Column::Sequence)
        .all(db)
        .await?;
    rows.into_iter().map(to_checkpoint).collect()
}

/// A page of checkpoints after the cursor.
pub async fn list_checkpoints(
    db: &impl ConnectionTrait,
    cursor: &PageCursor,
) -> Result<Vec<Checkpoint>, DbErr> {
    let mut query = checkpoint::Entity::find().limit(cursor.limit);
    if let Some(after) = cursor.after {
        query = query.filter(match cursor.order {
            Order::NewestFirst => checkpoint::Column::Sequence.lt(to_i64(after)),
            Order::OldestFirst => checkpoint::Column::Sequence.gt(to_i64(after)),
        });
    }
    let query = match cursor.order {
        Order::NewestFirst => query.order_by_desc(checkpoint::Column::Sequence),
        Order::OldestFirst => query.order_by_asc(checkpoint::Column::Sequence),
    };
    query
        .all(db)
        .await?
        .into_iter()
        .map(to_checkpoint)
        .collect()
}

/// The checkpoint at `sequence`, or the latest when `sequence` is `None`.
pub async fn checkpoint_at(
    db: &impl ConnectionTrait,
    sequence: Option<u64>,
) -> Result<Option<Checkpoint>, DbErr> {
    let row = match sequence {
        Some(sequence) => {
            checkpoint::Entity::find_by_id(to_i64(sequence))
                .one(db)
                .await?
        }
        None => {
            checkpoint::Entity::find()
                .order_by_desc(checkpoint::Column::Sequence)
                .one(db)
                .await?
        }
    };
    row.map(to_checkpoint).transpose()
}

fn to_checkpoint(row: checkpoint::Model) -> Result<Checkpoint, DbErr> {
    Ok(Checkpoint {
        sequence: to_u64(row.sequence),
        head_hash: to_hash(&row.head_hash)?,
        time: row.time,
        key_id: row.key_id,
        signature: row.signature,
    })
}

fn to_hash(bytes: &[u8]) -> Result<Hash, DbErr> {
    bytes
        .try_into()
        .map_err(|_| DbErr::Custom(format!("stored hash has {} bytes, not 32", bytes.len())))
}

/// Sequences are positive and far below `i64::MAX`; the column is BIGINT.
fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}
