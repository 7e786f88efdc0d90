//! What the tests of deployed configurations share: the service binaries
//! as processes, and `agentctl demo --running` against them.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::Context as _;
use serde_json::Value;

/// A free port on 127.0.0.1 for each name (all held until all are chosen,
/// so that they differ).
pub fn free_ports(names: &[&str]) -> anyhow::Result<BTreeMap<String, u16>> {
    let listeners: Vec<TcpListener> = names
        .iter()
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()?;
    names
        .iter()
        .zip(&listeners)
        .map(|(name, listener)| Ok(((*name).to_owned(), listener.local_addr()?.port())))
        .collect()
}

/// One service as this machine runs it.
pub struct Service {
    pub name: String,
    pub binary: PathBuf,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
}

/// The four processes; killed when dropped.
pub struct Running {
    children: Vec<(String, Child, PathBuf)>,
}

impl Running {
    pub fn start(services: &[Service], dir: &Path) -> anyhow::Result<Self> {
        let mut running = Self {
            children: Vec::new(),
        };
        for service in services {
            let log = dir.join(format!("{}.log", service.name));
            let file = std::fs::File::create(&log)?;
            let workdir = dir.join(&service.name);
            std::fs::create_dir_all(&workdir)?;
            let child = Command::new(&service.binary)
                .args(&service.args)
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("HOME", &workdir)
                .envs(&service.env)
                .current_dir(&workdir)
                .stdin(Stdio::null())
                .stdout(file.try_clone()?)
                .stderr(file)
                .spawn()
                .with_context(|| format!("starting {}", service.binary.display()))?;
            running.children.push((service.name.clone(), child, log));
        }
        Ok(running)
    }

    /// Every service's log, and whether it has exited.
    pub fn report(&mut self) -> String {
        let mut report = String::new();
        for (name, child, log) in &mut self.children {
            let state = match child.try_wait() {
                Ok(Some(status)) => format!("exited: {status}"),
                Ok(None) => "running".to_owned(),
                Err(err) => format!("unknown: {err}"),
            };
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            report.push_str(&format!("\n--- {name} ({state}), last lines of its log:\n"));
            for line in tail.into_iter().rev() {
                report.push_str(line);
                report.push('\n');
            }
        }
        report
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for (_, child, _) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn agentctl(args: &[&str]) -> anyhow::Result<std::process::Output> {
    Command::new(env!("CARGO_BIN_EXE_agentctl"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .output()
        .context("running agentctl")
}

pub fn random_secret() -> anyhow::Result<String> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|err| anyhow::anyhow!("random source: {err}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Where a deployed stack is and how the demo authenticates to it.
pub struct Stack {
    /// Base URLs by service name.
    pub urls: BTreeMap<String, String>,
    pub admin_client_id: String,
    pub admin_secret: String,
    /// exchange-svc's `issuer`.
    pub exchange_issuer: String,
}

/// Runs `agentctl demo --running` against `stack` with the issuer keys of
/// `data_dir`; its JSON transcript, once it has succeeded.
pub fn demo(stack: &Stack, data_dir: &Path) -> anyhow::Result<Value> {
    let admin_secret_file = data_dir.join("admin-secret");
    std::fs::write(&admin_secret_file, &stack.admin_secret)?;
    let url = |name: &str| -> anyhow::Result<&str> {
        stack
            .urls
            .get(name)
            .map(String::as_str)
            .with_context(|| format!("no URL of {name}"))
    };
    let output = agentctl(&[
        "demo",
        "--running",
        "--output",
        "json",
        "--identity",
        url("identity-svc")?,
        "--policy",
        url("policy-svc")?,
        "--exchange",
        url("exchange-svc")?,
        "--audit",
        url("audit-svc")?,
        "--admin-client-id",
        &stack.admin_client_id,
        "--admin-secret-file",
        &admin_secret_file.display().to_string(),
        "--exchange-issuer",
        &stack.exchange_issuer,
        "--data-dir",
        &data_dir.display().to_string(),
    ])?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "agentctl demo --running failed: {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(serde_json::from_str(&stdout)?)
}

/// The story twice against `stack`: every step as expected each time, and
/// the second run meets nothing of the first (a tenant of its own).
pub fn demo_twice(stack: &Stack, data_dir: &Path) -> anyhow::Result<()> {
    let first = check_story(&demo(stack, data_dir)?)?;
    let second = check_story(&demo(stack, data_dir)?)?;
    anyhow::ensure!(
        first != second && first.starts_with("payments-"),
        "the runs' tenants: {first}, {second}"
    );
    Ok(())
}

/// `agentctl demo --print-trust-config` in `output` (`text` or `json`),
/// with the keys in `data_dir`.
pub fn trust_config(data_dir: &Path, output: &str) -> anyhow::Result<String> {
    let output = agentctl(&[
        "demo",
        "--print-trust-config",
        "--output",
        output,
        "--data-dir",
        &data_dir.display().to_string(),
    ])?;
    anyhow::ensure!(
        output.status.success(),
        "agentctl demo --print-trust-config: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?)
}

/// Where the workspace's service binaries are: `AGENTSEC_BIN_DIR`, or
/// agentctl's own directory.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    Ok(match std::env::var_os("AGENTSEC_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_BIN_EXE_agentctl"))
            .parent()
            .context("agentctl's binary has no directory")?
            .to_owned(),
    })
}

/// `name`'s binary in `bin_dir`, which must have been built.
pub fn binary(bin_dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let binary = bin_dir.join(name);
    anyhow::ensure!(
        binary.is_file(),
        "{} is missing: build the service binaries first (`cargo build --workspace --bins`, \
         or `cargo test --workspace`), or name their directory in AGENTSEC_BIN_DIR",
        binary.display()
    );
    Ok(binary)
}

/// The PostgreSQL and Redis URLs of the test run, when both are given.
pub fn servers() -> Option<(String, String)> {
    Some((
        std::env::var("AGENTSEC_TEST_DATABASE_URL")
            .ok()
            .filter(|url| !url.is_empty())?,
        std::env::var("AGENTSEC_TEST_REDIS_URL")
            .ok()
            .filter(|url| !url.is_empty())?,
    ))
}

/// The steps of a transcript, by title.
pub fn steps(transcript: &Value) -> BTreeMap<String, &Value> {
    transcript["chapters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|chapter| chapter["steps"].as_array())
        .flatten()
        .filter_map(|step| Some((step["title"].as_str()?.to_owned(), step)))
        .collect()
}

pub fn check_story(transcript: &Value) -> anyhow::Result<String> {
    let steps = steps(transcript);
    for (title, step) in &steps {
        anyhow::ensure!(
            step["ok"] == true,
            "`{title}` did not go as expected: {step:#}"
        );
    }
    let fact = |title: &str, key: &str| -> anyhow::Result<String> {
        steps
            .get(title)
            .and_then(|step| step["facts"][key].as_str())
            .map(str::to_owned)
            .with_context(|| format!("no fact `{key}` of `{title}` in {transcript:#}"))
    };
    // A token, a grant, an exchange, a delegated check allowed and denied,
    // the audit chain verified.
    anyhow::ensure!(fact(
        "triage-bot's token by the jwt-bearer grant (RFC 7523)",
        "sub"
    )?
    .starts_with("agt_"));
    anyhow::ensure!(fact("alice grants triage-bot delegation", "grant_id")?.starts_with("grt_"));
    let exchanged = "triage-bot exchanges for an mcp:github token";
    anyhow::ensure!(fact(exchanged, "sub")? == "alice");
    anyhow::ensure!(fact(exchanged, "act.sub")? == "triage-bot");
    anyhow::ensure!(
        fact(
            "tools/call list_issues on mcp:github is allowed",
            "policy_ids"
        )? == "github-tools"
    );
    anyhow::ensure!(fact("tools/call delete_repo on mcp:github is denied", "status")? == "403");
    anyhow::ensure!(fact("the next ext_authz check is refused", "status")? == "401");
    anyhow::ensure!(fact("the hash chain is verified", "chain")? == "verified");
    let grant = steps
        .get("alice grants triage-bot delegation")
        .and_then(|step| step["answered"].as_str())
        .context("no grant step")?;
    let tenant = grant
        .split("tenant ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .context("the grant names no tenant")?;
    Ok(tenant.to_owned())
}
