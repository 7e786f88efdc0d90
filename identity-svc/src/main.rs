//! The identity-svc binary.

fn main() -> std::process::ExitCode {
    agentsec_common::bootstrap::run::<agentsec_identity::Config, agentsec_identity::Migrator, _, _>(
        "identity-svc",
        agentsec_identity::serve,
    )
}
