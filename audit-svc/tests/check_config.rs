//! `audit-svc --check-config` shows its database password as
//! `<redacted>`. (Being an integration test, it also makes `cargo test`
//! build the binary that agentctl/tests/compose.rs runs.)

use std::process::Command;

#[test]
fn check_config_prints_no_secret() {
    let output = Command::new(env!("CARGO_BIN_EXE_audit-svc"))
        .arg("--check-config")
        .env_clear()
        .envs([
            (
                "AGENTSEC_ADMIN__JWKS_URI",
                "http://127.0.0.1:7401/.well-known/jwks.json",
            ),
            ("AGENTSEC_ADMIN__ISSUER", "http://127.0.0.1:7401"),
            (
                "AGENTSEC_DATABASE__URL",
                "postgres://agentsec:db-password-0123@db:5432/agentsec",
            ),
        ])
        .output()
        .expect("audit-svc runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!stdout.contains("db-password"), "{stdout}");
    assert!(
        stdout.contains("postgres://agentsec:<redacted>@db:5432/agentsec"),
        "{stdout}"
    );
}
