//! In-process decision cost of the policy engine at 100, 1,000 and 10,000
//! rules, spread over tenants, actions and resource prefixes as an operator
//! would write them (per-server MCP grants by role and by agent, a few
//! cross-server denies, repository rules with conditions).
//!
//! For each size it prints: compile time and the growth of resident memory
//! while compiling (approximate: the allocator reuses freed memory), the median, p99 and mean of `decide` on a prepared
//! request, the single-thread decision rate, the mean number of candidates
//! the index selected, the median of the whole proto path
//! (`PolicyEngine::check`: validation + declarations + decide), and Casbin's
//! own `enforce` on the same model and one tenant's rules: it scans every
//! `p` line, stopping early only at a matching deny, so its p99 grows with
//! the rule count.
//! A last row puts 1,000 rules in one index bucket: the worst case, where
//! the cost is the candidates'.
//!
//! ```sh
//! cargo bench -p agentsec-policy --bench decide
//! BENCH_DECISIONS=500000 BENCH_TENANTS=4 cargo bench -p agentsec-policy --bench decide
//! ```

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentsec_bench_support::{knob, Latencies};
use agentsec_policy::engine::model::{reference_decide, reference_enforcer};
use agentsec_policy::engine::{
    compile, decide, AgentAttributeOrigin, DecisionRequest, PolicyEngine,
};
use agentsec_proto::common::v1 as common;
use agentsec_proto::policy::v1 as pb;
use chrono::{DateTime, Utc};

mod workload;

use workload::{check_request, policy_set, rule, Lcg, ROLES, RULES_PER_SERVER, TOOLS_PER_SERVER};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

fn micros(latencies: &Latencies, p: f64) -> f64 {
    latencies.percentile_ms(p) * 1000.0
}

struct Row {
    label: String,
    tenants: usize,
    rules_per_tenant: usize,
    compile: Duration,
    rss_mib: f64,
    candidates: f64,
    allowed: f64,
    decide: Latencies,
    decide_mean_us: f64,
    decide_rate: f64,
    check_median_us: f64,
    casbin_us: Option<(f64, f64)>,
}

fn measure(
    label: String,
    sets: Vec<pb::PolicySet>,
    requests: Vec<pb::CheckRequest>,
    decisions: usize,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<Row> {
    let tenants = sets.len();
    let rules_per_tenant = sets.first().map_or(0, |set| set.rules.len());
    let now: DateTime<Utc> = DateTime::from_timestamp(1_735_732_800, 0).unwrap_or_default();

    let rss_before = rss_kib();
    let started = Instant::now();
    let mut engine = PolicyEngine::new();
    for (tenant, set) in sets.iter().enumerate() {
        let compiled = compile(&format!("t{tenant}"), 1, set).map_err(|report| {
            anyhow::anyhow!("invalid generated set: {:?}", report.issues.first())
        })?;
        engine.install(Arc::new(compiled));
    }
    let compile_time = started.elapsed();
    let rss_mib = rss_kib().saturating_sub(rss_before) as f64 / 1024.0;

    let prepared: Vec<(Arc<_>, DecisionRequest)> = requests
        .iter()
        .map(|proto| {
            let request = DecisionRequest::from_check(proto, "", now)?;
            let (set, request) = engine.prepare(request, "", AgentAttributeOrigin::Caller)?;
            Ok((Arc::clone(set), request))
        })
        .collect::<Result<_, agentsec_policy::engine::RequestError>>()?;

    let mut candidates = Vec::new();
    let mut candidate_total = 0usize;
    let mut allowed = 0usize;
    for (set, request) in &prepared {
        set.index().candidates(
            &request.action,
            &request.resource_id,
            request.agent_id.as_deref(),
            &mut candidates,
        );
        candidate_total += candidates.len();
        allowed += usize::from(decide(set, request).is_allowed());
    }

    // Warm up, then time each decision.
    for (set, request) in prepared.iter().cycle().take(decisions / 10) {
        black_box(decide(set, request));
    }
    let mut samples = Vec::with_capacity(decisions);
    let run_started = Instant::now();
    for (set, request) in prepared.iter().cycle().take(decisions) {
        let started = Instant::now();
        black_box(decide(black_box(set), black_box(request)));
        samples.push(started.elapsed());
    }
    let run_time = run_started.elapsed();
    let decide_mean_us = samples.iter().sum::<Duration>().as_secs_f64() * 1e6 / decisions as f64;

    let check_count = decisions / 4;
    let mut check_samples = Vec::with_capacity(check_count);
    for proto in requests.iter().cycle().take(check_count) {
        let started = Instant::now();
        black_box(engine.check(black_box(proto), "", now)?);
        check_samples.push(started.elapsed());
    }

    // Casbin's own enforce over the same model and tenant-0 rules.
    let casbin_us = if rules_per_tenant <= 10_000 {
        let set = engine.policy_set("t0", "tenant")?;
        let enforcer = runtime.block_on(reference_enforcer(set))?;
        let tenant_requests: Vec<&DecisionRequest> = prepared
            .iter()
            .filter(|(_, request)| request.tenant == "t0")
            .map(|(_, request)| request)
            .collect();
        let iterations = (400_000 / rules_per_tenant.max(1)).clamp(20, 2000);
        let mut casbin_samples = Vec::with_capacity(iterations);
        for request in tenant_requests.iter().cycle().take(iterations) {
            let started = Instant::now();
            black_box(reference_decide(&enforcer, set, request)?);
            casbin_samples.push(started.elapsed());
        }
        let casbin = Latencies::new(casbin_samples);
        Some((micros(&casbin, 0.5), micros(&casbin, 0.99)))
    } else {
        None
    };

    Ok(Row {
        label,
        tenants,
        rules_per_tenant,
        compile: compile_time,
        rss_mib,
        candidates: candidate_total as f64 / prepared.len() as f64,
        allowed: allowed as f64 / prepared.len() as f64,
        decide: Latencies::new(samples),
        decide_mean_us,
        decide_rate: decisions as f64 / run_time.as_secs_f64(),
        check_median_us: micros(&Latencies::new(check_samples), 0.5),
        casbin_us,
    })
}

fn main() -> anyhow::Result<()> {
    let decisions = knob("BENCH_DECISIONS", 200_000) as usize;
    let tenants = knob("BENCH_TENANTS", 4) as usize;
    let pool = knob("BENCH_REQUESTS", 4096) as usize;
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;

    let mut rows = Vec::new();
    for total in [100usize, 1_000, 10_000] {
        let per_tenant = total / tenants;
        let sets = (0..tenants).map(|t| policy_set(t, per_tenant)).collect();
        let mut random = Lcg(42);
        let requests = (0..pool)
            .map(|_| check_request(&mut random, tenants, per_tenant))
            .collect();
        rows.push(measure(
            format!("{total}"),
            sets,
            requests,
            decisions,
            &runtime,
        )?);
    }

    // Worst case: 1,000 rules that all land in one bucket (same action, same
    // resource prefix, no per-agent split): every rule is a candidate.
    let crowded = pb::PolicySet {
        rules: (0..1000)
            .map(|i| {
                rule(
                    format!("crowded-{i}"),
                    common::Effect::Allow,
                    format!("role:r{}", i % ROLES),
                    format!("mcp:srv0/tool{}*", i % TOOLS_PER_SERVER),
                    &["tools/call"],
                    "agent.trust_tier >= 1",
                )
            })
            .collect(),
        ..policy_set(0, 0)
    };
    let mut random = Lcg(7);
    let requests = (0..pool)
        .map(|_| {
            let mut request = check_request(&mut random, 1, RULES_PER_SERVER);
            request.action = "tools/call".into();
            if let Some(resource) = request.resource.as_mut() {
                resource.id = format!("mcp:srv0/tool{}", random.below(TOOLS_PER_SERVER));
            }
            request
        })
        .collect();
    rows.push(measure(
        "1000, one bucket".into(),
        vec![crowded],
        requests,
        decisions / 10,
        &runtime,
    )?);

    println!();
    println!("policy engine, in-process decisions ({decisions} timed per size, {pool} distinct requests, one thread)");
    println!();
    println!("| rules | tenants x rules | compile | RSS growth | candidates/decision | allowed | decide p50 | decide p99 | decide mean | decisions/s | check p50 (proto path) | Casbin enforce p50 / p99 |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for row in &rows {
        println!(
            "| {} | {} x {} | {:.1} ms | {:.1} MiB | {:.1} | {:.0}% | {:.2} µs | {:.2} µs | {:.2} µs | {:.0} | {:.2} µs | {} |",
            row.label,
            row.tenants,
            row.rules_per_tenant,
            row.compile.as_secs_f64() * 1e3,
            row.rss_mib,
            row.candidates,
            row.allowed * 100.0,
            micros(&row.decide, 0.5),
            micros(&row.decide, 0.99),
            row.decide_mean_us,
            row.decide_rate,
            row.check_median_us,
            row.casbin_us.map_or("-".to_owned(), |(p50, p99)| format!(
                "{p50:.1} / {p99:.1} µs"
            )),
        );
    }
    println!();
    Ok(())
}
