//! A plugin that misbehaves on purpose, for the host's tests. Its
//! configuration text picks the misbehaviour, in every slot: `loop`,
//! `memory`, `trap`, `recursion`, `huge`, `unknown-name`, `snoop` (tries the
//! filesystem, network, environment and clock, and reports what it saw in
//! the verdict), `print` (writes a lot to stdout and stderr), `regex`
//! (keeps the host compiling and matching large patterns), `echo` (fails
//! with the Debug text of its input, so the host's tests can check that
//! every field arrived as sent), or anything else to behave.
//! `validate-config` rejects `reject`.

use jobset_policy_sdk::types::{
    Action, InOrderCondition, JobPlacement, OutcomeVerdict, Placement, PolicyError, Snapshot,
    StartupVerdict, Terminal,
};

/// The plugin's name in `meta.info`.
pub const NAME: &str = "hostile";

/// What the configuration asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mischief {
    Loop,
    Memory,
    Trap,
    Recursion,
    Huge,
    UnknownName,
    Snoop,
    Print,
    Regex,
    Echo,
    Behave,
}

/// Reads the configuration.
pub fn mischief(config: &str) -> Mischief {
    match config.trim() {
        "loop" => Mischief::Loop,
        "memory" => Mischief::Memory,
        "trap" => Mischief::Trap,
        "recursion" => Mischief::Recursion,
        "huge" => Mischief::Huge,
        "unknown-name" => Mischief::UnknownName,
        "snoop" => Mischief::Snoop,
        "print" => Mischief::Print,
        "regex" => Mischief::Regex,
        "echo" => Mischief::Echo,
        _ => Mischief::Behave,
    }
}

/// Runs the misbehaviours that do not depend on the slot; returns only for
/// the ones that shape the verdict.
fn misbehave(config: &str) -> Mischief {
    let m = mischief(config);
    match m {
        Mischief::Loop => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        Mischief::Memory => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![0xA5; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        Mischief::Trap => panic!("hostile plugin panics on purpose"),
        Mischief::Regex => {
            // A new pattern each time, so the host compiles every one (a Unicode
            // class repeated makes them large), matched against the longest text
            // accepted. Only the deadline ends this.
            let text = "a".repeat(jobset_policy_sdk::regex::MAX_TEXT_BYTES);
            let mut i: u64 = 0;
            loop {
                let pattern = format!(r"\pL{{20}}{i}");
                std::hint::black_box(jobset_policy_sdk::regex::is_match(&pattern, &text).is_ok());
                i += 1;
            }
        }
        Mischief::Recursion => {
            std::hint::black_box(recurse(std::hint::black_box(1)));
            m
        }
        Mischief::Print => {
            for i in 0..200 {
                println!("hostile stdout line {i}");
                eprintln!("hostile stderr line {i}");
            }
            m
        }
        _ => m,
    }
}

fn recurse(depth: u64) -> u64 {
    // The exit is never taken; it only keeps the recursion well-formed.
    if depth == u64::MAX {
        return 0;
    }
    let pad = std::hint::black_box([depth; 64]);
    recurse(depth + 1) + pad[7]
}

/// What the sandbox let the plugin see.
pub fn snoop() -> String {
    let fs = match std::fs::read_dir("/") {
        Ok(_) => "open",
        Err(_) => "denied",
    };
    let cwd_file = match std::fs::write("escape.txt", b"x") {
        Ok(()) => "written",
        Err(_) => "denied",
    };
    let env = std::env::vars().count();
    let args = std::env::args().count();
    let net = match std::net::TcpStream::connect("127.0.0.1:80") {
        Ok(_) => "connected",
        Err(_) => "denied",
    };
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let mut random = [0u8; 4];
    let random = match getrandom(&mut random) {
        true => format!("{random:?}"),
        false => "none".to_string(),
    };
    format!(
        "fs={fs} write={cwd_file} env={env} args={args} net={net} clock={clock} random={random}"
    )
}

fn getrandom(buf: &mut [u8]) -> bool {
    use std::hash::{BuildHasher, Hasher};
    // RandomState draws its keys from the platform's random source.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(1);
    let v = h.finish().to_le_bytes();
    buf.copy_from_slice(&v[..buf.len()]);
    true
}

/// The startup slot.
pub fn startup(snapshot: &Snapshot) -> Result<StartupVerdict, PolicyError> {
    let names = match misbehave(&snapshot.config) {
        Mischief::Huge => (0..5_000).map(|i| format!("rjob-{i}")).collect(),
        Mischief::UnknownName => vec!["no-such-replicated-job".to_string()],
        Mischief::Snoop => return Err(PolicyError::Internal(snoop())),
        Mischief::Echo => return Err(PolicyError::Internal(format!("{snapshot:?}"))),
        _ => snapshot
            .jobset
            .replicated_jobs
            .iter()
            .map(|r| r.name.clone())
            .collect(),
    };
    Ok(StartupVerdict {
        create: names.clone(),
        resume: names,
        in_order: InOrderCondition::None,
    })
}

/// The outcome slot.
pub fn outcome(snapshot: &Snapshot) -> Result<OutcomeVerdict, PolicyError> {
    let action = match misbehave(&snapshot.config) {
        Mischief::Echo => return Err(PolicyError::Internal(format!("{snapshot:?}"))),
        Mischief::Huge => Action::Fail(Terminal {
            reason: "Huge".to_string(),
            message: "x".repeat(4 << 20),
        }),
        Mischief::UnknownName => Action::RestartJob(jobset_policy_sdk::types::JobRestart {
            job: "no-such-job".to_string(),
            count_towards_max: true,
            event_reason: "RestartJobFailurePolicyAction".to_string(),
            message: "restarting a Job that does not exist".to_string(),
        }),
        Mischief::Snoop => Action::Fail(Terminal {
            reason: "Snoop".to_string(),
            message: snoop(),
        }),
        _ => Action::Continue,
    };
    Ok(OutcomeVerdict { action, rule: None })
}

/// The placement slot.
pub fn placement(
    snapshot: &Snapshot,
    request: &jobset_policy_sdk::types::PlacementRequest,
) -> Result<Vec<JobPlacement>, PolicyError> {
    Ok(match misbehave(&snapshot.config) {
        Mischief::Huge => (0..5_000)
            .map(|i| JobPlacement {
                job: format!("job-{i}"),
                placement: Placement::Unchanged,
            })
            .collect(),
        Mischief::UnknownName => vec![JobPlacement {
            job: "ghost-job".to_string(),
            placement: Placement::Wait("haunting".to_string()),
        }],
        Mischief::Snoop => return Err(PolicyError::Internal(snoop())),
        Mischief::Echo => {
            return Err(PolicyError::Internal(format!("{snapshot:?}\n{request:?}")));
        }
        _ => request
            .jobs
            .iter()
            .map(|j| JobPlacement {
                job: j.name.clone(),
                placement: Placement::Unchanged,
            })
            .collect(),
    })
}

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({
        world: "policy-plugin",
        path: "../../../wit",
        with: {
            "jobset:policy/types@0.3.0": jobset_policy_sdk::types,
            "jobset:policy/pods@0.3.0": jobset_policy_sdk::pods,
            "jobset:policy/in-place@0.3.0": jobset_policy_sdk::in_place,
            "jobset:policy/regex@0.3.0": jobset_policy_sdk::regex::import,
        },
    });

    use exports::jobset::policy::{meta, outcome, placement, startup};
    use jobset_policy_sdk::types::{
        JobPlacement, OutcomeVerdict, PlacementRequest, PolicyError, Snapshot, StartupVerdict,
    };

    struct Plugin;

    impl meta::Guest for Plugin {
        fn info() -> meta::PluginInfo {
            meta::PluginInfo {
                name: crate::NAME.to_string(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                interfaces: vec!["startup".into(), "outcome".into(), "placement".into()],
                inputs: Vec::new(),
            }
        }

        fn validate_config(config: String) -> Result<(), String> {
            if config.trim() == "reject" {
                Err("this configuration is rejected on purpose".to_string())
            } else {
                Ok(())
            }
        }
    }

    impl startup::Guest for Plugin {
        fn decide(snapshot: Snapshot) -> Result<StartupVerdict, PolicyError> {
            crate::startup(&snapshot)
        }
    }

    impl outcome::Guest for Plugin {
        fn decide(
            snapshot: Snapshot,
            _pods: Vec<jobset_policy_sdk::pods::JobPods>,
        ) -> Result<OutcomeVerdict, PolicyError> {
            crate::outcome(&snapshot)
        }

        /// The same misbehaviour, for in-place restarts.
        fn decide_in_place(
            snapshot: Snapshot,
            _restart: jobset_policy_sdk::in_place::InPlaceRestart,
        ) -> Result<OutcomeVerdict, PolicyError> {
            crate::outcome(&snapshot)
        }
    }

    impl placement::Guest for Plugin {
        fn decide(
            snapshot: Snapshot,
            request: PlacementRequest,
        ) -> Result<Vec<JobPlacement>, PolicyError> {
            crate::placement(&snapshot, &request)
        }
    }

    export!(Plugin);
}
