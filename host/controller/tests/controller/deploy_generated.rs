//! deploy/ holds generated parts; these tests fail when one is stale or
//! when the kustomization stops referencing it. Regenerate with
//! `JOBSET_BLESS=1 cargo test -p jobset-controller --test controller deploy_generated::`.

use std::path::{Path, PathBuf};

use jobset_controller::webhook::{DEFAULT_NAMESPACE, DEFAULT_SERVICE, configurations};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

#[test]
fn the_deploy_webhook_configurations_match_the_code() {
    let path = deploy().join("webhook/webhooks.yaml");
    let want = configurations::deploy_yaml(DEFAULT_NAMESPACE, DEFAULT_SERVICE);
    if std::env::var_os("JOBSET_BLESS").is_some() {
        std::fs::write(&path, &want).expect("write webhooks.yaml");
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{} is stale; regenerate with JOBSET_BLESS=1",
        path.display()
    );
}

#[test]
fn the_kustomization_references_every_generated_part() {
    let k = std::fs::read_to_string(deploy().join("kustomization.yaml")).expect("kustomization");
    let mut wanted = vec![
        "crd/jobsets.jobset.x-k8s.io.yaml".to_string(),
        "webhook/webhooks.yaml".to_string(),
    ];
    for entry in std::fs::read_dir(deploy().join("plugins")).expect("deploy/plugins") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .to_string();
        if name.ends_with(".yaml") {
            wanted.push(format!("plugins/{name}"));
        }
    }
    assert!(wanted.len() >= 5, "{wanted:?}");
    for w in wanted {
        assert!(
            k.lines().any(|l| l.trim() == format!("- {w}")),
            "deploy/kustomization.yaml does not list {w}"
        );
    }
}

#[test]
fn the_deployment_names_the_webhook_service_and_secret_the_code_defaults_to() {
    let cfg = std::fs::read_to_string(deploy().join("manager/config.yaml")).expect("config");
    assert!(cfg.contains(&format!("WEBHOOK_SERVICE: {DEFAULT_SERVICE}")));
    assert!(cfg.contains(&format!(
        "WEBHOOK_SECRET: {}",
        jobset_controller::webhook::DEFAULT_SECRET
    )));
    let svc = std::fs::read_to_string(deploy().join("manager/services.yaml")).expect("services");
    assert!(svc.contains(&format!("name: {DEFAULT_SERVICE}")));
    let role = std::fs::read_to_string(deploy().join("rbac/cluster_role.yaml")).expect("role");
    assert!(role.contains(configurations::MUTATING_CONFIGURATION));
    assert!(role.contains(configurations::VALIDATING_CONFIGURATION));
}
