//! An agent of the registry: its validated fields and lifecycle.

use std::collections::BTreeMap;

use agentsec_common::error::ApiError;
use agentsec_proto::identity::v1 as pb;
use chrono::{DateTime, Utc};

use super::validate::{self, printable};

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

    pub fn from_proto(status: i32) -> Result<Option<Self>, ApiError> {
        match pb::AgentStatus::try_from(status) {
            Ok(pb::AgentStatus::Unspecified) => Ok(None),
            Ok(pb::AgentStatus::Active) => Ok(Some(Self::Active)),
            Ok(pb::AgentStatus::Suspended) => Ok(Some(Self::Suspended)),
            Ok(pb::AgentStatus::Revoked) => Ok(Some(Self::Revoked)),
            Err(_) => Err(ApiError::invalid("status", "unknown status")),
        }
    }

    pub fn to_proto(self) -> pb::AgentStatus {
        match self {
            Self::Active => pb::AgentStatus::Active,
            Self::Suspended => pb::AgentStatus::Suspended,
            Self::Revoked => pb::AgentStatus::Revoked,
        }
    }
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

impl Agent {
    pub fn to_proto(&self) -> pb::Agent {
        pb::Agent {
            id: self.id.clone(),
            tenant: self.tenant.clone(),
            owner: self.fields.owner.clone(),
            name: self.fields.name.clone(),
            description: self.fields.description.clone(),
            model: self.fields.model.clone(),
            provider: self.fields.provider.clone(),
            status: self.status.to_proto() as i32,
            status_reason: self.status_reason.clone(),
            attributes: self.fields.attributes.clone().into_iter().collect(),
            ceiling: Some(pb::Ceiling {
                audiences: self.fields.ceiling_audiences.clone(),
                scopes: self.fields.ceiling_scopes.clone(),
            }),
            create_time: Some(timestamp(self.create_time)),
            update_time: Some(timestamp(self.update_time)),
        }
    }
}

pub use agentsec_common::time::timestamp;

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
    pub fn from_proto(agent: &pb::Agent, prefix: &str) -> Result<Self, ApiError> {
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
            .ok_or_else(|| ApiError::invalid(field("ceiling"), "is required"))?;
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
                    return Err(ApiError::invalid(
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
    pub fn updated(&self, update: &pb::Agent, mask: &[String]) -> Result<Self, ApiError> {
        if mask.is_empty() {
            return Err(ApiError::invalid(
                "update_mask",
                "must name at least one field",
            ));
        }
        for path in mask {
            if !UPDATABLE.contains(&path.as_str()) {
                return Err(ApiError::invalid(
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
        let mut merged = pb::Agent {
            owner: self.owner.clone(),
            name: self.name.clone(),
            description: self.description.clone(),
            model: self.model.clone(),
            provider: self.provider.clone(),
            attributes: self.attributes.clone().into_iter().collect(),
            ceiling: Some(pb::Ceiling {
                audiences: self.ceiling_audiences.clone(),
                scopes: self.ceiling_scopes.clone(),
            }),
            ..pb::Agent::default()
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
        Self::from_proto(&merged, "agent")
    }
}

fn attributes(
    field: &str,
    map: &std::collections::HashMap<String, String>,
) -> Result<BTreeMap<String, String>, ApiError> {
    if map.len() > validate::MAX_ATTRIBUTES {
        return Err(ApiError::invalid(
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
    check: impl Fn(&str, &str) -> Result<(), ApiError>,
) -> Result<Vec<String>, ApiError> {
    if items.len() > max {
        return Err(ApiError::invalid(field, format!("at most {max} entries")));
    }
    for (index, item) in items.iter().enumerate() {
        let path = format!("{field}[{index}]");
        check(&path, item)?;
        if items[..index].contains(item) {
            return Err(ApiError::invalid(path, "is a duplicate"));
        }
    }
    Ok(items.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent() -> pb::Agent {
        pb::Agent {
            tenant: "acme".into(),
            owner: "alice".into(),
            name: "builder".into(),
            attributes: [("trust_tier".to_string(), "2".to_string())].into(),
            ceiling: Some(pb::Ceiling {
                audiences: vec!["github-mcp".into()],
                scopes: vec!["repo:read".into()],
            }),
            ..pb::Agent::default()
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
        let err = AgentFields::from_proto(&bad, "agent")
            .unwrap_err()
            .to_string();
        assert!(err.contains("agent.ceiling.scopes[1]"), "{err}");
        let mut bad = agent();
        bad.ceiling = None;
        let err = AgentFields::from_proto(&bad, "agent")
            .unwrap_err()
            .to_string();
        assert!(err.contains("agent.ceiling"), "{err}");
        for reserved in agentsec_common::admin_token::SERVICE_ONLY_SCOPES {
            let mut bad = agent();
            bad.ceiling.as_mut().unwrap().scopes.push(reserved.into());
            let err = AgentFields::from_proto(&bad, "agent")
                .unwrap_err()
                .to_string();
            assert!(err.contains("agent.ceiling.scopes[1]"), "{err}");
            assert!(err.contains("service client"), "{err}");
        }
    }

    #[test]
    fn an_update_replaces_only_masked_fields() {
        let fields = AgentFields::from_proto(&agent(), "agent").unwrap();
        let update = pb::Agent {
            name: "renamed".into(),
            owner: "ignored".into(),
            ..pb::Agent::default()
        };
        let updated = fields.updated(&update, &["name".into()]).unwrap();
        assert_eq!(updated.name, "renamed");
        assert_eq!(updated.owner, "alice");
        assert!(fields.updated(&update, &["status".into()]).is_err());
        assert!(fields.updated(&update, &[]).is_err());
    }
}
