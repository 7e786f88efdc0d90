//! The chain writer: one task per process appends every event. It takes all
//! jobs waiting in its queue, up to `chain.max_group_events`, and commits
//! them in one transaction (group commit): throughput comes from batching,
//! and every acknowledgment still waits for a durable commit.
//!
//! Across replicas on one PostgreSQL, each group transaction first takes a
//! transaction-scoped advisory lock and reads the head under it, so exactly
//! one replica extends the chain at a time and a replica that dies releases
//! the lock with its connection. A checkpoint is written in the same
//! transaction at every `checkpoint_every_events`-th event, and by a timer
//! every `checkpoint_every_secs` seconds when events arrived since the last.
//! A group holds at most `max_group_events` events (a single request larger
//! than that, at most 1,000 events, forms a group of its own) and is stored
//! as one or a few blocks (`domain::block`) plus one id row per new event.
//!
//! On `/metrics`: the latency of every append (queueing and commit), the
//! events appended, the jobs queued and the head of the chain.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agentsec_common::keys::SigningKey;
use agentsec_common::metrics::{latency_family, Counter, Family, LatencyFamily, Metrics, Outcome};
use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DbErr, TransactionTrait};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::prepare::PreparedEvent;
use crate::config::ChainConfig;
use crate::domain::block::BlockBuilder;
use crate::domain::canonical::chain_hash;
use crate::domain::checkpoint::{signed_message, Checkpoint};
use crate::domain::{Hash, GENESIS_HASH};
use crate::store::queries;

/// What happened to one appended event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendOutcome {
    pub event_id: String,
    pub sequence: u64,
    pub duplicate: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("the audit store failed: {0}")]
    Storage(#[from] DbErr),
    #[error("the checkpoint could not be signed: {0}")]
    Signing(String),
    #[error("the chain writer has stopped")]
    Stopped,
}

struct Job {
    events: Vec<PreparedEvent>,
    reply: oneshot::Sender<Result<Vec<AppendOutcome>, Arc<WriteError>>>,
}

/// The handle the API appends through; cheap to clone.
#[derive(Clone)]
pub struct ChainWriter {
    jobs: mpsc::Sender<Job>,
    head: watch::Receiver<u64>,
    /// Appends by outcome (`committed`, `failed`).
    latency: LatencyFamily<Outcome>,
    /// Events of committed appends, by whether they were new.
    appended: Family<[(&'static str, &'static str); 1], Counter>,
}

impl ChainWriter {
    /// Starts the writer task. It ends once every handle is dropped and the
    /// queue is drained.
    pub async fn start(
        db: DatabaseConnection,
        signer: Arc<SigningKey>,
        config: ChainConfig,
        metrics: &Metrics,
    ) -> Result<(Self, JoinHandle<()>), DbErr> {
        let head = queries::head(&db)
            .await?
            .map(|(sequence, _)| sequence)
            .unwrap_or(0);
        let (head_tx, head_rx) = watch::channel(head);
        let (jobs_tx, jobs_rx) = mpsc::channel(config.queue_jobs);
        let task = tokio::spawn(run(db, signer, config, jobs_rx, head_tx));
        let writer = Self {
            jobs: jobs_tx,
            head: head_rx,
            latency: latency_family(),
            appended: Family::default(),
        };
        writer.register_metrics(metrics);
        Ok((writer, task))
    }

    fn register_metrics(&self, metrics: &Metrics) {
        metrics.register_seconds(
            "agentsec_audit_append_duration",
            "Appends (one AppendEvents call's events), queueing and durable commit, by outcome",
            self.latency.clone(),
        );
        metrics.register(
            "agentsec_audit_events_appended",
            "Events of committed appends; duplicate=\"true\" were already stored (a retry)",
            self.appended.clone(),
        );
        // Weak: the writer ends once every handle is dropped.
        let jobs = self.jobs.downgrade();
        let capacity = self.jobs.max_capacity();
        let head = self.head.clone();
        metrics.register_scrape(move |scrape| {
            let queued = jobs.upgrade().map_or(0, |jobs| capacity - jobs.capacity());
            scrape.gauge(
                "agentsec_audit_writer_queued_appends",
                "Appends waiting for the chain writer",
                i64::try_from(queued).unwrap_or(i64::MAX),
            )?;
            scrape.gauge(
                "agentsec_audit_chain_head",
                "The last sequence this process committed or read at start",
                i64::try_from(*head.borrow()).unwrap_or(i64::MAX),
            )
        });
    }

    /// Appends events in order; returns once they are committed.
    pub async fn append(
        &self,
        events: Vec<PreparedEvent>,
    ) -> Result<Vec<AppendOutcome>, Arc<WriteError>> {
        let started = Instant::now();
        let answer = self.append_unmeasured(events).await;
        let outcome = match &answer {
            Ok(outcomes) => {
                let duplicates = outcomes.iter().filter(|outcome| outcome.duplicate).count();
                let count = |label, value: usize| {
                    if value > 0 {
                        self.appended
                            .get_or_create(&[("duplicate", label)])
                            .inc_by(value as u64);
                    }
                };
                count("false", outcomes.len() - duplicates);
                count("true", duplicates);
                "committed"
            }
            Err(_) => "failed",
        };
        self.latency
            .get_or_create(&Outcome { outcome })
            .observe(started.elapsed().as_secs_f64());
        answer
    }

    async fn append_unmeasured(
        &self,
        events: Vec<PreparedEvent>,
    ) -> Result<Vec<AppendOutcome>, Arc<WriteError>> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { events, reply })
            .await
            .map_err(|_| Arc::new(WriteError::Stopped))?;
        answer.await.map_err(|_| Arc::new(WriteError::Stopped))?
    }

    /// The last committed sequence, updated after each commit of this
    /// process's writer.
    pub fn head(&self) -> watch::Receiver<u64> {
        self.head.clone()
    }
}

async fn run(
    db: DatabaseConnection,
    signer: Arc<SigningKey>,
    config: ChainConfig,
    mut jobs: mpsc::Receiver<Job>,
    head: watch::Sender<u64>,
) {
    let mut timer = tokio::time::interval(Duration::from_secs(config.checkpoint_every_secs));
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A job that did not fit the last group opens the next one.
    let mut carried: Option<Job> = None;
    loop {
        let first = if let Some(job) = carried.take() {
            job
        } else {
            tokio::select! {
            job = jobs.recv() => match job {
                Some(job) => job,
                None => break,
            },
            _ = timer.tick() => {
                match checkpoint_if_behind(&db, &signer).await {
                    Ok(Some(sequence)) => tracing::debug!(sequence, "timed checkpoint written"),
                    Ok(None) => {}
                    Err(err) => tracing::warn!(error = %err, "timed checkpoint failed; retrying at the next tick"),
                }
                continue;
            }
            }
        };
        let mut group_events = first.events.len();
        let mut group = vec![first];
        while group_events < config.max_group_events {
            match jobs.try_recv() {
                Ok(job) if group_events + job.events.len() > config.max_group_events => {
                    carried = Some(job);
                    break;
                }
                Ok(job) => {
                    group_events += job.events.len();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        match commit_group(&db, &signer, &config, &group).await {
            Ok((outcomes, new_head)) => {
                head.send_if_modified(|current| {
                    let advanced = new_head > *current;
                    if advanced {
                        *current = new_head;
                    }
                    advanced
                });
                for (job, outcome) in group.into_iter().zip(outcomes) {
                    // A caller that went away still had its events committed;
                    // its retry will find them as duplicates.
                    let _ = job.reply.send(Ok(outcome));
                }
            }
            Err(err) => {
                tracing::error!(error = %err, events = group_events, "group commit failed; nothing of it was stored");
                let err = Arc::new(err);
                for job in group {
                    let _ = job.reply.send(Err(err.clone()));
                }
            }
        }
    }
}

/// Appends every job's events in one transaction; returns the outcomes per
/// job and the new head.
async fn commit_group(
    db: &DatabaseConnection,
    signer: &SigningKey,
    config: &ChainConfig,
    group: &[Job],
) -> Result<(Vec<Vec<AppendOutcome>>, u64), WriteError> {
    // Fast path: assume every id is new (retries are rare) and let the
    // unique index on event_id say otherwise; then the transaction has
    // rolled back and the group is redone with a lookup of stored ids.
    match commit_group_once(db, signer, config, group, IdCheck::OnConflict).await {
        Err(WriteError::Storage(err)) if is_unique_violation(&err) => {
            commit_group_once(db, signer, config, group, IdCheck::LookUp).await
        }
        other => other,
    }
}

/// How a group learns which of its ids are already stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdCheck {
    /// Insert as if all were new; a duplicate fails the insert.
    OnConflict,
    /// Query the stored ids first.
    LookUp,
}

fn is_unique_violation(err: &DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

async fn commit_group_once(
    db: &DatabaseConnection,
    signer: &SigningKey,
    config: &ChainConfig,
    group: &[Job],
    id_check: IdCheck,
) -> Result<(Vec<Vec<AppendOutcome>>, u64), WriteError> {
    let started = std::time::Instant::now();
    let tx = db.begin().await?;
    queries::lock_chain(&tx).await?;
    let ids: Vec<&str> = group
        .iter()
        .flat_map(|job| job.events.iter().map(|event| event.event_id.as_str()))
        .collect();
    let mut known = match id_check {
        IdCheck::LookUp => queries::existing_ids(&tx, &ids).await?,
        IdCheck::OnConflict => std::collections::HashMap::with_capacity(ids.len()),
    };
    let (head, head_hash) = queries::head(&tx).await?.unwrap_or((0, GENESIS_HASH));
    let (mut sequence, mut prev) = (head, head_hash);
    let mut last_checkpoint = queries::last_checkpoint_sequence(&tx).await?;
    let head_read = started.elapsed();
    let mut checkpoints = Vec::new();
    let mut blocks = BlockBuilder::after(head, head_hash);
    let mut new_ids: Vec<(&str, u64)> = Vec::with_capacity(ids.len());
    let mut outcomes = Vec::with_capacity(group.len());
    for job in group {
        let mut job_outcomes = Vec::with_capacity(job.events.len());
        for event in &job.events {
            let id = &event.event_id;
            if let Some(existing) = known.get(id) {
                job_outcomes.push(AppendOutcome {
                    event_id: id.clone(),
                    sequence: *existing,
                    duplicate: true,
                });
                continue;
            }
            sequence += 1;
            let hash = chain_hash(&prev, event.body.as_bytes());
            blocks.push(&event.body, &event.keys, hash);
            new_ids.push((id.as_str(), sequence));
            known.insert(id.clone(), sequence);
            job_outcomes.push(AppendOutcome {
                event_id: id.clone(),
                sequence,
                duplicate: false,
            });
            prev = hash;
            // A checkpoint exactly every N events, at the event that
            // completes them. saturating_sub: a checkpoint above the head
            // (newest events deleted) must not wrap; verification reports it.
            if sequence.saturating_sub(last_checkpoint) >= config.checkpoint_every_events {
                checkpoints.push((sequence, hash));
                last_checkpoint = sequence;
            }
        }
        outcomes.push(job_outcomes);
    }
    let appended = new_ids.len();
    let chained = started.elapsed();
    // Ids first: a stored id fails the group before its blocks are sent.
    queries::insert_event_ids(&tx, &new_ids).await?;
    let ids_written = started.elapsed();
    queries::insert_blocks(&tx, blocks.finish()).await?;
    let blocks_written = started.elapsed();
    for (checkpoint_sequence, head_hash) in checkpoints {
        write_checkpoint(&tx, signer, checkpoint_sequence, head_hash).await?;
    }
    tx.commit().await?;
    tracing::debug!(
        events = ids.len(),
        appended,
        head = sequence,
        ?head_read,
        ?chained,
        ?ids_written,
        ?blocks_written,
        elapsed = ?started.elapsed(),
        "group committed"
    );
    Ok((outcomes, sequence))
}

/// Signs the head when events arrived since the last checkpoint.
async fn checkpoint_if_behind(
    db: &DatabaseConnection,
    signer: &SigningKey,
) -> Result<Option<u64>, WriteError> {
    let tx = db.begin().await?;
    queries::lock_chain(&tx).await?;
    let Some((sequence, hash)) = queries::head(&tx).await? else {
        return Ok(None);
    };
    // `>=`: also covers a checkpoint above the head, which verification
    // reports as deleted events; signing a lower head would hide nothing.
    if queries::last_checkpoint_sequence(&tx).await? >= sequence {
        return Ok(None);
    }
    write_checkpoint(&tx, signer, sequence, hash).await?;
    tx.commit().await?;
    Ok(Some(sequence))
}

async fn write_checkpoint(
    tx: &sea_orm::DatabaseTransaction,
    signer: &SigningKey,
    sequence: u64,
    head_hash: Hash,
) -> Result<(), WriteError> {
    let time = now_micros();
    let signature = signer
        .sign_bytes(&signed_message(sequence, &head_hash, time, signer.kid()))
        .map_err(|err| WriteError::Signing(err.to_string()))?;
    let checkpoint = Checkpoint {
        sequence,
        head_hash,
        time,
        key_id: signer.kid().to_owned(),
        signature,
    };
    queries::insert_checkpoint(tx, &checkpoint).await?;
    Ok(())
}

/// Now, truncated to microseconds like every stored time.
fn now_micros() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}
