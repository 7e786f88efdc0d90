//! `agentctl demo` as a person runs it: the built binary, as a process,
//! starting its own stack on ephemeral ports. Every step of the story is
//! checked in its JSON transcript, and the text transcript reads as one.

use std::process::Command;

use anyhow::Context as _;
use serde_json::Value;

/// Runs `agentctl demo` with `args`; its stdout, once it has succeeded.
fn demo(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(env!("CARGO_BIN_EXE_agentctl"))
        .arg("demo")
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .output()?;
    let stdout = String::from_utf8(output.stdout)?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    anyhow::ensure!(
        output.status.success(),
        "agentctl demo failed: {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    Ok(stdout)
}

/// The step titled `title` in the JSON transcript.
fn step<'a>(transcript: &'a Value, title: &str) -> anyhow::Result<&'a Value> {
    transcript["chapters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|chapter| chapter["steps"].as_array())
        .flatten()
        .find(|step| step["title"] == title)
        .with_context(|| format!("no step `{title}` in {transcript:#}"))
}

/// A fact of `step`.
fn fact<'a>(step: &'a Value, key: &str) -> anyhow::Result<&'a str> {
    step["facts"][key]
        .as_str()
        .with_context(|| format!("no fact `{key}` in {step:#}"))
}

/// A text field of `step`.
fn field<'a>(step: &'a Value, key: &str) -> anyhow::Result<&'a str> {
    step[key]
        .as_str()
        .with_context(|| format!("no `{key}` in {step:#}"))
}

#[test]
fn the_demo_tells_the_whole_story_and_every_step_goes_as_expected() -> anyhow::Result<()> {
    let transcript: Value = serde_json::from_str(&demo(&["--output", "json"])?)?;

    assert_eq!(transcript["stopped"], "", "{transcript:#}");
    let trace_id = transcript["trace_id"].as_str().unwrap_or_default();
    assert_eq!(trace_id.len(), 32, "{transcript:#}");
    let chapters = transcript["chapters"].as_array().context("no chapters")?;
    assert_eq!(chapters.len(), 7, "{transcript:#}");
    let mut steps = 0;
    for chapter in chapters {
        for step in chapter["steps"].as_array().context("no steps")? {
            steps += 1;
            assert_eq!(step["ok"], true, "not as expected: {step:#}");
            for key in ["asked", "answered", "why"] {
                assert!(!field(step, key)?.is_empty(), "no `{key}`: {step:#}");
            }
        }
    }
    assert!(steps >= 20, "{steps} steps");

    // 1. Workload identity federation.
    let triage_id = fact(step(&transcript, "register triage-bot")?, "agent_id")?;
    assert!(triage_id.starts_with("agt_"), "{triage_id}");
    let federated = step(
        &transcript,
        "triage-bot's token by the jwt-bearer grant (RFC 7523)",
    )?;
    assert_eq!(fact(federated, "sub")?, triage_id);
    assert!(field(federated, "asked")?.contains("grant_type=jwt-bearer"));

    // 2. The grant.
    let grant = step(&transcript, "alice grants triage-bot delegation")?;
    assert!(fact(grant, "grant_id")?.starts_with("grt_"));
    assert!(field(grant, "answered")?.contains("max_chain_depth 2"));

    // 3. The exchange: alice is the subject, triage-bot the actor, the
    // scope narrowed to the grant's, the lifetime shortened.
    let exchanged = step(&transcript, "triage-bot exchanges for an mcp:github token")?;
    assert_eq!(fact(exchanged, "sub")?, "alice");
    assert_eq!(fact(exchanged, "act.sub")?, "triage-bot");
    assert_eq!(fact(exchanged, "aud")?, "mcp:github");
    assert_eq!(fact(exchanged, "scope")?, "issues:read issues:write");
    let expires_in: i64 = fact(exchanged, "expires_in")?.parse()?;
    assert!((1..=900).contains(&expires_in), "{expires_in}");

    // 4. ext_authz: allow, deny by policy, deny for the wrong audience.
    let allowed = step(
        &transcript,
        "tools/call list_issues on mcp:github is allowed",
    )?;
    assert_eq!(fact(allowed, "policy_ids")?, "github-tools");
    assert!(fact(allowed, "decision_id")?.starts_with("dec_"));
    let denied = step(
        &transcript,
        "tools/call delete_repo on mcp:github is denied",
    )?;
    assert_eq!(fact(denied, "status")?, "403");
    assert_eq!(fact(denied, "policy_ids")?, "no-repo-deletion");
    assert!(
        fact(denied, "reason")?.contains("no-repo-deletion"),
        "{denied:#}"
    );
    let elsewhere = step(
        &transcript,
        "the same token at mcp:jira is denied (wrong audience)",
    )?;
    assert_eq!(fact(elsewhere, "status")?, "403");
    assert!(
        fact(elsewhere, "reason")?.contains("audience"),
        "{elsewhere:#}"
    );

    // 5. Nested act, and the hop beyond the grant's depth.
    let nested = step(&transcript, "summarizer-bot exchanges it: nested act")?;
    assert_eq!(fact(nested, "sub")?, "alice");
    assert_eq!(fact(nested, "act.sub")?, "summarizer-bot");
    assert_eq!(fact(nested, "act.act.sub")?, "triage-bot");
    assert_eq!(fact(nested, "scope")?, "issues:read");
    let third = step(
        &transcript,
        "a third hop, beyond the grant's depth, is refused",
    )?;
    assert_eq!(fact(third, "error")?, "invalid_grant");
    assert!(field(third, "answered")?.contains("max_chain_depth"));

    // 6. Revocation: the next exchange and the next ext_authz check fail.
    let exchange_refused = step(&transcript, "the next exchange is refused")?;
    assert_eq!(fact(exchange_refused, "error")?, "invalid_grant");
    for title in [
        "the next ext_authz check is refused",
        "summarizer-bot's nested token is refused too",
    ] {
        assert_eq!(fact(step(&transcript, title)?, "status")?, "401", "{title}");
    }

    // 7. The audit trail by trace id, and the chain verified.
    let trail = step(&transcript, "the events of the demo's trace")?;
    assert!(field(trail, "asked")?.contains(trace_id));
    assert_eq!(fact(trail, "exchanges")?, "6");
    let answered = field(trail, "answered")?;
    for kind in [
        "token.issued",
        "grant.created",
        "token.exchanged",
        "decision",
        "grant.revoked",
    ] {
        assert!(answered.contains(kind), "no {kind} in {answered}");
    }
    let chain = step(&transcript, "the hash chain is verified")?;
    assert_eq!(fact(chain, "chain")?, "verified");
    assert!(field(chain, "answered")?.starts_with("chain verified"));

    // How long it took is reported (BENCHMARKS.md has the figures), not
    // asserted: a timing goal is a benchmark's.
    assert!(transcript["elapsed_ms"].is_u64(), "{transcript:#}");
    Ok(())
}

#[test]
fn the_text_transcript_marks_every_step_and_says_why() -> anyhow::Result<()> {
    let text = demo(&[])?;
    assert!(!text.contains("[FAILED]"), "{text}");
    for chapter in 1..=7 {
        assert!(
            text.contains(&format!("\n{chapter}. ")),
            "no chapter {chapter}:\n{text}"
        );
    }
    for line in [
        "  [ok] register triage-bot",
        "  [ok] triage-bot exchanges for an mcp:github token",
        "  [ok] tools/call delete_repo on mcp:github is denied",
        "  [ok] summarizer-bot exchanges it: nested act",
        "  [ok] the next ext_authz check is refused",
        "  [ok] the hash chain is verified",
    ] {
        assert!(text.contains(line), "no `{line}` in:\n{text}");
    }
    for phrase in [
        "sub alice, act.sub agt_",
        "(summarizer-bot), act.act.sub agt_",
        "invalid_grant: a chain of 3 agents exceeds the grant's max_chain_depth (2)",
        "403 Forbidden",
        "401 Unauthorized",
        "chain verified",
        "       why:",
    ] {
        assert!(text.contains(phrase), "no `{phrase}` in:\n{text}");
    }
    assert!(text.contains("steps went as expected"), "{text}");
    Ok(())
}
