//! The files `agentctl policy` reads: a policy set document (`rules`,
//! `role_assignments`, `attributes`) and fixture cases, each in YAML or
//! JSON, parsed into one serde model whatever the syntax. Field names are
//! the proto's (snake_case, or proto-JSON lowerCamelCase where they
//! differ); enum values are the proto names (`EFFECT_ALLOW`) or their short
//! lowercase form (`allow`). Only the shape is checked here: what a rule
//! may say is policy-svc's to validate, so `validate` can report every
//! finding at once.

use std::ffi::OsStr;
use std::fmt;
use std::io::Read as _;
use std::path::Path;

use agentsec_proto::common::v1::Effect;
use agentsec_proto::policy::v1::{
    AttributeDefinition, AttributeSource, AttributeType, PolicyRule, PolicySet, RoleAssignment,
};
use anyhow::Context as _;
use serde::de::{self, DeserializeOwned, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

/// The syntax of a file: by its extension, or sniffed from its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Syntax {
    Json,
    Yaml,
}

impl Syntax {
    /// JSON when the document opens with `{` or `[`: a YAML document
    /// written in flow style would parse the same either way.
    fn sniffed(text: &str) -> Self {
        match text.trim_start().chars().next() {
            Some('{' | '[') => Self::Json,
            _ => Self::Yaml,
        }
    }
}

/// The text of a file argument (`-` is stdin), and how to parse it.
#[derive(Debug)]
pub struct Input {
    name: String,
    text: String,
    syntax: Syntax,
}

impl Input {
    /// Reads `path`, or stdin for `-`.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        if path == Path::new("-") {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading stdin")?;
            return Ok(Self::from_text("stdin", text, None));
        }
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(Self::from_text(
            &path.display().to_string(),
            text,
            path.extension(),
        ))
    }

    pub(super) fn from_text(name: &str, text: String, extension: Option<&OsStr>) -> Self {
        let syntax = match extension.and_then(OsStr::to_str) {
            Some("json") => Syntax::Json,
            Some("yaml" | "yml") => Syntax::Yaml,
            _ => Syntax::sniffed(&text),
        };
        Self {
            name: name.to_owned(),
            text,
            syntax,
        }
    }

    /// Where the text came from, as errors name it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The text as a `T`; the error names the file, `what` it should be,
    /// where it is described, and the line and column of the problem.
    pub fn parse<T: DeserializeOwned>(&self, what: &str) -> anyhow::Result<T> {
        let parsed = match self.syntax {
            Syntax::Json => serde_json::from_str(&self.text).map_err(anyhow::Error::from),
            Syntax::Yaml => serde_yaml::from_str(&self.text).map_err(anyhow::Error::from),
        };
        parsed.with_context(|| {
            format!(
                "{} is not {what} (the format is in `agentctl policy --help`)",
                self.name
            )
        })
    }

    /// The text as a policy set document.
    pub fn policy_set(&self) -> anyhow::Result<PolicySet> {
        Ok(self.parse::<PolicyDocument>("a policy set")?.into())
    }
}

/// A policy set as a file holds it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyDocument {
    #[serde(default)]
    rules: Vec<RuleEntry>,
    #[serde(default, alias = "roleAssignments")]
    role_assignments: Vec<AssignmentEntry>,
    #[serde(default)]
    attributes: Vec<AttributeEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleEntry {
    #[serde(default)]
    id: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    effect: Option<EffectName>,
    #[serde(default)]
    agent: String,
    #[serde(default)]
    person: String,
    #[serde(default)]
    audience: String,
    #[serde(default)]
    resource: String,
    #[serde(default)]
    actions: Vec<String>,
    #[serde(default)]
    condition: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignmentEntry {
    #[serde(default)]
    member: String,
    #[serde(default)]
    role: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AttributeEntry {
    #[serde(default)]
    source: Option<SourceName>,
    #[serde(default)]
    name: String,
    #[serde(default, rename = "type")]
    kind: Option<TypeName>,
    #[serde(default)]
    description: String,
}

impl From<PolicyDocument> for PolicySet {
    fn from(document: PolicyDocument) -> Self {
        Self {
            rules: document
                .rules
                .into_iter()
                .map(|rule| PolicyRule {
                    id: rule.id,
                    description: rule.description,
                    effect: rule.effect.map_or(Effect::Unspecified, |name| name.0) as i32,
                    agent: rule.agent,
                    person: rule.person,
                    audience: rule.audience,
                    resource: rule.resource,
                    actions: rule.actions,
                    condition: rule.condition,
                })
                .collect(),
            role_assignments: document
                .role_assignments
                .into_iter()
                .map(|assignment| RoleAssignment {
                    member: assignment.member,
                    role: assignment.role,
                })
                .collect(),
            attributes: document
                .attributes
                .into_iter()
                .map(|attribute| AttributeDefinition {
                    source: attribute
                        .source
                        .map_or(AttributeSource::Unspecified, |name| name.0)
                        as i32,
                    name: attribute.name,
                    r#type: attribute
                        .kind
                        .map_or(AttributeType::Unspecified, |name| name.0)
                        as i32,
                    description: attribute.description,
                })
                .collect(),
        }
    }
}

/// A proto enum value from its proto name (`EFFECT_ALLOW`) or that name
/// without `prefix` in lowercase (`allow`); `_UNSPECIFIED` is no value.
fn proto_enum<E>(
    text: &str,
    prefix: &str,
    from_str_name: fn(&str) -> Option<E>,
    what: &str,
    short_names: &str,
) -> Result<E, String> {
    let proto_name = if text.starts_with(prefix) {
        text.to_owned()
    } else if text == text.to_lowercase() {
        format!("{prefix}{}", text.to_uppercase())
    } else {
        String::new()
    };
    match from_str_name(&proto_name) {
        Some(value) if !proto_name.ends_with("_UNSPECIFIED") => Ok(value),
        _ => Err(format!(
            "`{text}` is not {what}: {short_names}, or the same as {prefix}<NAME>"
        )),
    }
}

/// Reads a proto enum name where it is written, so that a parser's error
/// names the field and the line and column of the value itself (a
/// conversion after deserializing would be placed at the enclosing
/// object).
struct EnumVisitor<E> {
    parse: fn(&str) -> Result<E, String>,
    expecting: &'static str,
}

impl<E> Visitor<'_> for EnumVisitor<E> {
    type Value = E;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.expecting)
    }

    fn visit_str<Error: de::Error>(self, text: &str) -> Result<E, Error> {
        (self.parse)(text).map_err(Error::custom)
    }
}

/// An effect as a file names it: `allow`, `deny`, `EFFECT_ALLOW`, `EFFECT_DENY`.
#[derive(Debug, Clone, Copy)]
pub struct EffectName(pub Effect);

impl EffectName {
    fn parse(text: &str) -> Result<Self, String> {
        proto_enum(
            text,
            "EFFECT_",
            Effect::from_str_name,
            "an effect",
            "allow, deny",
        )
        .map(Self)
    }
}

impl<'de> Deserialize<'de> for EffectName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(EnumVisitor {
            parse: Self::parse,
            expecting: "an effect: allow or deny",
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct SourceName(AttributeSource);

impl<'de> Deserialize<'de> for SourceName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(EnumVisitor {
            parse: |text| {
                proto_enum(
                    text,
                    "ATTRIBUTE_SOURCE_",
                    AttributeSource::from_str_name,
                    "an attribute source",
                    "agent, person, resource, context",
                )
                .map(Self)
            },
            expecting: "an attribute source",
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct TypeName(AttributeType);

impl<'de> Deserialize<'de> for TypeName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(EnumVisitor {
            parse: |text| {
                proto_enum(
                    text,
                    "ATTRIBUTE_TYPE_",
                    AttributeType::from_str_name,
                    "an attribute type",
                    "string, int, double, bool, string_list",
                )
                .map(Self)
            },
            expecting: "an attribute type",
        })
    }
}

/// A rule as agentctl prints it in JSON: the file's form, so that printed
/// rules can be applied again.
pub fn rule_json(rule: &PolicyRule) -> Value {
    json!({
        "id": rule.id,
        "description": rule.description,
        "effect": rule.effect().as_str_name(),
        "agent": rule.agent,
        "person": rule.person,
        "audience": rule.audience,
        "resource": rule.resource,
        "actions": rule.actions,
        "condition": rule.condition,
    })
}

pub fn assignment_json(assignment: &RoleAssignment) -> Value {
    json!({"member": assignment.member, "role": assignment.role})
}

pub fn attribute_json(attribute: &AttributeDefinition) -> Value {
    json!({
        "source": attribute.source().as_str_name(),
        "name": attribute.name,
        "type": attribute.r#type().as_str_name(),
        "description": attribute.description,
    })
}

/// A policy set as a document `agentctl policy apply` reads back.
pub fn policy_set_json(set: &PolicySet) -> Value {
    json!({
        "rules": set.rules.iter().map(rule_json).collect::<Vec<_>>(),
        "role_assignments": set.role_assignments.iter().map(assignment_json).collect::<Vec<_>>(),
        "attributes": set.attributes.iter().map(attribute_json).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(name: &str, text: &str) -> anyhow::Result<PolicySet> {
        let extension = Path::new(name).extension();
        Input::from_text(name, text.to_owned(), extension).policy_set()
    }

    const YAML: &str = "\
rules:
  - id: github-tools
    effect: allow
    resource: mcp:github/list_*
    actions: [tools/call]
    condition: |
      agent.trust_tier >= 2
  - id: no-delete
    effect: EFFECT_DENY
    resource: mcp:github/delete_*
    actions: [tools/call]
role_assignments:
  - {member: 'agent:agt_1', role: bots}
attributes:
  - {source: agent, name: trust_tier, type: int}
";

    const JSON: &str = r#"{"rules": [
  {"id": "github-tools", "effect": "EFFECT_ALLOW", "resource": "mcp:github/list_*",
   "actions": ["tools/call"], "condition": "agent.trust_tier >= 2\n"},
  {"id": "no-delete", "effect": "deny", "resource": "mcp:github/delete_*",
   "actions": ["tools/call"]}],
 "roleAssignments": [{"member": "agent:agt_1", "role": "bots"}],
 "attributes": [{"source": "ATTRIBUTE_SOURCE_AGENT", "name": "trust_tier",
                 "type": "ATTRIBUTE_TYPE_INT"}]}"#;

    #[test]
    fn yaml_and_json_with_short_or_proto_names_give_the_same_set() {
        let from_yaml = parsed("policy.yaml", YAML).unwrap();
        let from_json = parsed("policy.json", JSON).unwrap();
        assert_eq!(from_yaml, from_json);
        assert_eq!(from_yaml.rules[0].effect(), Effect::Allow);
        assert_eq!(from_yaml.rules[1].effect(), Effect::Deny);
        assert_eq!(from_yaml.attributes[0].source(), AttributeSource::Agent);
        assert_eq!(from_yaml.attributes[0].r#type(), AttributeType::Int);
        assert_eq!(from_yaml.role_assignments[0].role, "bots");
        // Without an extension (stdin), the syntax is sniffed.
        assert_eq!(parsed("stdin", YAML).unwrap(), from_yaml);
        assert_eq!(parsed("stdin", JSON).unwrap(), from_json);
    }

    #[test]
    fn printed_sets_read_back_as_the_same_set() {
        let set = parsed("policy.yaml", YAML).unwrap();
        let printed = policy_set_json(&set).to_string();
        assert_eq!(parsed("printed.json", &printed).unwrap(), set);
    }

    #[test]
    fn a_bad_name_or_field_is_reported_with_its_place() {
        let err = parsed(
            "p.yaml",
            "rules:\n  - id: a\n    effect: permit\n    resource: x\n",
        )
        .unwrap_err();
        let said = format!("{err:#}");
        assert!(said.starts_with("p.yaml is not a policy set"), "{said}");
        assert!(said.contains("rules[0].effect"), "{said}");
        assert!(
            said.contains("`permit` is not an effect: allow, deny"),
            "{said}"
        );
        assert!(said.contains("line 3"), "{said}");

        let err = parsed("p.json", r#"{"rules": [{"id": "a", "efect": "allow"}]}"#).unwrap_err();
        let said = format!("{err:#}");
        assert!(said.contains("unknown field `efect`"), "{said}");
        assert!(said.contains("line 1 column"), "{said}");

        for unspecified in ["unspecified", "EFFECT_UNSPECIFIED", "Allow"] {
            assert!(EffectName::parse(unspecified).is_err(), "{unspecified}");
        }
        let err = parsed(
            "p.yaml",
            "attributes:\n  - {source: agent, name: x, type: integer}\n",
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("`integer` is not an attribute type"),
            "{err:#}"
        );
    }
}
