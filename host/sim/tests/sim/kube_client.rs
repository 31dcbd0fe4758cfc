//! kube-rs against the simulator in-process: watches, relists, server-side
//! apply, garbage collection, webhooks, RBAC and virtual time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use jobset_sim::{Sim, SimConfig, UserInfo};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy, WatchEvent,
    WatchParams,
};
use kube::runtime::watcher;
use serde_json::json;

fn client(sim: &Sim) -> kube::Client {
    kube::Client::new(sim.service(), "default")
}

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}}))
        .expect("configmap")
}

#[tokio::test]
async fn objects_can_be_counted_in_process_by_resource_and_content() {
    let sim = Sim::new(SimConfig::default());
    let api: Api<ConfigMap> = Api::default_namespaced(client(&sim));
    for name in ["a", "b", "c"] {
        api.create(&PostParams::default(), &cm(name)).await.unwrap();
    }
    assert_eq!(sim.count_matching("", "configmaps", |_| true), 3);
    assert_eq!(
        sim.count_matching("", "configmaps", |o| o["metadata"]["name"] != "b"),
        2
    );
    assert_eq!(sim.count_matching("batch", "jobs", |_| true), 0);
    assert_eq!(sim.count_matching("nowhere", "things", |_| true), 0);
}

#[tokio::test]
async fn a_watch_resumes_from_a_resource_version() {
    let sim = Sim::new(SimConfig::default());
    let api: Api<ConfigMap> = Api::default_namespaced(client(&sim));
    api.create(&PostParams::default(), &cm("before"))
        .await
        .unwrap();
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    api.create(&PostParams::default(), &cm("after"))
        .await
        .unwrap();
    let mut stream = api
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Added(o)) => assert_eq!(o.metadata.name.as_deref(), Some("after")),
        other => panic!("expected the object created after {rv}, got {other:?}"),
    }
}

#[tokio::test]
async fn a_compacted_resource_version_answers_410_gone() {
    let sim = Sim::new(SimConfig {
        history: 16,
        ..SimConfig::default()
    });
    let api: Api<ConfigMap> = Api::default_namespaced(client(&sim));
    for i in 0..40 {
        api.create(&PostParams::default(), &cm(&format!("c{i}")))
            .await
            .unwrap();
    }
    let mut stream = api
        .watch(&WatchParams::default().timeout(5), "3")
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Error(e)) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410, got {other:?}"),
    }
}

#[tokio::test]
async fn a_410_makes_the_runtime_watcher_relist() {
    let sim = Sim::new(SimConfig {
        history: 16,
        ..SimConfig::default()
    });
    let c = client(&sim);
    let api: Api<ConfigMap> = Api::default_namespaced(c.clone());
    api.create(&PostParams::default(), &cm("first"))
        .await
        .unwrap();
    let mut events = watcher(api.clone(), watcher::Config::default()).boxed();
    let mut inits = 0;
    let mut seen_last = false;
    let mut saw_gone = false;
    // First listing.
    while let Some(ev) = events.try_next().await.unwrap() {
        if matches!(ev, watcher::Event::InitDone) {
            inits += 1;
            break;
        }
    }
    // While the watcher is not reading, the history moves past its version.
    for i in 0..40 {
        api.create(&PostParams::default(), &cm(&format!("c{i}")))
            .await
            .unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        let ev = tokio::time::timeout(Duration::from_secs(5), events.try_next()).await;
        match ev {
            Ok(Ok(Some(watcher::Event::InitDone))) => inits += 1,
            Ok(Ok(Some(watcher::Event::InitApply(o))))
                if o.metadata.name.as_deref() == Some("c39") =>
            {
                seen_last = true
            }
            Ok(Ok(Some(_))) => {}
            Ok(Err(e)) => {
                assert!(e.to_string().contains("too old resource version"), "{e}");
                saw_gone = true;
            }
            _ => break,
        }
        if inits >= 2 && seen_last {
            break;
        }
    }
    assert!(saw_gone, "the watcher was told its version is gone");
    assert!(inits >= 2, "the watcher relisted after 410");
    assert!(seen_last, "the relist contains the newest object");
}

#[tokio::test]
async fn server_side_apply_conflicts_name_the_owner_and_force_takes_over() {
    let sim = Sim::new(SimConfig::default());
    let api: Api<ConfigMap> = Api::default_namespaced(client(&sim));
    let doc = |v: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared"}, "data": {"k": v}});
    api.patch(
        "shared",
        &PatchParams::apply("alice"),
        &Patch::Apply(doc("1")),
    )
    .await
    .unwrap();
    let err = api
        .patch(
            "shared",
            &PatchParams::apply("bob"),
            &Patch::Apply(doc("2")),
        )
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("expected an API error")
    };
    assert_eq!(status.code, 409);
    assert!(
        status.message.contains("conflict with \"alice\""),
        "{}",
        status.message
    );
    let forced = api
        .patch(
            "shared",
            &PatchParams::apply("bob").force(),
            &Patch::Apply(doc("2")),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.unwrap()["k"], "2");
    let managers: Vec<String> = forced
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert_eq!(managers, vec!["bob".to_string()]);
}

#[tokio::test]
async fn garbage_collection_follows_owner_references() {
    let sim = Sim::new(SimConfig::default());
    let api: Api<ConfigMap> = Api::default_namespaced(client(&sim));
    let owner = api
        .create(&PostParams::default(), &cm("owner"))
        .await
        .unwrap();
    let uid = owner.metadata.uid.clone().unwrap();
    for name in ["dep-a", "dep-b"] {
        let dep: ConfigMap = serde_json::from_value(json!({"metadata": {"name": name, "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid, "blockOwnerDeletion": true}]}})).unwrap();
        api.create(&PostParams::default(), &dep).await.unwrap();
    }
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    api.delete("owner", &dp).await.unwrap();
    let left: Vec<String> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert!(
        left.iter().all(|n| !n.starts_with("dep-") && n != "owner"),
        "{left:?}"
    );

    // Orphan keeps the dependent and strips its reference.
    let owner = api
        .create(&PostParams::default(), &cm("owner2"))
        .await
        .unwrap();
    let dep: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "kept", "ownerReferences": [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner2", "uid": owner.metadata.uid.unwrap()}]}})).unwrap();
    api.create(&PostParams::default(), &dep).await.unwrap();
    api.delete("owner2", &DeleteParams::orphan()).await.unwrap();
    let kept = api.get("kept").await.unwrap();
    assert!(
        kept.metadata
            .owner_references
            .unwrap_or_default()
            .is_empty()
    );
}

#[tokio::test]
async fn a_service_account_without_a_rule_is_forbidden() {
    let mut config = SimConfig {
        rbac: true,
        ..SimConfig::default()
    };
    config.tokens.insert("admin".into(), UserInfo::admin());
    let sim = Sim::new(config);
    let token = sim.mint_service_account_token("default", "bot");
    let with_token = |t: String| {
        let svc = tower::ServiceBuilder::new()
            .map_request(move |mut r: http::Request<kube::client::Body>| {
                r.headers_mut().insert(
                    "authorization",
                    format!("Bearer {t}").parse().expect("header"),
                );
                r
            })
            .service(sim.service());
        kube::Client::new(svc, "default")
    };
    let token_copy = token.clone();
    let bot: Api<ConfigMap> = Api::default_namespaced(with_token(token));
    let err = bot.list(&ListParams::default()).await.unwrap_err();
    let kube::Error::Api(s) = err else {
        panic!("expected an API error")
    };
    assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"));
    assert!(
        s.message.contains(
            "User \"system:serviceaccount:default:bot\" cannot list resource \"configmaps\""
        ),
        "{}",
        s.message
    );

    // A Role and RoleBinding grant exactly list.
    let admin = with_token("admin".into());
    let roles: Api<k8s_openapi::api::rbac::v1::Role> = Api::default_namespaced(admin.clone());
    roles
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "reader"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]}))
            .unwrap(),
        )
        .await
        .unwrap();
    let bindings: Api<k8s_openapi::api::rbac::v1::RoleBinding> = Api::default_namespaced(admin);
    bindings
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "bot-reads"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "bot", "namespace": "default"}]}))
            .unwrap(),
        )
        .await
        .unwrap();
    assert!(bot.list(&ListParams::default()).await.is_ok());
    let err = bot
        .create(&PostParams::default(), &cm("nope"))
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 403));

    // The bot can ask what it may do.
    use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
    let reviews: Api<SelfSubjectAccessReview> = Api::all(with_token(token_copy.clone()));
    let ask = |verb: &str| -> SelfSubjectAccessReview {
        serde_json::from_value(json!({"spec": {"resourceAttributes": {"verb": verb, "resource": "configmaps", "namespace": "default"}}})).unwrap()
    };
    let yes = reviews
        .create(&PostParams::default(), &ask("list"))
        .await
        .unwrap();
    assert!(yes.status.map(|s| s.allowed) == Some(true));
    let no = reviews
        .create(&PostParams::default(), &ask("delete"))
        .await
        .unwrap();
    assert!(no.status.map(|s| s.allowed) == Some(false));

    // An aggregated ClusterRole grants the rules of the roles it selects.
    let admin = with_token("admin".into());
    let cluster_roles: Api<k8s_openapi::api::rbac::v1::ClusterRole> = Api::all(admin.clone());
    cluster_roles
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "piece", "labels": {"agg": "yes"}},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["delete"]}]}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    cluster_roles.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "aggregate"},
        "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": "yes"}}]}, "rules": []})).unwrap()).await.unwrap();
    let crbs: Api<k8s_openapi::api::rbac::v1::ClusterRoleBinding> = Api::all(admin);
    crbs.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "bot-aggregate"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "aggregate"},
        "subjects": [{"kind": "ServiceAccount", "name": "bot", "namespace": "default"}]})).unwrap()).await.unwrap();
    let now_yes = reviews
        .create(&PostParams::default(), &ask("delete"))
        .await
        .unwrap();
    assert!(now_yes.status.map(|s| s.allowed) == Some(true));
}

#[test]
fn a_watcher_on_a_paused_clock_idles_over_virtual_hours() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let sim = Sim::new(SimConfig::default());
        let watches = Arc::new(AtomicUsize::new(0));
        let counter = watches.clone();
        let svc = tower::ServiceBuilder::new()
            .map_request(move |r: http::Request<kube::client::Body>| {
                if r.uri().query().is_some_and(|q| q.contains("watch=true")) {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                r
            })
            .service(sim.service());
        let api: Api<ConfigMap> = Api::default_namespaced(kube::Client::new(svc, "default"));
        let writer = sim.client("test");
        let task = tokio::spawn(async move {
            watcher(api, watcher::Config::default())
                .for_each(|_| async {})
                .await;
        });
        let start = tokio::time::Instant::now();
        tokio::time::sleep(Duration::from_secs(3600)).await;
        writer
            .create(
                &jobset_sim::Resource::new("", "v1", "configmaps"),
                Some("default"),
                &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "mid"}}),
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(3600)).await;
        task.abort();
        assert!(start.elapsed() >= Duration::from_secs(7200));
        let n = watches.load(Ordering::SeqCst);
        assert!(
            (2..=100).contains(&n),
            "{n} watch requests over two virtual hours"
        );
    });
}

#[tokio::test]
async fn custom_resources_keep_status_and_generation_apart_as_a_real_server_does() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
    let sim = Sim::new(SimConfig::default());
    let c = client(&sim);
    let crds: Api<CustomResourceDefinition> = Api::all(c.clone());
    let crd: CustomResourceDefinition =
        serde_json::from_value(jobset_sim::example_crd("x.io", "Widget", "widgets")).unwrap();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("x.io", "v1", "Widget"),
        "widgets",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(c.clone(), "default", &ar);
    let w: DynamicObject = serde_json::from_value(json!({"apiVersion": "x.io/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"mode": "fast"}})).unwrap();
    let made = api.create(&PostParams::default(), &w).await.unwrap();
    assert_eq!(made.data["spec"]["size"], 1, "schema default applied");
    assert_eq!(made.metadata.generation, Some(1));
    let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    let after = api
        .patch_status("w", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    assert_eq!(
        after.metadata.generation,
        Some(1),
        "status changes leave generation alone"
    );
    assert_eq!(after.data["status"]["conditions"][0]["type"], "Ready");
    let spec = json!({"spec": {"size": 4}, "status": {"conditions": []}});
    let after = api
        .patch("w", &PatchParams::default(), &Patch::Merge(&spec))
        .await
        .unwrap();
    assert_eq!(after.metadata.generation, Some(2));
    assert_eq!(
        after.data["status"]["conditions"][0]["status"], "True",
        "the main endpoint ignores status"
    );
    // Server-side apply on the status subresource, as a controller writes it.
    let applied = json!({"apiVersion": "x.io/v1", "kind": "Widget", "metadata": {"name": "w"}, "status": {"phase": "Done"}});
    let after = api
        .patch_status(
            "w",
            &PatchParams::apply("widget-controller").force(),
            &Patch::Apply(&applied),
        )
        .await
        .unwrap();
    assert_eq!(after.data["status"]["phase"], "Done");
    assert_eq!(after.data["spec"]["size"], 4);
    // Deleting the CRD takes its objects and its endpoint along.
    crds.delete("widgets.x.io", &DeleteParams::default())
        .await
        .unwrap();
    let err = api.get("w").await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 404));
}
