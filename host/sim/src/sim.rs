//! The server object: configuration, shared state, and the entry point every
//! request goes through (`Sim::handle`), whatever its transport.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};

use crate::clock::Clock;
use crate::faults::{FaultState, Faults};
use crate::rbac::UserInfo;
use crate::registry::Registry;
use crate::store::State;

/// How a server is set up.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Events kept for watches; older resourceVersions answer 410 Gone.
    pub history: usize,
    /// Authorise every request against RBAC objects.
    pub rbac: bool,
    /// Bearer tokens and who they are.
    pub tokens: HashMap<String, UserInfo>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// How often an idle watch with bookmarks gets one.
    pub bookmark_interval: Duration,
    /// Injected failures.
    pub faults: Faults,
    /// Bound, running pods are deleted gracefully: they get a deletionTimestamp
    /// and wait for their kubelet to delete them with grace period 0. Off (pods
    /// go at once) when no kubelet runs.
    pub graceful_pod_deletion: bool,
    /// Sees every resource request and its outcome (reliability tests).
    pub interceptor: Option<crate::observe::SharedInterceptor>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            history: 100_000,
            rbac: false,
            tokens: HashMap::new(),
            max_body_bytes: 3 * 1024 * 1024,
            bookmark_interval: Duration::from_secs(60),
            faults: Faults::default(),
            graceful_pod_deletion: false,
            interceptor: None,
        }
    }
}

pub(crate) struct Shared {
    pub state: Mutex<State>,
    pub rv_tx: tokio::sync::watch::Sender<u64>,
    pub config: SimConfig,
    pub tokens: Mutex<HashMap<String, UserInfo>>,
    pub faults: Mutex<FaultState>,
    pub clock: Clock,
    /// Webhook endpoints served inside this process, by URL.
    pub local_webhooks: Mutex<HashMap<String, LocalWebhook>>,
}

/// A webhook endpoint served inside the process: takes an AdmissionReview
/// request and returns the AdmissionReview response, as JSON.
pub type LocalWebhook = Arc<dyn Fn(&Value) -> Value + Send + Sync>;

/// A simulated API server. Cheap to clone; clones share the store.
#[derive(Clone)]
pub struct Sim {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim").finish_non_exhaustive()
    }
}

impl Sim {
    /// A server holding the `default`, `kube-system`, `kube-public` and
    /// `kube-node-lease` namespaces. Call inside a tokio runtime when the
    /// clock matters (timestamps follow tokio time).
    pub fn new(config: SimConfig) -> Self {
        let mut state = State::new(Registry::with_builtins(), config.history);
        let clock = Clock::new();
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let uid = state.next_uid();
            state.put(
                "/namespaces",
                json!({
                    "apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": ns, "uid": uid, "creationTimestamp": clock.now_rfc3339(),
                                  "labels": {"kubernetes.io/metadata.name": ns}},
                    "spec": {"finalizers": ["kubernetes"]},
                    "status": {"phase": "Active"}
                }),
            );
        }
        let uid = state.next_uid();
        state.put(
            "rbac.authorization.k8s.io/clusterroles",
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "cluster-admin", "uid": uid, "creationTimestamp": clock.now_rfc3339(),
                              "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
                "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                          {"nonResourceURLs": ["*"], "verbs": ["*"]}]
            }),
        );
        let (rv_tx, _) = tokio::sync::watch::channel(state.rv);
        let faults = FaultState::new(config.faults.clone());
        let tokens = config.tokens.clone();
        Sim {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                rv_tx,
                config,
                tokens: Mutex::new(tokens),
                faults: Mutex::new(faults),
                clock,
                local_webhooks: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        match self.shared.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Tells watchers that the store moved on.
    pub(crate) fn notify(&self, rv: u64) {
        self.shared.rv_tx.send_replace(rv);
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// Number of stored objects.
    pub fn object_count(&self) -> usize {
        self.lock().count()
    }

    /// Number of stored objects of one resource (`group` empty for the core
    /// group) for which `matches` holds: read in-process, without a request.
    pub fn count_matching(
        &self,
        group: &str,
        resource: &str,
        matches: impl Fn(&Value) -> bool,
    ) -> usize {
        // The objects are shared: the lock is held only to take references,
        // and `matches` runs after it is released.
        let objects: Vec<Arc<Value>> = {
            let state = self.lock();
            let Some(info) = state.registry.by_store_key(group, resource) else {
                return 0;
            };
            state.list(&info.store_key(), None).cloned().collect()
        };
        objects.iter().filter(|o| matches(o)).count()
    }

    /// Replaces the injected faults (takes effect for the next request).
    pub fn set_faults(&self, faults: Faults) {
        if let Ok(mut f) = self.shared.faults.lock() {
            *f = FaultState::new(faults);
        }
    }

    /// Serves the webhook URL `url` inside this process: a webhook
    /// configuration whose `clientConfig.url` is `url` is called through
    /// `handler` instead of the network, with the same rules, selectors,
    /// failure policy and answers. For one-process runs on a virtual clock,
    /// where a network round trip would let virtual time jump.
    pub fn serve_webhook_locally(&self, url: &str, handler: LocalWebhook) {
        if let Ok(mut hooks) = self.shared.local_webhooks.lock() {
            hooks.insert(url.to_string(), handler);
        }
    }

    /// The clock the server stamps objects with.
    pub fn clock(&self) -> &Clock {
        &self.shared.clock
    }
}
