//! `agentctl dev`: the four services in one process on ports 7401-7404,
//! sharing one shutdown.

use std::path::PathBuf;

use agentsec_common::config::TelemetryConfig;
use agentsec_common::server::shutdown_signal;
use anyhow::Context as _;

use crate::stack::{self, Configs, DEV_ADMIN_CLIENT_ID};

#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Where the SQLite databases live.
    #[arg(long, default_value = ".agentsec")]
    data_dir: PathBuf,
    /// Address to bind; ports 7401-7404 are fixed.
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// A target system exchange-svc issues delegated tokens for
    /// (repeatable; exchange-svc itself is always one, for delegating on).
    #[arg(long = "target", default_value = "https://api.example.dev")]
    targets: Vec<String>,
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    // Each service reports its spans under its own name, as it would alone.
    let _telemetry = agentsec_common::telemetry::init_services(
        &TelemetryConfig::default(),
        "agentctl-dev",
        &stack::SERVICES,
    )
    .context("starting telemetry")?;

    let mut configs = Configs::in_data_dir(&args.data_dir);
    configs.on_host(args.host);
    let listeners = configs.bind().await?;
    configs.wire(&args.data_dir, &args.targets)?;
    configs.validate()?;
    let endpoints = configs.endpoints();
    let profile_file = args.data_dir.join(crate::profile::FILE_NAME);
    crate::profile::Profile::of_stack(
        endpoints.map(|(_, addr)| addr),
        DEV_ADMIN_CLIENT_ID,
        &stack::admin_secret_file(&args.data_dir),
        &args.data_dir,
    )?
    .write(&profile_file)?;
    let mut running = stack::serve(configs, listeners);

    println!(
        "AgentSec dev: all four services in one process, data in {}",
        args.data_dir.display()
    );
    for (name, addr) in endpoints {
        println!("  {name:<13} http://{addr}  (gRPC and HTTP)");
    }
    println!(
        "  admin client  {DEV_ADMIN_CLIENT_ID}, secret in {} (agentctl agent ... uses it)",
        stack::admin_secret_file(&args.data_dir).display()
    );
    println!(
        "  person tokens agentctl token user --sub <person> (development issuer, {})",
        crate::dev_users::DEV_USER_ISSUER
    );
    let profile_file = std::path::absolute(&profile_file).unwrap_or(profile_file);
    println!(
        "  profile       {} (agentctl run here uses it; elsewhere: export AGENTCTL_PROFILE={})",
        profile_file.display(),
        profile_file.display()
    );
    println!("Ctrl-C stops them.");

    let first_failure = tokio::select! {
        () = shutdown_signal() => None,
        failure = running.ended() => failure,
    };
    for message in running.stop().await {
        eprintln!("agentctl: {message}");
    }
    match first_failure {
        Some(message) => anyhow::bail!(message),
        None => {
            println!("AgentSec dev stopped.");
            Ok(())
        }
    }
}
