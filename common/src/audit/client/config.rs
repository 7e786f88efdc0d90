//! How the audit client reaches audit-svc and how much it buffers (the
//! `[audit]` table of every service).

use serde::{Deserialize, Serialize};

use super::super::MAX_BATCH_EVENTS;
use crate::config::{check_between, check_http_url, check_name, ConfigError};

/// How the audit client reaches audit-svc and how much it buffers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditClientConfig {
    /// audit-svc base URL, e.g. `http://127.0.0.1:7404`.
    pub endpoint: String,
    /// Most events waiting in memory (not counting the batch in flight).
    pub queue_capacity: usize,
    /// Most events per `AppendEvents` call (at most 1,000).
    pub max_batch: usize,
    /// Longest wait for a batch to fill before a partial batch is sent.
    pub flush_interval_ms: u64,
    /// What `record()` does when the queue is full.
    pub when_full: WhenFull,
    /// First retry delay after a failed call; doubles on each further failure.
    pub retry_initial_backoff_ms: u64,
    /// Largest retry delay.
    pub retry_max_backoff_ms: u64,
    /// How long shutdown keeps sending queued events before it gives up.
    pub shutdown_flush_timeout_secs: u64,
    /// The audience of the service's token towards audit-svc (audit-svc's
    /// `audience`); the token holds `agentsec:audit:append`.
    pub audience: String,
}

impl Default for AuditClientConfig {
    fn default() -> Self {
        Self {
            endpoint: "http://127.0.0.1:7404".to_owned(),
            queue_capacity: 10_000,
            max_batch: 500,
            flush_interval_ms: 20,
            when_full: WhenFull::Wait,
            retry_initial_backoff_ms: 50,
            retry_max_backoff_ms: 5_000,
            shutdown_flush_timeout_secs: 30,
            audience: "agentsec-audit".to_owned(),
        }
    }
}

impl AuditClientConfig {
    /// Checks the values; errors name the key as `audit.<key>`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = check_http_url("audit.endpoint", &self.endpoint)?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(ConfigError::invalid("audit.endpoint", "must name a host"));
        }
        if !(1..=1_000_000).contains(&self.queue_capacity) {
            return Err(ConfigError::invalid(
                "audit.queue_capacity",
                "must be between 1 and 1000000",
            ));
        }
        if !(1..=MAX_BATCH_EVENTS).contains(&self.max_batch) {
            return Err(ConfigError::invalid(
                "audit.max_batch",
                format!("must be between 1 and {MAX_BATCH_EVENTS}"),
            ));
        }
        if self.flush_interval_ms > 60_000 {
            return Err(ConfigError::invalid(
                "audit.flush_interval_ms",
                "must be at most 60000",
            ));
        }
        if !(1..=60_000).contains(&self.retry_initial_backoff_ms) {
            return Err(ConfigError::invalid(
                "audit.retry_initial_backoff_ms",
                "must be between 1 and 60000",
            ));
        }
        if self.retry_max_backoff_ms < self.retry_initial_backoff_ms
            || self.retry_max_backoff_ms > 600_000
        {
            return Err(ConfigError::invalid(
                "audit.retry_max_backoff_ms",
                "must be at least audit.retry_initial_backoff_ms and at most 600000",
            ));
        }
        check_between(
            "audit.shutdown_flush_timeout_secs",
            self.shutdown_flush_timeout_secs,
            1,
            3_600,
        )?;
        check_name("audit.audience", &self.audience, 256)
    }
}

/// What `record()` does when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Wait for room: the caller is slowed down to audit-svc's pace.
    #[default]
    Wait,
    /// Return `QueueFull` at once, so the caller can fail its action closed.
    Fail,
}
