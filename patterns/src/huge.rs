//! Zeroed tables on transparent huge pages.
//!
//! The known-value filter is read at one random word per sampled position. With 10k values
//! it spans ~500 4 KiB pages, and with the rule passes' own buffers and caches in between,
//! those lookups (and their prefetches, which walk page tables too) missed the TLB as well as
//! the cache. On 2 MiB pages the whole filter needs one or two TLB entries. Where the kernel
//! does not offer huge pages (or another OS), this is an ordinary zeroed allocation.

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::ptr::NonNull;

const HUGE: usize = 2 << 20;

/// A fixed-length zeroed `[u64]`, aligned to and advised onto huge pages when at least half
/// a huge page long.
pub(crate) struct HugeTable {
    ptr: NonNull<u64>,
    len: usize,
    layout: Layout,
}

// SAFETY: the table owns its memory, like a `Vec<u64>`.
unsafe impl Send for HugeTable {}
// SAFETY: shared access is read-only (`Deref`), like `&[u64]`.
unsafe impl Sync for HugeTable {}

impl HugeTable {
    pub(crate) fn zeroed(len: usize) -> HugeTable {
        let words = Layout::array::<u64>(len.max(1)).expect("table size fits a layout");
        let align = if words.size() >= HUGE / 2 { HUGE } else { 8 };
        let layout = words
            .align_to(align)
            .expect("table size fits a layout")
            .pad_to_align();
        // SAFETY: `layout` has a non-zero size.
        let raw = unsafe { alloc(layout) } as *mut u64;
        let Some(ptr) = NonNull::new(raw) else {
            handle_alloc_error(layout)
        };
        #[cfg(target_os = "linux")]
        if align == HUGE {
            // SAFETY: the range is exactly the allocation just made. Advised before the
            // zeroing below touches it, so that fresh pages can be faulted in as huge pages
            // (pages the allocator had already touched stay small). A refusal (THP disabled)
            // only leaves small pages.
            unsafe { libc::madvise(raw as *mut libc::c_void, layout.size(), libc::MADV_HUGEPAGE) };
        }
        // SAFETY: `len` u64s fit in the allocation (`layout` holds at least that array).
        unsafe { std::ptr::write_bytes(raw, 0, len) };
        HugeTable { ptr, len, layout }
    }
}

impl std::ops::Deref for HugeTable {
    type Target = [u64];
    fn deref(&self) -> &[u64] {
        // SAFETY: `len` initialised u64s at `ptr`, owned by `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for HugeTable {
    fn deref_mut(&mut self) -> &mut [u64] {
        // SAFETY: as in `deref`, and `&mut self` makes the access unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for HugeTable {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` with this layout.
        unsafe { dealloc(self.ptr.as_ptr() as *mut u8, self.layout) }
    }
}

impl Clone for HugeTable {
    fn clone(&self) -> HugeTable {
        let mut t = HugeTable::zeroed(self.len);
        t.copy_from_slice(self);
        t
    }
}

impl std::fmt::Debug for HugeTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HugeTable({} words)", self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_writable_and_cloned() {
        for len in [0, 1, 1000, HUGE / 16, HUGE / 8 + 3] {
            let mut t = HugeTable::zeroed(len);
            assert_eq!(t.len(), len);
            assert!(t.iter().all(|&w| w == 0));
            if len > 0 {
                t[len - 1] = 7;
                let c = t.clone();
                assert_eq!(&c[..], &t[..]);
            }
        }
    }
}
