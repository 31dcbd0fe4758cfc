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
    /// Runs a plugin over recorded decisions (`jobset run --record`,
    /// `jobset controller --record-decisions`) and prints, per decision,
    /// whether it decides the same; exits 1 when any differs.
    Replay {
        /// The plugin: a .wasm file, or an embedded one by name
        /// (default-startup, default-outcome, default-placement,
        /// preemption-aware).
        plugin: String,
        /// Recording files, or folders of them (every .yaml inside).
        #[arg(required = true)]
        recordings: Vec<PathBuf>,
    },
    /// Prints the ConfigMap that carries a plugin.
    Pack {
        file: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "jobset-system")]
        namespace: String,
        /// Sign the plugin's sha256 with this private key (a file written
        /// by `jobset policy keygen`).
        #[arg(long, value_name = "KEY_FILE")]
        sign: Option<PathBuf>,
    },
    /// Makes a signing key pair: writes the private key to FILE and prints
    /// the public key to trust (`--trusted-plugin-keys`).
    Keygen {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Checks a packed plugin ConfigMap as a controller trusting `--key`
    /// (and, with `--allowed-digest`, only those digests) would.
    Verify {
        file: PathBuf,
        #[arg(long = "key", value_name = "PUBLIC_KEY")]
        keys: Vec<String>,
        #[arg(long = "allowed-digest", value_name = "SHA256")]
        allowed_digests: Vec<String>,
    },
}

/// The trust rules a controller (or `policy verify`) takes from flags:
/// public keys and allowed digests; empty entries are ignored.
pub fn trust_from(
    keys: &[String],
    digests: &[String],
) -> Result<jobset_policy::trust::Trust, Failure> {
    let keys = keys
        .iter()
        .filter(|k| !k.trim().is_empty())
        .map(|k| jobset_policy::trust::PublicKey::parse(k).map_err(bad_input))
        .collect::<Result<Vec<_>, _>>()?;
    let digests: std::collections::BTreeSet<String> = digests
        .iter()
        .map(|d| d.trim().to_ascii_lowercase())
        .filter(|d| !d.is_empty())
        .collect();
    for d in &digests {
        if d.len() != 64 || !d.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad_input(format!(
                "{d:?} is not a sha256 digest (64 hex digits)"
            )));
        }
    }
    Ok(jobset_policy::trust::Trust {
        keys,
        allowed_digests: (!digests.is_empty()).then_some(digests),
    })
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

/// Writes a private key readable by its owner only.
fn write_private_key(path: &std::path::Path, private: &str) -> Result<(), Failure> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options
        .open(path)
        .map_err(|e| bad_input(format!("--out {}: {e}", path.display())))?;
    f.write_all(format!("{private}\n").as_bytes())
        .map_err(|e| Failure::Internal(format!("--out {}: {e}", path.display())))
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
        PolicyCommand::Replay { plugin, recordings } => replay(&plugin, &recordings)?,
        PolicyCommand::Pack {
            file,
            name,
            namespace,
            sign,
        } => {
            check_name("--name", &name)?;
            if let Some(problem) = jobset_api::dns::dns1123_label(&namespace).first() {
                return Err(bad_input(format!("--namespace {namespace:?}: {problem}")));
            }
            let bytes = read(&file)?;
            let signature = match &sign {
                None => None,
                Some(key) => {
                    let private = std::fs::read_to_string(key)
                        .map_err(|e| bad_input(format!("--sign {}: {e}", key.display())))?;
                    let digest = jobset_policy::sha256_hex(&bytes);
                    Some(
                        jobset_policy::trust::sign(&private, &digest)
                            .map_err(|e| bad_input(format!("--sign {}: {e}", key.display())))?,
                    )
                }
            };
            let yaml =
                jobset_policy::tools::pack_signed(&bytes, &name, &namespace, signature.as_deref())
                    .map_err(|e| bad_input(format!("{}: {e}", file.display())))?;
            emit(&yaml)?;
        }
        PolicyCommand::Keygen { out } => {
            let (private, public) = jobset_policy::trust::generate().map_err(Failure::Internal)?;
            write_private_key(&out, &private)?;
            emit(&format!(
                "private key written to {} (keep it secret)\npublic key, to trust: {}\nkey id: {}\n",
                out.display(),
                public.to_text(),
                public.id
            ))?;
        }
        PolicyCommand::Verify {
            file,
            keys,
            allowed_digests,
        } => {
            let trust = trust_from(&keys, &allowed_digests)?;
            if trust.is_open() {
                return Err(bad_input(
                    "give the public keys to trust (--key) or the digests allowed (--allowed-digest)".into(),
                ));
            }
            let text = std::fs::read_to_string(&file)
                .map_err(|e| bad_input(format!("{}: {e}", file.display())))?;
            match jobset_policy::tools::verify(&text, &trust) {
                Ok(summary) => emit(&format!("{summary}\n"))?,
                Err(why) => {
                    return Err(Failure::Outcome(format!(
                        "{}: may not run: {why}",
                        file.display()
                    )));
                }
            }
        }
    }
    Ok(())
}

/// The bytes of a plugin named on the command line: a file, or one the
/// binary embeds.
fn plugin_bytes(spec: &str) -> Result<Vec<u8>, Failure> {
    if let Ok(bytes) = std::fs::read(spec) {
        return Ok(bytes);
    }
    let embedded = jobset_policy::Slot::ALL
        .into_iter()
        .find(|s| jobset_policy::builtin::default_name(*s) == spec)
        .map(jobset_policy::builtin::default_bytes)
        .or_else(|| crate::run::embedded_example(spec));
    embedded.map(<[u8]>::to_vec).ok_or_else(|| {
        bad_input(format!(
            "{spec}: no such file, nor a plugin the binary embeds (default-startup, \
             default-outcome, default-placement, {})",
            crate::run::EMBEDDED_EXAMPLES.join(", ")
        ))
    })
}

/// The recording files among `paths` (folders give their .yaml files,
/// sorted), in order.
fn recording_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Failure> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut inside: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| bad_input(format!("{}: {e}", path.display())))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
                .collect();
            inside.sort();
            if inside.is_empty() {
                return Err(bad_input(format!(
                    "{}: no recordings (.yaml) in it",
                    path.display()
                )));
            }
            files.extend(inside);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

fn replay(plugin: &str, paths: &[PathBuf]) -> Result<(), Failure> {
    let bytes = plugin_bytes(plugin)?;
    let loaded = runtime()?
        .load(plugin, &bytes)
        .map_err(|e| bad_input(e.to_string()))?;
    let mut recordings = Vec::new();
    for file in recording_files(paths)? {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| bad_input(format!("{}: {e}", file.display())))?;
        let recording = jobset_policy::recording::Recording::from_yaml(&text)
            .map_err(|e| bad_input(format!("{}: {e}", file.display())))?;
        recordings.push((file, recording));
    }
    // A plugin replaces the slots it exports; the others' decisions are
    // not its to make.
    let total = recordings.len();
    recordings.retain(|(_, r)| loaded.exports(r.slot));
    let skipped = total - recordings.len();
    if recordings.is_empty() {
        return Err(bad_input(format!(
            "none of the {total} recorded decisions is of a slot {} exports ({})",
            loaded.id(),
            loaded
                .info()
                .exported
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let mut out = format!(
        "replaying {} decisions with {}{}\n{:<8} {:<10} {:<40} RECORDING\n",
        recordings.len(),
        loaded.id(),
        if skipped > 0 {
            format!(" ({skipped} of other slots skipped)")
        } else {
            String::new()
        },
        "RESULT",
        "SLOT",
        "JOBSET"
    );
    let mut different = 0;
    for (file, recording) in &recordings {
        let r = jobset_policy::recording::replay(&loaded, recording);
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        out.push_str(&format!(
            "{:<8} {:<10} {:<40} {name}\n",
            if r.same { "same" } else { "DIFFERS" },
            recording.slot.as_str(),
            recording.jobset
        ));
        if !r.same {
            different += 1;
            out.push_str(&format!(
                "  recorded ({}): {}\n",
                recording.plugin, r.recorded
            ));
            out.push_str(&format!("  replayed ({}): {}\n", loaded.id(), r.replayed));
        }
    }
    out.push_str(&format!(
        "{} decisions: {} same, {different} different\n",
        recordings.len(),
        recordings.len() - different
    ));
    emit(&out)?;
    if different > 0 {
        return Err(Failure::Outcome(format!(
            "{different} of {} decisions differ with {}",
            recordings.len(),
            loaded.id()
        )));
    }
    Ok(())
}
