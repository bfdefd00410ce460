//! glibc's malloc, told to keep a consumer's page buffers (issue #24). Every GetRecords
//! answer is a few MiB: the SDK collects the body into one buffer, and the lean reader
//! decodes the records' data into another. By default glibc serves blocks that large
//! with a fresh `mmap` (its threshold adapts only up to the largest block freed so
//! far) and hands free memory at the top of a heap back to the kernel past twice that,
//! so the next page's buffers were faulted in and zeroed again, 4 KiB at a time: 9–13 %
//! of the consumer's CPU per trade in the profile. With a fixed mmap threshold of
//! 32 MiB (above the 10 MiB a GetRecords answer can hold) and a trim threshold of
//! 64 MiB, those buffers come from the heap and are reused. The price is memory kept
//! mapped after a burst, up to the trim threshold per arena: what the burst already
//! used, not more.

/// Blocks below this come from the heap: every page buffer.
pub const MMAP_THRESHOLD: usize = 32 << 20;
/// Free memory at the top of a heap is returned to the kernel past this.
pub const TRIM_THRESHOLD: usize = 64 << 20;

/// Sets the thresholds; true if the allocator took them (glibc), false elsewhere.
/// Call first thing in `main`, before the runtime's threads allocate.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn keep_page_buffers() -> bool {
    // SAFETY: mallopt only changes the allocator's parameters; it takes the main
    // arena's lock itself and has no memory-safety preconditions.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD as libc::c_int) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn keep_page_buffers() -> bool {
    false
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    #[test]
    fn glibc_takes_the_thresholds() {
        assert!(super::keep_page_buffers());
    }
}
