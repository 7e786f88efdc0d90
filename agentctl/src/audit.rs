//! `agentctl audit ...`: read audit-svc's hash-chained trail as a reader
//! (an admin token): query events by agent, person, trace, decision, kind,
//! outcome and time; verify the chain (in ranges, with progress on a
//! terminal); follow it as events are committed (`tail`); export it as the
//! JSON lines audit-svc defines.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use agentsec_common::tls::ClientTls;
use agentsec_proto::audit::v1::audit_service_client::AuditServiceClient;
use agentsec_proto::audit::v1::{
    EventFilter, ExportEventsRequest, Order, QueryEventsRequest, StoredEvent, TailEventsRequest,
    VerifyChainRequest,
};
use agentsec_proto::common::v1::{Outcome, PageRequest};
use anyhow::Context as _;
use serde_json::{json, Value};
use tonic::transport::Channel;

use crate::admin::{bearer, connect, failed, AdminArgs, ServiceUrls};
use crate::output::{now, time, Column, Format, OutputArgs};
use crate::page::{LimitArgs, Pager};
use crate::progress::Progress;

/// Events verified per VerifyChain call, so that progress can be shown
/// (each range after the first also checks its link to the one before).
const VERIFY_RANGE: u64 = 10_000;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  agentctl audit query --agent agt_... --since 1h
  agentctl audit query --trace-id 4bf92f3577b34da6a3ce929d0e0e4736 --oldest-first
  agentctl audit query --decision-id dec_... --output json
  agentctl audit query --person alice --kind grant.created --kind grant.revoked
  agentctl audit tail --kind decision
  agentctl audit verify
  agentctl audit export --file trail.jsonl

Times: RFC 3339 (2026-01-05T09:00:00Z) or an age (30s, 15m, 2h, 7d).")]
pub struct AuditArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(flatten)]
    urls: ServiceUrls,
    #[command(flatten)]
    output: OutputArgs,
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, clap::Subcommand)]
enum AuditCommand {
    /// Events matching the filters, newest first.
    Query {
        #[command(flatten)]
        filter: FilterArgs,
        /// Oldest first instead.
        #[arg(long)]
        oldest_first: bool,
        #[command(flatten)]
        limit: LimitArgs,
    },
    /// Follow events as they are committed, one line each (a table row,
    /// or a JSON object per line); Ctrl-C stops.
    Tail {
        #[command(flatten)]
        filter: FilterArgs,
        /// Every matching event from this sequence on, then the live ones
        /// (default: only events committed from now on).
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Recompute the hash chain and check its signed checkpoints.
    Verify {
        /// First sequence (default: the start).
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Last sequence (default: the head now).
        #[arg(long)]
        to: Option<u64>,
    },
    /// Write the trail as JSON lines with the chain fields (format in
    /// proto/agentsec/audit/v1/audit.proto), re-verifiable offline.
    Export {
        /// The file to write (default: stdout).
        #[arg(long)]
        file: Option<PathBuf>,
        /// First sequence (default: the start).
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Last sequence (default: the head now).
        #[arg(long)]
        to: Option<u64>,
        /// Filters (a filtered export is not contiguous: each line's hash
        /// verifies, the links between lines do not).
        #[command(flatten)]
        filter: FilterArgs,
    },
}

#[derive(Debug, Default, clap::Args)]
struct FilterArgs {
    /// Only this tenant.
    #[arg(long)]
    tenant: Option<String>,
    /// Only events about this agent.
    #[arg(long)]
    agent: Option<String>,
    /// Only events about this person.
    #[arg(long)]
    person: Option<String>,
    /// Only this W3C trace id.
    #[arg(long)]
    trace_id: Option<String>,
    /// Only this decision (`dec_...`).
    #[arg(long)]
    decision_id: Option<String>,
    /// Only these kinds, e.g. decision, grant.revoked (repeatable).
    #[arg(long = "kind")]
    kinds: Vec<String>,
    /// Only this outcome.
    #[arg(long, value_enum)]
    outcome: Option<OutcomeArg>,
    /// Only events at or after this time.
    #[arg(long)]
    since: Option<String>,
    /// Only events before this time.
    #[arg(long)]
    until: Option<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum OutcomeArg {
    Allow,
    Deny,
    Error,
}

/// A time flag: RFC 3339, or an age before now (`90s`, `15m`, `2h`, `7d`).
fn parse_time(text: &str, flag: &str) -> anyhow::Result<prost_types::Timestamp> {
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(prost_types::Timestamp {
            seconds: time.timestamp(),
            nanos: 0,
        });
    }
    let unit = text.chars().last().unwrap_or(' ');
    let seconds_per = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        _ => 0,
    };
    let count = text[..text.len() - unit.len_utf8().min(text.len())]
        .parse::<i64>()
        .ok()
        .filter(|count| *count >= 0 && seconds_per > 0);
    let Some(count) = count else {
        anyhow::bail!("{flag} `{text}` is neither an RFC 3339 time nor an age like 15m, 2h, 7d");
    };
    Ok(prost_types::Timestamp {
        seconds: now()? - count.saturating_mul(seconds_per),
        nanos: 0,
    })
}

impl FilterArgs {
    fn filter(&self) -> anyhow::Result<EventFilter> {
        let text = |value: &Option<String>| value.clone().unwrap_or_default();
        Ok(EventFilter {
            tenant: text(&self.tenant),
            agent_id: text(&self.agent),
            person_subject: text(&self.person),
            trace_id: text(&self.trace_id),
            decision_id: text(&self.decision_id),
            kinds: self.kinds.clone(),
            outcome: match self.outcome {
                None => Outcome::Unspecified,
                Some(OutcomeArg::Allow) => Outcome::Allow,
                Some(OutcomeArg::Deny) => Outcome::Deny,
                Some(OutcomeArg::Error) => Outcome::Error,
            } as i32,
            start_time: self
                .since
                .as_deref()
                .map(|since| parse_time(since, "--since"))
                .transpose()?,
            end_time: self
                .until
                .as_deref()
                .map(|until| parse_time(until, "--until"))
                .transpose()?,
        })
    }
}

const EVENTS: [Column; 10] = [
    Column::new("SEQ", "sequence"),
    Column::new("TIME", "time"),
    Column::new("SERVICE", "service"),
    Column::new("KIND", "kind"),
    Column::enumeration("OUTCOME", "outcome", "OUTCOME_"),
    Column::new("AGENT", "agent_id"),
    Column::new("PERSON", "person_subject"),
    Column::new("ACTION", "action"),
    Column::new("RESOURCE", "resource_id"),
    Column::new("REASON", "reason"),
];

/// A stored event as agentctl prints it in JSON (proto field names, the
/// event's fields beside its chain fields).
fn event_json(stored: &StoredEvent) -> Value {
    let event = stored.event.clone().unwrap_or_default();
    json!({
        "sequence": stored.sequence,
        "hash": stored.hash,
        "prev_hash": stored.prev_hash,
        "id": event.id,
        "time": time(event.time.as_ref()),
        "service": event.service,
        "kind": event.kind,
        "tenant": event.tenant,
        "agent_id": event.agent_id,
        "person_subject": event.person_subject,
        "actor_chain": event.actor_chain.map_or_else(Vec::new, |chain| {
            chain.actors.into_iter().map(|actor| actor.agent_id).collect()
        }),
        "action": event.action,
        "resource_type": event.resource_type,
        "resource_id": event.resource_id,
        "audience": event.audience,
        "outcome": Outcome::try_from(event.outcome).unwrap_or_default().as_str_name(),
        "reason": event.reason,
        "policy_ids": event.policy_ids,
        "decision_id": event.decision_id,
        "trace_id": event.trace_id,
        "span_id": event.span_id,
        "attributes": event.attributes,
    })
}

/// A reader's connection to audit-svc.
struct Reader {
    client: AuditServiceClient<Channel>,
    token: String,
}

impl Reader {
    /// The sequence of the newest stored event (0 for an empty trail).
    async fn head(&mut self) -> anyhow::Result<u64> {
        let request = QueryEventsRequest {
            filter: None,
            order: Order::NewestFirst as i32,
            page: Some(PageRequest {
                page_size: 1,
                page_token: String::new(),
            }),
        };
        let newest = self
            .client
            .query_events(bearer(request, &self.token)?)
            .await
            .map_err(failed)?
            .into_inner();
        Ok(newest.events.first().map_or(0, |event| event.sequence))
    }

    async fn query(
        &mut self,
        filter: EventFilter,
        oldest_first: bool,
        limit: &LimitArgs,
    ) -> anyhow::Result<Vec<StoredEvent>> {
        let order = if oldest_first {
            Order::OldestFirst
        } else {
            Order::NewestFirst
        };
        let mut pager = Pager::new(limit);
        let mut events = Vec::new();
        while let Some(page) = pager.next_page() {
            let request = QueryEventsRequest {
                filter: Some(filter.clone()),
                order: order as i32,
                page: Some(page),
            };
            let response = self
                .client
                .query_events(bearer(request, &self.token)?)
                .await
                .map_err(failed)?
                .into_inner();
            pager.take(&mut events, response.events, response.page);
        }
        Ok(events)
    }

    /// Verifies `from..=to` (to = the head when None) in ranges of
    /// [`VERIFY_RANGE`]; stops at the first broken range.
    async fn verify(&mut self, from: u64, to: Option<u64>) -> anyhow::Result<Value> {
        let head = match to {
            Some(to) => to,
            None => self.head().await?,
        };
        let from = from.max(1);
        let mut progress = Progress::on_terminal();
        let (mut events, mut checkpoints) = (0u64, 0u64);
        let mut start = from;
        let mut verdict =
            json!({"ok": true, "failure": "", "first_broken_sequence": 0, "reason": ""});
        while start <= head {
            let end = head.min(start.saturating_add(VERIFY_RANGE - 1));
            progress.update(|| format!("verifying the audit chain: {start}-{end} of {head}"));
            let request = VerifyChainRequest {
                start_sequence: start,
                end_sequence: end,
            };
            let answer = self
                .client
                .verify_chain(bearer(request, &self.token)?)
                .await
                .map_err(failed)?
                .into_inner();
            events += answer.events_verified;
            checkpoints += answer.checkpoints_verified;
            if !answer.ok {
                verdict = json!({
                    "ok": false,
                    "failure": answer.failure().as_str_name(),
                    "first_broken_sequence": answer.first_broken_sequence,
                    "reason": answer.reason,
                });
                break;
            }
            start = end + 1;
        }
        progress.finish();
        verdict["start_sequence"] = json!(from);
        verdict["end_sequence"] = json!(head);
        verdict["events_verified"] = json!(events);
        verdict["checkpoints_verified"] = json!(checkpoints);
        Ok(verdict)
    }

    /// Prints matching events as they are committed, from `from` (0: from
    /// now on), until `count` events or the end of the stream.
    async fn tail(
        &mut self,
        filter: EventFilter,
        from: u64,
        count: Option<u64>,
        format: Format,
    ) -> anyhow::Result<()> {
        let request = TailEventsRequest {
            filter: Some(filter),
            start_sequence: from,
        };
        let mut stream = self
            .client
            .tail_events(bearer(request, &self.token)?)
            .await
            .map_err(failed)?
            .into_inner();
        if format == Format::Table {
            let headers: Vec<&str> = EVENTS.iter().map(Column::header).collect();
            println!("{}", headers.join("  "));
        }
        let mut printed = 0u64;
        while count.is_none_or(|count| printed < count) {
            let Some(answer) = stream.message().await.map_err(failed)? else {
                break;
            };
            if let Some(stored) = answer.event {
                let mut out = std::io::stdout().lock();
                out.write_all(format.line(&event_json(&stored), &EVENTS).as_bytes())
                    .and_then(|()| out.flush())
                    .context("writing an event")?;
                printed += 1;
            }
        }
        Ok(())
    }

    /// Streams the export into `out`; the number of events written.
    async fn export(
        &mut self,
        request: ExportEventsRequest,
        out: &mut dyn std::io::Write,
    ) -> anyhow::Result<u64> {
        let head = match request.end_sequence {
            0 => self.head().await?,
            end => end,
        };
        let mut stream = self
            .client
            .export_events(bearer(request, &self.token)?)
            .await
            .map_err(failed)?
            .into_inner();
        let mut progress = Progress::on_terminal();
        let (mut lines, mut bytes) = (0u64, 0usize);
        while let Some(chunk) = stream.message().await.map_err(failed)? {
            out.write_all(&chunk.data).context("writing the export")?;
            lines += chunk.data.iter().filter(|byte| **byte == b'\n').count() as u64;
            bytes += chunk.data.len();
            progress.update(|| {
                format!(
                    "exporting the audit trail: {lines} events ({:.1} MiB), head {head}",
                    bytes as f64 / 1_048_576.0
                )
            });
        }
        out.flush().context("writing the export")?;
        progress.finish();
        Ok(lines)
    }
}

const VERDICT: [Column; 7] = [
    Column::drawn("CHAIN", |verdict| {
        if verdict["ok"] == true {
            "intact".to_owned()
        } else {
            "BROKEN".to_owned()
        }
    }),
    Column::drawn("RANGE", |verdict| {
        format!("{}-{}", verdict["start_sequence"], verdict["end_sequence"])
    }),
    Column::new("EVENTS VERIFIED", "events_verified"),
    Column::new("CHECKPOINTS", "checkpoints_verified"),
    Column::new("FIRST BROKEN", "first_broken_sequence"),
    Column::enumeration("FAILURE", "failure", "VERIFY_FAILURE_"),
    Column::new("REASON", "reason"),
];

pub async fn run(args: AuditArgs, tls: &Arc<ClientTls>) -> anyhow::Result<()> {
    let format = args.output.output;
    let (_, token) = args
        .admin
        .connect_and_token(&args.urls.identity, tls)
        .await?;
    let client = AuditServiceClient::new(connect(&args.urls.audit, "audit-svc", tls).await?);
    let mut reader = Reader { client, token };
    match args.command {
        AuditCommand::Query {
            filter,
            oldest_first,
            limit,
        } => {
            let events = reader.query(filter.filter()?, oldest_first, &limit).await?;
            let events: Vec<Value> = events.iter().map(event_json).collect();
            print!("{}", format.list(&events, &EVENTS, "no events match"));
        }
        AuditCommand::Tail {
            filter,
            from,
            count,
        } => reader.tail(filter.filter()?, from, count, format).await?,
        AuditCommand::Verify { from, to } => {
            let verdict = reader.verify(from, to).await?;
            print!("{}", format.one(&verdict, &VERDICT));
            if verdict["ok"] != true {
                anyhow::bail!("the audit chain is broken (see above)");
            }
        }
        AuditCommand::Export {
            file,
            from,
            to,
            filter,
        } => {
            let request = ExportEventsRequest {
                filter: Some(filter.filter()?),
                start_sequence: from,
                end_sequence: to.unwrap_or(0),
            };
            match &file {
                Some(path) => {
                    let mut out = std::io::BufWriter::new(
                        std::fs::File::create(path)
                            .with_context(|| format!("creating {}", path.display()))?,
                    );
                    let lines = reader.export(request, &mut out).await?;
                    eprintln!("exported {lines} events to {}", path.display());
                }
                None => {
                    let mut out = std::io::stdout().lock();
                    reader.export(request, &mut out).await?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_an_age() {
        let at = parse_time("2026-01-05T09:00:00Z", "--since").unwrap();
        assert_eq!(at.seconds, 1_767_603_600);
        let ago = parse_time("2h", "--since").unwrap();
        assert!((now().unwrap() - ago.seconds - 7_200).abs() <= 1);
        let err = parse_time("yesterday", "--since").unwrap_err().to_string();
        assert!(err.contains("--since `yesterday`"), "{err}");
        assert!(parse_time("h", "--since").is_err());
    }
}
