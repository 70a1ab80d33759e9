//! A global allocator that survives allocation bombs from the wire.
//!
//! The Kafka codec (`kafka-protocol` 0.18) reserves `Vec::with_capacity(count)` from array
//! counts read off the network before it decodes a single element. A 12-byte request can claim
//! two billion elements; the allocation fails and Rust aborts the process, taking every client
//! with it. Upstream knows (kafka-protocol-rs PRs #152, #161, #200, open at the time of
//! writing).
//!
//! This allocator serves very large allocations with `mmap(MAP_NORESERVE)`: the kernel hands
//! out address space without reserving memory for it, and pages cost memory only when
//! touched. The decoder touches one element per input byte at most, then fails cleanly on the
//! short input. Everything smaller goes to the system allocator unchanged.
//!
//! Binaries install it with `#[global_allocator]` (the server, and the core's own tests so
//! the frame-decoder fuzz test exercises the same path).
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations at least this large are mapped lazily.
const LAZY_BYTES_MIN: usize = 256 * 1024 * 1024;
const PAGE_BYTES: usize = 4096;

#[derive(Debug, Default, Clone, Copy)]
pub struct LargeAllocGuard;

impl LargeAllocGuard {
    fn lazy(layout: Layout) -> bool {
        layout.size() >= LAZY_BYTES_MIN && layout.align() <= PAGE_BYTES
    }
}

// SAFETY: every pointer returned comes either from `System` (and goes back to it) or from
// `mmap` of at least `layout.size()` bytes, page aligned (and goes back to `munmap` with the
// same size). `Self::lazy` decides the route from the layout alone, so allocation and
// deallocation of one block always take the same route.
unsafe impl GlobalAlloc for LargeAllocGuard {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if Self::lazy(layout) {
            // SAFETY: anonymous private mapping; no file, no aliasing.
            let pointer = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    layout.size(),
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            if pointer == libc::MAP_FAILED {
                return std::ptr::null_mut();
            }
            pointer.cast()
        } else {
            // SAFETY: forwarded with the caller's layout.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if Self::lazy(layout) {
            // Fresh anonymous mappings are zero-filled.
            // SAFETY: same contract as `alloc`.
            unsafe { self.alloc(layout) }
        } else {
            // SAFETY: forwarded with the caller's layout.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        if Self::lazy(layout) {
            // SAFETY: `pointer` came from our `mmap` of `layout.size()` bytes.
            unsafe {
                libc::munmap(pointer.cast(), layout.size());
            }
        } else {
            // SAFETY: `pointer` came from `System` with this layout.
            unsafe { System.dealloc(pointer, layout) }
        }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` is valid for `layout.align()`.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !Self::lazy(layout) && !Self::lazy(new_layout) {
            // SAFETY: both sizes route to `System`, which owns `pointer`.
            return unsafe { System.realloc(pointer, layout, new_size) };
        }
        // SAFETY: `new_layout` is valid; the copy covers the smaller of the two blocks, both
        // of which are live; the old block is released by its own route.
        unsafe {
            let fresh = self.alloc(new_layout);
            if !fresh.is_null() {
                std::ptr::copy_nonoverlapping(pointer, fresh, layout.size().min(new_size));
                self.dealloc(pointer, layout);
            }
            fresh
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn huge_reservation_does_not_abort() {
        // 2^31 elements of 64 bytes: 128 GiB of address space, a few pages touched.
        let mut v: Vec<[u8; 64]> = Vec::with_capacity(1 << 31);
        v.push([7; 64]);
        assert_eq!(v[0][0], 7);
        let mut small: Vec<u8> = Vec::with_capacity(10);
        small.extend_from_slice(b"ok");
        assert_eq!(small, b"ok");
    }
}
