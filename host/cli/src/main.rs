//! The `jobset` command. Parses arguments and hands over to the crates.
#![forbid(unsafe_code)]

mod cli;
mod controller_cmd;
mod outcome;
mod policy_cmd;
mod run;
mod sim_cmd;
mod webhook_args;

fn main() -> std::process::ExitCode {
    cli::main()
}
