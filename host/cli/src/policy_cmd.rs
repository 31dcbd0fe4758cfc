//! `jobset policy inspect|test|pack`: look inside a plugin, run it against a
//! snapshot written in YAML, wrap it into a ConfigMap.

use std::path::PathBuf;

use jobset_policy::{LoadError, Runtime};

use crate::outcome::{Failure, bad_input, emit};

/// The policy subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Name, version, exported interfaces, imports, size and sha256 of a plugin.
    Inspect { file: PathBuf },
    /// Runs a plugin against a scenario (a snapshot in YAML) and prints its verdict.
    Test {
        file: PathBuf,
        #[arg(long)]
        scenario: PathBuf,
    },
    /// Prints the ConfigMap that carries a plugin.
    Pack {
        file: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "jobset-system")]
        namespace: String,
    },
}

fn read(path: &PathBuf) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| bad_input(format!("{}: {e}", path.display())))
}

/// A plugin name must be a non-empty label value (the selection label and
/// annotations carry it) that also makes `jobset-policy-<name>` a valid
/// ConfigMap name.
pub(crate) fn check_name(flag: &str, name: &str) -> Result<(), Failure> {
    let problem = if name.is_empty() {
        Some("a plugin name must not be empty".to_string())
    } else {
        jobset_api::dns::label_value(name)
            .into_iter()
            .chain(
                jobset_api::dns::dns1123_subdomain(&format!("jobset-policy-{name}"))
                    .into_iter()
                    .map(|p| format!("as part of the ConfigMap name jobset-policy-{name}: {p}")),
            )
            .next()
    };
    match problem {
        Some(p) => Err(bad_input(format!("{flag} {name:?}: {p}"))),
        None => Ok(()),
    }
}

fn runtime() -> Result<Runtime, Failure> {
    Runtime::new(Default::default()).map_err(|e| Failure::Internal(e.to_string()))
}

/// Runs a policy subcommand.
pub fn run(cmd: PolicyCommand) -> Result<(), Failure> {
    match cmd {
        PolicyCommand::Inspect { file } => {
            let bytes = read(&file)?;
            let label = file.display().to_string();
            let i = jobset_policy::tools::inspect(&runtime()?, &label, &bytes)
                .map_err(|e| bad_input(e.to_string()))?;
            emit(&serde_yaml::to_string(&i).map_err(|e| Failure::Internal(e.to_string()))?)?;
        }
        PolicyCommand::Test { file, scenario } => {
            let bytes = read(&file)?;
            let text = std::fs::read_to_string(&scenario)
                .map_err(|e| bad_input(format!("{}: {e}", scenario.display())))?;
            // Errors name the plugin by its path, the scenario likewise.
            let label = file.display().to_string();
            let decided = jobset_policy::tools::test(&runtime()?, &label, &bytes, &text).map_err(
                |e| match e {
                    LoadError::Scenario(m) => bad_input(format!("{}: {m}", scenario.display())),
                    other => bad_input(other.to_string()),
                },
            )?;
            match decided {
                Ok(verdict) => emit(&format!("{verdict}\n"))?,
                Err(e) => {
                    return Err(Failure::Outcome(format!(
                        "no verdict for {}: {e}",
                        scenario.display()
                    )));
                }
            }
        }
        PolicyCommand::Pack {
            file,
            name,
            namespace,
        } => {
            check_name("--name", &name)?;
            if let Some(problem) = jobset_api::dns::dns1123_label(&namespace).first() {
                return Err(bad_input(format!("--namespace {namespace:?}: {problem}")));
            }
            let bytes = read(&file)?;
            let yaml = jobset_policy::tools::pack(&bytes, &name, &namespace)
                .map_err(|e| bad_input(format!("{}: {e}", file.display())))?;
            emit(&yaml)?;
        }
    }
    Ok(())
}
