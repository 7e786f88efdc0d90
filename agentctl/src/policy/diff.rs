//! `agentctl policy diff`: what differs between two stored versions
//! (policy-svc's DiffPolicyVersions) or between a stored version and a
//! file (compared here the way policy-svc compares versions: rules by id,
//! role assignments and attribute declarations as wholes), one row per
//! change, and an exit status as diff(1)'s.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;

use agentsec_proto::policy::v1::{
    AttributeDefinition, ChangeType, DiffPolicyVersionsRequest, DiffPolicyVersionsResponse,
    GetPolicySetRequest, PolicyRule, PolicySet, RoleAssignment, RuleChange,
};
use serde_json::{json, Value};

use super::document::{assignment_json, attribute_json, rule_json, Input};
use super::{version_not_found, Admin};
use crate::admin::bearer;
use crate::output::{cell, enum_name, Column, Format};

/// Whether the two sides differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Same,
    Different,
}

/// diff(1)'s exit status: 0 the same, 1 different, 2 trouble (the error
/// is printed here, since a plain failure would read as "different").
pub fn exit_code(compared: anyhow::Result<Outcome>) -> ExitCode {
    match compared {
        Ok(Outcome::Same) => ExitCode::SUCCESS,
        Ok(Outcome::Different) => ExitCode::from(1),
        Err(err) => {
            eprintln!("agentctl: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// One side of a comparison, as the output names it.
#[derive(Debug)]
enum Side {
    Version(u64),
    File(String),
}

impl Side {
    fn json(&self) -> Value {
        match self {
            Self::Version(version) => json!({"version": version}),
            Self::File(name) => json!({"file": name}),
        }
    }

    fn said(&self) -> String {
        match self {
            Self::Version(version) => format!("version {version}"),
            Self::File(name) => name.clone(),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct Diff {
    /// The tenant.
    #[arg(long)]
    tenant: String,
    /// The older side: a stored version (with --file, default the
    /// current one).
    #[arg(long, required_unless_present = "file")]
    from: Option<u64>,
    /// The newer side: a stored version (default the current one).
    #[arg(long, conflicts_with = "file")]
    to: Option<u64>,
    /// The newer side: a policy file (YAML or JSON; `-` for stdin).
    #[arg(long)]
    file: Option<PathBuf>,
}

pub async fn run(admin: &mut Admin, diff: Diff) -> anyhow::Result<Outcome> {
    let (from, to, changes) = match &diff.file {
        Some(file) => {
            let input = Input::read(file)?;
            let after = input.policy_set()?;
            let answer = admin
                .client
                .get_policy_set(bearer(
                    GetPolicySetRequest {
                        tenant: diff.tenant.clone(),
                        version: diff.from.unwrap_or(0),
                    },
                    &admin.token,
                )?)
                .await
                .map_err(|status| version_not_found(status, &diff.tenant))?
                .into_inner();
            let before = answer.policy_set.unwrap_or_default();
            let from = answer.version.unwrap_or_default().version;
            (
                Side::Version(from),
                Side::File(input.name().to_owned()),
                compare(&before, &after),
            )
        }
        None => {
            let answer = admin
                .client
                .diff_policy_versions(bearer(
                    DiffPolicyVersionsRequest {
                        tenant: diff.tenant.clone(),
                        // clap requires --from when there is no --file.
                        from_version: diff.from.unwrap_or(0),
                        to_version: diff.to.unwrap_or(0),
                    },
                    &admin.token,
                )?)
                .await
                .map_err(|status| version_not_found(status, &diff.tenant))?
                .into_inner();
            (
                Side::Version(answer.from_version),
                Side::Version(answer.to_version),
                answer,
            )
        }
    };
    let rows = rows(&changes);
    let outcome = if rows.is_empty() {
        Outcome::Same
    } else {
        Outcome::Different
    };
    match admin.format {
        Format::Json => print!(
            "{}",
            Format::Json.one(&diff_json(&diff.tenant, &from, &to, &changes), &[])
        ),
        Format::Table => {
            let count = match rows.len() {
                0 => "the same".to_owned(),
                changes => super::counted(changes, "change", "changes"),
            };
            println!("{} {} -> {}: {count}", diff.tenant, from.said(), to.said());
            if !rows.is_empty() {
                print!("{}", Format::Table.list(&rows, &CHANGES, ""));
            }
        }
    }
    Ok(outcome)
}

/// The differences between `before` and `after`, as policy-svc's
/// DiffPolicyVersions finds them between two versions (the version numbers
/// are left 0).
fn compare(before: &PolicySet, after: &PolicySet) -> DiffPolicyVersionsResponse {
    let by_id = |set: &PolicySet| -> BTreeMap<String, PolicyRule> {
        set.rules
            .iter()
            .map(|rule| (rule.id.clone(), rule.clone()))
            .collect()
    };
    let (old, new) = (by_id(before), by_id(after));
    let ids: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let rule_changes = ids
        .into_iter()
        .filter_map(|id| {
            let (before, after) = (old.get(id), new.get(id));
            let change = match (before, after) {
                (None, Some(_)) => ChangeType::Added,
                (Some(_), None) => ChangeType::Removed,
                (Some(before), Some(after)) if before != after => ChangeType::Modified,
                _ => return None,
            };
            Some(RuleChange {
                policy_id: id.clone(),
                change: change as i32,
                before: before.cloned(),
                after: after.cloned(),
            })
        })
        .collect();
    let only_in = |these: &[RoleAssignment], those: &[RoleAssignment]| -> Vec<RoleAssignment> {
        let known: HashSet<(&str, &str)> = those
            .iter()
            .map(|a| (a.member.as_str(), a.role.as_str()))
            .collect();
        these
            .iter()
            .filter(|a| !known.contains(&(a.member.as_str(), a.role.as_str())))
            .cloned()
            .collect()
    };
    let declared_only_in = |these: &[AttributeDefinition],
                            those: &[AttributeDefinition]|
     -> Vec<AttributeDefinition> {
        let known: HashSet<(i32, &str, i32)> = those
            .iter()
            .map(|a| (a.source, a.name.as_str(), a.r#type))
            .collect();
        these
            .iter()
            .filter(|a| !known.contains(&(a.source, a.name.as_str(), a.r#type)))
            .cloned()
            .collect()
    };
    DiffPolicyVersionsResponse {
        from_version: 0,
        to_version: 0,
        rule_changes,
        role_assignments_added: only_in(&after.role_assignments, &before.role_assignments),
        role_assignments_removed: only_in(&before.role_assignments, &after.role_assignments),
        attributes_added: declared_only_in(&after.attributes, &before.attributes),
        attributes_removed: declared_only_in(&before.attributes, &after.attributes),
    }
}

const CHANGES: [Column; 4] = [
    Column::new("CHANGE", "change"),
    Column::new("WHAT", "what"),
    Column::new("ID", "id"),
    Column::new("DETAIL", "detail"),
];

/// `text` with every run of whitespace (newlines too) one space, for a
/// table cell.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A rule field's value for people: an effect short, lists joined.
fn field_said(key: &str, value: &Value) -> String {
    match (key, value.as_str()) {
        ("effect", Some(effect)) => enum_name(effect, "EFFECT_"),
        _ => one_line(&cell(value)),
    }
}

/// A rule in one line: its effect, then each field that is set.
fn rule_said(rule: &PolicyRule) -> String {
    let fields = rule_json(rule);
    let mut said = vec![field_said("effect", &fields["effect"])];
    for key in ["agent", "person", "audience", "resource", "actions"] {
        if cell(&fields[key]) != "-" {
            said.push(format!("{key}={}", field_said(key, &fields[key])));
        }
    }
    if !rule.condition.trim().is_empty() {
        said.push(format!("if {}", one_line(&rule.condition)));
    }
    said.join(" ")
}

/// The fields of a rule that changed, `field: before -> after` each.
fn rule_changes_said(before: &PolicyRule, after: &PolicyRule) -> (Vec<String>, String) {
    let (old, new) = (rule_json(before), rule_json(after));
    let mut fields = Vec::new();
    let mut said = Vec::new();
    for key in [
        "effect",
        "agent",
        "person",
        "audience",
        "resource",
        "actions",
        "condition",
        "description",
    ] {
        if old[key] != new[key] {
            fields.push(key.to_owned());
            said.push(format!(
                "{key}: {} -> {}",
                field_said(key, &old[key]),
                field_said(key, &new[key])
            ));
        }
    }
    (fields, said.join("; "))
}

/// One table row per change: rules, then role assignments, then
/// attribute declarations.
fn rows(changes: &DiffPolicyVersionsResponse) -> Vec<Value> {
    let row = |change: &str, what: &str, id: String, detail: String| json!({"change": change, "what": what, "id": id, "detail": detail});
    let mut rows = Vec::new();
    for rule in &changes.rule_changes {
        let id = rule.policy_id.clone();
        match (rule.change(), &rule.before, &rule.after) {
            (ChangeType::Added, _, Some(after)) => {
                rows.push(row("added", "rule", id, rule_said(after)));
            }
            (ChangeType::Removed, Some(before), _) => {
                rows.push(row("removed", "rule", id, rule_said(before)));
            }
            (_, Some(before), Some(after)) => {
                let (_, said) = rule_changes_said(before, after);
                rows.push(row("changed", "rule", id, said));
            }
            _ => rows.push(row("changed", "rule", id, String::new())),
        }
    }
    let assignment = |a: &RoleAssignment| format!("{} -> role:{}", a.member, a.role);
    for added in &changes.role_assignments_added {
        rows.push(row(
            "added",
            "role assignment",
            assignment(added),
            String::new(),
        ));
    }
    for removed in &changes.role_assignments_removed {
        rows.push(row(
            "removed",
            "role assignment",
            assignment(removed),
            String::new(),
        ));
    }
    let attribute = |a: &AttributeDefinition| {
        (
            format!(
                "{}.{}",
                enum_name(a.source().as_str_name(), "ATTRIBUTE_SOURCE_"),
                a.name
            ),
            enum_name(a.r#type().as_str_name(), "ATTRIBUTE_TYPE_"),
        )
    };
    for added in &changes.attributes_added {
        let (id, kind) = attribute(added);
        rows.push(row("added", "attribute", id, kind));
    }
    for removed in &changes.attributes_removed {
        let (id, kind) = attribute(removed);
        rows.push(row("removed", "attribute", id, kind));
    }
    rows
}

/// The comparison as agentctl prints it in JSON: DiffPolicyVersions'
/// fields (rules in the policy file form), each rule change with the
/// fields that changed, and whether anything did.
fn diff_json(tenant: &str, from: &Side, to: &Side, changes: &DiffPolicyVersionsResponse) -> Value {
    let rule_changes: Vec<Value> = changes
        .rule_changes
        .iter()
        .map(|change| {
            let changed_fields = match (&change.before, &change.after) {
                (Some(before), Some(after)) => rule_changes_said(before, after).0,
                _ => Vec::new(),
            };
            json!({
                "policy_id": change.policy_id,
                "change": change.change().as_str_name(),
                "changed_fields": changed_fields,
                "before": change.before.as_ref().map(rule_json),
                "after": change.after.as_ref().map(rule_json),
            })
        })
        .collect();
    let assignments =
        |list: &[RoleAssignment]| list.iter().map(assignment_json).collect::<Vec<_>>();
    let attributes =
        |list: &[AttributeDefinition]| list.iter().map(attribute_json).collect::<Vec<_>>();
    json!({
        "tenant": tenant,
        "from": from.json(),
        "to": to.json(),
        "different": !rows(changes).is_empty(),
        "rule_changes": rule_changes,
        "role_assignments_added": assignments(&changes.role_assignments_added),
        "role_assignments_removed": assignments(&changes.role_assignments_removed),
        "attributes_added": attributes(&changes.attributes_added),
        "attributes_removed": attributes(&changes.attributes_removed),
    })
}

#[cfg(test)]
mod tests {
    use agentsec_proto::common::v1::Effect;
    use agentsec_proto::policy::v1::AttributeSource;

    use super::*;

    fn rule(id: &str, resource: &str) -> PolicyRule {
        PolicyRule {
            id: id.to_owned(),
            effect: Effect::Allow as i32,
            agent: "*".to_owned(),
            resource: resource.to_owned(),
            actions: vec!["tools/call".to_owned()],
            ..Default::default()
        }
    }

    #[test]
    fn rules_are_matched_by_id_and_changed_fields_are_named() {
        let before = PolicySet {
            rules: vec![rule("kept", "a"), rule("changed", "b"), rule("gone", "c")],
            role_assignments: vec![RoleAssignment {
                member: "agent:agt_1".to_owned(),
                role: "bots".to_owned(),
            }],
            attributes: Vec::new(),
        };
        let mut changed = rule("changed", "b/*");
        changed.condition = "agent.tier >= 2 &&\n  has(agent.x)".to_owned();
        let after = PolicySet {
            rules: vec![rule("new", "d"), changed, rule("kept", "a")],
            role_assignments: Vec::new(),
            attributes: vec![AttributeDefinition {
                source: AttributeSource::Agent as i32,
                name: "tier".to_owned(),
                r#type: agentsec_proto::policy::v1::AttributeType::Int as i32,
                description: String::new(),
            }],
        };
        let changed = rows(&compare(&before, &after));
        let said: Vec<String> = changed
            .iter()
            .map(|row| {
                format!(
                    "{} {} {}: {}",
                    row["change"].as_str().unwrap(),
                    row["what"].as_str().unwrap(),
                    row["id"].as_str().unwrap(),
                    row["detail"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(
            said,
            [
                "changed rule changed: resource: b -> b/*; condition: - -> agent.tier >= 2 && has(agent.x)",
                "removed rule gone: allow agent=* resource=c actions=tools/call",
                "added rule new: allow agent=* resource=d actions=tools/call",
                "removed role assignment agent:agt_1 -> role:bots: ",
                "added attribute agent.tier: int",
            ]
        );
        assert!(rows(&compare(&after, &after)).is_empty());
    }
}
