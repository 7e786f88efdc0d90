//! The decision request as the engine sees it: validated, bounded and typed
//! once at the boundary (policy.proto's CheckRequest, ExplainRequest and
//! TestCase requests), so that deciding never re-checks shapes.

use std::collections::HashMap;

use agentsec_proto::common::v1 as common;
use agentsec_proto::policy::v1 as pb;
use chrono::{DateTime, Utc};

use super::condition::Declarations;
use super::error::{printable, RequestError};
use super::value::{is_attribute_key, AttrType, AttrValue, Source, ATTRIBUTE_KEY_RULE};

pub const MAX_TENANT: usize = 64;
pub const MAX_AGENT_ID: usize = 64;
pub const MAX_PERSON_SUBJECT: usize = 256;
pub const MAX_ISSUER: usize = 256;
pub const MAX_AUDIENCE: usize = 256;
pub const MAX_ACTION: usize = 128;
pub const MAX_RESOURCE_TYPE: usize = 64;
pub const MAX_RESOURCE_ID: usize = 512;
pub const MAX_ENVIRONMENT: usize = 64;
pub const MAX_ATTRIBUTES: usize = 64;
pub const MAX_ACTORS: usize = 16;
pub const MAX_DELEGATION_DEPTH: u32 = 16;
pub const MAX_RISK_SCORE: u32 = 100;

/// Where the agent's attributes come from, which decides what a value of
/// another type than its declaration means (common.proto, attribute typing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentAttributeOrigin {
    /// Typed by the caller (Check, Explain, fixtures): a declared attribute
    /// of another type is INVALID_ARGUMENT.
    Caller,
    /// Registry strings from identity-svc (CheckToken): converted to the
    /// declared type; a string that does not convert makes the decision a
    /// DENY with the error in the reason.
    Registry,
}

/// A validated decision request.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionRequest {
    pub tenant: String,
    /// The acting agent; None when a person decides without an agent
    /// (then `person_subject` is set).
    pub agent_id: Option<String>,
    pub agent_attributes: HashMap<String, AttrValue>,
    /// None when the agent acts on its own behalf.
    pub person_subject: Option<String>,
    pub person_attributes: HashMap<String, AttrValue>,
    /// Agent ids, outermost (the acting agent) first; empty exactly when
    /// there is no agent.
    pub actor_chain: Vec<String>,
    pub audience: String,
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub resource_attributes: HashMap<String, AttrValue>,
    /// The request's time, or the server's when the caller gave none.
    pub time: DateTime<Utc>,
    pub environment: Option<String>,
    /// The caller's value, or the length of the actor chain.
    pub delegation_depth: u32,
    pub risk_score: Option<u32>,
    pub context_attributes: HashMap<String, AttrValue>,
    /// Registry attributes that did not convert to their declared type:
    /// the decision is a DENY with these in the reason.
    pub conversion_errors: Vec<String>,
}

/// The decision fields of a CheckRequest or an ExplainRequest (the same
/// fields in both messages).
macro_rules! parts_of {
    ($request:expr) => {
        Parts {
            principal: $request.principal.as_ref(),
            audience: &$request.audience,
            action: &$request.action,
            resource: $request.resource.as_ref(),
            context: $request.context.as_ref(),
        }
    };
}

impl DecisionRequest {
    pub fn attributes(&self, source: Source) -> &HashMap<String, AttrValue> {
        match source {
            Source::Agent => &self.agent_attributes,
            Source::Person => &self.person_attributes,
            Source::Resource => &self.resource_attributes,
            Source::Context => &self.context_attributes,
        }
    }

    fn attributes_mut(&mut self, source: Source) -> &mut HashMap<String, AttrValue> {
        match source {
            Source::Agent => &mut self.agent_attributes,
            Source::Person => &mut self.person_attributes,
            Source::Resource => &mut self.resource_attributes,
            Source::Context => &mut self.context_attributes,
        }
    }

    /// Validates a CheckRequest; `prefix` is prepended to every field path
    /// (`items[3].` in BatchCheck, `cases[0].request.` in fixtures), `now`
    /// stands in for an unset `context.time`.
    pub fn from_check(
        request: &pb::CheckRequest,
        prefix: &str,
        now: DateTime<Utc>,
    ) -> Result<Self, RequestError> {
        Self::from_parts(parts_of!(request), prefix, now)
    }

    /// Validates an ExplainRequest (the same fields as a CheckRequest).
    pub fn from_explain(
        request: &pb::ExplainRequest,
        prefix: &str,
        now: DateTime<Utc>,
    ) -> Result<Self, RequestError> {
        Self::from_parts(parts_of!(request), prefix, now)
    }

    /// Validates the request fields shared by every decision RPC. CheckToken
    /// builds its Principal from the verified token and calls this too.
    pub fn from_parts(
        parts: Parts<'_>,
        prefix: &str,
        now: DateTime<Utc>,
    ) -> Result<Self, RequestError> {
        let field = |name: &str| format!("{prefix}{name}");
        let principal = parts
            .principal
            .ok_or_else(|| RequestError::invalid(field("principal"), "is required"))?;
        tenant(&field("principal.tenant"), &principal.tenant)?;
        at_most(
            &field("principal.person_subject"),
            &principal.person_subject,
            MAX_PERSON_SUBJECT,
        )?;
        let person_subject =
            (!principal.person_subject.is_empty()).then(|| principal.person_subject.clone());
        let acting = if principal.agent_id.is_empty() && person_subject.is_some() {
            without_agent(&field("principal"), principal)?;
            None
        } else if principal.agent_id.is_empty() {
            return Err(RequestError::invalid(
                field("principal.agent_id"),
                "is required unless principal.person_subject names a person deciding without an agent",
            ));
        } else {
            agent_id(&field("principal.agent_id"), &principal.agent_id)?;
            Some(principal.agent_id.clone())
        };
        let agent_attributes = attributes(
            &field("principal.agent_attributes"),
            &principal.agent_attributes,
        )?;
        if person_subject.is_none() && !principal.person_attributes.is_empty() {
            return Err(RequestError::invalid(
                field("principal.person_attributes"),
                "must be empty when principal.person_subject is empty",
            ));
        }
        let person_attributes = attributes(
            &field("principal.person_attributes"),
            &principal.person_attributes,
        )?;
        let actor_chain = match acting {
            Some(_) => actor_chain(&field("principal.actor_chain"), principal)?,
            None => Vec::new(),
        };

        at_most(&field("audience"), parts.audience, MAX_AUDIENCE)?;
        required(&field("action"), parts.action, MAX_ACTION)?;
        let resource = parts
            .resource
            .ok_or_else(|| RequestError::invalid(field("resource"), "is required"))?;
        resource_type(&field("resource.type"), &resource.r#type)?;
        required(&field("resource.id"), &resource.id, MAX_RESOURCE_ID)?;
        let resource_attributes = attributes(&field("resource.attributes"), &resource.attributes)?;

        let default_context = pb::RequestContext::default();
        let context = parts.context.unwrap_or(&default_context);
        let time = match &context.time {
            None => now,
            Some(timestamp) => time(&field("context.time"), timestamp)?,
        };
        at_most(
            &field("context.environment"),
            &context.environment,
            MAX_ENVIRONMENT,
        )?;
        let environment = (!context.environment.is_empty()).then(|| context.environment.clone());
        if context.delegation_depth > MAX_DELEGATION_DEPTH {
            return Err(RequestError::invalid(
                field("context.delegation_depth"),
                format!("must be at most {MAX_DELEGATION_DEPTH}"),
            ));
        }
        // A person deciding without an agent delegates nothing: depth 0.
        let delegation_depth = match context.delegation_depth {
            0 => u32::try_from(actor_chain.len()).unwrap_or(MAX_DELEGATION_DEPTH),
            depth => depth,
        };
        if context
            .risk_score
            .is_some_and(|score| score > MAX_RISK_SCORE)
        {
            return Err(RequestError::invalid(
                field("context.risk_score"),
                format!("must be 0-{MAX_RISK_SCORE}"),
            ));
        }
        let context_attributes = attributes(&field("context.attributes"), &context.attributes)?;

        Ok(Self {
            tenant: principal.tenant.clone(),
            agent_id: acting,
            agent_attributes,
            person_subject,
            person_attributes,
            actor_chain,
            audience: parts.audience.to_owned(),
            action: parts.action.to_owned(),
            resource_type: resource.r#type.clone(),
            resource_id: resource.id.clone(),
            resource_attributes,
            time,
            environment,
            delegation_depth,
            risk_score: context.risk_score,
            context_attributes,
            conversion_errors: Vec::new(),
        })
    }

    /// Checks every attribute the policy set declares against its
    /// declaration (policy.proto AttributeDefinition): a mismatch is
    /// INVALID_ARGUMENT naming the attribute, except for registry agent
    /// attributes, which are converted (see [`AgentAttributeOrigin`]).
    pub fn apply_declarations(
        &mut self,
        declarations: &Declarations,
        origin: AgentAttributeOrigin,
        prefix: &str,
    ) -> Result<(), RequestError> {
        if declarations.is_empty() {
            return Ok(());
        }
        for source in [
            Source::Agent,
            Source::Person,
            Source::Resource,
            Source::Context,
        ] {
            let mut conversions: Vec<(String, Result<AttrValue, String>)> = Vec::new();
            let mut keys: Vec<&String> = self.attributes(source).keys().collect();
            keys.sort();
            for key in keys {
                let Some(declared) = declarations.get(source, key) else {
                    continue;
                };
                let Some(value) = self.attributes(source).get(key) else {
                    continue;
                };
                if value.attr_type() == declared {
                    continue;
                }
                match (source, origin, value) {
                    (Source::Agent, AgentAttributeOrigin::Registry, AttrValue::String(text)) => {
                        conversions.push((
                            key.clone(),
                            AttrValue::convert_registry_string(text, declared),
                        ));
                    }
                    _ => {
                        return Err(RequestError::invalid(
                            format!("{prefix}{}[\"{key}\"]", source.request_field()),
                            format!(
                                "is declared as {} but is {}",
                                declared.name(),
                                value.attr_type().name()
                            ),
                        ))
                    }
                }
            }
            for (key, converted) in conversions {
                match converted {
                    Ok(value) => {
                        self.attributes_mut(source).insert(key, value);
                    }
                    Err(reason) => {
                        let declared = declarations.get(source, &key).map_or("?", AttrType::name);
                        self.conversion_errors.push(format!(
                            "agent attribute `{key}` does not convert to its declared type {declared}: {reason}"
                        ));
                        self.attributes_mut(source).remove(&key);
                    }
                }
            }
        }
        Ok(())
    }
}

/// The fields every decision request carries (CheckRequest's shape).
#[derive(Debug, Clone, Copy)]
pub struct Parts<'a> {
    pub principal: Option<&'a common::Principal>,
    pub audience: &'a str,
    pub action: &'a str,
    pub resource: Option<&'a common::Resource>,
    pub context: Option<&'a pb::RequestContext>,
}

fn required(field: &str, value: &str, max: usize) -> Result<(), RequestError> {
    if value.is_empty() {
        return Err(RequestError::invalid(field, "is required"));
    }
    at_most(field, value, max)
}

fn at_most(field: &str, value: &str, max: usize) -> Result<(), RequestError> {
    // Byte length first: it bounds the char count from above.
    if value.len() > max && value.chars().count() > max {
        return Err(RequestError::invalid(
            field,
            format!("must be at most {max} chars"),
        ));
    }
    Ok(())
}

/// `[a-z0-9][a-z0-9_-]{0,63}` (common.proto).
pub fn is_tenant(value: &str) -> bool {
    let bytes = value.as_bytes();
    (1..=MAX_TENANT).contains(&bytes.len())
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-')
}

fn tenant(field: &str, value: &str) -> Result<(), RequestError> {
    if value.is_empty() {
        return Err(RequestError::invalid(field, "is required"));
    }
    if !is_tenant(value) {
        return Err(RequestError::invalid(
            field,
            "must match [a-z0-9][a-z0-9_-]{0,63}",
        ));
    }
    Ok(())
}

/// `agt_` and ASCII letters or digits (identity-svc makes `agt_` + ULID).
pub fn is_agent_id(value: &str) -> bool {
    value.len() <= MAX_AGENT_ID
        && value
            .strip_prefix("agt_")
            .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

fn agent_id(field: &str, value: &str) -> Result<(), RequestError> {
    if value.is_empty() {
        return Err(RequestError::invalid(field, "is required"));
    }
    if !is_agent_id(value) {
        return Err(RequestError::invalid(
            field,
            "must be an agent id (`agt_` + ULID)",
        ));
    }
    Ok(())
}

/// `[a-z][a-z0-9_.-]*`, 1-64 chars (common.proto Resource.type).
fn resource_type(field: &str, value: &str) -> Result<(), RequestError> {
    let bytes = value.as_bytes();
    let valid = (1..=MAX_RESOURCE_TYPE).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && bytes.iter().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
        });
    if value.is_empty() {
        return Err(RequestError::invalid(field, "is required"));
    }
    if !valid {
        return Err(RequestError::invalid(
            field,
            "must match [a-z][a-z0-9_.-]* (1-64 chars)",
        ));
    }
    Ok(())
}

/// A person deciding without an agent: nothing of an agent may be given.
fn without_agent(field: &str, principal: &common::Principal) -> Result<(), RequestError> {
    if !principal.agent_attributes.is_empty() {
        return Err(RequestError::invalid(
            format!("{field}.agent_attributes"),
            "must be empty when principal.agent_id is empty (a person deciding without an agent)",
        ));
    }
    if principal
        .actor_chain
        .as_ref()
        .is_some_and(|chain| !chain.actors.is_empty())
    {
        return Err(RequestError::invalid(
            format!("{field}.actor_chain"),
            "must be empty when principal.agent_id is empty (a person deciding without an agent)",
        ));
    }
    Ok(())
}

fn actor_chain(field: &str, principal: &common::Principal) -> Result<Vec<String>, RequestError> {
    let actors = principal
        .actor_chain
        .as_ref()
        .map(|chain| chain.actors.as_slice())
        .unwrap_or_default();
    if actors.is_empty() {
        return Ok(vec![principal.agent_id.clone()]);
    }
    if actors.len() > MAX_ACTORS {
        return Err(RequestError::invalid(
            format!("{field}.actors"),
            format!("at most {MAX_ACTORS} actors"),
        ));
    }
    let mut chain = Vec::with_capacity(actors.len());
    for (i, actor) in actors.iter().enumerate() {
        agent_id(&format!("{field}.actors[{i}].agent_id"), &actor.agent_id)?;
        at_most(
            &format!("{field}.actors[{i}].issuer"),
            &actor.issuer,
            MAX_ISSUER,
        )?;
        chain.push(actor.agent_id.clone());
    }
    if chain[0] != principal.agent_id {
        return Err(RequestError::invalid(
            format!("{field}.actors[0].agent_id"),
            "must equal principal.agent_id (the acting agent comes first)",
        ));
    }
    Ok(chain)
}

fn attributes(
    field: &str,
    map: &HashMap<String, common::AttributeValue>,
) -> Result<HashMap<String, AttrValue>, RequestError> {
    if map.len() > MAX_ATTRIBUTES {
        return Err(RequestError::invalid(
            field,
            format!("at most {MAX_ATTRIBUTES} entries"),
        ));
    }
    // Sorted, so that the error for a map with several bad entries is stable.
    let mut entries: Vec<(&String, &common::AttributeValue)> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = HashMap::with_capacity(map.len());
    for (key, value) in entries {
        if !is_attribute_key(key) {
            return Err(RequestError::invalid(
                format!("{field}[\"{}\"]", printable(key)),
                ATTRIBUTE_KEY_RULE,
            ));
        }
        let converted = AttrValue::from_proto(&format!("{field}[\"{key}\"]"), value)?;
        out.insert(key.clone(), converted);
    }
    Ok(out)
}

fn time(field: &str, timestamp: &prost_types::Timestamp) -> Result<DateTime<Utc>, RequestError> {
    let nanos = u32::try_from(timestamp.nanos)
        .ok()
        .filter(|nanos| *nanos < 1_000_000_000);
    nanos
        .and_then(|nanos| DateTime::from_timestamp(timestamp.seconds, nanos))
        .ok_or_else(|| RequestError::invalid(field, "is not a valid timestamp"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use agentsec_proto::common::v1::attribute_value::Kind;

    pub fn value(kind: Kind) -> common::AttributeValue {
        common::AttributeValue { kind: Some(kind) }
    }

    pub fn string(text: &str) -> common::AttributeValue {
        value(Kind::StringValue(text.to_owned()))
    }

    pub fn int(number: i64) -> common::AttributeValue {
        value(Kind::IntValue(number))
    }

    pub fn list(values: &[&str]) -> common::AttributeValue {
        value(Kind::StringListValue(common::StringList {
            values: values.iter().map(|v| (*v).to_owned()).collect(),
        }))
    }

    fn map(entries: &[(&str, common::AttributeValue)]) -> HashMap<String, common::AttributeValue> {
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    /// 2025-01-01T14:30:00Z, a Wednesday.
    pub fn noon_ish() -> DateTime<Utc> {
        DateTime::from_timestamp(1_735_741_800, 0).unwrap()
    }

    /// A complete CheckRequest: agent `agt_a` acting for `alice` through
    /// `agt_b`, calling the MCP tool `mcp:github/create_issue`.
    pub fn check_request() -> pb::CheckRequest {
        pb::CheckRequest {
            principal: Some(common::Principal {
                tenant: "acme".into(),
                agent_id: "agt_a".into(),
                agent_attributes: map(&[
                    ("trust_tier", int(1)),
                    ("project", string("apollo")),
                    ("score", value(Kind::DoubleValue(0.75))),
                    ("enabled", value(Kind::BoolValue(true))),
                ]),
                person_subject: "alice".into(),
                person_attributes: map(&[
                    ("department", string("eng")),
                    ("groups", list(&["admins", "devs"])),
                ]),
                actor_chain: Some(common::ActorChain {
                    actors: vec![
                        common::Actor {
                            agent_id: "agt_a".into(),
                            issuer: String::new(),
                        },
                        common::Actor {
                            agent_id: "agt_b".into(),
                            issuer: String::new(),
                        },
                    ],
                }),
            }),
            audience: "github-mcp".into(),
            action: "tools/call".into(),
            resource: Some(common::Resource {
                r#type: "mcp.tool".into(),
                id: "mcp:github/create_issue".into(),
                attributes: map(&[("classification", string("internal"))]),
            }),
            context: Some(pb::RequestContext {
                time: Some(prost_types::Timestamp {
                    seconds: 1_735_741_800,
                    nanos: 0,
                }),
                environment: "prod".into(),
                delegation_depth: 0,
                risk_score: Some(20),
                attributes: map(&[("source_ip", string("10.0.0.1"))]),
            }),
        }
    }

    pub fn request() -> DecisionRequest {
        DecisionRequest::from_check(&check_request(), "", noon_ish()).unwrap()
    }

    fn invalid(edit: impl FnOnce(&mut pb::CheckRequest)) -> RequestError {
        let mut proto = check_request();
        edit(&mut proto);
        DecisionRequest::from_check(&proto, "items[2].", noon_ish()).unwrap_err()
    }

    fn principal(proto: &mut pb::CheckRequest) -> &mut common::Principal {
        proto.principal.as_mut().unwrap()
    }

    #[test]
    fn a_valid_request_is_typed_and_defaults_are_derived() {
        let request = request();
        assert_eq!(request.delegation_depth, 2, "derived from the actor chain");
        assert_eq!(request.actor_chain, vec!["agt_a", "agt_b"]);
        assert_eq!(request.person_subject.as_deref(), Some("alice"));
        assert_eq!(request.agent_attributes["trust_tier"], AttrValue::Int(1));
        assert_eq!(request.time, noon_ish());

        let mut proto = check_request();
        proto.context = None;
        principal(&mut proto).actor_chain = None;
        let later = noon_ish() + chrono::Duration::hours(1);
        let request = DecisionRequest::from_check(&proto, "", later).unwrap();
        assert_eq!(request.time, later, "unset time is the server's");
        assert_eq!(request.delegation_depth, 1);
        assert_eq!(request.actor_chain, vec!["agt_a"]);
        assert_eq!(request.risk_score, None);
    }

    #[test]
    fn a_person_may_decide_without_an_agent_or_an_audience() {
        let mut proto = check_request();
        proto.audience.clear();
        let principal = principal(&mut proto);
        principal.agent_id.clear();
        principal.agent_attributes.clear();
        principal.actor_chain = None;
        let request = DecisionRequest::from_check(&proto, "", noon_ish()).unwrap();
        assert_eq!(request.agent_id, None);
        assert!(request.actor_chain.is_empty());
        assert_eq!(request.delegation_depth, 0, "nothing is delegated");
        assert_eq!(request.person_subject.as_deref(), Some("alice"));
        assert_eq!(request.audience, "");
    }

    #[test]
    fn bad_input_names_the_field() {
        let cases: Vec<(RequestError, &str)> = vec![
            (invalid(|p| p.principal = None), "items[2].principal"),
            (
                invalid(|p| principal(p).tenant = "Acme".into()),
                "items[2].principal.tenant",
            ),
            (
                invalid(|p| principal(p).tenant.clear()),
                "items[2].principal.tenant",
            ),
            (
                invalid(|p| principal(p).agent_id = "bob".into()),
                "items[2].principal.agent_id",
            ),
            (invalid(|p| p.action.clear()), "items[2].action"),
            (invalid(|p| p.action = "a".repeat(129)), "items[2].action"),
            (
                invalid(|p| {
                    principal(p).agent_id.clear();
                    principal(p).person_subject.clear();
                    principal(p).person_attributes.clear();
                }),
                "items[2].principal.agent_id",
            ),
            (
                invalid(|p| principal(p).agent_id.clear()),
                "items[2].principal.agent_attributes",
            ),
            (
                invalid(|p| {
                    principal(p).agent_id.clear();
                    principal(p).agent_attributes.clear();
                }),
                "items[2].principal.actor_chain",
            ),
            (
                invalid(|p| p.audience = "a".repeat(257)),
                "items[2].audience",
            ),
            (invalid(|p| p.resource = None), "items[2].resource"),
            (
                invalid(|p| p.resource.as_mut().unwrap().id = "r".repeat(513)),
                "items[2].resource.id",
            ),
            (
                invalid(|p| p.resource.as_mut().unwrap().r#type = "Tool".into()),
                "items[2].resource.type",
            ),
            (
                invalid(|p| {
                    principal(p)
                        .agent_attributes
                        .insert("bad\u{7}key".into(), int(1));
                }),
                "items[2].principal.agent_attributes[\"badkey\"]",
            ),
            (
                invalid(|p| {
                    principal(p)
                        .agent_attributes
                        .insert("empty".into(), common::AttributeValue { kind: None });
                }),
                "items[2].principal.agent_attributes[\"empty\"]",
            ),
            (
                invalid(|p| {
                    let attributes = &mut p.resource.as_mut().unwrap().attributes;
                    for i in 0..=MAX_ATTRIBUTES {
                        attributes.insert(format!("k{i}"), int(1));
                    }
                }),
                "items[2].resource.attributes",
            ),
            (
                invalid(|p| {
                    principal(p).person_subject.clear();
                }),
                "items[2].principal.person_attributes",
            ),
            (
                invalid(|p| principal(p).actor_chain.as_mut().unwrap().actors.swap(0, 1)),
                "items[2].principal.actor_chain.actors[0].agent_id",
            ),
            (
                invalid(|p| {
                    let actors = &mut principal(p).actor_chain.as_mut().unwrap().actors;
                    let first = actors[0].clone();
                    actors.resize(MAX_ACTORS + 1, first);
                }),
                "items[2].principal.actor_chain.actors",
            ),
            (
                invalid(|p| p.context.as_mut().unwrap().delegation_depth = 17),
                "items[2].context.delegation_depth",
            ),
            (
                invalid(|p| p.context.as_mut().unwrap().risk_score = Some(101)),
                "items[2].context.risk_score",
            ),
            (
                invalid(|p| p.context.as_mut().unwrap().environment = "e".repeat(65)),
                "items[2].context.environment",
            ),
            (
                invalid(|p| p.context.as_mut().unwrap().time.as_mut().unwrap().nanos = -1),
                "items[2].context.time",
            ),
        ];
        for (err, field) in cases {
            assert_eq!(err.field(), field, "{err}");
        }
    }

    #[test]
    fn declared_types_are_enforced_for_callers_and_converted_for_the_registry() {
        let mut declarations = Declarations::default();
        declarations.insert(Source::Agent, "trust_tier", AttrType::Int);
        declarations.insert(Source::Agent, "project", AttrType::String);
        declarations.insert(Source::Resource, "classification", AttrType::Bool);

        let mut request = request();
        let err = request
            .apply_declarations(&declarations, AgentAttributeOrigin::Caller, "")
            .unwrap_err();
        assert_eq!(err.field(), "resource.attributes[\"classification\"]");
        assert!(
            err.to_string()
                .contains("is declared as bool but is string"),
            "{err}"
        );

        declarations.insert(Source::Resource, "classification", AttrType::String);
        let mut registry = request.clone();
        registry
            .agent_attributes
            .insert("trust_tier".into(), AttrValue::String("3".into()));
        registry
            .apply_declarations(&declarations, AgentAttributeOrigin::Registry, "")
            .unwrap();
        assert_eq!(registry.agent_attributes["trust_tier"], AttrValue::Int(3));
        assert!(registry.conversion_errors.is_empty());

        registry
            .agent_attributes
            .insert("trust_tier".into(), AttrValue::String("high".into()));
        registry
            .apply_declarations(&declarations, AgentAttributeOrigin::Registry, "")
            .unwrap();
        assert_eq!(
            registry.conversion_errors,
            vec!["agent attribute `trust_tier` does not convert to its declared type int: `high` is not an int"]
        );

        request
            .agent_attributes
            .insert("trust_tier".into(), AttrValue::String("3".into()));
        let err = request
            .apply_declarations(&declarations, AgentAttributeOrigin::Caller, "")
            .unwrap_err();
        assert_eq!(err.field(), "principal.agent_attributes[\"trust_tier\"]");
    }
}
