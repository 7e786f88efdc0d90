//! The policy-svc binary.

fn main() -> std::process::ExitCode {
    agentsec_common::bootstrap::run::<agentsec_policy::Config, agentsec_policy::Migrator, _, _>(
        "policy-svc",
        agentsec_policy::serve,
    )
}
