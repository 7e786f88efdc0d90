//! Every service's `GET /metrics`: OpenMetrics text whose counters move
//! with what the service did — request histograms by gRPC method and code
//! or HTTP route and status, tokens issued and refused by grant type,
//! exchanges by outcome, decisions by outcome, audit appends — and whose
//! labels never carry an id. (CI also parses a running `agentctl dev`'s
//! metrics with the Prometheus project's own parser:
//! scripts/check_metrics.py.)

use std::collections::BTreeMap;
use std::net::SocketAddr;

use agentsec_integration_tests::cluster::TEST_TARGET;
use agentsec_integration_tests::http;
use agentsec_integration_tests::{eventually, Service};
use anyhow::Context as _;

use crate::exchange_grants::{person_token, ASYNC_DEADLINE};
use crate::exchange_tokens::{request, Fixture};
use crate::policy_sets::{check_request, github_set, policy, put, AGENT};

/// One scrape, parsed into samples.
struct Scrape {
    text: String,
    samples: Vec<Sample>,
}

struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

impl Scrape {
    async fn of(addr: SocketAddr) -> anyhow::Result<Self> {
        let response = http::get(addr, "/metrics").await?;
        anyhow::ensure!(response.status == 200, "/metrics: {}", response.status);
        let content_type = response.header("content-type").unwrap_or_default();
        anyhow::ensure!(
            content_type.starts_with("application/openmetrics-text"),
            "content type {content_type}"
        );
        let text = String::from_utf8(response.body.clone()).context("not UTF-8")?;
        let samples = parse(&text)?;
        Ok(Self { text, samples })
    }

    /// The value of the sample `name` with exactly `labels`; 0 when absent
    /// (a labelled counter appears on its first increment).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|sample| sample.name == name && sample.labels == labels)
            .map_or(0.0, |sample| sample.value)
    }

    fn has_family(&self, name: &str) -> bool {
        self.text.lines().any(|line| {
            line.strip_prefix("# TYPE ")
                .and_then(|rest| rest.split(' ').next())
                == Some(name)
        })
    }
}

/// The samples of OpenMetrics text: `name{label="value",...} value`
/// lines, which must end with `# EOF`.
fn parse(text: &str) -> anyhow::Result<Vec<Sample>> {
    anyhow::ensure!(text.ends_with("# EOF\n"), "no `# EOF` at the end");
    let mut samples = Vec::new();
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let (series, value) = line
            .rsplit_once(' ')
            .with_context(|| format!("no value in `{line}`"))?;
        let value: f64 = value
            .parse()
            .with_context(|| format!("bad value in `{line}`"))?;
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, labels)) => {
                let labels = labels
                    .strip_suffix('}')
                    .with_context(|| format!("unclosed labels in `{line}`"))?;
                let mut parsed = BTreeMap::new();
                for pair in labels.split("\",").filter(|pair| !pair.is_empty()) {
                    let (key, value) = pair
                        .split_once("=\"")
                        .with_context(|| format!("bad label in `{line}`"))?;
                    parsed.insert(key.to_owned(), value.trim_end_matches('"').to_owned());
                }
                (name, parsed)
            }
        };
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    Ok(samples)
}

const GRPC_COUNT: &str = "agentsec_grpc_server_request_duration_seconds_count";
const HTTP_COUNT: &str = "agentsec_http_server_request_duration_seconds_count";

#[tokio::test]
async fn every_service_counts_what_it_did_on_metrics() -> anyhow::Result<()> {
    let mut fx = Fixture::start().await?;
    let identity = fx.cluster.addr(Service::Identity);
    let policy_addr = fx.cluster.addr(Service::Policy);
    let exchange = fx.cluster.addr(Service::Exchange);
    let audit = fx.cluster.addr(Service::Audit);

    // identity-svc: one token issued, one refused, over HTTP.
    let before = Scrape::of(identity).await?;
    let a = fx.a.clone();
    let actor = fx.actor_token(&a).await?;
    let refused = fx
        .cluster
        .client_token_response(&a.id, "not-the-secret", TEST_TARGET, "")
        .await?;
    assert_eq!(refused.json()?["error"], "invalid_client");
    let after = Scrape::of(identity).await?;
    let issued = "agentsec_identity_tokens_issued_total";
    let cc = ("grant_type", "client_credentials");
    // The other services fetch their own service tokens meanwhile: at
    // least ours was issued, and only ours was refused.
    assert!(after.value(issued, &[cc]) - before.value(issued, &[cc]) >= 1.0);
    let refusals = "agentsec_identity_tokens_refused_total";
    let invalid_client = [cc, ("error", "invalid_client")];
    assert_eq!(
        after.value(refusals, &invalid_client) - before.value(refusals, &invalid_client),
        1.0
    );
    let refused_status = refused.status.to_string();
    let token_route = [
        ("method", "POST"),
        ("route", "/oauth2/token"),
        ("status", refused_status.as_str()),
    ];
    assert_eq!(
        after.value(HTTP_COUNT, &token_route) - before.value(HTTP_COUNT, &token_route),
        1.0
    );

    // exchange-svc: one exchange issued, one refused.
    let before = Scrape::of(exchange).await?;
    let a_id = a.agent.id.clone();
    fx.grant("alice", &a_id, &["repo:read"], 1).await?;
    let person = person_token("alice")?;
    fx.exchange(request(&person, &actor, TEST_TARGET, "repo:read"))
        .await?;
    let refusal = fx
        .exchange(request("", &actor, TEST_TARGET, "repo:read"))
        .await
        .err()
        .context("an exchange without a subject token was answered")?;
    let error = refusal
        .message()
        .split_once(':')
        .map(|(code, _)| code)
        .context("no OAuth code in the refusal")?
        .to_owned();
    let after = Scrape::of(exchange).await?;
    let exchanges = "agentsec_exchange_exchanges_total";
    for outcome in ["issued", error.as_str()] {
        assert_eq!(
            after.value(exchanges, &[("outcome", outcome)])
                - before.value(exchanges, &[("outcome", outcome)]),
            1.0,
            "{outcome}"
        );
    }

    // policy-svc: one decision allowed, one denied, both gRPC calls OK.
    let mut client = policy(&fx.cluster).await?;
    put(&mut client, &fx.admin, "metrics-co", github_set()).await?;
    let before = Scrape::of(policy_addr).await?;
    for resource in ["mcp:github/create_issue", "mcp:github/delete_repo"] {
        client
            .check(check_request("metrics-co", AGENT, resource, "tools/call"))
            .await?;
    }
    let after = Scrape::of(policy_addr).await?;
    let decisions = "agentsec_policy_decisions_total";
    for outcome in ["allow", "deny"] {
        assert_eq!(
            after.value(decisions, &[("outcome", outcome)])
                - before.value(decisions, &[("outcome", outcome)]),
            1.0,
            "{outcome}"
        );
    }
    let check = [
        ("method", "/agentsec.policy.v1.PolicyService/Check"),
        ("code", "OK"),
    ];
    assert_eq!(
        after.value(GRPC_COUNT, &check) - before.value(GRPC_COUNT, &check),
        2.0
    );
    assert!(after.has_family("agentsec_policy_decision_cache_hits"));
    assert!(after.has_family("agentsec_policy_revocation_current"));
    assert!(after.has_family("agentsec_follower_lag_seconds"));

    // audit-svc: the services' events arrive and are committed; its
    // clients report their appends.
    let committed = [("outcome", "committed")];
    eventually("audit-svc committed appends", ASYNC_DEADLINE, || async {
        let scrape = Scrape::of(audit).await?;
        Ok(
            (scrape.value("agentsec_audit_append_duration_seconds_count", &committed) >= 1.0
                && scrape.value(
                    "agentsec_audit_events_appended_total",
                    &[("duplicate", "false")],
                ) >= 1.0)
                .then_some(()),
        )
    })
    .await?;
    eventually("identity-svc's audit appends", ASYNC_DEADLINE, || async {
        let scrape = Scrape::of(identity).await?;
        Ok((scrape.value(
            "agentsec_audit_client_append_duration_seconds_count",
            &[("code", "OK")],
        ) >= 1.0)
            .then_some(()))
    })
    .await?;

    // An unknown path is `unmatched`, never its own label.
    let before = Scrape::of(audit).await?;
    let unknown = http::get(audit, "/agt_01JSOMEAGENT/whatever").await?;
    assert_eq!(unknown.status, 404);
    let after = Scrape::of(audit).await?;
    let unmatched = [("method", "GET"), ("route", "unmatched"), ("status", "404")];
    assert_eq!(
        after.value(HTTP_COUNT, &unmatched) - before.value(HTTP_COUNT, &unmatched),
        1.0
    );

    // Every service: request metrics and its audit client (audit-svc has
    // none), and no id of an agent in any label.
    for service in Service::ALL {
        let scrape = Scrape::of(fx.cluster.addr(service)).await?;
        assert!(scrape.has_family("agentsec_grpc_server_request_duration_seconds"));
        assert!(scrape.has_family("agentsec_http_server_request_duration_seconds"));
        if service != Service::Audit {
            assert!(
                scrape.has_family("agentsec_audit_client_pending_events"),
                "{service:?}"
            );
        }
        for sample in &scrape.samples {
            for value in sample.labels.values() {
                assert!(
                    !value.contains("agt_") && !value.contains(&a_id),
                    "{service:?}: {} has an id label: {value}",
                    sample.name
                );
            }
        }
    }
    fx.cluster.shutdown().await
}
