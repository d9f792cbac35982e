//! Output buffers of stacked reads.
//!
//! A stacked array is written once, by the read or by the fill value, into memory the kernel
//! hands over zeroed. The kernel's zeroing of those fresh pages is the larger part of a new
//! array's cost (about 0.03 CPU seconds per 352 MiB on the shared VM, the copy about 0.02).
//! It cannot be skipped, only made cheap per byte: large outputs are backed by transparent
//! huge pages (2 MiB; one fault per 2 MiB instead of 512, and a 4 KiB first touch on the VM
//! costs microseconds), every page of the output can be huge (the mapping is 2 MiB-aligned),
//! and the pages are faulted in by the reading threads as they write them, so both cores
//! zero pages at once (populating them ahead of the copy was measured no faster; see
//! `docs/benchmarks.md`).

use bytemuck::Pod;

/// Size of a transparent huge page on x86-64 and aarch64 (4 KiB base pages).
const HUGE_PAGE: usize = 2 << 20;

/// Buffers of at least this many bytes get a capacity that makes the allocator's mapping a
/// whole number of huge pages. glibc maps every allocation above its mmap threshold (at most
/// 32 MiB) on its own; smaller ones may come from the heap, where calloc would zero the spare
/// capacity too.
const ALIGNED_MAPPING_MIN: usize = 32 << 20;

/// Bytes an allocator puts in front of a large allocation in its mapping (glibc: 16), with
/// room to spare: one base page.
const ALLOCATOR_HEADER_MAX: usize = 4096;

/// `n` zeroed elements, or `None` if the allocation fails; large buffers are backed by huge
/// pages where the kernel allows it (the buffer of a new stacked array).
///
/// The buffer is an ordinary `Vec` of the global allocator (it is handed to numpy as one, and
/// freed as one). A large one gets spare capacity so that the allocator's mapping (buffer,
/// header, rounding) is a whole number of 2 MiB: Linux places such anonymous mappings on a
/// 2 MiB boundary, so that its first and last pages can be huge too, instead of up to 1023
/// base-page faults at the two ends. The spare capacity is never touched, so never resident.
pub fn zeroed_vec<T: Pod>(n: usize) -> Option<Vec<T>> {
    let item = std::mem::size_of::<T>();
    let bytes = n.checked_mul(item)?;
    // (A zero-sized `T` allocates nothing: `bytes` is 0.)
    let aligned_mapping = bytes >= ALIGNED_MAPPING_MIN;
    let capacity = if aligned_mapping {
        let mapped = bytes
            .checked_add(ALLOCATOR_HEADER_MAX)?
            .checked_next_multiple_of(HUGE_PAGE)?;
        (mapped - ALLOCATOR_HEADER_MAX) / item
    } else {
        n
    };
    let mut v: Vec<T> = bytemuck::allocation::try_zeroed_vec(capacity).ok()?;
    // Keeps the capacity (and so the allocation the Vec frees); `T: Pod` has no drop.
    v.truncate(n);
    advise_huge_pages(v.as_ptr() as usize, v.capacity() * item);
    if aligned_mapping {
        collapse_first_huge_page(v.as_ptr() as usize);
    }
    Some(v)
}

/// Asks the kernel to back the 2 MiB pages overlapping `[start, start + len)` with huge
/// pages when they are first touched (where THP is `madvise`, only such ranges get them).
/// Only a hint: where transparent huge pages are off, nothing changes.
#[cfg(target_os = "linux")]
fn advise_huge_pages(start: usize, len: usize) {
    if len < HUGE_PAGE {
        return;
    }
    let Some(end) = start.checked_add(len) else {
        return;
    };
    // madvise takes whole base pages: from the page holding the first byte, so that the
    // first huge page (which also holds the allocator's header) is included.
    let first = start / 4096 * 4096;
    // SAFETY: MADV_HUGEPAGE neither reads nor writes memory and keeps the contents of every
    // page in the range: it only marks how the kernel may back the mapping. The range is
    // our allocation plus the rest of the base pages it starts and ends in (the allocator's
    // header, bytes of the same mapping), so no byte anyone can see changes. An error (THP
    // disabled, old kernel, a range the kernel refuses) leaves the pages as they were and is
    // ignored.
    unsafe {
        libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
    }
}

/// glibc writes its header into the first base page of a large allocation's mapping before
/// the mapping can be advised, so the kernel backs that page alone, and the rest of its
/// 2 MiB would be faulted in 511 base pages. MADV_COLLAPSE (Linux >= 6.1) makes that 2 MiB
/// one huge page now (the zeroing a huge-page fault does, in one call instead of 511 faults),
/// where the mapping starts on a 2 MiB boundary with the buffer (`start`, at least 2 MiB long)
/// in its first base page.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn collapse_first_huge_page(start: usize) {
    let first = start / 4096 * 4096;
    if first % HUGE_PAGE != 0 {
        return;
    }
    // SAFETY: MADV_COLLAPSE keeps the contents of every page in the range: the kernel copies
    // the pages present into a new huge page (zero where none is) and maps it in their place,
    // with accesses meanwhile waiting on the page table. No byte anyone can see changes, the
    // allocator's header included; a failure (old kernel, no free huge page) leaves the pages
    // as they were and is ignored.
    unsafe {
        libc::madvise(first as *mut libc::c_void, HUGE_PAGE, libc::MADV_COLLAPSE);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn collapse_first_huge_page(_start: usize) {}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_start: usize, _len: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_buffers_of_any_size() {
        for n in [0, 1, HUGE_PAGE / 2 - 3, 3 * HUGE_PAGE / 2 + 5] {
            let v: Vec<u16> = zeroed_vec(n).expect("alloc");
            assert_eq!(v.len(), n);
            assert!(v.iter().all(|&x| x == 0));
        }
        assert!(zeroed_vec::<u64>(usize::MAX / 4).is_none());
        assert!(zeroed_vec::<u8>(usize::MAX - HUGE_PAGE).is_none());
    }

    #[test]
    fn large_buffers_fill_whole_huge_pages_with_header_room() {
        for n in [ALIGNED_MAPPING_MIN / 4, ALIGNED_MAPPING_MIN / 4 + 12_345] {
            let mut v: Vec<u32> = zeroed_vec(n).expect("alloc");
            assert_eq!(v.len(), n);
            let mapped = v.capacity() * 4 + ALLOCATOR_HEADER_MAX;
            assert_eq!(mapped % HUGE_PAGE, 0, "n {n}");
            assert!(
                v.capacity() >= n && v.capacity() - n < HUGE_PAGE / 4,
                "n {n}"
            );
            assert!(v.iter().all(|&x| x == 0));
            // Written and read like any Vec, freed as one.
            v[n - 1] = 7;
            v.push(9);
            assert_eq!(v[n - 1..], [7, 9]);
        }
        let small: Vec<u8> = zeroed_vec(ALIGNED_MAPPING_MIN - 1).expect("alloc");
        assert_eq!(small.capacity(), ALIGNED_MAPPING_MIN - 1);
    }
}
