//! [`TestCluster`]: the four services in this process, each on its own
//! ephemeral port, ready when gRPC health says SERVING.

use std::net::SocketAddr;
use std::time::Duration;

use agentsec_common::server::{bind, StartError};
use anyhow::{anyhow, bail, Context as _};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::backend::TestBackend;

/// How long a cluster may take to become ready.
const READY_DEADLINE: Duration = Duration::from_secs(30);

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
}

impl TestCluster {
    /// Starts the services on a fresh backend and waits until all are ready.
    pub async fn start() -> anyhow::Result<Self> {
        let backend = TestBackend::from_env().await?;
        Self::start_on(backend).await
    }

    /// Starts the services on `backend` (e.g. to restart on the same data).
    pub async fn start_on(backend: TestBackend) -> anyhow::Result<Self> {
        let (stop, _) = watch::channel(false);
        let mut cluster = Self {
            backend,
            services: Vec::new(),
            stopped: Vec::new(),
            stop,
        };
        for service in Service::ALL {
            cluster.spawn(service).await?;
        }
        cluster.wait_until_ready().await?;
        Ok(cluster)
    }

    async fn spawn(&mut self, service: Service) -> anyhow::Result<()> {
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        self.spawn_on(service, listener)
    }

    fn spawn_on(
        &mut self,
        service: Service,
        listener: tokio::net::TcpListener,
    ) -> anyhow::Result<()> {
        let addr = listener.local_addr()?;
        let mut stop = self.stop.subscribe();
        let shutdown = async move {
            // An error means the cluster was dropped: stop as well.
            let _ = stop.wait_for(|stopped| *stopped).await;
        };
        let database = self.backend.database(service.name());
        let redis = self.backend.redis();
        let task = match service {
            Service::Identity => tokio::spawn(agentsec_identity::serve(
                agentsec_identity::Config::for_test(database, redis),
                listener,
                shutdown,
            )),
            Service::Policy => tokio::spawn(agentsec_policy::serve(
                agentsec_policy::Config::for_test(database, redis),
                listener,
                shutdown,
            )),
            Service::Exchange => tokio::spawn(agentsec_exchange::serve(
                agentsec_exchange::Config::for_test(database, redis),
                listener,
                shutdown,
            )),
            Service::Audit => tokio::spawn(agentsec_audit::serve(
                agentsec_audit::Config::for_test(database),
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
        let deadline = tokio::time::Instant::now() + READY_DEADLINE;
        for index in 0..self.services.len() {
            let (service, addr) = (self.services[index].service, self.services[index].addr);
            loop {
                if self.services[index].task.is_finished() {
                    let running = self.services.remove(index);
                    let outcome = running.task.await;
                    bail!("{} stopped during start-up: {outcome:?}", service.name());
                }
                if health_status(addr, "").await.ok() == Some(ServingStatus::Serving) {
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    bail!("{} not SERVING within {READY_DEADLINE:?}", service.name());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
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
        for running in self.services.drain(..) {
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
