//! The example config files in `deploy/config/` are valid and equal to the
//! defaults, so they document exactly what a service does unconfigured.

use std::path::PathBuf;

use agentsec_common::config::{load_from, ServiceConfig};

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/config")
        .join(name)
}

/// The example loaded, and the defaults, both as JSON.
fn example_and_default<C: ServiceConfig>(
    file: &str,
) -> anyhow::Result<(serde_json::Value, serde_json::Value)> {
    let loaded: C = load_from(Some(&example(file)), Vec::new())?;
    Ok((
        serde_json::to_value(&loaded)?,
        serde_json::to_value(C::default())?,
    ))
}

/// identity-svc's key set, which policy-svc (its decision callers
/// authenticate by default) and audit-svc (every caller authenticates)
/// cannot start without.
pub(crate) fn identity_keys_env() -> Vec<(String, String)> {
    vec![
        (
            "AGENTSEC_ADMIN__JWKS_URI".to_owned(),
            "http://127.0.0.1:7401/.well-known/jwks.json".to_owned(),
        ),
        (
            "AGENTSEC_ADMIN__ISSUER".to_owned(),
            "http://127.0.0.1:7401".to_owned(),
        ),
    ]
}

#[test]
fn audit_svc_does_not_start_without_identity_svcs_keys() {
    let err = load_from::<agentsec_audit::Config>(Some(&example("audit-svc.toml")), Vec::new())
        .expect_err("no key set to authenticate callers with");
    assert!(err.to_string().contains("admin.jwks_uri"), "{err}");
}

#[test]
fn policy_svc_does_not_start_with_unauthenticated_decisions_unless_told() -> anyhow::Result<()> {
    let err = load_from::<agentsec_policy::Config>(Some(&example("policy-svc.toml")), Vec::new())
        .expect_err("bearer callers without identity-svc's keys");
    assert!(err.to_string().contains("decisions.callers"), "{err}");
    let any = vec![("AGENTSEC_DECISIONS__CALLERS".to_owned(), "any".to_owned())];
    let open: agentsec_policy::Config = load_from(Some(&example("policy-svc.toml")), any)?;
    assert_eq!(
        open.decisions.callers,
        agentsec_policy::DecisionCallers::Any
    );
    Ok(())
}

#[test]
fn example_configs_load_and_match_the_defaults() -> anyhow::Result<()> {
    let mut policy: agentsec_policy::Config =
        load_from(Some(&example("policy-svc.toml")), identity_keys_env())?;
    policy.admin.jwks_uri = None;
    policy.admin.issuer = None;
    let mut audit: agentsec_audit::Config =
        load_from(Some(&example("audit-svc.toml")), identity_keys_env())?;
    audit.admin.jwks_uri = None;
    audit.admin.issuer = None;
    let pairs = [
        example_and_default::<agentsec_identity::Config>("identity-svc.toml")?,
        (
            serde_json::to_value(&policy)?,
            serde_json::to_value(agentsec_policy::Config::default())?,
        ),
        example_and_default::<agentsec_exchange::Config>("exchange-svc.toml")?,
        (
            serde_json::to_value(&audit)?,
            serde_json::to_value(agentsec_audit::Config::default())?,
        ),
    ];
    for (loaded, default) in pairs {
        assert_eq!(loaded, default);
    }
    Ok(())
}

/// The commented-out `[[trusted_issuers]]` example of identity-svc, once
/// uncommented, is a valid configuration.
#[test]
fn the_trusted_issuer_example_is_valid_when_uncommented() -> anyhow::Result<()> {
    use anyhow::Context as _;
    let text = std::fs::read_to_string(example("identity-svc.toml"))?;
    let start = text
        .find("# [[trusted_issuers]]")
        .context("no trusted_issuers example")?;
    let uncommented: Vec<&str> = text[start..]
        .lines()
        .filter_map(|line| line.strip_prefix("# "))
        .filter(|line| !line.starts_with('#'))
        .collect();
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("identity-svc.toml");
    std::fs::write(&path, format!("{text}\n{}\n", uncommented.join("\n")))?;
    let loaded: agentsec_identity::Config = load_from(Some(&path), Vec::new())?;
    assert_eq!(loaded.trusted_issuers.len(), 1);
    let issuer = &loaded.trusted_issuers[0];
    assert_eq!(
        issuer.issuer,
        "https://kubernetes.default.svc.cluster.local"
    );
    assert!(issuer.jwks.is_some() && issuer.jwks_uri.is_none());
    assert_eq!(issuer.algorithms, ["RS256", "ES256", "EdDSA"]);
    Ok(())
}
