//! The shared `main` of every service binary: parse the command line, load
//! the layered config, start telemetry, bind, serve until SIGTERM/Ctrl-C
//! (or, with `--migrate`, run the database migrations and exit).
//! Start-up failures print one line naming the problem and exit with 1
//! (2 for bad config), never a panic backtrace.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;

use clap::Parser;
use tokio::net::TcpListener;

use crate::config::{self, ServiceConfig};
use crate::server::{self, StartError};

/// A shutdown future handed to a service's `serve`.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

#[derive(Debug, Parser)]
struct ServiceArgs {
    /// TOML config file; `AGENTSEC_*` variables override it.
    #[arg(long, env = "AGENTSEC_CONFIG")]
    config: Option<PathBuf>,
    /// Load and validate the config, print it as JSON (secrets redacted,
    /// with where each came from), and exit.
    #[arg(long)]
    check_config: bool,
    /// Run the pending database migrations and exit (0 when the schema is
    /// current); safe to run beside replicas and other migrators.
    #[arg(long, conflicts_with = "check_config")]
    migrate: bool,
}

/// Runs a service binary: `serve` gets the config, a bound listener and the
/// shutdown signal; `M` are the service's migrations.
pub fn run<C, M, F, Fut>(service_name: &'static str, serve: F) -> ExitCode
where
    C: ServiceConfig,
    M: sea_orm_migration::MigratorTrait,
    F: FnOnce(C, TcpListener, Shutdown) -> Fut,
    Fut: Future<Output = Result<(), StartError>>,
{
    let args = ServiceArgs::parse();
    let config: C = match config::load(args.config.as_deref()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{service_name}: {err}");
            return ExitCode::from(2);
        }
    };
    if args.check_config {
        let shown = serde_json::to_value(&config).map(|value| {
            crate::redact::config_for_display(value, args.config.as_deref(), &|name| {
                std::env::var_os(name).is_some()
            })
        });
        return match shown.and_then(|shown| serde_json::to_string_pretty(&shown)) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("{service_name}: {err}");
                ExitCode::from(2)
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("{service_name}: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let _telemetry = crate::telemetry::init(config.telemetry(), service_name)
            .map_err(|err| err.to_string())?;
        if args.migrate {
            crate::foundation::migrate_only::<M>(&config)
                .await
                .map_err(|err| err.to_string())?;
            tracing::info!("the database schema is current");
            return Ok(());
        }
        let listener = server::bind(config.server().listen)
            .await
            .map_err(|err| err.to_string())?;
        serve(config, listener, Box::pin(server::shutdown_signal()))
            .await
            .map_err(|err| err.to_string())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{service_name}: {message}");
            ExitCode::FAILURE
        }
    }
}
