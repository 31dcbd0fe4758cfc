//! How a command ends: the exit codes `jobset` promises (0 success,
//! 1 a JobSet failed or got stuck, 2 bad input) and the message printed.

use std::process::ExitCode;

/// Why a command did not succeed.
#[derive(Debug)]
pub enum Failure {
    /// The input cannot be used (exit 2).
    BadInput(String),
    /// The run ended, but not well (exit 1).
    Outcome(String),
    /// Something went wrong inside (exit 1).
    Internal(String),
}

/// A bad-input failure.
pub fn bad_input(message: String) -> Failure {
    Failure::BadInput(message)
}

impl Failure {
    /// The exit code this failure ends the command with.
    pub fn code(&self) -> u8 {
        match self {
            Failure::BadInput(_) => 2,
            Failure::Outcome(_) | Failure::Internal(_) => 1,
        }
    }

    /// The message as `report` prints it.
    pub fn message(&self) -> String {
        match self {
            Failure::BadInput(m) | Failure::Internal(m) => format!("error: {m}"),
            Failure::Outcome(m) => m.clone(),
        }
    }

    /// Prints the message and gives the exit code.
    pub fn report(self) -> ExitCode {
        match self {
            Failure::BadInput(m) => {
                eprintln!("error: {m}");
                ExitCode::from(2)
            }
            Failure::Outcome(m) => {
                eprintln!("{m}");
                ExitCode::from(1)
            }
            Failure::Internal(m) => {
                eprintln!("error: {m}");
                ExitCode::from(1)
            }
        }
    }
}
