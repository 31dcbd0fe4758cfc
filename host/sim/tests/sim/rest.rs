//! REST semantics through the in-process request path: bad input answered
//! with the right Status, creation rules, the status subresource, selectors,
//! paging, watches with bookmarks and selector transitions.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::Method;
use jobset_sim::{ApiRequest, Propagation, Resource, Sim, SimConfig};
use serde_json::{Value, json};

async fn call(sim: &Sim, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = ApiRequest::new(method, path);
    if let Some(b) = body {
        req = req.with_json(&b);
    }
    let resp = sim.handle(req).await;
    match resp.body {
        jobset_sim::request::ApiBody::Json(v) => (resp.status, (*v).clone()),
        _ => (resp.status, Value::Null),
    }
}

fn cm(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "1"}})
}

#[tokio::test]
async fn bad_input_gets_a_status_with_the_right_code() {
    let sim = Sim::new(SimConfig {
        max_body_bytes: 1024,
        ..SimConfig::default()
    });
    let cms = "/api/v1/namespaces/default/configmaps";
    let raw = |m: Method, p: &str, ct: &str, body: &'static [u8]| {
        ApiRequest::new(m, p).with_body(ct, Bytes::from_static(body))
    };
    let cases: Vec<(ApiRequest, u16, &str)> = vec![
        (raw(Method::POST, cms, "application/json", b"{not json"), 400, "BadRequest"),
        (raw(Method::POST, cms, "application/json", b"[1,2]"), 400, "BadRequest"),
        (raw(Method::POST, cms, "text/csv", b"a,b"), 415, "UnsupportedMediaType"),
        (raw(Method::POST, cms, "application/json", br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"}}"#), 400, "BadRequest"),
        (raw(Method::POST, cms, "application/json", br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","namespace":"other"}}"#), 400, "BadRequest"),
        (raw(Method::POST, "/api/v1/namespaces/nope/configmaps", "application/json", br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}"#), 404, "NotFound"),
        (raw(Method::POST, cms, "application/json", br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Not_Valid"}}"#), 422, "Invalid"),
        (ApiRequest::new(Method::GET, "/api/v1/namespaces/default/widgets"), 404, "NotFound"),
        (ApiRequest::new(Method::GET, &format!("{cms}?labelSelector=a%20in%20b")), 400, "BadRequest"),
        (ApiRequest::new(Method::GET, &format!("{cms}?fieldSelector=spec.nope%3Dx")), 400, "BadRequest"),
        (ApiRequest::new(Method::PUT, cms), 405, "MethodNotAllowed"),
        (raw(Method::PATCH, &format!("{cms}/x"), "application/xml", b"<x/>"), 415, "UnsupportedMediaType"),
    ];
    for (req, code, reason) in cases {
        let what = format!("{} {}", req.method, req.path);
        let resp = sim.handle(req).await;
        let jobset_sim::request::ApiBody::Json(v) = resp.body else {
            panic!("{what}: not JSON")
        };
        assert_eq!(
            (resp.status, v["reason"].as_str().unwrap_or_default()),
            (code, reason),
            "{what}: {v}"
        );
        assert_eq!(v["kind"], "Status");
    }
    // Oversized bodies are refused by the HTTP layer with 413.
    let mut svc = sim.service();
    let big = http::Request::post(cms)
        .body(http_body_util::Full::new(Bytes::from(vec![b' '; 4096])))
        .unwrap();
    let resp = tower::Service::call(&mut svc, big).await.unwrap();
    assert_eq!(resp.status(), 413);
}

#[tokio::test]
async fn creation_fills_server_fields_and_refuses_duplicates() {
    let sim = Sim::new(SimConfig::default());
    let cms = "/api/v1/namespaces/default/configmaps";
    let (code, made) = call(
        &sim,
        Method::POST,
        cms,
        Some(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "gen-"}}),
        ),
    )
    .await;
    assert_eq!(code, 201);
    let name = made["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");
    for f in ["uid", "resourceVersion", "creationTimestamp", "namespace"] {
        assert!(made["metadata"][f].is_string(), "{f} set");
    }
    call(&sim, Method::POST, cms, Some(cm("one"))).await;
    let (code, err) = call(&sim, Method::POST, cms, Some(cm("one"))).await;
    assert_eq!((code, err["reason"].as_str()), (409, Some("AlreadyExists")));
    assert_eq!(err["message"], "configmaps \"one\" already exists");
}

#[tokio::test]
async fn the_status_subresource_and_the_main_endpoint_change_separate_parts() {
    let sim = Sim::new(SimConfig::default());
    let c = sim.client("tester");
    let jobs = Resource::jobs();
    let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}},
        "status": {"active": 5}});
    let made = c.create(&jobs, Some("default"), &job).await.unwrap();
    assert!(made.get("status").is_none(), "status is dropped on create");
    let mut with_status = made.clone();
    with_status["status"] = json!({"active": 1});
    with_status["spec"]["parallelism"] = json!(9);
    let after = c
        .update_status(&jobs, Some("default"), &with_status)
        .await
        .unwrap();
    assert_eq!(
        (
            after["status"]["active"].as_i64(),
            after["spec"]["parallelism"].as_i64()
        ),
        (Some(1), Some(1))
    );
    let mut main = after.clone();
    main["status"] = json!({"active": 7});
    main["metadata"]["labels"] = json!({"x": "y"});
    let after = c.update(&jobs, Some("default"), &main).await.unwrap();
    assert_eq!(
        (
            after["status"]["active"].as_i64(),
            after["metadata"]["labels"]["x"].as_str()
        ),
        (Some(1), Some("y"))
    );
    // A stale resourceVersion is a conflict.
    let err = c.update(&jobs, Some("default"), &main).await.unwrap_err();
    assert_eq!((err.code, err.reason), (409, "Conflict"));
    // Jobs orphan their pods unless told otherwise, as a real server does.
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "ownerReferences": [
        {"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": after["metadata"]["uid"], "controller": true}]},
        "spec": {"containers": [{"name": "c", "image": "i"}]}});
    c.create(&Resource::pods(), Some("default"), &pod)
        .await
        .unwrap();
    c.delete(&jobs, Some("default"), "j", None).await.unwrap();
    assert!(c.get(&Resource::pods(), Some("default"), "p").await.is_ok());
}

#[tokio::test]
async fn lists_filter_by_labels_and_fields_and_page_with_continue() {
    let sim = Sim::new(SimConfig::default());
    let c = sim.client("tester");
    let res = Resource::new("", "v1", "configmaps");
    for i in 0..5 {
        let mut o = cm(&format!("c{i}"));
        o["metadata"]["labels"] = json!({"parity": if i % 2 == 0 { "even" } else { "odd" }});
        c.create(&res, Some("default"), &o).await.unwrap();
    }
    let even = c
        .list(&res, Some("default"), Some("parity=even"))
        .await
        .unwrap();
    assert_eq!(even["items"].as_array().map(Vec::len), Some(3));
    assert!(even["metadata"]["resourceVersion"].is_string());
    let (_, by_name) = call(
        &sim,
        Method::GET,
        "/api/v1/configmaps?fieldSelector=metadata.name%3Dc3",
        None,
    )
    .await;
    assert_eq!(by_name["items"][0]["metadata"]["name"], "c3");
    let (_, page1) = call(
        &sim,
        Method::GET,
        "/api/v1/namespaces/default/configmaps?limit=2",
        None,
    )
    .await;
    assert_eq!(page1["items"].as_array().map(Vec::len), Some(2));
    let token = page1["metadata"]["continue"].as_str().unwrap().to_string();
    let (_, page2) = call(
        &sim,
        Method::GET,
        &format!("/api/v1/namespaces/default/configmaps?limit=2&continue={token}"),
        None,
    )
    .await;
    assert_eq!(page2["items"][0]["metadata"]["name"], "c2");
}

#[tokio::test(start_paused = true)]
async fn watches_send_bookmarks_and_selector_transitions_then_time_out() {
    let sim = Sim::new(SimConfig::default());
    let c = sim.client("tester");
    let res = Resource::new("", "v1", "configmaps");
    c.create(&res, Some("default"), &cm("w")).await.unwrap();
    let mut req = ApiRequest::new(
        Method::GET,
        "/api/v1/namespaces/default/configmaps?watch=1&labelSelector=on%3Dyes&allowWatchBookmarks=true&timeoutSeconds=300",
    );
    req.query
        .push(("resourceVersion".into(), sim.resource_version().to_string()));
    let jobset_sim::request::ApiBody::Stream(mut stream) = sim.handle(req).await.body else {
        panic!("a stream")
    };
    c.patch(
        &res,
        Some("default"),
        "w",
        jobset_sim::PatchKind::Merge,
        &json!({"metadata": {"labels": {"on": "yes"}}}),
    )
    .await
    .unwrap();
    c.patch(
        &res,
        Some("default"),
        "w",
        jobset_sim::PatchKind::Merge,
        &json!({"metadata": {"labels": {"on": "no"}}}),
    )
    .await
    .unwrap();
    let mut kinds = Vec::new();
    let start = tokio::time::Instant::now();
    while let Some(line) = stream.next().await {
        let v: Value = serde_json::from_slice(&line).unwrap();
        kinds.push(v["type"].as_str().unwrap().to_string());
    }
    assert_eq!(&kinds[..2], ["ADDED", "DELETED"]);
    assert!(
        kinds[2..].iter().all(|k| k == "BOOKMARK") && kinds.len() >= 4,
        "{kinds:?}"
    );
    assert!(
        start.elapsed() >= Duration::from_secs(300),
        "the watch lasted its timeout"
    );
}

#[tokio::test]
async fn the_in_process_client_watches_and_deletes_with_propagation() {
    let sim = Sim::new(SimConfig::default());
    let c = sim.client("kubelet");
    let res = Resource::new("", "v1", "configmaps");
    let owner = c.create(&res, Some("default"), &cm("owner")).await.unwrap();
    let mut dep = cm("dep");
    dep["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"], "blockOwnerDeletion": true}]);
    c.create(&res, Some("default"), &dep).await.unwrap();
    let rv = sim.resource_version().to_string();
    let events = c
        .watch(&res, Some("default"), Some(&rv), None)
        .await
        .unwrap();
    c.delete(
        &res,
        Some("default"),
        "owner",
        Some(Propagation::Foreground),
    )
    .await
    .unwrap();
    let seen: Vec<(String, String)> = events
        .take(3)
        .map(|e| {
            (
                e.kind,
                e.object["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
        .await;
    let expected = [
        ("MODIFIED", "owner"),
        ("DELETED", "dep"),
        ("DELETED", "owner"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(seen, expected, "the dependent goes before its owner");
}

#[tokio::test]
async fn a_namespace_with_finalized_contents_terminates_until_they_are_gone() {
    let sim = Sim::new(SimConfig::default());
    let c = sim.client("tester");
    let ns = Resource::new("", "v1", "namespaces");
    let res = Resource::new("", "v1", "configmaps");
    c.create(
        &ns,
        None,
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}),
    )
    .await
    .unwrap();
    let mut held = cm("held");
    held["metadata"]["finalizers"] = json!(["example.io/hold"]);
    c.create(&res, Some("team"), &held).await.unwrap();
    c.create(&res, Some("team"), &cm("plain")).await.unwrap();
    c.delete(&ns, None, "team", None).await.unwrap();
    let team = c.get(&ns, None, "team").await.unwrap();
    assert_eq!(team["status"]["phase"], "Terminating");
    assert!(c.get(&res, Some("team"), "plain").await.is_err());
    let err = c.create(&res, Some("team"), &cm("late")).await.unwrap_err();
    assert_eq!(err.code, 403, "{}", err.message);
    c.patch(
        &res,
        Some("team"),
        "held",
        jobset_sim::PatchKind::Merge,
        &json!({"metadata": {"finalizers": null}}),
    )
    .await
    .unwrap();
    assert_eq!(c.get(&ns, None, "team").await.unwrap_err().code, 404);
}

#[tokio::test(start_paused = true)]
async fn bound_pods_terminate_gracefully_when_a_kubelet_owns_deletion() {
    let sim = Sim::new(SimConfig {
        graceful_pod_deletion: true,
        ..SimConfig::default()
    });
    let c = sim.client("kubelet");
    let pods = Resource::pods();
    let pod = |name: &str, node: Option<&str>| {
        let mut p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
        if let Some(n) = node {
            p["spec"]["nodeName"] = json!(n);
        }
        p
    };
    c.create(&pods, Some("default"), &pod("unbound", None))
        .await
        .unwrap();
    c.create(&pods, Some("default"), &pod("bound", Some("node-1")))
        .await
        .unwrap();
    c.delete(&pods, Some("default"), "unbound", None)
        .await
        .unwrap();
    assert_eq!(
        c.get(&pods, Some("default"), "unbound")
            .await
            .unwrap_err()
            .code,
        404
    );
    c.delete(&pods, Some("default"), "bound", None)
        .await
        .unwrap();
    let terminating = c.get(&pods, Some("default"), "bound").await.unwrap();
    assert_eq!(terminating["metadata"]["deletionGracePeriodSeconds"], 30);
    // The kubelet finishes the pod and deletes it with grace 0.
    let req = ApiRequest::new(
        Method::DELETE,
        "/api/v1/namespaces/default/pods/bound?gracePeriodSeconds=0",
    );
    assert_eq!(sim.handle(req).await.status, 200);
    assert_eq!(
        c.get(&pods, Some("default"), "bound")
            .await
            .unwrap_err()
            .code,
        404
    );
}

#[tokio::test(start_paused = true)]
async fn injected_faults_fail_slow_and_drop_as_configured() {
    let mut faults = jobset_sim::Faults {
        seed: 1,
        latency: Duration::from_secs(2),
        drop_watches_after: Some(Duration::from_secs(10)),
        ..Default::default()
    };
    faults.error_rates.insert("create".into(), (1.0, 429));
    let sim = Sim::new(SimConfig {
        faults,
        ..SimConfig::default()
    });
    let start = tokio::time::Instant::now();
    let (code, status) = call(
        &sim,
        Method::POST,
        "/api/v1/namespaces/default/configmaps",
        Some(cm("x")),
    )
    .await;
    assert_eq!(
        (code, status["reason"].as_str()),
        (429, Some("TooManyRequests"))
    );
    assert!(start.elapsed() >= Duration::from_secs(2));
    let req = ApiRequest::new(
        Method::GET,
        "/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=600",
    );
    let jobset_sim::request::ApiBody::Stream(stream) = sim.handle(req).await.body else {
        panic!("a stream")
    };
    let before = tokio::time::Instant::now();
    assert_eq!(stream.count().await, 0);
    assert_eq!(
        before.elapsed(),
        Duration::from_secs(10),
        "the watch was dropped early"
    );
    sim.set_faults(jobset_sim::Faults::default());
    let (code, _) = call(
        &sim,
        Method::POST,
        "/api/v1/namespaces/default/configmaps",
        Some(cm("x")),
    )
    .await;
    assert_eq!(code, 201);
}

#[tokio::test]
async fn a_service_keeps_its_cluster_ip_through_an_update_that_leaves_it_out() {
    let sim = Sim::new(SimConfig::default());
    let c = sim.client("tester");
    let svcs = Resource::new("", "v1", "services");
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}});
    let made = c.create(&svcs, Some("default"), &svc).await.unwrap();
    let ip = made["spec"]["clusterIP"].clone();
    assert!(ip.as_str().is_some_and(|s| s.starts_with("10.")), "{ip}");
    let mut replaced = svc.clone();
    replaced["metadata"]["resourceVersion"] = made["metadata"]["resourceVersion"].clone();
    replaced["spec"]["ports"] = json!([{"port": 8080}]);
    let after = c.update(&svcs, Some("default"), &replaced).await.unwrap();
    assert_eq!(after["spec"]["clusterIP"], ip);
    assert_eq!(after["spec"]["ports"][0]["port"], 8080);
}

#[tokio::test]
async fn mangled_bodies_and_paths_never_panic_and_answer_client_errors() {
    let sim = Sim::new(SimConfig::default());
    let c = sim.client("tester");
    c.create(
        &Resource::new("", "v1", "configmaps"),
        Some("default"),
        &cm("target"),
    )
    .await
    .unwrap();
    let seeds: Vec<&[u8]> = vec![
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"target"},"data":{"a":"1"}}"#,
        br#"[{"op":"replace","path":"/data/a","value":"2"}]"#,
        br#"{"metadata":{"labels":{"x":"y"}},"spec":{"containers":[{"name":"a","$patch":"delete"}]}}"#,
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: target\n",
    ];
    let types = [
        "application/json",
        "application/merge-patch+json",
        "application/json-patch+json",
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
        "application/vnd.kubernetes.protobuf",
        "application/yaml",
    ];
    let paths = [
        "/api/v1/namespaces/default/configmaps",
        "/api/v1/namespaces/default/configmaps/target",
        "/api/v1/namespaces/default/configmaps/target/status",
        "/api/v1/namespaces/default/pods/target",
        "/apis/batch/v1/namespaces/default/jobs/target/status",
        "/api/v1/namespaces//configmaps/%zz",
    ];
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for i in 0..600 {
        let seed = seeds[i % seeds.len()];
        let mut body = seed.to_vec();
        // Truncate, flip and splice bytes.
        match next() % 3 {
            0 => body.truncate((next() as usize) % (body.len() + 1)),
            1 => {
                for _ in 0..4 {
                    let at = (next() as usize) % body.len();
                    body[at] = (next() & 0xff) as u8;
                }
            }
            _ => {
                let at = (next() as usize) % body.len();
                body.splice(at..at, b"\"}]{[\x00".iter().copied());
            }
        }
        let method = [Method::POST, Method::PUT, Method::PATCH, Method::DELETE]
            [(next() % 4) as usize]
            .clone();
        let path = paths[(next() as usize) % paths.len()];
        let ct = types[(next() as usize) % types.len()];
        let req = ApiRequest::new(method.clone(), path).with_body(ct, Bytes::from(body));
        let resp = sim.handle(req).await;
        assert!(resp.status < 500, "{method} {path} {ct}: {resp:?}");
    }
}
