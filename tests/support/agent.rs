//! A simulator service that stamps a user agent on every request, so the
//! simulator's request observation can tell controllers apart.

use std::task::{Context, Poll};

use jobset_sim::SimService;

/// `SimService` with a fixed `User-Agent`.
#[derive(Clone, Debug)]
pub struct Tagged {
    inner: SimService,
    agent: http::HeaderValue,
}

impl Tagged {
    /// Wraps `inner`; an agent that is not a valid header value is sent empty.
    pub fn new(inner: SimService, agent: &str) -> Self {
        let agent = http::HeaderValue::from_str(agent)
            .unwrap_or_else(|_| http::HeaderValue::from_static(""));
        Tagged { inner, agent }
    }
}

impl<B> tower::Service<http::Request<B>> for Tagged
where
    SimService: tower::Service<http::Request<B>>,
{
    type Response = <SimService as tower::Service<http::Request<B>>>::Response;
    type Error = <SimService as tower::Service<http::Request<B>>>::Error;
    type Future = <SimService as tower::Service<http::Request<B>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        req.headers_mut()
            .insert(http::header::USER_AGENT, self.agent.clone());
        self.inner.call(req)
    }
}
