//! AuthZEN 1.0 requests as CheckRequests (docs/authzen.md, "Mapping").
//!
//! A request missing a member the spec requires, or malformed, is a
//! [`BadRequest`]. A well-formed request naming what policy-svc does not
//! know (a tenant id or agent id that cannot exist) maps to
//! [`Mapped::Unknown`]: a DENY with the reason, not an error.

use std::collections::HashMap;

use agentsec_proto::common::v1::{
    attribute_value::Kind, Actor, ActorChain, AttributeValue, Principal, Resource, StringList,
};
use agentsec_proto::policy::v1::{CheckRequest, RequestContext};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::domain::engine::error::printable;
use crate::domain::engine::request::{is_agent_id, is_tenant};

/// Subject properties with a meaning of their own; for an agent subject,
/// the others are agent attributes, for a person subject person attributes.
const TENANT: &str = "tenant";
const PERSON: &str = "person";
const PERSON_PROPERTIES: &str = "person_properties";
const ACTOR_CHAIN: &str = "actor_chain";
/// The subject type that is the acting agent; every other type is a person.
pub const AGENT_TYPE: &str = "agent";
/// Context members with a field of their own in CheckRequest.
const CONTEXT_FIELDS: [&str; 7] = [
    "audience",
    "time",
    "environment",
    "risk_score",
    "delegation_depth",
    "agent",
    "actor_chain",
];

/// A request the PDP cannot evaluate: 400 with what is wrong.
#[derive(Debug)]
pub struct BadRequest(pub String);

impl BadRequest {
    pub fn field(field: &str, reason: impl std::fmt::Display) -> Self {
        Self(format!("{field}: {reason}"))
    }
}

/// One evaluation's members; each is optional here because a batch entry
/// may take it from the request's top level.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evaluation {
    #[serde(default)]
    pub subject: Option<Entity>,
    #[serde(default)]
    pub resource: Option<Entity>,
    #[serde(default)]
    pub action: Option<Action>,
    #[serde(default)]
    pub context: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entity {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    #[serde(default)]
    pub properties: Map<String, Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    pub name: String,
    #[serde(default)]
    pub properties: Map<String, Value>,
}

/// An evaluation ready to decide.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    Decide(CheckRequest),
    /// Names a tenant or agent that cannot exist: a DENY with this reason.
    Unknown(CheckRequest, String),
}

/// What the mapping needs besides the request.
#[derive(Debug, Clone, Default)]
pub struct MappingRules {
    /// `authzen.default_tenant`: the tenant of a subject without one.
    pub default_tenant: Option<String>,
}

impl MappingRules {
    /// One evaluation as a CheckRequest; `defaults` fill what it leaves out.
    pub fn map(
        &self,
        evaluation: &Evaluation,
        defaults: &Evaluation,
    ) -> Result<Mapped, BadRequest> {
        let subject = evaluation
            .subject
            .as_ref()
            .or(defaults.subject.as_ref())
            .ok_or_else(|| BadRequest::field("subject", "is required"))?;
        let resource = evaluation
            .resource
            .as_ref()
            .or(defaults.resource.as_ref())
            .ok_or_else(|| BadRequest::field("resource", "is required"))?;
        let action = evaluation
            .action
            .as_ref()
            .or(defaults.action.as_ref())
            .ok_or_else(|| BadRequest::field("action", "is required"))?;
        let empty = Map::new();
        let context_map = evaluation
            .context
            .as_ref()
            .or(defaults.context.as_ref())
            .unwrap_or(&empty);
        self.check_request(subject, action, resource, context_map)
    }

    /// The CheckRequest of a complete evaluation.
    pub fn check_request(
        &self,
        subject: &Entity,
        action: &Action,
        resource: &Entity,
        context_map: &Map<String, Value>,
    ) -> Result<Mapped, BadRequest> {
        required("subject.type", &subject.kind)?;
        required("subject.id", &subject.id)?;
        required("action.name", &action.name)?;
        required("resource.type", &resource.kind)?;
        required("resource.id", &resource.id)?;
        let principal = if subject.kind == AGENT_TYPE {
            if context_map.contains_key("agent") || context_map.contains_key(ACTOR_CHAIN) {
                return Err(BadRequest::field(
                    "context.agent",
                    "names the acting agent of a person subject; with an `agent` subject, \
                     the chain goes in subject.properties.actor_chain",
                ));
            }
            self.agent_principal(subject)?
        } else {
            self.person_principal(subject, context_map)?
        };
        let (audience, request_context) = context(context_map, action)?;
        let request = CheckRequest {
            audience,
            action: action.name.clone(),
            resource: Some(Resource {
                r#type: resource.kind.clone(),
                id: resource.id.clone(),
                attributes: attributes("resource.properties", resource.properties.iter())?,
            }),
            context: Some(request_context),
            principal: Some(principal),
        };
        Ok(match unknown(&request) {
            Some(reason) => Mapped::Unknown(request, reason),
            None => Mapped::Decide(request),
        })
    }

    fn tenant(&self, subject: &Entity) -> Result<String, BadRequest> {
        match subject.properties.get(TENANT) {
            Some(value) => Ok(string("subject.properties.tenant", value)?.to_owned()),
            None => self.default_tenant.clone().ok_or_else(|| {
                BadRequest::field(
                    "subject.properties.tenant",
                    "is required: this PDP has no default tenant (authzen.default_tenant)",
                )
            }),
        }
    }

    /// `subject.type` `agent`: the subject is the acting agent; the person
    /// it acts for, if any, is in its properties.
    fn agent_principal(&self, subject: &Entity) -> Result<Principal, BadRequest> {
        let properties = &subject.properties;
        let person_subject = match properties.get(PERSON) {
            Some(value) => string("subject.properties.person", value)?.to_owned(),
            None => String::new(),
        };
        let person_attributes = match properties.get(PERSON_PROPERTIES) {
            None => HashMap::new(),
            Some(Value::Object(map)) => {
                attributes("subject.properties.person_properties", map.iter())?
            }
            Some(_) => {
                return Err(BadRequest::field(
                    "subject.properties.person_properties",
                    "must be an object",
                ))
            }
        };
        let actor_chain = actor_chain(
            "subject.properties.actor_chain",
            properties.get(ACTOR_CHAIN),
            &subject.id,
        )?;
        let agent_attributes = attributes(
            "subject.properties",
            properties.iter().filter(|(key, _)| {
                ![TENANT, PERSON, PERSON_PROPERTIES, ACTOR_CHAIN].contains(&key.as_str())
            }),
        )?;
        Ok(Principal {
            tenant: self.tenant(subject)?,
            agent_id: subject.id.clone(),
            agent_attributes,
            person_subject,
            person_attributes,
            actor_chain,
        })
    }

    /// Any other `subject.type` (`user`, `identity`, ...): the subject is
    /// the person; `context.agent` names the agent acting for them, if any
    /// (the COAZ-MCP binding), `context.actor_chain` the chain behind it.
    fn person_principal(
        &self,
        subject: &Entity,
        context: &Map<String, Value>,
    ) -> Result<Principal, BadRequest> {
        let agent_id = match context.get("agent") {
            None => String::new(),
            Some(value) => {
                let agent = string("context.agent", value)?;
                required("context.agent", agent)?;
                agent.to_owned()
            }
        };
        let actor_chain = match context.get(ACTOR_CHAIN) {
            Some(_) if agent_id.is_empty() => {
                return Err(BadRequest::field(
                    "context.actor_chain",
                    "needs context.agent (the acting agent, first in the chain)",
                ))
            }
            chain => actor_chain("context.actor_chain", chain, &agent_id)?,
        };
        Ok(Principal {
            tenant: self.tenant(subject)?,
            agent_id,
            agent_attributes: HashMap::new(),
            person_subject: subject.id.clone(),
            person_attributes: attributes(
                "subject.properties",
                subject
                    .properties
                    .iter()
                    .filter(|(key, _)| key.as_str() != TENANT),
            )?,
            actor_chain,
        })
    }
}

/// Why a well-formed request names what cannot exist, if it does.
fn unknown(request: &CheckRequest) -> Option<String> {
    let principal = request.principal.as_ref()?;
    if !is_tenant(&principal.tenant) {
        return Some(format!(
            "no tenant is named `{}`",
            printable(&principal.tenant)
        ));
    }
    let agents = std::iter::once(principal.agent_id.as_str()).chain(
        principal
            .actor_chain
            .iter()
            .flat_map(|chain| chain.actors.iter().map(|actor| actor.agent_id.as_str())),
    );
    for agent in agents {
        if !agent.is_empty() && !is_agent_id(agent) {
            return Some(format!("no agent has the id `{}`", printable(agent)));
        }
    }
    None
}

fn required(field: &str, value: &str) -> Result<(), BadRequest> {
    if value.is_empty() {
        return Err(BadRequest::field(field, "is required"));
    }
    Ok(())
}

/// A list of agent ids, the acting agent first.
fn actor_chain(
    field: &str,
    value: Option<&Value>,
    acting: &str,
) -> Result<Option<ActorChain>, BadRequest> {
    let ids = match value {
        None => return Ok(None),
        Some(Value::Array(ids)) => ids,
        Some(_) => {
            return Err(BadRequest::field(
                field,
                "must be a list of agent ids, the acting agent first",
            ))
        }
    };
    let actors = ids
        .iter()
        .map(|id| {
            Ok(Actor {
                agent_id: string(&format!("{field}[]"), id)?.to_owned(),
                issuer: String::new(),
            })
        })
        .collect::<Result<Vec<_>, BadRequest>>()?;
    if actors.first().is_some_and(|first| first.agent_id != acting) {
        return Err(BadRequest::field(field, "must begin with the acting agent"));
    }
    Ok(Some(ActorChain { actors }))
}

/// `value` as an AttributeValue: strings, integers, numbers, booleans and
/// lists of strings.
fn attribute(field: &str, value: &Value) -> Result<AttributeValue, BadRequest> {
    let kind = match value {
        Value::String(text) => Kind::StringValue(text.clone()),
        Value::Bool(flag) => Kind::BoolValue(*flag),
        Value::Number(number) => match number.as_i64() {
            Some(int) => Kind::IntValue(int),
            None => Kind::DoubleValue(
                number
                    .as_f64()
                    .ok_or_else(|| BadRequest::field(field, "is not a representable number"))?,
            ),
        },
        Value::Array(items) => Kind::StringListValue(StringList {
            values: items
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| BadRequest::field(field, "lists may only hold strings"))?,
        }),
        Value::Null | Value::Object(_) => {
            return Err(BadRequest::field(
                field,
                "must be a string, number, boolean or list of strings",
            ))
        }
    };
    Ok(AttributeValue { kind: Some(kind) })
}

fn attributes<'a>(
    field: &str,
    properties: impl Iterator<Item = (&'a String, &'a Value)>,
) -> Result<HashMap<String, AttributeValue>, BadRequest> {
    properties
        .map(|(key, value)| Ok((key.clone(), attribute(&format!("{field}.{key}"), value)?)))
        .collect()
}

fn string<'a>(field: &str, value: &'a Value) -> Result<&'a str, BadRequest> {
    value
        .as_str()
        .ok_or_else(|| BadRequest::field(field, "must be a string"))
}

/// context: `audience` (the target system; optional), `time` (RFC 3339),
/// `environment`, `risk_score`, `delegation_depth`, and for a person
/// subject `agent` and `actor_chain`; everything else (and the action's
/// properties) are request attributes.
fn context(
    context: &Map<String, Value>,
    action: &Action,
) -> Result<(String, RequestContext), BadRequest> {
    let audience = match context.get("audience") {
        Some(value) => string("context.audience", value)?.to_owned(),
        None => String::new(),
    };
    let mut request = RequestContext::default();
    if let Some(time) = context.get("time") {
        let parsed = chrono::DateTime::parse_from_rfc3339(string("context.time", time)?)
            .map_err(|err| BadRequest::field("context.time", err))?;
        request.time = Some(prost_types::Timestamp {
            seconds: parsed.timestamp(),
            nanos: parsed.timestamp_subsec_nanos() as i32,
        });
    }
    if let Some(environment) = context.get("environment") {
        request.environment = string("context.environment", environment)?.to_owned();
    }
    let small = |field: &str, value: &Value| {
        value
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| BadRequest::field(field, "must be a non-negative integer"))
    };
    if let Some(risk) = context.get("risk_score") {
        request.risk_score = Some(small("context.risk_score", risk)?);
    }
    if let Some(depth) = context.get("delegation_depth") {
        request.delegation_depth = small("context.delegation_depth", depth)?;
    }
    request.attributes = attributes(
        "context",
        context
            .iter()
            .filter(|(key, _)| !CONTEXT_FIELDS.contains(&key.as_str()))
            .chain(action.properties.iter()),
    )?;
    Ok((audience, request))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn evaluation(body: Value) -> Evaluation {
        serde_json::from_value(body).unwrap()
    }

    fn mapped(body: Value) -> Result<CheckRequest, String> {
        match MappingRules::default().map(&evaluation(body), &Evaluation::default()) {
            Ok(Mapped::Decide(request)) => Ok(request),
            Ok(Mapped::Unknown(_, reason)) => Err(format!("unknown: {reason}")),
            Err(err) => Err(err.0),
        }
    }

    fn full() -> Value {
        json!({
            "subject": {"type": "agent", "id": "agt_1", "properties": {
                "tenant": "acme",
                "person": "alice@example.com",
                "person_properties": {"department": "sre"},
                "actor_chain": ["agt_1", "agt_0"],
                "trust_tier": 2,
            }},
            "action": {"name": "tools/call", "properties": {"dry_run": true}},
            "resource": {"type": "mcp.tool", "id": "mcp:github/list_issues",
                         "properties": {"labels": ["bug", "p1"], "weight": 0.5}},
            "context": {"audience": "mcp:github", "time": "2026-12-06T10:00:00Z",
                        "environment": "prod", "risk_score": 7, "delegation_depth": 1,
                        "ticket": "INC-1"},
        })
    }

    /// The agent ids of the principal's actor chain, in order.
    fn chain(principal: &Principal) -> Vec<&str> {
        principal
            .actor_chain
            .iter()
            .flat_map(|chain| chain.actors.iter().map(|actor| actor.agent_id.as_str()))
            .collect()
    }

    fn value(kind: Kind) -> AttributeValue {
        AttributeValue { kind: Some(kind) }
    }

    #[test]
    fn every_member_lands_in_its_check_request_field() {
        let request = mapped(full()).unwrap();
        let principal = request.principal.unwrap();
        assert_eq!(principal.tenant, "acme");
        assert_eq!(principal.agent_id, "agt_1");
        assert_eq!(principal.person_subject, "alice@example.com");
        assert_eq!(
            principal.person_attributes["department"],
            value(Kind::StringValue("sre".into()))
        );
        assert_eq!(chain(&principal), ["agt_1", "agt_0"]);
        // The other subject properties are the agent's attributes.
        assert_eq!(principal.agent_attributes.len(), 1);
        assert_eq!(
            principal.agent_attributes["trust_tier"],
            value(Kind::IntValue(2))
        );
        assert_eq!(request.audience, "mcp:github");
        assert_eq!(request.action, "tools/call");
        let resource = request.resource.unwrap();
        assert_eq!(
            (resource.r#type.as_str(), resource.id.as_str()),
            ("mcp.tool", "mcp:github/list_issues")
        );
        assert_eq!(
            resource.attributes["labels"],
            value(Kind::StringListValue(StringList {
                values: vec!["bug".into(), "p1".into()]
            }))
        );
        assert_eq!(resource.attributes["weight"], value(Kind::DoubleValue(0.5)));
        let context = request.context.unwrap();
        assert_eq!(context.time.unwrap().seconds, 1_796_551_200);
        assert_eq!(context.environment, "prod");
        assert_eq!(context.risk_score, Some(7));
        assert_eq!(context.delegation_depth, 1);
        // Other context members and the action's properties are request
        // attributes.
        assert_eq!(
            context.attributes["ticket"],
            value(Kind::StringValue("INC-1".into()))
        );
        assert_eq!(context.attributes["dry_run"], value(Kind::BoolValue(true)));
        assert_eq!(context.attributes.len(), 2);
    }

    #[test]
    fn a_batch_item_takes_what_it_leaves_out_from_the_request() {
        let defaults = evaluation(full());
        let item =
            evaluation(json!({"resource": {"type": "mcp.tool", "id": "mcp:github/delete_repo"}}));
        let Ok(Mapped::Decide(request)) = MappingRules::default().map(&item, &defaults) else {
            panic!("the batch item maps");
        };
        assert_eq!(request.resource.unwrap().id, "mcp:github/delete_repo");
        assert_eq!(request.principal.unwrap().agent_id, "agt_1");
        assert_eq!(request.action, "tools/call");
        assert_eq!(request.audience, "mcp:github");
    }

    #[test]
    fn what_cannot_be_evaluated_is_named() {
        let with = |path: &[&str], replacement: Value| {
            let mut body = full();
            let mut at = &mut body;
            for key in &path[..path.len() - 1] {
                at = &mut at[*key];
            }
            match replacement {
                Value::Null => {
                    at.as_object_mut().unwrap().remove(path[path.len() - 1]);
                }
                other => at[path[path.len() - 1]] = other,
            }
            mapped(body).unwrap_err()
        };
        let cases = [
            (with(&["subject"], Value::Null), "subject"),
            (with(&["subject", "type"], json!("")), "subject.type"),
            (with(&["subject", "id"], json!("")), "subject.id"),
            (with(&["action", "name"], json!("")), "action.name"),
            (with(&["resource", "type"], json!("")), "resource.type"),
            (with(&["resource", "id"], json!("")), "resource.id"),
            (with(&["context", "agent"], json!("agt_2")), "context.agent"),
            (
                with(&["subject", "properties", "tenant"], Value::Null),
                "subject.properties.tenant",
            ),
            (
                with(&["subject", "properties", "actor_chain"], json!("agt_1")),
                "subject.properties.actor_chain",
            ),
            (with(&["context", "audience"], json!(7)), "context.audience"),
            (
                with(
                    &["subject", "properties", "actor_chain"],
                    json!(["agt_0", "agt_1"]),
                ),
                "subject.properties.actor_chain",
            ),
            (
                with(&["context", "time"], json!("yesterday")),
                "context.time",
            ),
            (
                with(&["context", "risk_score"], json!(-1)),
                "context.risk_score",
            ),
            (
                with(&["resource", "properties", "labels"], json!([1, 2])),
                "resource.properties.labels",
            ),
            (
                with(&["resource", "properties", "weight"], json!({"a": 1})),
                "resource.properties.weight",
            ),
        ];
        for (message, field) in cases {
            assert!(message.starts_with(field), "{field}: {message}");
        }
    }

    fn with_default_tenant(body: Value) -> Result<Mapped, String> {
        let rules = MappingRules {
            default_tenant: Some("default".into()),
        };
        rules
            .map(&evaluation(body), &Evaluation::default())
            .map_err(|err| err.0)
    }

    #[test]
    fn a_spec_minimal_request_takes_the_default_tenant_and_no_audience() {
        let minimal = json!({
            "subject": {"type": "user", "id": "alice@example.com"},
            "action": {"name": "can_read"},
            "resource": {"type": "todo", "id": "1"},
        });
        let Ok(Mapped::Decide(request)) = with_default_tenant(minimal.clone()) else {
            panic!("a spec-minimal request maps");
        };
        let principal = request.principal.unwrap();
        assert_eq!(principal.tenant, "default");
        assert_eq!(principal.person_subject, "alice@example.com");
        assert_eq!(principal.agent_id, "", "no agent acts");
        assert_eq!(principal.actor_chain, None);
        assert_eq!(request.audience, "");
        // Without a configured default the tenant is a required member.
        let err = mapped(minimal).unwrap_err();
        assert!(err.starts_with("subject.properties.tenant"), "{err}");
    }

    #[test]
    fn a_person_subject_with_the_agent_in_context_is_the_agent_acting_for_them() {
        let coaz = json!({
            "subject": {"type": "identity", "id": "alice", "properties": {"department": "sre"}},
            "action": {"name": "tools/call"},
            "resource": {"type": "tool", "id": "list_issues"},
            "context": {"agent": "agt_1", "actor_chain": ["agt_1", "agt_0"], "ticket": "INC-1"},
        });
        let Ok(Mapped::Decide(request)) = with_default_tenant(coaz) else {
            panic!("a COAZ-MCP request maps");
        };
        let principal = request.principal.unwrap();
        assert_eq!(principal.agent_id, "agt_1");
        assert_eq!(principal.person_subject, "alice");
        assert_eq!(
            principal.person_attributes["department"],
            value(Kind::StringValue("sre".into()))
        );
        assert!(principal.agent_attributes.is_empty());
        assert_eq!(chain(&principal), ["agt_1", "agt_0"]);
        let context = request.context.unwrap();
        assert_eq!(
            context.attributes.len(),
            1,
            "agent and chain are not attributes"
        );
        assert!(context.attributes.contains_key("ticket"));
    }

    #[test]
    fn a_chain_without_its_agent_or_not_beginning_with_it_is_refused() {
        let body = |context: Value| {
            json!({
                "subject": {"type": "user", "id": "alice"},
                "action": {"name": "read"},
                "resource": {"type": "doc", "id": "1"},
                "context": context,
            })
        };
        for context in [
            json!({"actor_chain": ["agt_1"]}),
            json!({"agent": "agt_1", "actor_chain": ["agt_0", "agt_1"]}),
            json!({"agent": ""}),
            json!({"agent": 7}),
        ] {
            let err = with_default_tenant(body(context.clone())).unwrap_err();
            assert!(err.starts_with("context."), "{context}: {err}");
        }
    }

    #[test]
    fn ids_nobody_can_have_are_a_deny_not_an_error() {
        let cases = [
            json!({"type": "agent", "id": "bob-the-bot"}),
            json!({"type": "agent", "id": "agt_1", "properties": {"tenant": "Acme Corp"}}),
            json!({"type": "agent", "id": "agt_1", "properties": {"actor_chain": ["agt_1", "x"]}}),
        ];
        for subject in cases {
            let body = json!({
                "subject": subject,
                "action": {"name": "read"},
                "resource": {"type": "doc", "id": "1"},
            });
            match with_default_tenant(body) {
                Ok(Mapped::Unknown(_, reason)) => {
                    assert!(reason.starts_with("no "), "{subject}: {reason}")
                }
                other => panic!("{subject}: {other:?}"),
            }
        }
    }
}
