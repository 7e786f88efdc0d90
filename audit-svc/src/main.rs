//! The audit-svc binary.

fn main() -> std::process::ExitCode {
    agentsec_common::bootstrap::run::<agentsec_audit::Config, agentsec_audit::Migrator, _, _>(
        "audit-svc",
        agentsec_audit::serve,
    )
}
