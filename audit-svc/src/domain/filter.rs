//! Which events a query, tail or export wants.

use chrono::{DateTime, Utc};

/// All set fields must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub tenant: Option<String>,
    pub agent_id: Option<String>,
    pub person_subject: Option<String>,
    pub trace_id: Option<String>,
    pub decision_id: Option<String>,
    /// Any of these kinds; empty means any kind.
    pub kinds: Vec<String>,
    /// `allow`, `deny` or `error`.
    pub outcome: Option<String>,
    /// Inclusive.
    pub start_time: Option<DateTime<Utc>>,
    /// Exclusive.
    pub end_time: Option<DateTime<Utc>>,
}

/// Result order by sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    NewestFirst,
    OldestFirst,
}

/// A page of a query: events strictly after `after` in `order`.
#[derive(Debug, Clone)]
pub struct PageCursor {
    pub order: Order,
    /// The last sequence of the previous page.
    pub after: Option<u64>,
    pub limit: u64,
}
