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

/// Writes a kubeconfig for an HTTPS server whose certificate is `ca_pem`.
pub fn write_tls_kubeconfig(
    path: &Path,
    addr: SocketAddr,
    ca_pem: &str,
    token: Option<&str>,
) -> Result<(), SimError> {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let user_block = match token {
        Some(t) => format!("  user:\n    token: {t}\n"),
        None => "  user: {}\n".to_string(),
    };
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: jobset-sim\n  cluster:\n    server: https://{addr}\n    certificate-authority-data: {ca}\nusers:\n- name: jobset-sim\n{user_block}contexts:\n- name: jobset-sim\n  context:\n    cluster: jobset-sim\n    user: jobset-sim\n    namespace: default\ncurrent-context: jobset-sim\n"
    );
    std::fs::write(path, text).map_err(|source| SimError::Kubeconfig {
        path: path.display().to_string(),
        source,
    })
}

/// Runs the server until SIGINT or SIGTERM.
pub async fn run_serve(opts: ServeOptions) -> Result<(), SimError> {
    run_serve_until(opts, wait_for_signal()).await
}

/// Runs the server until `stop` completes (or fails).
pub async fn run_serve_until(
    opts: ServeOptions,
    stop: impl std::future::Future<Output = Result<(), SimError>>,
) -> Result<(), SimError> {
    let sim = Sim::new(SimConfig {
        rbac: opts.rbac,
        ..SimConfig::default()
    });
    serve_sim_until(&sim, opts, stop).await
}

/// Serves an existing simulator (with its cluster and anything else already
/// running on it) until SIGINT or SIGTERM.
pub async fn serve_sim(sim: &Sim, opts: ServeOptions) -> Result<(), SimError> {
    serve_sim_until(sim, opts, wait_for_signal()).await
}

/// Serves an existing simulator until `stop` completes (or fails). With
/// RBAC the kubeconfig carries an admin token, and the server speaks HTTPS
/// because kubectl sends bearer tokens only over TLS.
pub async fn serve_sim_until(
    sim: &Sim,
    opts: ServeOptions,
    stop: impl std::future::Future<Output = Result<(), SimError>>,
) -> Result<(), SimError> {
    if opts.rbac {
        sim.add_token(ADMIN_TOKEN, UserInfo::admin());
    }
    let url = if opts.rbac {
        let (addr, ca) = sim.serve_tls(opts.listen).await?;
        write_tls_kubeconfig(&opts.kubeconfig_out, addr, &ca, Some(ADMIN_TOKEN))?;
        format!("https://{addr}")
    } else {
        let addr = sim.serve(opts.listen).await?;
        write_kubeconfig(&opts.kubeconfig_out, addr, None)?;
        format!("http://{addr}")
    };
    println!(
        "jobset sim: ready on {url} (kubeconfig: {})",
        opts.kubeconfig_out.display()
    );
    stop.await?;
    tracing::info!("stopping");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serve_writes_a_kubeconfig_answers_and_stops_when_told() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kc");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let opts = ServeOptions {
            listen: "127.0.0.1:0".parse().expect("addr"),
            kubeconfig_out: path.clone(),
            rbac: false,
        };
        let server = tokio::spawn(run_serve_until(opts, async move {
            let _ = rx.await;
            Ok(())
        }));
        let mut text = String::new();
        for _ in 0..100 {
            text = std::fs::read_to_string(&path).unwrap_or_default();
            if !text.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(text.contains("current-context: jobset-sim"), "{text}");
        let server_line = text
            .lines()
            .find(|l| l.contains("server: http://"))
            .expect("server line");
        let addr = server_line
            .trim()
            .trim_start_matches("server: http://")
            .to_string();
        let mut stream = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream
            .write_all(b"GET /version HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.expect("read");
        assert!(
            reply.starts_with("HTTP/1.1 200") && reply.contains("gitVersion"),
            "{reply}"
        );
        tx.send(()).expect("stop");
        assert!(server.await.expect("join").is_ok());
    }
}
