//! The simulated cluster through real clients: its REST surface, kube-rs,
//! kubectl, events, webhooks and the Job and Pod controllers. One test
//! binary, so the workspace links it once.

mod cluster_job_features;
mod cluster_jobs;
mod cluster_scale;
mod cluster_scheduling;
mod cluster_support;
mod events;
mod kube_client;
mod kubectl;
mod kubectl_events;
mod rest;
mod webhooks;
