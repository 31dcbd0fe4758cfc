//! The one wasmtime [`Engine`] of the process and what hangs off it: the
//! pooling allocator, the epoch ticker thread, the linker (WASI and the
//! host's `jobset:policy/regex`, nothing else) and the cache of compiled
//! components keyed by sha256. Loading a plugin ([`Runtime::load`])
//! compiles once and prepares an instance template.

use crate::bindings::{v0_1_0, v0_2_0, v0_3_0};
use crate::error::LoadError;
use crate::plugin::Meta;
use crate::plugin::WasmPlugin;
use crate::sandbox::HostState;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;
use wasmtime::component::{Component, ComponentExportIndex, HasSelf, InstancePre, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// The caps applied to every decision. Set in one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock budget of one decision (instantiation included).
    pub deadline: Duration,
    /// Wall-clock budget of the calls made when a plugin is loaded
    /// (`meta.info()` with the first instantiation and the type checks,
    /// `validate-config`): done once per version, off the decision path,
    /// and slower than a decision on a loaded machine.
    pub load_deadline: Duration,
    /// Linear memory a plugin may grow to.
    pub memory_bytes: usize,
    /// Elements per table.
    pub table_elements: usize,
    /// Decisions that may run at the same time (instance pool size).
    pub max_concurrent: u32,
    /// Bytes of stdout and of stderr kept per decision.
    pub output_bytes: usize,
    /// Largest plugin accepted (a ConfigMap's limit).
    pub max_plugin_bytes: usize,
    /// Compiled components kept for reuse (least recently used go first).
    /// A plugin in force keeps its own code whatever the cache holds.
    pub max_compiled: usize,
    /// Bytes of machine code that cache may hold.
    pub max_compiled_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: Duration::from_millis(50),
            load_deadline: Duration::from_secs(1),
            memory_bytes: 16 << 20,
            table_elements: 10_000,
            max_concurrent: 32,
            output_bytes: 4096,
            max_plugin_bytes: 1 << 20,
            max_compiled: 64,
            max_compiled_bytes: 256 << 20,
        }
    }
}

pub(crate) struct RuntimeInner {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<HostState>,
    pub(crate) limits: Limits,
    /// Epoch ticks that make up the deadline.
    pub(crate) deadline_ticks: u64,
    /// Epoch ticks that make up the load deadline.
    pub(crate) load_deadline_ticks: u64,
    compiled: Mutex<Compiled>,
    /// One per instance the pool holds; a decision takes one.
    pub(crate) permits: Permits,
}

/// A counting semaphore for threads (decisions are synchronous).
pub(crate) struct Permits {
    state: Mutex<PermitCount>,
    released: Condvar,
}

struct PermitCount {
    free: u32,
    /// Threads blocked in `acquire`: a release wakes one only when there is
    /// one, since waking costs a system call on every decision otherwise.
    waiting: u32,
}

impl Permits {
    fn new(n: u32) -> Permits {
        Permits {
            state: Mutex::new(PermitCount {
                free: n,
                waiting: 0,
            }),
            released: Condvar::new(),
        }
    }

    /// Waits for a free permit; it is given back when the guard drops.
    pub(crate) fn acquire(&self) -> Permit<'_> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while state.free == 0 {
            state.waiting += 1;
            state = self.released.wait(state).unwrap_or_else(|e| e.into_inner());
            state.waiting -= 1;
        }
        state.free -= 1;
        Permit(self)
    }
}

pub(crate) struct Permit<'a>(&'a Permits);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        state.free += 1;
        if state.waiting > 0 {
            self.0.released.notify_one();
        }
    }
}

/// Compiled components by sha256, bounded in entries and bytes of machine
/// code; the least recently used go first.
#[derive(Default)]
struct Compiled {
    /// sha256 -> (component, its code bytes, when last used).
    entries: HashMap<String, (Component, usize, u64)>,
    bytes: usize,
    clock: u64,
}

impl Compiled {
    fn get(&mut self, sha256: &str) -> Option<Component> {
        self.clock += 1;
        let now = self.clock;
        self.entries.get_mut(sha256).map(|(c, _, used)| {
            *used = now;
            c.clone()
        })
    }

    fn insert(&mut self, sha256: &str, component: Component, max_entries: usize, max_bytes: usize) {
        self.clock += 1;
        let range = component.image_range();
        let size = (range.end as usize).saturating_sub(range.start as usize);
        if let Some((_, old, _)) = self
            .entries
            .insert(sha256.to_string(), (component, size, self.clock))
        {
            self.bytes -= old;
        }
        self.bytes += size;
        while self.entries.len() > max_entries.max(1)
            || (self.bytes > max_bytes && self.entries.len() > 1)
        {
            let Some(oldest) = self
                .entries
                .iter()
                .filter(|(k, _)| k.as_str() != sha256)
                .min_by_key(|(_, (_, _, used))| *used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((_, freed, _)) = self.entries.remove(&oldest) {
                self.bytes -= freed;
                tracing::debug!(sha256 = %oldest, bytes = freed, "compiled plugin dropped from the cache");
            }
        }
    }
}

/// The Wasm runtime: cheap to clone, shared by every plugin it loads.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<RuntimeInner>,
}

impl Runtime {
    /// A runtime with these limits and its own epoch ticker thread.
    pub fn new(limits: Limits) -> Result<Runtime, LoadError> {
        let engine_error = |e: wasmtime::Error| LoadError::Engine(format!("{e:#}"));
        // Where the kernel can say which pages a decision dirtied
        // (PAGEMAP_SCAN, Linux 6.7+), only those are reset, and they stay
        // mapped: a decision then takes no page faults at all. Elsewhere
        // the low pages are reset with memset whether touched or not, so
        // fewer are kept.
        let engine = match Engine::new(&engine_config(&limits, MemoryReset::DirtyPages)) {
            Ok(engine) => engine,
            Err(e) => {
                tracing::debug!(error = %format!("{e:#}"), "no PAGEMAP_SCAN; plugin memory is reset with memset");
                Engine::new(&engine_config(&limits, MemoryReset::LowPages)).map_err(engine_error)?
            }
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(engine_error)?;
        crate::bindings::v0_1_0::jobset::policy::regex::add_to_linker::<_, HasSelf<HostState>>(
            &mut linker,
            |state| state,
        )
        .map_err(engine_error)?;
        crate::bindings::v0_2_0::jobset::policy::regex::add_to_linker::<_, HasSelf<HostState>>(
            &mut linker,
            |state| state,
        )
        .map_err(engine_error)?;
        crate::bindings::v0_3_0::jobset::policy::regex::add_to_linker::<_, HasSelf<HostState>>(
            &mut linker,
            |state| state,
        )
        .map_err(engine_error)?;

        // Ten ticks per deadline, at least one millisecond apart.
        let tick = (limits.deadline / 10).max(Duration::from_millis(1));
        let ticks = |d: Duration| d.as_nanos().div_ceil(tick.as_nanos()) as u64 + 1;
        let deadline_ticks = ticks(limits.deadline);
        let load_deadline_ticks = ticks(limits.load_deadline.max(limits.deadline));
        spawn_ticker(&engine, tick);

        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                engine,
                linker,
                permits: Permits::new(limits.max_concurrent.max(1)),
                limits,
                deadline_ticks,
                load_deadline_ticks,
                compiled: Mutex::new(Compiled::default()),
            }),
        })
    }

    /// The process-wide runtime with default limits (built once).
    pub fn shared() -> Result<&'static Runtime, LoadError> {
        static SHARED: OnceLock<Result<Runtime, LoadError>> = OnceLock::new();
        SHARED
            .get_or_init(|| Runtime::new(Limits::default()))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Verifies and prepares a plugin: size, compile (once per sha256),
    /// imports (WASI and `jobset:policy/regex` only), exports (`meta` plus
    /// at least one slot, each `decide` of the right type), and
    /// `meta.info()`.
    pub fn load(&self, name: &str, bytes: &[u8]) -> Result<WasmPlugin, LoadError> {
        let limit = self.inner.limits.max_plugin_bytes;
        if bytes.len() > limit {
            return Err(LoadError::TooLarge {
                name: name.to_string(),
                size: bytes.len(),
                limit,
            });
        }
        let sha256 = sha256_hex(bytes);
        let component = self.compile(name, &sha256, bytes)?;
        let pre =
            self.inner
                .linker
                .instantiate_pre(&component)
                .map_err(|e| LoadError::Rejected {
                    name: name.to_string(),
                    message: format!("imports something the sandbox does not provide: {e:#}"),
                })?;
        let missing = |interface: &str| LoadError::MissingExport {
            name: name.to_string(),
            interface: interface.to_string(),
        };
        // The version is the one of `meta`; the slots are looked up at it.
        let meta = if let Ok(m) = v0_3_0::exports::jobset::policy::meta::GuestIndices::new(&pre) {
            Meta::V0_3(m)
        } else if let Ok(m) = v0_2_0::exports::jobset::policy::meta::GuestIndices::new(&pre) {
            Meta::V0_2(m)
        } else if let Ok(m) = v0_1_0::exports::jobset::policy::meta::GuestIndices::new(&pre) {
            Meta::V0_1(m)
        } else {
            return Err(missing(&format!(
                "jobset:policy/meta (of a version this host links: {})",
                crate::bindings::SUPPORTED_VERSIONS.join(", ")
            )));
        };
        let version = meta.version();
        let startup = decide_export(&pre, &format!("jobset:policy/startup@{version}"));
        let outcome = decide_export(&pre, &format!("jobset:policy/outcome@{version}"));
        // Since 0.3.0 an outcome plugin decides in-place restarts too.
        let in_place = if matches!(meta, Meta::V0_3(_)) && outcome.is_some() {
            let found = export_of(
                &pre,
                &format!("jobset:policy/outcome@{version}"),
                "decide-in-place",
            );
            if found.is_none() {
                return Err(missing(&format!(
                    "jobset:policy/outcome@{version}#decide-in-place"
                )));
            }
            found
        } else {
            None
        };
        let placement = decide_export(&pre, &format!("jobset:policy/placement@{version}"));
        if startup.is_none() && outcome.is_none() && placement.is_none() {
            return Err(missing(
                "jobset:policy/startup, jobset:policy/outcome or jobset:policy/placement",
            ));
        }
        WasmPlugin::prepare(
            self.inner.clone(),
            name,
            sha256,
            bytes.len(),
            pre,
            crate::plugin::Exports {
                meta,
                startup,
                outcome,
                in_place,
                placement,
            },
        )
    }

    /// Compiles the component, or returns the one compiled for these bytes.
    /// Only Wasm bytes are accepted: never precompiled machine code.
    pub(crate) fn compile(
        &self,
        name: &str,
        sha256: &str,
        bytes: &[u8],
    ) -> Result<Component, LoadError> {
        if let Some(found) = self.cached(sha256) {
            return Ok(found);
        }
        let component =
            Component::new(&self.inner.engine, bytes).map_err(|e| LoadError::Compile {
                name: name.to_string(),
                message: compile_problem(bytes, &e),
            })?;
        if let Ok(mut cache) = self.inner.compiled.lock() {
            let limits = &self.inner.limits;
            cache.insert(
                sha256,
                component.clone(),
                limits.max_compiled,
                limits.max_compiled_bytes,
            );
        }
        Ok(component)
    }

    fn cached(&self, sha256: &str) -> Option<Component> {
        self.inner
            .compiled
            .lock()
            .ok()
            .and_then(|mut c| c.get(sha256))
    }

    /// Whether the cache holds the compiled component of these bytes.
    pub fn is_compiled(&self, bytes: &[u8]) -> bool {
        let sha256 = sha256_hex(bytes);
        self.inner
            .compiled
            .lock()
            .is_ok_and(|c| c.entries.contains_key(&sha256))
    }

    /// How many compiled components the cache holds, and their bytes.
    pub fn compiled_cache(&self) -> (usize, usize) {
        self.inner
            .compiled
            .lock()
            .map(|c| (c.entries.len(), c.bytes))
            .unwrap_or((0, 0))
    }

    /// Compiles without caching (for measuring compile time).
    pub fn compile_uncached(&self, bytes: &[u8]) -> Result<(), LoadError> {
        Component::new(&self.inner.engine, bytes)
            .map(|_| ())
            .map_err(|e| LoadError::Compile {
                name: "benchmark".to_string(),
                message: compile_problem(bytes, &e),
            })
    }
}

/// Why bytes did not compile, in the terms a plugin author can act on: not
/// Wasm at all, a core module where a component belongs, or wasmtime's
/// own reason.
fn compile_problem(bytes: &[u8], error: &wasmtime::Error) -> String {
    const MAGIC: &[u8] = b"\0asm";
    // After the magic: version 1, layer 0 for a core module.
    const CORE_MODULE: &[u8] = &[1, 0, 0, 0];
    if !bytes.starts_with(MAGIC) {
        let start = &bytes[..bytes.len().min(4)];
        return format!(
            "not WebAssembly: it starts with {:?}, a component with \"\\0asm\"",
            String::from_utf8_lossy(start)
        );
    }
    if bytes.get(4..8) == Some(CORE_MODULE) {
        return "a core WebAssembly module, not a component: build the plugin for \
                wasm32-wasip2, or wrap the module with `wasm-tools component new`"
            .to_string();
    }
    format!("not a valid WebAssembly component: {error:#}")
}

/// A slot's `decide` function, when the component exports the slot's
/// interface with one (its type is checked when the plugin is prepared).
fn decide_export(pre: &InstancePre<HostState>, interface: &str) -> Option<ComponentExportIndex> {
    export_of(pre, interface, "decide")
}

/// The function `func` of the exported `interface`, if both exist.
fn export_of(
    pre: &InstancePre<HostState>,
    interface: &str,
    func: &str,
) -> Option<ComponentExportIndex> {
    let component = pre.component();
    let instance = component.get_export_index(None, interface)?;
    component.get_export_index(Some(&instance), func)
}

/// Lowercase hex sha256 of the bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// How a linear memory slot is made pristine again after a decision.
#[derive(Clone, Copy)]
enum MemoryReset {
    /// Scan for the pages the decision wrote and reset only those, keeping
    /// up to 2 MiB of them mapped (a Rust plugin's 1 MiB stack, its data and
    /// heap).
    DirtyPages,
    /// memset the first 256 KiB and hand the rest back to the kernel.
    LowPages,
}

/// The engine settings: component model, epoch interruption, a bounded
/// Wasm stack and the pooling allocator sized from the limits.
fn engine_config(limits: &Limits, reset: MemoryReset) -> Config {
    let mut pool = PoolingAllocationConfig::new();
    let n = limits.max_concurrent.max(1);
    pool.total_component_instances(n)
        .total_core_instances(n * 8)
        .total_memories(n * 2)
        .total_tables(n * 8)
        .max_core_instances_per_component(8)
        .max_memories_per_component(2)
        .max_tables_per_component(8)
        .max_memory_size(limits.memory_bytes)
        .table_elements(limits.table_elements)
        .table_keep_resident(16 << 10);
    match reset {
        MemoryReset::DirtyPages => pool
            .linear_memory_keep_resident(2 << 20)
            .pagemap_scan(wasmtime::Enabled::Yes),
        MemoryReset::LowPages => pool
            .linear_memory_keep_resident(256 << 10)
            .pagemap_scan(wasmtime::Enabled::No),
    };
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .max_wasm_stack(512 << 10)
        .cranelift_opt_level(wasmtime::OptLevel::None)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// One thread per engine advances the epoch; it ends when the engine is
/// dropped.
fn spawn_ticker(engine: &Engine, tick: Duration) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("policy-epoch".to_string())
        .spawn(move || {
            loop {
                std::thread::sleep(tick);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the policy epoch ticker; deadlines will not fire");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A waiter is held back while no permit is free and woken when one is
    /// given back (a release only signals when someone waits).
    #[test]
    fn a_released_permit_wakes_the_thread_waiting_for_it() {
        let permits = Arc::new(Permits::new(1));
        let held = permits.acquire();
        let (got, got_rx) = std::sync::mpsc::channel();
        let waiter = {
            let permits = permits.clone();
            std::thread::spawn(move || {
                let _permit = permits.acquire();
                got.send(()).expect("the test waits");
            })
        };
        assert!(
            got_rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "a second permit was handed out while the only one was held"
        );
        drop(held);
        got_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the waiter was not woken");
        waiter.join().expect("the waiter ends");
        // Both permits are back: two acquisitions in a row do not block.
        drop(permits.acquire());
        drop(permits.acquire());
    }

    /// Both ways of resetting memory give a working engine, so a kernel
    /// without PAGEMAP_SCAN still gets one.
    #[test]
    fn both_memory_reset_modes_build_an_engine() {
        for reset in [MemoryReset::DirtyPages, MemoryReset::LowPages] {
            let config = engine_config(&Limits::default(), reset);
            match (reset, Engine::new(&config)) {
                (_, Ok(_)) => {}
                // Only the scan may be missing, and only on kernels before 6.7.
                (MemoryReset::DirtyPages, Err(e)) => {
                    eprintln!("PAGEMAP_SCAN unavailable here: {e:#}")
                }
                (MemoryReset::LowPages, Err(e)) => panic!("the fallback engine failed: {e:#}"),
            }
        }
    }
}
