//! Chapter 7: the audit trail of the story, found by trace id, and its
//! hash chain verified.

use super::*;

impl Story<'_> {
    /// The events matching `filter` (oldest first) once `complete` holds
    /// for them, polled for at most [`AUDIT_DEADLINE`]; what there is then.
    pub(super) async fn events_until(
        &mut self,
        admin: &str,
        filter: EventFilter,
        complete: impl Fn(&[StoredEvent]) -> bool,
    ) -> anyhow::Result<Vec<StoredEvent>> {
        let deadline = Instant::now() + AUDIT_DEADLINE;
        loop {
            let request = self.calls.bearer(
                QueryEventsRequest {
                    filter: Some(filter.clone()),
                    order: Order::OldestFirst as i32,
                    page: Some(PageRequest {
                        page_size: 1_000,
                        page_token: String::new(),
                    }),
                },
                admin,
            )?;
            let events = self
                .calls
                .audit
                .query_events(request)
                .await
                .map_err(failed)
                .context("audit-svc QueryEvents")?
                .into_inner()
                .events;
            if complete(&events) || Instant::now() > deadline {
                return Ok(events);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(super) async fn audit_trail(&mut self, admin: &str) -> anyhow::Result<()> {
        let exchanges = self.exchanges;
        let filter = EventFilter {
            trace_id: self.calls.trace_id.clone(),
            ..EventFilter::default()
        };
        let stored = self
            .events_until(admin, filter, |events| {
                let count = |kind: &str, outcome: Option<Outcome>| {
                    events
                        .iter()
                        .filter_map(|stored| stored.event.as_ref())
                        .filter(|event| {
                            event.kind == kind
                                && outcome.is_none_or(|outcome| event.outcome == outcome as i32)
                        })
                        .count()
                };
                count("token.exchanged", None) >= exchanges
                    && count("grant.revoked", None) >= 1
                    && count("decision", Some(Outcome::Deny)) >= 1
            })
            .await?;
        let events: Vec<(u64, Event)> = stored
            .into_iter()
            .filter_map(|stored| stored.event.map(|event| (stored.sequence, event)))
            .collect();
        let count = |kind: &str, outcome: Outcome| {
            events
                .iter()
                .filter(|(_, event)| event.kind == kind && event.outcome == outcome as i32)
                .count()
        };
        let mut kinds: Vec<(String, usize)> = Vec::new();
        for (_, event) in &events {
            match kinds.iter_mut().find(|(kind, _)| *kind == event.kind) {
                Some((_, n)) => *n += 1,
                None => kinds.push((event.kind.clone(), 1)),
            }
        }
        let exchanged =
            count("token.exchanged", Outcome::Allow) + count("token.exchanged", Outcome::Deny);
        let lines: Vec<String> = events
            .iter()
            .map(|(sequence, event)| self.describe_event(*sequence, event))
            .collect();
        let kinds_text: Vec<String> = kinds
            .iter()
            .map(|(kind, n)| format!("{n} {kind}"))
            .collect();
        let step = Step::new("the events of the demo's trace")
            .asked(format!(
                "as the admin: audit-svc QueryEvents, filter trace_id {}",
                self.calls.trace_id
            ))
            .answered(format!(
                "{} events ({}):\n{}",
                events.len(),
                kinds_text.join(", "),
                lines.join("\n")
            ))
            .why(
                "every call of the demo carried one W3C traceparent; each service continued \
                 that trace in its spans, and every audit event names the trace and span that \
                 caused it, across all four services",
            )
            .ok(count("token.issued", Outcome::Allow) >= 1
                && count("grant.created", Outcome::Allow) == 1
                && exchanged == exchanges
                && count("token.exchanged", Outcome::Deny) == 2
                && count("decision", Outcome::Allow) >= 1
                && count("decision", Outcome::Deny) >= 1
                && count("grant.revoked", Outcome::Allow) == 1)
            .fact("events", events.len().to_string())
            .fact("exchanges", exchanged.to_string());
        self.transcript.step(step);

        let request = self.calls.bearer(
            VerifyChainRequest {
                start_sequence: 0,
                end_sequence: 0,
            },
            admin,
        )?;
        let verified = self
            .calls
            .audit
            .verify_chain(request)
            .await
            .map_err(failed)
            .context("audit-svc VerifyChain")?
            .into_inner();
        let last = events.last().map_or(0, |(sequence, _)| *sequence);
        let step = Step::new("the hash chain is verified")
            .asked("as the admin: audit-svc VerifyChain, from the first event to the head")
            .answered(if verified.ok {
                format!(
                    "chain verified: sequences {}-{}, {} events and {} signed checkpoints",
                    verified.start_sequence,
                    verified.end_sequence,
                    verified.events_verified,
                    verified.checkpoints_verified
                )
            } else {
                format!(
                    "broken at sequence {}: {}",
                    verified.first_broken_sequence, verified.reason
                )
            })
            .why(
                "each stored event's hash covers the previous hash and the event's canonical \
                 bytes: changing, removing or reordering any event of the trail breaks every \
                 hash after it",
            )
            .ok(verified.ok && verified.end_sequence >= last)
            .fact("chain", if verified.ok { "verified" } else { "broken" })
            .fact("events_verified", verified.events_verified.to_string());
        self.transcript.step(step);
        Ok(())
    }

    pub(super) fn describe_event(&self, sequence: u64, event: &Event) -> String {
        let outcome = Outcome::try_from(event.outcome).map_or("?", |outcome| match outcome {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
            Outcome::Error => "error",
            Outcome::Unspecified => "?",
        });
        let mut who = Vec::new();
        if !event.person_subject.is_empty() {
            who.push(format!("person {}", event.person_subject));
        }
        if !event.agent_id.is_empty() {
            who.push(format!("agent {}", self.name_of(&event.agent_id)));
        }
        if !event.audience.is_empty() {
            who.push(format!("at {}", event.audience));
        }
        if !event.policy_ids.is_empty() {
            who.push(format!("policies {}", event.policy_ids.join(",")));
        }
        let mut reason = event.reason.clone();
        if reason.chars().count() > 80 {
            reason = reason.chars().take(77).collect::<String>() + "...";
        }
        format!(
            "#{sequence:<3} {:<12} {:<16} {outcome:<5} {}{}",
            event.service,
            event.kind,
            who.join(", "),
            if reason.is_empty() {
                String::new()
            } else {
                format!(": {reason}")
            }
        )
    }
}
