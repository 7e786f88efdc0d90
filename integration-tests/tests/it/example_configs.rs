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

#[test]
fn example_configs_load_and_match_the_defaults() -> anyhow::Result<()> {
    let pairs = [
        example_and_default::<agentsec_identity::Config>("identity-svc.toml")?,
        example_and_default::<agentsec_policy::Config>("policy-svc.toml")?,
        example_and_default::<agentsec_exchange::Config>("exchange-svc.toml")?,
        example_and_default::<agentsec_audit::Config>("audit-svc.toml")?,
    ];
    for (loaded, default) in pairs {
        assert_eq!(loaded, default);
    }
    Ok(())
}
