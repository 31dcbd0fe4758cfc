//! What the controller crate generates and manages outside a reconcile:
//! the deploy manifests and the webhook serving certificate.

mod deploy_generated;
mod webhook_certs;
