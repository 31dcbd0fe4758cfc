//! The `jobset` command. Parses arguments and hands over to the crates.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    jobset::cli::main()
}
