//! What a `#![no_std]` plugin's component needs that `std` would otherwise
//! supply: a global allocator, the canonical ABI's `cabi_realloc`, and a
//! panic handler.
//!
//! Allocation is a bump in a static arena. The host calls `cabi_realloc`
//! once per string and list of the snapshot it writes in (even an empty
//! one), the plugin allocates its working data and its verdict, and the
//! export glue frees the verdict after the host has read it; the instance,
//! used for one decision, is then thrown away. A bump is the cheapest answer
//! to the first two, and a free that does nothing the cheapest to the last
//! (measured with the decisions bench's A/B mode: 3-5% of a default
//! plugin's decision for the host's calls alone). When the arena is full,
//! dlmalloc takes over.
//!
//! A plugin without `std` imports no WASI at all, and its component is a
//! third to half the size: `std` brings its panic hook, stderr and thread
//! machinery (about 40 KB of code), which every host must then compile. The
//! price is the panic message: a panic here is a bare `unreachable` trap,
//! which the host reports as a plugin failure with the Wasm backtrace.
//!
//! Turned on by the `bare` feature, and only on wasm32; native builds and
//! tests keep `std`'s.

use core::alloc::{GlobalAlloc, Layout};
use core::arch::wasm32;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

use dlmalloc::Dlmalloc;

use crate::bump::{Bump, Resize};

const PAGE: usize = 64 << 10;

unsafe extern "C" {
    /// Where the linker put the end of the stack and static data: the
    /// heap starts here.
    static __heap_base: u8;
}

/// Where dlmalloc gets memory from. First the rest of the initial memory,
/// above the stack and the static data, which a fresh instance already
/// has: a decision that fits there never grows memory, so the host never
/// changes the memory's protection for it. Then `memory.grow`.
struct Heap;

static INITIAL_HEAP_GIVEN: AtomicBool = AtomicBool::new(false);

// SAFETY: every region returned is memory this instance owns and nothing
// else uses: the initial heap once, then pages fresh from `memory.grow`.
unsafe impl dlmalloc::Allocator for Heap {
    fn alloc(&self, size: usize) -> (*mut u8, usize, u32) {
        if size != 0 && !INITIAL_HEAP_GIVEN.swap(true, Ordering::Relaxed) {
            let base = core::ptr::addr_of!(__heap_base) as usize;
            let end = wasm32::memory_size(0) * PAGE;
            if end.saturating_sub(base) >= size {
                return (base as *mut u8, end - base, 0);
            }
        }
        let pages = size.div_ceil(PAGE);
        match wasm32::memory_grow(0, pages) {
            usize::MAX => (core::ptr::null_mut(), 0, 0),
            previous => ((previous * PAGE) as *mut u8, pages * PAGE, 0),
        }
    }

    fn remap(&self, _: *mut u8, _: usize, _: usize, _: bool) -> *mut u8 {
        core::ptr::null_mut()
    }

    fn free_part(&self, _: *mut u8, _: usize, _: usize) -> bool {
        false
    }

    fn free(&self, _: *mut u8, _: usize) -> bool {
        false
    }

    fn can_release_part(&self, _: u32) -> bool {
        false
    }

    fn allocates_zeros(&self) -> bool {
        // A fresh instance's memory is zero beyond its data, and so are
        // grown pages.
        true
    }

    fn page_size(&self) -> usize {
        PAGE
    }
}

/// Size of the arena: a 64-Job snapshot plus a placement request over 80
/// domains takes about 40 KiB, the default placement plugin's work and
/// verdict for it about 10 KiB more. It is zeroed static memory (no bytes
/// in the component) inside the 2 MiB the default plugins start with.
const ARENA_SIZE: usize = 256 << 10;

#[repr(C, align(16))]
struct Arena(UnsafeCell<[u8; ARENA_SIZE]>);

// SAFETY: a component instance runs on one thread.
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena(UnsafeCell::new([0; ARENA_SIZE]));
static BUMP: Bump = Bump::new(ARENA_SIZE);

fn arena_start() -> usize {
    ARENA.0.get() as usize
}

/// The arena first, then dlmalloc (as `std` uses on
/// `wasm32-unknown-unknown`). A component runs on one thread, so no lock.
struct Allocator;

static mut DLMALLOC: Dlmalloc<Heap> = Dlmalloc::new_with_allocator(Heap);

fn dlmalloc() -> &'static mut Dlmalloc<Heap> {
    // SAFETY: a component instance is single-threaded, and no allocator
    // call re-enters another.
    unsafe { &mut *core::ptr::addr_of_mut!(DLMALLOC) }
}

// SAFETY: `Bump` hands out disjoint blocks of the static arena (a block's
// bytes again only once it was freed); everything else forwards to
// dlmalloc, which upholds `GlobalAlloc`'s contract.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if let Some(at) = BUMP.alloc(arena_start(), layout.size(), layout.align()) {
            return at as *mut u8;
        }
        // SAFETY: `layout` is valid (non-zero size, per `GlobalAlloc`).
        unsafe { dlmalloc().malloc(layout.size(), layout.align()) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if let Some(at) = BUMP.alloc(arena_start(), layout.size(), layout.align()) {
            let ptr = at as *mut u8;
            // SAFETY: the block is `layout.size()` bytes of the arena, which
            // a freed block may have left bytes in.
            unsafe { core::ptr::write_bytes(ptr, 0, layout.size()) };
            return ptr;
        }
        // SAFETY: as for `alloc`.
        unsafe { dlmalloc().calloc(layout.size(), layout.align()) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let start = arena_start();
        if BUMP.contains(start, ptr as usize) {
            BUMP.free(start, ptr as usize, layout.size());
            return;
        }
        // SAFETY: `ptr` came from dlmalloc with this layout.
        unsafe { dlmalloc().free(ptr, layout.size(), layout.align()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let start = arena_start();
        if !BUMP.contains(start, ptr as usize) {
            // SAFETY: `ptr` came from dlmalloc with this layout.
            return unsafe { dlmalloc().realloc(ptr, layout.size(), layout.align(), new_size) };
        }
        if BUMP.resize(start, ptr as usize, layout.size(), new_size) == Resize::InPlace {
            return ptr;
        }
        // SAFETY: `new_size` is non-zero and fits `isize` once rounded up
        // to the alignment (per `GlobalAlloc::realloc`), so the layout is
        // valid. The old block, still allocated, keeps its `layout.size()`
        // bytes, and the new one cannot overlap it.
        unsafe {
            let new = self.alloc(Layout::from_size_align_unchecked(new_size, layout.align()));
            if !new.is_null() {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
            }
            new
        }
    }
}

#[global_allocator]
static ALLOCATOR: Allocator = Allocator;

/// The canonical ABI's allocator export, through which the host writes the
/// snapshot's strings and lists into the plugin's memory. On
/// `wasm32-wasip2` wasi-libc normally provides it; without `std` it is here.
///
/// # Safety
/// Called by the host per the canonical ABI: `old_ptr` / `old_len` / `align`
/// describe a block this allocator returned (or are 0 for a new one).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cabi_realloc(
    old_ptr: *mut u8,
    old_len: usize,
    align: usize,
    new_len: usize,
) -> *mut u8 {
    use alloc::alloc::{alloc, handle_alloc_error, realloc};
    if new_len == 0 {
        // Nothing to hold: any non-null, aligned address will do.
        return align as *mut u8;
    }
    let Ok(layout) = Layout::from_size_align(new_len, align) else {
        wasm32::unreachable()
    };
    // SAFETY: a non-zero size; an old block comes with the layout it was
    // allocated with, per the canonical ABI.
    let ptr = unsafe {
        if old_len == 0 {
            alloc(layout)
        } else {
            realloc(
                old_ptr,
                Layout::from_size_align_unchecked(old_len, align),
                new_len,
            )
        }
    };
    if ptr.is_null() {
        handle_alloc_error(layout);
    }
    ptr
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    wasm32::unreachable()
}

// `memcmp` (string and slice comparison) comes from the target's own
// wasi-libc, as it does for `std`; the linker keeps only what is used, and
// none of it imports WASI.
#[link(name = "c")]
unsafe extern "C" {}
