//! `jobset crd` prints exactly the CRD that deploy/ ships.

use std::process::Command;

#[test]
fn jobset_crd_prints_the_crd_in_deploy() {
    let out = Command::new(env!("CARGO_BIN_EXE_jobset"))
        .arg("crd")
        .output()
        .expect("the jobset binary runs");
    assert!(
        out.status.success(),
        "jobset crd failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/crd/jobsets.jobset.x-k8s.io.yaml"
    );
    let shipped = std::fs::read_to_string(path).expect("deploy/crd holds the CRD");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        shipped,
        "deploy/crd is stale: run `JOBSET_BLESS=1 cargo test -p jobset-api` to regenerate it"
    );
}

#[test]
fn an_unknown_subcommand_exits_with_code_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_jobset"))
        .arg("no-such-command")
        .output()
        .expect("the jobset binary runs");
    assert_eq!(out.status.code(), Some(2));
}
