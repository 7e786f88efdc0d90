//! The generated workload both policy benchmarks use: policy sets as an
//! operator would write them (per-server MCP grants by role and by agent, a
//! few cross-server denies, repository rules with conditions) and requests
//! against them, from a deterministic generator so runs are comparable.

// Each benchmark uses a part of the workload.
#![allow(dead_code)]

use agentsec_proto::common::v1 as common;
use agentsec_proto::policy::v1 as pb;

pub const AGENTS_PER_TENANT: usize = 200;
pub const ROLES: usize = 8;
pub const TOOLS_PER_SERVER: usize = 50;
/// Rules per MCP server (resource prefix) in the generated sets.
pub const RULES_PER_SERVER: usize = 25;

/// A small deterministic generator, so runs are comparable.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn below(&mut self, bound: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % bound.max(1) as u64) as usize
    }
}

pub fn rule(
    id: String,
    effect: common::Effect,
    agent: String,
    resource: String,
    actions: &[&str],
    condition: &str,
) -> pb::PolicyRule {
    pb::PolicyRule {
        id,
        description: String::new(),
        effect: effect as i32,
        agent,
        person: String::new(),
        audience: String::new(),
        resource,
        actions: actions.iter().map(|a| (*a).to_owned()).collect(),
        condition: condition.to_owned(),
    }
}

pub fn agent_id(tenant: usize, agent: usize) -> String {
    format!("agt_t{tenant}a{agent}")
}

pub fn servers(rule_count: usize) -> usize {
    (rule_count / RULES_PER_SERVER).max(1)
}

/// One tenant's set of `rule_count` rules.
pub fn policy_set(tenant: usize, rule_count: usize) -> pb::PolicySet {
    use common::Effect::{Allow, Deny};
    let mut rules = vec![
        rule(
            "no-delete-after-hours".into(),
            Deny,
            "*".into(),
            "mcp:*/delete_*".into(),
            &["tools/call"],
            "has(person.subject) && (hour(context.time) < 9 || hour(context.time) >= 18)",
        ),
        rule(
            "max-delegation-depth".into(),
            Deny,
            "*".into(),
            "*".into(),
            &["*"],
            "context.delegation_depth > 2",
        ),
        rule(
            "high-risk".into(),
            Deny,
            "*".into(),
            "mcp:*".into(),
            &["*"],
            "has(context.risk_score) && context.risk_score > 80",
        ),
    ];
    let server_count = servers(rule_count);
    for i in 0..rule_count.saturating_sub(rules.len()) {
        let server = i % server_count;
        let nth = i / server_count;
        let role = format!("role:r{}", nth % ROLES);
        let id = format!("rule-{i}");
        rules.push(match i % 10 {
            0..=4 => rule(
                id,
                Allow,
                role,
                format!("mcp:srv{server}/*"),
                &["tools/call"],
                if i % 2 == 0 {
                    "agent.trust_tier >= 1"
                } else {
                    ""
                },
            ),
            5 | 6 => rule(
                id,
                Allow,
                format!("agent:{}", agent_id(tenant, (i * 7) % AGENTS_PER_TENANT)),
                format!("mcp:srv{server}/tool{}", nth % TOOLS_PER_SERVER),
                &["tools/call", "tools/list"],
                "",
            ),
            7 => rule(
                id,
                Deny,
                role,
                format!("mcp:srv{server}/admin_*"),
                &["tools/call"],
                "",
            ),
            8 => rule(
                id,
                Allow,
                "*".into(),
                format!("repo:proj{server}/*"),
                &["read", "write"],
                &format!("resource.project == \"proj{server}\" && agent.trust_tier >= 2"),
            ),
            _ => rule(
                id,
                Allow,
                role,
                format!("mcp:srv{server}/get_*"),
                &["tools/*"],
                "hour(context.time) >= 6",
            ),
        });
    }
    let mut role_assignments: Vec<pb::RoleAssignment> = (0..AGENTS_PER_TENANT)
        .map(|agent| pb::RoleAssignment {
            member: format!("agent:{}", agent_id(tenant, agent)),
            role: format!("r{}", agent % ROLES),
        })
        .collect();
    // A small hierarchy: r1 inherits r0, r2 inherits r1, ...
    for level in 1..ROLES {
        role_assignments.push(pb::RoleAssignment {
            member: format!("role:r{level}"),
            role: format!("r{}", level - 1),
        });
    }
    role_assignments.push(pb::RoleAssignment {
        member: "person:alice".into(),
        role: "r0".into(),
    });
    pb::PolicySet {
        rules,
        role_assignments,
        attributes: vec![
            pb::AttributeDefinition {
                source: pb::AttributeSource::Agent as i32,
                name: "trust_tier".into(),
                r#type: pb::AttributeType::Int as i32,
                description: String::new(),
            },
            pb::AttributeDefinition {
                source: pb::AttributeSource::Resource as i32,
                name: "project".into(),
                r#type: pb::AttributeType::String as i32,
                description: String::new(),
            },
        ],
    }
}

pub fn value(kind: common::attribute_value::Kind) -> common::AttributeValue {
    common::AttributeValue { kind: Some(kind) }
}

/// A request against one of `tenants` tenants of `rules_per_tenant` rules.
pub fn check_request(
    random: &mut Lcg,
    tenants: usize,
    rules_per_tenant: usize,
) -> pb::CheckRequest {
    use common::attribute_value::Kind;
    let tenant = random.below(tenants);
    // One agent in five holds no role at all.
    let agent = agent_id(tenant, random.below(AGENTS_PER_TENANT * 5 / 4));
    let server = random.below(servers(rules_per_tenant));
    let (action, resource_type, resource_id) = match random.below(10) {
        0 => ("read", "repository", format!("repo:proj{server}/api")),
        1 => (
            "tools/list",
            "mcp.tool",
            format!("mcp:srv{server}/get_{}", random.below(9)),
        ),
        2 => (
            "tools/call",
            "mcp.tool",
            format!("mcp:srv{server}/delete_{}", random.below(9)),
        ),
        _ => (
            "tools/call",
            "mcp.tool",
            format!("mcp:srv{server}/tool{}", random.below(TOOLS_PER_SERVER)),
        ),
    };
    let with_person = random.below(2) == 0;
    pb::CheckRequest {
        principal: Some(common::Principal {
            tenant: format!("t{tenant}"),
            agent_id: agent.clone(),
            agent_attributes: [
                (
                    "trust_tier".to_owned(),
                    value(Kind::IntValue(random.below(4) as i64)),
                ),
                (
                    "project".to_owned(),
                    value(Kind::StringValue("apollo".into())),
                ),
            ]
            .into_iter()
            .collect(),
            person_subject: if with_person {
                "alice".into()
            } else {
                String::new()
            },
            person_attributes: Default::default(),
            actor_chain: None,
        }),
        audience: format!("srv{server}"),
        action: action.into(),
        resource: Some(common::Resource {
            r#type: resource_type.into(),
            id: resource_id,
            attributes: [(
                "project".to_owned(),
                value(Kind::StringValue(format!("proj{}", random.below(3)))),
            )]
            .into_iter()
            .collect(),
        }),
        context: Some(pb::RequestContext {
            time: Some(prost_types::Timestamp {
                seconds: 1_735_689_600 + 3600 * random.below(24) as i64,
                nanos: 0,
            }),
            environment: "prod".into(),
            delegation_depth: 1 + random.below(3) as u32,
            risk_score: Some(random.below(101) as u32),
            attributes: Default::default(),
        }),
    }
}
