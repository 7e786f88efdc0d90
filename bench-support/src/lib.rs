//! What the services' load generators share: environment knobs, a fresh
//! database per run (SQLite in a temp dir, or a PostgreSQL schema when
//! `AGENTSEC_BENCH_DATABASE_URL` is set), latency percentiles, medians, and
//! a keep-alive HTTP/1.1 client that costs the server nothing extra.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use agentsec_common::config::DatabaseConfig;
use anyhow::{bail, Context as _};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An integer knob from the environment, or `default`.
pub fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A database for one run, and the temp dir that must outlive it.
pub struct BenchDatabase {
    pub config: DatabaseConfig,
    pub backend: &'static str,
    _dir: Option<tempfile::TempDir>,
}

impl BenchDatabase {
    /// A fresh database named after `service` and `run`.
    pub fn fresh(service: &str, run: u64) -> anyhow::Result<Self> {
        match std::env::var("AGENTSEC_BENCH_DATABASE_URL") {
            Ok(url) if !url.is_empty() => Ok(Self {
                config: DatabaseConfig {
                    url,
                    schema: Some(format!("bench_{service}_{}_{run}", std::process::id())),
                    max_connections: 8,
                    connect_timeout_secs: 10,
                    acquire_timeout_ms: 1_500,
                    migrate_on_start: true,
                },
                backend: "PostgreSQL",
                _dir: None,
            }),
            _ => {
                let dir = tempfile::tempdir()?;
                Ok(Self {
                    config: DatabaseConfig::sqlite_file(&dir.path().join(format!("{service}.db"))),
                    backend: "SQLite",
                    _dir: Some(dir),
                })
            }
        }
    }

    /// Drops the run's PostgreSQL schema (the SQLite dir goes with `self`).
    pub async fn drop(self) -> anyhow::Result<()> {
        use sea_orm::ConnectionTrait;
        if let Some(schema) = &self.config.schema {
            let db = sea_orm::Database::connect(self.config.url.as_str()).await?;
            db.execute_unprepared(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                .await?;
        }
        Ok(())
    }
}

/// Latencies of one run, sorted for percentiles.
pub struct Latencies(Vec<Duration>);

impl Latencies {
    pub fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        Self(samples)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `p` quantile (0.0-1.0) in milliseconds.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        let index = ((self.0.len() as f64 - 1.0) * p).round() as usize;
        self.0
            .get(index)
            .map(|d| d.as_secs_f64() * 1e3)
            .unwrap_or(0.0)
    }
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// A gRPC channel to `addr` once the service there answers (services
/// start in the background; 10 s at most).
pub async fn channel(addr: SocketAddr) -> anyhow::Result<tonic::transport::Channel> {
    for _ in 0..500 {
        if let Ok(channel) = tonic::transport::Channel::from_shared(format!("http://{addr}"))?
            .connect()
            .await
        {
            return Ok(channel);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("{addr} did not answer")
}

/// `message` with `authorization: Bearer <token>`.
pub fn bearer<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// The bootstrap admin the load generators configure identity-svc with.
pub const BENCH_ADMIN_ID: &str = "bench-admin";
pub const BENCH_ADMIN_SECRET: &str = "bench-admin-secret-0123456789abcdef0123";
/// The secrets of the service clients the load generators configure
/// (`agentsec_identity::EXCHANGE_SVC_CLIENT_ID`, `POLICY_SVC_CLIENT_ID`).
pub const BENCH_EXCHANGE_SECRET: &str = "bench-exchange-svc-secret-0123456789abcdef";
pub const BENCH_POLICY_SECRET: &str = "bench-policy-svc-secret-0123456789abcdef";

/// A client-credentials request for `audience`.
pub fn client_credentials(
    client_id: &str,
    secret: &str,
    audience: &str,
) -> agentsec_proto::identity::v1::IssueTokenRequest {
    use agentsec_proto::identity::v1::{issue_token_request::ClientAuthentication, GrantType};
    agentsec_proto::identity::v1::IssueTokenRequest {
        grant_type: GrantType::ClientCredentials as i32,
        client_id: client_id.into(),
        client_authentication: Some(ClientAuthentication::ClientSecret(secret.into())),
        audience: audience.into(),
        ..Default::default()
    }
}

/// Registers an agent of tenant `bench` with `audiences` and `scopes` as
/// its ceiling and gives it a client secret, as the bench admin; returns
/// (admin token, client id, secret).
pub async fn bench_agent(
    identity: tonic::transport::Channel,
    name: &str,
    audiences: &[&str],
    scopes: &[&str],
) -> anyhow::Result<(String, String, String)> {
    use agentsec_proto::identity::v1::identity_service_client::IdentityServiceClient;
    use agentsec_proto::identity::v1::{
        Agent, Ceiling, CreateClientSecretRequest, RegisterAgentRequest,
    };
    let mut client = IdentityServiceClient::new(identity);
    let admin = client
        .issue_token(client_credentials(
            BENCH_ADMIN_ID,
            BENCH_ADMIN_SECRET,
            "agentsec",
        ))
        .await?
        .into_inner()
        .access_token;
    let agent = client
        .register_agent(bearer(
            &admin,
            RegisterAgentRequest {
                agent: Some(Agent {
                    tenant: "bench".into(),
                    owner: "alice".into(),
                    name: name.into(),
                    ceiling: Some(Ceiling {
                        audiences: audiences.iter().map(|a| a.to_string()).collect(),
                        scopes: scopes.iter().map(|s| s.to_string()).collect(),
                    }),
                    ..Default::default()
                }),
            },
        ))
        .await?
        .into_inner()
        .agent
        .context("no agent")?;
    let secret = client
        .create_client_secret(bearer(
            &admin,
            CreateClientSecretRequest {
                agent_id: agent.id.clone(),
                ..Default::default()
            },
        ))
        .await?
        .into_inner();
    Ok((admin, secret.client_id, secret.client_secret))
}

/// Throughput and latency of one load phase.
pub struct Phase {
    pub per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub count: usize,
}

impl Phase {
    /// The phase of `latencies` measured over `elapsed` seconds.
    pub fn of(latencies: &Latencies, elapsed: f64) -> Phase {
        Phase {
            per_sec: latencies.len() as f64 / elapsed,
            p50_ms: latencies.percentile_ms(0.50),
            p99_ms: latencies.percentile_ms(0.99),
            p999_ms: latencies.percentile_ms(0.999),
            count: latencies.len(),
        }
    }

    /// The phase of load `workers` started at `started`, each returning
    /// its latencies.
    pub async fn of_workers(
        workers: Vec<tokio::task::JoinHandle<anyhow::Result<Vec<Duration>>>>,
        started: Instant,
    ) -> anyhow::Result<Phase> {
        let mut all = Vec::new();
        for worker in workers {
            all.append(&mut worker.await??);
        }
        let elapsed = started.elapsed().as_secs_f64();
        Ok(Phase::of(&Latencies::new(all), elapsed))
    }

    /// `name 1234/s (p50 .., p99 .., p999 .., N requests)`.
    pub fn show(&self, name: &str) -> String {
        format!(
            "{name} {:.0}/s (p50 {:.2} ms, p99 {:.2} ms, p999 {:.2} ms, {} requests)",
            self.per_sec, self.p50_ms, self.p99_ms, self.p999_ms, self.count
        )
    }

    /// The median of each figure over runs (requests: the total).
    pub fn median_of(phases: &[Phase]) -> Phase {
        Phase {
            per_sec: median(phases.iter().map(|p| p.per_sec).collect()),
            p50_ms: median(phases.iter().map(|p| p.p50_ms).collect()),
            p99_ms: median(phases.iter().map(|p| p.p99_ms).collect()),
            p999_ms: median(phases.iter().map(|p| p.p999_ms).collect()),
            count: phases.iter().map(|p| p.count).sum(),
        }
    }
}

/// `clients` keep-alive connections POST the `bodies` (of `content_type`)
/// in turn to `path` (with `authorization` when not empty) until `seconds`
/// have passed; anything but 200 fails the phase.
pub async fn hammer(
    addr: SocketAddr,
    clients: u64,
    seconds: u64,
    path: &'static str,
    content_type: &'static str,
    authorization: String,
    bodies: Vec<String>,
) -> anyhow::Result<Phase> {
    let bodies = std::sync::Arc::new(bodies);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..clients {
        let mut connection = KeepAlive::connect(addr).await?;
        let (authorization, bodies) = (authorization.clone(), bodies.clone());
        let offset = workers.len() * 61;
        workers.push(tokio::spawn(async move {
            let headers: Vec<(&str, &str)> = if authorization.is_empty() {
                Vec::new()
            } else {
                vec![("Authorization", authorization.as_str())]
            };
            let mut latencies = Vec::new();
            let mut sent = offset;
            while Instant::now() < deadline {
                let body = &bodies[sent % bodies.len()];
                sent += 1;
                let began = Instant::now();
                let (status, response) =
                    connection.post(path, content_type, &headers, body).await?;
                latencies.push(began.elapsed());
                if status != 200 {
                    bail!(
                        "{path} answered {status}: {}",
                        String::from_utf8_lossy(&response)
                    );
                }
            }
            anyhow::Ok(latencies)
        }));
    }
    Phase::of_workers(workers, started).await
}

/// This process's resident set (VmRSS), in MiB; 0 where /proc is missing.
pub fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|value| {
                    value
                        .trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<f64>()
                        .ok()
                })
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// One persistent HTTP/1.1 connection: requests go out one after another
/// on it, as an OAuth client library with keep-alive would send them.
pub struct KeepAlive {
    stream: TcpStream,
    host: String,
    buffer: Vec<u8>,
}

impl KeepAlive {
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            host: addr.to_string(),
            buffer: Vec::with_capacity(4096),
        })
    }

    /// POSTs a body of `content_type`; returns the status and the body.
    pub async fn post(
        &mut self,
        path: &str,
        content_type: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
            self.host,
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        head.push_str(body);
        self.stream.write_all(head.as_bytes()).await?;
        self.read_response().await
    }

    async fn read_response(&mut self) -> anyhow::Result<(u16, Vec<u8>)> {
        loop {
            if let Some(end) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buffer[..end]).context("headers")?;
                let status: u16 = head
                    .split(' ')
                    .nth(1)
                    .context("status line")?
                    .parse()
                    .context("status code")?;
                let length: usize = head
                    .split("\r\n")
                    .filter_map(|line| line.split_once(':'))
                    .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
                    .map(|(_, value)| value.trim().parse())
                    .transpose()?
                    .unwrap_or(0);
                let total = end + 4 + length;
                while self.buffer.len() < total {
                    self.fill().await?;
                }
                let body = self.buffer[end + 4..total].to_vec();
                self.buffer.drain(..total);
                return Ok((status, body));
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> anyhow::Result<()> {
        let mut chunk = [0u8; 4096];
        let read = self.stream.read(&mut chunk).await?;
        if read == 0 {
            bail!("connection closed by the server");
        }
        self.buffer.extend_from_slice(&chunk[..read]);
        Ok(())
    }
}
