//! What the demo did, step by step: what was asked, what was answered, why
//! that is the answer, and whether it is the one the story expects. The
//! story fills it; printing it (as text or JSON) is separate.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

/// The whole run.
#[derive(Debug, Default, Serialize)]
pub struct Transcript {
    /// The W3C trace id every call of the demo carried.
    pub trace_id: String,
    /// The services' addresses, by name.
    pub services: BTreeMap<String, String>,
    pub chapters: Vec<Chapter>,
    /// Why the story stopped before its end (a step it could not go on
    /// from); empty when it ran to the end.
    pub stopped: String,
    /// How long the story took, in milliseconds (the stack's start-up
    /// excluded).
    pub elapsed_ms: u128,
}

/// One part of the story, e.g. "alice delegates to triage-bot".
#[derive(Debug, Serialize)]
pub struct Chapter {
    pub number: u32,
    pub title: String,
    pub steps: Vec<Step>,
}

/// One call (or a few that belong together) and its outcome.
#[derive(Debug, Default, Serialize)]
pub struct Step {
    pub title: String,
    /// The request, in words: who asked which service for what.
    pub asked: String,
    /// The answer, in words.
    pub answered: String,
    /// Why that is the answer.
    pub why: String,
    /// Whether the answer is the one the story expects.
    pub ok: bool,
    /// Values a reader (or a test) may want to look at, e.g. `sub`,
    /// `act.sub`, `scope`, `error`.
    pub facts: BTreeMap<String, String>,
}

impl Step {
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            ..Self::default()
        }
    }

    pub fn asked(mut self, asked: impl Into<String>) -> Self {
        self.asked = asked.into();
        self
    }

    pub fn answered(mut self, answered: impl Into<String>) -> Self {
        self.answered = answered.into();
        self
    }

    pub fn why(mut self, why: impl Into<String>) -> Self {
        self.why = why.into();
        self
    }

    pub fn ok(mut self, ok: bool) -> Self {
        self.ok = ok;
        self
    }

    pub fn fact(mut self, key: &str, value: impl Into<String>) -> Self {
        self.facts.insert(key.to_owned(), value.into());
        self
    }
}

impl Transcript {
    /// Starts a chapter; steps are added to the latest one.
    pub fn chapter(&mut self, title: impl Into<String>) {
        let number = u32::try_from(self.chapters.len()).unwrap_or(u32::MAX) + 1;
        self.chapters.push(Chapter {
            number,
            title: title.into(),
            steps: Vec::new(),
        });
    }

    /// Adds `step` to the latest chapter; returns whether it went as
    /// expected.
    pub fn step(&mut self, step: Step) -> bool {
        let ok = step.ok;
        if self.chapters.is_empty() {
            self.chapter("");
        }
        if let Some(chapter) = self.chapters.last_mut() {
            chapter.steps.push(step);
        }
        ok
    }

    pub fn steps(&self) -> impl Iterator<Item = &Step> {
        self.chapters
            .iter()
            .flat_map(|chapter| chapter.steps.iter())
    }

    /// Every step went as expected and the story ran to its end.
    pub fn ok(&self) -> bool {
        self.stopped.is_empty() && self.steps().all(|step| step.ok)
    }

    /// The steps that did not go as expected.
    pub fn failures(&self) -> usize {
        self.steps().filter(|step| !step.ok).count()
    }

    /// The transcript for a person to read.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "AgentSec demo: identity, delegation, policy and audit for AI agents"
        );
        let services: Vec<String> = self
            .services
            .iter()
            .map(|(name, addr)| format!("{name} {addr}"))
            .collect();
        let _ = writeln!(
            out,
            "All four services in this process, on ephemeral ports: {}",
            services.join(", ")
        );
        let _ = writeln!(out, "Every call below carries W3C trace {}", self.trace_id);
        for chapter in &self.chapters {
            let _ = writeln!(out, "\n{}. {}", chapter.number, chapter.title);
            for step in &chapter.steps {
                let mark = if step.ok { "ok" } else { "FAILED" };
                let _ = writeln!(out, "  [{mark}] {}", step.title);
                for (label, text) in [
                    ("asked", &step.asked),
                    ("answered", &step.answered),
                    ("why", &step.why),
                ] {
                    write_field(&mut out, label, text);
                }
            }
        }
        let _ = writeln!(out);
        if !self.stopped.is_empty() {
            let _ = writeln!(out, "The story stopped: {}", self.stopped);
        }
        let total = self.steps().count();
        let failed = self.failures();
        if self.ok() {
            let _ = writeln!(
                out,
                "All {total} steps went as expected ({} ms).",
                self.elapsed_ms
            );
        } else {
            let _ = writeln!(
                out,
                "{failed} of {total} steps did not go as expected ({} ms).",
                self.elapsed_ms
            );
        }
        out
    }
}

/// `label: text`, continuation lines indented under the text.
fn write_field(out: &mut String, label: &str, text: &str) {
    if text.is_empty() {
        return;
    }
    let mut lines = text.lines();
    if let Some(first) = lines.next() {
        let _ = writeln!(out, "       {:<9} {first}", format!("{label}:"));
    }
    for line in lines {
        let _ = writeln!(out, "       {:<9} {line}", "");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transcript_is_ok_only_when_every_step_is_and_the_story_ran_to_its_end() {
        let mut transcript = Transcript::default();
        transcript.chapter("first");
        assert!(transcript.step(Step::new("a").asked("q").answered("r").ok(true)));
        assert!(transcript.ok());
        let text = transcript.to_text();
        assert!(text.contains("1. first"), "{text}");
        assert!(text.contains("  [ok] a"), "{text}");
        assert!(text.contains("All 1 steps went as expected"), "{text}");

        transcript.chapter("second");
        assert!(!transcript.step(Step::new("b").answered("line 1\nline 2")));
        assert!(!transcript.ok());
        assert_eq!(transcript.failures(), 1);
        let text = transcript.to_text();
        assert!(text.contains("2. second"), "{text}");
        assert!(text.contains("  [FAILED] b"), "{text}");
        assert!(text.contains("line 1\n                 line 2"), "{text}");
        assert!(
            text.contains("1 of 2 steps did not go as expected"),
            "{text}"
        );

        let mut stopped = Transcript::default();
        stopped.chapter("only");
        stopped.step(Step::new("c").ok(true));
        stopped.stopped = "identity-svc did not answer".to_owned();
        assert!(!stopped.ok());
        assert!(stopped.to_text().contains("The story stopped"));
    }
}
