//! deploy/compose.yaml, configured as documented, works: the four service
//! binaries start as separate processes with exactly the environment and
//! config files compose gives them, on PostgreSQL and Redis, and `agentctl
//! demo --running` tells its whole story against them, twice.
//!
//! Read from compose.yaml and the Dockerfile, and changed only where a
//! laptop differs from the compose network: hosts of the compose services
//! become 127.0.0.1 on free ports, PostgreSQL and Redis are the test's
//! (with a schema and key prefix of this run), and `${NAME:?...}` secrets
//! are random, as an operator's would be. `${NAME:-default}` settings take
//! what `agentctl demo --print-trust-config` prints, as the compose file's
//! header says. A setting that names a compose host this test does not
//! know, or a variable it cannot fill, fails the test.
//!
//! The binaries are the workspace's (`cargo build --workspace --bins`, which
//! `cargo test --workspace` does too), next to agentctl's or in
//! `AGENTSEC_BIN_DIR`. Without PostgreSQL and Redis (the SQLite test run)
//! there is nothing compose would run on, and the test says so and passes.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use agentsec_integration_tests::TestBackend;
use anyhow::{bail, Context as _};
use serde_json::Value;

/// The compose services that run an AgentSec binary.
const SERVICES: [&str; 4] = ["identity-svc", "policy-svc", "exchange-svc", "audit-svc"];

fn repo() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// deploy/compose.yaml with its merge keys (`<<: *agentsec`) applied.
fn compose() -> anyhow::Result<serde_yaml::Value> {
    let text = std::fs::read_to_string(repo().join("deploy/compose.yaml"))?;
    let mut compose: serde_yaml::Value = serde_yaml::from_str(&text)?;
    compose.apply_merge()?;
    Ok(compose)
}

/// What the Dockerfile's final stage gives every container: the files it
/// copies from the repository (image path -> repository path) and its ENV.
struct Image {
    copies: Vec<(String, PathBuf)>,
    env: BTreeMap<String, String>,
}

fn image() -> anyhow::Result<Image> {
    let text = std::fs::read_to_string(repo().join("deploy/Dockerfile"))?;
    let final_stage = text
        .rsplit_once("\nFROM ")
        .map_or(text.as_str(), |(_, last)| last);
    let mut image = Image {
        copies: Vec::new(),
        env: BTreeMap::new(),
    };
    for line in final_stage.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["COPY", source, target] if !source.starts_with("--") => image
                .copies
                .push(((*target).to_owned(), repo().join(source))),
            ["ENV", assignment] => {
                let (name, value) = assignment
                    .split_once('=')
                    .with_context(|| format!("Dockerfile: `{line}` is not ENV NAME=value"))?;
                image.env.insert(name.to_owned(), value.to_owned());
            }
            _ => {}
        }
    }
    Ok(image)
}

/// The repository file behind `path` in the image.
fn from_image(image: &Image, path: &str) -> anyhow::Result<PathBuf> {
    image
        .copies
        .iter()
        .find_map(|(target, source)| {
            path.strip_prefix(target.as_str())
                .map(|rest| source.join(rest))
        })
        .filter(|file| file.is_file())
        .with_context(|| format!("{path} is not a file the Dockerfile copies into the image"))
}

/// `value` with compose's `${NAME:?message}`, `${NAME:-default}` and
/// `${NAME}` filled from `variables`.
fn interpolate(value: &str, variables: &BTreeMap<String, String>) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .with_context(|| format!("an unclosed ${{ in `{value}`"))?;
        let expression = &rest[start + 2..start + end];
        let (name, fallback) = match expression.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (
                expression
                    .split_once(":?")
                    .map_or(expression, |(name, _)| name),
                None,
            ),
        };
        match (variables.get(name), fallback) {
            (Some(given), _) => out.push_str(given),
            (None, Some(default)) => out.push_str(default),
            (None, None) => bail!("compose needs ${{{name}}}, which this test does not give"),
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A free port on 127.0.0.1 for each name (all held until all are chosen,
/// so that they differ).
fn free_ports(names: &[&str]) -> anyhow::Result<BTreeMap<String, u16>> {
    let listeners: Vec<TcpListener> = names
        .iter()
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()?;
    names
        .iter()
        .zip(&listeners)
        .map(|(name, listener)| Ok(((*name).to_owned(), listener.local_addr()?.port())))
        .collect()
}

/// One compose service as this machine runs it.
struct Service {
    name: String,
    binary: PathBuf,
    args: Vec<String>,
    env: BTreeMap<String, String>,
}

/// Where the compose hosts are on this machine.
struct Hosts {
    /// `<service>:<port>` and `0.0.0.0:<port>` of each AgentSec service,
    /// and the collector's `otel-collector:4317`, by their local address.
    addresses: BTreeMap<String, String>,
    /// The ports the AgentSec services listen on here.
    ports: BTreeMap<String, u16>,
    postgres_url: String,
    redis_url: String,
}

impl Hosts {
    /// `value` of service `service` with every compose host moved here.
    fn localize(
        &self,
        compose_hosts: &[String],
        service: &str,
        name: &str,
        value: &str,
    ) -> anyhow::Result<String> {
        if name == "AGENTSEC_DATABASE__URL" && value.contains("@postgres:") {
            return Ok(self.postgres_url.clone());
        }
        if name == "AGENTSEC_REDIS__URL" && value.starts_with("redis://redis:") {
            return Ok(self.redis_url.clone());
        }
        let mut value = value.to_owned();
        // Only the service's own port binds all interfaces.
        let own = format!("0.0.0.0:{}", self.container_port(service)?);
        value = value.replace(&own, &format!("127.0.0.1:{}", self.ports[service]));
        for (compose, local) in &self.addresses {
            value = value.replace(compose, local);
        }
        let named = |host: &String| {
            value.contains(&format!("//{host}:")) || value.contains(&format!("@{host}:"))
        };
        if let Some(host) = compose_hosts.iter().find(|host| named(host)) {
            bail!("{service}: {name}=`{value}` names `{host}`, and this test does not know where that is");
        }
        anyhow::ensure!(
            !value.contains("0.0.0.0"),
            "{service}: {name}=`{value}` binds another port on all interfaces"
        );
        Ok(value)
    }

    fn container_port(&self, service: &str) -> anyhow::Result<u16> {
        self.addresses
            .keys()
            .find_map(|key| key.strip_prefix(&format!("{service}:")))
            .and_then(|port| port.parse().ok())
            .with_context(|| format!("no port of {service} in compose.yaml"))
    }
}

/// The compose services, ready to start here.
fn services(
    compose: &serde_yaml::Value,
    image: &Image,
    hosts: &Hosts,
    variables: &BTreeMap<String, String>,
    backend: &TestBackend,
    bin_dir: &Path,
) -> anyhow::Result<Vec<Service>> {
    let compose_hosts: Vec<String> = compose["services"]
        .as_mapping()
        .context("compose.yaml has no services")?
        .keys()
        .filter_map(|key| key.as_str().map(str::to_owned))
        .collect();
    let mut services = Vec::new();
    for name in SERVICES {
        let service = &compose["services"][name];
        let command: Vec<String> = serde_yaml::from_value(service["command"].clone())
            .with_context(|| format!("{name}: command"))?;
        let (program, args) = command
            .split_first()
            .with_context(|| format!("{name}: an empty command"))?;
        let binary = bin_dir.join(program);
        anyhow::ensure!(
            binary.is_file(),
            "{} is missing: build the service binaries first (`cargo build --workspace --bins`, \
             or `cargo test --workspace`), or name their directory in AGENTSEC_BIN_DIR",
            binary.display()
        );
        let args = args
            .iter()
            .map(|arg| {
                if arg.starts_with('/') {
                    Ok(from_image(image, arg)?.display().to_string())
                } else {
                    Ok(arg.clone())
                }
            })
            .collect::<anyhow::Result<Vec<String>>>()?;
        let environment: BTreeMap<String, String> =
            serde_yaml::from_value(service["environment"].clone())
                .with_context(|| format!("{name}: environment"))?;
        // The service's environment overrides the image's.
        let mut given = image.env.clone();
        given.extend(environment);
        let mut env = BTreeMap::new();
        for (key, value) in &given {
            let value = interpolate(value, variables).with_context(|| format!("{name}: {key}"))?;
            env.insert(
                key.clone(),
                hosts.localize(&compose_hosts, name, key, &value)?,
            );
        }
        // This run's own schema and key prefix on the shared servers.
        if let Some(schema) = env.get_mut("AGENTSEC_DATABASE__SCHEMA") {
            *schema = backend.schema(schema);
        }
        if env.contains_key("AGENTSEC_REDIS__URL") {
            env.insert(
                "AGENTSEC_REDIS__KEY_PREFIX".to_owned(),
                backend.redis().key_prefix,
            );
        }
        services.push(Service {
            name: name.to_owned(),
            binary,
            args,
            env,
        });
    }
    Ok(services)
}

/// The four processes; killed when dropped.
struct Running {
    children: Vec<(String, Child, PathBuf)>,
}

impl Running {
    fn start(services: &[Service], dir: &Path) -> anyhow::Result<Self> {
        let mut running = Self {
            children: Vec::new(),
        };
        for service in services {
            let log = dir.join(format!("{}.log", service.name));
            let file = std::fs::File::create(&log)?;
            let workdir = dir.join(&service.name);
            std::fs::create_dir_all(&workdir)?;
            let child = Command::new(&service.binary)
                .args(&service.args)
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("HOME", &workdir)
                .envs(&service.env)
                .current_dir(&workdir)
                .stdin(Stdio::null())
                .stdout(file.try_clone()?)
                .stderr(file)
                .spawn()
                .with_context(|| format!("starting {}", service.binary.display()))?;
            running.children.push((service.name.clone(), child, log));
        }
        Ok(running)
    }

    /// Every service's log, and whether it has exited.
    fn report(&mut self) -> String {
        let mut report = String::new();
        for (name, child, log) in &mut self.children {
            let state = match child.try_wait() {
                Ok(Some(status)) => format!("exited: {status}"),
                Ok(None) => "running".to_owned(),
                Err(err) => format!("unknown: {err}"),
            };
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            report.push_str(&format!("\n--- {name} ({state}), last lines of its log:\n"));
            for line in tail.into_iter().rev() {
                report.push_str(line);
                report.push('\n');
            }
        }
        report
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for (_, child, _) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn agentctl(args: &[&str]) -> anyhow::Result<std::process::Output> {
    Command::new(env!("CARGO_BIN_EXE_agentctl"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .output()
        .context("running agentctl")
}

/// `agentctl demo --print-trust-config` as `NAME -> value`, as compose
/// reads it from a `.env` file.
fn trust_variables(data_dir: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let output = agentctl(&[
        "demo",
        "--print-trust-config",
        "--data-dir",
        &data_dir.display().to_string(),
    ])?;
    anyhow::ensure!(
        output.status.success(),
        "agentctl demo --print-trust-config: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout)?;
    Ok(text
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.trim_matches('\'').to_owned()))
        .collect())
}

fn random_secret() -> anyhow::Result<String> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|err| anyhow::anyhow!("random source: {err}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Every `${NAME:?...}` of compose.yaml (what it refuses to start without).
fn required_variables(compose_text: &str) -> Vec<String> {
    compose_text
        .split("${")
        .skip(1)
        .filter_map(|rest| rest.split_once(":?").map(|(name, _)| name))
        .filter(|name| name.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .map(str::to_owned)
        .collect()
}

/// Runs `agentctl demo --running` against the services; its JSON
/// transcript, once it has succeeded.
fn demo(hosts: &Hosts, services: &[Service], data_dir: &Path) -> anyhow::Result<Value> {
    let url = |name: &str| format!("http://127.0.0.1:{}", hosts.ports[name]);
    let identity = &services[0].env;
    let exchange = &services[2].env;
    let admin_secret_file = data_dir.join("bootstrap-admin-secret");
    if !admin_secret_file.exists() {
        std::fs::write(
            &admin_secret_file,
            &identity["AGENTSEC_BOOTSTRAP_ADMIN__CLIENT_SECRET"],
        )?;
    }
    let output = agentctl(&[
        "demo",
        "--running",
        "--output",
        "json",
        "--identity",
        &url("identity-svc"),
        "--policy",
        &url("policy-svc"),
        "--exchange",
        &url("exchange-svc"),
        "--audit",
        &url("audit-svc"),
        "--admin-client-id",
        &identity["AGENTSEC_BOOTSTRAP_ADMIN__CLIENT_ID"],
        "--admin-secret-file",
        &admin_secret_file.display().to_string(),
        "--exchange-issuer",
        &exchange["AGENTSEC_ISSUER"],
        "--data-dir",
        &data_dir.display().to_string(),
    ])?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "agentctl demo --running failed: {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(serde_json::from_str(&stdout)?)
}

/// The steps of a transcript, by title.
fn steps(transcript: &Value) -> BTreeMap<String, &Value> {
    transcript["chapters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|chapter| chapter["steps"].as_array())
        .flatten()
        .filter_map(|step| Some((step["title"].as_str()?.to_owned(), step)))
        .collect()
}

fn check_story(transcript: &Value) -> anyhow::Result<String> {
    let steps = steps(transcript);
    for (title, step) in &steps {
        anyhow::ensure!(
            step["ok"] == true,
            "`{title}` did not go as expected: {step:#}"
        );
    }
    let fact = |title: &str, key: &str| -> anyhow::Result<String> {
        steps
            .get(title)
            .and_then(|step| step["facts"][key].as_str())
            .map(str::to_owned)
            .with_context(|| format!("no fact `{key}` of `{title}` in {transcript:#}"))
    };
    // A token, a grant, an exchange, a delegated check allowed and denied,
    // the audit chain verified.
    anyhow::ensure!(fact(
        "triage-bot's token by the jwt-bearer grant (RFC 7523)",
        "sub"
    )?
    .starts_with("agt_"));
    anyhow::ensure!(fact("alice grants triage-bot delegation", "grant_id")?.starts_with("grt_"));
    let exchanged = "triage-bot exchanges for an mcp:github token";
    anyhow::ensure!(fact(exchanged, "sub")? == "alice");
    anyhow::ensure!(fact(exchanged, "act.sub")? == "triage-bot");
    anyhow::ensure!(
        fact(
            "tools/call list_issues on mcp:github is allowed",
            "policy_ids"
        )? == "github-tools"
    );
    anyhow::ensure!(fact("tools/call delete_repo on mcp:github is denied", "status")? == "403");
    anyhow::ensure!(fact("the next ext_authz check is refused", "status")? == "401");
    anyhow::ensure!(fact("the hash chain is verified", "chain")? == "verified");
    let grant = steps
        .get("alice grants triage-bot delegation")
        .and_then(|step| step["answered"].as_str())
        .context("no grant step")?;
    let tenant = grant
        .split("tenant ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .context("the grant names no tenant")?;
    Ok(tenant.to_owned())
}

#[tokio::test]
async fn the_demo_story_runs_against_the_services_configured_as_compose_configures_them(
) -> anyhow::Result<()> {
    let backend = TestBackend::from_env().await?;
    let (Some(postgres_url), Some(redis_url)) = (
        std::env::var("AGENTSEC_TEST_DATABASE_URL").ok(),
        std::env::var("AGENTSEC_TEST_REDIS_URL").ok(),
    ) else {
        eprintln!(
            "compose.yaml runs on PostgreSQL and Redis: this test runs with \
             AGENTSEC_TEST_DATABASE_URL and AGENTSEC_TEST_REDIS_URL set"
        );
        return Ok(());
    };
    let bin_dir = match std::env::var_os("AGENTSEC_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_BIN_EXE_agentctl"))
            .parent()
            .context("agentctl's binary has no directory")?
            .to_owned(),
    };
    let dir = tempfile::tempdir()?;
    let compose_text = std::fs::read_to_string(repo().join("deploy/compose.yaml"))?;
    let compose = compose()?;
    let image = image()?;

    let mut variables = trust_variables(dir.path())?;
    for name in required_variables(&compose_text) {
        variables.insert(name, random_secret()?);
    }
    let ports = free_ports(&[
        "identity-svc",
        "policy-svc",
        "exchange-svc",
        "audit-svc",
        "otel",
    ])?;
    let mut addresses = BTreeMap::new();
    for name in SERVICES {
        let published = compose["services"][name]["ports"][0]
            .as_str()
            .with_context(|| format!("{name} publishes no port"))?;
        let container_port = published.rsplit(':').next().unwrap_or(published);
        addresses.insert(
            format!("{name}:{container_port}"),
            format!("127.0.0.1:{}", ports[name]),
        );
    }
    // Nothing listens there: the services' traces have nowhere to go.
    addresses.insert(
        "otel-collector:4317".to_owned(),
        format!("127.0.0.1:{}", ports["otel"]),
    );
    let hosts = Hosts {
        addresses,
        ports,
        postgres_url,
        redis_url,
    };
    let services = services(&compose, &image, &hosts, &variables, &backend, &bin_dir)?;

    let mut running = Running::start(&services, dir.path())?;
    let outcome = (|| -> anyhow::Result<()> {
        let first = check_story(&demo(&hosts, &services, dir.path())?)?;
        // A second run against the same stack meets nothing of the first.
        let second = check_story(&demo(&hosts, &services, dir.path())?)?;
        anyhow::ensure!(
            first != second && first.starts_with("payments-"),
            "the runs' tenants: {first}, {second}"
        );
        Ok(())
    })();
    let report = running.report();
    drop(running);
    backend
        .clean_up(&["identity", "policy", "exchange", "audit"])
        .await?;
    outcome.with_context(|| format!("the services:{report}"))
}
