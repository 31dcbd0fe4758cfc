//! `jobset sim serve`: a server on loopback, a kubeconfig for it, a `ready`
//! line, and a clean stop on SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::errors::SimError;
use crate::rbac::UserInfo;
use crate::sim::{Sim, SimConfig};

/// What `jobset sim serve` was asked to do.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub kubeconfig_out: PathBuf,
    pub rbac: bool,
}

/// The token written into the kubeconfig when RBAC is on (a cluster admin).
pub const ADMIN_TOKEN: &str = "jobset-sim-admin";

/// Writes a kubeconfig for a plain-HTTP server, with a bearer token if given.
pub fn write_kubeconfig(
    path: &Path,
    addr: SocketAddr,
    token: Option<&str>,
) -> Result<(), SimError> {
    let user_block = match token {
        Some(t) => format!("  user:\n    token: {t}\n"),
        None => "  user: {}\n".to_string(),
    };
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: jobset-sim\n  cluster:\n    server: http://{addr}\nusers:\n- name: jobset-sim\n{user_block}contexts:\n- name: jobset-sim\n  context:\n    cluster: jobset-sim\n    user: jobset-sim\n    namespace: default\ncurrent-context: jobset-sim\n"
    );
    std::fs::write(path, text).map_err(|source| SimError::Kubeconfig {
        path: path.display().to_string(),
        source,
    })
}

/// Runs the server until SIGINT or SIGTERM.
pub async fn run_serve(opts: ServeOptions) -> Result<(), SimError> {
    let mut config = SimConfig {
        rbac: opts.rbac,
        ..SimConfig::default()
    };
    if opts.rbac {
        config.tokens.insert(ADMIN_TOKEN.into(), UserInfo::admin());
    }
    let sim = Sim::new(config);
    let addr = sim.serve(opts.listen).await?;
    write_kubeconfig(&opts.kubeconfig_out, addr, opts.rbac.then_some(ADMIN_TOKEN))?;
    println!(
        "jobset sim: ready on http://{addr} (kubeconfig: {})",
        opts.kubeconfig_out.display()
    );
    wait_for_signal().await?;
    tracing::info!("stopping on signal");
    Ok(())
}

async fn wait_for_signal() -> Result<(), SimError> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            _ = term.recv() => {}
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await?;
        Ok(())
    }
}
