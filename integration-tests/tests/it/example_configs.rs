//! The example config files in `deploy/config/` are valid and equal to the
//! defaults, so they document exactly what a service does unconfigured.

use std::path::PathBuf;

use agentsec_common::config::{load_from, ServiceConfig};

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/config")
        .join(name)
}

fn assert_example_is_the_default<C: ServiceConfig>(file: &str) {
    let loaded: C =
        load_from(Some(&example(file)), Vec::new()).unwrap_or_else(|err| panic!("{file}: {err}"));
    let as_json = |config: &C| serde_json::to_value(config).unwrap_or_default();
    assert_eq!(as_json(&loaded), as_json(&C::default()), "{file}");
}

#[test]
fn example_configs_load_and_match_the_defaults() {
    assert_example_is_the_default::<agentsec_identity::Config>("identity-svc.toml");
    assert_example_is_the_default::<agentsec_policy::Config>("policy-svc.toml");
    assert_example_is_the_default::<agentsec_exchange::Config>("exchange-svc.toml");
    assert_example_is_the_default::<agentsec_audit::Config>("audit-svc.toml");
}
