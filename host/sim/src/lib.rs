//! jobset-sim: a simulated Kubernetes API server held in memory, answering
//! real Kubernetes JSON in-process (a tower service for kube-rs) and over
//! HTTP on loopback (for kubectl). The cluster behind it builds on `client`.
#![forbid(unsafe_code)]

mod admission;
mod body;
pub mod client;
pub mod clock;
pub mod cluster;
mod conversion;
mod crd;
mod defaults;
mod delete;
mod discovery;
pub mod errors;
mod events;
pub mod faults;
pub mod gc;
mod handler;
pub mod http;
mod known_fields;
pub mod lists;
pub mod managed;
pub mod observe;
mod openapi;
pub mod patch;
mod protobuf;
pub mod rbac;
mod read;
pub mod registry;
pub mod request;
pub mod selectors;
pub mod serve;
mod sim;
pub mod store;
mod table;
mod tls;
mod validate;
mod watch;
mod write;

pub use client::{PatchKind, Resource, SimClient, WatchEvent};
pub use crd::example_crd;
pub use errors::{ApiError, SimError};
pub use faults::Faults;
pub use gc::Propagation;
pub use http::{SimBody, SimService};
pub use observe::{Gate, Interceptor, Seen, SharedInterceptor};
pub use rbac::UserInfo;
pub use request::{ApiRequest, ApiResponse};
pub use serve::{ServeOptions, run_serve, run_serve_until, write_kubeconfig, write_tls_kubeconfig};
pub use sim::{Sim, SimConfig};
