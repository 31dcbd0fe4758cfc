//! Leader election through a `coordination.k8s.io/v1` Lease, so that of
//! several controller processes only one writes. Acquire, renew, step down
//! when renewals fail past the deadline, release on shutdown; every Lease
//! write carries the resourceVersion it was based on.
//!
//! Fencing: [`run_with_leader_election`] drops the controller's future the
//! moment leadership is lost (the controller stops its own tasks on drop),
//! and returns an error; the `jobset controller` command then exits, so a
//! fresh process with fresh caches becomes a candidate again. Stepping
//! down at the renew deadline (10 s) leaves a margin before the Lease
//! expires for the others (15 s after they last saw it change).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::time::Instant;

use crate::clock::Clock;
use crate::error::ControllerError;
use crate::health::{Health, Leadership};

/// How the election runs.
#[derive(Debug, Clone)]
pub struct LeaderConfig {
    /// The Lease's name.
    pub lease_name: String,
    /// The Lease's namespace.
    pub namespace: String,
    /// This process's identity, written as `holderIdentity`.
    pub identity: String,
    /// How long a Lease stays valid after it last changed.
    pub lease_duration: Duration,
    /// A leader that could not renew for this long steps down.
    pub renew_deadline: Duration,
    /// Time between attempts to acquire or renew.
    pub retry_period: Duration,
}

/// The Lease name the controller uses by default.
pub const DEFAULT_LEASE_NAME: &str = "jobset-controller-leader";

impl LeaderConfig {
    /// The usual timings: a 15 s Lease, renewed every 2 s, given up after
    /// 10 s without a successful renewal.
    pub fn new(namespace: &str, identity: &str) -> Self {
        LeaderConfig {
            lease_name: DEFAULT_LEASE_NAME.to_string(),
            namespace: namespace.to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// An identity unique to this process: the pod (host) name and a random
/// suffix (a restarted container keeps its host name and often its pid).
pub fn default_identity() -> String {
    use std::hash::{BuildHasher, Hasher};
    let host = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "jobset-controller".to_string());
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    format!("{host}_{:08x}", h.finish() as u32)
}

/// What one attempt on the Lease found.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    /// This process holds the Lease now.
    Held,
    /// Another holder's Lease is still valid.
    HeldBy(String),
    /// Someone wrote the Lease between our read and our write.
    Conflict,
}

/// The Lease record as last seen, and when it was seen to change (on this
/// process's clock: holders' clocks are never compared).
#[derive(Debug, Default, Clone, PartialEq)]
struct Record {
    /// Changes with every write, even one within the same second.
    version: Option<String>,
    holder: Option<String>,
    renew: Option<String>,
    acquire: Option<String>,
    transitions: i32,
    duration: i32,
}

impl Record {
    fn of(lease: &Lease) -> Self {
        let empty = LeaseSpec::default();
        let spec = lease.spec.as_ref().unwrap_or(&empty);
        Record {
            version: lease.metadata.resource_version.clone(),
            holder: spec.holder_identity.clone().filter(|h| !h.is_empty()),
            renew: spec.renew_time.as_ref().map(|t| t.0.to_string()),
            acquire: spec.acquire_time.as_ref().map(|t| t.0.to_string()),
            transitions: spec.lease_transitions.unwrap_or(0),
            duration: spec.lease_duration_seconds.unwrap_or(0),
        }
    }
}

/// One candidate in the election.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaderConfig,
    clock: Clock,
    health: Option<Arc<Health>>,
    observed: Option<(Record, Instant)>,
    /// When the last successful write of the Lease was sent.
    last_renew: Option<Instant>,
}

impl LeaderElector {
    /// A candidate; `clock` stamps `acquireTime` and `renewTime`.
    pub fn new(client: Client, config: LeaderConfig, clock: Clock) -> Self {
        LeaderElector {
            api: Api::namespaced(client, &config.namespace),
            config,
            clock,
            health: None,
            observed: None,
            last_renew: None,
        }
    }

    /// Reports the candidate's state to `/readyz`.
    pub fn with_health(mut self, health: Arc<Health>) -> Self {
        health.set_leadership(Leadership::Starting);
        self.health = Some(health);
        self
    }

    /// The election's settings.
    pub fn config(&self) -> &LeaderConfig {
        &self.config
    }

    fn report(&self, l: Leadership) {
        if let Some(h) = &self.health {
            h.set_leadership(l);
        }
    }

    fn lost(&self, detail: String) -> ControllerError {
        ControllerError::LeadershipLost {
            lease: format!("{}/{}", self.config.namespace, self.config.lease_name),
            detail,
        }
    }

    fn now(&self) -> MicroTime {
        MicroTime(self.clock.now_precise())
    }

    fn seconds(d: Duration) -> i32 {
        i32::try_from(d.as_secs()).unwrap_or(i32::MAX).max(1)
    }

    /// Reads the Lease and writes it with this process as holder when it
    /// is free, expired or already ours.
    async fn try_acquire_or_renew(&mut self) -> Result<Attempt, kube::Error> {
        let sent = Instant::now();
        let me = self.config.identity.clone();
        let Some(mut lease) = self.api.get_opt(&self.config.lease_name).await? else {
            let spec = LeaseSpec {
                holder_identity: Some(me),
                lease_duration_seconds: Some(Self::seconds(self.config.lease_duration)),
                acquire_time: Some(self.now()),
                renew_time: Some(self.now()),
                lease_transitions: Some(0),
                ..Default::default()
            };
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.lease_name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(spec),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observed = Some((Record::of(&created), sent));
                    Ok(Attempt::Held)
                }
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Conflict),
                Err(e) => Err(e),
            };
        };
        let old = lease.spec.clone().unwrap_or_default();
        let record = Record::of(&lease);
        let seen_at = match &self.observed {
            Some((r, at)) if *r == record => *at,
            _ => sent,
        };
        self.observed = Some((record.clone(), seen_at));
        let ours = record.holder.as_deref() == Some(me.as_str());
        if let Some(holder) = &record.holder
            && !ours
        {
            let valid = Duration::from_secs(u64::try_from(record.duration).unwrap_or(0));
            if seen_at + valid > sent {
                return Ok(Attempt::HeldBy(holder.clone()));
            }
        }
        let mut spec = old.clone();
        spec.holder_identity = Some(me);
        spec.lease_duration_seconds = Some(Self::seconds(self.config.lease_duration));
        spec.renew_time = Some(self.now());
        if !ours {
            spec.acquire_time = Some(self.now());
            spec.lease_transitions = Some(record.transitions + 1);
        }
        lease.spec = Some(spec);
        lease.metadata.managed_fields = None;
        // The resourceVersion read above stays on the object: a write by
        // anyone in between makes this one fail with 409.
        match self
            .api
            .replace(&self.config.lease_name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                self.observed = Some((Record::of(&written), sent));
                Ok(Attempt::Held)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Conflict),
            Err(e) => Err(e),
        }
    }

    /// Waits until this process holds the Lease, trying every retry
    /// period; API errors are logged and retried, never fatal.
    pub async fn acquire(&mut self) {
        loop {
            let started = Instant::now();
            let attempt =
                tokio::time::timeout(self.config.renew_deadline, self.try_acquire_or_renew()).await;
            match attempt {
                Ok(Ok(Attempt::Held)) => {
                    self.last_renew = Some(started);
                    self.report(Leadership::Leading);
                    tracing::info!(identity = %self.config.identity, lease = %self.config.lease_name, "acquired the leader Lease");
                    return;
                }
                Ok(Ok(Attempt::HeldBy(holder))) => {
                    tracing::debug!(%holder, "the leader Lease is held; standing by");
                    self.report(Leadership::Standby { healthy: true });
                }
                Ok(Ok(Attempt::Conflict)) => self.report(Leadership::Standby { healthy: true }),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, lease = %self.config.lease_name, "cannot read or write the leader Lease; retrying");
                    self.report(Leadership::Standby { healthy: false });
                }
                Err(_) => {
                    tracing::warn!(lease = %self.config.lease_name, "the leader Lease request timed out; retrying");
                    self.report(Leadership::Standby { healthy: false });
                }
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
    }

    /// Renews the Lease every retry period while leading; returns (with
    /// the reason) once no renewal succeeded for the renew deadline, or
    /// another holder took the Lease. Call after [`LeaderElector::acquire`].
    pub async fn keep_leading(&mut self) -> ControllerError {
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            let Some(last) = self.last_renew else {
                return self.lost("not leading".to_string());
            };
            let deadline = last + self.config.renew_deadline;
            loop {
                let started = Instant::now();
                if started >= deadline {
                    self.report(Leadership::Standby { healthy: false });
                    return self.lost(format!(
                        "no renewal succeeded for {:?}",
                        self.config.renew_deadline
                    ));
                }
                match tokio::time::timeout_at(deadline, self.try_acquire_or_renew()).await {
                    Ok(Ok(Attempt::Held)) => {
                        self.last_renew = Some(started);
                        break;
                    }
                    Ok(Ok(Attempt::HeldBy(holder))) => {
                        self.last_renew = None;
                        self.report(Leadership::Standby { healthy: true });
                        return self.lost(format!("the Lease is now held by {holder}"));
                    }
                    Ok(Ok(Attempt::Conflict)) => {
                        tracing::warn!(lease = %self.config.lease_name, "leader Lease renewal conflicted; retrying");
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, lease = %self.config.lease_name, "leader Lease renewal failed; retrying");
                    }
                    Err(_) => continue,
                }
                let pause = self
                    .config
                    .retry_period
                    .min(deadline.saturating_duration_since(Instant::now()));
                tokio::time::sleep(pause).await;
            }
        }
    }

    /// Gives the Lease up (holder cleared, duration 1 s) so that a standby
    /// takes over at its next attempt. Only when this process holds it.
    pub async fn release(&mut self) -> Result<(), ControllerError> {
        self.last_renew = None;
        let me = self.config.identity.clone();
        let api_error = |e: kube::Error| ControllerError::Api {
            action: "release the leader Lease".to_string(),
            object: self.config.lease_name.clone(),
            source: Box::new(e),
        };
        let Some(mut lease) = self
            .api
            .get_opt(&self.config.lease_name)
            .await
            .map_err(api_error)?
        else {
            return Ok(());
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(me.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(self.now());
        lease.spec = Some(spec);
        lease.metadata.managed_fields = None;
        self.api
            .replace(&self.config.lease_name, &PostParams::default(), &lease)
            .await
            .map_err(api_error)?;
        self.report(Leadership::Standby { healthy: true });
        tracing::info!(identity = %me, lease = %self.config.lease_name, "released the leader Lease");
        Ok(())
    }
}

/// Resolves when the process is asked to stop; given to the work that runs
/// while leading (fits `controller::run`'s `shutdown`).
pub type StopSignal = Pin<Box<dyn Future<Output = ()> + Send + Sync>>;

/// Waits for leadership, then runs `lead` while renewing the Lease.
///
/// - `shutdown` before leadership: returns `Ok` at once.
/// - `shutdown` while leading: `lead`'s stop signal fires, the Lease is
///   renewed until `lead` finishes, then released; returns `Ok`.
/// - `lead` finishing by itself: the Lease is released; returns `Ok`.
/// - leadership lost: `lead`'s future is dropped at once, before this
///   returns `Err(LeadershipLost)`; the Lease is not touched.
pub async fn run_with_leader_election<F, Fut>(
    elector: &mut LeaderElector,
    shutdown: impl Future<Output = ()>,
    lead: F,
) -> Result<(), ControllerError>
where
    F: FnOnce(StopSignal) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut shutdown = std::pin::pin!(shutdown);
    tokio::select! {
        _ = &mut shutdown => return Ok(()),
        _ = elector.acquire() => {}
    }
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut stop_tx = Some(stop_tx);
    let mut work = Box::pin(lead(Box::pin(async move {
        let _ = stop_rx.await;
    })));
    let outcome = loop {
        tokio::select! {
            _ = &mut shutdown, if stop_tx.is_some() => {
                if let Some(tx) = stop_tx.take() {
                    let _ = tx.send(());
                }
            }
            _ = &mut work => break Ok(()),
            lost = elector.keep_leading() => break Err(lost),
        }
    };
    // Fence: whatever the work was doing stops here, before anything else.
    drop(work);
    match outcome {
        Ok(()) => elector.release().await,
        Err(lost) => {
            tracing::error!(error = %lost, "stepped down; the controller stopped");
            Err(lost)
        }
    }
}

#[cfg(test)]
#[path = "leader_tests.rs"]
mod tests;
