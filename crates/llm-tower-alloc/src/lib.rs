//! [`MiMalloc`]: mimalloc as the global allocator, called the way it is fastest.
//!
//! The `mimalloc` crate hands every allocation to `mi_malloc_aligned`, with the layout's
//! alignment. mimalloc 3 serves that call from its plain fast path only when a free block
//! of the size's class happens to be aligned and the size is at most 1 KiB; otherwise it takes
//! a generic path, and for a size whose class is not a power of two (48 bytes, or anything
//! over 1 KiB that is not) it over-allocates by the alignment and marks the page as holding
//! interior pointers, which slows its frees too. Measured in the gateway: a dozen of its 44
//! allocations per request took that path, at about 190 instructions each.
//!
//! Every mimalloc block is aligned to a machine word (block sizes are whole words, pages
//! start aligned), so a layout that asks for no more than that needs no aligned call at all:
//! it is served by `mi_malloc`, `mi_zalloc` and `mi_realloc`. Larger alignments (a tokio
//! task's cache line) still go to the aligned calls, and so do sizes that are not a multiple
//! of their alignment: a debug build of mimalloc with guard pages puts an object right
//! before its guard page, where only such a size keeps it aligned. (Every Rust type's size
//! is a multiple of its alignment; some hand-made layouts, as a hash table's, are not.)
//!
//! ```
//! use std::alloc::{GlobalAlloc, Layout};
//! use llm_tower_alloc::MiMalloc;
//!
//! // In a binary: #[global_allocator] static ALLOCATOR: MiMalloc = MiMalloc;
//! let layout = Layout::from_size_align(48, 8).unwrap();
//! // SAFETY: the layout's size is not zero, and the block is freed with the same allocator.
//! unsafe {
//!     let block = MiMalloc.alloc(layout);
//!     assert!(!block.is_null() && block.addr().is_multiple_of(8));
//!     MiMalloc.dealloc(block, layout);
//! }
//! ```

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys::{
    mi_free, mi_malloc, mi_malloc_aligned, mi_realloc, mi_realloc_aligned, mi_zalloc,
    mi_zalloc_aligned,
};

/// mimalloc, through its plain calls for word-aligned layouts and its aligned calls for the
/// rest. See the [crate documentation](crate).
#[derive(Clone, Copy, Debug, Default)]
pub struct MiMalloc;

/// The alignment every block mimalloc hands out has, whatever its size.
const BLOCK_ALIGN: usize = std::mem::size_of::<usize>();

/// Whether a block of `size` bytes from the plain calls is aligned to `align` (see the crate
/// documentation).
#[inline]
fn plain(size: usize, align: usize) -> bool {
    align <= BLOCK_ALIGN && size.is_multiple_of(align)
}

// SAFETY: each method passes the layout's size (and, unless `plain` says a plain block is
// aligned enough, its alignment) to the mimalloc call that returns a block of at least that
// size and alignment,
// or null on failure; every block is freed or resized by mimalloc, which finds its page from
// the pointer alone (`mi_free`, `mi_realloc` take no layout).
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl; `mi_malloc` blocks of such sizes are so aligned (`plain`).
        unsafe {
            if plain(layout.size(), layout.align()) {
                mi_malloc(layout.size()).cast()
            } else {
                mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`; the block is zeroed by mimalloc.
        unsafe {
            if plain(layout.size(), layout.align()) {
                mi_zalloc(layout.size()).cast()
            } else {
                mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator (the caller's promise), so from mimalloc.
        unsafe { mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout` (the caller's promise); the
        // new block keeps the alignment, which both calls give for the new size, and the
        // contents. Either call takes a block the other made: mimalloc finds a block's page,
        // and an aligned block's start, from the pointer alone.
        unsafe {
            if plain(new_size, layout.align()) {
                mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `size` bytes at `block` are all `byte`.
    ///
    /// # Safety
    ///
    /// `block` holds at least `size` initialised bytes.
    #[allow(unsafe_code)]
    unsafe fn all(block: *const u8, size: usize, byte: u8) -> bool {
        // SAFETY: the caller's promise.
        unsafe { std::slice::from_raw_parts(block, size) }
            .iter()
            .all(|b| *b == byte)
    }

    /// Every size class up to 64 KiB (and past it), every alignment up to 4 KiB, through both
    /// kinds of call: each block is aligned, holds what was written to it, keeps it through a
    /// reallocation to twice its size and back to half, and a zeroed one is zero.
    #[test]
    #[allow(unsafe_code)]
    fn blocks_are_aligned_and_keep_their_bytes() {
        let aligned =
            |block: *mut u8, align: usize| !block.is_null() && block.addr().is_multiple_of(align);
        let sizes = (1..1100).chain((1100..70_000).step_by(97)).chain([1 << 20]);
        for size in sizes {
            for align in [1, 2, 4, 8, 16, 32, 64, 128, 4096] {
                let layout = Layout::from_size_align(size, align).unwrap();
                let (grown_size, shrunk_size) = (size * 2 + 1, size / 2 + 1);
                // SAFETY: non-zero sizes; each block is used within its size, resized with
                // the layout it has, and freed once.
                unsafe {
                    let block = MiMalloc.alloc(layout);
                    assert!(aligned(block, align), "{layout:?}");
                    block.write_bytes(0xa5, size);
                    let grown = MiMalloc.realloc(block, layout, grown_size);
                    assert!(aligned(grown, align), "{layout:?} grown");
                    assert!(all(grown, size, 0xa5), "{layout:?} grown");
                    let grown_layout = Layout::from_size_align(grown_size, align).unwrap();
                    let shrunk = MiMalloc.realloc(grown, grown_layout, shrunk_size);
                    assert!(aligned(shrunk, align), "{layout:?} shrunk");
                    assert!(
                        all(shrunk, shrunk_size.min(size), 0xa5),
                        "{layout:?} shrunk"
                    );
                    MiMalloc.dealloc(shrunk, Layout::from_size_align(shrunk_size, align).unwrap());

                    let zeroed = MiMalloc.alloc_zeroed(layout);
                    assert!(aligned(zeroed, align), "{layout:?} zeroed");
                    assert!(all(zeroed, size, 0), "{layout:?} zeroed");
                    MiMalloc.dealloc(zeroed, layout);
                }
            }
        }
    }

    #[test]
    fn only_sizes_that_keep_their_alignment_take_the_plain_calls() {
        assert!(plain(48, 8) && plain(8, 8) && plain(3, 1) && plain(6, 2));
        assert!(!plain(12, 8), "a size not a multiple of its alignment");
        assert!(!plain(32, 16), "an alignment above a word");
    }
}
