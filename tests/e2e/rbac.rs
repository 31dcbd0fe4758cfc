//! The deploy ClusterRole and Role are sufficient and minimal. The
//! controller runs as the deploy ServiceAccount on a simulator enforcing
//! RBAC: create, suspend/resume, fail, restart, complete and TTL delete
//! succeed with no request forbidden, and so do the webhook's certificate
//! management, claim lookup and repeated events. Then every single verb of
//! every rule is removed in turn, and each removal makes the run fail.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobset_controller::leader::{LeaderConfig, LeaderElector};
use jobset_controller::policy::PluginConfigMaps;
use jobset_controller::webhook::{CertStore, ManagedCerts, Renewal, WebhookState, server};
use jobset_e2e::{Env, runtime};
use jobset_policy::NativeDefaults;
use jobset_sim::{Sim, SimConfig, UserInfo};
use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::ApiResource;
use kube::core::GroupVersionKind;
use serde_json::{Value, json};

const SYSTEM: &str = "jobset-system";
const SA: &str = "jobset-controller";

fn deploy_doc(file: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The deploy RBAC objects: (file, object).
fn rbac_objects() -> Vec<(&'static str, Value)> {
    [
        "rbac/service_account.yaml",
        "rbac/cluster_role.yaml",
        "rbac/cluster_role_binding.yaml",
        "rbac/role.yaml",
        "rbac/role_binding.yaml",
    ]
    .into_iter()
    .map(|f| (f, deploy_doc(f)))
    .collect()
}

/// A client that authenticates with `token` and records forbidden requests.
fn client_as(sim: &Sim, token: String, forbidden: Arc<Mutex<Vec<String>>>) -> Client {
    let inner = sim.service();
    let svc = tower::service_fn(move |mut req: http::Request<kube::client::Body>| {
        let mut inner = inner.clone();
        let forbidden = forbidden.clone();
        let what = format!("{} {}", req.method(), req.uri());
        if let Ok(v) = http::HeaderValue::from_str(&format!("Bearer {token}")) {
            req.headers_mut().insert(http::header::AUTHORIZATION, v);
        }
        async move {
            let resp = tower::Service::call(&mut inner, req).await?;
            if resp.status() == http::StatusCode::FORBIDDEN
                && let Ok(mut f) = forbidden.lock()
            {
                f.push(what);
            }
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    Client::new(svc, "default")
}

async fn apply(client: &Client, obj: &Value) {
    let gvk = GroupVersionKind::try_from(
        &serde_json::from_value::<kube::core::TypeMeta>(obj.clone()).expect("types"),
    )
    .expect("gvk");
    let plural = match gvk.kind.as_str() {
        "ServiceAccount" => "serviceaccounts",
        "ClusterRole" => "clusterroles",
        "ClusterRoleBinding" => "clusterrolebindings",
        "Role" => "roles",
        "RoleBinding" => "rolebindings",
        "Namespace" => "namespaces",
        "MutatingWebhookConfiguration" => "mutatingwebhookconfigurations",
        "ValidatingWebhookConfiguration" => "validatingwebhookconfigurations",
        other => panic!("no plural for {other}"),
    };
    let ar = ApiResource::from_gvk_with_plural(&gvk, plural);
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let api: Api<DynamicObject> = match obj["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    api.patch(
        name,
        &PatchParams::apply("rbac-test").force(),
        &Patch::Apply(obj),
    )
    .await
    .unwrap_or_else(|e| panic!("apply {} {name}: {e}", gvk.kind));
}

/// Plugin ConfigMaps are watched but none is loaded in this test.
struct NoPlugins;
impl PluginConfigMaps for NoPlugins {
    fn upsert(&self, _: &ConfigMap) -> Result<(), String> {
        Ok(())
    }
    fn remove(&self, _: &str, _: &str) {}
}

const FIXTURE: &str = r#"
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata: {name: rbac, namespace: default}
spec:
  ttlSecondsAfterFinished: 30
  failurePolicy: {maxRestarts: 1}
  volumeClaimPolicies:
  - templates:
    - metadata: {name: data}
      spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
  replicatedJobs:
  - name: w
    replicas: 2
    template:
      spec:
        template:
          spec:
            containers:
            - name: c
              image: busybox
              volumeMounts: [{name: data, mountPath: /data}]
"#;

const IN_PLACE: &str = r#"
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata: {name: rbac-in-place, namespace: default}
spec:
  failurePolicy: {maxRestarts: 1, restartStrategy: InPlaceRestart}
  replicatedJobs:
  - name: w
    template:
      spec:
        completionMode: Indexed
        parallelism: 2
        completions: 2
        backoffLimit: 2147483647
        podReplacementPolicy: Failed
        template: {spec: {containers: [{name: c, image: busybox}]}}
"#;

async fn can(
    client: &Client,
    verb: &str,
    group: &str,
    resource: &str,
    sub: &str,
    ns: &str,
) -> bool {
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let review: SelfSubjectAccessReview = serde_json::from_value(json!({
        "spec": {"resourceAttributes": {"verb": verb, "group": group, "resource": resource,
                 "subresource": sub, "namespace": ns}}
    }))
    .expect("review");
    api.create(&PostParams::default(), &review)
        .await
        .ok()
        .and_then(|r| r.status)
        .is_some_and(|s| s.allowed)
}

/// Runs everything the controller does with the given RBAC objects and
/// returns the failures (forbidden requests and failed checks). Panics
/// when a step of the scenario times out.
/// The controller as `deploy/` runs it: plugin ConfigMaps read in its own
/// namespace only.
async fn scenario(objects: Vec<Value>) -> Vec<String> {
    scenario_with(objects, Some(SYSTEM)).await
}

/// The scenario, with plugin ConfigMaps watched in `plugin_namespace`
/// (`None`: every namespace, as with namespace plugins).
async fn scenario_with(objects: Vec<Value>, plugin_namespace: Option<&str>) -> Vec<String> {
    let sim = Sim::new(SimConfig {
        rbac: true,
        ..Default::default()
    });
    sim.add_token("admin", UserInfo::admin());
    let nobody = Arc::new(Mutex::new(Vec::new()));
    let admin = client_as(&sim, "admin".into(), nobody);
    apply(
        &admin,
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SYSTEM}}),
    )
    .await;
    for o in &objects {
        apply(&admin, o).await;
    }
    let token = sim.mint_service_account_token(SYSTEM, SA);
    let forbidden = Arc::new(Mutex::new(Vec::new()));
    let sa = client_as(&sim, token, forbidden.clone());
    // A forbidden request fails the run at once: no need to wait for the
    // scenario's timeouts.
    let first_forbidden = {
        let forbidden = forbidden.clone();
        async move {
            loop {
                if forbidden.lock().map(|f| !f.is_empty()).unwrap_or(false) {
                    return Vec::new();
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let body = async {
        let mut failed = Vec::new();

        // With InPlaceRestart on, a JobSet restarting in place has its
        // pods watched.
        let env = Env::start_on_with_gates(
            sim.clone(),
            admin.clone(),
            sa.clone(),
            Arc::new(NativeDefaults),
            Some(Arc::new(NoPlugins)),
            &["InPlaceRestart"],
            plugin_namespace,
        )
        .await;
        env.create(IN_PLACE).await;
        env.create(FIXTURE).await;
        let jobs = env.wait_jobs("rbac", 2).await;
        // The validating webhook reads the claim the controller created.
        let review: kube::core::admission::AdmissionReview<DynamicObject> = serde_json::from_value(json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "1", "kind": {"group": "jobset.x-k8s.io", "version": "v1alpha2", "kind": "JobSet"},
            "resource": {"group": "jobset.x-k8s.io", "version": "v1alpha2", "resource": "jobsets"},
            "name": "rbac", "namespace": "default", "operation": "CREATE", "userInfo": {},
            "object": serde_yaml::from_str::<Value>(FIXTURE).expect("fixture")}
    }))
    .expect("review");
        let request = review.try_into().expect("request");
        let state = WebhookState {
            client: Some(sa.clone()),
            gates: Default::default(),
            store: Arc::new(CertStore::default()),
        };
        match server::fetch_claims(&state, &request).await {
            Ok(c) if c.len() == 1 => {}
            Ok(c) => failed.push(format!(
                "the webhook found {} claims, not the one created",
                c.len()
            )),
            Err(e) => failed.push(format!("the webhook could not read claims: {e}")),
        }

        // Running Jobs have a start time; resuming clears it.
        env.ready_job(&jobs[0]).await;
        env.patch_spec("rbac", json!({"suspend": true})).await;
        env.wait_until(
            "the Jobs are suspended",
            Duration::from_secs(120),
            || async {
                env.jobs("rbac")
                    .await
                    .iter()
                    .all(|j| j.spec.as_ref().and_then(|s| s.suspend) == Some(true))
            },
        )
        .await;
        env.patch_spec("rbac", json!({"suspend": false})).await;
        env.wait_until("the Jobs are resumed", Duration::from_secs(120), || async {
            env.jobs("rbac").await.iter().all(|j| {
                j.spec.as_ref().and_then(|s| s.suspend) == Some(false)
                    && j.status
                        .as_ref()
                        .and_then(|s| s.start_time.as_ref())
                        .is_none()
            })
        })
        .await;
        // A creation that meets a Job of its name (a reconcile ahead of
        // its cache) asks who holds the name, within the role.
        let stored = env.get("rbac").await;
        let applier = jobset_controller::apply::Applier {
            client: &sa,
            jobset: &stored,
            index: &jobset_controller::index::Index::default(),
            recorder: &jobset_controller::events::Recorder::new(
                sa.clone(),
                "jobset",
                jobset_controller::clock::Clock::wall(),
            ),
        };
        let again = jobset_controller::job_builder::build_job(
            &stored,
            &stored.spec.replicated_jobs[0],
            0,
            false,
        );
        if let Err(e) = applier
            .apply(&[jobset_controller::actions::Action::CreateJobs(vec![
                again.into(),
            ])])
            .await
        {
            failed.push(format!(
                "creating a Job that exists, as its own JobSet: {e}"
            ));
        }
        let jobs = env.jobs("rbac").await;
        env.fail_job(&jobs[0], "BackoffLimitExceeded", "boom").await;
        let jobs = env.wait_attempt("rbac", 1, 2).await;
        for j in &jobs {
            env.complete_job(j).await;
        }
        env.wait_condition("rbac", "Completed").await;
        env.wait_until(
            "the TTL deletes the JobSet",
            Duration::from_secs(300),
            || async { env.jobsets().get_opt("rbac").await.ok().flatten().is_none() },
        )
        .await;

        // A repeated event becomes a series (create, then patch).
        let recorder = jobset_controller::events::Recorder::new(
            sa.clone(),
            "jobset",
            jobset_controller::clock::Clock::wall(),
        );
        let reference = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some("jobset.x-k8s.io/v1alpha2".into()),
            kind: Some("JobSet".into()),
            name: Some("rbac".into()),
            namespace: Some("default".into()),
            ..Default::default()
        };
        let ev = jobset_controller::events::Event::reconciling(
            jobset_controller::conditions::EventType::Warning,
            "Repeated",
            "again",
        );
        for _ in 0..2 {
            if let Err(e) = recorder.publish(&ev, &reference).await {
                failed.push(format!("event: {e}"));
            }
        }

        // Certificates: first generation, then a rotation, as the SA.
        let hooks = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/webhook/webhooks.yaml"),
        )
        .expect("webhooks.yaml");
        for doc in hooks.split("\n---\n") {
            let v: Value = serde_yaml::from_str(doc).unwrap_or(Value::Null);
            if v.get("webhooks").is_some() {
                apply(&admin, &v).await;
            }
        }
        let mut certs = match jobset_controller::webhook::CertSource::managed(
            SYSTEM,
            jobset_controller::webhook::DEFAULT_SERVICE,
            jobset_controller::webhook::DEFAULT_SECRET,
        ) {
            jobset_controller::webhook::CertSource::Managed(m) => m,
            other => panic!("{other:?}"),
        };
        let store = CertStore::default();
        let now = 1_790_000_000;
        match certs.ensure(&sa, &store, now).await {
            Ok(Renewal::Generated(_)) => {}
            other => failed.push(format!("first certificate: {other:?}")),
        }
        certs.renew_before = Duration::from_secs(400 * 86_400);
        match ManagedCerts::ensure(&certs, &sa, &store, now).await {
            Ok(Renewal::Generated(_)) => {}
            other => failed.push(format!("rotation: {other:?}")),
        }

        // What the simulator does not enforce, asked of the authorizer: child
        // Jobs set blockOwnerDeletion, which needs update on jobsets/finalizers
        // where OwnerReferencesPermissionEnforcement is on.
        let js = jobset_api::parse_jobset_yaml(FIXTURE).expect("fixture");
        let blocks = jobset_controller::job_builder::owner_reference(&js).block_owner_deletion;
        if blocks == Some(true)
            && !can(
                &sa,
                "update",
                "jobset.x-k8s.io",
                "jobsets",
                "finalizers",
                "default",
            )
            .await
        {
            failed.push(
                "child Jobs block owner deletion but jobsets/finalizers update is not granted"
                    .into(),
            );
        }
        // Leader election: take the Lease (get, create), then hand it back (update).
        let sim_clock = sim.clock().clone();
        let clock = jobset_controller::clock::Clock::from_fn(move || {
            k8s_openapi::jiff::Timestamp::from_second(sim_clock.now_secs())
                .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
        });
        let mut elector =
            LeaderElector::new(sa.clone(), LeaderConfig::new(SYSTEM, "replica-a"), clock);
        if tokio::time::timeout(Duration::from_secs(60), elector.acquire())
            .await
            .is_err()
        {
            failed.push("leader election could not take the Lease".into());
        } else if let Err(e) = elector.release().await {
            failed.push(format!("leader election could not release the Lease: {e}"));
        }
        env.stop().await;
        failed
    };
    let failed = tokio::select! {
        f = body => f,
        f = first_forbidden => f,
    };
    let mut out = forbidden.lock().map(|f| f.clone()).unwrap_or_default();
    out.extend(failed);
    out
}

/// Every way to remove one verb (or a whole one-verb rule) from the roles.
fn single_removals(objects: &[(&'static str, Value)]) -> Vec<(String, Vec<Value>)> {
    let mut out = Vec::new();
    for (i, (file, obj)) in objects.iter().enumerate() {
        let rules = obj["rules"].as_array().cloned().unwrap_or_default();
        for (r, rule) in rules.iter().enumerate() {
            let verbs = rule["verbs"].as_array().cloned().unwrap_or_default();
            for (v, verb) in verbs.iter().enumerate() {
                let mut changed: Vec<Value> = objects.iter().map(|(_, o)| o.clone()).collect();
                let target = &mut changed[i]["rules"];
                if verbs.len() == 1 {
                    if let Some(a) = target.as_array_mut() {
                        a.remove(r);
                    }
                } else if let Some(a) = target[r]["verbs"].as_array_mut() {
                    a.remove(v);
                }
                let what = format!("{file} rule {r} ({}) without {verb}", rule["resources"]);
                out.push((what, changed));
            }
        }
    }
    out
}

#[test]
fn the_deploy_roles_are_enough_for_everything_the_controller_does() {
    let objects: Vec<Value> = rbac_objects().into_iter().map(|(_, o)| o).collect();
    let failures = runtime().block_on(scenario(objects));
    assert!(failures.is_empty(), "forbidden or failed: {failures:#?}");
}

#[test]
fn removing_any_single_verb_from_the_deploy_roles_makes_the_run_fail() {
    let objects = rbac_objects();
    let removals = single_removals(&objects);
    assert!(removals.len() >= 25, "{} removals", removals.len());
    let results: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let queue = Arc::new(Mutex::new(removals));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let queue = queue.clone();
            let results = results.clone();
            std::thread::spawn(move || {
                loop {
                    let next = queue.lock().ok().and_then(|mut q| q.pop());
                    let Some((what, changed)) = next else { return };
                    let run = std::thread::spawn(move || runtime().block_on(scenario(changed)));
                    let outcome = match run.join() {
                        Err(_) => "a scenario step failed".to_string(),
                        Ok(f) if f.is_empty() => String::new(),
                        Ok(f) => f.join("; "),
                    };
                    if let Ok(mut r) = results.lock() {
                        r.insert(what, outcome);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    let results = results.lock().expect("results").clone();
    let unnoticed: Vec<&String> = results
        .iter()
        .filter(|(_, outcome)| outcome.is_empty())
        .map(|(what, _)| what)
        .collect();
    assert!(
        unnoticed.is_empty(),
        "removals nothing noticed: {unnoticed:#?}"
    );
}

/// The objects of `examples/in-place-restart-rbac.yaml`, in `default`.
fn agent_rbac_objects() -> Vec<Value> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/in-place-restart-rbac.yaml"),
    )
    .expect("the example's RBAC");
    text.split("\n---\n")
        .map(|doc| {
            let mut v: Value = serde_yaml::from_str(doc).expect("a YAML document");
            v["metadata"]["namespace"] = json!("default");
            v
        })
        .collect()
}

/// `jobset agent` as the example's service account: it reports its pod's
/// attempt, and once the JobSet's current attempt is its own it runs its
/// worker (which exits 7). What failed, or was forbidden.
async fn agent_scenario(objects: Vec<Value>) -> Vec<String> {
    let sim = Sim::new(SimConfig {
        rbac: true,
        ..Default::default()
    });
    sim.add_token("admin", UserInfo::admin());
    let admin = client_as(&sim, "admin".into(), Arc::default());
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(admin.clone());
    crds.create(&PostParams::default(), &jobset_api::crd::crd())
        .await
        .expect("the CRD registers");
    for o in &objects {
        apply(&admin, o).await;
    }
    let jobsets: Api<jobset_api::JobSet> = Api::namespaced(admin.clone(), "default");
    let js = jobset_api::parse_jobset_yaml(
        "apiVersion: jobset.x-k8s.io/v1alpha2\nkind: JobSet\nmetadata: {name: ipr, namespace: default}\nspec:\n  failurePolicy: {maxRestarts: 1, restartStrategy: InPlaceRestart}\n  replicatedJobs:\n  - name: w\n    template: {spec: {completionMode: Indexed, parallelism: 1, completions: 1, template: {spec: {containers: [{name: c, image: busybox}]}}}}\n",
    )
    .expect("fixture");
    jobsets
        .create(&PostParams::default(), &js)
        .await
        .expect("JobSet created");
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(admin.clone(), "default");
    let pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "ipr-w-0-0", "namespace": "default",
                     "labels": {"jobset.sigs.k8s.io/jobset-name": "ipr"}},
        "spec": {"serviceAccountName": "jobset-in-place-restart",
                 "containers": [{"name": "c", "image": "busybox"}]}
    }))
    .expect("a pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("pod created");

    let forbidden = Arc::new(Mutex::new(Vec::new()));
    let token = sim.mint_service_account_token("default", "jobset-in-place-restart");
    let sa = client_as(&sim, token, forbidden.clone());
    let settings = jobset::agent_cmd::Settings::main("default", "ipr", "ipr-w-0-0", "exit 7");
    let mut agent = tokio::spawn(jobset::agent_cmd::serve(sa, settings));
    let mut failed = Vec::new();
    let attempt_reported = async {
        loop {
            let p = pods.get("ipr-w-0-0").await.expect("pod read");
            let reported = p
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("jobset.sigs.k8s.io/in-place-restart-attempt"))
                .cloned();
            if reported.as_deref() == Some("0") {
                return;
            }
            if forbidden.lock().map(|f| !f.is_empty()).unwrap_or(false) {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let stop_on_forbidden = || {
        let forbidden = forbidden.clone();
        async move {
            loop {
                if forbidden.lock().map(|f| !f.is_empty()).unwrap_or(false) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    tokio::select! {
        _ = attempt_reported => {
            jobsets
                .patch_status(
                    "ipr",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {"currentInPlaceRestartAttempt": 0}})),
                )
                .await
                .expect("status written");
            tokio::select! {
                ended = &mut agent => match ended {
                    Ok(Ok(7)) => {}
                    other => failed.push(format!("the agent ended with {other:?}, not the worker's 7")),
                },
                _ = stop_on_forbidden() => {}
                _ = tokio::time::sleep(Duration::from_secs(20)) => failed.push("the worker never ran".into()),
            }
        }
        _ = stop_on_forbidden() => {}
        _ = tokio::time::sleep(Duration::from_secs(20)) => failed.push("the agent never reported its attempt".into()),
    }
    agent.abort();
    let mut out = forbidden.lock().map(|f| f.clone()).unwrap_or_default();
    out.extend(failed);
    out
}

/// A real clock: the agent runs its worker as a process.
fn wall_clock_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

#[test]
fn the_agent_role_of_the_example_is_enough_and_every_verb_of_it_is_needed() {
    let objects = agent_rbac_objects();
    let failures = wall_clock_runtime().block_on(agent_scenario(objects.clone()));
    assert!(failures.is_empty(), "forbidden or failed: {failures:#?}");
    let role_at = objects
        .iter()
        .position(|o| o["kind"] == "Role")
        .expect("a Role");
    let removals = single_removals(&[(
        "examples/in-place-restart-rbac.yaml",
        objects[role_at].clone(),
    )]);
    assert_eq!(removals.len(), 3, "{removals:?}");
    for (what, changed) in removals {
        let mut with = objects.clone();
        with[role_at] = changed.into_iter().next().expect("the Role");
        let failures = wall_clock_runtime().block_on(agent_scenario(with));
        assert!(!failures.is_empty(), "{what}: the agent still worked");
    }
}

#[test]
fn namespace_plugins_need_the_component_and_the_base_grants_no_cluster_wide_configmaps() {
    let base: Vec<Value> = rbac_objects().into_iter().map(|(_, o)| o).collect();
    for (file, o) in rbac_objects() {
        if o["kind"] == "ClusterRole" {
            let rules = o["rules"].as_array().cloned().unwrap_or_default();
            assert!(
                !rules
                    .iter()
                    .any(|r| r["resources"].to_string().contains("configmaps")),
                "{file} grants ConfigMaps cluster-wide"
            );
        }
    }
    // Watching plugins in every namespace with the base alone is refused.
    let failures = runtime().block_on(scenario_with(base.clone(), None));
    assert!(
        failures.iter().any(|f| f.contains("configmaps")),
        "the base let the controller read every namespace's ConfigMaps: {failures:#?}"
    );
    // With the component's ClusterRole and binding it is allowed.
    let mut with = base;
    for f in ["cluster_role.yaml", "cluster_role_binding.yaml"] {
        with.push(deploy_doc(&format!("components/namespace-plugins/{f}")));
    }
    let failures = runtime().block_on(scenario_with(with, None));
    assert!(failures.is_empty(), "forbidden or failed: {failures:#?}");
}
