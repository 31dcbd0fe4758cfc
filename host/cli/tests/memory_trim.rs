//! `memory_trim::trim` gives freed heap pages back: in a process of its
//! own (this test binary has one test), 256 MiB of small blocks are
//! written, all but the last freed (the last keeps the heap from simply
//! shrinking at its top, as it would in a long-running controller), and
//! the resident anonymous memory must fall by most of it once trimmed.
#![cfg(all(target_os = "linux", target_env = "gnu"))]

use std::hint::black_box;

fn rss_anon_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status reads");
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("RssAnon is in /proc/self/status")
}

#[test]
fn freed_heap_pages_go_back_to_the_system() {
    const BLOCK: usize = 16 << 10;
    const BLOCKS: usize = (256 << 20) / BLOCK;
    let mut blocks: Vec<Vec<u8>> = (0..BLOCKS).map(|i| vec![i as u8 | 1; BLOCK]).collect();
    let pin = blocks.pop().expect("blocks were made");
    let written = rss_anon_kib();
    drop(black_box(blocks));
    let freed = rss_anon_kib();
    // glibc keeps the freed blocks resident: they are below `pin`.
    assert!(
        written.saturating_sub(freed) < 64 << 10,
        "free alone gave back {} KiB of 256 MiB",
        written.saturating_sub(freed)
    );
    assert!(jobset::memory_trim::trim(), "malloc_trim released nothing");
    let trimmed = rss_anon_kib();
    assert!(
        freed.saturating_sub(trimmed) > 192 << 10,
        "RssAnon {freed} KiB before the trim, {trimmed} KiB after"
    );
    black_box(pin);
}
