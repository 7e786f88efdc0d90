//! `agentctl dev`: the four services in one process, sharing one shutdown.

use std::path::PathBuf;

use agentsec_common::config::{ServiceConfig, TelemetryConfig};
use agentsec_common::server::{bind, shutdown_signal, StartError};
use anyhow::Context as _;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The bootstrap admin of `agentctl dev`; its secret is generated into
/// `<data dir>/admin-secret` on first start.
pub const DEV_ADMIN_CLIENT_ID: &str = "dev-admin";

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
        &["identity-svc", "policy-svc", "exchange-svc", "audit-svc"],
    )
    .context("starting telemetry")?;

    let mut identity = agentsec_identity::Config::in_data_dir(&args.data_dir);
    let mut policy = agentsec_policy::Config::in_data_dir(&args.data_dir);
    let mut exchange = agentsec_exchange::Config::in_data_dir(&args.data_dir);
    let mut audit = agentsec_audit::Config::in_data_dir(&args.data_dir);
    identity.server.listen.set_ip(args.host);
    let admin_secret_file = args.data_dir.join("admin-secret");
    identity.bootstrap_admin.client_id = Some(DEV_ADMIN_CLIENT_ID.to_owned());
    identity.bootstrap_admin.client_secret = Some(dev_secret(&admin_secret_file)?);
    identity.issuer = format!("http://{}", identity.server.listen);
    policy.server.listen.set_ip(args.host);
    exchange.server.listen.set_ip(args.host);
    audit.server.listen.set_ip(args.host);
    identity.audit.endpoint = format!("http://{}", audit.server.listen);
    // No Redis: the services hear each other's invalidation events in
    // process.
    let bus = agentsec_common::invalidation::LocalBus::new();
    for redis in [&mut identity.redis, &mut policy.redis, &mut exchange.redis] {
        redis.local_bus = Some(bus.clone());
    }
    policy.audit.endpoint = identity.audit.endpoint.clone();
    // A laptop's loopback: decision callers need no token.
    policy.decisions.callers = agentsec_policy::DecisionCallers::Any;
    // policy-svc accepts identity-svc's admin tokens.
    let identity_jwks = format!("{}/.well-known/jwks.json", identity.issuer);
    policy.admin.jwks_uri = Some(identity_jwks.clone());
    policy.admin.issuer = Some(identity.issuer.clone());
    // audit-svc authenticates every caller with identity-svc's keys.
    audit.trust_identity(&identity.issuer);
    configure_service_clients(
        &mut identity,
        &mut exchange,
        &mut policy,
        &audit.audience,
        &args.data_dir,
    )?;
    configure_exchange(&mut exchange, &mut policy, &identity, &args)?;
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
    println!(
        "  admin client  {DEV_ADMIN_CLIENT_ID}, secret in {} (agentctl agent ... uses it)",
        admin_secret_file.display()
    );
    println!(
        "  person tokens agentctl token user --sub <person> (development issuer, {})",
        crate::dev_users::DEV_USER_ISSUER
    );
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

/// exchange-svc and policy-svc call identity-svc (and each other) with
/// their own service clients, holding only what they need; their secrets
/// are generated into the data directory on first start.
fn configure_service_clients(
    identity: &mut agentsec_identity::Config,
    exchange: &mut agentsec_exchange::Config,
    policy: &mut agentsec_policy::Config,
    audit_audience: &str,
    data_dir: &std::path::Path,
) -> anyhow::Result<()> {
    use agentsec_identity::{ServiceClientConfig, EXCHANGE_SVC_CLIENT_ID, POLICY_SVC_CLIENT_ID};
    let admin_audience = &identity.tokens.admin_audience;
    exchange.identity.client_id = EXCHANGE_SVC_CLIENT_ID.to_owned();
    exchange.identity.client_secret = dev_secret(&data_dir.join("exchange-svc-secret"))?;
    policy.identity.client_id = POLICY_SVC_CLIENT_ID.to_owned();
    policy.identity.client_secret = dev_secret(&data_dir.join("policy-svc-secret"))?;
    let clients = [
        (
            EXCHANGE_SVC_CLIENT_ID,
            ServiceClientConfig::exchange_svc(
                exchange.identity.client_secret.clone(),
                admin_audience,
                &policy.decisions.caller_audience,
                audit_audience,
            ),
        ),
        (
            POLICY_SVC_CLIENT_ID,
            ServiceClientConfig::policy_svc(
                policy.identity.client_secret.clone(),
                admin_audience,
                audit_audience,
            ),
        ),
    ];
    identity.service_clients = clients
        .into_iter()
        .map(|(id, client)| (id.to_owned(), client))
        .collect();
    exchange.policy.audience = policy.decisions.caller_audience.clone();
    Ok(())
}

/// exchange-svc in dev: trusts the development user issuer, verifies and
/// introspects actor tokens at identity-svc with its service client, asks
/// policy-svc, audits to audit-svc; policy-svc trusts its tokens in
/// CheckToken.
fn configure_exchange(
    exchange: &mut agentsec_exchange::Config,
    policy: &mut agentsec_policy::Config,
    identity: &agentsec_identity::Config,
    args: &DevArgs,
) -> anyhow::Result<()> {
    exchange.issuer = format!("http://{}", exchange.server.listen);
    exchange.audit.endpoint = identity.audit.endpoint.clone();
    exchange.admin.jwks_uri = Some(format!("{}/.well-known/jwks.json", identity.issuer));
    exchange.admin.issuer = Some(identity.issuer.clone());
    exchange.identity.endpoint = Some(identity.issuer.clone());
    exchange.policy.endpoint = Some(format!("http://{}", policy.server.listen));
    let dev_users = crate::dev_users::load_or_create(&args.data_dir)?;
    exchange.user_issuers = vec![agentsec_exchange::UserIssuerConfig {
        issuer: crate::dev_users::DEV_USER_ISSUER.to_owned(),
        jwks: Some(serde_json::json!({ "keys": [dev_users.public_jwk()] }).to_string()),
        jwks_uri: None,
        audience: crate::dev_users::DEV_USER_AUDIENCE.to_owned(),
        algorithms: vec!["EdDSA".to_owned()],
        jwks_cache_secs: 300,
    }];
    exchange.targets = std::iter::once(exchange.issuer.clone())
        .chain(args.targets.iter().cloned())
        .map(|audience| agentsec_exchange::TargetConfig {
            audience,
            allow_impersonation: false,
        })
        .collect();
    policy
        .token_issuers
        .push(agentsec_policy::TokenIssuerConfig {
            issuer: exchange.issuer.clone(),
            jwks_uri: Some(format!("{}/.well-known/jwks.json", exchange.issuer)),
            jwks: None,
            algorithms: vec!["EdDSA".to_owned()],
        });
    // CheckToken and ext_authz refuse what identity-svc and exchange-svc
    // revoked.
    policy.identity.endpoint = Some(identity.issuer.clone());
    policy.revocations.exchange_endpoint = Some(exchange.issuer.clone());
    Ok(())
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

/// A dev secret (the admin's, a service client's): read from `path`, or
/// generated there (owner-only) on first start.
fn dev_secret(path: &std::path::Path) -> anyhow::Result<String> {
    if !path.exists() {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|err| anyhow::anyhow!("random source: {err}"))?;
        let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        write_private(path, &secret)?;
    }
    let secret =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(secret.trim().to_owned())
}

/// Writes a new file only its owner can read, creating its directory.
pub fn write_private(path: &std::path::Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options
        .open(path)
        .and_then(|mut file| file.write_all(contents.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))
}
