//! `identity-svc --check-config` shows the configuration without any
//! secret: each one is `<redacted>` with where it came from.

use std::process::Command;

#[test]
fn check_config_prints_no_secret() {
    let secrets = [
        (
            "AGENTSEC_CREDENTIALS__PEPPER",
            "pepper-0123456789abcdef0123456789abcdef",
        ),
        ("AGENTSEC_BOOTSTRAP_ADMIN__CLIENT_ID", "root"),
        (
            "AGENTSEC_BOOTSTRAP_ADMIN__CLIENT_SECRET",
            "admin-secret-0123456789abcdef0123456789",
        ),
        (
            "AGENTSEC_SERVICE_CLIENTS__POLICY_SVC__CLIENT_SECRET",
            "service-secret-0123456789abcdef01234567",
        ),
        (
            "AGENTSEC_SERVICE_CLIENTS__POLICY_SVC__AUDIENCES",
            r#"["agentsec"]"#,
        ),
        (
            "AGENTSEC_DATABASE__URL",
            "postgres://agentsec:db-password-0123@db:5432/agentsec",
        ),
        (
            "AGENTSEC_REDIS__URL",
            "redis://:redis-password-0123@cache:6379/0",
        ),
    ];
    let output = Command::new(env!("CARGO_BIN_EXE_identity-svc"))
        .arg("--check-config")
        .env_clear()
        .envs(secrets)
        .output()
        .expect("identity-svc runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for hidden in [
        "pepper-0123",
        "admin-secret",
        "service-secret",
        "db-password",
        "redis-password",
    ] {
        assert!(!stdout.contains(hidden), "{hidden} shown:\n{stdout}");
    }
    for note in [
        "<redacted> (from the environment (AGENTSEC_CREDENTIALS__PEPPER))",
        "<redacted> (from the environment (AGENTSEC_BOOTSTRAP_ADMIN__CLIENT_SECRET))",
        "postgres://agentsec:<redacted>@db:5432/agentsec (password from the environment (AGENTSEC_DATABASE__URL))",
        "redis://:<redacted>@cache:6379/0",
    ] {
        assert!(stdout.contains(note), "{note} missing:\n{stdout}");
    }
}

/// One shell can set up agentctl and start a service: agentctl's variables
/// (`AGENTCTL_*`) are not the service's, and a stray `AGENTSEC_*` one is
/// refused by its name as written.
#[test]
fn agentctl_variables_do_not_reach_the_service_and_unknown_ones_are_named() {
    let agentctl = [
        ("AGENTCTL_IDENTITY_URL", "http://127.0.0.1:7401"),
        ("AGENTCTL_ADMIN_SECRET_FILE", "/tmp/admin-secret"),
        ("AGENTCTL_PERSON_TOKEN", "eyJhbGciOiJub25lIn0.e30."),
    ];
    let run = |extra: &[(&str, &str)]| {
        Command::new(env!("CARGO_BIN_EXE_identity-svc"))
            .arg("--check-config")
            .env_clear()
            .envs(agentctl)
            .envs(extra.iter().copied())
            .output()
            .expect("identity-svc runs")
    };
    let accepted = run(&[]);
    assert!(
        accepted.status.success(),
        "{}",
        String::from_utf8_lossy(&accepted.stderr)
    );
    let refused = run(&[("AGENTSEC_IDENTITY_URL", "http://127.0.0.1:7401")]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("from the environment variable `AGENTSEC_IDENTITY_URL`"),
        "{stderr}"
    );
}
