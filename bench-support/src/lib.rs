//! What the services' load generators share: environment knobs, a fresh
//! database per run (SQLite in a temp dir, or a PostgreSQL schema when
//! `AGENTSEC_BENCH_DATABASE_URL` is set), latency percentiles, medians, and
//! a keep-alive HTTP/1.1 client that costs the server nothing extra.

use std::net::SocketAddr;
use std::time::Duration;

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

    /// POSTs a form body; returns the status and the body.
    pub async fn post_form(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
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
