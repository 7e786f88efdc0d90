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

mod deployed;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use agentsec_integration_tests::TestBackend;
use anyhow::{bail, Context as _};
use deployed::{Running, Service, Stack};

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
        let binary = deployed::binary(bin_dir, program)?;
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

/// `agentctl demo --print-trust-config` as `NAME -> value`, as compose
/// reads it from a `.env` file.
fn trust_variables(data_dir: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let text = deployed::trust_config(data_dir, "text")?;
    Ok(text
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.trim_matches('\'').to_owned()))
        .collect())
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

#[tokio::test]
async fn the_demo_story_runs_against_the_services_configured_as_compose_configures_them(
) -> anyhow::Result<()> {
    let backend = TestBackend::from_env().await?;
    let Some((postgres_url, redis_url)) = deployed::servers() else {
        eprintln!(
            "compose.yaml runs on PostgreSQL and Redis: this test runs with \
             AGENTSEC_TEST_DATABASE_URL and AGENTSEC_TEST_REDIS_URL set"
        );
        return Ok(());
    };
    let bin_dir = deployed::bin_dir()?;
    let dir = tempfile::tempdir()?;
    let compose_text = std::fs::read_to_string(repo().join("deploy/compose.yaml"))?;
    let compose = compose()?;
    let image = image()?;

    let mut variables = trust_variables(dir.path())?;
    for name in required_variables(&compose_text) {
        variables.insert(name, deployed::random_secret()?);
    }
    let ports = deployed::free_ports(&[
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

    let identity = &services[0].env;
    let stack = Stack {
        urls: SERVICES
            .iter()
            .map(|name| {
                (
                    (*name).to_owned(),
                    format!("http://127.0.0.1:{}", hosts.ports[*name]),
                )
            })
            .collect(),
        admin_client_id: identity["AGENTSEC_BOOTSTRAP_ADMIN__CLIENT_ID"].clone(),
        admin_secret: identity["AGENTSEC_BOOTSTRAP_ADMIN__CLIENT_SECRET"].clone(),
        exchange_issuer: services[2].env["AGENTSEC_ISSUER"].clone(),
    };
    let mut running = Running::start(&services, dir.path())?;
    let outcome = deployed::demo_twice(&stack, dir.path());
    let report = running.report();
    drop(running);
    backend
        .clean_up(&["identity", "policy", "exchange", "audit"])
        .await?;
    outcome.with_context(|| format!("the services:{report}"))
}
