//! Apply: carries out a plan's actions against the API, idempotently, so a
//! plan re-run after a crash or a conflict never duplicates a Job:
//! creates tolerate AlreadyExists, deletes tolerate NotFound, and Jobs are
//! created and deleted up to 50 at a time. Failures to create emit their
//! Warning event at once (spec 4.11).

use futures::{StreamExt, TryStreamExt, stream};
use jobset_api::{Embedded, JobSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::{Client, Resource};
use serde_json::json;

use crate::actions::{Action, Resize};
use crate::conditions::EventType;
use crate::error::ControllerError;
use crate::events::{Event, Recorder, regarding};
use crate::index::Index;

/// Creates and deletes at most this many objects at once.
pub const MAX_PARALLELISM: usize = jobset_api::labels::MAX_PARALLELISM;
/// The field manager of every write.
pub const FIELD_MANAGER: &str = "jobset-controller";

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

fn api_error(action: &str, object: &str, e: kube::Error) -> ControllerError {
    ControllerError::Api {
        action: action.to_string(),
        object: object.to_string(),
        source: Box::new(e),
    }
}

/// What the API server said, as upstream's events quote it: the status
/// message of an API error, the error itself otherwise.
fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.message.is_empty() => s.message.clone(),
        other => other.to_string(),
    }
}

/// Where the actions of one JobSet go.
pub struct Applier<'a> {
    pub client: &'a Client,
    pub jobset: &'a JobSet,
    pub index: &'a Index,
    pub recorder: &'a Recorder,
}

impl Applier<'_> {
    fn ns(&self) -> String {
        self.jobset.metadata.namespace.clone().unwrap_or_default()
    }

    async fn warn_now(&self, reason: &str, note: String) {
        let reference = regarding(self.jobset);
        let ev = Event::reconciling(EventType::Warning, reason, note);
        if let Err(e) = self.recorder.publish(&ev, &reference).await {
            tracing::warn!(error = %e, reason, "could not emit event");
        }
    }

    /// Carries out every action in order; stops at the first failure.
    pub async fn apply(&self, actions: &[Action]) -> Result<(), ControllerError> {
        for action in actions {
            match action {
                Action::DeleteJobs(names) => self.delete_jobs(names).await?,
                Action::CreateService(svc) => self.create_service(svc).await?,
                Action::CreatePvcs(pvcs) => self.create_pvcs(pvcs).await?,
                Action::CreateJobs(jobs) => self.create_jobs(jobs).await?,
                Action::SuspendJobs(names) => self.suspend_jobs(names).await?,
                Action::ResumeJob {
                    job,
                    clear_start_time,
                } => self.resume_job(job, *clear_start_time).await?,
                Action::ResizeJobs(resizes) => self.resize_jobs(resizes).await?,
                Action::DeleteJobSet => self.delete_jobset().await?,
            }
        }
        Ok(())
    }

    async fn delete_jobs(&self, names: &[String]) -> Result<(), ControllerError> {
        let api: Api<Job> = Api::namespaced(self.client.clone(), &self.ns());
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Foreground),
            ..Default::default()
        };
        stream::iter(names.to_vec())
            .map(|name| {
                let api = api.clone();
                let dp = dp.clone();
                async move {
                    match api.delete(&name, &dp).await {
                        Ok(_) => Ok(()),
                        Err(e) if is_status(&e, 404) => Ok(()),
                        Err(e) => Err(api_error("delete Job", &name, e)),
                    }
                }
            })
            .buffer_unordered(MAX_PARALLELISM)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    async fn create_service(&self, svc: &Service) -> Result<(), ControllerError> {
        let api: Api<Service> = Api::namespaced(self.client.clone(), &self.ns());
        let name = svc.metadata.name.clone().unwrap_or_default();
        match api.create(&PostParams::default(), svc).await {
            Ok(_) => {
                self.index.set_service(&self.ns(), &name, true);
                Ok(())
            }
            Err(e) if is_status(&e, 409) => {
                self.index.set_service(&self.ns(), &name, true);
                Ok(())
            }
            Err(e) => {
                self.warn_now("HeadlessServiceCreationFailed", e.to_string())
                    .await;
                Err(api_error("create Service", &name, e))
            }
        }
    }

    async fn create_pvcs(&self, pvcs: &[PersistentVolumeClaim]) -> Result<(), ControllerError> {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &self.ns());
        for pvc in pvcs {
            let name = pvc.metadata.name.clone().unwrap_or_default();
            match api.create(&PostParams::default(), pvc).await {
                Ok(_) => self.index.note_pvc(&self.ns(), &name),
                Err(e) if is_status(&e, 409) => self.index.note_pvc(&self.ns(), &name),
                Err(e) => {
                    self.warn_now("PVCCreationFailed", e.to_string()).await;
                    return Err(api_error("create PersistentVolumeClaim", &name, e));
                }
            }
        }
        Ok(())
    }

    async fn create_jobs(&self, jobs: &[Embedded<Job>]) -> Result<(), ControllerError> {
        let ns = self.ns();
        // Sent as the bytes of the Job with its preserved fields, so that
        // template fields the compiled Kubernetes types do not know (a newer
        // pod field) reach the API server.
        let path = <Job as Resource>::url_path(&(), Some(&ns));
        // Each request is built up front from the Job it sends, so the Jobs
        // themselves are not copied into the requests' futures.
        let requests: Vec<_> = jobs
            .iter()
            .map(|job| {
                let name = job.metadata.name.clone().unwrap_or_default();
                let request = serde_json::to_vec(job)
                    .map_err(kube::Error::SerdeError)
                    .and_then(|body| {
                        kube::core::Request::new(path.clone())
                            .create(&PostParams::default(), body)
                            .map_err(kube::Error::BuildRequest)
                    });
                (name, request)
            })
            .collect();
        let results: Vec<Result<(), (String, kube::Error)>> = stream::iter(requests)
            .map(|(name, request)| async move {
                let request = request.map_err(|e| (name.clone(), e))?;
                match self.client.request_text(request).await {
                    Ok(answer) => {
                        // Seen at once by the next reconcile, which would
                        // otherwise create it again while the watch lags.
                        if let Ok(created) = serde_json::from_str::<Job>(&answer) {
                            self.index.insert_created(created);
                        }
                        Ok(())
                    }
                    // Made by an earlier reconcile whose answer was lost, or
                    // an earlier attempt's Job gone since: nothing to report
                    // (the next reconcile sees which). A Job of that name
                    // that is not ours is a failure.
                    Err(e) if is_status(&e, 409) && !self.held_by_another(&name).await => Ok(()),
                    Err(e) => Err((name, e)),
                }
            })
            .buffer_unordered(MAX_PARALLELISM)
            .collect()
            .await;
        let failures: Vec<(String, kube::Error)> =
            results.into_iter().filter_map(Result::err).collect();
        if let Some((name, _)) = failures.first() {
            // Upstream's words, one line per Job.
            let joined = failures
                .iter()
                .map(|(n, e)| format!("job {n:?} creation failed with error: {}", api_message(e)))
                .collect::<Vec<_>>()
                .join("\n");
            self.warn_now("JobCreationFailed", joined).await;
            let name = name.clone();
            let Some((_, e)) = failures.into_iter().next() else {
                return Ok(());
            };
            return Err(api_error("create Job", &name, e));
        }
        Ok(())
    }

    /// Whether a Job `name` exists that this JobSet does not control (or
    /// whether that cannot be told: the lookup failed). Looked up with a
    /// list by name: the controller's role may list Jobs, not get them.
    async fn held_by_another(&self, name: &str) -> bool {
        let api: Api<Job> = Api::namespaced(self.client.clone(), &self.ns());
        let Some(uid) = self.jobset.metadata.uid.as_deref() else {
            return true;
        };
        let by_name = kube::api::ListParams::default().fields(&format!("metadata.name={name}"));
        match api.list_metadata(&by_name).await {
            Ok(list) => list.items.iter().any(|job| {
                !job.metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.uid == uid && o.controller == Some(true))
            }),
            Err(e) => {
                tracing::warn!(job = name, error = %e, "could not tell who holds the Job's name");
                true
            }
        }
    }

    async fn suspend_jobs(&self, names: &[String]) -> Result<(), ControllerError> {
        let api: Api<Job> = Api::namespaced(self.client.clone(), &self.ns());
        let patch = Patch::Merge(json!({"spec": {"suspend": true}}));
        for name in names {
            match api.patch(name, &PatchParams::default(), &patch).await {
                Ok(_) => {}
                Err(e) if is_status(&e, 404) => {}
                Err(e) => return Err(api_error("suspend Job", name, e)),
            }
        }
        Ok(())
    }

    async fn resume_job(&self, job: &Job, clear_start_time: bool) -> Result<(), ControllerError> {
        let api: Api<Job> = Api::namespaced(self.client.clone(), &self.ns());
        let name = job.metadata.name.clone().unwrap_or_default();
        let mut job = job.clone();
        if clear_start_time {
            let patch = Patch::Merge(json!({"status": {"startTime": null}}));
            let updated = api
                .patch_status(&name, &PatchParams::default(), &patch)
                .await
                .map_err(|e| api_error("clear startTime of Job", &name, e))?;
            job.metadata.resource_version = updated.metadata.resource_version;
        }
        let patch = Patch::Merge(crate::suspend::resume_patch(&job));
        api.patch(&name, &PatchParams::default(), &patch)
            .await
            .map_err(|e| api_error("resume Job", &name, e))?;
        Ok(())
    }

    /// Patches every Job to its new size, then reports the first failure
    /// (upstream tries every Job before it fails the reconcile). A Job
    /// gone meanwhile is nothing to resize.
    async fn resize_jobs(&self, resizes: &[Resize]) -> Result<(), ControllerError> {
        let api: Api<Job> = Api::namespaced(self.client.clone(), &self.ns());
        let mut first_failure = None;
        for r in resizes {
            let patch = Patch::Merge(json!({"spec": {
                "parallelism": r.parallelism,
                "completions": r.completions,
            }}));
            tracing::debug!(job = %r.job, parallelism = ?r.parallelism, completions = ?r.completions,
                "resizing Job");
            match api.patch(&r.job, &PatchParams::default(), &patch).await {
                Ok(_) => {}
                Err(e) if is_status(&e, 404) => {}
                Err(e) => {
                    first_failure.get_or_insert_with(|| api_error("resize Job", &r.job, e));
                }
            }
        }
        first_failure.map_or(Ok(()), Err)
    }

    async fn delete_jobset(&self) -> Result<(), ControllerError> {
        let api: Api<JobSet> = Api::namespaced(self.client.clone(), &self.ns());
        let name = self.jobset.metadata.name.clone().unwrap_or_default();
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Foreground),
            ..Default::default()
        };
        match api.delete(&name, &dp).await {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 404) => Ok(()),
            Err(e) => Err(api_error("delete JobSet", &name, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use jobset_sim::{Sim, SimConfig};
    use k8s_openapi::api::events::v1::Event as ApiEvent;
    use kube::api::ListParams;

    fn job(name: &str, owner_uid: Option<&str>) -> Job {
        let owners = owner_uid.map(|uid| {
            json!([{"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
                    "name": "js", "uid": uid, "controller": true}])
        });
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "ownerReferences": owners},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "c", "image": "busybox"}]}}}
        }))
        .expect("a Job")
    }

    /// A simulated API server holding `existing` Jobs, and what an applier
    /// for the JobSet "js" (uid `js-uid`) needs there.
    struct World {
        _sim: Sim,
        client: Client,
        js: JobSet,
        index: Index,
        recorder: Recorder,
    }

    impl World {
        async fn with_jobs(existing: Vec<Job>) -> World {
            let sim = Sim::new(SimConfig::default());
            let client = Client::new(sim.service(), "default");
            let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
            for job in existing {
                jobs.create(&PostParams::default(), &job)
                    .await
                    .expect("the existing Job is created");
            }
            let js: JobSet = serde_json::from_value(json!({
                "apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
                "metadata": {"name": "js", "namespace": "default", "uid": "js-uid"},
                "spec": {"replicatedJobs": []}
            }))
            .expect("a JobSet");
            World {
                recorder: Recorder::new(client.clone(), "jobset", Clock::wall()),
                _sim: sim,
                client,
                js,
                index: Index::default(),
            }
        }

        fn applier(&self) -> Applier<'_> {
            Applier {
                client: &self.client,
                jobset: &self.js,
                index: &self.index,
                recorder: &self.recorder,
            }
        }
    }

    /// Creates `existing` directly, then has the applier create `wanted`;
    /// returns its result and the notes of the Events it recorded.
    async fn create_over(existing: Job, wanted: Job) -> (Result<(), ControllerError>, Vec<String>) {
        let world = World::with_jobs(vec![existing]).await;
        let result = world
            .applier()
            .apply(&[Action::CreateJobs(vec![Embedded::new(wanted)])])
            .await;
        let events: Api<ApiEvent> = Api::namespaced(world.client.clone(), "default");
        let notes = events
            .list(&ListParams::default())
            .await
            .expect("Events list")
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("JobCreationFailed"))
            .filter_map(|e| e.note)
            .collect();
        (result, notes)
    }

    #[tokio::test]
    async fn only_a_job_of_someone_else_holds_a_name() {
        let world = World::with_jobs(vec![
            job("ours", Some("js-uid")),
            job("theirs", Some("other")),
            job("bare", None),
        ])
        .await;
        let applier = world.applier();
        assert!(!applier.held_by_another("ours").await);
        assert!(
            !applier.held_by_another("gone").await,
            "gone since: retried, not reported"
        );
        assert!(applier.held_by_another("theirs").await);
        assert!(applier.held_by_another("bare").await);
    }

    #[tokio::test]
    async fn an_existing_job_of_this_jobset_counts_as_created() {
        let (result, notes) =
            create_over(job("js-w-0", Some("js-uid")), job("js-w-0", Some("js-uid"))).await;
        assert!(result.is_ok(), "{result:?}");
        assert!(notes.is_empty(), "{notes:?}");
    }

    #[tokio::test]
    async fn an_existing_job_of_someone_else_is_a_creation_failure_in_upstreams_words() {
        for other_owner in [None, Some("another-uid")] {
            let (result, notes) =
                create_over(job("js-w-0", other_owner), job("js-w-0", Some("js-uid"))).await;
            assert!(result.is_err(), "{other_owner:?}");
            assert_eq!(
                notes,
                [r#"job "js-w-0" creation failed with error: jobs.batch "js-w-0" already exists"#],
                "{other_owner:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_created_job_is_in_the_index_before_any_watch_delivers_it() {
        // No watch runs here: what the index holds came from the creation.
        let world = World::with_jobs(vec![]).await;
        let result = world
            .applier()
            .apply(&[Action::CreateJobs(vec![
                Embedded::new(job("js-w-0", Some("js-uid"))),
                Embedded::new(job("js-w-1", Some("js-uid"))),
            ])])
            .await;
        assert!(result.is_ok(), "{result:?}");
        let mut names: Vec<String> = world
            .index
            .jobs_of("js-uid")
            .iter()
            .filter_map(|j| j.metadata.name.clone())
            .collect();
        names.sort();
        assert_eq!(names, ["js-w-0", "js-w-1"]);
        assert!(
            world
                .index
                .jobs_of("js-uid")
                .iter()
                .all(|j| j.metadata.uid.is_some()),
            "the stored Jobs are the API server's answers"
        );
    }
}
