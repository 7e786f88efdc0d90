//! The `agentctl policy` subcommands that try a set without storing it:
//! `validate` (policy-svc's findings) and `test` (fixture cases decided).

use std::path::PathBuf;

use agentsec_proto::common::v1::Decision;
use agentsec_proto::policy::v1::{
    test_policy_set_request, TestCase, TestCaseResult, TestPolicySetRequest,
    ValidatePolicySetRequest, ValidationError,
};
use serde_json::{json, Value};

use super::document::Input;
use super::{cases, counted, version_not_found, Admin};
use crate::admin::{bearer, failed, failed_then};
use crate::output::{cell, enum_name, Column, Format};

#[derive(Debug, clap::Args)]
pub struct Validate {
    /// The tenant the set is meant for (it need not exist yet).
    #[arg(long)]
    tenant: String,
    /// The policy file (YAML or JSON; `-` for stdin).
    #[arg(long)]
    file: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct Test {
    /// The tenant whose policy is tested.
    #[arg(long)]
    tenant: String,
    /// The policy file to test (YAML or JSON; `-` for stdin).
    #[arg(long)]
    file: Option<PathBuf>,
    /// Test this stored version instead of a file (0: the current one).
    #[arg(long, conflicts_with = "file", default_value_t = 0)]
    version: u64,
    /// The cases file (YAML or JSON; `-` for stdin).
    #[arg(long)]
    cases: PathBuf,
}

const FINDINGS: [Column; 4] = [
    Column::new("POLICY", "policy_id"),
    Column::new("FIELD", "field"),
    Column::drawn("AT", |finding| {
        match (finding["line"].as_u64(), finding["column"].as_u64()) {
            (Some(line), Some(column)) if line > 0 => format!("{line}:{column}"),
            _ => "-".to_owned(),
        }
    }),
    Column::new("MESSAGE", "message"),
];

fn finding_json(finding: &ValidationError) -> Value {
    json!({
        "policy_id": finding.policy_id,
        "field": finding.field,
        "line": finding.line,
        "column": finding.column,
        "message": finding.message,
    })
}

pub async fn validate(admin: &mut Admin, validate: Validate) -> anyhow::Result<()> {
    let input = Input::read(&validate.file)?;
    let set = input.policy_set()?;
    let (rules, assignments) = (set.rules.len(), set.role_assignments.len());
    let answer = admin
        .client
        .validate_policy_set(bearer(
            ValidatePolicySetRequest {
                tenant: validate.tenant.clone(),
                policy_set: Some(set),
            },
            &admin.token,
        )?)
        .await
        .map_err(failed)?
        .into_inner();
    let findings: Vec<Value> = answer.errors.iter().map(finding_json).collect();
    match admin.format {
        Format::Json => print!(
            "{}",
            Format::Json.one(
                &json!({
                    "valid": answer.valid,
                    "error_count": answer.error_count,
                    "errors": findings,
                }),
                &[]
            )
        ),
        Format::Table if answer.valid => println!(
            "{}: valid ({}, {})",
            input.name(),
            counted(rules, "rule", "rules"),
            counted(assignments, "role assignment", "role assignments"),
        ),
        Format::Table => print!("{}", Format::Table.list(&findings, &FINDINGS, "")),
    }
    anyhow::ensure!(
        answer.valid,
        "{} is not valid: {}{}; fix the rules named and validate again",
        input.name(),
        counted(answer.error_count as usize, "finding", "findings"),
        if answer.error_count as usize > findings.len() {
            format!(" ({} listed)", findings.len())
        } else {
            String::new()
        }
    );
    Ok(())
}

const RESULTS: [Column; 5] = [
    Column::new("CASE", "name"),
    Column::enumeration("EXPECTED", "expected_effect", "EFFECT_"),
    Column::drawn("GOT", |result| {
        let effect = enum_name(
            result["actual"]["effect"].as_str().unwrap_or_default(),
            "EFFECT_",
        );
        match result["actual"]["policy_ids"].as_array() {
            Some(ids) if !ids.is_empty() => {
                format!("{effect} ({})", cell(&result["actual"]["policy_ids"]))
            }
            _ => effect,
        }
    }),
    Column::drawn("PASS", |result| {
        if result["passed"].as_bool() == Some(true) {
            "pass".to_owned()
        } else {
            "FAIL".to_owned()
        }
    }),
    Column::new("WHY", "message"),
];

fn result_json(result: &TestCaseResult, expected: &TestCase) -> Value {
    let decision = |decision: &Decision| {
        json!({
            "effect": decision.effect().as_str_name(),
            "reason": decision.reason,
            "policy_ids": decision.policy_ids,
            "policy_version": decision.policy_version,
            "evaluation_error": decision.evaluation_error,
        })
    };
    json!({
        "name": result.name,
        "passed": result.passed,
        "expected_effect": expected.expected_effect().as_str_name(),
        "expected_policy_ids": expected.expected_policy_ids,
        "actual": result.actual.as_ref().map(decision),
        "message": result.message,
    })
}

pub async fn test(admin: &mut Admin, test: Test) -> anyhow::Result<()> {
    anyhow::ensure!(
        !(test.cases.as_os_str() == "-"
            && test.file.as_ref().is_some_and(|f| f.as_os_str() == "-")),
        "only one of --file and --cases can be read from stdin"
    );
    let target = match &test.file {
        Some(file) => test_policy_set_request::Target::PolicySet(Input::read(file)?.policy_set()?),
        None => test_policy_set_request::Target::Version(test.version),
    };
    let cases_input = Input::read(&test.cases)?;
    let cases = cases::test_cases(&cases_input, &test.tenant)?;
    let answer = admin
        .client
        .test_policy_set(bearer(
            TestPolicySetRequest {
                tenant: test.tenant.clone(),
                target: Some(target),
                cases: cases.clone(),
            },
            &admin.token,
        )?)
        .await
        .map_err(|status| match status.code() {
            tonic::Code::NotFound => version_not_found(status, &test.tenant),
            tonic::Code::InvalidArgument => failed_then(
                status,
                &format!(
                    "`cases[<i>]` are the cases of {} counted from 0; a policy file is checked \
                     by `agentctl policy validate`",
                    cases_input.name()
                ),
            ),
            _ => failed(status),
        })?
        .into_inner();
    let results: Vec<Value> = answer
        .results
        .iter()
        .zip(&cases)
        .map(|(result, case)| result_json(result, case))
        .collect();
    match admin.format {
        Format::Json => print!(
            "{}",
            Format::Json.one(
                &json!({
                    "passed_count": answer.passed_count,
                    "failed_count": answer.failed_count,
                    "results": results,
                }),
                &[]
            )
        ),
        Format::Table => print!(
            "{}",
            Format::Table.list(&results, &RESULTS, "no cases in the file")
        ),
    }
    anyhow::ensure!(
        answer.failed_count == 0,
        "{} of {} failed (FAIL in the table, with why)",
        answer.failed_count,
        counted(answer.results.len(), "case", "cases"),
    );
    Ok(())
}
