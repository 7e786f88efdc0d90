//! The `agentctl policy` subcommands over stored versions: `apply`
//! stores a file's set, `rollback` an earlier version's content, `list`
//! shows a version's set and `history` the versions.

use std::path::PathBuf;

use agentsec_proto::policy::v1::{
    GetPolicySetRequest, ListPolicyVersionsRequest, PolicySetVersion, PutPolicySetRequest,
    RollbackPolicySetRequest,
};
use serde_json::{json, Value};

use super::document::{assignment_json, attribute_json, policy_set_json, rule_json, Input};
use super::{change_refused, counted, diff, version_not_found, Admin};
use crate::admin::{bearer, failed};
use crate::output::{cell, time, Column, Format};
use crate::page::{LimitArgs, Pager};

#[derive(Debug, clap::Args)]
pub struct Apply {
    /// The tenant whose policy set is replaced (a new tenant gets version 1).
    #[arg(long)]
    tenant: String,
    /// The policy file (YAML or JSON; `-` for stdin).
    #[arg(long)]
    file: PathBuf,
    /// Store only if this is the current version (0: the tenant has none
    /// yet); refused otherwise.
    #[arg(long)]
    expected_version: Option<u64>,
    /// Why, recorded with the version.
    #[arg(long, default_value = "agentctl policy apply")]
    description: String,
}

#[derive(Debug, clap::Args)]
pub struct List {
    /// The tenant.
    #[arg(long)]
    tenant: String,
    /// This version instead of the current one.
    #[arg(long, default_value_t = 0)]
    version: u64,
}

#[derive(Debug, clap::Args)]
pub struct History {
    /// The tenant.
    #[arg(long)]
    tenant: String,
    #[command(flatten)]
    limit: LimitArgs,
}

#[derive(Debug, clap::Args)]
pub struct Rollback {
    /// The tenant.
    #[arg(long)]
    tenant: String,
    /// The version whose content becomes current again.
    #[arg(long)]
    to: u64,
    /// Roll back only if this is the current version; refused otherwise.
    #[arg(long)]
    expected_version: Option<u64>,
    /// Why, recorded with the new version.
    #[arg(long, default_value = "agentctl policy rollback")]
    description: String,
}

const VERSION: [Column; 9] = [
    Column::new("TENANT", "tenant"),
    Column::new("VERSION", "version"),
    Column::new("CREATED", "create_time"),
    Column::new("AUTHOR", "author"),
    Column::new("DESCRIPTION", "description"),
    Column::drawn("ROLLED BACK FROM", |version| {
        match version["rolled_back_from"].as_u64() {
            Some(restored) if restored > 0 => restored.to_string(),
            _ => "-".to_owned(),
        }
    }),
    Column::new("RULES", "rule_count"),
    Column::new("ROLE ASSIGNMENTS", "role_assignment_count"),
    Column::new("SHA256", "content_sha256"),
];

const HISTORY: [Column; 6] = [
    Column::new("VERSION", "version"),
    Column::new("CREATED", "create_time"),
    Column::new("AUTHOR", "author"),
    Column::new("RULES", "rule_count"),
    Column::drawn("SHA256", |version| {
        version["content_sha256"]
            .as_str()
            .map_or("-".to_owned(), |sha| sha.chars().take(12).collect())
    }),
    Column::drawn("DESCRIPTION", |version| {
        let description = cell(&version["description"]);
        match version["rolled_back_from"].as_u64() {
            Some(restored) if restored > 0 => format!("{description} (content of {restored})"),
            _ => description,
        }
    }),
];

/// A version's metadata as agentctl prints it in JSON (proto field names).
fn version_json(version: &PolicySetVersion) -> Value {
    json!({
        "tenant": version.tenant,
        "version": version.version,
        "create_time": time(version.create_time.as_ref()),
        "author": version.author,
        "description": version.description,
        "rolled_back_from": version.rolled_back_from,
        "rule_count": version.rule_count,
        "role_assignment_count": version.role_assignment_count,
        "content_sha256": version.content_sha256,
    })
}

pub async fn apply(admin: &mut Admin, apply: Apply) -> anyhow::Result<()> {
    let set = Input::read(&apply.file)?.policy_set()?;
    let version = admin
        .client
        .put_policy_set(bearer(
            PutPolicySetRequest {
                tenant: apply.tenant.clone(),
                policy_set: Some(set),
                expected_version: apply.expected_version,
                description: apply.description,
            },
            &admin.token,
        )?)
        .await
        .map_err(|status| change_refused(status, &apply.tenant, Some(&apply.file)))?
        .into_inner()
        .version
        .unwrap_or_default();
    print!("{}", admin.format.one(&version_json(&version), &VERSION));
    Ok(())
}

const RULES: [Column; 8] = [
    Column::new("ID", "id"),
    Column::enumeration("EFFECT", "effect", "EFFECT_"),
    Column::new("AGENT", "agent"),
    Column::new("PERSON", "person"),
    Column::new("AUDIENCE", "audience"),
    Column::new("RESOURCE", "resource"),
    Column::new("ACTIONS", "actions"),
    Column::drawn("CONDITION", |rule| {
        diff::one_line(&cell(&rule["condition"]))
    }),
];

const ASSIGNMENTS: [Column; 2] = [Column::new("MEMBER", "member"), Column::new("ROLE", "role")];

const ATTRIBUTES: [Column; 4] = [
    Column::enumeration("SOURCE", "source", "ATTRIBUTE_SOURCE_"),
    Column::new("NAME", "name"),
    Column::enumeration("TYPE", "type", "ATTRIBUTE_TYPE_"),
    Column::new("DESCRIPTION", "description"),
];

pub async fn list(admin: &mut Admin, list: List) -> anyhow::Result<()> {
    let answer = admin
        .client
        .get_policy_set(bearer(
            GetPolicySetRequest {
                tenant: list.tenant.clone(),
                version: list.version,
            },
            &admin.token,
        )?)
        .await
        .map_err(|status| version_not_found(status, &list.tenant))?
        .into_inner();
    let version = answer.version.unwrap_or_default();
    let set = answer.policy_set.unwrap_or_default();
    if admin.format == Format::Json {
        print!(
            "{}",
            Format::Json.one(
                &json!({"version": version_json(&version), "policy_set": policy_set_json(&set)}),
                &[]
            )
        );
        return Ok(());
    }
    println!(
        "{} version {} ({}, {}): {}, {}, {}\n",
        version.tenant,
        version.version,
        cell(&time(version.create_time.as_ref())),
        cell(&Value::from(version.author.as_str())),
        counted(set.rules.len(), "rule", "rules"),
        counted(
            set.role_assignments.len(),
            "role assignment",
            "role assignments"
        ),
        counted(
            set.attributes.len(),
            "attribute declaration",
            "attribute declarations"
        ),
    );
    let rules: Vec<Value> = set.rules.iter().map(rule_json).collect();
    print!("{}", Format::Table.list(&rules, &RULES, "no rules"));
    if !set.role_assignments.is_empty() {
        let assignments: Vec<Value> = set.role_assignments.iter().map(assignment_json).collect();
        print!("\n{}", Format::Table.list(&assignments, &ASSIGNMENTS, ""));
    }
    if !set.attributes.is_empty() {
        let attributes: Vec<Value> = set.attributes.iter().map(attribute_json).collect();
        print!("\n{}", Format::Table.list(&attributes, &ATTRIBUTES, ""));
    }
    Ok(())
}

pub async fn history(admin: &mut Admin, history: History) -> anyhow::Result<()> {
    let mut pager = Pager::new(&history.limit);
    let mut versions = Vec::new();
    while let Some(page) = pager.next_page() {
        let answer = admin
            .client
            .list_policy_versions(bearer(
                ListPolicyVersionsRequest {
                    tenant: history.tenant.clone(),
                    page: Some(page),
                },
                &admin.token,
            )?)
            .await
            .map_err(failed)?
            .into_inner();
        pager.take(&mut versions, answer.versions, answer.page);
    }
    let versions: Vec<Value> = versions.iter().map(version_json).collect();
    let none = format!(
        "tenant {} has no policy set versions: `agentctl policy apply` stores the first",
        history.tenant
    );
    print!("{}", admin.format.list(&versions, &HISTORY, &none));
    Ok(())
}

pub async fn rollback(admin: &mut Admin, rollback: Rollback) -> anyhow::Result<()> {
    let version = admin
        .client
        .rollback_policy_set(bearer(
            RollbackPolicySetRequest {
                tenant: rollback.tenant.clone(),
                to_version: rollback.to,
                expected_version: rollback.expected_version,
                description: rollback.description,
            },
            &admin.token,
        )?)
        .await
        .map_err(|status| change_refused(status, &rollback.tenant, None))?
        .into_inner()
        .version
        .unwrap_or_default();
    print!("{}", admin.format.one(&version_json(&version), &VERSION));
    Ok(())
}
