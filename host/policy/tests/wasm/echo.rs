//! Every field of the snapshot and the placement request arrives in the
//! plugin as the host sent it: the hostile plugin's `echo` mode answers
//! with the Debug text of what it received, which is compared with the
//! Debug text of the same records built natively. The inputs are random
//! (a fixed generator: the same cases on every run) and cover every
//! variant, empty and non-empty lists, absent and present options,
//! multi-byte text and extreme numbers.

use crate::common::{hostile_plugin, same_records};
use jobset_policy::snapshot::*;
use jobset_policy::{ErrorKind, PolicyEngine};
use jobset_policy_sdk::harness::Xorshift;

struct Gen(Xorshift);

impl Gen {
    fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
    }

    fn flip(&mut self) -> bool {
        self.below(2) == 0
    }

    fn text(&mut self) -> String {
        const PIECES: [&str; 6] = ["", "a", "workers-0", "é", "节点", "🚀 x"];
        (0..self.below(4))
            .map(|_| PIECES[self.below(PIECES.len() as u64) as usize])
            .collect()
    }

    fn texts(&mut self) -> Vec<String> {
        (0..self.below(4)).map(|_| self.text()).collect()
    }

    fn int(&mut self) -> i32 {
        [0, 1, -1, 7, i32::MAX, i32::MIN][self.below(6) as usize]
    }

    fn opt_int(&mut self) -> Option<i32> {
        self.flip().then(|| self.int())
    }

    fn time(&mut self) -> i64 {
        [0, 1_700_000_000, -1, i64::MAX, i64::MIN][self.below(5) as usize]
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.below(from.len() as u64) as usize]
    }

    fn many<T>(&mut self, up_to: u64, mut f: impl FnMut(&mut Self) -> T) -> Vec<T> {
        (0..self.below(up_to + 1)).map(|_| f(self)).collect()
    }

    fn key_values(&mut self) -> Vec<KeyValue> {
        self.many(3, |g| KeyValue {
            key: g.text(),
            value: g.text(),
        })
    }

    fn snapshot(&mut self) -> Snapshot {
        let failure_policy = self.flip().then(|| FailurePolicy {
            max_restarts: self.int(),
            restart_strategy: self.pick(&[
                RestartStrategy::Recreate,
                RestartStrategy::BlockingRecreate,
                RestartStrategy::InPlaceRestart,
            ]),
            rules: self.many(3, |g| FailurePolicyRule {
                name: g.text(),
                action: g.pick(&[
                    FailureAction::FailJobSet,
                    FailureAction::RestartJobSet,
                    FailureAction::RestartJobSetAndIgnoreMaxRestarts,
                    FailureAction::RestartJob,
                    FailureAction::RestartJobAndIgnoreMaxRestarts,
                ]),
                on_job_failure_reasons: g.texts(),
                on_job_failure_message_patterns: g.texts(),
                target_replicated_jobs: g.texts(),
            }),
        });
        Snapshot {
            jobset: Jobset {
                name: self.text(),
                namespace: self.text(),
                uid: self.text(),
                labels: self.key_values(),
                annotations: self.key_values(),
                suspended: self.flip(),
                replicated_jobs: self.many(3, |g| ReplicatedJob {
                    name: g.text(),
                    group_name: g.text(),
                    replicas: g.int(),
                    parallelism: g.int(),
                    completions: g.opt_int(),
                    depends_on: g.many(2, |g| Dependency {
                        name: g.text(),
                        status: g.pick(&[DependencyStatus::Ready, DependencyStatus::Complete]),
                    }),
                }),
                success_policy: SuccessPolicy {
                    operator: self.pick(&[SuccessOperator::All, SuccessOperator::Any]),
                    target_replicated_jobs: self.texts(),
                },
                failure_policy,
                startup_order: self.pick(&[StartupOrder::AnyOrder, StartupOrder::InOrder]),
                status: JobsetStatus {
                    restarts: self.int(),
                    restarts_count_towards_max: self.int(),
                    replicated_jobs: self.many(3, |g| ReplicatedJobStatus {
                        name: g.text(),
                        ready: g.int(),
                        succeeded: g.int(),
                        failed: g.int(),
                        active: g.int(),
                        suspended: g.int(),
                        job_restarts: g.many(3, Gen::int),
                        job_restarts_count_towards_max: g.many(3, Gen::int),
                    }),
                },
            },
            jobs: self.many(8, |g| Job {
                name: g.text(),
                replicated_job: g.text(),
                job_index: g.int(),
                restart_attempt: g.int(),
                job_restart_attempt: g.int(),
                active: g.int(),
                ready: g.int(),
                succeeded: g.int(),
                failed: g.int(),
                suspended: g.flip(),
                finished: g.flip().then(|| FinishedCondition {
                    kind: g.pick(&[FinishedType::Complete, FinishedType::Failed]),
                    reason: g.text(),
                    message: g.text(),
                    time: g.time(),
                }),
            }),
            now: self.time(),
            feature_gates: self.texts(),
            config: "echo".to_string(),
        }
    }

    fn request(&mut self) -> PlacementRequest {
        PlacementRequest {
            jobs: self.many(5, |g| PendingJob {
                name: g.text(),
                replicated_job: g.text(),
                job_index: g.int(),
                job_key: g.text(),
                exclusive_topology: g.flip().then(|| g.text()),
                node_selector_strategy: g.flip(),
                priority: g.opt_int(),
                pods: g.int(),
            }),
            domains: self.many(5, |g| TopologyDomain {
                topology_key: g.text(),
                value: g.text(),
                nodes: g.pick(&[0, 1, u32::MAX]),
                ready_nodes: g.pick(&[0, 3, u32::MAX]),
                occupied_by: g.many(2, |g| Occupant {
                    job_key: g.text(),
                    priority: g.opt_int(),
                }),
            }),
        }
    }
}

/// What the plugin said it received: the host's error message carries the
/// plugin's error, text escaped.
fn echoed(result: Result<impl std::fmt::Debug, jobset_policy::PolicyError>) -> String {
    match result.expect_err("the echo mode fails on purpose").kind {
        ErrorKind::Rejected { message } => message,
        other => panic!("not an echo: {other:?}"),
    }
}

/// The message `echoed` returns for a plugin that received `text`.
fn echo_of(text: String) -> String {
    PluginError::Internal(text).to_string()
}

#[test]
fn every_field_arrives_in_each_slot_as_sent() {
    let mut g = Gen(Xorshift::new(0x9e37_79b9_7f4a_7c15));
    let plugin = hostile_plugin();
    for case in 0..150 {
        let s = g.snapshot();
        let r = g.request();
        let native: jobset_policy_sdk::types::Snapshot = same_records(&s);
        let (got, want) = match case % 3 {
            0 => (echoed(plugin.decide_startup(&s)), format!("{native:?}")),
            1 => (
                echoed(plugin.decide_outcome(&s, &[])),
                format!("{native:?}"),
            ),
            _ => {
                let native_request: jobset_policy_sdk::types::PlacementRequest = same_records(&r);
                (
                    echoed(plugin.decide_placement(&s, &r)),
                    format!("{native:?}\n{native_request:?}"),
                )
            }
        };
        assert_eq!(got, echo_of(want), "case {case}");
    }
}
