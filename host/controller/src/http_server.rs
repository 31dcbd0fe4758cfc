//! The controller's own HTTP endpoints: `/metrics` (Prometheus text),
//! `/healthz` (200 while the process serves) and `/readyz` (see
//! [`Health`]). Plain HTTP/1.1 on an address of the operator's choosing;
//! nothing here writes to the cluster.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};

use crate::error::ControllerError;
use crate::health::Health;
use crate::metrics::Metrics;

/// The content type of the Prometheus text exposition format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What one listener serves; an endpoint left `None` answers 404.
#[derive(Clone, Default)]
pub struct Endpoints {
    pub metrics: Option<Arc<Metrics>>,
    pub health: Option<Arc<Health>>,
}

fn reply(code: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// Answers one request.
pub fn answer(endpoints: &Endpoints, method: &Method, path: &str) -> Response<Full<Bytes>> {
    const TEXT: &str = "text/plain; charset=utf-8";
    if method != Method::GET && method != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "only GET\n".to_string(),
        );
    }
    match (path, &endpoints.metrics, &endpoints.health) {
        ("/metrics", Some(m), _) => reply(StatusCode::OK, PROMETHEUS_TEXT, m.render()),
        ("/healthz" | "/livez", _, Some(_)) => reply(StatusCode::OK, TEXT, "ok\n".to_string()),
        ("/readyz", _, Some(h)) => match h.ready() {
            Ok(()) => reply(StatusCode::OK, TEXT, "ok\n".to_string()),
            Err(why) => reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, format!("{why}\n")),
        },
        _ => reply(StatusCode::NOT_FOUND, TEXT, format!("no endpoint {path}\n")),
    }
}

/// Binds `addr` (port 0 picks a free one) and serves `endpoints` on a
/// spawned task until the runtime stops; returns the bound address.
pub async fn serve(addr: SocketAddr, endpoints: Endpoints) -> Result<SocketAddr, ControllerError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| ControllerError::Startup(format!("binding {addr}: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| ControllerError::Startup(format!("binding {addr}: {e}")))?;
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed on the metrics/health listener");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let endpoints = endpoints.clone();
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let r = answer(&endpoints, req.method(), req.uri().path());
                    async move { Ok::<_, Infallible>(r) }
                });
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, svc)
                    .await
                {
                    tracing::debug!(error = %e, "metrics/health connection ended");
                }
            });
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Leadership;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let req = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        out
    }

    fn endpoints() -> (Arc<Metrics>, Arc<Health>, Endpoints) {
        let m = Arc::new(Metrics::default());
        let h = Arc::new(Health::default());
        let e = Endpoints {
            metrics: Some(m.clone()),
            health: Some(h.clone()),
        };
        (m, h, e)
    }

    #[tokio::test]
    async fn a_scrape_returns_the_counters_as_prometheus_text() {
        let (m, _, e) = endpoints();
        m.jobset_completed("ns", "done");
        m.reconciled(std::time::Duration::from_millis(2), None, false);
        let addr = serve("127.0.0.1:0".parse().expect("addr"), e)
            .await
            .expect("serves");
        let text = get(addr, "/metrics").await;
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(
            text.to_lowercase()
                .contains("content-type: text/plain; version=0.0.4"),
            "{text}"
        );
        assert!(
            text.contains("jobset_completed_total{jobset_name=\"done\",namespace=\"ns\"} 1"),
            "{text}"
        );
        assert!(text.contains("jobset_reconcile_total 1"), "{text}");
    }

    #[tokio::test]
    async fn readyz_turns_ok_once_the_watches_sync_while_healthz_always_answers() {
        let (_, h, e) = endpoints();
        let addr = serve("127.0.0.1:0".parse().expect("addr"), e)
            .await
            .expect("serves");
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        let not_ready = get(addr, "/readyz").await;
        assert!(not_ready.starts_with("HTTP/1.1 503"), "{not_ready}");
        h.watch_started("jobsets");
        h.watch_synced("jobsets");
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        h.set_leadership(Leadership::Standby { healthy: false });
        let standby = get(addr, "/readyz").await;
        assert!(
            standby.starts_with("HTTP/1.1 503") && standby.contains("Lease"),
            "{standby}"
        );
        assert!(get(addr, "/nothing").await.starts_with("HTTP/1.1 404"));
    }

    #[test]
    fn an_endpoint_not_configured_on_a_listener_is_not_found() {
        let only_health = Endpoints {
            metrics: None,
            health: Some(Arc::new(Health::default())),
        };
        let r = answer(&only_health, &Method::GET, "/metrics");
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let r = answer(&only_health, &Method::POST, "/healthz");
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
}
