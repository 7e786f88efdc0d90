//! Start-up failures name their cause instead of panicking.

use std::net::SocketAddr;

use agentsec_common::config::{load_from, DatabaseConfig};
use agentsec_common::server::bind;
use agentsec_integration_tests::TestBackend;

#[tokio::test]
async fn a_port_in_use_is_named() -> anyhow::Result<()> {
    let taken = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = taken.local_addr()?;
    let err = bind(addr).await.expect_err("the port is taken");
    let message = err.to_string();
    assert!(message.contains(&addr.to_string()), "{message}");
    assert!(message.contains("server.listen"), "{message}");
    assert!(message.to_lowercase().contains("in use"), "{message}");
    Ok(())
}

#[tokio::test]
async fn service_configs_reject_unknown_keys_and_bad_urls() {
    let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    };
    let err =
        load_from::<agentsec_identity::Config>(None, env(&[("AGENTSEC_ISSUER", "not a url")]))
            .expect_err("bad issuer");
    assert!(err.to_string().contains("`issuer`"), "{err}");
    let err = load_from::<agentsec_policy::Config>(None, env(&[("AGENTSEC_CACHE__TTL", "5")]))
        .expect_err("unknown section");
    assert!(err.to_string().contains("cache"), "{err}");
    let err = load_from::<agentsec_audit::Config>(
        None,
        env(&[("AGENTSEC_DATABASE__URL", "postgres:///no-host")]),
    )
    .expect_err("no host");
    assert!(err.to_string().contains("`database.url`"), "{err}");
    let err = load_from::<agentsec_exchange::Config>(
        None,
        env(&[("AGENTSEC_DATABASE__ACQUIRE_TIMEOUT_MS", "10")]),
    )
    .expect_err("too short a wait");
    assert!(
        err.to_string().contains("`database.acquire_timeout_ms`"),
        "{err}"
    );
    let set = load_from::<agentsec_exchange::Config>(
        None,
        env(&[
            ("AGENTSEC_DATABASE__ACQUIRE_TIMEOUT_MS", "250"),
            ("AGENTSEC_DATABASE__MIGRATE_ON_START", "false"),
        ]),
    )
    .expect("both settable by env");
    assert_eq!(set.database.acquire_timeout_ms, 250);
    assert!(!set.database.migrate_on_start);
    for defaults in [
        load_from::<agentsec_exchange::Config>(None, env(&[])).map(|_| ()),
        load_from::<agentsec_identity::Config>(None, env(&[])).map(|_| ()),
    ] {
        defaults.expect("defaults load");
    }
}

#[tokio::test]
async fn an_unreachable_database_fails_start_with_its_kind() -> anyhow::Result<()> {
    let backend = TestBackend::from_env().await?;
    let mut database: DatabaseConfig = backend.database("policy-svc");
    // Port 1 on loopback: nothing listens there, so the connect is refused.
    database.url = "postgres://postgres@127.0.0.1:1/test".to_owned();
    database.schema = None;
    database.connect_timeout_secs = 1;
    let config = agentsec_policy::Config::for_test(database, backend.redis());
    let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let err = agentsec_policy::serve(config, listener, std::future::pending())
        .await
        .expect_err("no database there");
    assert!(err.to_string().contains("postgres"), "{err}");
    Ok(())
}

#[tokio::test]
async fn tls_settings_are_checked_and_their_files_named() -> anyhow::Result<()> {
    let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    };
    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[("AGENTSEC_TLS__CERT_FILE", "/tls.crt")], "tls.key_file"),
        (
            &[
                ("AGENTSEC_TLS__CERT_FILE", "/tls.crt"),
                ("AGENTSEC_TLS__KEY_FILE", "/tls.key"),
                ("AGENTSEC_TLS__CLIENT_AUTH", "required"),
            ],
            "tls.client_ca_file",
        ),
        (
            &[("AGENTSEC_TLS__RELOAD_INTERVAL_SECS", "0")],
            "tls.reload_interval_secs",
        ),
        (
            &[("AGENTSEC_TLS__CLIENT__CERT_FILE", "/c.crt")],
            "tls.client.key_file",
        ),
    ];
    for (settings, key) in cases {
        let err = load_from::<agentsec_exchange::Config>(None, env(settings))
            .expect_err("inconsistent TLS settings");
        assert!(err.to_string().contains(key), "{key}: {err}");
    }
    // A certificate file that is not there stops the start, named.
    let backend = TestBackend::from_env().await?;
    let mut config = agentsec_audit::Config::for_test(backend.database("audit-svc"));
    config.admin.jwks = Some(r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"k","alg":"EdDSA","use":"sig"}]}"#.to_owned());
    config.admin.issuer = Some("http://127.0.0.1:7401".to_owned());
    config.tls.cert_file = Some("/nonexistent/tls.crt".into());
    config.tls.key_file = Some("/nonexistent/tls.key".into());
    let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let err = agentsec_audit::serve(config, listener, std::future::pending())
        .await
        .expect_err("no certificate file");
    let message = err.to_string();
    assert!(message.contains("tls.cert_file"), "{message}");
    assert!(message.contains("/nonexistent/tls.crt"), "{message}");
    backend.clean_up(&["audit-svc"]).await
}
