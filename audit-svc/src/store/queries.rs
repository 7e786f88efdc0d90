//! The statements audit-svc runs. Write statements take a transaction from
//! the chain writer; read statements take any connection.

use std::collections::HashMap;

use sea_orm::{
    ActiveValue, ColumnTrait, Condition, ConnectionTrait, DbBackend, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Statement,
};

use super::entities::{checkpoint, event};
use crate::domain::checkpoint::Checkpoint;
use crate::domain::filter::{EventFilter, Order, PageCursor};
use crate::domain::verify::{ChainRecord, IndexedColumns};
use crate::domain::Hash;

/// PostgreSQL advisory lock key of the chain (`"agentsec-audit"` as bytes).
const CHAIN_LOCK_KEY: i64 = 0x6167_656e_7473_6563;

/// Rows read per round trip by verification, tail and export: large enough
/// to amortise the round trip, small enough to bound memory (~5 MB).
pub const SCAN_PAGE: u64 = 5_000;

/// Rows per INSERT statement: 13 parameters a row stays below both
/// PostgreSQL's 65,535 and SQLite's 32,766 bound parameters.
const INSERT_CHUNK: usize = 2_000;

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

/// The stored sequence of each of `ids` that exists.
pub async fn existing_ids(
    tx: &impl ConnectionTrait,
    ids: &[&str],
) -> Result<HashMap<String, u64>, DbErr> {
    let mut found = HashMap::new();
    for chunk in ids.chunks(INSERT_CHUNK) {
        let rows: Vec<(String, i64)> = event::Entity::find()
            .select_only()
            .column(event::Column::EventId)
            .column(event::Column::Sequence)
            .filter(event::Column::EventId.is_in(chunk.iter().copied()))
            .into_tuple()
            .all(tx)
            .await?;
        found.extend(
            rows.into_iter()
                .map(|(id, sequence)| (id, to_u64(sequence))),
        );
    }
    Ok(found)
}

/// The last stored sequence and its hash.
pub async fn head(db: &impl ConnectionTrait) -> Result<Option<(u64, Hash)>, DbErr> {
    let row: Option<(i64, Vec<u8>)> = event::Entity::find()
        .select_only()
        .column(event::Column::Sequence)
        .column(event::Column::Hash)
        .order_by_desc(event::Column::Sequence)
        .limit(1)
        .into_tuple()
        .one(db)
        .await?;
    row.map(|(sequence, hash)| Ok((to_u64(sequence), to_hash(&hash)?)))
        .transpose()
}

/// Inserts records that the writer has chained.
pub async fn insert_records(
    tx: &impl ConnectionTrait,
    records: Vec<ChainRecord>,
) -> Result<(), DbErr> {
    if records.is_empty() {
        return Ok(());
    }
    if tx.get_database_backend() == DbBackend::Postgres {
        return insert_records_unnest(tx, records).await;
    }
    let mut rows = records.into_iter().map(|record| event::ActiveModel {
        sequence: ActiveValue::Set(to_i64(record.sequence)),
        event_id: ActiveValue::Set(record.columns.event_id),
        time: ActiveValue::Set(record.columns.time),
        tenant: ActiveValue::Set(record.columns.tenant),
        agent_id: ActiveValue::Set(record.columns.agent_id),
        person_subject: ActiveValue::Set(record.columns.person_subject),
        trace_id: ActiveValue::Set(record.columns.trace_id),
        decision_id: ActiveValue::Set(record.columns.decision_id),
        kind: ActiveValue::Set(record.columns.kind),
        outcome: ActiveValue::Set(record.columns.outcome),
        body: ActiveValue::Set(record.body),
        prev_hash: ActiveValue::Set(record.prev_hash),
        hash: ActiveValue::Set(record.hash),
    });
    loop {
        let chunk: Vec<event::ActiveModel> = rows.by_ref().take(INSERT_CHUNK).collect();
        if chunk.is_empty() {
            return Ok(());
        }
        event::Entity::insert_many(chunk)
            .exec_without_returning(tx)
            .await?;
    }
}

/// PostgreSQL: one statement with one array per column. The SQL text is the
/// same for every group, so it is prepared once per connection, and the
/// server does not parse thousands of placeholders.
async fn insert_records_unnest(
    tx: &impl ConnectionTrait,
    records: Vec<ChainRecord>,
) -> Result<(), DbErr> {
    use sea_orm::sea_query::ArrayType;
    use sea_orm::Value;
    let len = records.len();
    let mut columns: [Vec<Value>; 13] = std::array::from_fn(|_| Vec::with_capacity(len));
    for record in records {
        let text = |value: String| Value::String(Some(Box::new(value)));
        let values = [
            Value::BigInt(Some(to_i64(record.sequence))),
            text(record.columns.event_id),
            Value::ChronoDateTimeUtc(Some(Box::new(record.columns.time))),
            text(record.columns.tenant),
            text(record.columns.agent_id),
            text(record.columns.person_subject),
            text(record.columns.trace_id),
            text(record.columns.decision_id),
            text(record.columns.kind),
            text(record.columns.outcome),
            text(record.body),
            Value::Bytes(Some(Box::new(record.prev_hash))),
            Value::Bytes(Some(Box::new(record.hash))),
        ];
        for (column, value) in columns.iter_mut().zip(values) {
            column.push(value);
        }
    }
    let types = [
        ArrayType::BigInt,
        ArrayType::String,
        ArrayType::ChronoDateTimeUtc,
        ArrayType::String,
        ArrayType::String,
        ArrayType::String,
        ArrayType::String,
        ArrayType::String,
        ArrayType::String,
        ArrayType::String,
        ArrayType::String,
        ArrayType::Bytes,
        ArrayType::Bytes,
    ];
    let arrays: Vec<Value> = types
        .into_iter()
        .zip(columns)
        .map(|(array_type, values)| Value::Array(array_type, Some(Box::new(values))))
        .collect();
    tx.execute(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "INSERT INTO audit_events (sequence, event_id, time, tenant, agent_id, person_subject, \
         trace_id, decision_id, kind, outcome, body, prev_hash, hash) \
         SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::timestamptz[], $4::text[], $5::text[], \
         $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::bytea[], $13::bytea[])",
        arrays,
    ))
    .await?;
    Ok(())
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

/// Records `from..=to` in sequence order, at most `limit`.
/// Records `from..=to` in sequence order.
pub async fn records_in_range(
    db: &impl ConnectionTrait,
    from: u64,
    to: u64,
) -> Result<Vec<ChainRecord>, DbErr> {
    // Read by column position rather than through the entity: this is the
    // hot path of verification and export, and name lookups per column and
    // row cost more than the database does.
    let backend = db.get_database_backend();
    let placeholder = |n: usize| match backend {
        DbBackend::Postgres => format!("${n}"),
        DbBackend::Sqlite | DbBackend::MySql => "?".to_owned(),
    };
    let sql = format!(
        "SELECT {RECORD_COLUMNS} FROM audit_events WHERE sequence BETWEEN {} AND {} ORDER BY sequence",
        placeholder(1),
        placeholder(2)
    );
    let rows = db
        .query_all(Statement::from_sql_and_values(
            backend,
            sql,
            [to_i64(from).into(), to_i64(to).into()],
        ))
        .await?;
    rows.iter().map(record_from_row).collect()
}

/// The columns of a [`ChainRecord`], in the order [`record_from_row`] reads.
const RECORD_COLUMNS: &str =
    "sequence, event_id, time, tenant, agent_id, person_subject, trace_id, \
     decision_id, kind, outcome, body, prev_hash, hash";

fn record_from_row(row: &sea_orm::QueryResult) -> Result<ChainRecord, DbErr> {
    let text = |index: usize| row.try_get_by_index::<String>(index);
    Ok(ChainRecord {
        sequence: to_u64(row.try_get_by_index::<i64>(0)?),
        columns: IndexedColumns {
            event_id: text(1)?,
            time: row.try_get_by_index::<chrono::DateTime<chrono::Utc>>(2)?,
            tenant: text(3)?,
            agent_id: text(4)?,
            person_subject: text(5)?,
            trace_id: text(6)?,
            decision_id: text(7)?,
            kind: text(8)?,
            outcome: text(9)?,
        },
        body: text(10)?,
        prev_hash: row.try_get_by_index::<Vec<u8>>(11)?,
        hash: row.try_get_by_index::<Vec<u8>>(12)?,
    })
}

pub async fn record_at(
    db: &impl ConnectionTrait,
    sequence: u64,
) -> Result<Option<ChainRecord>, DbErr> {
    Ok(event::Entity::find_by_id(to_i64(sequence))
        .one(db)
        .await?
        .map(to_record))
}

/// Records matching `filter`, one page after the cursor.
pub async fn query_records(
    db: &impl ConnectionTrait,
    filter: &EventFilter,
    cursor: &PageCursor,
    min_sequence: Option<u64>,
) -> Result<Vec<ChainRecord>, DbErr> {
    let mut condition = filter_condition(filter);
    if let Some(after) = cursor.after {
        condition = condition.add(match cursor.order {
            Order::NewestFirst => event::Column::Sequence.lt(to_i64(after)),
            Order::OldestFirst => event::Column::Sequence.gt(to_i64(after)),
        });
    }
    if let Some(min) = min_sequence {
        condition = condition.add(event::Column::Sequence.gte(to_i64(min)));
    }
    let query = event::Entity::find().filter(condition).limit(cursor.limit);
    let query = match cursor.order {
        Order::NewestFirst => query.order_by_desc(event::Column::Sequence),
        Order::OldestFirst => query.order_by_asc(event::Column::Sequence),
    };
    Ok(query.all(db).await?.into_iter().map(to_record).collect())
}

fn filter_condition(filter: &EventFilter) -> Condition {
    let mut condition = Condition::all();
    let equal = [
        (event::Column::Tenant, &filter.tenant),
        (event::Column::AgentId, &filter.agent_id),
        (event::Column::PersonSubject, &filter.person_subject),
        (event::Column::TraceId, &filter.trace_id),
        (event::Column::DecisionId, &filter.decision_id),
        (event::Column::Outcome, &filter.outcome),
    ];
    for (column, value) in equal {
        if let Some(value) = value {
            condition = condition.add(column.eq(value.clone()));
        }
    }
    if !filter.kinds.is_empty() {
        condition = condition.add(event::Column::Kind.is_in(filter.kinds.clone()));
    }
    if let Some(start) = filter.start_time {
        condition = condition.add(event::Column::Time.gte(start));
    }
    if let Some(end) = filter.end_time {
        condition = condition.add(event::Column::Time.lt(end));
    }
    condition
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

fn to_record(row: event::Model) -> ChainRecord {
    ChainRecord {
        sequence: to_u64(row.sequence),
        columns: IndexedColumns {
            event_id: row.event_id,
            time: row.time,
            tenant: row.tenant,
            agent_id: row.agent_id,
            person_subject: row.person_subject,
            trace_id: row.trace_id,
            decision_id: row.decision_id,
            kind: row.kind,
            outcome: row.outcome,
        },
        body: row.body,
        prev_hash: row.prev_hash,
        hash: row.hash,
    }
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
