//! Output buffers of stacked reads.
//!
//! A stacked array is written once, by the read or by the fill value, into memory the kernel
//! hands over zeroed. On the shared VM a first touch of a 4 KiB page costs several
//! microseconds: a 352 MiB output took 0.7 s in page faults alone, five times the read. Large
//! outputs are therefore backed by transparent huge pages (2 MiB) where the kernel allows it.

use bytemuck::Pod;

/// Size of a transparent huge page on x86-64 and aarch64 (4 KiB base pages).
const HUGE_PAGE: usize = 2 << 20;

/// `n` zeroed elements, or `None` if the allocation fails; large buffers are backed by huge
/// pages where the kernel allows it (the buffer of a new stacked array).
pub fn zeroed_vec<T: Pod>(n: usize) -> Option<Vec<T>> {
    let mut v: Vec<T> = bytemuck::allocation::try_zeroed_vec(n).ok()?;
    advise_huge_pages(bytemuck::cast_slice_mut(&mut v));
    Some(v)
}

/// Asks the kernel to back the whole 2 MiB pages inside `buf` with huge pages when they are
/// first touched. Only a hint: where transparent huge pages are off, nothing changes.
#[cfg(target_os = "linux")]
fn advise_huge_pages(buf: &mut [u8]) {
    let start = buf.as_mut_ptr() as usize;
    let Some(end) = start.checked_add(buf.len()) else {
        return;
    };
    let Some(first) = start.checked_next_multiple_of(HUGE_PAGE) else {
        return;
    };
    let last = end / HUGE_PAGE * HUGE_PAGE;
    if last <= first {
        return;
    }
    // SAFETY: [first, last) lies inside `buf`, which is borrowed mutably here, so no other
    // reference to it exists. MADV_HUGEPAGE changes only how the kernel backs the pages and
    // keeps their contents, so the memory Rust sees is the same before and after. An error
    // (THP disabled, old kernel) leaves the pages as they were and is ignored.
    unsafe {
        libc::madvise(
            first as *mut libc::c_void,
            last - first,
            libc::MADV_HUGEPAGE,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_buf: &mut [u8]) {}

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
    }
}
