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

/// Writes a command's output to standard output. A reader that has closed
/// the pipe (`jobset policy pack … | head`) has had what it wanted: the rest
/// is dropped and the command still succeeds, rather than panicking as
/// `print!` does. Any other write error is the command's failure.
pub fn emit(text: &str) -> Result<(), Failure> {
    write_to(&mut std::io::stdout().lock(), text)
}

fn write_to(out: &mut impl std::io::Write, text: &str) -> Result<(), Failure> {
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Failure::Internal(format!(
            "writing to standard output: {e}"
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Failing(std::io::ErrorKind);

    impl std::io::Write for Failing {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(self.0.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_pipe_ends_the_output_quietly_and_other_errors_fail() {
        assert!(write_to(&mut Failing(std::io::ErrorKind::BrokenPipe), "x").is_ok());
        let e = write_to(&mut Failing(std::io::ErrorKind::StorageFull), "x").unwrap_err();
        assert_eq!(e.code(), 1);
        assert!(
            e.message().contains("writing to standard output"),
            "{}",
            e.message()
        );
        let mut buf = Vec::new();
        write_to(&mut buf, "all of it").unwrap();
        assert_eq!(buf, b"all of it");
    }
}
