//! The exchange-svc binary.

fn main() -> std::process::ExitCode {
    agentsec_common::bootstrap::run::<agentsec_exchange::Config, _, _>(
        "exchange-svc",
        agentsec_exchange::serve,
    )
}
