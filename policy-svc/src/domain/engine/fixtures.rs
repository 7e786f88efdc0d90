//! Fixture cases (TestPolicySet): requests with their expected decision,
//! decided against a compiled set without applying or auditing anything.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use agentsec_proto::common::v1 as common;
use agentsec_proto::policy::v1 as pb;
use chrono::{DateTime, Utc};

use super::compile::{CompiledPolicySet, Effect};
use super::decide::decide;
use super::error::{printable, RequestError};
use super::request::{AgentAttributeOrigin, DecisionRequest};

/// policy.proto: 1-10,000 cases per call.
pub const MAX_CASES: usize = 10_000;
pub const MAX_CASE_NAME: usize = 256;

/// Runs `cases` against `set`. A malformed case is INVALID_ARGUMENT naming
/// `cases[<i>].<field>`; a case whose request is decided otherwise than
/// expected is a failed result, not an error.
pub fn run_cases(
    set: &CompiledPolicySet,
    cases: &[pb::TestCase],
    now: DateTime<Utc>,
) -> Result<pb::TestPolicySetResponse, RequestError> {
    if cases.is_empty() || cases.len() > MAX_CASES {
        return Err(RequestError::invalid(
            "cases",
            format!("1-{MAX_CASES} cases"),
        ));
    }
    let mut names = HashSet::with_capacity(cases.len());
    let mut prepared = Vec::with_capacity(cases.len());
    for (i, case) in cases.iter().enumerate() {
        let prefix = format!("cases[{i}].");
        if case.name.is_empty() || case.name.chars().count() > MAX_CASE_NAME {
            return Err(RequestError::invalid(
                format!("{prefix}name"),
                format!("1-{MAX_CASE_NAME} chars"),
            ));
        }
        if !names.insert(case.name.as_str()) {
            return Err(RequestError::invalid(
                format!("{prefix}name"),
                format!("`{}` names two cases", printable(&case.name)),
            ));
        }
        let expected = Effect::from_proto(case.expected_effect).ok_or_else(|| {
            RequestError::invalid(format!("{prefix}expected_effect"), "must be ALLOW or DENY")
        })?;
        let request_prefix = format!("{prefix}request.");
        let check = case
            .request
            .as_ref()
            .ok_or_else(|| RequestError::invalid(format!("{prefix}request"), "is required"))?;
        let mut request = DecisionRequest::from_check(check, &request_prefix, now)?;
        if request.tenant != set.tenant() {
            return Err(RequestError::invalid(
                format!("{request_prefix}principal.tenant"),
                format!("must be the tested tenant `{}`", set.tenant()),
            ));
        }
        request.apply_declarations(
            set.declarations(),
            AgentAttributeOrigin::Caller,
            &request_prefix,
        )?;
        prepared.push((case, expected, request));
    }

    let mut results = Vec::with_capacity(prepared.len());
    let mut passed_count = 0u32;
    for (case, expected, request) in prepared {
        let actual = decide(set, &request);
        let mut problems = Vec::new();
        if actual.effect != expected {
            problems.push(format!(
                "expected {}, got {} ({})",
                effect_name(expected),
                effect_name(actual.effect),
                actual.reason
            ));
        }
        if !case.expected_policy_ids.is_empty() {
            let wanted: BTreeSet<&str> = case
                .expected_policy_ids
                .iter()
                .map(String::as_str)
                .collect();
            let got: BTreeSet<&str> = actual.policy_ids.iter().map(String::as_str).collect();
            if wanted != got {
                problems.push(format!("expected policies {wanted:?}, got {got:?}"));
            }
        }
        let passed = problems.is_empty();
        passed_count += u32::from(passed);
        let mut message = problems.join("; ");
        if message.chars().count() > 1024 {
            message = message.chars().take(1023).chain(['…']).collect();
        }
        results.push(pb::TestCaseResult {
            name: case.name.clone(),
            passed,
            actual: Some(actual.to_proto(String::new(), false, Duration::ZERO)),
            message,
        });
    }
    let failed_count = u32::try_from(results.len()).unwrap_or(u32::MAX) - passed_count;
    Ok(pb::TestPolicySetResponse {
        results,
        passed_count,
        failed_count,
    })
}

fn effect_name(effect: Effect) -> &'static str {
    match effect {
        Effect::Allow => "ALLOW",
        Effect::Deny => "DENY",
    }
}

/// A fixture case, for tests and tools that build cases in code.
pub fn case(
    name: &str,
    request: pb::CheckRequest,
    expected: Effect,
    policy_ids: &[&str],
) -> pb::TestCase {
    pb::TestCase {
        name: name.to_owned(),
        request: Some(request),
        expected_effect: match expected {
            Effect::Allow => common::Effect::Allow,
            Effect::Deny => common::Effect::Deny,
        } as i32,
        expected_policy_ids: policy_ids.iter().map(|id| (*id).to_owned()).collect(),
    }
}
