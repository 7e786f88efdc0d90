//! The rules of a tenant's policy set history: what a tenant name and a
//! change description may be, what a stored version records, and how two
//! versions differ.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use agentsec_proto::policy::v1 as pb;
use chrono::{DateTime, Utc};
use sha2::{Digest as _, Sha256};

use crate::error::PolicyError;

/// policy.proto: a change message is at most 1,024 chars.
pub const MAX_DESCRIPTION: usize = 1024;

/// One stored version of a tenant's policy set (content as protobuf bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVersion {
    pub tenant: String,
    pub version: u64,
    pub content: Vec<u8>,
    pub content_sha256: String,
    pub author: String,
    pub description: String,
    pub rolled_back_from: u64,
    pub rule_count: u32,
    pub role_assignment_count: u32,
    pub create_time: DateTime<Utc>,
}

/// `[a-z0-9][a-z0-9_-]{0,63}` (common.proto).
pub fn check_tenant(field: &str, tenant: &str) -> Result<(), PolicyError> {
    let bytes = tenant.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.len() <= 64
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-');
    if valid {
        Ok(())
    } else {
        Err(PolicyError::invalid(
            field,
            "must match [a-z0-9][a-z0-9_-]{0,63}",
        ))
    }
}

pub fn check_description(description: &str) -> Result<(), PolicyError> {
    if description.chars().count() > MAX_DESCRIPTION {
        return Err(PolicyError::invalid(
            "description",
            format!("at most {MAX_DESCRIPTION} chars"),
        ));
    }
    Ok(())
}

/// The lowercase hex SHA-256 of a version's content.
pub fn content_sha256(content: &[u8]) -> String {
    Sha256::digest(content)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The differences between two versions' content.
pub fn diff(
    from_version: u64,
    before: &pb::PolicySet,
    to_version: u64,
    after: &pb::PolicySet,
) -> pb::DiffPolicyVersionsResponse {
    let old: BTreeMap<&str, &pb::PolicyRule> = before
        .rules
        .iter()
        .map(|rule| (rule.id.as_str(), rule))
        .collect();
    let new: BTreeMap<&str, &pb::PolicyRule> = after
        .rules
        .iter()
        .map(|rule| (rule.id.as_str(), rule))
        .collect();
    let ids: BTreeSet<&str> = old.keys().chain(new.keys()).copied().collect();
    let rule_changes = ids
        .into_iter()
        .filter_map(|id| {
            let (before, after) = (old.get(id).copied(), new.get(id).copied());
            let change = match (before, after) {
                (None, Some(_)) => pb::ChangeType::Added,
                (Some(_), None) => pb::ChangeType::Removed,
                (Some(before), Some(after)) if before != after => pb::ChangeType::Modified,
                _ => return None,
            };
            Some(pb::RuleChange {
                policy_id: id.to_owned(),
                change: change as i32,
                before: before.cloned(),
                after: after.cloned(),
            })
        })
        .collect();
    let assignment = |a: &pb::RoleAssignment| (a.member.clone(), a.role.clone());
    let old_assignments: HashSet<(String, String)> =
        before.role_assignments.iter().map(assignment).collect();
    let new_assignments: HashSet<(String, String)> =
        after.role_assignments.iter().map(assignment).collect();
    let attribute = |a: &pb::AttributeDefinition| (a.source, a.name.clone(), a.r#type);
    let old_attributes: HashSet<(i32, String, i32)> =
        before.attributes.iter().map(attribute).collect();
    let new_attributes: HashSet<(i32, String, i32)> =
        after.attributes.iter().map(attribute).collect();
    pb::DiffPolicyVersionsResponse {
        from_version,
        to_version,
        rule_changes,
        role_assignments_added: after
            .role_assignments
            .iter()
            .filter(|a| !old_assignments.contains(&assignment(a)))
            .cloned()
            .collect(),
        role_assignments_removed: before
            .role_assignments
            .iter()
            .filter(|a| !new_assignments.contains(&assignment(a)))
            .cloned()
            .collect(),
        attributes_added: after
            .attributes
            .iter()
            .filter(|a| !old_attributes.contains(&attribute(a)))
            .cloned()
            .collect(),
        attributes_removed: before
            .attributes
            .iter()
            .filter(|a| !new_attributes.contains(&attribute(a)))
            .cloned()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_follow_the_common_pattern() {
        for good in ["acme", "a", "0-team_x", &"a".repeat(64)] {
            assert!(check_tenant("tenant", good).is_ok(), "{good}");
        }
        for bad in ["", "Acme", "-acme", "_a", "a b", "é", &"a".repeat(65)] {
            assert!(check_tenant("tenant", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn descriptions_are_bounded_in_chars() {
        assert!(check_description(&"é".repeat(MAX_DESCRIPTION)).is_ok());
        assert!(check_description(&"é".repeat(MAX_DESCRIPTION + 1)).is_err());
    }

    #[test]
    fn the_diff_names_added_removed_and_modified_rules() {
        let rule = |id: &str, action: &str| pb::PolicyRule {
            id: id.into(),
            actions: vec![action.into()],
            ..pb::PolicyRule::default()
        };
        let before = pb::PolicySet {
            rules: vec![
                rule("kept", "read"),
                rule("changed", "read"),
                rule("gone", "x"),
            ],
            ..pb::PolicySet::default()
        };
        let after = pb::PolicySet {
            rules: vec![
                rule("kept", "read"),
                rule("changed", "write"),
                rule("new", "x"),
            ],
            ..pb::PolicySet::default()
        };
        let changes: Vec<(String, i32)> = diff(1, &before, 2, &after)
            .rule_changes
            .into_iter()
            .map(|change| (change.policy_id, change.change))
            .collect();
        assert_eq!(
            changes,
            vec![
                ("changed".to_owned(), pb::ChangeType::Modified as i32),
                ("gone".to_owned(), pb::ChangeType::Removed as i32),
                ("new".to_owned(), pb::ChangeType::Added as i32),
            ]
        );
    }
}
