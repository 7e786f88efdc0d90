//! Deciding one request against one tenant's compiled policy set: default
//! deny, an explicit deny beats any allow, and any error while deciding is a
//! deny with the error in the reason (never an allow).

use std::time::Duration;

use agentsec_proto::common::v1 as common;
use agentsec_proto::policy::v1 as pb;

use super::compile::{CompiledPolicySet, CompiledRule, Effect, SubjectMatch};
use super::condition::Trace;
use super::error::printable;
use super::model::RoleGraph;
use super::request::DecisionRequest;

/// common.proto: a reason is at most 1,024 chars.
pub const MAX_REASON: usize = 1024;
/// common.proto: a decision names at most 64 policies.
pub const MAX_POLICY_IDS: usize = 64;
/// policy.proto: a condition detail is at most 2,048 chars.
pub const MAX_CONDITION_DETAIL: usize = 2048;

/// The engine's answer. The service adds the decision id, the cache flag and
/// the caller's cache TTL ([`Decision::to_proto`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub effect: Effect,
    /// Readable by a person; holds the error when `evaluation_error`.
    pub reason: String,
    /// ALLOW: the matching allow rules; DENY: the matching deny rules, or
    /// the rules whose condition failed to evaluate; empty for default deny.
    pub policy_ids: Vec<String>,
    /// The policy set version used; 0 = no policy was loaded.
    pub policy_version: u64,
    pub evaluation_error: bool,
    /// A condition that reads `context.time` took part: the same request
    /// may be decided differently at another time, so a cache must not
    /// keep this answer past the time it was made for.
    pub depends_on_time: bool,
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        self.effect == Effect::Allow
    }

    /// The DENY when a tenant has no loaded policy (the store is unreachable
    /// and nothing was loaded before): version 0, evaluation error.
    pub fn no_policy_loaded(tenant: &str) -> Self {
        Self::error(
            0,
            format!("no policy is loaded for tenant `{}`", printable(tenant)),
            Vec::new(),
        )
    }

    /// A DENY made before any rule is read: the request names what
    /// policy-svc does not know (a tenant without a policy set, an id no
    /// agent can have) where the caller's protocol wants a decision rather
    /// than an error (AuthZEN), or an agent of its chain is suspended or
    /// revoked. Version 0, no policy, not an evaluation error.
    pub fn refused(reason: &str) -> Self {
        Self {
            effect: Effect::Deny,
            reason: bounded(format!("denied: {reason}"), MAX_REASON),
            policy_ids: Vec::new(),
            policy_version: 0,
            evaluation_error: false,
            depends_on_time: false,
        }
    }

    fn error(policy_version: u64, reason: String, policy_ids: Vec<String>) -> Self {
        Self {
            effect: Effect::Deny,
            reason: bounded(format!("evaluation error (deny): {reason}"), MAX_REASON),
            policy_ids,
            policy_version,
            evaluation_error: true,
            depends_on_time: false,
        }
    }

    pub fn to_proto(
        &self,
        decision_id: String,
        cached: bool,
        cache_ttl: Duration,
    ) -> common::Decision {
        common::Decision {
            effect: self.effect.to_proto() as i32,
            reason: self.reason.clone(),
            policy_ids: self.policy_ids.clone(),
            policy_version: self.policy_version,
            decision_id,
            cached,
            cache_ttl: (!cache_ttl.is_zero()).then(|| prost_types::Duration {
                seconds: i64::try_from(cache_ttl.as_secs()).unwrap_or(i64::MAX),
                nanos: i32::try_from(cache_ttl.subsec_nanos()).unwrap_or(0),
            }),
            evaluation_error: self.evaluation_error,
        }
    }
}

/// How a rule's condition fared (policy.proto ConditionResult).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionOutcome {
    /// Another part of the rule did not match.
    NotEvaluated,
    /// The rule has no condition.
    None,
    True,
    False,
    Error,
}

impl ConditionOutcome {
    pub fn to_proto(self) -> pb::ConditionResult {
        match self {
            Self::NotEvaluated => pb::ConditionResult::Unspecified,
            Self::None => pb::ConditionResult::None,
            Self::True => pb::ConditionResult::True,
            Self::False => pb::ConditionResult::False,
            Self::Error => pb::ConditionResult::Error,
        }
    }
}

/// How one candidate rule fared (policy.proto RuleEvaluation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleEvaluation {
    pub policy_id: String,
    pub effect: Effect,
    pub agent_matched: bool,
    pub person_matched: bool,
    pub audience_matched: bool,
    pub resource_matched: bool,
    pub action_matched: bool,
    pub condition: ConditionOutcome,
    pub condition_detail: String,
    pub matched: bool,
}

impl RuleEvaluation {
    pub fn to_proto(&self) -> pb::RuleEvaluation {
        pb::RuleEvaluation {
            policy_id: self.policy_id.clone(),
            effect: self.effect.to_proto() as i32,
            agent_matched: self.agent_matched,
            person_matched: self.person_matched,
            audience_matched: self.audience_matched,
            resource_matched: self.resource_matched,
            action_matched: self.action_matched,
            condition_result: self.condition.to_proto() as i32,
            condition_detail: self.condition_detail.clone(),
            matched: self.matched,
        }
    }
}

/// A decision with the evidence behind it (Explain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub decision: Decision,
    pub agent_roles: Vec<String>,
    pub person_roles: Vec<String>,
    /// The candidates the index selected, in policy-set order.
    pub evaluations: Vec<RuleEvaluation>,
    pub total_rules: u32,
}

impl Explanation {
    /// The Explain answer (never cached, so `cached` is false).
    pub fn to_proto(&self, decision_id: String) -> pb::ExplainResponse {
        pb::ExplainResponse {
            decision: Some(self.decision.to_proto(decision_id, false, Duration::ZERO)),
            agent_roles: self.agent_roles.clone(),
            person_roles: self.person_roles.clone(),
            evaluations: self
                .evaluations
                .iter()
                .map(RuleEvaluation::to_proto)
                .collect(),
            total_rules: self.total_rules,
        }
    }
}

/// Decides `request` against `set`.
pub fn decide(set: &CompiledPolicySet, request: &DecisionRequest) -> Decision {
    evaluate(set, request, None)
}

/// Decides `request` and records how every candidate rule fared.
pub fn explain(set: &CompiledPolicySet, request: &DecisionRequest) -> Explanation {
    let mut evaluations = Vec::new();
    let decision = evaluate(set, request, Some(&mut evaluations));
    let person_roles = request
        .person_subject
        .as_ref()
        .map(|subject| set.roles().roles_of(&format!("person:{subject}")))
        .unwrap_or_default();
    Explanation {
        decision,
        agent_roles: request
            .agent_id
            .as_ref()
            .map(|agent| set.roles().roles_of(&format!("agent:{agent}")))
            .unwrap_or_default(),
        person_roles,
        evaluations,
        total_rules: u32::try_from(set.rules().len()).unwrap_or(u32::MAX),
    }
}

/// The request's members in Casbin's role graph, made on first use and
/// with each role answer remembered for the rest of the request.
struct Members<'a> {
    roles: &'a RoleGraph,
    agent: Option<String>,
    person: Option<String>,
    answers: Vec<(&'a str, bool, bool)>,
}

impl<'a> Members<'a> {
    fn holds(&mut self, request: &DecisionRequest, role_member: &'a str, for_person: bool) -> bool {
        if let Some((_, _, held)) = self
            .answers
            .iter()
            .find(|(role, person, _)| *role == role_member && *person == for_person)
        {
            return *held;
        }
        let held = if for_person {
            let Some(subject) = &request.person_subject else {
                return false;
            };
            let member = self
                .person
                .get_or_insert_with(|| format!("person:{subject}"));
            self.roles.has_role(member, role_member)
        } else {
            let Some(agent) = &request.agent_id else {
                return false;
            };
            let member = self.agent.get_or_insert_with(|| format!("agent:{agent}"));
            self.roles.has_role(member, role_member)
        };
        self.answers.push((role_member, for_person, held));
        held
    }
}

fn evaluate(
    set: &CompiledPolicySet,
    request: &DecisionRequest,
    mut explain: Option<&mut Vec<RuleEvaluation>>,
) -> Decision {
    if request.tenant != set.tenant() {
        return Decision::error(
            set.version(),
            format!(
                "the request of tenant `{}` reached the policy set of tenant `{}`",
                printable(&request.tenant),
                printable(set.tenant())
            ),
            Vec::new(),
        );
    }
    if let Some(first) = request.conversion_errors.first() {
        return Decision::error(set.version(), first.clone(), Vec::new());
    }

    let mut candidates = Vec::with_capacity(16);
    set.index().candidates(
        &request.action,
        &request.resource_id,
        request.agent_id.as_deref(),
        &mut candidates,
    );
    let mut members = Members {
        roles: set.roles(),
        agent: None,
        person: None,
        answers: Vec::new(),
    };
    let mut allows: Vec<&str> = Vec::new();
    let mut denies: Vec<&str> = Vec::new();
    let mut errors: Vec<(&str, String)> = Vec::new();
    let mut depends_on_time = false;

    for position in candidates {
        let Some(rule) = set.rules().get(position as usize) else {
            continue;
        };
        let explaining = explain.is_some();
        let parts = match_parts(rule, request, &mut members, explaining);
        let mut reads = Vec::new();
        let (outcome, error) = if !parts.all() {
            (ConditionOutcome::NotEvaluated, None)
        } else {
            match &rule.condition {
                None => (ConditionOutcome::None, None),
                Some(condition) => {
                    depends_on_time |= condition.reads_time();
                    let mut trace = if explaining {
                        Trace::recording(&mut reads)
                    } else {
                        Trace::off()
                    };
                    match condition.evaluate(request, &mut trace) {
                        Ok(true) => (ConditionOutcome::True, None),
                        Ok(false) => (ConditionOutcome::False, None),
                        Err(message) => (ConditionOutcome::Error, Some(message)),
                    }
                }
            }
        };
        let matched = matches!(outcome, ConditionOutcome::None | ConditionOutcome::True);
        if matched {
            match rule.effect {
                Effect::Allow => allows.push(&rule.id),
                Effect::Deny => denies.push(&rule.id),
            }
        }
        if let Some(evaluations) = explain.as_deref_mut() {
            evaluations.push(RuleEvaluation {
                policy_id: rule.id.clone(),
                effect: rule.effect,
                agent_matched: parts.agent,
                person_matched: parts.person,
                audience_matched: parts.audience,
                resource_matched: parts.resource,
                action_matched: parts.action,
                condition: outcome,
                condition_detail: detail(outcome, &reads, error.as_deref()),
                matched,
            });
        }
        if let Some(message) = error {
            errors.push((&rule.id, message));
        }
    }

    let version = set.version();
    let mut decision = if !denies.is_empty() {
        Decision {
            effect: Effect::Deny,
            reason: bounded(format!("denied by {}", policies(&denies)), MAX_REASON),
            policy_ids: ids(&denies),
            policy_version: version,
            evaluation_error: false,
            depends_on_time,
        }
    } else if let Some((first_id, first_error)) = errors.first() {
        let more = match errors.len() {
            1 => String::new(),
            n => format!(" (and {} more failing policies)", n - 1),
        };
        Decision::error(
            version,
            format!("policy `{first_id}`: {first_error}{more}"),
            ids(&errors.iter().map(|(id, _)| *id).collect::<Vec<_>>()),
        )
    } else if !allows.is_empty() {
        Decision {
            effect: Effect::Allow,
            reason: bounded(format!("allowed by {}", policies(&allows)), MAX_REASON),
            policy_ids: ids(&allows),
            policy_version: version,
            evaluation_error: false,
            depends_on_time,
        }
    } else {
        Decision {
            effect: Effect::Deny,
            reason: bounded(
                format!(
                    "no policy allows `{}` on `{}` (default deny)",
                    printable(&request.action),
                    printable(&request.resource_id)
                ),
                MAX_REASON,
            ),
            policy_ids: Vec::new(),
            policy_version: version,
            evaluation_error: false,
            depends_on_time,
        }
    };
    decision.depends_on_time = depends_on_time;
    decision
}

#[derive(Debug, Clone, Copy)]
struct Parts {
    agent: bool,
    person: bool,
    audience: bool,
    resource: bool,
    action: bool,
}

impl Parts {
    fn all(self) -> bool {
        self.agent && self.person && self.audience && self.resource && self.action
    }
}

/// Matches the non-condition parts, cheapest first; unless `explaining`,
/// stops at the first part that does not match.
fn match_parts<'a>(
    rule: &'a CompiledRule,
    request: &DecisionRequest,
    members: &mut Members<'a>,
    explaining: bool,
) -> Parts {
    let mut parts = Parts {
        agent: false,
        person: false,
        audience: false,
        resource: false,
        action: false,
    };
    parts.resource = rule.resource.matches(&request.resource_id);
    parts.action = rule
        .actions
        .iter()
        .any(|action| action.matches(&request.action));
    parts.audience = rule
        .audience
        .as_ref()
        .is_none_or(|audience| audience.matches(&request.audience));
    let target_matched = parts.resource && parts.action && parts.audience;
    if !explaining && !target_matched {
        return parts;
    }
    parts.agent = match &rule.agent {
        SubjectMatch::Any => true,
        SubjectMatch::Exact(agent_id) => request.agent_id.as_deref() == Some(agent_id.as_str()),
        SubjectMatch::Role(role_member) => members.holds(request, role_member, false),
    };
    if !explaining && !parts.agent {
        return parts;
    }
    parts.person = match &rule.person {
        SubjectMatch::Any => true,
        SubjectMatch::Exact(subject) => request.person_subject.as_deref() == Some(subject.as_str()),
        SubjectMatch::Role(role_member) => members.holds(request, role_member, true),
    };
    parts
}

fn policies(ids: &[&str]) -> String {
    let listed: Vec<String> = ids.iter().take(8).map(|id| format!("`{id}`")).collect();
    let noun = if ids.len() == 1 { "policy" } else { "policies" };
    let more = if ids.len() > 8 {
        format!(" and {} more", ids.len() - 8)
    } else {
        String::new()
    };
    format!("{noun} {}{more}", listed.join(", "))
}

fn ids(ids: &[&str]) -> Vec<String> {
    ids.iter()
        .take(MAX_POLICY_IDS)
        .map(|id| (*id).to_owned())
        .collect()
}

fn detail(outcome: ConditionOutcome, reads: &[String], error: Option<&str>) -> String {
    let text = match (outcome, error) {
        (_, Some(message)) => format!("error: {message}"),
        (ConditionOutcome::NotEvaluated, None) => {
            "not evaluated: another part of the rule did not match".to_owned()
        }
        (ConditionOutcome::None, None) => "no condition".to_owned(),
        (ConditionOutcome::True | ConditionOutcome::False | ConditionOutcome::Error, None) => {
            let verdict = if outcome == ConditionOutcome::True {
                "true"
            } else {
                "false"
            };
            if reads.is_empty() {
                verdict.to_owned()
            } else {
                format!("{verdict}: {}", reads.join(", "))
            }
        }
    };
    bounded(text, MAX_CONDITION_DETAIL)
}

/// `text` cut to at most `max` chars, marked with `…` when cut.
fn bounded(text: String, max: usize) -> String {
    if text.len() <= max || text.chars().count() <= max {
        return text;
    }
    let mut cut: String = text.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests;
