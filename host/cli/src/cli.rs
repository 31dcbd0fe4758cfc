//! Argument parsing and dispatch for the `jobset` command.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// JobSet controller with policies as WebAssembly plugins, and a simulated
/// cluster to run it on.
#[derive(Parser, Debug)]
#[command(name = "jobset", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the JobSet CustomResourceDefinition (YAML).
    Crd,
}

/// Runs the command line; exit codes: 0 success, 1 failure, 2 bad input.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::Crd => {
            print!("{}", jobset_api::crd::crd_yaml());
            ExitCode::SUCCESS
        }
    }
}
