//! The fixture cases of `agentctl policy test`: a YAML or JSON document
//! `{cases: [{name, request, expected_effect, expected_policy_ids}]}`,
//! each request in the form of `agentctl check --file` (its principal's
//! tenant defaults to the tested tenant), as TestPolicySet's TestCases.

use agentsec_proto::policy::v1::{CheckRequest, TestCase};
use anyhow::Context as _;
use serde::Deserialize;

use super::document::{EffectName, Input};
use crate::check::question;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CasesDocument {
    cases: Vec<CaseEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseEntry {
    name: String,
    request: question::File,
    #[serde(alias = "expectedEffect")]
    expected_effect: EffectName,
    #[serde(default, alias = "expectedPolicyIds")]
    expected_policy_ids: Vec<String>,
}

/// The cases of `input`, each asked of `tenant` unless it names another.
pub fn test_cases(input: &Input, tenant: &str) -> anyhow::Result<Vec<TestCase>> {
    let document: CasesDocument = input.parse("a list of policy test cases")?;
    document
        .cases
        .into_iter()
        .enumerate()
        .map(|(index, case)| {
            let question = case
                .request
                .question()
                .with_context(|| format!("{}: cases[{index}] `{}`", input.name(), case.name))?;
            let mut principal = question.principal.with_context(|| {
                format!(
                    "{}: cases[{index}] `{}`: `request.principal` is missing",
                    input.name(),
                    case.name
                )
            })?;
            if principal.tenant.is_empty() {
                tenant.clone_into(&mut principal.tenant);
            }
            Ok(TestCase {
                name: case.name,
                request: Some(CheckRequest {
                    principal: Some(principal),
                    audience: question.audience,
                    action: question.action,
                    resource: Some(question.resource),
                    context: question.context,
                }),
                expected_effect: case.expected_effect.0 as i32,
                expected_policy_ids: case.expected_policy_ids,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use agentsec_proto::common::v1::Effect;

    use super::*;

    fn cases(name: &str, text: &str) -> anyhow::Result<Vec<TestCase>> {
        let input = Input::from_text(name, text.to_owned(), Path::new(name).extension());
        test_cases(&input, "acme")
    }

    #[test]
    fn cases_take_the_tested_tenant_unless_they_name_one() {
        let parsed = cases(
            "cases.yaml",
            "\
cases:
  - name: trusted bot lists issues
    request:
      principal: {agent_id: agt_1, agent_attributes: {trust_tier: 2}}
      audience: mcp:github
      action: tools/call
      resource: {type: mcp.tool, id: mcp:github/list_issues}
    expected_effect: allow
    expected_policy_ids: [github-tools]
  - name: other tenant
    request:
      principal: {tenant: other, agentId: agt_2}
      audience: mcp:github
      action: tools/call
      resource: {type: mcp.tool, id: mcp:github/delete_repo}
    expectedEffect: EFFECT_DENY
",
        )
        .unwrap();
        let tenant = |case: &TestCase| {
            case.request
                .as_ref()
                .and_then(|request| request.principal.as_ref())
                .map(|principal| principal.tenant.clone())
        };
        assert_eq!(tenant(&parsed[0]).as_deref(), Some("acme"));
        assert_eq!(tenant(&parsed[1]).as_deref(), Some("other"));
        assert_eq!(parsed[0].expected_effect(), Effect::Allow);
        assert_eq!(parsed[0].expected_policy_ids, ["github-tools"]);
        assert_eq!(parsed[1].expected_effect(), Effect::Deny);
    }

    #[test]
    fn a_case_without_a_principal_or_an_effect_is_refused_by_name() {
        let err = cases(
            "no-principal.json",
            r#"{"cases": [{"name": "who", "expected_effect": "allow",
                "request": {"audience": "a", "action": "b",
                            "resource": {"type": "t", "id": "i"}}}]}"#,
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("cases[0] `who`: `request.principal` is missing"),
            "{err:#}"
        );
        let err = cases(
            "no-effect.yaml",
            "cases:\n  - name: x\n    request: {audience: a, action: b, resource: {type: t, id: i}}\n",
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("missing field `expected_effect`"),
            "{err:#}"
        );
    }
}
