//! Decision scenarios: every rule of the model, the issue's three examples,
//! Explain, fixtures, and the engine against Casbin's reference enforcer.

use std::sync::Arc;

use agentsec_proto::common::v1 as common;
use agentsec_proto::policy::v1 as pb;

use super::*;
use crate::domain::engine::compile::compile;
use crate::domain::engine::compile::tests::{allow, assign, declare, deny};
use crate::domain::engine::fixtures::{case, run_cases};
use crate::domain::engine::request::tests::{check_request, int, noon_ish, request, string};
use crate::domain::engine::value::AttrValue;
use crate::domain::engine::{PolicyEngine, RequestError};

fn set(rules: Vec<pb::PolicyRule>, role_assignments: Vec<pb::RoleAssignment>) -> CompiledPolicySet {
    compile(
        "acme",
        3,
        &pb::PolicySet {
            rules,
            role_assignments,
            attributes: Vec::new(),
        },
    )
    .unwrap()
}

fn with_condition(mut rule: pb::PolicyRule, condition: &str) -> pb::PolicyRule {
    rule.condition = condition.to_owned();
    rule
}

fn github_call() -> Vec<pb::PolicyRule> {
    vec![allow("github-tools", "*", "mcp:github/*", &["tools/call"])]
}

#[test]
fn allow_names_the_policy_and_version() {
    let decision = decide(&set(github_call(), vec![]), &request());
    assert!(decision.is_allowed());
    assert_eq!(decision.reason, "allowed by policy `github-tools`");
    assert_eq!(decision.policy_ids, vec!["github-tools"]);
    assert_eq!(decision.policy_version, 3);
    assert!(!decision.evaluation_error);
}

#[test]
fn default_deny_without_a_matching_rule() {
    let mut other_audience = allow("other-audience", "*", "mcp:github/*", &["tools/call"]);
    other_audience.audience = "gitlab-*".into();
    let rules = vec![
        allow("other-action", "*", "mcp:github/*", &["read"]),
        allow("other-server", "*", "mcp:gitlab/*", &["tools/call"]),
        allow(
            "other-agent",
            "agent:agt_z",
            "mcp:github/*",
            &["tools/call"],
        ),
        other_audience,
    ];
    let decision = decide(&set(rules, vec![]), &request());
    assert_eq!(decision.effect, Effect::Deny);
    assert_eq!(
        decision.reason,
        "no policy allows `tools/call` on `mcp:github/create_issue` (default deny)"
    );
    assert!(decision.policy_ids.is_empty());
    assert!(!decision.evaluation_error);
    assert_eq!(
        decide(&set(vec![], vec![]), &request()).effect,
        Effect::Deny,
        "an empty set denies"
    );
}

/// A person deciding without an agent (AuthZEN with a person subject).
fn person_alone() -> DecisionRequest {
    let mut request = request();
    request.agent_id = None;
    request.actor_chain.clear();
    request.agent_attributes.clear();
    request.delegation_depth = 0;
    request
}

#[test]
fn a_person_without_an_agent_is_decided_by_the_rules_for_persons() {
    let mut for_alice = allow("alice", "*", "mcp:github/*", &["tools/call"]);
    for_alice.person = "person:alice".into();
    let mut for_eng = allow("eng", "*", "mcp:github/*", &["read"]);
    for_eng.person = "role:eng".into();
    let rules = vec![
        for_alice,
        for_eng,
        allow("agent-a", "agent:agt_a", "mcp:github/*", &["write"]),
        allow("coders", "role:coders", "mcp:github/*", &["write"]),
        with_condition(
            allow("agents-only", "*", "mcp:github/*", &["tools/list"]),
            "has(agent.id)",
        ),
        with_condition(
            allow("reads-agent", "*", "mcp:github/*", &["delete"]),
            "agent.id == 'agt_a'",
        ),
    ];
    let roles = vec![
        assign("person:alice", "eng"),
        assign("agent:agt_a", "coders"),
    ];
    let compiled = set(rules, roles);
    let decide_as = |action: &str| {
        let mut request = person_alone();
        request.action = action.to_owned();
        decide(&compiled, &request)
    };
    assert_eq!(decide_as("tools/call").policy_ids, vec!["alice"]);
    assert!(decide_as("read").is_allowed(), "through the person's role");
    let write = decide_as("write");
    assert!(
        !write.is_allowed() && write.policy_ids.is_empty(),
        "rules for an agent or an agent role need an agent: {}",
        write.reason
    );
    assert!(
        !decide_as("tools/list").is_allowed(),
        "has(agent.id) is false"
    );
    let reads_agent = decide_as("delete");
    assert!(reads_agent.evaluation_error, "{}", reads_agent.reason);
    assert!(
        reads_agent.reason.contains("agent.id is missing"),
        "{}",
        reads_agent.reason
    );
}

#[test]
fn an_explicit_deny_beats_any_allow() {
    let mut rules = github_call();
    rules.push(allow("github-all", "*", "mcp:github/*", &["*"]));
    rules.push(deny("no-create", "*", "mcp:*/create_*", &["tools/call"]));
    let decision = decide(&set(rules, vec![]), &request());
    assert_eq!(decision.effect, Effect::Deny);
    assert_eq!(decision.reason, "denied by policy `no-create`");
    assert_eq!(decision.policy_ids, vec!["no-create"]);
}

#[test]
fn conditions_read_each_attribute_source() {
    for (condition, allowed) in [
        ("agent.trust_tier == 1", true),
        ("agent.project == 'gemini'", false),
        ("person.department == 'eng'", true),
        ("'admins' in person.groups", true),
        ("resource.classification == 'secret'", false),
        ("resource.type == 'mcp.tool'", true),
        ("context.source_ip == '10.0.0.1'", true),
        ("context.environment == 'staging'", false),
        ("context.risk_score < 50", true),
        ("audience == 'github-mcp'", true),
    ] {
        let rules = vec![with_condition(
            allow("c", "*", "mcp:github/*", &["tools/call"]),
            condition,
        )];
        let decision = decide(&set(rules, vec![]), &request());
        assert_eq!(
            decision.is_allowed(),
            allowed,
            "{condition}: {}",
            decision.reason
        );
        assert!(!decision.evaluation_error, "{condition}");
    }
}

#[test]
fn roles_are_inherited_for_agents_and_people() {
    let mut people = allow("leads", "*", "mcp:github/*", &["tools/call"]);
    people.person = "role:leads".into();
    let rules = vec![
        allow(
            "via-role",
            "role:github-users",
            "mcp:github/*",
            &["tools/call"],
        ),
        people,
    ];
    let roles = vec![
        assign("agent:agt_a", "coders"),
        assign("role:coders", "github-users"),
        assign("person:alice", "eng"),
        assign("role:eng", "leads"),
    ];
    let compiled = set(rules.clone(), roles);
    let decision = decide(&compiled, &request());
    assert_eq!(decision.policy_ids, vec!["via-role", "leads"]);

    let mut other = request();
    other.agent_id = Some("agt_other".into());
    other.actor_chain = vec!["agt_other".into()];
    other.person_subject = Some("bob".into());
    assert_eq!(
        decide(&compiled, &other).effect,
        Effect::Deny,
        "neither bob nor agt_other hold a role"
    );

    let mut alone = request();
    alone.person_subject = None;
    alone.person_attributes.clear();
    assert_eq!(
        decide(&compiled, &alone).policy_ids,
        vec!["via-role"],
        "a person role needs a person"
    );
}

#[test]
fn person_star_matches_no_person_and_person_ids_need_one() {
    let mut named = allow("alice-only", "*", "mcp:github/*", &["tools/call"]);
    named.person = "person:alice".into();
    let compiled = set(vec![named], vec![]);
    assert!(decide(&compiled, &request()).is_allowed());
    let mut alone = request();
    alone.person_subject = None;
    assert!(!decide(&compiled, &alone).is_allowed());
    assert!(
        decide(&set(github_call(), vec![]), &alone).is_allowed(),
        "`*` also matches no person"
    );
}

#[test]
fn actor_chain_and_delegation_depth() {
    let rules = vec![
        allow("github-tools", "*", "mcp:github/*", &["tools/call"]),
        with_condition(
            deny("too-deep", "*", "mcp:*", &["*"]),
            "context.delegation_depth > 2",
        ),
        with_condition(
            deny("no-untrusted-hop", "*", "mcp:github/*", &["*"]),
            "'agt_evil' in context.actor_chain",
        ),
    ];
    let compiled = set(rules, vec![]);
    let mut request = request();
    assert_eq!(request.delegation_depth, 2);
    assert!(decide(&compiled, &request).is_allowed(), "depth 2 is fine");
    request.actor_chain.push("agt_c".into());
    request.delegation_depth = 3;
    assert_eq!(decide(&compiled, &request).policy_ids, vec!["too-deep"]);
    request.actor_chain = vec!["agt_a".into(), "agt_evil".into()];
    request.delegation_depth = 2;
    assert_eq!(
        decide(&compiled, &request).policy_ids,
        vec!["no-untrusted-hop"]
    );
}

#[test]
fn a_wrongly_typed_undeclared_attribute_denies_with_the_error() {
    let rules = vec![with_condition(
        allow("tier", "*", "mcp:github/*", &["tools/call"]),
        "agent.trust_tier < 2",
    )];
    let compiled = set(rules, vec![]);
    let mut request = request();
    request
        .agent_attributes
        .insert("trust_tier".into(), AttrValue::String("1".into()));
    let decision = decide(&compiled, &request);
    assert_eq!(decision.effect, Effect::Deny);
    assert!(decision.evaluation_error);
    assert_eq!(
        decision.reason,
        "evaluation error (deny): policy `tier`: `<` cannot compare agent.trust_tier (a string) with 2 (an int)"
    );
    assert_eq!(decision.policy_ids, vec!["tier"]);

    request.agent_attributes.remove("trust_tier");
    let decision = decide(&compiled, &request);
    assert!(decision.evaluation_error);
    assert!(
        decision.reason.ends_with("agent.trust_tier is missing"),
        "{}",
        decision.reason
    );
}

#[test]
fn an_error_in_any_candidate_denies_even_if_another_rule_allows() {
    let rules = vec![
        allow("plain", "*", "mcp:github/*", &["tools/call"]),
        with_condition(
            allow("broken", "*", "mcp:github/*", &["tools/call"]),
            "agent.nothing == 1",
        ),
    ];
    let decision = decide(&set(rules.clone(), vec![]), &request());
    assert_eq!(decision.effect, Effect::Deny);
    assert!(decision.evaluation_error);
    let mut with_deny = rules;
    with_deny.push(deny("stop", "*", "mcp:github/*", &["tools/call"]));
    let decision = decide(&set(with_deny, vec![]), &request());
    assert_eq!(
        decision.policy_ids,
        vec!["stop"],
        "an explicit deny is a policy decision, not an error"
    );
    assert!(!decision.evaluation_error);
}

#[test]
fn declared_types_registry_conversion_and_unknown_tenants() {
    let policy_set = pb::PolicySet {
        rules: vec![with_condition(
            allow("tier", "*", "mcp:github/*", &["tools/call"]),
            "agent.trust_tier < 2",
        )],
        role_assignments: vec![],
        attributes: vec![declare(
            pb::AttributeSource::Agent,
            "trust_tier",
            pb::AttributeType::Int,
        )],
    };
    let mut engine = PolicyEngine::new();
    engine.install(Arc::new(compile("acme", 1, &policy_set).unwrap()));
    assert!(engine
        .check(&check_request(), "", noon_ish())
        .unwrap()
        .is_allowed());

    let mut wrong = check_request();
    wrong
        .principal
        .as_mut()
        .unwrap()
        .agent_attributes
        .insert("trust_tier".into(), string("1"));
    let err = engine.check(&wrong, "items[0].", noon_ish()).unwrap_err();
    assert_eq!(
        err.field(),
        "items[0].principal.agent_attributes[\"trust_tier\"]"
    );

    let mut unknown = check_request();
    unknown.principal.as_mut().unwrap().tenant = "globex".into();
    let err = engine.check(&unknown, "", noon_ish()).unwrap_err();
    assert_eq!(
        err,
        RequestError::invalid("principal.tenant", "tenant `globex` has no policy set")
    );

    let compiled = engine.policy_set("acme", "tenant").unwrap();
    let mut registry = request();
    registry
        .agent_attributes
        .insert("trust_tier".into(), AttrValue::String("high".into()));
    registry
        .apply_declarations(
            compiled.declarations(),
            crate::domain::engine::AgentAttributeOrigin::Registry,
            "",
        )
        .unwrap();
    let decision = decide(compiled, &registry);
    assert!(decision.evaluation_error);
    assert!(
        decision.reason.contains("`high` is not an int"),
        "{}",
        decision.reason
    );

    let none = Decision::no_policy_loaded("acme");
    assert_eq!(
        (none.effect, none.policy_version, none.evaluation_error),
        (Effect::Deny, 0, true)
    );
}

/// The issue's three examples exactly as docs/policy-model.md writes them.
fn issue_examples() -> CompiledPolicySet {
    let mut low_trust_read = allow("low-trust-read-x", "*", "repo:project-x/*", &["read"]);
    low_trust_read.condition = "agent.trust_tier < 2".into();
    let mut low_trust_only = deny("low-trust-only-read-x", "*", "*", &["*"]);
    low_trust_only.condition =
        "agent.trust_tier < 2 && !(action == \"read\" && glob(resource.id, \"repo:project-x/*\"))"
            .into();
    let mut trusted = allow(
        "trusted-write-x",
        "*",
        "repo:project-x/*",
        &["read", "write"],
    );
    trusted.condition = "agent.trust_tier >= 2".into();
    let mut after_hours = deny(
        "no-delete-after-hours",
        "*",
        "mcp:*/delete_*",
        &["tools/call"],
    );
    after_hours.person = "*".into();
    after_hours.condition = "has(person.subject) && (hour(context.time) < 9 || hour(context.time) >= 18 || weekday(context.time) >= 6)".into();
    let mut depth = deny("max-delegation-depth", "*", "*", &["*"]);
    depth.condition = "context.delegation_depth > 2".into();
    let mcp = allow(
        "github-tools",
        "role:mcp-users",
        "mcp:github/*",
        &["tools/call"],
    );
    compile(
        "acme",
        1,
        &pb::PolicySet {
            rules: vec![
                low_trust_read,
                low_trust_only,
                trusted,
                after_hours,
                depth,
                mcp,
            ],
            role_assignments: vec![assign("agent:agt_a", "mcp-users")],
            attributes: vec![declare(
                pb::AttributeSource::Agent,
                "trust_tier",
                pb::AttributeType::Int,
            )],
        },
    )
    .unwrap()
}

/// `request()` from a trusted agent (tier 2), which may use MCP tools.
fn trusted_request() -> DecisionRequest {
    let mut request = request();
    request
        .agent_attributes
        .insert("trust_tier".into(), AttrValue::Int(2));
    request
}

fn repo_request(tier: i64, action: &str, resource: &str) -> DecisionRequest {
    let mut request = request();
    request
        .agent_attributes
        .insert("trust_tier".into(), AttrValue::Int(tier));
    request.action = action.into();
    request.resource_type = "repository".into();
    request.resource_id = resource.into();
    request
}

#[test]
fn issue_example_low_trust_agents_only_read_in_project_x() {
    let set = issue_examples();
    let read = decide(&set, &repo_request(1, "read", "repo:project-x/api"));
    assert_eq!(read.policy_ids, vec!["low-trust-read-x"]);
    for (action, resource) in [
        ("write", "repo:project-x/api"),
        ("read", "repo:project-y/api"),
        ("tools/call", "mcp:github/create_issue"),
    ] {
        let denied = decide(&set, &repo_request(1, action, resource));
        assert_eq!(denied.effect, Effect::Deny, "{action} {resource}");
        assert_eq!(
            denied.policy_ids,
            vec!["low-trust-only-read-x"],
            "{action} {resource}"
        );
    }
    assert!(decide(&set, &repo_request(2, "write", "repo:project-x/api")).is_allowed());
}

#[test]
fn issue_example_no_deletes_for_a_person_outside_working_hours() {
    let set = issue_examples();
    let mut delete = trusted_request();
    delete.resource_id = "mcp:github/delete_repo".into();
    delete.time = noon_ish(); // Wednesday 14:30 UTC
    let working = decide(&set, &delete);
    assert!(working.is_allowed(), "{}", working.reason);
    assert!(working.depends_on_time, "a time condition took part");
    delete.time = noon_ish() + chrono::Duration::hours(5); // 19:30
    let late = decide(&set, &delete);
    assert_eq!(late.policy_ids, vec!["no-delete-after-hours"]);
    assert_eq!(late.reason, "denied by policy `no-delete-after-hours`");
    delete.time = noon_ish() + chrono::Duration::days(3); // Saturday
    assert_eq!(
        decide(&set, &delete).policy_ids,
        vec!["no-delete-after-hours"]
    );
    delete.time = noon_ish() + chrono::Duration::hours(5);
    delete.person_subject = None;
    delete.person_attributes.clear();
    assert!(
        decide(&set, &delete).is_allowed(),
        "the agent on its own behalf is not restricted"
    );
    let mut create = trusted_request();
    create.time = noon_ish() + chrono::Duration::hours(5);
    assert!(
        decide(&set, &create).is_allowed(),
        "only delete_* tools are restricted"
    );
}

#[test]
fn issue_example_delegation_depth_at_most_two() {
    let set = issue_examples();
    let mut request = trusted_request();
    request.delegation_depth = 3;
    request.actor_chain = vec!["agt_a".into(), "agt_b".into(), "agt_c".into()];
    assert_eq!(
        decide(&set, &request).policy_ids,
        vec!["max-delegation-depth"]
    );
    request.delegation_depth = 2;
    assert!(decide(&set, &request).is_allowed());
}

#[test]
fn explain_shows_candidates_roles_and_condition_details() {
    let set = issue_examples();
    let mut late = trusted_request();
    late.resource_id = "mcp:github/delete_repo".into();
    late.time = noon_ish() + chrono::Duration::hours(5);
    let explanation = explain(&set, &late);
    assert_eq!(explanation.decision, decide(&set, &late));
    assert_eq!(explanation.agent_roles, vec!["mcp-users"]);
    assert!(explanation.person_roles.is_empty());
    assert_eq!(explanation.total_rules, 6);
    let considered: Vec<&str> = explanation
        .evaluations
        .iter()
        .map(|e| e.policy_id.as_str())
        .collect();
    assert_eq!(
        considered,
        vec![
            "low-trust-only-read-x",
            "no-delete-after-hours",
            "max-delegation-depth",
            "github-tools"
        ],
        "the repository rules are not candidates"
    );
    let low_trust = &explanation.evaluations[0];
    assert_eq!(
        (low_trust.condition, low_trust.matched),
        (ConditionOutcome::False, false)
    );
    assert_eq!(low_trust.condition_detail, "false: agent.trust_tier = 2");
    let after_hours = &explanation.evaluations[1];
    assert!(after_hours.matched);
    assert_eq!(after_hours.condition, ConditionOutcome::True);
    assert_eq!(
        after_hours.condition_detail,
        "true: has(person.subject) = true, context.time = 2025-01-01T19:30:00+00:00, hour(context.time) = 19"
    );
    let depth = &explanation.evaluations[2];
    assert_eq!(
        depth.condition_detail,
        "false: context.delegation_depth = 2"
    );
    let proto = explanation.to_proto("dec_1".into());
    assert_eq!(
        proto.evaluations[3].condition_result,
        pb::ConditionResult::None as i32
    );
    assert!(!proto.decision.unwrap().cached);

    let mut other_agent = late.clone();
    other_agent.agent_id = Some("agt_x".into());
    let explanation = explain(&set, &other_agent);
    let mcp = explanation
        .evaluations
        .iter()
        .find(|e| e.policy_id == "github-tools")
        .unwrap();
    assert!(
        !mcp.agent_matched && mcp.resource_matched && mcp.action_matched && mcp.audience_matched
    );
    assert_eq!(mcp.condition, ConditionOutcome::NotEvaluated);
}

#[test]
fn fixtures_pass_fail_and_refuse_malformed_cases() {
    let set = issue_examples();
    let mut low_write = check_request();
    low_write.action = "write".into();
    low_write.resource.as_mut().unwrap().id = "repo:project-x/api".into();
    low_write.resource.as_mut().unwrap().r#type = "repository".into();
    let mut trusted_call = check_request();
    trusted_call
        .principal
        .as_mut()
        .unwrap()
        .agent_attributes
        .insert("trust_tier".into(), int(2));
    let cases = vec![
        case(
            "trusted mcp call",
            trusted_call.clone(),
            Effect::Allow,
            &["github-tools"],
        ),
        case(
            "low trust write",
            low_write.clone(),
            Effect::Deny,
            &["low-trust-only-read-x"],
        ),
        case("wrong expectation", low_write, Effect::Allow, &[]),
        case("wrong ids", trusted_call, Effect::Allow, &["other"]),
    ];
    let report = run_cases(&set, &cases, noon_ish()).unwrap();
    assert_eq!((report.passed_count, report.failed_count), (2, 2));
    assert!(report.results[0].passed && report.results[1].passed);
    assert!(report.results[2]
        .message
        .starts_with("expected ALLOW, got DENY (denied by policy `low-trust-only-read-x`)"));
    assert_eq!(
        report.results[3].message,
        "expected policies {\"other\"}, got {\"github-tools\"}"
    );
    assert_eq!(report.results[0].actual.as_ref().unwrap().decision_id, "");

    let mut other_tenant = check_request();
    other_tenant.principal.as_mut().unwrap().tenant = "globex".into();
    let err = run_cases(
        &set,
        &[case("t", other_tenant, Effect::Deny, &[])],
        noon_ish(),
    )
    .unwrap_err();
    assert_eq!(err.field(), "cases[0].request.principal.tenant");
    let twice = vec![
        case("same", check_request(), Effect::Allow, &[]),
        case("same", check_request(), Effect::Allow, &[]),
    ];
    assert_eq!(
        run_cases(&set, &twice, noon_ish()).unwrap_err().field(),
        "cases[1].name"
    );
    let mut unset = case("u", check_request(), Effect::Allow, &[]);
    unset.expected_effect = common::Effect::Unspecified as i32;
    assert_eq!(
        run_cases(&set, &[unset], noon_ish()).unwrap_err().field(),
        "cases[0].expected_effect"
    );
    let mut empty_action = check_request();
    empty_action.action.clear();
    let err = run_cases(
        &set,
        &[case("e", empty_action, Effect::Deny, &[])],
        noon_ish(),
    )
    .unwrap_err();
    assert_eq!(err.field(), "cases[0].request.action");
    assert_eq!(
        run_cases(&set, &[], noon_ish()).unwrap_err().field(),
        "cases"
    );
}

#[test]
fn decision_proto_carries_service_fields_and_bounds() {
    let rules: Vec<pb::PolicyRule> = (0..70)
        .map(|i| allow(&format!("r{i}"), "*", "mcp:github/*", &["tools/call"]))
        .collect();
    let decision = decide(&set(rules, vec![]), &request());
    assert_eq!(decision.policy_ids.len(), MAX_POLICY_IDS);
    assert!(
        decision.reason.ends_with("and 62 more"),
        "{}",
        decision.reason
    );
    let proto = decision.to_proto("dec_01".into(), true, Duration::from_secs(30));
    assert_eq!(proto.effect, common::Effect::Allow as i32);
    assert_eq!(proto.cache_ttl.unwrap().seconds, 30);
    assert!(proto.cached);
    assert!(decision
        .to_proto(String::new(), false, Duration::ZERO)
        .cache_ttl
        .is_none());
}

#[test]
fn a_request_for_another_tenant_is_an_error_deny() {
    let mut request = request();
    request.tenant = "globex".into();
    let decision = decide(&set(github_call(), vec![]), &request);
    assert!(decision.evaluation_error);
    assert_eq!(decision.effect, Effect::Deny);
}

/// A small deterministic generator (no dependency needed for tests).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % bound as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.next(items.len())]
    }
}

#[tokio::test]
async fn the_engine_decides_as_casbin_does_with_the_model_text() {
    let agents = [
        "*",
        "agent:agt_a",
        "agent:agt_b",
        "role:readers",
        "role:writers",
        "role:admins",
    ];
    let people = ["*", "*", "person:alice", "role:staff"];
    let audiences = ["", "github-mcp", "gitlab-*"];
    let resources = [
        "mcp:github/*",
        "mcp:github/create_issue",
        "mcp:*/delete_*",
        "mcp:gitlab/*",
        "doc:*/public",
        "doc:1",
    ];
    let actions = ["tools/call", "read", "write", "tools/*", "*"];
    let conditions = [
        "",
        "",
        "agent.trust_tier < 2",
        "context.delegation_depth > 1",
        "hour(context.time) >= 12",
    ];
    let mut random = Lcg(7);
    for round in 0..20 {
        let rules: Vec<pb::PolicyRule> = (0..30)
            .map(|i| {
                let effect = if random.next(4) == 0 { deny } else { allow };
                let mut rule = effect(
                    &format!("r{i}"),
                    random.pick(&agents),
                    random.pick(&resources),
                    &[random.pick(&actions)],
                );
                if random.next(3) == 0 {
                    let extra = random.pick(&actions);
                    if !rule.actions.iter().any(|a| a == extra) {
                        rule.actions.push(extra.to_owned());
                    }
                }
                rule.person = random.pick(&people).to_owned();
                rule.audience = random.pick(&audiences).to_owned();
                rule.condition = random.pick(&conditions).to_owned();
                rule
            })
            .collect();
        let roles = vec![
            assign("agent:agt_a", "readers"),
            assign("role:writers", "readers"),
            assign("agent:agt_b", "writers"),
            assign("role:admins", "writers"),
            assign("person:alice", "staff"),
        ];
        let compiled = set(rules, roles);
        let enforcer = crate::domain::engine::model::reference_enforcer(&compiled)
            .await
            .unwrap();
        for _ in 0..200 {
            let mut request = request();
            request.person_subject =
                [Some("alice".to_owned()), Some("bob".to_owned()), None][random.next(3)].clone();
            // A person may decide without an agent.
            let agent = random.pick(&["agt_a", "agt_b", "agt_c", ""]);
            if agent.is_empty() && request.person_subject.is_some() {
                request.agent_id = None;
                request.actor_chain.clear();
                request.agent_attributes.clear();
            } else {
                let agent = if agent.is_empty() { "agt_a" } else { agent };
                request.agent_id = Some(agent.to_owned());
                request.actor_chain = vec![agent.to_owned()];
            }
            request.audience = random
                .pick(&["github-mcp", "gitlab-mcp", "docs"])
                .to_owned();
            request.resource_id = random
                .pick(&[
                    "mcp:github/create_issue",
                    "mcp:github/delete_repo",
                    "mcp:gitlab/x",
                    "doc:9/public",
                    "doc:1",
                ])
                .to_owned();
            request.action = random
                .pick(&["tools/call", "read", "write", "tools/list"])
                .to_owned();
            if request.agent_id.is_some() {
                request
                    .agent_attributes
                    .insert("trust_tier".into(), AttrValue::Int(random.next(4) as i64));
            }
            request.delegation_depth = 1 + random.next(3) as u32;
            let engine = decide(&compiled, &request);
            if engine.evaluation_error {
                // A condition read what a person alone does not have
                // (`agent.trust_tier`): the engine denies, a case the
                // reference does not model.
                assert!(!engine.is_allowed());
                continue;
            }
            let casbin =
                crate::domain::engine::model::reference_decide(&enforcer, &compiled, &request)
                    .unwrap();
            assert_eq!(
                engine.is_allowed(),
                casbin,
                "round {round}: {request:?}\n{}",
                engine.reason
            );
        }
    }
}
