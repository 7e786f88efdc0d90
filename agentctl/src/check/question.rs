//! The question a decision answers (who, which audience, which action, on
//! what, in which context), from flags or from a JSON file, as the proto
//! messages policy-svc takes.

use std::collections::HashMap;
use std::path::PathBuf;

use agentsec_proto::common::v1::attribute_value::Kind;
use agentsec_proto::common::v1::{
    Actor, ActorChain, AttributeValue, Principal, Resource, StringList,
};
use agentsec_proto::policy::v1::RequestContext;
use anyhow::Context as _;
use serde::Deserialize;
use serde_json::Value;

/// The flags of a decision question (or `--file`).
#[derive(Debug, Default, clap::Args)]
pub struct QuestionArgs {
    /// A JSON file holding the whole question (see `agentctl check --help`);
    /// instead of the flags below.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// The tenant of the agent and the decision.
    #[arg(long)]
    pub tenant: Option<String>,
    /// The acting agent (`agt_...`).
    #[arg(long)]
    pub agent: Option<String>,
    /// The person the agent acts for (`sub`).
    #[arg(long)]
    pub person: Option<String>,
    /// The agents that delegated to --agent, nearest first (repeatable).
    #[arg(long = "delegated-by")]
    pub delegated_by: Vec<String>,
    /// The target system.
    #[arg(long)]
    pub audience: Option<String>,
    /// The action, e.g. `tools/call`, `read`, `token:exchange`.
    #[arg(long)]
    pub action: Option<String>,
    /// The resource type, e.g. `mcp.tool`.
    #[arg(long)]
    pub resource_type: Option<String>,
    /// The resource id, e.g. `mcp:github/list_issues`.
    #[arg(long)]
    pub resource: Option<String>,
    /// An agent attribute `key=value` (repeatable; see VALUES below).
    #[arg(long = "agent-attribute", value_parser = typed_attribute)]
    pub agent_attributes: Vec<(String, AttributeValue)>,
    /// A person attribute `key=value` (repeatable).
    #[arg(long = "person-attribute", value_parser = typed_attribute)]
    pub person_attributes: Vec<(String, AttributeValue)>,
    /// A resource attribute `key=value` (repeatable).
    #[arg(long = "resource-attribute", value_parser = typed_attribute)]
    pub resource_attributes: Vec<(String, AttributeValue)>,
    /// A context attribute `key=value` (repeatable).
    #[arg(long = "context-attribute", value_parser = typed_attribute)]
    pub context_attributes: Vec<(String, AttributeValue)>,
    /// When the action happens (RFC 3339; default now).
    #[arg(long)]
    pub time: Option<String>,
    /// The environment, e.g. `prod`.
    #[arg(long)]
    pub environment: Option<String>,
    /// A risk score 0-100.
    #[arg(long)]
    pub risk_score: Option<u32>,
}

/// What every decision RPC asks about; the principal is absent when a
/// token stands for it.
#[derive(Debug, Default)]
pub struct Question {
    pub principal: Option<Principal>,
    pub audience: String,
    pub action: String,
    pub resource: Resource,
    pub context: Option<RequestContext>,
}

/// `key=value` with the value typed as a policy condition sees it:
/// `true`/`false` a boolean, an integer an int, a decimal a double,
/// `[a,b]` a list of strings, `"..."` a string as written, anything else
/// a string.
fn typed_attribute(flag: &str) -> Result<(String, AttributeValue), String> {
    let (key, value) = flag
        .split_once('=')
        .ok_or_else(|| format!("`{flag}` is not key=value"))?;
    let kind = if let Some(text) = value
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
    {
        Kind::StringValue(text.to_owned())
    } else if let Some(items) = value
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
    {
        Kind::StringListValue(StringList {
            values: items
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect(),
        })
    } else if let Ok(flag) = value.parse::<bool>() {
        Kind::BoolValue(flag)
    } else if let Ok(number) = value.parse::<i64>() {
        Kind::IntValue(number)
    } else if let Some(number) = value
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && value.contains('.'))
    {
        Kind::DoubleValue(number)
    } else {
        Kind::StringValue(value.to_owned())
    };
    Ok((key.to_owned(), AttributeValue { kind: Some(kind) }))
}

/// A JSON attribute value: a string, number, boolean or list of strings,
/// or a proto-JSON AttributeValue (`{"intValue": "2"}`).
fn json_attribute(name: &str, value: &Value) -> anyhow::Result<AttributeValue> {
    let kind = match value {
        Value::String(text) => Kind::StringValue(text.clone()),
        Value::Bool(flag) => Kind::BoolValue(*flag),
        Value::Number(number) => match number.as_i64() {
            Some(int) => Kind::IntValue(int),
            None => Kind::DoubleValue(number.as_f64().unwrap_or(f64::NAN)),
        },
        Value::Array(items) => Kind::StringListValue(StringList {
            values: items
                .iter()
                .map(|item| {
                    item.as_str()
                        .map(str::to_owned)
                        .with_context(|| format!("{name}: a list holds strings only"))
                })
                .collect::<anyhow::Result<_>>()?,
        }),
        Value::Object(map) if map.len() == 1 => {
            let (kind, inner) = map.iter().next().context("one member")?;
            match (kind.as_str(), inner) {
                ("stringValue" | "string_value", Value::String(text)) => {
                    Kind::StringValue(text.clone())
                }
                ("boolValue" | "bool_value", Value::Bool(flag)) => Kind::BoolValue(*flag),
                ("intValue" | "int_value", Value::String(text)) => Kind::IntValue(
                    text.parse()
                        .with_context(|| format!("{name}.{kind}: `{text}` is not an integer"))?,
                ),
                ("intValue" | "int_value", Value::Number(number)) => Kind::IntValue(
                    number
                        .as_i64()
                        .with_context(|| format!("{name}.{kind}: not an integer"))?,
                ),
                ("doubleValue" | "double_value", Value::Number(number)) => {
                    Kind::DoubleValue(number.as_f64().unwrap_or(f64::NAN))
                }
                ("stringListValue" | "string_list_value", Value::Object(list)) => {
                    return json_attribute(name, list.get("values").unwrap_or(&Value::Null))
                }
                _ => anyhow::bail!("{name}: `{kind}` is not an attribute value kind"),
            }
        }
        _ => anyhow::bail!("{name}: an attribute is a string, number, boolean or list of strings"),
    };
    Ok(AttributeValue { kind: Some(kind) })
}

/// An attribute value as JSON (the inverse of [`json_attribute`]).
pub fn attribute_json(value: &AttributeValue) -> Value {
    match &value.kind {
        Some(Kind::StringValue(text)) => Value::from(text.clone()),
        Some(Kind::IntValue(int)) => Value::from(*int),
        Some(Kind::DoubleValue(double)) => Value::from(*double),
        Some(Kind::BoolValue(flag)) => Value::from(*flag),
        Some(Kind::StringListValue(list)) => Value::from(list.values.clone()),
        None => Value::Null,
    }
}

fn attributes(
    name: &str,
    map: HashMap<String, Value>,
) -> anyhow::Result<HashMap<String, AttributeValue>> {
    map.into_iter()
        .map(|(key, value)| {
            let typed = json_attribute(&format!("{name}.{key}"), &value)?;
            Ok((key, typed))
        })
        .collect()
}

fn timestamp(text: &str, what: &str) -> anyhow::Result<prost_types::Timestamp> {
    let time = chrono::DateTime::parse_from_rfc3339(text)
        .with_context(|| format!("{what}: `{text}` is not an RFC 3339 time"))?;
    Ok(prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or(0),
    })
}

/// The file form: proto field names (snake_case, or the proto-JSON
/// lowerCamelCase), attributes as plain JSON values. `agentctl policy test`
/// reads its cases' requests in this form too.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    principal: Option<PrincipalFile>,
    audience: String,
    action: String,
    resource: ResourceFile,
    #[serde(default)]
    context: Option<ContextFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalFile {
    /// Policy test cases take the tested tenant when it is left out.
    #[serde(default)]
    tenant: String,
    #[serde(alias = "agentId")]
    agent_id: String,
    #[serde(default, alias = "agentAttributes")]
    agent_attributes: HashMap<String, Value>,
    #[serde(default, alias = "personSubject")]
    person_subject: String,
    #[serde(default, alias = "personAttributes")]
    person_attributes: HashMap<String, Value>,
    #[serde(default, alias = "actorChain")]
    actor_chain: Option<ChainFile>,
}

/// Agent ids outermost first, or the proto form `{"actors": [...]}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ChainFile {
    Ids(Vec<String>),
    Actors { actors: Vec<ActorFile> },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActorFile {
    #[serde(alias = "agentId")]
    agent_id: String,
    #[serde(default)]
    issuer: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceFile {
    #[serde(rename = "type")]
    kind: String,
    id: String,
    #[serde(default)]
    attributes: HashMap<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContextFile {
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    environment: String,
    #[serde(default, alias = "delegationDepth")]
    delegation_depth: u32,
    #[serde(default, alias = "riskScore")]
    risk_score: Option<u32>,
    #[serde(default)]
    attributes: HashMap<String, Value>,
}

impl File {
    pub fn question(self) -> anyhow::Result<Question> {
        let principal = self
            .principal
            .map(|principal| -> anyhow::Result<Principal> {
                let actors = match principal.actor_chain {
                    None => Vec::new(),
                    Some(ChainFile::Ids(ids)) => ids
                        .into_iter()
                        .map(|agent_id| Actor {
                            agent_id,
                            issuer: String::new(),
                        })
                        .collect(),
                    Some(ChainFile::Actors { actors }) => actors
                        .into_iter()
                        .map(|actor| Actor {
                            agent_id: actor.agent_id,
                            issuer: actor.issuer,
                        })
                        .collect(),
                };
                Ok(Principal {
                    tenant: principal.tenant,
                    agent_id: principal.agent_id,
                    agent_attributes: attributes(
                        "principal.agent_attributes",
                        principal.agent_attributes,
                    )?,
                    person_subject: principal.person_subject,
                    person_attributes: attributes(
                        "principal.person_attributes",
                        principal.person_attributes,
                    )?,
                    actor_chain: (!actors.is_empty()).then_some(ActorChain { actors }),
                })
            })
            .transpose()?;
        let context = self
            .context
            .map(|context| -> anyhow::Result<RequestContext> {
                Ok(RequestContext {
                    time: context
                        .time
                        .as_deref()
                        .map(|time| timestamp(time, "context.time"))
                        .transpose()?,
                    environment: context.environment,
                    delegation_depth: context.delegation_depth,
                    risk_score: context.risk_score,
                    attributes: attributes("context.attributes", context.attributes)?,
                })
            })
            .transpose()?;
        Ok(Question {
            principal,
            audience: self.audience,
            action: self.action,
            resource: Resource {
                r#type: self.resource.kind,
                id: self.resource.id,
                attributes: attributes("resource.attributes", self.resource.attributes)?,
            },
            context,
        })
    }
}

impl QuestionArgs {
    /// Whether any flag of the question is given (beside --file).
    fn has_flags(&self) -> bool {
        self.tenant.is_some()
            || self.agent.is_some()
            || self.person.is_some()
            || !self.delegated_by.is_empty()
            || self.audience.is_some()
            || self.action.is_some()
            || self.resource_type.is_some()
            || self.resource.is_some()
            || !self.agent_attributes.is_empty()
            || !self.person_attributes.is_empty()
            || !self.resource_attributes.is_empty()
            || !self.context_attributes.is_empty()
            || self.time.is_some()
            || self.environment.is_some()
            || self.risk_score.is_some()
    }

    /// The question; `with_principal` = false when a token stands for the
    /// principal (its flags are then refused).
    pub fn question(self, with_principal: bool) -> anyhow::Result<Question> {
        if let Some(path) = &self.file {
            anyhow::ensure!(
                !self.has_flags(),
                "give the question in --file or in flags, not both"
            );
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let file: File = serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is not a decision question (see `agentctl check --help`)",
                    path.display()
                )
            })?;
            let question = file.question()?;
            anyhow::ensure!(
                question
                    .principal
                    .as_ref()
                    .is_none_or(|principal| !principal.tenant.is_empty()),
                "{}: `principal.tenant` is missing",
                path.display()
            );
            anyhow::ensure!(
                question.principal.is_some() == with_principal,
                "{}: {}",
                path.display(),
                if with_principal {
                    "`principal` is missing"
                } else {
                    "`principal` comes from the token: leave it out"
                }
            );
            return Ok(question);
        }
        let required = |value: Option<String>, flag: &str| {
            value.with_context(|| format!("{flag} is missing (or give the question in --file)"))
        };
        let principal = if with_principal {
            let agent = required(self.agent, "--agent")?;
            let actors = std::iter::once(agent.clone())
                .chain(self.delegated_by)
                .map(|agent_id| Actor {
                    agent_id,
                    issuer: String::new(),
                })
                .collect::<Vec<_>>();
            Some(Principal {
                tenant: required(self.tenant, "--tenant")?,
                agent_id: agent,
                agent_attributes: self.agent_attributes.into_iter().collect(),
                person_subject: self.person.unwrap_or_default(),
                person_attributes: self.person_attributes.into_iter().collect(),
                actor_chain: (actors.len() > 1).then_some(ActorChain { actors }),
            })
        } else {
            let given = [
                ("--tenant", self.tenant.is_some()),
                ("--agent", self.agent.is_some()),
                ("--person", self.person.is_some()),
                ("--delegated-by", !self.delegated_by.is_empty()),
                ("--agent-attribute", !self.agent_attributes.is_empty()),
                ("--person-attribute", !self.person_attributes.is_empty()),
            ];
            if let Some((flag, _)) = given.iter().find(|(_, given)| *given) {
                anyhow::bail!("{flag} comes from the token with --token: leave it out");
            }
            None
        };
        let context = RequestContext {
            time: self
                .time
                .as_deref()
                .map(|time| timestamp(time, "--time"))
                .transpose()?,
            environment: self.environment.unwrap_or_default(),
            delegation_depth: 0,
            risk_score: self.risk_score,
            attributes: self.context_attributes.into_iter().collect(),
        };
        Ok(Question {
            principal,
            audience: required(self.audience, "--audience")?,
            action: required(self.action, "--action")?,
            resource: Resource {
                r#type: required(self.resource_type, "--resource-type")?,
                id: required(self.resource, "--resource")?,
                attributes: self.resource_attributes.into_iter().collect(),
            },
            context: Some(context),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn kind(flag: &str) -> Kind {
        typed_attribute(flag).unwrap().1.kind.unwrap()
    }

    #[test]
    fn flag_values_are_typed_as_conditions_see_them() {
        assert_eq!(kind("tier=2"), Kind::IntValue(2));
        assert_eq!(kind("ok=true"), Kind::BoolValue(true));
        assert_eq!(kind("score=0.5"), Kind::DoubleValue(0.5));
        assert_eq!(kind("env=prod"), Kind::StringValue("prod".to_owned()));
        assert_eq!(kind("code=\"2\""), Kind::StringValue("2".to_owned()));
        assert_eq!(
            kind("groups=[a, b]"),
            Kind::StringListValue(StringList {
                values: vec!["a".to_owned(), "b".to_owned()]
            })
        );
        assert!(typed_attribute("tier").unwrap_err().contains("key=value"));
    }

    #[test]
    fn a_file_takes_plain_values_and_proto_json_names() {
        let file: File = serde_json::from_value(json!({
            "principal": {"tenant": "acme", "agentId": "agt_1",
                          "agent_attributes": {"tier": 2, "code": {"intValue": "7"}},
                          "actorChain": ["agt_1", "agt_0"]},
            "audience": "mcp:github", "action": "tools/call",
            "resource": {"type": "mcp.tool", "id": "mcp:github/x", "attributes": {"tags": ["a"]}},
            "context": {"time": "2026-01-01T09:00:00Z", "riskScore": 10}
        }))
        .unwrap();
        let question = file.question().unwrap();
        let principal = question.principal.unwrap();
        assert_eq!(principal.agent_id, "agt_1");
        assert_eq!(
            principal.agent_attributes["code"].kind,
            Some(Kind::IntValue(7))
        );
        assert_eq!(principal.actor_chain.unwrap().actors.len(), 2);
        let context = question.context.unwrap();
        assert_eq!(context.risk_score, Some(10));
        assert_eq!(context.time.unwrap().seconds, 1_767_258_000);

        let bad: File = serde_json::from_value(json!({
            "audience": "a", "action": "b",
            "resource": {"type": "t", "id": "i", "attributes": {"x": {"a": 1}}}
        }))
        .unwrap();
        let err = bad.question().unwrap_err().to_string();
        assert!(err.contains("resource.attributes.x"), "{err}");
    }
}
