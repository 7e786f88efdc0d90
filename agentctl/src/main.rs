//! `agentctl`: the AgentSec operator CLI. `agentctl demo` runs the story
//! AgentSec exists for against a stack it starts (or a running one), and prints what happened
//! and why; `agentctl dev` runs all four
//! services in one process on the default ports, on SQLite under a local
//! data directory, for a laptop; `agentctl agent` registers agents and
//! creates their credentials; `agentctl policy put` replaces a tenant's
//! policy set; `agentctl grant create` records a person's delegation;
//! `agentctl token user` mints development person tokens.

mod admin;
mod agent;
mod demo;
mod dev;
mod dev_users;
mod grant;
mod health;
mod policy;
mod stack;
mod token;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "agentctl", version, about = "AgentSec operator CLI")]
struct Cli {
    #[command(flatten)]
    tls: admin::TlsArgs,
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
    /// Manage tenants' policy sets (admin).
    Policy(policy::PolicyArgs),
    /// Delegation grants of people to agents.
    Grant(grant::GrantArgs),
    /// Development tokens (needs a data directory of `agentctl dev`).
    Token(token::TokenArgs),
    /// A service's gRPC health status; exits non-zero unless SERVING.
    Health(health::HealthArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
        Command::Demo(args) => {
            runtime.block_on(async { demo::run(args, &cli.tls.client()?).await })
        }
        Command::Dev(args) => runtime.block_on(dev::run(args)),
        Command::Agent(args) => {
            runtime.block_on(async { agent::run(args, &cli.tls.client()?).await })
        }
        Command::Policy(args) => {
            runtime.block_on(async { policy::run(args, &cli.tls.client()?).await })
        }
        Command::Grant(args) => {
            runtime.block_on(async { grant::run(args, &cli.tls.client()?).await })
        }
        Command::Token(args) => token::run(args),
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
