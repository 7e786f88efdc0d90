//! What agentctl's process tests share: the built binary run against a
//! test cluster with the bootstrap admin, and what a run printed.

// Each test binary that includes this module uses a part of it.
#![allow(dead_code)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use agentsec_integration_tests::cluster::{ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET};
use agentsec_integration_tests::{Service, TestCluster};
use anyhow::Context as _;
use serde_json::Value;

/// What an agentctl run printed, and how it exited.
#[derive(Debug)]
pub struct Ran {
    pub success: bool,
    /// The exit status (None when a signal ended the process).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// stdout of a run that must have succeeded.
    pub fn ok(self) -> anyhow::Result<String> {
        anyhow::ensure!(self.success, "agentctl failed: {self:#?}");
        Ok(self.stdout)
    }

    /// stdout of a successful run, as JSON.
    pub fn json(self) -> anyhow::Result<Value> {
        let stdout = self.ok()?;
        serde_json::from_str(&stdout).with_context(|| format!("not JSON: {stdout}"))
    }

    /// stderr of a run that must have failed.
    pub fn failed(self) -> anyhow::Result<String> {
        anyhow::ensure!(!self.success, "agentctl succeeded: {self:#?}");
        anyhow::ensure!(self.stdout.is_empty(), "printed on failure: {self:#?}");
        Ok(self.stderr)
    }

    /// The run, which must have exited with `code`.
    pub fn exited(self, code: i32) -> anyhow::Result<Self> {
        anyhow::ensure!(
            self.code == Some(code),
            "agentctl did not exit {code}: {self:#?}"
        );
        Ok(self)
    }
}

/// agentctl pointed at a test cluster with the bootstrap admin.
pub struct Agentctl {
    urls: Vec<String>,
    env: Vec<(String, String)>,
    _dir: tempfile::TempDir,
}

impl Agentctl {
    pub fn new(cluster: &TestCluster) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let secret_file: PathBuf = dir.path().join("admin-secret");
        std::fs::write(&secret_file, ADMIN_CLIENT_SECRET)?;
        let url = |service| format!("http://{}", cluster.addr(service));
        Ok(Self {
            urls: vec![
                format!("--identity={}", url(Service::Identity)),
                format!("--policy={}", url(Service::Policy)),
                format!("--exchange={}", url(Service::Exchange)),
                format!("--audit={}", url(Service::Audit)),
            ],
            env: vec![
                (
                    "AGENTCTL_ADMIN_CLIENT_ID".to_owned(),
                    ADMIN_CLIENT_ID.to_owned(),
                ),
                (
                    "AGENTCTL_ADMIN_SECRET_FILE".to_owned(),
                    secret_file.display().to_string(),
                ),
            ],
            _dir: dir,
        })
    }

    /// Runs `agentctl <args>` (with the cluster's URLs) off the runtime
    /// the cluster runs on.
    pub async fn run<S: AsRef<str>>(&self, args: &[S]) -> anyhow::Result<Ran> {
        self.run_with_stdin(args, "").await
    }

    /// Runs `agentctl <args>` with `stdin` as its standard input.
    pub async fn run_with_stdin<S: AsRef<str>>(
        &self,
        args: &[S],
        stdin: &str,
    ) -> anyhow::Result<Ran> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_agentctl"));
        // The test's own environment must not steer agentctl.
        for (name, _) in std::env::vars() {
            if name.starts_with("AGENTSEC_") || name.starts_with("AGENTCTL_") {
                command.env_remove(name);
            }
        }
        command
            .args(args.iter().map(AsRef::as_ref))
            .args(&self.urls)
            .envs(self.env.iter().cloned())
            .env("RUST_LOG", "off")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let stdin = stdin.to_owned();
        let output = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
            let mut child = command.spawn()?;
            // Dropping the handle closes stdin, so agentctl reads to its end.
            if let Some(mut input) = child.stdin.take() {
                input.write_all(stdin.as_bytes())?;
            }
            child.wait_with_output()
        })
        .await??;
        Ok(Ran {
            success: output.status.success(),
            code: output.status.code(),
            stdout: String::from_utf8(output.stdout)?,
            stderr: String::from_utf8(output.stderr)?,
        })
    }

    /// Runs `agentctl <args>` with a terminal (a pseudo-terminal from
    /// util-linux `script`) as stdout and stderr; returns what the terminal
    /// showed.
    pub async fn run_on_terminal(&self, args: &[&str]) -> anyhow::Result<Ran> {
        let quote = |arg: &str| format!("'{}'", arg.replace('\'', r"'\''"));
        let line: Vec<String> = std::iter::once(env!("CARGO_BIN_EXE_agentctl"))
            .chain(args.iter().copied())
            .chain(self.urls.iter().map(String::as_str))
            .map(quote)
            .collect();
        let mut command = Command::new("script");
        for (name, _) in std::env::vars() {
            if name.starts_with("AGENTSEC_") || name.starts_with("AGENTCTL_") {
                command.env_remove(name);
            }
        }
        command
            .args([
                "--quiet",
                "--return",
                "--command",
                &line.join(" "),
                "/dev/null",
            ])
            .envs(self.env.iter().cloned())
            .env("RUST_LOG", "off");
        let output = tokio::task::spawn_blocking(move || command.output()).await??;
        Ok(Ran {
            success: output.status.success(),
            code: output.status.code(),
            stdout: String::from_utf8(output.stdout)?,
            stderr: String::from_utf8(output.stderr)?,
        })
    }
}

/// The value of `field` in a `FIELD  value` table.
pub fn field<'a>(table: &'a str, name: &str) -> anyhow::Result<&'a str> {
    table
        .lines()
        .find_map(|line| {
            line.strip_prefix(name)
                .filter(|rest| rest.starts_with("  "))
                .map(str::trim)
        })
        .with_context(|| format!("no `{name}` in\n{table}"))
}
