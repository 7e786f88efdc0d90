//! The Helm chart, configured as documented, works: the four service
//! binaries start as separate processes with exactly the ConfigMaps
//! (mounted config files) and env the rendered chart gives their
//! Deployments, with the values of the Secrets they reference filled in as
//! an operator would (the PostgreSQL and Redis URLs, random secrets), and
//! `agentctl demo --running` tells its whole story against them, twice.
//!
//! The rendered manifest comes from scripts/check-deploy.sh, which renders
//! `deploy/helm/agentsec/ci/demo-values.yaml` plus the demo's issuers
//! (`agentctl demo --print-trust-config --output json`) and runs this test
//! with AGENTSEC_CHART_MANIFEST (the manifest) and AGENTSEC_CHART_DEMO_DIR
//! (the issuers' keys) set, on PostgreSQL and Redis. Changed only where a
//! laptop differs from a cluster: the Services' DNS names become 127.0.0.1
//! on free ports, and each service gets this run's schema and Redis key
//! prefix.

mod deployed;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use agentsec_integration_tests::TestBackend;
use anyhow::{bail, Context as _};
use deployed::{Running, Service, Stack};
use serde::Deserialize as _;
use serde_yaml::Value;

/// The binaries the chart's Deployments run.
const SERVICES: [&str; 4] = ["identity-svc", "policy-svc", "exchange-svc", "audit-svc"];

fn manifests(path: &Path) -> anyhow::Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let mut documents = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        let value = Value::deserialize(document)?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    Ok(documents)
}

fn of_kind<'a>(documents: &'a [Value], kind: &str) -> Vec<&'a Value> {
    documents
        .iter()
        .filter(|document| document["kind"] == kind)
        .collect()
}

fn text<'a>(value: &'a Value, what: &str) -> anyhow::Result<&'a str> {
    value.as_str().with_context(|| format!("no {what}"))
}

/// A line `key = "value"` of a TOML `section` (`""`: the top level).
fn toml_string(toml: &str, section: &str, key: &str) -> Option<String> {
    let mut current = String::new();
    for line in toml.lines().map(str::trim) {
        if line.starts_with('[') {
            current = line.trim_matches(|c| c == '[' || c == ']').to_owned();
        } else if current == section {
            if let Some((name, value)) = line.split_once('=') {
                if name.trim() == key {
                    return Some(value.trim().trim_matches('"').to_owned());
                }
            }
        }
    }
    None
}

/// The Services' in-cluster addresses, each by its local one.
fn addresses(
    documents: &[Value],
    ports: &BTreeMap<String, u16>,
) -> anyhow::Result<Vec<(String, String, String)>> {
    let mut addresses = Vec::new();
    for service in of_kind(documents, "Service") {
        let name = text(&service["metadata"]["name"], "Service name")?;
        let namespace = text(&service["metadata"]["namespace"], "Service namespace")?;
        let port = service["spec"]["ports"][0]["port"]
            .as_u64()
            .with_context(|| format!("{name}: no port"))?;
        let binary = SERVICES
            .iter()
            .find(|binary| name.ends_with(*binary))
            .with_context(|| format!("Service {name} is none of {SERVICES:?}"))?;
        let local = format!("127.0.0.1:{}", ports[*binary]);
        // Longest first, so that a shorter form never cuts a longer one.
        for host in [
            format!("{name}.{namespace}.svc.cluster.local"),
            format!("{name}.{namespace}.svc"),
            format!("{name}.{namespace}"),
            name.to_owned(),
        ] {
            addresses.push((
                (*binary).to_owned(),
                format!("{host}:{port}"),
                local.clone(),
            ));
        }
        addresses.push((
            (*binary).to_owned(),
            format!("0.0.0.0:{port}"),
            local.clone(),
        ));
    }
    Ok(addresses)
}

/// `value` as `service` sees it here.
fn localize(
    addresses: &[(String, String, String)],
    service: &str,
    value: &str,
) -> anyhow::Result<String> {
    let mut value = value.to_owned();
    for (owner, cluster, local) in addresses {
        // Only the service's own port binds all interfaces.
        if cluster.starts_with("0.0.0.0:") && owner != service {
            continue;
        }
        value = value.replace(cluster, local);
    }
    anyhow::ensure!(
        !value.contains(".svc") && !value.contains("0.0.0.0"),
        "{service}: `{value}` names an address this test does not know"
    );
    Ok(value)
}

/// The Deployments' services, ready to start here, and the migration Jobs
/// that run before them.
struct Chart {
    services: Vec<Service>,
    migrations: Vec<Service>,
    /// The PostgreSQL schema each service's ConfigMap names.
    schemas: Vec<String>,
    admin_client_id: String,
    exchange_issuer: String,
}

#[allow(clippy::too_many_arguments)]
fn chart(
    documents: &[Value],
    addresses: &[(String, String, String)],
    dir: &Path,
    bin_dir: &Path,
    backend: &TestBackend,
    postgres_url: &str,
    redis_url: &str,
) -> anyhow::Result<Chart> {
    let config_maps: BTreeMap<&str, &Value> = of_kind(documents, "ConfigMap")
        .into_iter()
        .filter_map(|map| Some((map["metadata"]["name"].as_str()?, map)))
        .collect();
    // One value per Secret key, whichever Deployment reads it.
    let mut secrets: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut chart = Chart {
        services: Vec::new(),
        migrations: Vec::new(),
        schemas: Vec::new(),
        admin_client_id: String::new(),
        exchange_issuer: String::new(),
    };
    // The migration Jobs (hooks before the Deployments by default), then
    // the Deployments.
    let migrations = of_kind(documents, "Job").into_iter().filter(|job| {
        job["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_sequence()
            .is_some_and(|args| args.iter().any(|arg| arg == "--migrate"))
    });
    let workloads = migrations.map(|job| (job, true)).chain(
        of_kind(documents, "Deployment")
            .into_iter()
            .map(|d| (d, false)),
    );
    for (workload, migrates) in workloads {
        let pod = &workload["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        let program = text(&container["command"][0], "command")?;
        let name = Path::new(program)
            .file_name()
            .and_then(|name| name.to_str())
            .context("a command without a file name")?
            .to_owned();
        let binary = deployed::binary(bin_dir, &name)?;
        let mut toml = String::new();
        let mut args = Vec::new();
        for arg in container["args"].as_sequence().into_iter().flatten() {
            let arg = text(arg, "arg")?;
            if !arg.starts_with('/') {
                args.push(arg.to_owned());
                continue;
            }
            // A mounted ConfigMap key, written out here.
            let mount = container["volumeMounts"]
                .as_sequence()
                .into_iter()
                .flatten()
                .find(|mount| mount["mountPath"] == arg)
                .with_context(|| format!("{name}: nothing is mounted at {arg}"))?;
            let volume = pod["volumes"]
                .as_sequence()
                .into_iter()
                .flatten()
                .find(|volume| volume["name"] == mount["name"])
                .with_context(|| format!("{name}: no volume for {arg}"))?;
            let map = text(&volume["configMap"]["name"], "a ConfigMap volume")?;
            let key = text(&mount["subPath"], "subPath")?;
            let data = text(&config_maps[map]["data"][key], "ConfigMap data")?;
            toml = localize(addresses, &name, data)?;
            let file = dir.join(key);
            std::fs::write(&file, &toml)?;
            args.push(file.display().to_string());
        }
        let mut env = BTreeMap::new();
        for entry in container["env"].as_sequence().into_iter().flatten() {
            let variable = text(&entry["name"], "env name")?.to_owned();
            let value = if let Some(value) = entry["value"].as_str() {
                localize(addresses, &name, value)?
            } else if let Some(reference) = entry["valueFrom"]["secretKeyRef"].as_mapping() {
                let secret = (
                    text(&reference["name"], "secretKeyRef name")?.to_owned(),
                    text(&reference["key"], "secretKeyRef key")?.to_owned(),
                );
                let value = match variable.as_str() {
                    "AGENTSEC_DATABASE__URL" => postgres_url.to_owned(),
                    "AGENTSEC_REDIS__URL" => redis_url.to_owned(),
                    _ => deployed::random_secret()?,
                };
                secrets.entry(secret).or_insert(value).clone()
            } else {
                bail!("{name}: {variable} has a value source this test cannot fill");
            };
            env.insert(variable, value);
        }
        // This run's own schema and key prefix on the shared servers.
        let schema = toml_string(&toml, "database", "schema")
            .with_context(|| format!("{name}'s ConfigMap names no database.schema"))?;
        env.insert(
            "AGENTSEC_DATABASE__SCHEMA".to_owned(),
            backend.schema(&schema),
        );
        if migrates {
            chart.migrations.push(Service {
                name,
                binary,
                args,
                env,
            });
            continue;
        }
        chart.schemas.push(schema);
        if env.contains_key("AGENTSEC_REDIS__URL") {
            env.insert(
                "AGENTSEC_REDIS__KEY_PREFIX".to_owned(),
                backend.redis().key_prefix,
            );
        }
        match name.as_str() {
            "identity-svc" => {
                chart.admin_client_id = toml_string(&toml, "bootstrap_admin", "client_id")
                    .context("no bootstrap admin in identity-svc's ConfigMap")?;
            }
            "exchange-svc" => {
                chart.exchange_issuer =
                    toml_string(&toml, "", "issuer").context("no issuer of exchange-svc")?;
            }
            _ => {}
        }
        chart.services.push(Service {
            name,
            binary,
            args,
            env,
        });
    }
    let mut names: Vec<&str> = chart.services.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    let mut expected = SERVICES;
    expected.sort_unstable();
    anyhow::ensure!(names == expected, "the chart's Deployments run {names:?}");
    Ok(chart)
}

#[tokio::test]
#[ignore = "needs the rendered chart: scripts/check-deploy.sh renders it and runs this test"]
async fn the_demo_story_runs_against_the_services_configured_as_the_chart_configures_them(
) -> anyhow::Result<()> {
    let manifest = PathBuf::from(
        std::env::var_os("AGENTSEC_CHART_MANIFEST")
            .context("AGENTSEC_CHART_MANIFEST names no rendered chart")?,
    );
    let demo_dir = PathBuf::from(
        std::env::var_os("AGENTSEC_CHART_DEMO_DIR")
            .context("AGENTSEC_CHART_DEMO_DIR names no directory of the demo's issuer keys")?,
    );
    let (postgres_url, redis_url) = deployed::servers().context(
        "the chart runs on PostgreSQL and Redis: set AGENTSEC_TEST_DATABASE_URL and \
         AGENTSEC_TEST_REDIS_URL",
    )?;
    let backend = TestBackend::from_env().await?;
    let documents = manifests(&manifest)?;
    let dir = tempfile::tempdir()?;
    let ports = deployed::free_ports(&SERVICES)?;
    let addresses = addresses(&documents, &ports)?;
    let chart = chart(
        &documents,
        &addresses,
        dir.path(),
        &deployed::bin_dir()?,
        &backend,
        &postgres_url,
        &redis_url,
    )?;
    let identity = chart
        .services
        .iter()
        .find(|service| service.name == "identity-svc")
        .context("no identity-svc")?;
    let stack = Stack {
        urls: ports
            .iter()
            .map(|(name, port)| (name.clone(), format!("http://127.0.0.1:{port}")))
            .collect(),
        admin_client_id: chart.admin_client_id.clone(),
        admin_secret: identity
            .env
            .get("AGENTSEC_BOOTSTRAP_ADMIN__CLIENT_SECRET")
            .context("identity-svc has no bootstrap admin secret")?
            .clone(),
        exchange_issuer: chart.exchange_issuer.clone(),
    };

    // What the pre-install hooks do: each migration Job runs to completion.
    for migration in &chart.migrations {
        let done = std::process::Command::new(&migration.binary)
            .args(&migration.args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir.path())
            .envs(&migration.env)
            .current_dir(dir.path())
            .output()?;
        anyhow::ensure!(
            done.status.success(),
            "the migration Job of {} failed: {}",
            migration.name,
            String::from_utf8_lossy(&done.stderr)
        );
    }
    let mut running = Running::start(&chart.services, dir.path())?;
    let outcome = deployed::demo_twice(&stack, &demo_dir);
    let report = running.report();
    drop(running);
    let schemas: Vec<&str> = chart.schemas.iter().map(String::as_str).collect();
    backend.clean_up(&schemas).await?;
    outcome.with_context(|| format!("the services:{report}"))
}
