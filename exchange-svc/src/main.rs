//! The exchange-svc binary.

fn main() -> std::process::ExitCode {
    agentsec_common::bootstrap::run::<agentsec_exchange::Config, agentsec_exchange::Migrator, _, _>(
        "exchange-svc",
        agentsec_exchange::serve,
    )
}
