//! Node failure as the node lifecycle controller shows it (Ready turns
//! Unknown, `unreachable` taints keep new pods away), domain failure as the
//! failure of every node labelled with the domain, and the task that plays a
//! scenario's timed faults on virtual time.

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::client::{PatchKind, Resource, SimClient};
use crate::clock::Clock;
use crate::selectors::LabelSelector;

use super::super::ClusterError;
use super::super::kubelet::KubeletCommand;
use super::super::nodes::ready_condition;
use super::super::recorder::Recorder;
use super::super::scenario::{FaultAction, TimedFault};
use super::super::util::{meta, str_at};

const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
const COMPONENT: &str = "faults";

async fn set_node(
    client: &SimClient,
    clock: &Clock,
    name: &str,
    ready: bool,
) -> Result<(), ClusterError> {
    let node = client.get(&Resource::nodes(), None, name).await?;
    let now = clock.now_rfc3339();
    let mut taints: Vec<Value> = node
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    taints.retain(|t| str_at(t, "/key") != UNREACHABLE);
    if !ready {
        for effect in ["NoSchedule", "NoExecute"] {
            taints.push(json!({"key": UNREACHABLE, "effect": effect, "timeAdded": now}));
        }
    }
    let taints = if taints.is_empty() {
        Value::Null
    } else {
        json!(taints)
    };
    client
        .patch(
            &Resource::nodes(),
            None,
            name,
            PatchKind::Merge,
            &json!({"spec": {"taints": taints}}),
        )
        .await?;
    let mut conditions: Vec<Value> = node
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    conditions.retain(|c| c["type"] != "Ready");
    conditions.push(ready_condition(ready, &now));
    client
        .patch_status(
            &Resource::nodes(),
            None,
            name,
            PatchKind::Merge,
            &json!({"status": {"conditions": conditions}}),
        )
        .await?;
    Ok(())
}

/// The node stops being Ready and is tainted unreachable; the kubelet then
/// fails its pods with DisruptionTarget.
pub async fn fail_node(
    client: &SimClient,
    clock: &Clock,
    rec: &Recorder,
    name: &str,
) -> Result<(), ClusterError> {
    set_node(client, clock, name, false).await?;
    rec.record(COMPONENT, "FailNode", name, String::new());
    Ok(())
}

/// The node is Ready again and untainted.
pub async fn recover_node(
    client: &SimClient,
    clock: &Clock,
    rec: &Recorder,
    name: &str,
) -> Result<(), ClusterError> {
    set_node(client, clock, name, true).await?;
    rec.record(COMPONENT, "RecoverNode", name, String::new());
    Ok(())
}

/// Fails every node whose label `key` is `value`; returns how many.
pub async fn fail_domain(
    client: &SimClient,
    clock: &Clock,
    rec: &Recorder,
    key: &str,
    value: &str,
) -> Result<usize, ClusterError> {
    let selector = LabelSelector::parse(&format!("{key}={value}"))?;
    let list = client.list(&Resource::nodes(), None, None).await?;
    let mut names: Vec<String> = list
        .get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|n| selector.matches(n))
        .map(|n| meta(n, "name").to_string())
        .collect();
    names.sort();
    rec.record(
        COMPONENT,
        "FailDomain",
        &format!("{key}={value}"),
        format!("nodes={}", names.len()),
    );
    for n in &names {
        fail_node(client, clock, rec, n).await?;
    }
    Ok(names.len())
}

/// Plays timed faults in order of time (stable for equal times).
pub async fn run_timed(
    client: SimClient,
    clock: Clock,
    rec: Recorder,
    kubelet: mpsc::UnboundedSender<KubeletCommand>,
    mut faults: Vec<TimedFault>,
) {
    faults.sort_by_key(|f| f.at.0);
    let start = tokio::time::Instant::now() - rec.elapsed();
    for f in faults {
        tokio::time::sleep_until(start + f.at.0).await;
        let outcome = match &f.action {
            FaultAction::FailNode(n) => fail_node(&client, &clock, &rec, n).await,
            FaultAction::RecoverNode(n) => recover_node(&client, &clock, &rec, n).await,
            FaultAction::FailDomain { key, value } => {
                fail_domain(&client, &clock, &rec, key, value)
                    .await
                    .map(|_| ())
            }
            FaultAction::FailPod {
                namespace,
                name,
                exit_code,
            } => {
                let (done, rx) = oneshot::channel();
                let cmd = KubeletCommand::FailPod {
                    key: format!("{namespace}/{name}"),
                    exit_code: exit_code.unwrap_or(1),
                    condition: None,
                    done,
                };
                if kubelet.send(cmd).is_ok() {
                    let _ = rx.await;
                }
                Ok(())
            }
            FaultAction::FailJob { namespace, name } => {
                let (done, rx) = oneshot::channel();
                let cmd = KubeletCommand::FailJob {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    done,
                };
                if kubelet.send(cmd).is_ok() {
                    let _ = rx.await;
                }
                Ok(())
            }
        };
        if let Err(e) = outcome {
            tracing::warn!(error = %e, fault = ?f.action, "timed fault could not be applied");
        }
    }
}
