//! Blocks: how the chain is stored. A block holds consecutive events of one
//! group commit as their canonical bytes joined by `\n` (exactly the bytes
//! the hashes cover; canonical JSON escapes every newline, so `\n` never
//! occurs inside an event), the hash of each event, the hash before the
//! first, and a summary of the keys queries filter on.

use std::borrow::Cow;

use chrono::{DateTime, Utc};

use super::filter::EventFilter;
use super::Hash;

/// Most events in one block. Queries read whole blocks, so a block stays
/// small enough to read for one page of answers; the writer's groups are
/// split into blocks of at most this many events.
pub const MAX_BLOCK_EVENTS: usize = 4_096;
/// Most bytes of canonical events in one block (a single event is at most
/// 32 KiB, so a block always has room for one).
pub const MAX_BLOCK_BYTES: usize = 4 << 20;

/// The separator between events in a block's `events`.
pub const EVENT_SEPARATOR: char = '\n';

/// One stored block, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub first_sequence: u64,
    /// The block's stated range; verification checks that the events and
    /// hashes cover it exactly.
    pub last_sequence: u64,
    /// The hash of event `first_sequence - 1` (genesis for sequence 1).
    pub prev_hash: Vec<u8>,
    /// 32 bytes per event, in sequence order.
    pub hashes: Vec<u8>,
    /// Canonical bytes of each event, joined by [`EVENT_SEPARATOR`].
    pub events: String,
}

impl Block {
    /// The event lines, in sequence order.
    pub fn lines(&self) -> std::str::Split<'_, char> {
        self.events.split(EVENT_SEPARATOR)
    }

    /// The stored hash of `sequence`, if the block holds one for it.
    pub fn hash_at(&self, sequence: u64) -> Option<&[u8]> {
        let index = usize::try_from(sequence.checked_sub(self.first_sequence)?).ok()?;
        self.hashes.get(index * 32..index * 32 + 32)
    }

    /// The hash before `sequence`: the previous event's stored hash, or the
    /// block's `prev_hash` for its first event.
    pub fn prev_hash_of(&self, sequence: u64) -> Option<&[u8]> {
        if sequence == self.first_sequence {
            Some(&self.prev_hash)
        } else {
            self.hash_at(sequence.checked_sub(1)?)
        }
    }
}

/// One stored event as it appears in answers and exports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainRecord {
    pub sequence: u64,
    /// The canonical bytes the hash covers.
    pub body: String,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

/// The keys of one event that block summaries record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventKeys<'a> {
    pub time: DateTime<Utc>,
    pub tenant: Cow<'a, str>,
    pub agent_id: Cow<'a, str>,
    pub person_subject: Cow<'a, str>,
    pub trace_id: Cow<'a, str>,
    pub decision_id: Cow<'a, str>,
    pub kind: Cow<'a, str>,
    pub outcome: Cow<'a, str>,
}

impl<'a> EventKeys<'a> {
    /// The keys of canonical event bytes; `None` when they are not a
    /// canonical event with a valid time. Reads the top-level members in
    /// one pass and borrows every value that holds no escape: this runs for
    /// every event verification or a filtered scan reads.
    pub fn parse(body: &'a str) -> Option<Self> {
        let mut fields: [Option<Cow<'a, str>>; 8] = Default::default();
        let mut reader = TopLevel::new(body)?;
        while let Some((key, value)) = reader.next_member()? {
            let slot = match key {
                "agent_id" => 0,
                "decision_id" => 1,
                "kind" => 2,
                "outcome" => 3,
                "person_subject" => 4,
                "tenant" => 5,
                "time" => 6,
                "trace_id" => 7,
                _ => continue,
            };
            fields[slot] = Some(value?);
        }
        let [agent_id, decision_id, kind, outcome, person_subject, tenant, time, trace_id] = fields;
        let time = DateTime::parse_from_rfc3339(&time?)
            .ok()?
            .with_timezone(&Utc);
        Some(Self {
            time,
            tenant: tenant?,
            agent_id: agent_id?,
            person_subject: person_subject?,
            trace_id: trace_id?,
            decision_id: decision_id?,
            kind: kind?,
            outcome: outcome?,
        })
    }

    /// Whether the event passes every condition of `filter`.
    pub fn matches(&self, filter: &EventFilter) -> bool {
        let equal = |wanted: &Option<String>, value: &str| {
            wanted.as_deref().is_none_or(|wanted| wanted == value)
        };
        equal(&filter.tenant, &self.tenant)
            && equal(&filter.agent_id, &self.agent_id)
            && equal(&filter.person_subject, &self.person_subject)
            && equal(&filter.trace_id, &self.trace_id)
            && equal(&filter.decision_id, &self.decision_id)
            && equal(&filter.outcome, &self.outcome)
            && (filter.kinds.is_empty() || filter.kinds.iter().any(|k| *k == self.kind))
            && filter.start_time.is_none_or(|start| self.time >= start)
            && filter.end_time.is_none_or(|end| self.time < end)
    }
}

/// A member of an object: its key and, for a string value, the value.
type Member<'a> = (&'a str, Option<Cow<'a, str>>);

/// Walks the members of a JSON object without building it: keys are read
/// as written (canonical keys hold no escapes), string values are returned
/// (decoded only when they hold an escape), other values are skipped.
struct TopLevel<'a> {
    text: &'a str,
    position: usize,
    done: bool,
}

impl<'a> TopLevel<'a> {
    fn new(text: &'a str) -> Option<Self> {
        (text.as_bytes().first() == Some(&b'{')).then_some(Self {
            text,
            position: 1,
            done: false,
        })
    }

    fn byte(&self) -> Option<u8> {
        self.text.as_bytes().get(self.position).copied()
    }

    /// The next member: its key and, for a string value, the value (a
    /// non-string value is `None`). `None` overall when the text is not a
    /// well-formed object of this shape.
    fn next_member(&mut self) -> Option<Option<Member<'a>>> {
        if self.done {
            return Some(None);
        }
        if self.byte()? == b'}' {
            self.done = true;
            return Some(None);
        }
        let (key, escaped) = self.string()?;
        if escaped || self.byte()? != b':' {
            return None;
        }
        self.position += 1;
        let value = if self.byte()? == b'"' {
            let (raw, escaped) = self.string()?;
            Some(if escaped {
                // Decode escapes the standard way; rare in practice.
                let quoted = self
                    .text
                    .get(self.position - raw.len() - 2..self.position)?;
                Cow::Owned(serde_json::from_str::<String>(quoted).ok()?)
            } else {
                Cow::Borrowed(raw)
            })
        } else {
            self.skip_value()?;
            None
        };
        match self.byte()? {
            b',' => self.position += 1,
            b'}' => {}
            _ => return None,
        }
        Some(Some((key, value)))
    }

    /// Reads a string at the current position; returns its raw content and
    /// whether it holds an escape.
    fn string(&mut self) -> Option<(&'a str, bool)> {
        if self.byte()? != b'"' {
            return None;
        }
        let start = self.position + 1;
        let bytes = self.text.as_bytes();
        let mut index = start;
        let mut escaped = false;
        loop {
            match bytes.get(index)? {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    index += 2;
                }
                _ => index += 1,
            }
        }
        self.position = index + 1;
        Some((self.text.get(start..index)?, escaped))
    }

    /// Skips an array or object (strings inside may hold brackets).
    fn skip_value(&mut self) -> Option<()> {
        let mut depth = 0usize;
        loop {
            match self.byte()? {
                b'"' => {
                    self.string()?;
                    continue;
                }
                b'[' | b'{' => depth += 1,
                b']' | b'}' => depth = depth.checked_sub(1)?,
                _ => {}
            }
            self.position += 1;
            if depth == 0 {
                return Some(());
            }
        }
    }
}

/// What a block records about its events' keys, so that a query reads only
/// blocks that can hold a match: sorted distinct values and the time span.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockSummary {
    pub min_time: DateTime<Utc>,
    pub max_time: DateTime<Utc>,
    pub tenants: Vec<String>,
    pub agent_ids: Vec<String>,
    pub person_subjects: Vec<String>,
    pub trace_ids: Vec<String>,
    pub decision_ids: Vec<String>,
    pub kinds: Vec<String>,
    pub outcomes: Vec<String>,
}

/// The summary columns by name, in a fixed order.
pub const SUMMARY_COLUMNS: [&str; 7] = [
    "tenants",
    "agent_ids",
    "person_subjects",
    "trace_ids",
    "decision_ids",
    "kinds",
    "outcomes",
];

impl BlockSummary {
    /// The value lists in [`SUMMARY_COLUMNS`] order.
    pub fn arrays(&self) -> [&Vec<String>; 7] {
        [
            &self.tenants,
            &self.agent_ids,
            &self.person_subjects,
            &self.trace_ids,
            &self.decision_ids,
            &self.kinds,
            &self.outcomes,
        ]
    }

    /// The value lists in [`SUMMARY_COLUMNS`] order, by value.
    pub fn into_arrays(self) -> [Vec<String>; 7] {
        [
            self.tenants,
            self.agent_ids,
            self.person_subjects,
            self.trace_ids,
            self.decision_ids,
            self.kinds,
            self.outcomes,
        ]
    }

    /// Starts checking events against this summary.
    pub fn check(&self) -> SummaryCheck<'_> {
        SummaryCheck {
            summary: self,
            lookups: self.arrays().map(|values| Lookup::of(values)),
            used: self.arrays().map(|values| vec![false; values.len()]),
            min_seen: None,
            max_seen: None,
        }
    }
}

/// Checks events against a stored summary: each event's values must be
/// listed, and (for a whole block) every listed value used. Marks instead
/// of sets, no allocation per event.
pub struct SummaryCheck<'s> {
    summary: &'s BlockSummary,
    lookups: [Lookup<'s>; 7],
    used: [Vec<bool>; 7],
    min_seen: Option<DateTime<Utc>>,
    max_seen: Option<DateTime<Utc>>,
}

impl SummaryCheck<'_> {
    /// The first summary column that does not list this event's value (or
    /// `time` when the event's time is outside the span).
    pub fn missing(&mut self, keys: &EventKeys<'_>) -> Option<&'static str> {
        if keys.time < self.summary.min_time || keys.time > self.summary.max_time {
            return Some("time");
        }
        self.min_seen = Some(self.min_seen.map_or(keys.time, |t| t.min(keys.time)));
        self.max_seen = Some(self.max_seen.map_or(keys.time, |t| t.max(keys.time)));
        let values = keys.values();
        for (index, value) in values.iter().enumerate() {
            match self.lookups[index].position(value) {
                Some(position) => self.used[index][position] = true,
                None => return Some(SUMMARY_COLUMNS[index]),
            }
        }
        None
    }

    /// After every event of the block: the first column that lists a value
    /// no event has (or `time` when the span is wider than the events').
    pub fn unused(&self) -> Option<&'static str> {
        if self.min_seen != Some(self.summary.min_time)
            || self.max_seen != Some(self.summary.max_time)
        {
            return Some("time");
        }
        self.used
            .iter()
            .position(|marks| marks.contains(&false))
            .map(|index| SUMMARY_COLUMNS[index])
    }
}

/// Finds a value's position in a summary list: binary search in short
/// lists, a hash map in long ones (trace and decision ids are often one per
/// event, where a binary search costs a dozen string comparisons).
enum Lookup<'s> {
    Sorted(&'s [String]),
    Hashed(std::collections::HashMap<&'s str, usize>),
}

impl<'s> Lookup<'s> {
    /// Lists up to this long are searched, longer ones hashed.
    const SEARCHED: usize = 32;

    fn of(values: &'s [String]) -> Self {
        if values.len() <= Self::SEARCHED {
            return Self::Sorted(values);
        }
        Self::Hashed(
            values
                .iter()
                .enumerate()
                .map(|(position, value)| (value.as_str(), position))
                .collect(),
        )
    }

    fn position(&self, value: &str) -> Option<usize> {
        match self {
            Self::Sorted(values) => values
                .binary_search_by(|item| item.as_str().cmp(value))
                .ok(),
            Self::Hashed(positions) => positions.get(value).copied(),
        }
    }
}

impl EventKeys<'_> {
    /// The summarised values in [`SUMMARY_COLUMNS`] order.
    fn values(&self) -> [&str; 7] {
        [
            &self.tenant,
            &self.agent_id,
            &self.person_subject,
            &self.trace_id,
            &self.decision_id,
            &self.kind,
            &self.outcome,
        ]
    }
}

/// Collects the values of a block's events; sorts and deduplicates them
/// once at the end (cheaper than a set kept ordered per event).
#[derive(Default)]
pub struct SummaryBuilder<'a> {
    min_time: Option<DateTime<Utc>>,
    max_time: Option<DateTime<Utc>>,
    values: [Vec<&'a str>; 7],
}

impl<'a> SummaryBuilder<'a> {
    pub fn add(&mut self, keys: &'a EventKeys<'_>) {
        self.min_time = Some(self.min_time.map_or(keys.time, |t| t.min(keys.time)));
        self.max_time = Some(self.max_time.map_or(keys.time, |t| t.max(keys.time)));
        for (list, value) in self.values.iter_mut().zip(keys.values()) {
            list.push(value);
        }
    }

    pub fn finish(self) -> BlockSummary {
        let [tenants, agent_ids, person_subjects, trace_ids, decision_ids, kinds, outcomes] =
            self.values.map(|mut list| {
                list.sort_unstable();
                list.dedup();
                list.into_iter().map(str::to_owned).collect::<Vec<_>>()
            });
        BlockSummary {
            min_time: self.min_time.unwrap_or_default(),
            max_time: self.max_time.unwrap_or_default(),
            tenants,
            agent_ids,
            person_subjects,
            trace_ids,
            decision_ids,
            kinds,
            outcomes,
        }
    }
}

/// A block being written: built by the chain writer from chained events.
#[derive(Debug, Clone)]
pub struct NewBlock {
    pub block: Block,
    pub summary: BlockSummary,
}

/// Splits chained events (sequence order, consecutive) into blocks of at
/// most [`MAX_BLOCK_EVENTS`] events and [`MAX_BLOCK_BYTES`] bytes.
pub struct BlockBuilder<'a> {
    first_sequence: u64,
    prev_hash: Hash,
    count: usize,
    events: String,
    hashes: Vec<u8>,
    summary: SummaryBuilder<'a>,
    done: Vec<NewBlock>,
}

impl<'a> BlockBuilder<'a> {
    /// Starts after the event `head` with hash `head_hash`.
    pub fn after(head: u64, head_hash: Hash) -> Self {
        Self {
            first_sequence: head + 1,
            prev_hash: head_hash,
            count: 0,
            events: String::new(),
            hashes: Vec::new(),
            summary: SummaryBuilder::default(),
            done: Vec::new(),
        }
    }

    /// Adds the next event: its canonical bytes, keys and hash.
    pub fn push(&mut self, body: &str, keys: &'a EventKeys<'_>, hash: Hash) {
        let full = self.count >= MAX_BLOCK_EVENTS
            || (self.count > 0 && self.events.len() + 1 + body.len() > MAX_BLOCK_BYTES);
        if full {
            self.seal();
        }
        if self.count > 0 {
            self.events.push(EVENT_SEPARATOR);
        }
        self.events.push_str(body);
        self.hashes.extend_from_slice(&hash);
        self.summary.add(keys);
        self.count += 1;
    }

    fn seal(&mut self) {
        if self.count == 0 {
            return;
        }
        let count = self.count as u64;
        let hashes = std::mem::take(&mut self.hashes);
        let next_prev: Hash = hashes
            .get(hashes.len() - 32..)
            .and_then(|last| last.try_into().ok())
            .unwrap_or(self.prev_hash);
        self.done.push(NewBlock {
            block: Block {
                first_sequence: self.first_sequence,
                last_sequence: self.first_sequence + count - 1,
                prev_hash: self.prev_hash.to_vec(),
                hashes,
                events: std::mem::take(&mut self.events),
            },
            summary: std::mem::take(&mut self.summary).finish(),
        });
        self.first_sequence += count;
        self.prev_hash = next_prev;
        self.count = 0;
    }

    /// The blocks, in sequence order.
    pub fn finish(mut self) -> Vec<NewBlock> {
        self.seal();
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::canonical::chain_hash;
    use crate::domain::GENESIS_HASH;

    fn body(n: u64, agent: &str) -> String {
        format!(
            r#"{{"action":"","actor_chain":[],"agent_id":"{agent}","attributes":{{"tenant":"not-this"}},"audience":"","decision_id":"dec_{n}","id":"evt_{n}","kind":"decision","outcome":"allow","person_subject":"p\"1","policy_ids":[],"reason":"","resource_id":"","resource_type":"","service":"s","span_id":"","tenant":"acme","time":"2026-09-21T14:13:2{n}.000000Z","trace_id":""}}"#
        )
    }

    #[test]
    fn keys_come_from_the_top_level_fields() {
        let text = body(1, "agt_1");
        let keys = EventKeys::parse(&text).unwrap();
        assert_eq!(keys.tenant, "acme", "not the attribute of the same name");
        assert_eq!(keys.person_subject, "p\"1", "escapes are decoded");
        assert_eq!(keys.time.timestamp(), 1_790_000_001);
        assert!(EventKeys::parse("{}").is_none());
    }

    #[test]
    fn keys_agree_with_a_full_parse() {
        use crate::domain::canonical::CanonicalEvent;
        let mut event = CanonicalEvent::from_bytes(body(2, "agt_2").as_bytes()).unwrap();
        event.attributes.insert("trace_id".into(), "x}\"]{[".into());
        event.reason = "a \\ b \" c \n ] }".into();
        event.tenant = "ü\u{1}\"".into();
        event.actor_chain = vec![crate::domain::canonical::CanonicalActor {
            agent_id: "[{".into(),
            issuer: "\"".into(),
        }];
        let text = String::from_utf8(event.to_bytes()).unwrap();
        let keys = EventKeys::parse(&text).unwrap();
        assert_eq!(keys.tenant, event.tenant);
        assert_eq!(keys.trace_id, event.trace_id);
        assert_eq!(keys.agent_id, event.agent_id);
        assert_eq!(keys.person_subject, event.person_subject);
        assert_eq!(keys.decision_id, event.decision_id);
        assert!(
            matches!(keys.agent_id, Cow::Borrowed(_)),
            "no copy without escapes"
        );
        for broken in [
            "",
            "{",
            "{\"a\"",
            "{\"a\":[}",
            "[]",
            &text[..text.len() - 1],
        ] {
            assert!(EventKeys::parse(broken).is_none(), "{broken}");
        }
    }

    #[test]
    fn filters_match_exactly() {
        let text = body(1, "agt_1");
        let keys = EventKeys::parse(&text).unwrap();
        let mut filter = EventFilter {
            tenant: Some("acme".into()),
            kinds: vec!["other".into(), "decision".into()],
            start_time: Some(keys.time),
            ..EventFilter::default()
        };
        assert!(keys.matches(&filter));
        filter.end_time = Some(keys.time);
        assert!(!keys.matches(&filter), "end is exclusive");
        let other_agent = EventFilter {
            agent_id: Some("agt_2".into()),
            ..EventFilter::default()
        };
        assert!(!keys.matches(&other_agent));
    }

    #[test]
    fn groups_split_into_linked_blocks_with_summaries() {
        let bodies: Vec<String> = (1..=5)
            .map(|n| body(n, if n < 3 { "agt_b" } else { "agt_a" }))
            .collect();
        let keys: Vec<EventKeys> = bodies
            .iter()
            .map(|b| EventKeys::parse(b).unwrap())
            .collect();
        let mut builder = BlockBuilder::after(0, GENESIS_HASH);
        let mut prev = GENESIS_HASH;
        let mut hashes = Vec::new();
        for (text, keys) in bodies.iter().zip(&keys) {
            let hash = chain_hash(&prev, text.as_bytes());
            builder.push(text, keys, hash);
            hashes.push(hash);
            prev = hash;
        }
        let blocks = builder.finish();
        assert_eq!(blocks.len(), 1);
        let block = &blocks[0].block;
        assert_eq!((block.first_sequence, block.last_sequence), (1, 5));
        assert_eq!(block.lines().count(), 5);
        assert_eq!(block.hash_at(3), Some(hashes[2].as_slice()));
        assert_eq!(block.prev_hash_of(1), Some(GENESIS_HASH.as_slice()));
        assert_eq!(block.prev_hash_of(4), Some(hashes[2].as_slice()));
        let summary = &blocks[0].summary;
        assert_eq!(
            summary.agent_ids,
            vec!["agt_a", "agt_b"],
            "sorted, distinct"
        );
        assert_eq!(summary.tenants, vec!["acme"]);
        assert_eq!(block.lines().nth(1), Some(bodies[1].as_str()));
    }

    #[test]
    fn a_full_block_is_sealed_and_the_next_links_to_it() {
        let mut builder = BlockBuilder::after(10, GENESIS_HASH);
        let text = body(1, "agt_1");
        let keys = EventKeys::parse(&text).unwrap();
        let mut prev = GENESIS_HASH;
        for _ in 0..MAX_BLOCK_EVENTS + 1 {
            prev = chain_hash(&prev, text.as_bytes());
            builder.push(&text, &keys, prev);
        }
        let blocks = builder.finish();
        assert_eq!(blocks.len(), 2);
        let (first, second) = (&blocks[0].block, &blocks[1].block);
        assert_eq!(first.first_sequence, 11);
        assert_eq!(second.first_sequence, first.last_sequence + 1);
        assert_eq!(
            Some(second.prev_hash.as_slice()),
            first.hash_at(first.last_sequence)
        );
        assert_eq!(second.last_sequence, 11 + MAX_BLOCK_EVENTS as u64);
    }

    #[test]
    fn long_summary_lists_are_checked_the_same_way() {
        let bodies: Vec<String> = (0..40)
            .map(|n| body(n % 10, &format!("agt_{n:02}")))
            .collect();
        let keys: Vec<EventKeys> = bodies
            .iter()
            .map(|b| EventKeys::parse(b).unwrap())
            .collect();
        let mut builder = SummaryBuilder::default();
        keys.iter().for_each(|k| builder.add(k));
        let mut summary = builder.finish();
        assert_eq!(summary.agent_ids.len(), 40);
        let mut check = summary.check();
        assert!(keys.iter().all(|k| check.missing(k).is_none()));
        assert_eq!(check.unused(), None);
        summary.agent_ids.retain(|a| a != "agt_17");
        let mut check = summary.check();
        assert_eq!(check.missing(&keys[17]), Some("agent_ids"));
        summary.agent_ids.push("agt_zz".into());
        let mut check = summary.check();
        keys.iter()
            .filter(|k| k.agent_id != "agt_17")
            .for_each(|k| assert!(check.missing(k).is_none()));
        assert_eq!(check.unused(), Some("agent_ids"));
    }

    #[test]
    fn summaries_name_what_they_miss() {
        let text = body(1, "agt_1");
        let keys = EventKeys::parse(&text).unwrap();
        let summary_of = |keys: &EventKeys<'_>| {
            let mut builder = SummaryBuilder::default();
            builder.add(keys);
            builder.finish()
        };
        let mut summary = summary_of(&keys);
        let mut check = summary.check();
        assert_eq!(check.missing(&keys), None);
        assert_eq!(check.unused(), None);
        summary.agent_ids = vec!["agt_0".into(), "agt_1".into()];
        let mut check = summary.check();
        assert_eq!(check.missing(&keys), None);
        assert_eq!(
            check.unused(),
            Some("agent_ids"),
            "agt_0 belongs to no event"
        );
        summary.agent_ids = vec!["agt_other".into()];
        assert_eq!(summary.check().missing(&keys), Some("agent_ids"));
    }
}
