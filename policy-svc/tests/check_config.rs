//! `policy-svc --check-config` shows its client secret at identity-svc and
//! its database password as `<redacted>`. (Being an integration test, it
//! also makes `cargo test` build the binary that agentctl/tests/compose.rs
//! runs.)

use std::process::Command;

#[test]
fn check_config_prints_no_secret() {
    let output = Command::new(env!("CARGO_BIN_EXE_policy-svc"))
        .arg("--check-config")
        .env_clear()
        .envs([
            (
                "AGENTSEC_ADMIN__JWKS_URI",
                "http://127.0.0.1:7401/.well-known/jwks.json",
            ),
            ("AGENTSEC_ADMIN__ISSUER", "http://127.0.0.1:7401"),
            ("AGENTSEC_IDENTITY__ENDPOINT", "http://127.0.0.1:7401"),
            ("AGENTSEC_IDENTITY__CLIENT_ID", "policy_svc"),
            (
                "AGENTSEC_IDENTITY__CLIENT_SECRET",
                "policy-secret-0123456789abcdef",
            ),
            (
                "AGENTSEC_DATABASE__URL",
                "postgres://agentsec:db-password-0123@db:5432/agentsec",
            ),
        ])
        .output()
        .expect("policy-svc runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for hidden in ["policy-secret", "db-password"] {
        assert!(!stdout.contains(hidden), "{hidden} shown:\n{stdout}");
    }
    assert!(
        stdout.contains("<redacted> (from the environment (AGENTSEC_IDENTITY__CLIENT_SECRET))"),
        "{stdout}"
    );
}
