//! The per-decision sandbox: a WASI context with no capabilities (no
//! preopens, no sockets, no env or args, fixed clocks and random), captured
//! and capped stdout/stderr, and the memory / table limiter. One
//! [`HostState`] lives in one Store for one decision.

use bytes::Bytes;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

/// The wall clock a plugin sees: always the Unix epoch. Policies get the
/// time from `snapshot.now`.
struct FrozenWallClock;

impl HostWallClock for FrozenWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

/// The monotonic clock a plugin sees: never advances.
struct FrozenMonotonicClock;

impl HostMonotonicClock for FrozenMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// An output stream that keeps the first `cap` bytes and drops the rest
/// (a chatty plugin is truncated, not trapped).
#[derive(Clone)]
pub(crate) struct CappedPipe {
    inner: Arc<Mutex<Captured>>,
}

#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    cap: usize,
    dropped: usize,
}

impl CappedPipe {
    pub(crate) fn new(cap: usize) -> Self {
        CappedPipe {
            inner: Arc::new(Mutex::new(Captured {
                bytes: Vec::new(),
                cap,
                dropped: 0,
            })),
        }
    }

    fn push(&self, data: &[u8]) {
        if let Ok(mut c) = self.inner.lock() {
            let room = c.cap.saturating_sub(c.bytes.len());
            let take = room.min(data.len());
            c.bytes.extend_from_slice(&data[..take]);
            c.dropped += data.len() - take;
        }
    }

    /// The captured text and how many bytes were dropped.
    pub(crate) fn take(&self) -> (String, usize) {
        match self.inner.lock() {
            Ok(mut c) => {
                let text = String::from_utf8_lossy(&c.bytes).into_owned();
                c.bytes.clear();
                (text, std::mem::take(&mut c.dropped))
            }
            Err(_) => (String::new(), 0),
        }
    }
}

impl IsTerminal for CappedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedPipe {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for CappedPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedPipe {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi::async_trait]
impl OutputStream for CappedPipe {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

/// Memory and table caps for one Store; remembers whether the memory cap
/// was hit so the error can say "out of memory" rather than "trap".
pub(crate) struct Limiter {
    pub(crate) memory_bytes: usize,
    pub(crate) table_elements: usize,
    pub(crate) max_instances: usize,
    pub(crate) hit_memory_cap: bool,
}

/// The error a Store raises when a plugin asks for more memory than its cap.
#[derive(Debug, thiserror::Error)]
#[error("memory cap of {0} bytes exceeded")]
pub(crate) struct MemoryCapExceeded(pub(crate) usize);

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.hit_memory_cap = true;
            return Err(wasmtime::Error::new(MemoryCapExceeded(self.memory_bytes)));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.table_elements)
    }

    fn instances(&self) -> usize {
        self.max_instances
    }

    fn tables(&self) -> usize {
        self.max_instances
    }

    fn memories(&self) -> usize {
        self.max_instances
    }
}

/// Everything one Store holds.
pub(crate) struct HostState {
    /// Built on the plugin's first WASI call: a plugin without `std` (the
    /// default plugins) imports no WASI, and its decisions skip the cost.
    wasi: Option<WasiCtx>,
    table: ResourceTable,
    pub(crate) limiter: Limiter,
    pub(crate) stdout: CappedPipe,
    pub(crate) stderr: CappedPipe,
}

impl HostState {
    /// A fresh sandbox with no capabilities.
    pub(crate) fn new(limiter: Limiter, output_cap: usize) -> Self {
        HostState {
            wasi: None,
            table: ResourceTable::new(),
            limiter,
            stdout: CappedPipe::new(output_cap),
            stderr: CappedPipe::new(output_cap),
        }
    }

    /// The no-capability WASI context: captured output, frozen clocks,
    /// fixed randomness, no network, no files, no environment.
    fn wasi_ctx(stdout: &CappedPipe, stderr: &CappedPipe) -> WasiCtx {
        let mut builder = WasiCtx::builder();
        builder
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .wall_clock(FrozenWallClock)
            .monotonic_clock(FrozenMonotonicClock)
            .secure_random(wasmtime_wasi::Deterministic::new(vec![4, 2]))
            .insecure_random(wasmtime_wasi::Deterministic::new(vec![4, 2]))
            .insecure_random_seed(42)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        builder.build()
    }
}

/// `jobset:policy/regex`: the SDK's matcher, which compiles each pattern
/// once for every plugin and Store (see `jobset_policy_sdk::regex`). A
/// pattern that does not compile goes back to the plugin as an error and is
/// logged, as upstream logs and skips it.
impl crate::bindings::v0_1_0::jobset::policy::regex::Host for HostState {
    fn is_match(&mut self, pattern: String, text: String) -> Result<bool, String> {
        host_regex(&pattern, &text)
    }
}

/// The same import at 0.2.0 (unchanged).
impl crate::bindings::v0_2_0::jobset::policy::regex::Host for HostState {
    fn is_match(&mut self, pattern: String, text: String) -> Result<bool, String> {
        host_regex(&pattern, &text)
    }
}

/// The same import at 0.3.0 (unchanged).
impl crate::bindings::v0_3_0::jobset::policy::regex::Host for HostState {
    fn is_match(&mut self, pattern: String, text: String) -> Result<bool, String> {
        host_regex(&pattern, &text)
    }
}

fn host_regex(pattern: &str, text: &str) -> Result<bool, String> {
    let matched = jobset_policy_sdk::regex::is_match(pattern, text);
    if let Err(e) = &matched {
        tracing::warn!(error = %e, "a policy plugin's regex was rejected");
    }
    matched
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let (stdout, stderr) = (&self.stdout, &self.stderr);
        WasiCtxView {
            ctx: self
                .wasi
                .get_or_insert_with(|| HostState::wasi_ctx(stdout, stderr)),
            table: &mut self.table,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captured_output_keeps_the_first_bytes_and_counts_the_rest() {
        let pipe = CappedPipe::new(8);
        let mut stream = pipe.p2_stream();
        stream
            .write(Bytes::from_static(b"hello, "))
            .expect("writes");
        stream
            .write(Bytes::from_static(b"world"))
            .expect("a full pipe still accepts writes");
        assert_eq!(pipe.take(), ("hello, w".to_string(), 4));
        assert_eq!(pipe.take(), (String::new(), 0));
    }

    #[test]
    fn the_memory_cap_refuses_growth_past_the_limit_and_remembers_it() {
        let mut limiter = Limiter {
            memory_bytes: 1 << 20,
            table_elements: 10,
            max_instances: 4,
            hit_memory_cap: false,
        };
        assert!(matches!(limiter.memory_growing(0, 1 << 20, None), Ok(true)));
        assert!(!limiter.hit_memory_cap);
        assert!(
            limiter
                .memory_growing(1 << 20, (1 << 20) + 65536, None)
                .is_err()
        );
        assert!(limiter.hit_memory_cap);
        assert!(matches!(limiter.table_growing(0, 11, None), Ok(false)));
    }
}
