internal import CMalloc

/// How the daemon asks glibc's allocator to keep the memory of one batch for the next.
///
/// A batch of large payloads allocates and frees several megabytes at once (the libpq result, the
/// rows, the jobs, the Redis command). By default glibc returns freed memory at the top of the heap
/// to the kernel once more than a few megabytes of it are free (its thresholds adapt up to 32 MB
/// for mapped blocks and twice that for trimming), and serves large blocks with their own `mmap`,
/// so each batch faulted its memory back in, page by page, zeroed by the kernel: with 4 KB payloads
/// that was about a sixth of the relay's CPU. Fixed thresholds keep up to ``keptBytes`` of freed
/// memory in the process instead, so the resident size stays near the largest batch's.
public enum MallocTuning {
    /// Freed memory at the top of the heap above this much goes back to the kernel.
    public static let keptBytes: Int32 = 128 * 1024 * 1024
    /// Blocks up to this size come from the heap, not from their own `mmap` (glibc's maximum).
    public static let heapBlockBytes: Int32 = 32 * 1024 * 1024

    /// Sets the thresholds; call once at startup, before the relay allocates its first batch.
    public static func keepFreedMemoryForReuse() {
        _ = mallopt(M_MMAP_THRESHOLD, heapBlockBytes)
        _ = mallopt(M_TRIM_THRESHOLD, keptBytes)
    }
}
