//! `agentctl dev`: the four services in one process, sharing one shutdown.

use std::path::PathBuf;

use agentsec_common::config::{ServiceConfig, TelemetryConfig};
use agentsec_common::server::{bind, shutdown_signal, StartError};
use anyhow::Context as _;
use tokio::sync::watch;
use tokio::task::JoinSet;

#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Where the SQLite databases live.
    #[arg(long, default_value = ".agentsec")]
    data_dir: PathBuf,
    /// Address to bind; ports 7401-7404 are fixed.
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let _telemetry = agentsec_common::telemetry::init(&TelemetryConfig::default(), "agentctl-dev")
        .context("starting telemetry")?;

    let mut identity = agentsec_identity::Config::in_data_dir(&args.data_dir);
    let mut policy = agentsec_policy::Config::in_data_dir(&args.data_dir);
    let mut exchange = agentsec_exchange::Config::in_data_dir(&args.data_dir);
    let mut audit = agentsec_audit::Config::in_data_dir(&args.data_dir);
    identity.server.listen.set_ip(args.host);
    policy.server.listen.set_ip(args.host);
    exchange.server.listen.set_ip(args.host);
    audit.server.listen.set_ip(args.host);
    for validation in [
        identity.validate(),
        policy.validate(),
        exchange.validate(),
        audit.validate(),
    ] {
        validation?;
    }

    // Bind all four before serving any, so a port in use fails fast.
    let identity_listener = bind(identity.server.listen).await?;
    let policy_listener = bind(policy.server.listen).await?;
    let exchange_listener = bind(exchange.server.listen).await?;
    let audit_listener = bind(audit.server.listen).await?;

    let (stop, _) = watch::channel(false);
    let shutdown = |stop: &watch::Sender<bool>| {
        let mut receiver = stop.subscribe();
        async move {
            let _ = receiver.wait_for(|stopped| *stopped).await;
        }
    };
    let mut tasks: JoinSet<(&'static str, Result<(), StartError>)> = JoinSet::new();
    let endpoints = [
        ("identity-svc", identity.server.listen),
        ("policy-svc", policy.server.listen),
        ("exchange-svc", exchange.server.listen),
        ("audit-svc", audit.server.listen),
    ];
    let serve_identity = agentsec_identity::serve(identity, identity_listener, shutdown(&stop));
    let serve_policy = agentsec_policy::serve(policy, policy_listener, shutdown(&stop));
    let serve_exchange = agentsec_exchange::serve(exchange, exchange_listener, shutdown(&stop));
    let serve_audit = agentsec_audit::serve(audit, audit_listener, shutdown(&stop));
    tasks.spawn(async move { ("identity-svc", serve_identity.await) });
    tasks.spawn(async move { ("policy-svc", serve_policy.await) });
    tasks.spawn(async move { ("exchange-svc", serve_exchange.await) });
    tasks.spawn(async move { ("audit-svc", serve_audit.await) });

    println!(
        "AgentSec dev: all four services in one process, data in {}",
        args.data_dir.display()
    );
    for (name, addr) in endpoints {
        println!("  {name:<13} http://{addr}  (gRPC and HTTP)");
    }
    println!("Ctrl-C stops them.");

    let mut first_failure = None;
    tokio::select! {
        () = shutdown_signal() => {}
        Some(joined) = tasks.join_next() => {
            first_failure = Some(describe(joined));
        }
    }
    let _ = stop.send(true);
    while let Some(joined) = tasks.join_next().await {
        if let Some(message) = describe(joined) {
            eprintln!("agentctl: {message}");
        }
    }
    match first_failure.flatten() {
        Some(message) => anyhow::bail!(message),
        None => {
            println!("AgentSec dev stopped.");
            Ok(())
        }
    }
}

fn describe(
    joined: Result<(&'static str, Result<(), StartError>), tokio::task::JoinError>,
) -> Option<String> {
    match joined {
        Ok((_, Ok(()))) => None,
        Ok((name, Err(err))) => Some(format!("{name}: {err}")),
        Err(err) => Some(format!("a service task failed: {err}")),
    }
}
