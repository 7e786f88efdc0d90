//! Criterion bench of the in-process decision (`decide` on a prepared
//! request) at 100, 1,000 and 10,000 rules in one tenant, over the same
//! generated workload as `benches/decide.rs` (which adds compile time,
//! memory, candidate counts and Casbin's own `enforce` for comparison).
//!
//! ```sh
//! cargo bench -p agentsec-policy --bench decide_criterion
//! ```

use std::hint::black_box;
use std::sync::Arc;

use agentsec_policy::engine::{
    compile, decide, AgentAttributeOrigin, CompiledPolicySet, DecisionRequest, PolicyEngine,
};
use chrono::{DateTime, Utc};
use criterion::{Criterion, Throughput};

mod workload;

use workload::{check_request, policy_set, Lcg};

/// Distinct requests cycled through per size.
const REQUESTS: usize = 4_096;

type Prepared = Vec<(Arc<CompiledPolicySet>, DecisionRequest)>;

fn prepared(rules: usize) -> anyhow::Result<Prepared> {
    let now: DateTime<Utc> = DateTime::from_timestamp(1_735_732_800, 0).unwrap_or_default();
    let mut engine = PolicyEngine::new();
    let compiled = compile("t0", 1, &policy_set(0, rules))
        .map_err(|report| anyhow::anyhow!("invalid generated set: {:?}", report.issues.first()))?;
    engine.install(Arc::new(compiled));
    let mut random = Lcg(7);
    (0..REQUESTS)
        .map(|_| {
            let proto = check_request(&mut random, 1, rules);
            let request = DecisionRequest::from_check(&proto, "", now)?;
            let (set, request) = engine.prepare(request, "", AgentAttributeOrigin::Caller)?;
            Ok((Arc::clone(set), request))
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    let mut criterion = Criterion::default().configure_from_args();
    let mut group = criterion.benchmark_group("decide");
    group.throughput(Throughput::Elements(1));
    for rules in [100, 1_000, 10_000] {
        let requests = prepared(rules)?;
        let mut next = 0;
        group.bench_function(format!("{rules} rules"), |b| {
            b.iter(|| {
                let (set, request) = &requests[next % requests.len()];
                next += 1;
                black_box(decide(set, black_box(request)))
            })
        });
    }
    group.finish();
    criterion.final_summary();
    Ok(())
}
