//! `jobset run` end to end: the simulated cluster, the controller and the
//! plugins in one process, driven through the command line as a user would.

use std::process::{Command, Output};

use crate::common::{own_example as example, repo};

fn jobset(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jobset"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("the jobset binary runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_quickstart_policy_decides_the_restarts_and_the_jobset_completes() {
    let out = jobset(&[
        "run",
        &example("host-maintenance.yaml"),
        "--scenario",
        "examples/host-maintenance.scenario.yaml",
        "--plugin",
        "outcome=preemption-aware",
    ]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("outcome by preemption-aware@") && t.contains("(Preempted"),
        "{t}"
    );
    assert!(t.contains("(ApplicationFailure"), "{t}");
    let row = t
        .lines()
        .find(|l| l.starts_with("default/host-maintenance "))
        .expect("a summary row");
    assert!(
        row.contains("Completed") && row.split_whitespace().nth(2) == Some("2"),
        "{row}"
    );
}

#[test]
fn without_the_plugin_the_manifest_rules_fail_the_jobset_after_the_crash() {
    let out = jobset(&[
        "run",
        &example("host-maintenance.yaml"),
        "--scenario",
        "examples/host-maintenance.scenario.yaml",
    ]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("restart jobset (FailurePolicy_failurePolicyRule0"),
        "{t}"
    );
    assert!(t.contains("fail (ReachedMaxRestarts"), "{t}");
}

#[test]
fn an_invalid_jobset_is_bad_input_naming_the_field() {
    let dir = std::env::temp_dir().join(format!("jobset-run-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("bad.yaml");
    std::fs::write(
        &file,
        "apiVersion: jobset.x-k8s.io/v1alpha2\nkind: JobSet\nmetadata: {name: bad}\nspec:\n  replicatedJobs:\n  - name: a\n    dependsOn: [{name: b, status: Ready}]\n    template: {spec: {template: {spec: {containers: [{name: c, image: i}]}}}}\n",
    )
    .expect("write fixture");
    let out = jobset(&["run", &file.display().to_string()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("spec.replicatedJobs[0].dependsOn"), "{t}");
    let out = jobset(&[
        "run",
        &example("multislice.yaml"),
        "--plugin",
        "outcome=/no/such.wasm",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn sim_serve_refuses_a_bad_scenario_node_layout_or_gate_before_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.scenario.yaml");
    std::fs::write(&bad, "defaultDuration: forever\n").expect("written");
    let kubeconfig = dir.path().join("kubeconfig");
    for (flag, value, named) in [
        ("--scenario", bad.display().to_string(), "--scenario"),
        ("--scenario", "/no/such.yaml".to_string(), "/no/such.yaml"),
        ("--nodes", "pools=x".to_string(), "--nodes"),
        (
            "--feature-gates",
            "RestartJob=maybe".to_string(),
            "--feature-gates",
        ),
        (
            "--feature-gates",
            "RestartJobs=true".to_string(),
            "unknown gate \"RestartJobs\"",
        ),
    ] {
        let out = jobset(&[
            "sim",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--kubeconfig-out",
            &kubeconfig.display().to_string(),
            flag,
            &value,
        ]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {t}");
        assert!(t.contains(named), "{flag} {value}: {t}");
        assert!(!kubeconfig.exists(), "nothing served for {flag} {value}");
    }
}

#[test]
fn a_pod_that_fits_no_node_is_reported_as_stuck_with_the_reason() {
    let out = jobset(&[
        "run",
        &example("multislice.yaml"),
        "--nodes",
        "pools=2,nodes=2,cpu=8",
    ]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("Stuck"), "{t}");
    assert!(t.contains("unschedulable") || t.contains("wait"), "{t}");
}

/// A small XML well-formedness check: tags nest and close in order,
/// attribute values are quoted, and `&` only starts a known entity.
fn well_formed_xml(text: &str) -> Result<usize, String> {
    let body = text
        .strip_prefix("<?xml")
        .and_then(|t| t.split_once("?>"))
        .map(|(_, rest)| rest)
        .ok_or("no XML declaration")?;
    let mut stack: Vec<String> = Vec::new();
    let mut elements = 0;
    let mut rest = body;
    while let Some(open) = rest.find('<') {
        check_text(&rest[..open])?;
        let close = rest[open..].find('>').ok_or("unclosed tag")? + open;
        let tag = &rest[open + 1..close];
        if let Some(name) = tag.strip_prefix('/') {
            let top = stack.pop().ok_or(format!("stray </{name}>"))?;
            if top != name.trim() {
                return Err(format!("</{name}> closes <{top}>"));
            }
        } else {
            let self_closing = tag.ends_with('/');
            let tag = tag.trim_end_matches('/');
            let name = tag.split_whitespace().next().ok_or("empty tag")?;
            let attrs = &tag[name.len()..];
            if attrs.matches('"').count() % 2 != 0 {
                return Err(format!("unbalanced quotes in <{name}>"));
            }
            check_text(attrs)?;
            elements += 1;
            if !self_closing {
                stack.push(name.to_string());
            }
        }
        rest = &rest[close + 1..];
    }
    check_text(rest)?;
    match stack.last() {
        Some(open) => Err(format!("<{open}> never closed")),
        None => Ok(elements),
    }
}

fn check_text(text: &str) -> Result<(), String> {
    for (i, _) in text.match_indices('&') {
        let entity = &text[i..];
        if !["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
            .iter()
            .any(|e| entity.starts_with(e))
        {
            return Err(format!(
                "bad entity at {:?}",
                &entity[..entity.len().min(10)]
            ));
        }
    }
    if text.contains('<') {
        return Err("stray <".into());
    }
    Ok(())
}

#[test]
fn an_alpha_feature_without_its_gate_is_refused_with_the_flag_that_turns_it_on() {
    let (code, out) = jobset::cli::run_captured(&["run", &example("restart-job.yaml")]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("spec.failurePolicy.rules[1].action")
            && out.contains("RestartJob feature gate is disabled")
            && out.contains("--feature-gates RestartJob=true"),
        "{out}"
    );
}

#[test]
fn the_timeline_has_a_row_per_job_failure_marks_and_the_deciding_restart() {
    let dir = std::env::temp_dir().join(format!("jobset-timeline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let svg = dir.join("run.svg");
    let svg_arg = svg.display().to_string();
    let (code, out) = jobset::cli::run_captured(&[
        "run",
        &example("restart-job.yaml"),
        "--scenario",
        &example("restart-job.scenario.yaml"),
        "--feature-gates",
        "RestartJob=true",
        "--timeline",
        &svg_arg,
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("Timeline written to {svg_arg}")),
        "{out}"
    );
    let text = std::fs::read_to_string(&svg).expect("the timeline is written");
    let elements = well_formed_xml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert!(elements > 10, "{text}");
    // One row per Job: the leader and the worker.
    assert_eq!(text.matches("<g class=\"job\"").count(), 2, "{text}");
    assert!(text.contains("data-job=\"restart-job-leader-0\""), "{text}");
    assert!(text.contains("data-job=\"restart-job-worker-0\""), "{text}");
    // The scenario failed worker pod 1 at 2m and leader pod 0 at 5m.
    assert_eq!(text.matches("<g class=\"failure\">").count(), 2, "{text}");
    assert!(
        text.contains("failed at 00:02:00: exit code 1")
            && text.contains("failed at 00:05:00: exit code 1"),
        "{text}"
    );
    // Each restart is labelled with the decision that caused it.
    assert!(
        text.contains("R1</tspan> 00:02:30 default/restart-job: outcome by default-outcome@"),
        "{text}"
    );
    assert!(
        text.contains("R2</tspan> 00:05:30 default/restart-job: outcome by default-outcome@"),
        "{text}"
    );
    // The Job restart is marked on the worker's row only, the JobSet
    // restart on both rows.
    assert_eq!(text.matches("<title>R1 outcome by ").count(), 1, "{text}");
    assert_eq!(text.matches("<title>R2 outcome by ").count(), 2, "{text}");
    // Bars for attempts: the worker ran three times, the leader twice.
    assert_eq!(text.matches("<rect class=\"").count(), 5, "{text}");
}

#[test]
fn off_a_terminal_progress_is_plain_timestamped_log_lines() {
    let (code, out) = jobset::cli::run_captured(&["run", &example("parallel-jobs.yaml")]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains('\x1b'), "no terminal control codes: {out:?}");
    let log: Vec<&str> = out.lines().take_while(|l| !l.is_empty()).collect();
    assert!(log.len() >= 4, "{out}");
    for line in &log {
        let (stamp, rest) = line.split_at(10);
        let digits: String = stamp.chars().filter(char::is_ascii_digit).collect();
        assert!(
            stamp.starts_with('[') && stamp.ends_with(']') && digits.len() == 6,
            "{line}"
        );
        assert!(rest.starts_with(" default/parallel-jobs: "), "{line}");
    }
    assert_eq!(log[0], "[00:00:00] default/parallel-jobs: created");
    assert!(
        log.last().is_some_and(|l| l.ends_with(": Completed")),
        "{out}"
    );
}

#[test]
fn sim_serve_feature_gates_reach_its_admission_webhooks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    let _sim = crate::common::serve_sim(
        &kubeconfig,
        // Upstream's alpha gates are off unless turned on.
        &["--controller"],
    );
    let manifest = "apiVersion: jobset.x-k8s.io/v1alpha2\nkind: JobSet\nmetadata: {name: gated}\nspec:\n  failurePolicy:\n    rules:\n    - {name: r0, action: RestartJob}\n  replicatedJobs:\n  - name: w\n    template: {spec: {template: {spec: {restartPolicy: Never, containers: [{name: c, image: i}]}}}}\n";
    let mut create = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["create", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    use std::io::Write as _;
    create
        .stdin
        .take()
        .expect("stdin")
        .write_all(manifest.as_bytes())
        .expect("written");
    let out = create.wait_with_output().expect("kubectl ends");
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("spec.failurePolicy.rules[0].action")
            && t.contains(
                "RestartJob and RestartJobAndIgnoreMaxRestarts failure policy actions are not \
                 allowed when RestartJob feature gate is disabled"
            ),
        "{t}"
    );
}

#[test]
fn sim_nodes_prints_the_layout_and_the_real_control_plane_has_the_same() {
    let out = jobset(&["sim", "nodes"]);
    assert!(out.status.success(), "{}", text(&out));
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(printed.matches("\nkind: Node\n").count(), 27, "{printed}");
    assert!(
        printed.contains("cloud.google.com/gke-tpu-topology: 2x4"),
        "{printed}"
    );
    assert!(printed.contains("nvidia.com/gpu: '8'"), "{printed}");
    // tests/realcluster/nodes.yaml is this output behind a comment header.
    let path = repo().join("tests/realcluster/nodes.yaml");
    let committed = std::fs::read_to_string(&path).expect("tests/realcluster/nodes.yaml");
    let body: String = committed
        .lines()
        .skip_while(|l| l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    if body != printed && std::env::var("JOBSET_BLESS").is_ok() {
        let header: String = committed
            .lines()
            .take_while(|l| l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&path, format!("{header}{printed}")).expect("blessed");
        return;
    }
    assert!(
        body == printed,
        "tests/realcluster/nodes.yaml is stale: regenerate it with JOBSET_BLESS=1"
    );

    let bad = jobset(&["sim", "nodes", "--nodes", "pools=x"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(text(&bad).contains("--nodes"), "{}", text(&bad));
}

#[test]
fn exclusive_jobsets_started_together_never_share_a_pool() {
    // Six exclusive JobSets of two Jobs each, reconciled in parallel, on
    // exactly twelve pools: each pool is pinned once, none twice.
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = dir.path().join("many.yaml");
    let one = |i: usize| {
        format!(
            "apiVersion: jobset.x-k8s.io/v1alpha2\nkind: JobSet\nmetadata:\n  name: ex-{i}\n  annotations: {{alpha.jobset.sigs.k8s.io/exclusive-topology: cloud.google.com/gke-nodepool}}\nspec:\n  replicatedJobs:\n  - name: w\n    replicas: 2\n    template: {{spec: {{template: {{spec: {{restartPolicy: Never, containers: [{{name: c, image: busybox}}]}}}}}}}}\n"
        )
    };
    let text: Vec<String> = (0..6).map(one).collect();
    std::fs::write(&manifest, text.join("---\n")).expect("written");
    let path = manifest.display().to_string();
    let (code, out) =
        jobset::cli::run_captured(&["run", &path, "--nodes", "pools=12,nodes=1", "--until", "2h"]);
    assert_eq!(code, 0, "{out}");
    let pinned: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with('[') && l.contains(" pinned to cloud.google.com/gke-nodepool="))
        .filter_map(|l| l.rsplit("gke-nodepool=").next())
        .collect();
    assert_eq!(pinned.len(), 12, "{out}");
    let distinct: std::collections::BTreeSet<&str> = pinned.iter().copied().collect();
    assert_eq!(distinct.len(), 12, "a pool pinned twice: {pinned:?}\n{out}");
}

#[test]
fn exclusive_jobs_with_no_free_pool_are_created_at_once_and_wait_for_one() {
    // Four exclusive JobSets of two Jobs each on six pools: six Jobs are
    // pinned; the other two are created at once all the same (their pods
    // Pending, where an autoscaler would see them), left to the scheduler
    // with upstream's exclusive pod affinities. Every pod runs 10 minutes
    // and a node fits many pods, so a Job that shared a pool would finish
    // at 10 minutes: the two finish only after a pool has freed.
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = dir.path().join("crowded.yaml");
    let one = |i: usize| {
        format!(
            "apiVersion: jobset.x-k8s.io/v1alpha2\nkind: JobSet\nmetadata:\n  name: ex-{i}\n  annotations: {{alpha.jobset.sigs.k8s.io/exclusive-topology: cloud.google.com/gke-nodepool}}\nspec:\n  replicatedJobs:\n  - name: w\n    replicas: 2\n    template: {{spec: {{parallelism: 2, completions: 2, template: {{spec: {{restartPolicy: Never, containers: [{{name: c, image: busybox}}]}}}}}}}}\n"
        )
    };
    let text: Vec<String> = (0..4).map(one).collect();
    std::fs::write(&manifest, text.join("---\n")).expect("written");
    let scenario = dir.path().join("ten-minutes.scenario.yaml");
    std::fs::write(&scenario, "defaultDuration: 10m\n").expect("written");
    let (path, scenario) = (
        manifest.display().to_string(),
        scenario.display().to_string(),
    );
    let (code, out) = jobset::cli::run_captured(&[
        "run",
        &path,
        "--scenario",
        &scenario,
        "--nodes",
        "pools=6,nodes=1",
        "--until",
        "2h",
    ]);
    assert_eq!(code, 0, "{out}");
    let at = |line: &str| -> u32 {
        let t = &line[1..9];
        let p: Vec<u32> = t.split(':').map(|x| x.parse().unwrap()).collect();
        p[0] * 3600 + p[1] * 60 + p[2]
    };
    let pinned = out
        .lines()
        .filter(|l| l.starts_with('[') && l.contains(" pinned to cloud.google.com/gke-nodepool="))
        .count();
    let left: Vec<String> = out
        .lines()
        .filter(|l| {
            l.starts_with('[')
                && l.contains(" left to the scheduler, exclusive by cloud.google.com/gke-nodepool")
        })
        .filter_map(|l| {
            l.split(": ")
                .last()?
                .split_whitespace()
                .next()
                .map(str::to_string)
        })
        .collect();
    assert_eq!((pinned, left.len()), (6, 2), "{out}");
    for i in 0..4 {
        for j in 0..2 {
            let created = format!("Job ex-{i}-w-{j} created");
            let line = out
                .lines()
                .find(|l| l.contains(&created))
                .unwrap_or_else(|| panic!("{created}\n{out}"));
            assert!(at(line) < 60, "every Job is created at once: {line}");
        }
    }
    for job in &left {
        let done = format!("Job {job} completed");
        let line = out
            .lines()
            .find(|l| l.contains(&done))
            .unwrap_or_else(|| panic!("{done}\n{out}"));
        assert!(
            at(line) >= 20 * 60,
            "{job} ran in a pool nobody else held: {line}\n{out}"
        );
    }
    assert_eq!(out.matches(": Completed").count(), 4, "{out}");
}

/// Runs one of the repository's examples with its scenario and `gates`,
/// writing the timeline; returns the output and the picture.
fn run_with_timeline(name: &str, gates: &str) -> (u8, String, String) {
    let dir = std::env::temp_dir().join(format!("jobset-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let svg = dir.join("run.svg");
    let svg_arg = svg.display().to_string();
    let mut args = vec![
        "run".to_string(),
        example(&format!("{name}.yaml")),
        "--scenario".to_string(),
        example(&format!("{name}.scenario.yaml")),
        "--timeline".to_string(),
        svg_arg,
    ];
    if !gates.is_empty() {
        args.extend(["--feature-gates".to_string(), gates.to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out) = jobset::cli::run_captured(&args);
    let text = std::fs::read_to_string(&svg).unwrap_or_default();
    (code, out, text)
}

#[test]
fn an_in_place_restart_brings_every_pod_to_the_new_attempt_without_recreating_a_job() {
    let (code, out, svg) = run_with_timeline("in-place-restart", "InPlaceRestart=true");
    assert_eq!(code, 0, "{out}");
    // Pod 1 of Job 0 crashes at 2m and restarts in place; after the
    // kubelet's 10 s back-off its agent reports attempt 1, the three others
    // restart to join it, and attempt 1 runs ten more minutes.
    for line in [
        "[00:00:01] default/in-place: in-place restart: attempt 0 runs",
        // The outcome plugin decided to go on in place (`decide-in-place`).
        "[00:02:11] default/in-place: in-place restart by default-outcome@",
        ": pods at attempt 0 or below restart in place",
        "[00:02:21] default/in-place: in-place restart: attempt 1 runs",
        "[00:12:25] default/in-place: Completed",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
    assert_eq!(
        out.matches("restarted in place after exit code 1 (restart 1)")
            .count(),
        4,
        "{out}"
    );
    // No Job was recreated: one creation each, no JobSet restart.
    assert_eq!(
        out.matches("Job in-place-workers-0 created").count(),
        1,
        "{out}"
    );
    let row = out
        .lines()
        .find(|l| l.starts_with("default/in-place "))
        .unwrap_or_else(|| panic!("no summary row\n{out}"));
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>()[..4],
        ["default/in-place", "Completed", "0", "0"],
        "{row}"
    );
    // Each pod's restart is marked on its Job's row.
    well_formed_xml(&svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
    assert_eq!(svg.matches("<text class=\"inplace\"").count(), 4, "{svg}");
}

#[test]
fn without_its_gate_the_in_place_example_is_refused_with_the_flag_that_turns_it_on() {
    let (code, out, _) = run_with_timeline("in-place-restart", "");
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--feature-gates InPlaceRestart=true"), "{out}");
}

#[test]
fn an_elastic_jobset_grows_and_shrinks_only_with_its_gate() {
    let (code, out, svg) = run_with_timeline("elastic", "ElasticJobSet=true");
    assert_eq!(code, 0, "{out}");
    for line in [
        "[00:02:00] default/elastic: Job elastic-workers-0 resized from 2 to 4 pods",
        "[00:06:00] default/elastic: Job elastic-workers-1 resized from 4 to 1 pod",
        "[00:02:00] default/elastic: resized workers parallelism=4 completions=4",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
    assert_eq!(svg.matches("<text class=\"resize\"").count(), 4, "{svg}");

    let (code, out, _) = run_with_timeline("elastic", "");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("[00:02:00] default/elastic: resize refused: workers parallelism=4 completions=4: admission webhook \"vjobset.kb.io\" denied the request"),
        "{out}"
    );
    assert!(!out.contains("resized from"), "{out}");
}

/// A plugin built for contract 0.1.0 (the released default outcome
/// plugin, kept as a fixture) still decides a run, exactly as the built-in
/// 0.3.0 default does.
#[test]
fn a_plugin_of_contract_0_1_0_decides_a_run_as_the_built_in_default() {
    let fixture = "host/policy/tests/fixtures/contract-0.1.0/default_outcome.wasm";
    let args = |plugin: Option<&str>| {
        let mut a = vec![
            "run".to_string(),
            example("host-maintenance.yaml"),
            "--scenario".to_string(),
            "examples/host-maintenance.scenario.yaml".to_string(),
        ];
        if let Some(p) = plugin {
            a.extend(["--plugin".to_string(), format!("outcome={p}")]);
        }
        a
    };
    let decisions = |out: &std::process::Output| -> Vec<String> {
        text(out)
            .lines()
            .filter(|l| l.starts_with('[') && l.contains(": outcome by ") && !l.contains(" says: "))
            .map(|l| {
                let (head, rest) = l.split_once(": outcome by ").expect("a decision");
                let (_, what) = rest.split_once(": ").expect("plugin: what");
                format!("{head}: {what}")
            })
            .collect()
    };
    let run = |plugin| {
        let a = args(plugin);
        jobset(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let (old, new) = (run(Some(fixture)), run(None));
    assert_eq!(old.status.code(), new.status.code(), "{}", text(&old));
    assert!(
        text(&old).contains("outcome by default-outcome@22581178bb32"),
        "{}",
        text(&old)
    );
    let d = decisions(&old);
    assert!(d.len() >= 2, "{}", text(&old));
    assert_eq!(d, decisions(&new));
}

/// A node lost during an in-place JobSet's run: the default outcome plugin
/// goes on in place as upstream (the lost pod is replaced and every pod
/// restarts in place once more); `recreate-on-node-loss` decides to
/// recreate the JobSet instead (`decide-in-place`, contract 0.3.0).
#[test]
fn a_node_lost_mid_run_restarts_in_place_by_default_and_recreates_under_a_custom_plugin() {
    let run = |plugin: Option<&str>| {
        let mut a = vec![
            "run",
            "examples/in-place-restart.yaml",
            "--scenario",
            "examples/in-place-node-loss.scenario.yaml",
            "--feature-gates",
            "InPlaceRestart=true",
        ];
        if let Some(p) = plugin {
            a.extend(["--plugin", p]);
        }
        let out = jobset(&a);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        text(&out)
    };
    let summary = |out: &str| -> String {
        out.lines()
            .find(|l| l.starts_with("default/in-place "))
            .map(|l| l.split_whitespace().take(5).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };

    let default = run(None);
    assert_eq!(
        summary(&default),
        "default/in-place Completed 0 0 0",
        "{default}"
    );
    assert!(
        default.contains("[00:05:21] default/in-place: in-place restart: attempt 2 runs"),
        "{default}"
    );
    assert!(!default.contains("recreate the JobSet"), "{default}");

    let custom = run(Some("outcome=recreate-on-node-loss"));
    assert_eq!(
        summary(&custom),
        "default/in-place Completed 1 0 1",
        "{custom}"
    );
    for line in [
        "[00:05:00] default/in-place: in-place restart by recreate-on-node-loss@",
        ": recreate the JobSet instead",
        "restart jobset (PodLostDuringInPlaceRestart, rule podLost, first failed job in-place-workers-0)",
        "on node cpu-0-n0 was lost (DeletionByTaintManager: ",
    ] {
        assert!(custom.contains(line), "{line:?} in {custom}");
    }
    // Recreated, the new pods still restart in place after a crash.
    assert!(
        custom.contains("in-place restart: attempt 2 runs"),
        "{custom}"
    );
}
