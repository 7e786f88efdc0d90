//! `agentctl`: the AgentSec operator CLI. `agentctl demo` runs the story
//! AgentSec exists for against a stack it starts (or a running one), and prints what happened
//! and why; `agentctl dev` runs all four
//! services in one process on the default ports, on SQLite under a local
//! data directory, for a laptop; `agentctl agent` manages the agent
//! registry (register, get, list, update, suspend, reactivate, revoke) and
//! agents' credentials (`agent credential`); `agentctl policy` applies,
//! validates, tests, lists, diffs and rolls back tenants' policy sets from
//! YAML or JSON files and shows their history; `agentctl grant` creates,
//! lists and revokes a person's delegations; `agentctl check` and `agentctl explain` ask
//! policy-svc for a decision (from flags, a JSON file, or a token as
//! ext_authz sees it); `agentctl token` gets (client-credentials),
//! exchanges, introspects and decodes tokens (verified against the
//! issuer's JWKS, the `act` chain drawn), mints development person tokens
//! (`token user`) and prints their issuer (`token dev-issuer`); `agentctl
//! audit` queries, follows, verifies and exports the audit trail (progress on a
//! terminal for the long ones); `agentctl health` is a probe of one
//! service's gRPC health; `agentctl completions` prints a shell
//! completion script. The API subcommands print tables, or JSON with `--output json`
//! (module `output`), and find the services in the profile `agentctl dev`
//! writes where no flag or variable names them (module `profile`).

mod admin;
mod agent;
mod audit;
mod check;
mod demo;
mod dev;
mod dev_users;
mod grant;
mod health;
mod output;
mod page;
mod policy;
mod profile;
mod progress;
mod stack;
mod token;

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "agentctl", version, about = "AgentSec operator CLI")]
struct Cli {
    #[command(flatten)]
    tls: admin::TlsArgs,
    /// The profile to take endpoints and admin credentials from where no
    /// flag or variable gives them (`agentctl dev` writes
    /// `<data dir>/profile.json`; default: `.agentsec/profile.json` if
    /// present).
    #[arg(long, env = "AGENTCTL_PROFILE", global = true)]
    profile: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Walk through agent identity, delegation, token exchange, policy,
    /// revocation and audit, on all four services started on ephemeral
    /// ports or (--running) on a running stack.
    Demo(demo::DemoArgs),
    /// Run identity, policy, exchange and audit in one process (ports 7401-7404).
    Dev(dev::DevArgs),
    /// Register agents and manage their credentials (admin).
    Agent(agent::AgentArgs),
    /// Apply, validate, test, list, diff and roll back tenants' policy
    /// sets; their history (admin).
    Policy(policy::PolicyArgs),
    /// Delegation grants of people to agents.
    Grant(grant::GrantArgs),
    /// Ask policy-svc for a decision (from flags, a file, or a token).
    Check(check::CheckArgs),
    /// A decision with every candidate rule's evaluation (admin).
    Explain(check::ExplainArgs),
    /// Query, verify and export the audit trail (admin).
    Audit(audit::AuditArgs),
    /// Print a shell completion script.
    #[command(after_help = "Install, e.g.:
  bash: agentctl completions bash > ~/.local/share/bash-completion/completions/agentctl
  zsh:  agentctl completions zsh > \"${fpath[1]}/_agentctl\"
  fish: agentctl completions fish > ~/.config/fish/completions/agentctl.fish")]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Get, exchange, introspect and decode tokens; development person
    /// tokens.
    Token(token::TokenArgs),
    /// A service's gRPC health status; exits non-zero unless SERVING.
    Health(health::HealthArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `dev` writes the profile; every other subcommand reads it, and is
    // parsed again with it standing in for unset variables.
    let cli = if matches!(cli.command, Command::Dev(_)) {
        cli
    } else {
        if let Err(err) = profile::apply(cli.profile.as_deref()) {
            eprintln!("agentctl: {err:#}");
            return ExitCode::FAILURE;
        }
        Cli::parse()
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("agentctl: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "agentctl",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Demo(args) => {
            runtime.block_on(async { demo::run(args, &cli.tls.client()?).await })
        }
        Command::Dev(args) => runtime.block_on(dev::run(args)),
        Command::Agent(args) => {
            runtime.block_on(async { agent::run(args, &cli.tls.client()?).await })
        }
        // `policy diff` answers with its exit status, as diff(1) does.
        Command::Policy(args) => {
            match runtime.block_on(async { policy::run(args, &cli.tls.client()?).await }) {
                Ok(status) => return status,
                Err(err) => Err(err),
            }
        }
        Command::Grant(args) => {
            runtime.block_on(async { grant::run(args, &cli.tls.client()?).await })
        }
        Command::Check(args) => {
            runtime.block_on(async { check::check(args, &cli.tls.client()?).await })
        }
        Command::Explain(args) => {
            runtime.block_on(async { check::explain(args, &cli.tls.client()?).await })
        }
        Command::Audit(args) => {
            runtime.block_on(async { audit::run(args, &cli.tls.client()?).await })
        }
        Command::Token(args) => {
            runtime.block_on(async { token::run(args, &cli.tls.client()?).await })
        }
        Command::Health(args) => {
            runtime.block_on(async { health::run(args, &cli.tls.client()?).await })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("agentctl: {err:#}");
            ExitCode::FAILURE
        }
    }
}
