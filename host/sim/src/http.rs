//! Transport: the server as a cloneable `tower::Service` over `http` types
//! (what `kube::Client::new` takes, no TCP), and the same service on an
//! HTTP/1.1 loopback listener for kubectl.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::StreamExt;
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};

use crate::errors::{ApiError, SimError};
use crate::request::{ApiBody, ApiRequest, ApiResponse};
use crate::sim::Sim;

/// Response bodies: a buffer, or a watch stream that ends on its own schedule.
pub type SimBody = UnsyncBoxBody<Bytes, std::io::Error>;

/// The server as a tower service.
#[derive(Clone, Debug)]
pub struct SimService {
    sim: Sim,
}

impl Sim {
    /// A cloneable service for `kube::Client::new(sim.service(), "default")`.
    pub fn service(&self) -> SimService {
        SimService { sim: self.clone() }
    }

    /// Serves over HTTP/1.1 on `addr` (use port 0 for any free port) until
    /// the runtime stops; returns the bound address.
    pub async fn serve(&self, addr: SocketAddr) -> Result<SocketAddr, SimError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| SimError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        let bound = listener.local_addr()?;
        let svc = self.service();
        tokio::spawn(async move {
            loop {
                let (stream, _) = match listener.accept().await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let svc = svc.clone();
                tokio::spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let hsvc = hyper::service::service_fn(move |req| {
                        let mut s = svc.clone();
                        tower::Service::call(&mut s, req)
                    });
                    if let Err(e) = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, hsvc)
                        .await
                    {
                        tracing::debug!(error = %e, "connection ended");
                    }
                });
            }
        });
        Ok(bound)
    }
}

impl Sim {
    /// Serves over HTTPS with a fresh self-signed certificate for 127.0.0.1;
    /// returns the bound address and the certificate (PEM) clients must trust.
    /// kubectl sends bearer tokens only over TLS, so RBAC needs this.
    pub async fn serve_tls(&self, addr: SocketAddr) -> Result<(SocketAddr, String), SimError> {
        let (cert, key) =
            crate::tls::self_signed().map_err(|e| SimError::Io(std::io::Error::other(e)))?;
        let acceptor = crate::tls::acceptor(&cert, &key)
            .map_err(|e| SimError::Io(std::io::Error::other(e)))?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| SimError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        let bound = listener.local_addr()?;
        let svc = self.service();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                };
                let (svc, acceptor) = (svc.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let io = hyper_util::rt::TokioIo::new(tls);
                    let hsvc = hyper::service::service_fn(move |req| {
                        let mut s = svc.clone();
                        tower::Service::call(&mut s, req)
                    });
                    if let Err(e) = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, hsvc)
                        .await
                    {
                        tracing::debug!(error = %e, "connection ended");
                    }
                });
            }
        });
        Ok((bound, cert))
    }
}

fn full(b: Bytes) -> SimBody {
    Full::new(b)
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

/// Converts a server response to an HTTP response.
pub fn to_http(resp: ApiResponse) -> http::Response<SimBody> {
    let mut builder = http::Response::builder().status(resp.status);
    for w in &resp.warnings {
        let text: String = w
            .chars()
            .map(|c| if c == '"' { '\'' } else { c })
            .filter(|c| c.is_ascii_graphic() || *c == ' ')
            .collect();
        builder = builder.header("warning", format!("299 - \"{text}\""));
    }
    let body = match resp.body {
        ApiBody::Json(v) => {
            builder = builder.header("content-type", "application/json");
            full(Bytes::from(serde_json::to_vec(&*v).unwrap_or_default()))
        }
        ApiBody::Text(ct, b) => {
            builder = builder.header("content-type", ct);
            full(b)
        }
        ApiBody::Stream(s) => {
            builder = builder
                .header("content-type", "application/json")
                .header("transfer-encoding", "chunked");
            StreamBody::new(s.map(|b| Ok::<_, std::io::Error>(Frame::data(b)))).boxed_unsync()
        }
    };
    builder
        .body(body)
        .unwrap_or_else(|_| http::Response::new(full(Bytes::new())))
}

fn header(req: &http::request::Parts, name: &str) -> String {
    req.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

impl<B> tower::Service<http::Request<B>> for SimService
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = http::Response<SimBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let sim = self.sim.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let limit = sim.shared.config.max_body_bytes;
            let bytes = match Limited::new(body, limit).collect().await {
                Ok(c) => c.to_bytes(),
                Err(e) => {
                    let err = if e
                        .downcast_ref::<http_body_util::LengthLimitError>()
                        .is_some()
                    {
                        ApiError::too_large(limit)
                    } else {
                        ApiError::bad_request(format!("error reading the request body: {e}"))
                    };
                    return Ok(to_http(ApiResponse::error(&err)));
                }
            };
            let path_q = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            let mut api = ApiRequest::new(parts.method.clone(), path_q);
            api.content_type = header(&parts, "content-type");
            api.accept = header(&parts, "accept");
            api.user_agent = header(&parts, "user-agent");
            api.token = header(&parts, "authorization")
                .strip_prefix("Bearer ")
                .map(|t| t.trim().to_string());
            api.body = bytes;
            tracing::trace!(method = %parts.method, path = %path_q, "request");
            Ok(to_http(sim.handle(api).await))
        })
    }
}
