//! `exchange-svc --check-config` shows its client secret at identity-svc
//! as `<redacted>`.

use std::process::Command;

#[test]
fn check_config_prints_no_secret() {
    let output = Command::new(env!("CARGO_BIN_EXE_exchange-svc"))
        .arg("--check-config")
        .env_clear()
        .envs([
            ("AGENTSEC_IDENTITY__ENDPOINT", "http://127.0.0.1:7401"),
            ("AGENTSEC_IDENTITY__CLIENT_ID", "exchange_svc"),
            (
                "AGENTSEC_IDENTITY__CLIENT_SECRET",
                "exchange-secret-0123456789abcdef",
            ),
        ])
        .output()
        .expect("exchange-svc runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!stdout.contains("exchange-secret"), "{stdout}");
    assert!(
        stdout.contains("<redacted> (from the environment (AGENTSEC_IDENTITY__CLIENT_SECRET))"),
        "{stdout}"
    );
}
