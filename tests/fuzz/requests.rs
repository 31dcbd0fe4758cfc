//! Fuzzed requests through the simulator's tower service (property tests):
//! any method, path, query and body gets an answer, never a panic, and
//! every error answer is a well-formed `Status` whose code matches the
//! HTTP status.
//!
//! CI runs 64 cases; the long run is
//! `PROPTEST_CASES=20000 cargo test -p jobset-e2e --test fuzz requests::`.

use http_body_util::BodyExt;
use jobset_sim::{Sim, SimConfig};
use proptest::prelude::*;
use serde_json::Value;
use tower::{Service, ServiceExt};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64)
}

fn method() -> impl Strategy<Value = http::Method> {
    prop::sample::select(vec![
        http::Method::GET,
        http::Method::POST,
        http::Method::PUT,
        http::Method::PATCH,
        http::Method::DELETE,
        http::Method::HEAD,
        http::Method::OPTIONS,
    ])
}

fn path() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        prop::sample::select(vec![
            "api",
            "apis",
            "v1",
            "namespaces",
            "default",
            "pods",
            "configmaps",
            "jobs",
            "batch",
            "jobset.x-k8s.io",
            "v1alpha2",
            "jobsets",
            "status",
            "x",
            "..",
            "",
            "%zz",
            "finalize",
            "watch",
            "leases",
            "coordination.k8s.io",
        ])
        .prop_map(String::from),
        "[a-z0-9.%-]{0,12}",
    ];
    prop::collection::vec(segment, 0..8).prop_map(|s| format!("/{}", s.join("/")))
}

fn query() -> impl Strategy<Value = String> {
    prop::collection::vec(
        (
            prop::sample::select(vec![
                "watch",
                "resourceVersion",
                "labelSelector",
                "fieldSelector",
                "limit",
                "continue",
                "timeoutSeconds",
                "dryRun",
                "fieldManager",
                "propagationPolicy",
                "sendInitialEvents",
                "allowWatchBookmarks",
                "force",
            ]),
            prop_oneof![
                Just("true".to_string()),
                Just("0".to_string()),
                Just("1".to_string()),
                ".{0,12}".prop_map(|s| s.replace(['&', '#', ' '], "")),
            ],
        ),
        0..4,
    )
    .prop_map(|q| {
        q.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        prop::collection::vec(any::<u8>(), 0..64),
        Just(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}"#.to_vec()),
        Just(br#"{"metadata":{"name":null,"labels":[1]},"spec":7}"#.to_vec()),
        Just(br#"[{"op":"remove","path":"/metadata"}]"#.to_vec()),
        ".{0,60}".prop_map(String::into_bytes),
    ]
}

fn content_type() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "application/json",
        "application/merge-patch+json",
        "application/json-patch+json",
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
        "application/vnd.kubernetes.protobuf",
        "text/plain",
    ])
}

async fn answer(
    sim: &Sim,
    req: http::Request<http_body_util::Full<bytes::Bytes>>,
) -> (u16, Option<Value>, bool) {
    let mut svc = sim.service();
    let resp = match ServiceExt::<http::Request<http_body_util::Full<bytes::Bytes>>>::ready(
        &mut svc,
    )
    .await
    {
        Ok(s) => s.call(req).await,
        Err(e) => match e {},
    };
    let Ok(resp) = resp;
    let code = resp.status().as_u16();
    let streaming = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|c| {
            c.to_str()
                .is_ok_and(|c| c.contains("watch") || c.contains("stream"))
        });
    if streaming || code < 400 {
        return (code, None, streaming);
    }
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    (code, serde_json::from_slice(&bytes).ok(), false)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn any_request_gets_an_answer_and_errors_are_well_formed_statuses(
        method in method(), path in path(), query in query(), body in body(), ct in content_type(),
    ) {
        let rt = jobset_e2e::runtime();
        let (code, status, _) = rt.block_on(async {
            let sim = Sim::new(SimConfig::default());
            let uri = if query.is_empty() { path.clone() } else { format!("{path}?{query}") };
            let Ok(req) = http::Request::builder()
                .method(method.clone())
                .uri(&uri)
                .header(http::header::CONTENT_TYPE, ct)
                .body(http_body_util::Full::new(bytes::Bytes::from(body.clone())))
            else {
                return (0, None, false);
            };
            // A watch that never ends is an answer too: read only its head.
            tokio::time::timeout(std::time::Duration::from_secs(5), answer(&sim, req))
                .await
                .unwrap_or((200, None, true))
        });
        if code >= 400 {
            let status = status.expect("an error answer is JSON");
            prop_assert_eq!(status["kind"].as_str(), Some("Status"), "{}", status);
            prop_assert_eq!(status["apiVersion"].as_str(), Some("v1"));
            prop_assert_eq!(status["status"].as_str(), Some("Failure"));
            prop_assert_eq!(status["code"].as_u64(), Some(u64::from(code)));
            prop_assert!(status["reason"].as_str().is_some_and(|r| !r.is_empty()));
        }
    }
}
