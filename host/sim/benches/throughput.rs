//! Throughput of the simulated API server: creates, updates and watch events
//! per second with kube-rs as the client, in-process and over loopback HTTP,
//! plus memory per stored object. Run with
//! `cargo bench -p jobset-sim --bench throughput`.

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use jobset_sim::{Resource, Sim, SimConfig};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams, WatchParams};
use serde_json::json;

fn cm(i: usize) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": format!("cm-{i}"), "labels": {"app": "bench", "shard": (i % 16).to_string()}},
        "data": {"key": format!("value-{i}"), "other": "some payload of moderate size"}}))
    .expect("configmap")
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

async fn run(label: &str, api: Api<ConfigMap>, n: usize) {
    // Watch events: a watch from the current version sees every create.
    let rv = api
        .list(&Default::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .unwrap_or_default();
    let watch_api = api.clone();
    let watcher = tokio::spawn(async move {
        let mut s = watch_api
            .watch(&WatchParams::default().timeout(290), &rv)
            .await
            .expect("watch")
            .boxed();
        let mut seen = 0usize;
        while seen < n {
            match s.try_next().await {
                Ok(Some(_)) => seen += 1,
                _ => break,
            }
        }
        (seen, Instant::now())
    });
    let start = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), &cm(i))
                    .await
                    .expect("create")
            }
        })
        .buffer_unordered(8)
        .for_each(|_| async {})
        .await;
    let created = start.elapsed();
    let (seen, watch_end) = watcher.await.expect("watcher");
    let watched = watch_end - start;
    let start = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let p = json!({"data": {"key": format!("updated-{i}")}});
                api.patch(
                    &format!("cm-{i}"),
                    &PatchParams::default(),
                    &Patch::Merge(p),
                )
                .await
                .expect("patch")
            }
        })
        .buffer_unordered(8)
        .for_each(|_| async {})
        .await;
    let updated = start.elapsed();
    println!(
        "{label:<28} creates {:>8.0}/s   updates {:>8.0}/s   watch events {:>8.0}/s ({seen} events)",
        rate(n, created),
        rate(n, updated),
        rate(seen, watched)
    );
}

fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn main() {
    let n: usize = std::env::var("SIM_BENCH_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let sim = Sim::new(SimConfig::default());
        let api: Api<ConfigMap> = Api::default_namespaced(kube::Client::new(sim.service(), "default"));
        run("in-process (kube-rs)", api, n).await;

        // The typed in-process handle, without kube-rs serialisation.
        let sim = Sim::new(SimConfig::default());
        let client = sim.client("bench");
        let res = Resource::new("", "v1", "configmaps");
        let before = rss_bytes();
        let start = Instant::now();
        for i in 0..n {
            let o = serde_json::to_value(cm(i)).expect("json");
            let mut o = o;
            o["apiVersion"] = json!("v1");
            o["kind"] = json!("ConfigMap");
            client.create(&res, Some("default"), &o).await.expect("create");
        }
        let d = start.elapsed();
        let after = rss_bytes();
        println!("{:<28} creates {:>8.0}/s", "in-process (SimClient)", rate(n, d));
        println!(
            "memory per stored object    {:>8.0} bytes (RSS growth over {n} ConfigMaps, history included)",
            (after.saturating_sub(before)) as f64 / n as f64
        );
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let sim = Sim::new(SimConfig::default());
        let addr = sim
            .serve("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("serve");
        let config = kube::Config::new(format!("http://{addr}").parse().expect("url"));
        let client = kube::Client::try_from(config).expect("client");
        let api: Api<ConfigMap> = Api::default_namespaced(client);
        run("loopback HTTP (kube-rs)", api, n / 4).await;
    });
}
