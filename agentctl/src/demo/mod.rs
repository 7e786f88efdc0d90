//! `agentctl demo`: the story AgentSec exists for, against a stack of all
//! four services it starts in this process (ephemeral ports, a temporary
//! data directory, removed afterwards), printed as a transcript a person
//! can follow. The demo checks itself: it fails when any step's outcome
//! differs from the expected one.

mod calls;
mod story;
mod transcript;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use agentsec_common::config::TelemetryConfig;
use agentsec_common::tls::ClientTls;
use anyhow::Context as _;

use crate::stack::{self, Configs};
use calls::Addrs;
use story::{Setting, WorkloadIssuer};

/// The story must end well within this.
const STORY_DEADLINE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// A transcript for people.
    Text,
    /// The same transcript as one JSON document.
    Json,
}

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// How to print the transcript.
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
}

pub async fn run(args: DemoArgs, tls: &Arc<ClientTls>) -> anyhow::Result<()> {
    // The services' spans give audit events their trace ids. Their logs
    // (on stdout) would drown the transcript: only errors are shown beside
    // the text, none beside JSON (RUST_LOG overrides either).
    let telemetry = TelemetryConfig {
        log_filter: match args.output {
            Output::Text => "error",
            Output::Json => "off",
        }
        .to_owned(),
        ..TelemetryConfig::default()
    };
    let _telemetry =
        agentsec_common::telemetry::init_services(&telemetry, "agentctl-demo", &stack::SERVICES)
            .context("starting telemetry")?;

    let data_dir = tempfile::Builder::new()
        .prefix("agentsec-demo-")
        .tempdir()
        .context("creating a temporary data directory")?;
    let workload_issuer = WorkloadIssuer::generate()?;
    let mut configs = Configs::in_data_dir(data_dir.path());
    configs.on_ephemeral_ports(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let listeners = configs.bind().await?;
    configs.wire(data_dir.path(), &[story::MCP_GITHUB.to_owned()])?;
    configs.identity.trusted_issuers = vec![workload_issuer.trusted()];
    configs.validate()?;
    let setting = Setting {
        addrs: Addrs {
            identity: configs.identity.server.listen,
            policy: configs.policy.server.listen,
            exchange: configs.exchange.server.listen,
            audit: configs.audit.server.listen,
        },
        data_dir: data_dir.path().to_owned(),
        workload_issuer,
        exchange_issuer: configs.exchange.issuer.clone(),
        exchange_max_lifetime_secs: i64::try_from(
            configs.exchange.exchange.max_token_lifetime_secs,
        )
        .unwrap_or(i64::MAX),
    };
    let mut running = stack::serve(configs, listeners);

    let (transcript, service_failure) = tokio::select! {
        told = tokio::time::timeout(STORY_DEADLINE, story::tell(&setting, tls)) => (told.ok(), None),
        failure = running.ended() => (
            None,
            Some(failure.unwrap_or_else(|| "it stopped without an error".to_owned())),
        ),
    };
    // The transcript first: what the services log while they stop comes
    // after it.
    if let Some(transcript) = &transcript {
        match args.output {
            Output::Text => print!("{}", transcript.to_text()),
            Output::Json => println!("{}", serde_json::to_string_pretty(transcript)?),
        }
    }
    for failure in running.stop().await {
        eprintln!("agentctl: {failure}");
    }
    if let Some(failure) = service_failure {
        anyhow::bail!("a service stopped during the demo: {failure}");
    }
    let Some(transcript) = transcript else {
        anyhow::bail!("the demo did not finish within {STORY_DEADLINE:?}");
    };
    if !transcript.ok() {
        anyhow::bail!(
            "the demo did not go as expected ({} failed steps{})",
            transcript.failures(),
            if transcript.stopped.is_empty() {
                String::new()
            } else {
                format!("; stopped: {}", transcript.stopped)
            }
        );
    }
    Ok(())
}
