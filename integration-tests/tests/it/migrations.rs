//! Migrations outside the service: `--migrate` (what a migrations Job or
//! init container runs) brings a fresh schema up to date, also when several
//! migrators start at once; a service told not to migrate
//! (`database.migrate_on_start = false`) refuses an unmigrated schema
//! naming the setting, and starts on a migrated one.

use std::net::SocketAddr;
use std::time::Duration;

use agentsec_common::foundation::migrate_only;
use agentsec_common::server::bind;
use agentsec_integration_tests::backend::TestBackend;
use agentsec_integration_tests::cluster::{
    extra_token_issuer_key, health_status, EXTRA_TOKEN_ISSUER,
};
use agentsec_integration_tests::eventually::eventually;
use anyhow::Context as _;
use tonic_health::pb::health_check_response::ServingStatus;

#[tokio::test]
async fn a_service_not_migrating_needs_the_migrators_which_may_run_together() -> anyhow::Result<()>
{
    let backend = TestBackend::from_env().await?;
    let mut database = backend.database("audit-svc");
    database.migrate_on_start = false;
    let mut config = agentsec_audit::Config::for_test(database);
    let key = extra_token_issuer_key().context("no test signing key")?;
    config.admin.jwks = Some(serde_json::json!({ "keys": [key.public_jwk()] }).to_string());
    config.admin.issuer = Some(EXTRA_TOKEN_ISSUER.to_owned());

    let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let refused = agentsec_audit::serve(config.clone(), listener, std::future::pending())
        .await
        .expect_err("an unmigrated schema");
    let message = refused.to_string();
    assert!(
        message.contains("not current") && message.contains("`database.migrate_on_start"),
        "{message}"
    );
    assert!(message.contains("--migrate"), "{message}");

    if backend.is_postgres() {
        // Replicas and Jobs of one release start together.
        let (first, second, third) = tokio::join!(
            migrate_only::<agentsec_audit::Migrator>(&config),
            migrate_only::<agentsec_audit::Migrator>(&config),
            migrate_only::<agentsec_audit::Migrator>(&config),
        );
        first?;
        second?;
        third?;
    } else {
        // SQLite is one process's file: one migrator.
        migrate_only::<agentsec_audit::Migrator>(&config).await?;
    }
    // Nothing left to do: a migrator run again succeeds.
    migrate_only::<agentsec_audit::Migrator>(&config).await?;

    let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let service = tokio::spawn(agentsec_audit::serve(config, listener, async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    }));
    let service_ref = &service;
    let serving = eventually(
        "audit-svc SERVING",
        Duration::from_secs(30),
        || async move {
            if service_ref.is_finished() {
                return Ok(Some(false));
            }
            let status = health_status(addr, "").await.ok();
            Ok((status == Some(ServingStatus::Serving)).then_some(true))
        },
    )
    .await?;
    if !serving {
        anyhow::bail!("audit-svc stopped during start-up: {:?}", service.await?);
    }
    let _ = stop.send(true);
    service.await??;
    backend.clean_up(&["audit-svc"]).await
}
