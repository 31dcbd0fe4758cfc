//! The bookkeeping of the `bare` allocator's arena: which addresses of one
//! range are handed out, as plain arithmetic on addresses (no memory is
//! touched here, so it is tested natively).
//!
//! Blocks are bumped off the top. A freed block is forgotten unless it is
//! the last one handed out, whose bytes go back to the top; the last block
//! also grows and shrinks in place. That suits an instance that makes one
//! decision and is then thrown away: its temporaries are mostly freed in
//! the reverse order of their allocation, and a Vec being pushed to is
//! usually the last block.

use core::sync::atomic::{AtomicUsize, Ordering};

/// The range `[start, start + size)` and how much of it is handed out. The
/// start is passed to every call (a static's address is not a constant).
pub(crate) struct Bump {
    size: usize,
    /// Bytes from the start up to the end of the last block.
    used: AtomicUsize,
}

/// What to do with a block asked to change size.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Resize {
    /// The block keeps its address.
    InPlace,
    /// The block must move: allocate, copy, and forget the old one.
    Move,
}

impl Bump {
    pub(crate) const fn new(size: usize) -> Bump {
        Bump {
            size,
            used: AtomicUsize::new(0),
        }
    }

    /// The address of `size` bytes aligned to `align` (a power of two), if
    /// they fit.
    pub(crate) fn alloc(&self, start: usize, size: usize, align: usize) -> Option<usize> {
        let at = start
            .checked_add(self.used.load(Ordering::Relaxed))?
            .checked_next_multiple_of(align)?;
        let end = at.checked_add(size)?;
        if end > start + self.size {
            return None;
        }
        self.used.store(end - start, Ordering::Relaxed);
        Some(at)
    }

    pub(crate) fn contains(&self, start: usize, at: usize) -> bool {
        (start..start + self.size).contains(&at)
    }

    fn is_last(&self, start: usize, at: usize, size: usize) -> bool {
        at + size == start + self.used.load(Ordering::Relaxed)
    }

    /// Frees the block at `at` of `size` bytes: the top moves back if it
    /// was the last one.
    pub(crate) fn free(&self, start: usize, at: usize, size: usize) {
        if self.is_last(start, at, size) {
            self.used.store(at - start, Ordering::Relaxed);
        }
    }

    /// Resizes the block at `at` from `old` to `new` bytes: in place when
    /// it is the last block and the range has room, or when it shrinks.
    pub(crate) fn resize(&self, start: usize, at: usize, old: usize, new: usize) -> Resize {
        if self.is_last(start, at, old) {
            match at.checked_add(new) {
                Some(end) if end <= start + self.size => {
                    self.used.store(end - start, Ordering::Relaxed);
                    Resize::InPlace
                }
                _ => Resize::Move,
            }
        } else if new <= old {
            Resize::InPlace
        } else {
            Resize::Move
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: usize = 0x1_0000;

    #[test]
    fn blocks_are_aligned_disjoint_and_bounded_by_the_range() {
        let b = Bump::new(64);
        assert_eq!(b.alloc(START, 3, 1), Some(START));
        assert_eq!(
            b.alloc(START, 8, 8),
            Some(START + 8),
            "aligned past the first"
        );
        assert_eq!(b.alloc(START, 48, 16), Some(START + 16));
        assert_eq!(b.alloc(START, 1, 1), None, "the range is full");
        assert!(b.contains(START, START + 63));
        assert!(!b.contains(START, START + 64));
        assert!(!b.contains(START, START - 1));
    }

    #[test]
    fn only_the_last_block_gives_its_bytes_back() {
        let b = Bump::new(64);
        let first = b.alloc(START, 16, 1).expect("fits");
        let second = b.alloc(START, 16, 1).expect("fits");
        b.free(START, first, 16);
        assert_eq!(
            b.alloc(START, 1, 1),
            Some(START + 32),
            "the first is forgotten"
        );
        b.free(START, START + 32, 1);
        b.free(START, second, 16);
        assert_eq!(
            b.alloc(START, 32, 1),
            Some(second),
            "the top moved back to the second"
        );
    }

    #[test]
    fn the_last_block_grows_in_place_until_the_range_ends() {
        let b = Bump::new(64);
        let v = b.alloc(START, 8, 8).expect("fits");
        assert_eq!(b.resize(START, v, 8, 32), Resize::InPlace);
        assert_eq!(
            b.alloc(START, 1, 1),
            Some(START + 32),
            "the top is past the grown block"
        );
        b.free(START, START + 32, 1);
        assert_eq!(b.resize(START, v, 32, 64), Resize::InPlace);
        assert_eq!(b.resize(START, v, 64, 65), Resize::Move, "past the end");
        assert_eq!(
            b.resize(START, v, 64, usize::MAX),
            Resize::Move,
            "no overflow"
        );
        assert_eq!(b.resize(START, v, 64, 16), Resize::InPlace);
        assert_eq!(
            b.alloc(START, 8, 8),
            Some(START + 16),
            "shrinking gave the rest back"
        );
    }

    #[test]
    fn a_block_below_the_top_shrinks_in_place_and_moves_to_grow() {
        let b = Bump::new(64);
        let v = b.alloc(START, 16, 1).expect("fits");
        let _after = b.alloc(START, 16, 1).expect("fits");
        assert_eq!(b.resize(START, v, 16, 8), Resize::InPlace);
        assert_eq!(b.resize(START, v, 16, 17), Resize::Move);
        assert_eq!(b.alloc(START, 1, 1), Some(START + 32), "nothing was freed");
    }
}
