//! The four services in one process, wired to each other: SQLite under a
//! data directory, no Redis (invalidation events travel on an in-process
//! bus), the bootstrap admin and the services' own clients with secrets
//! generated into the data directory, exchange-svc trusting the
//! development issuer of people's tokens and identity-svc the demo's
//! workload issuer (both keys in the data directory, so that `agentctl
//! demo --running` can tell its story against it), and exchange-svc
//! issuing tokens for itself and the demo's MCP server. `agentctl dev` runs
//! it on the fixed ports 7401-7404; `agentctl demo` on ephemeral ports in a
//! temporary directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use agentsec_common::config::ServiceConfig;
use agentsec_common::server::{bind, StartError};
use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The bootstrap admin of a stack; its secret is generated into
/// `<data dir>/admin-secret` on first start.
pub const DEV_ADMIN_CLIENT_ID: &str = "dev-admin";

/// The tenant of the development stack: person tokens' default, and
/// policy-svc's AuthZEN default tenant.
pub const DEFAULT_TENANT: &str = "default";

/// The services' names, as they report their spans and audit events.
pub const SERVICES: [&str; 4] = ["identity-svc", "policy-svc", "exchange-svc", "audit-svc"];

/// Where a stack's admin secret is kept.
pub fn admin_secret_file(data_dir: &Path) -> PathBuf {
    data_dir.join("admin-secret")
}

/// The four services' configurations.
pub struct Configs {
    pub identity: agentsec_identity::Config,
    pub policy: agentsec_policy::Config,
    pub exchange: agentsec_exchange::Config,
    pub audit: agentsec_audit::Config,
}

/// The four listeners, bound before any service starts so that each can be
/// configured with the others' addresses.
pub struct Listeners {
    identity: TcpListener,
    policy: TcpListener,
    exchange: TcpListener,
    audit: TcpListener,
}

impl Configs {
    /// Every service's defaults, with its SQLite database under `data_dir`.
    pub fn in_data_dir(data_dir: &Path) -> Self {
        Self {
            identity: agentsec_identity::Config::in_data_dir(data_dir),
            policy: agentsec_policy::Config::in_data_dir(data_dir),
            exchange: agentsec_exchange::Config::in_data_dir(data_dir),
            audit: agentsec_audit::Config::in_data_dir(data_dir),
        }
    }

    fn listen_addrs(&mut self) -> [&mut SocketAddr; 4] {
        [
            &mut self.identity.server.listen,
            &mut self.policy.server.listen,
            &mut self.exchange.server.listen,
            &mut self.audit.server.listen,
        ]
    }

    /// Every service on `host`, keeping its default port.
    pub fn on_host(&mut self, host: std::net::IpAddr) {
        for listen in self.listen_addrs() {
            listen.set_ip(host);
        }
    }

    /// Every service on `host`, on a port the system picks when bound.
    pub fn on_ephemeral_ports(&mut self, host: std::net::IpAddr) {
        for listen in self.listen_addrs() {
            *listen = SocketAddr::new(host, 0);
        }
    }

    /// Binds every service's address (all four before any serves, so a
    /// port in use fails fast) and records the bound addresses, ephemeral
    /// ports resolved.
    pub async fn bind(&mut self) -> anyhow::Result<Listeners> {
        let [identity, policy, exchange, audit] = self.listen_addrs().map(|listen| *listen);
        let listeners = Listeners {
            identity: bind(identity).await?,
            policy: bind(policy).await?,
            exchange: bind(exchange).await?,
            audit: bind(audit).await?,
        };
        let bound = [
            listeners.identity.local_addr()?,
            listeners.policy.local_addr()?,
            listeners.exchange.local_addr()?,
            listeners.audit.local_addr()?,
        ];
        for (listen, addr) in self.listen_addrs().into_iter().zip(bound) {
            *listen = addr;
        }
        Ok(listeners)
    }

    /// Wires the services to each other at their listen addresses (call
    /// after [`Self::bind`]); exchange-svc issues delegated tokens for
    /// `targets` besides itself and the demo's MCP server.
    pub fn wire(&mut self, data_dir: &Path, targets: &[String]) -> anyhow::Result<()> {
        let Self {
            identity,
            policy,
            exchange,
            audit,
        } = self;
        identity.bootstrap_admin.client_id = Some(DEV_ADMIN_CLIENT_ID.to_owned());
        identity.bootstrap_admin.client_secret = Some(dev_secret(&admin_secret_file(data_dir))?);
        identity.issuer = format!("http://{}", identity.server.listen);
        identity.audit.endpoint = format!("http://{}", audit.server.listen);
        identity.trusted_issuers =
            vec![crate::demo::workload::WorkloadIssuer::load_or_create(data_dir)?.trusted()];
        // No Redis: the services hear each other's invalidation events in
        // process.
        let bus = agentsec_common::invalidation::LocalBus::new();
        for redis in [&mut identity.redis, &mut policy.redis, &mut exchange.redis] {
            redis.local_bus = Some(bus.clone());
        }
        policy.audit.endpoint = identity.audit.endpoint.clone();
        // A laptop's loopback: decision callers need no token.
        policy.decisions.callers = agentsec_policy::DecisionCallers::Any;
        // AuthZEN requests written to the spec carry no tenant.
        policy.authzen.default_tenant = Some(DEFAULT_TENANT.to_owned());
        // policy-svc accepts identity-svc's admin tokens.
        policy.admin.jwks_uri = Some(format!("{}/.well-known/jwks.json", identity.issuer));
        policy.admin.issuer = Some(identity.issuer.clone());
        // audit-svc authenticates every caller with identity-svc's keys.
        audit.trust_identity(&identity.issuer);
        configure_service_clients(identity, exchange, policy, &audit.audience, data_dir)?;
        configure_exchange(exchange, policy, identity, data_dir, targets)
    }

    /// Checks every configuration as the services will at start-up.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.identity.validate()?;
        self.policy.validate()?;
        self.exchange.validate()?;
        self.audit.validate()?;
        Ok(())
    }

    /// The base URL of each service, by name.
    pub fn endpoints(&self) -> [(&'static str, SocketAddr); 4] {
        [
            (SERVICES[0], self.identity.server.listen),
            (SERVICES[1], self.policy.server.listen),
            (SERVICES[2], self.exchange.server.listen),
            (SERVICES[3], self.audit.server.listen),
        ]
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
    data_dir: &Path,
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

/// exchange-svc: trusts the development user issuer, verifies and
/// introspects actor tokens at identity-svc with its service client, asks
/// policy-svc, audits to audit-svc; policy-svc trusts its tokens in
/// CheckToken.
fn configure_exchange(
    exchange: &mut agentsec_exchange::Config,
    policy: &mut agentsec_policy::Config,
    identity: &agentsec_identity::Config,
    data_dir: &Path,
    targets: &[String],
) -> anyhow::Result<()> {
    exchange.issuer = format!("http://{}", exchange.server.listen);
    exchange.audit.endpoint = identity.audit.endpoint.clone();
    exchange.admin.jwks_uri = Some(format!("{}/.well-known/jwks.json", identity.issuer));
    exchange.admin.issuer = Some(identity.issuer.clone());
    exchange.identity.endpoint = Some(identity.issuer.clone());
    exchange.policy.endpoint = Some(format!("http://{}", policy.server.listen));
    let dev_users = crate::dev_users::load_or_create(data_dir)?;
    exchange.user_issuers = vec![crate::demo::user_issuer(&dev_users)];
    let mut audiences = vec![exchange.issuer.clone(), crate::demo::MCP_GITHUB.to_owned()];
    for target in targets {
        if !audiences.contains(target) {
            audiences.push(target.clone());
        }
    }
    exchange.targets = audiences
        .into_iter()
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

type Served = (&'static str, Result<(), StartError>);

/// The four services serving; [`Running::stop`] ends them.
pub struct Running {
    tasks: JoinSet<Served>,
    stop: watch::Sender<bool>,
    /// audit-svc stops last, so the others can flush their audit events.
    stop_audit: watch::Sender<bool>,
}

/// Starts the four services on `listeners`.
pub fn serve(configs: Configs, listeners: Listeners) -> Running {
    let (stop, _) = watch::channel(false);
    let (stop_audit, _) = watch::channel(false);
    let shutdown = |stop: &watch::Sender<bool>| {
        let mut receiver = stop.subscribe();
        async move {
            let _ = receiver.wait_for(|stopped| *stopped).await;
        }
    };
    let Configs {
        identity,
        policy,
        exchange,
        audit,
    } = configs;
    let serve_identity = agentsec_identity::serve(identity, listeners.identity, shutdown(&stop));
    let serve_policy = agentsec_policy::serve(policy, listeners.policy, shutdown(&stop));
    let serve_exchange = agentsec_exchange::serve(exchange, listeners.exchange, shutdown(&stop));
    let serve_audit = agentsec_audit::serve(audit, listeners.audit, shutdown(&stop_audit));
    let mut tasks = JoinSet::new();
    tasks.spawn(async move { (SERVICES[0], serve_identity.await) });
    tasks.spawn(async move { (SERVICES[1], serve_policy.await) });
    tasks.spawn(async move { (SERVICES[2], serve_exchange.await) });
    tasks.spawn(async move { (SERVICES[3], serve_audit.await) });
    Running {
        tasks,
        stop,
        stop_audit,
    }
}

impl Running {
    /// Waits until a service ends; what went wrong, if it failed.
    pub async fn ended(&mut self) -> Option<String> {
        match self.tasks.join_next().await {
            Some(joined) => describe(joined),
            None => Some("no service is running".to_owned()),
        }
    }

    /// Stops every service, audit-svc last; what went wrong in each that
    /// failed.
    pub async fn stop(mut self) -> Vec<String> {
        let _ = self.stop.send(true);
        let mut failures = Vec::new();
        let mut audit_running = true;
        while !self.tasks.is_empty() {
            if audit_running && self.tasks.len() == 1 {
                let _ = self.stop_audit.send(true);
                audit_running = false;
            }
            let Some(joined) = self.tasks.join_next().await else {
                break;
            };
            if let Ok((name, _)) = &joined {
                audit_running &= *name != SERVICES[3];
            }
            failures.extend(describe(joined));
        }
        failures
    }
}

fn describe(joined: Result<Served, tokio::task::JoinError>) -> Option<String> {
    match joined {
        Ok((_, Ok(()))) => None,
        Ok((name, Err(err))) => Some(format!("{name}: {err}")),
        Err(err) => Some(format!("a service task failed: {err}")),
    }
}

/// A secret of the stack (the admin's, a service client's): read from
/// `path`, or generated there (owner-only) on first start.
fn dev_secret(path: &Path) -> anyhow::Result<String> {
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
pub fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
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
