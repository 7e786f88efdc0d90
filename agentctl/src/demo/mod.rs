//! `agentctl demo`: the story AgentSec exists for, printed as a transcript
//! a person can follow. By default against a stack of all four services it
//! starts in this process (ephemeral ports, a temporary data directory,
//! removed afterwards); with `--running`, against services already running
//! elsewhere, in a tenant of its own for each run. The demo checks itself:
//! it fails when any step's outcome differs from the expected one.

mod calls;
mod story;
mod transcript;
mod trust;
pub mod workload;

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agentsec_common::config::TelemetryConfig;
use agentsec_common::tls::ClientTls;
use anyhow::Context as _;

use crate::admin::{AdminArgs, ServiceUrls};
use crate::stack::{self, Configs};
use calls::Endpoints;
use story::{AdminClient, Setting};
use workload::WorkloadIssuer;

pub use story::MCP_GITHUB;
pub use trust::user_issuer;

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
#[command(after_long_help = RUNNING_HELP)]
pub struct DemoArgs {
    /// How to print the transcript.
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
    /// Tell the story against the services running at --identity,
    /// --policy, --exchange and --audit, as the admin of --admin-client-id
    /// and --admin-secret-file, instead of starting a stack of its own.
    #[arg(long)]
    running: bool,
    /// Print the settings that make a running stack trust the demo's
    /// issuers (keys in --data-dir, created if missing) and exit: as
    /// environment variables, or with --output json by service and key.
    #[arg(long, conflicts_with = "running")]
    print_trust_config: bool,
    /// With --running or --print-trust-config: where the keys of the
    /// development person-token issuer and the demo's workload issuer are
    /// (`agentctl dev` keeps them in its data directory).
    #[arg(long, default_value = ".agentsec")]
    data_dir: PathBuf,
    /// With --running: exchange-svc's issuer (its `issuer` setting, the
    /// `iss` of its tokens), when it is not --exchange.
    #[arg(long)]
    exchange_issuer: Option<String>,
    /// With --running: policy-svc's `decisions.caller_audience`.
    #[arg(long, default_value = "agentsec-policy")]
    policy_audience: String,
    #[command(flatten)]
    urls: ServiceUrls,
    #[command(flatten)]
    admin: AdminArgs,
}

const RUNNING_HELP: &str = "\
Against a running stack (--running), the demo needs:
  * the four URLs (--identity, --policy, --exchange, --audit, or
    AGENTCTL_IDENTITY_URL, AGENTCTL_POLICY_URL, AGENTCTL_EXCHANGE_URL,
    AGENTCTL_AUDIT_URL);
  * an admin client (--admin-client-id, --admin-secret-file): identity-svc's
    bootstrap admin, or an agent with admin scope; it registers the demo's
    agents, sets the tenant's policy set and reads the audit trail;
  * identity-svc trusting the demo's workload issuer and exchange-svc the
    development person-token issuer, both with the keys in --data-dir:
    `agentctl demo --print-trust-config` prints the two settings
    (AGENTSEC_TRUSTED_ISSUERS, AGENTSEC_USER_ISSUERS) for the services'
    environment; `agentctl dev` trusts them on its own;
  * exchange-svc listing `mcp:github` and itself among its [[targets]], and
    policy-svc trusting exchange-svc's tokens ([[token_issuers]]), as
    deploy/compose.yaml configures them.
Each run uses a tenant of its own (payments-<run id>), so runs against the
same stack do not meet.

Examples:
  agentctl demo
  agentctl dev &  agentctl demo --running
  agentctl demo --print-trust-config > .env    # for deploy/compose.yaml
  agentctl demo --running --admin-client-id bootstrap-admin \\
      --admin-secret-file admin-secret --exchange-issuer http://exchange-svc:7403";

pub async fn run(args: DemoArgs, tls: &Arc<ClientTls>) -> anyhow::Result<()> {
    if args.print_trust_config {
        match args.output {
            Output::Text => print!("{}", trust::environment(&args.data_dir)?),
            Output::Json => println!(
                "{}",
                serde_json::to_string_pretty(&trust::json(&args.data_dir)?)?
            ),
        }
        return Ok(());
    }
    if args.running {
        return against_running(args, tls).await;
    }
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
    let mut configs = Configs::in_data_dir(data_dir.path());
    configs.on_ephemeral_ports(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let listeners = configs.bind().await?;
    configs.wire(data_dir.path(), &[])?;
    configs.validate()?;
    let url = |addr: std::net::SocketAddr| format!("http://{addr}");
    let setting = Setting {
        endpoints: Endpoints {
            identity: url(configs.identity.server.listen),
            policy: url(configs.policy.server.listen),
            exchange: url(configs.exchange.server.listen),
            audit: url(configs.audit.server.listen),
        },
        admin: AdminClient {
            client_id: stack::DEV_ADMIN_CLIENT_ID.to_owned(),
            secret: read_secret(&stack::admin_secret_file(data_dir.path()))?,
            audience: configs.identity.tokens.admin_audience.clone(),
        },
        person_issuer: crate::dev_users::load(data_dir.path())?,
        workload_issuer: WorkloadIssuer::load_or_create(data_dir.path())?,
        tenant: story::TENANT.to_owned(),
        exchange_issuer: configs.exchange.issuer.clone(),
        exchange_max_lifetime_secs: Some(
            i64::try_from(configs.exchange.exchange.max_token_lifetime_secs).unwrap_or(i64::MAX),
        ),
        policy_audience: configs.policy.decisions.caller_audience.clone(),
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
        print_transcript(transcript, args.output)?;
    }
    for failure in running.stop().await {
        eprintln!("agentctl: {failure}");
    }
    if let Some(failure) = service_failure {
        anyhow::bail!("a service stopped during the demo: {failure}");
    }
    judge(transcript)
}

/// The story against services running elsewhere, in a tenant of this run.
async fn against_running(args: DemoArgs, tls: &Arc<ClientTls>) -> anyhow::Result<()> {
    let (person_issuer, workload_issuer) = trust::existing_keys(&args.data_dir)?;
    let setting = Setting {
        admin: AdminClient {
            client_id: args.admin.admin_client_id.clone(),
            secret: read_secret(&args.admin.admin_secret_file)?,
            audience: args.admin.admin_audience.clone(),
        },
        person_issuer,
        workload_issuer,
        tenant: format!("{}-{}", story::TENANT, run_id()?),
        exchange_issuer: args
            .exchange_issuer
            .clone()
            .unwrap_or_else(|| args.urls.exchange.trim_end_matches('/').to_owned()),
        exchange_max_lifetime_secs: None,
        policy_audience: args.policy_audience.clone(),
        endpoints: Endpoints {
            identity: args.urls.identity,
            policy: args.urls.policy,
            exchange: args.urls.exchange,
            audit: args.urls.audit,
        },
    };
    let transcript = tokio::time::timeout(STORY_DEADLINE, story::tell(&setting, tls))
        .await
        .ok();
    if let Some(transcript) = &transcript {
        print_transcript(transcript, args.output)?;
    }
    judge(transcript)
}

fn print_transcript(transcript: &transcript::Transcript, output: Output) -> anyhow::Result<()> {
    match output {
        Output::Text => print!("{}", transcript.to_text()),
        Output::Json => println!("{}", serde_json::to_string_pretty(transcript)?),
    }
    Ok(())
}

/// Ok when the story was told in time and every step went as expected.
fn judge(transcript: Option<transcript::Transcript>) -> anyhow::Result<()> {
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

fn read_secret(path: &std::path::Path) -> anyhow::Result<String> {
    let secret = std::fs::read_to_string(path)
        .with_context(|| format!("reading the admin secret from {}", path.display()))?;
    Ok(secret.trim().to_owned())
}

/// Six hex digits naming this run's tenant.
fn run_id() -> anyhow::Result<String> {
    let mut bytes = [0u8; 3];
    getrandom::fill(&mut bytes).map_err(|err| anyhow::anyhow!("random source: {err}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
