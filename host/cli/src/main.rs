//! The `jobset` command. Parses arguments and hands over to the crates.
#![forbid(unsafe_code)]

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
