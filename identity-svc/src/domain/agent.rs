//! An agent of the registry: its validated fields and lifecycle.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use super::validate::{self, printable};
use crate::error::IdentityError;

/// Lifecycle status; REVOKED is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Active,
    Suspended,
    Revoked,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Revoked => "revoked",
        }
    }

    pub fn parse(stored: &str) -> Option<Self> {
        match stored {
            "active" => Some(Self::Active),
            "suspended" => Some(Self::Suspended),
            "revoked" => Some(Self::Revoked),
            _ => None,
        }
    }
}

/// The caller-supplied fields of an agent as sent, before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentInput {
    pub owner: String,
    pub name: String,
    pub description: String,
    pub model: String,
    pub provider: String,
    pub attributes: HashMap<String, String>,
    pub ceiling: Option<Ceiling>,
}

/// The most an agent may ever be granted, as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ceiling {
    pub audiences: Vec<String>,
    pub scopes: Vec<String>,
}

/// An agent to register: its tenant and fields as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewAgent {
    pub tenant: String,
    pub fields: AgentInput,
}

/// The mutable, caller-supplied fields of an agent, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentFields {
    pub owner: String,
    pub name: String,
    pub description: String,
    pub model: String,
    pub provider: String,
    pub attributes: BTreeMap<String, String>,
    pub ceiling_audiences: Vec<String>,
    pub ceiling_scopes: Vec<String>,
}

/// An agent as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub id: String,
    pub tenant: String,
    pub fields: AgentFields,
    pub status: Status,
    pub status_reason: String,
    pub token_generation: i64,
    /// When the current token generation started (`None`: generation 0).
    pub generation_time: Option<DateTime<Utc>>,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

/// Which agents a store listing returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentFilter {
    pub tenant: Option<String>,
    pub owner: Option<String>,
    pub status: Option<Status>,
    pub updated_since: Option<DateTime<Utc>>,
}

/// A listing of agents as asked for (empty strings: no filter).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentQuery {
    pub tenant: String,
    pub owner: String,
    pub status: Option<Status>,
    /// Only agents having every one of these attributes with this value.
    pub attributes: HashMap<String, String>,
    pub updated_since: Option<DateTime<Utc>>,
}

/// The fields an update may replace (UpdateAgentRequest.update_mask).
pub const UPDATABLE: [&str; 7] = [
    "owner",
    "name",
    "description",
    "model",
    "provider",
    "attributes",
    "ceiling",
];

impl AgentFields {
    /// Validates the caller-supplied fields of `agent` (paths prefixed with
    /// `prefix`, e.g. `agent`).
    pub fn validate(agent: &AgentInput, prefix: &str) -> Result<Self, IdentityError> {
        let field = |name: &str| format!("{prefix}.{name}");
        validate::required(&field("owner"), &agent.owner, validate::MAX_NAME)?;
        validate::required(&field("name"), &agent.name, validate::MAX_NAME)?;
        validate::at_most(
            &field("description"),
            &agent.description,
            validate::MAX_DESCRIPTION,
        )?;
        validate::at_most(&field("model"), &agent.model, validate::MAX_NAME)?;
        validate::at_most(&field("provider"), &agent.provider, validate::MAX_NAME)?;
        let attributes = attributes(&field("attributes"), &agent.attributes)?;
        let ceiling = agent
            .ceiling
            .as_ref()
            .ok_or_else(|| IdentityError::invalid(field("ceiling"), "is required"))?;
        let ceiling_audiences = distinct_list(
            &field("ceiling.audiences"),
            &ceiling.audiences,
            validate::MAX_AUDIENCES,
            |path, audience| validate::required(path, audience, validate::MAX_NAME),
        )?;
        let ceiling_scopes = distinct_list(
            &field("ceiling.scopes"),
            &ceiling.scopes,
            validate::MAX_SCOPES,
            |path, scope| {
                validate::scope_token(path, scope)?;
                if agentsec_common::admin_token::SERVICE_ONLY_SCOPES.contains(&scope) {
                    return Err(IdentityError::invalid(
                        path,
                        "is a service client's scope (identity-svc `service_clients`), \
                         never an agent's",
                    ));
                }
                Ok(())
            },
        )?;
        Ok(Self {
            owner: agent.owner.clone(),
            name: agent.name.clone(),
            description: agent.description.clone(),
            model: agent.model.clone(),
            provider: agent.provider.clone(),
            attributes,
            ceiling_audiences,
            ceiling_scopes,
        })
    }

    /// These fields with the paths of `mask` replaced from `update`.
    pub fn updated(&self, update: &AgentInput, mask: &[String]) -> Result<Self, IdentityError> {
        if mask.is_empty() {
            return Err(IdentityError::invalid(
                "update_mask",
                "must name at least one field",
            ));
        }
        for path in mask {
            if !UPDATABLE.contains(&path.as_str()) {
                return Err(IdentityError::invalid(
                    "update_mask",
                    format!(
                        "`{}` cannot be updated; allowed: {}",
                        printable(path),
                        UPDATABLE.join(", ")
                    ),
                ));
            }
        }
        // Validate a complete agent made of the current values overlaid with
        // the masked ones, so every rule applies to the result.
        let mut merged = AgentInput {
            owner: self.owner.clone(),
            name: self.name.clone(),
            description: self.description.clone(),
            model: self.model.clone(),
            provider: self.provider.clone(),
            attributes: self.attributes.clone().into_iter().collect(),
            ceiling: Some(Ceiling {
                audiences: self.ceiling_audiences.clone(),
                scopes: self.ceiling_scopes.clone(),
            }),
        };
        for path in mask {
            match path.as_str() {
                "owner" => merged.owner = update.owner.clone(),
                "name" => merged.name = update.name.clone(),
                "description" => merged.description = update.description.clone(),
                "model" => merged.model = update.model.clone(),
                "provider" => merged.provider = update.provider.clone(),
                "attributes" => merged.attributes = update.attributes.clone(),
                _ => merged.ceiling = update.ceiling.clone(),
            }
        }
        Self::validate(&merged, "agent")
    }
}

fn attributes(
    field: &str,
    map: &HashMap<String, String>,
) -> Result<BTreeMap<String, String>, IdentityError> {
    if map.len() > validate::MAX_ATTRIBUTES {
        return Err(IdentityError::invalid(
            field,
            format!("at most {} entries", validate::MAX_ATTRIBUTES),
        ));
    }
    for (key, value) in map {
        validate::attribute_key(field, key)?;
        validate::at_most(
            &format!("{field}[\"{key}\"]"),
            value,
            validate::MAX_ATTRIBUTE_VALUE,
        )?;
    }
    Ok(map.clone().into_iter().collect())
}

fn distinct_list(
    field: &str,
    items: &[String],
    max: usize,
    check: impl Fn(&str, &str) -> Result<(), IdentityError>,
) -> Result<Vec<String>, IdentityError> {
    if items.len() > max {
        return Err(IdentityError::invalid(
            field,
            format!("at most {max} entries"),
        ));
    }
    for (index, item) in items.iter().enumerate() {
        let path = format!("{field}[{index}]");
        check(&path, item)?;
        if items[..index].contains(item) {
            return Err(IdentityError::invalid(path, "is a duplicate"));
        }
    }
    Ok(items.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent() -> AgentInput {
        AgentInput {
            owner: "alice".into(),
            name: "builder".into(),
            attributes: [("trust_tier".to_string(), "2".to_string())].into(),
            ceiling: Some(Ceiling {
                audiences: vec!["github-mcp".into()],
                scopes: vec!["repo:read".into()],
            }),
            ..AgentInput::default()
        }
    }

    #[test]
    fn errors_name_the_field() {
        let mut bad = agent();
        bad.ceiling
            .as_mut()
            .unwrap()
            .scopes
            .push("repo:read".into());
        let err = AgentFields::validate(&bad, "agent")
            .unwrap_err()
            .to_string();
        assert!(err.contains("agent.ceiling.scopes[1]"), "{err}");
        let mut bad = agent();
        bad.ceiling = None;
        let err = AgentFields::validate(&bad, "agent")
            .unwrap_err()
            .to_string();
        assert!(err.contains("agent.ceiling"), "{err}");
        for reserved in agentsec_common::admin_token::SERVICE_ONLY_SCOPES {
            let mut bad = agent();
            bad.ceiling.as_mut().unwrap().scopes.push(reserved.into());
            let err = AgentFields::validate(&bad, "agent")
                .unwrap_err()
                .to_string();
            assert!(err.contains("agent.ceiling.scopes[1]"), "{err}");
            assert!(err.contains("service client"), "{err}");
        }
    }

    #[test]
    fn an_update_replaces_only_masked_fields() {
        let fields = AgentFields::validate(&agent(), "agent").unwrap();
        let update = AgentInput {
            name: "renamed".into(),
            owner: "ignored".into(),
            ..AgentInput::default()
        };
        let updated = fields.updated(&update, &["name".into()]).unwrap();
        assert_eq!(updated.name, "renamed");
        assert_eq!(updated.owner, "alice");
        assert!(fields.updated(&update, &["status".into()]).is_err());
        assert!(fields.updated(&update, &[]).is_err());
    }
}
