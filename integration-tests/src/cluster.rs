//! [`TestCluster`]: the four services in this process, each on its own
//! ephemeral port, ready when gRPC health says SERVING.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use agentsec_common::server::{bind, StartError};
use agentsec_proto::audit::v1::audit_service_client::AuditServiceClient;
use anyhow::{anyhow, bail, Context as _};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::backend::TestBackend;
use crate::eventually;

/// How long a cluster may take to become ready.
const READY_DEADLINE: Duration = Duration::from_secs(30);

/// The bootstrap admin credential every test cluster's identity-svc has.
pub const ADMIN_CLIENT_ID: &str = "bootstrap-admin";
pub const ADMIN_CLIENT_SECRET: &str = "test-bootstrap-admin-secret-0123456789abcdef";
/// The audience of admin tokens (identity-svc's default).
pub const ADMIN_AUDIENCE: &str = "agentsec";
/// The service clients' secrets (client ids
/// `agentsec_identity::EXCHANGE_SVC_CLIENT_ID` and `POLICY_SVC_CLIENT_ID`).
pub const EXCHANGE_CLIENT_SECRET: &str = "test-exchange-svc-secret-0123456789abcdef";
pub const POLICY_CLIENT_SECRET: &str = "test-policy-svc-secret-0123456789abcdef";
/// policy-svc's `decisions.caller_audience` (its default).
pub const POLICY_AUDIENCE: &str = "agentsec-policy";
/// audit-svc's `audience` (its default).
pub const AUDIT_AUDIENCE: &str = "agentsec-audit";
/// A service client the tests append to and read audit-svc with (every
/// tenant).
pub const AUDIT_CLIENT_ID: &str = "audit_tester";
pub const AUDIT_CLIENT_SECRET: &str = "test-audit-tester-secret-0123456789abcdef";

/// A client of audit-svc whose every call carries a bearer token.
pub type AuditClient = AuditServiceClient<InterceptedService<Channel, Bearer>>;

/// One token, always the same (an audit client's in tests).
pub struct FixedToken(pub String);

impl agentsec_common::upstream::TokenSource for FixedToken {
    fn token<'a>(
        &'a self,
        _stale: Option<&'a str>,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<String, agentsec_common::error::ApiError>>
                + Send
                + 'a,
        >,
    > {
        Box::pin(std::future::ready(Ok(self.0.clone())))
    }
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl Bearer {
    pub fn new(token: &str) -> anyhow::Result<Self> {
        Ok(Self(format!("Bearer {token}").parse()?))
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}
/// The pepper of test clusters' client secrets (public: a test checks it
/// never reaches a log).
pub const TEST_PEPPER: &str = "test-pepper-0123456789abcdef0123456789abcdef";

/// The `iss` of an extra token issuer every test cluster's policy-svc trusts
/// for CheckToken (besides identity-svc): tokens signed with
/// [`extra_token_issuer_key`], e.g. delegated (exchange-shaped) tokens.
pub const EXTRA_TOKEN_ISSUER: &str = "https://token-issuer.test";

/// The signing key of [`EXTRA_TOKEN_ISSUER`] (one per test process; its
/// public key is inline in policy-svc's `[[token_issuers]]`).
pub fn extra_token_issuer_key() -> Option<&'static agentsec_common::keys::SigningKey> {
    static KEY: std::sync::OnceLock<Option<agentsec_common::keys::SigningKey>> =
        std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        agentsec_common::keys::SigningKey::generate(agentsec_common::keys::SigningAlgorithm::EdDsa)
            .ok()
    })
    .as_ref()
}

/// The `iss` of the user-token issuer every test cluster's exchange-svc
/// trusts for people's tokens (grants).
pub const TEST_USER_ISSUER: &str = "https://users.test";
/// The audience exchange-svc requires in people's tokens in test clusters.
pub const TEST_USER_AUDIENCE: &str = "agentsec-exchange";
/// Target systems exchange-svc issues tokens for in tests; the last one
/// takes impersonation tokens (no `act`).
pub const TEST_TARGET: &str = "https://api.test";
pub const TEST_OTHER_TARGET: &str = "https://other-api.test";
pub const TEST_IMPERSONATION_TARGET: &str = "https://legacy.test";

/// The signing key of [`TEST_USER_ISSUER`] (one per test process; its public
/// key is inline in exchange-svc's `[[user_issuers]]`).
pub fn test_user_issuer_key() -> Option<&'static agentsec_common::keys::SigningKey> {
    static KEY: std::sync::OnceLock<Option<agentsec_common::keys::SigningKey>> =
        std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        agentsec_common::keys::SigningKey::generate(agentsec_common::keys::SigningAlgorithm::EdDsa)
            .ok()
    })
    .as_ref()
}

/// A change a test makes to identity-svc's configuration.
type IdentityCustomizer = Arc<dyn Fn(&mut agentsec_identity::Config) + Send + Sync>;

/// The four services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Identity,
    Policy,
    Exchange,
    Audit,
}

impl Service {
    pub const ALL: [Service; 4] = [Self::Identity, Self::Policy, Self::Exchange, Self::Audit];

    pub fn name(self) -> &'static str {
        match self {
            Self::Identity => "identity-svc",
            Self::Policy => "policy-svc",
            Self::Exchange => "exchange-svc",
            Self::Audit => "audit-svc",
        }
    }

    /// The fully qualified gRPC service name.
    pub fn grpc_name(self) -> &'static str {
        match self {
            Self::Identity => agentsec_identity::GRPC_SERVICE_NAME,
            Self::Policy => agentsec_policy::GRPC_SERVICE_NAME,
            Self::Exchange => agentsec_exchange::GRPC_SERVICE_NAME,
            Self::Audit => agentsec_audit::GRPC_SERVICE_NAME,
        }
    }
}

struct RunningService {
    service: Service,
    addr: SocketAddr,
    task: JoinHandle<Result<(), StartError>>,
}

/// All four services, started in-process.
pub struct TestCluster {
    pub backend: TestBackend,
    services: Vec<RunningService>,
    stopped: Vec<(Service, SocketAddr)>,
    stop: watch::Sender<bool>,
    /// audit-svc stops last, so the others can flush their audit events.
    stop_audit: watch::Sender<bool>,
    /// Where audit-svc listens, for the other services' audit clients.
    audit_addr: SocketAddr,
    /// Where the first instance of each service listens (bound before any
    /// starts, kept across kill and restart): the address the others are
    /// configured with, and the issuer of its tokens.
    first_addrs: Vec<(Service, SocketAddr)>,
    /// Applied to identity-svc's configuration at every (re)start.
    identity_customizer: Option<IdentityCustomizer>,
}

impl TestCluster {
    /// Starts the services on a fresh backend and waits until all are ready.
    pub async fn start() -> anyhow::Result<Self> {
        let backend = TestBackend::from_env().await?;
        Self::start_on(backend).await
    }

    /// Starts the services on a fresh backend, with identity-svc's
    /// configuration changed by `customize` (also on [`Self::restart`]).
    pub async fn start_with_identity(
        customize: impl Fn(&mut agentsec_identity::Config) + Send + Sync + 'static,
    ) -> anyhow::Result<Self> {
        let backend = TestBackend::from_env().await?;
        Self::launch(backend, Some(Arc::new(customize)), &Service::ALL).await
    }

    /// Starts the services on `backend` (e.g. to restart on the same data).
    pub async fn start_on(backend: TestBackend) -> anyhow::Result<Self> {
        Self::launch(backend, None, &Service::ALL).await
    }

    /// Starts only `services` on a fresh backend: for tests that need a
    /// service's own behaviour without the others' traffic (e.g. an audit
    /// trail holding exactly the events a test appended).
    pub async fn start_only(services: &[Service]) -> anyhow::Result<Self> {
        let backend = TestBackend::from_env().await?;
        Self::launch(backend, None, services).await
    }

    async fn launch(
        backend: TestBackend,
        identity_customizer: Option<IdentityCustomizer>,
        services: &[Service],
    ) -> anyhow::Result<Self> {
        let (stop, _) = watch::channel(false);
        let (stop_audit, _) = watch::channel(false);
        // Every port is bound before any service starts, so that each can be
        // configured with the others' addresses.
        let mut listeners = Vec::new();
        for &service in services {
            listeners.push((service, bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?));
        }
        let first_addrs = listeners
            .iter()
            .map(|(service, listener)| Ok((*service, listener.local_addr()?)))
            .collect::<std::io::Result<Vec<_>>>()?;
        let audit_addr = first_addrs
            .iter()
            .find(|(service, _)| *service == Service::Audit)
            .map(|(_, addr)| *addr)
            .context("no audit-svc listener")?;
        let mut cluster = Self {
            backend,
            services: Vec::new(),
            stopped: Vec::new(),
            stop,
            stop_audit,
            audit_addr,
            first_addrs,
            identity_customizer,
        };
        for (service, listener) in listeners {
            cluster.spawn_on(service, listener)?;
        }
        cluster.wait_until_ready().await?;
        Ok(cluster)
    }

    fn spawn_on(
        &mut self,
        service: Service,
        listener: tokio::net::TcpListener,
    ) -> anyhow::Result<()> {
        let addr = listener.local_addr()?;
        let mut stop = if service == Service::Audit {
            self.stop_audit.subscribe()
        } else {
            self.stop.subscribe()
        };
        let shutdown = async move {
            // An error means the cluster was dropped: stop as well.
            let _ = stop.wait_for(|stopped| *stopped).await;
        };
        let database = self.backend.database(service.name());
        let redis = self.backend.redis();
        let task = match service {
            Service::Identity => tokio::spawn(agentsec_identity::serve(
                self.identity_config(addr, database, redis),
                listener,
                shutdown,
            )),
            Service::Policy => tokio::spawn(agentsec_policy::serve(
                self.policy_config(database, redis),
                listener,
                shutdown,
            )),
            Service::Exchange => tokio::spawn(agentsec_exchange::serve(
                self.exchange_config(database, redis),
                listener,
                shutdown,
            )),
            Service::Audit => tokio::spawn(agentsec_audit::serve(
                self.audit_config(database)?,
                listener,
                shutdown,
            )),
        };
        self.services.push(RunningService {
            service,
            addr,
            task,
        });
        Ok(())
    }

    /// Starts one more instance of `service` on the same database and
    /// Redis (a replica, as a second pod would be); returns its address.
    /// Identity replicas share the first instance's issuer.
    pub async fn start_replica(&mut self, service: Service) -> anyhow::Result<SocketAddr> {
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        self.spawn_on(service, listener)?;
        self.wait_until_ready().await?;
        Ok(addr)
    }

    /// Starts one more policy-svc on the same database and Redis with its
    /// configuration changed by `customize` (e.g. another Redis URL or cache
    /// settings); returns its address.
    pub async fn start_policy_replica_with(
        &mut self,
        customize: impl FnOnce(&mut agentsec_policy::Config),
    ) -> anyhow::Result<SocketAddr> {
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let mut config = self.policy_config(
            self.backend.database(Service::Policy.name()),
            self.backend.redis(),
        );
        customize(&mut config);
        let mut stop = self.stop.subscribe();
        let shutdown = async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        };
        let task = tokio::spawn(agentsec_policy::serve(config, listener, shutdown));
        self.services.push(RunningService {
            service: Service::Policy,
            addr,
            task,
        });
        self.wait_until_ready().await?;
        Ok(addr)
    }

    fn identity_config(
        &self,
        addr: SocketAddr,
        database: agentsec_common::config::DatabaseConfig,
        redis: agentsec_common::config::RedisConfig,
    ) -> agentsec_identity::Config {
        let mut config = agentsec_identity::Config::for_test(database, redis);
        let first = self
            .services
            .iter()
            .find(|running| running.service == Service::Identity)
            .map_or(addr, |running| running.addr);
        config.issuer = format!("http://{first}");
        config.credentials.pepper = Some(TEST_PEPPER.to_owned());
        config.bootstrap_admin.client_id = Some(ADMIN_CLIENT_ID.to_owned());
        config.bootstrap_admin.client_secret = Some(ADMIN_CLIENT_SECRET.to_owned());
        config.service_clients = [
            (
                agentsec_identity::EXCHANGE_SVC_CLIENT_ID.to_owned(),
                agentsec_identity::ServiceClientConfig::exchange_svc(
                    EXCHANGE_CLIENT_SECRET.to_owned(),
                    ADMIN_AUDIENCE,
                    POLICY_AUDIENCE,
                    AUDIT_AUDIENCE,
                ),
            ),
            (
                agentsec_identity::POLICY_SVC_CLIENT_ID.to_owned(),
                agentsec_identity::ServiceClientConfig::policy_svc(
                    POLICY_CLIENT_SECRET.to_owned(),
                    ADMIN_AUDIENCE,
                    AUDIT_AUDIENCE,
                ),
            ),
            (
                AUDIT_CLIENT_ID.to_owned(),
                agentsec_identity::ServiceClientConfig {
                    client_secret: AUDIT_CLIENT_SECRET.to_owned(),
                    audiences: vec![AUDIT_AUDIENCE.to_owned()],
                    scopes: vec![
                        agentsec_common::admin_token::AUDIT_APPEND_SCOPE.to_owned(),
                        agentsec_common::admin_token::AUDIT_READ_SCOPE.to_owned(),
                    ],
                },
            ),
        ]
        .into();
        config.audit = self.audit_client_config();
        if let Some(customize) = &self.identity_customizer {
            customize(&mut config);
        }
        config
    }

    /// Whether this cluster runs identity-svc.
    fn has_identity(&self) -> bool {
        self.first_addrs
            .iter()
            .any(|(service, _)| *service == Service::Identity)
    }

    /// audit-svc's configuration: callers' tokens verified against this
    /// cluster's identity-svc, or, in a cluster without one, against the
    /// test process's [`extra_token_issuer_key`] (see [`Self::audit_token`]).
    pub fn audit_config(
        &self,
        database: agentsec_common::config::DatabaseConfig,
    ) -> anyhow::Result<agentsec_audit::Config> {
        let mut config = agentsec_audit::Config::for_test(database);
        if self.has_identity() {
            config.trust_identity(&self.first_issuer(Service::Identity));
        } else {
            let key = extra_token_issuer_key().context("no test signing key")?;
            config.admin.jwks = Some(serde_json::json!({ "keys": [key.public_jwk()] }).to_string());
            config.admin.issuer = Some(EXTRA_TOKEN_ISSUER.to_owned());
        }
        Ok(config)
    }

    /// A token that appends to and reads audit-svc in every tenant: the
    /// [`AUDIT_CLIENT_ID`] service client's, or, without identity-svc, one
    /// signed with [`extra_token_issuer_key`].
    pub async fn audit_token(&self) -> anyhow::Result<String> {
        use agentsec_common::admin_token::{AUDIT_APPEND_SCOPE, AUDIT_READ_SCOPE};
        if self.has_identity() {
            return self
                .client_token(AUDIT_CLIENT_ID, AUDIT_CLIENT_SECRET, AUDIT_AUDIENCE, "")
                .await;
        }
        let key = extra_token_issuer_key().context("no test signing key")?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        Ok(key.sign(
            "at+jwt",
            &serde_json::json!({
                "iss": EXTRA_TOKEN_ISSUER,
                "sub": AUDIT_CLIENT_ID,
                "aud": AUDIT_AUDIENCE,
                "scope": format!("{AUDIT_APPEND_SCOPE} {AUDIT_READ_SCOPE}"),
                "iat": now,
                "nbf": now,
                "exp": now + 3_600,
            }),
        )?)
    }

    /// A client of this cluster's audit-svc carrying [`Self::audit_token`].
    pub async fn audit_client(&self) -> anyhow::Result<AuditClient> {
        self.audit_client_at(self.addr(Service::Audit)).await
    }

    /// A client of the audit-svc at `addr` (e.g. a replica) carrying
    /// [`Self::audit_token`].
    pub async fn audit_client_at(&self, addr: SocketAddr) -> anyhow::Result<AuditClient> {
        Ok(AuditServiceClient::with_interceptor(
            channel(addr).await?,
            Bearer::new(&self.audit_token().await?)?,
        ))
    }

    /// policy-svc's configuration: admin tokens verified against this
    /// cluster's identity-svc (bound before policy-svc starts), audit events
    /// to this cluster's audit-svc.
    fn policy_config(
        &self,
        database: agentsec_common::config::DatabaseConfig,
        redis: agentsec_common::config::RedisConfig,
    ) -> agentsec_policy::Config {
        let mut config = agentsec_policy::Config::for_test(database, redis);
        let identity = self.first_issuer(Service::Identity);
        config.admin.jwks_uri = Some(format!("{identity}/.well-known/jwks.json"));
        config.admin.issuer = Some(identity.clone());
        // CheckToken trusts identity-svc and the extra test issuer.
        config
            .token_issuers
            .push(agentsec_policy::TokenIssuerConfig {
                issuer: identity.clone(),
                jwks_uri: Some(format!("{identity}/.well-known/jwks.json")),
                jwks: None,
                algorithms: vec!["EdDSA".to_owned(), "ES256".to_owned()],
            });
        // ... and exchange-svc's delegated tokens.
        let exchange = self.first_issuer(Service::Exchange);
        config
            .token_issuers
            .push(agentsec_policy::TokenIssuerConfig {
                issuer: exchange.clone(),
                jwks_uri: Some(format!("{exchange}/.well-known/jwks.json")),
                jwks: None,
                algorithms: vec!["EdDSA".to_owned(), "ES256".to_owned()],
            });
        if let Some(key) = extra_token_issuer_key() {
            config
                .token_issuers
                .push(agentsec_policy::TokenIssuerConfig {
                    issuer: EXTRA_TOKEN_ISSUER.to_owned(),
                    jwks_uri: None,
                    jwks: Some(serde_json::json!({ "keys": [key.public_jwk()] }).to_string()),
                    algorithms: vec!["EdDSA".to_owned()],
                });
        }
        config.audit = self.audit_client_config();
        // Revocations from this cluster's identity-svc and exchange-svc.
        config.identity.endpoint = Some(identity);
        config.identity.client_id = agentsec_identity::POLICY_SVC_CLIENT_ID.to_owned();
        config.identity.client_secret = POLICY_CLIENT_SECRET.to_owned();
        config.revocations.exchange_endpoint = Some(exchange);
        config
    }

    /// exchange-svc's configuration: people's tokens from
    /// [`TEST_USER_ISSUER`] (signed with [`test_user_issuer_key`]) for
    /// [`TEST_USER_AUDIENCE`], admin tokens of this cluster's identity-svc,
    /// audit events to this cluster's audit-svc.
    fn exchange_config(
        &self,
        database: agentsec_common::config::DatabaseConfig,
        redis: agentsec_common::config::RedisConfig,
    ) -> agentsec_exchange::Config {
        let mut config = agentsec_exchange::Config::for_test(database, redis);
        config.issuer = self.first_issuer(Service::Exchange);
        config.audit = self.audit_client_config();
        // Admin and agent tokens of this cluster's identity-svc, which
        // exchange-svc calls with its service client; decisions from this
        // cluster's policy-svc.
        let identity = self.first_issuer(Service::Identity);
        config.admin.jwks_uri = Some(format!("{identity}/.well-known/jwks.json"));
        config.admin.issuer = Some(identity.clone());
        config.identity.endpoint = Some(identity);
        config.identity.client_id = agentsec_identity::EXCHANGE_SVC_CLIENT_ID.to_owned();
        config.identity.client_secret = EXCHANGE_CLIENT_SECRET.to_owned();
        config.policy.endpoint = Some(self.first_issuer(Service::Policy));
        config.targets = vec![
            // Tokens for further delegation (an agent hands one to the next).
            agentsec_exchange::TargetConfig {
                audience: config.issuer.clone(),
                allow_impersonation: false,
            },
            agentsec_exchange::TargetConfig {
                audience: TEST_TARGET.to_owned(),
                allow_impersonation: false,
            },
            agentsec_exchange::TargetConfig {
                audience: TEST_OTHER_TARGET.to_owned(),
                allow_impersonation: false,
            },
            agentsec_exchange::TargetConfig {
                audience: TEST_IMPERSONATION_TARGET.to_owned(),
                allow_impersonation: true,
            },
        ];
        if let Some(key) = test_user_issuer_key() {
            config.user_issuers = vec![agentsec_exchange::UserIssuerConfig {
                issuer: TEST_USER_ISSUER.to_owned(),
                jwks: Some(serde_json::json!({ "keys": [key.public_jwk()] }).to_string()),
                jwks_uri: None,
                audience: TEST_USER_AUDIENCE.to_owned(),
                algorithms: vec!["EdDSA".to_owned()],
                jwks_cache_secs: 300,
            }];
        }
        config
    }

    /// An audit client configuration pointing at this cluster's audit-svc,
    /// with short retries so tests see events promptly.
    pub fn audit_client_config(&self) -> agentsec_common::audit::client::AuditClientConfig {
        agentsec_common::audit::client::AuditClientConfig {
            endpoint: format!("http://{}", self.audit_addr),
            flush_interval_ms: 2,
            retry_initial_backoff_ms: 10,
            retry_max_backoff_ms: 200,
            shutdown_flush_timeout_secs: 5,
            ..Default::default()
        }
    }

    /// The base URL of the first instance of `service` (also the `iss` of
    /// its tokens), known before it starts.
    fn first_issuer(&self, service: Service) -> String {
        let addr = self
            .first_addrs
            .iter()
            .find(|(first, _)| *first == service)
            .map_or_else(|| self.addr(service), |(_, addr)| *addr);
        format!("http://{addr}")
    }

    /// The `iss` of a service's tokens (its base URL in tests).
    pub fn issuer(&self, service: Service) -> String {
        format!("http://{}", self.addr(service))
    }

    /// A global admin token from identity-svc, obtained over HTTP with the
    /// bootstrap admin credential.
    pub async fn admin_token(&self) -> anyhow::Result<String> {
        self.client_token(ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, ADMIN_AUDIENCE, "")
            .await
    }

    /// A client-credentials token of identity-svc for `audience` (and
    /// `scope`, when not empty); an error names the refusal.
    pub async fn client_token(
        &self,
        client_id: &str,
        secret: &str,
        audience: &str,
        scope: &str,
    ) -> anyhow::Result<String> {
        let response = self
            .client_token_response(client_id, secret, audience, scope)
            .await?;
        let body = response.json()?;
        if response.status != 200 {
            bail!("token for {client_id} refused: {} {body}", response.status);
        }
        body["access_token"]
            .as_str()
            .map(str::to_owned)
            .context("no access_token in the token response")
    }

    /// identity-svc's answer to a client-credentials token request.
    pub async fn client_token_response(
        &self,
        client_id: &str,
        secret: &str,
        audience: &str,
        scope: &str,
    ) -> anyhow::Result<crate::http::HttpResponse> {
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
            ("audience", audience),
        ];
        if !scope.is_empty() {
            form.push(("scope", scope));
        }
        crate::http::post_form(self.addr(Service::Identity), "/oauth2/token", &[], &form).await
    }

    /// Ends a service abruptly, as a crash would: its task is aborted and
    /// open connections drop; nothing is drained.
    pub async fn kill(&mut self, service: Service) -> anyhow::Result<()> {
        let index = self
            .services
            .iter()
            .position(|running| running.service == service)
            .context("service is not running")?;
        let running = self.services.remove(index);
        running.task.abort();
        let _ = running.task.await;
        self.stopped.push((service, running.addr));
        Ok(())
    }

    /// Starts a killed service again on its old address and data.
    pub async fn restart(&mut self, service: Service) -> anyhow::Result<()> {
        let index = self
            .stopped
            .iter()
            .position(|(stopped, _)| *stopped == service)
            .context("service was not killed")?;
        let (_, addr) = self.stopped.remove(index);
        // The same address again: clients are configured with it.
        let listener = bind(addr).await?;
        self.spawn_on(service, listener)?;
        self.wait_until_ready().await
    }

    /// A direct connection to a service's database, for tests that play
    /// the part of someone with database access.
    pub async fn database(&self, service: Service) -> anyhow::Result<sea_orm::DatabaseConnection> {
        Ok(agentsec_common::db::connect(&self.backend.database(service.name())).await?)
    }

    async fn wait_until_ready(&mut self) -> anyhow::Result<()> {
        // One deadline for all of them.
        let deadline = tokio::time::Instant::now() + READY_DEADLINE;
        for index in 0..self.services.len() {
            let (service, addr) = (self.services[index].service, self.services[index].addr);
            let task = &self.services[index].task;
            // `false`: the service stopped instead.
            let serving = eventually(
                &format!("{} SERVING", service.name()),
                deadline.saturating_duration_since(tokio::time::Instant::now()),
                || async move {
                    if task.is_finished() {
                        return Ok(Some(false));
                    }
                    let status = health_status(addr, "").await.ok();
                    Ok((status == Some(ServingStatus::Serving)).then_some(true))
                },
            )
            .await?;
            if !serving {
                let running = self.services.remove(index);
                let outcome = running.task.await;
                bail!("{} stopped during start-up: {outcome:?}", service.name());
            }
        }
        Ok(())
    }

    /// The address a service listens on.
    pub fn addr(&self, service: Service) -> SocketAddr {
        self.services
            .iter()
            .find(|running| running.service == service)
            .map(|running| running.addr)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// A gRPC channel to a service.
    pub async fn channel(&self, service: Service) -> anyhow::Result<Channel> {
        channel(self.addr(service)).await
    }

    /// Stops every service and fails if any of them ended with an error.
    /// Returns the backend so a test can start again on the same data.
    pub async fn stop(mut self) -> anyhow::Result<TestBackend> {
        let _ = self.stop.send(true);
        let mut failures = Vec::new();
        // audit-svc last: the others flush their audit clients on the way out.
        self.services
            .sort_by_key(|running| running.service == Service::Audit);
        for running in self.services.drain(..) {
            if running.service == Service::Audit {
                let _ = self.stop_audit.send(true);
            }
            match running.task.await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => failures.push(format!("{}: {err}", running.service.name())),
                Err(err) => {
                    failures.push(format!("{}: task failed: {err}", running.service.name()))
                }
            }
        }
        if !failures.is_empty() {
            bail!("services failed: {}", failures.join("; "));
        }
        Ok(self.backend)
    }

    /// Stops every service and removes the cluster's schemas and keys.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let backend = self.stop().await?;
        let names: Vec<&str> = Service::ALL.iter().map(|s| s.name()).collect();
        backend.clean_up(&names).await
    }
}

/// Connects a gRPC channel to `addr`.
pub async fn channel(addr: SocketAddr) -> anyhow::Result<Channel> {
    Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("connecting to {addr}"))
}

/// Asks `grpc.health.v1.Health/Check` about `service` ("" for the server).
pub async fn health_status(addr: SocketAddr, service: &str) -> anyhow::Result<ServingStatus> {
    let mut client = HealthClient::new(channel(addr).await?);
    let response = client
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await?
        .into_inner();
    ServingStatus::try_from(response.status)
        .map_err(|_| anyhow!("unknown status {}", response.status))
}
