//! Every bound lazyfs puts on memory, queues and sizes, in one place.

use std::time::Duration;

/// Unsynced bytes one file may hold before lazyfs writes them to the backing file without an
/// fsync, as the kernel's background writeback would. A broker fsyncs every few milliseconds
/// and never gets near it; it only keeps a writer that never syncs from filling memory. Data
/// written back this way survives a power cut, which real writeback allows too.
pub const FILE_OVERLAY_BYTES_MAX: u64 = 256 << 20;

/// The largest file offset a write or truncate may reach: the kernel's own limit for a signed
/// 64-bit `off_t`. Keeping every end below it means `offset + len` never overflows.
pub const FILE_BYTES_MAX: u64 = i64::MAX as u64;

/// The longest control command line read from the FIFO; the rest of a longer line is
/// discarded, so a writer that never sends a newline cannot grow the buffer.
pub const CONTROL_LINE_BYTES_MAX: u64 = 256;

/// Directory handles open at once (each holds a snapshot of its directory's names).
pub const DIR_HANDLES_MAX: usize = 4096;

/// Kernel cache invalidations waiting for the invalidation thread. Past it one is skipped and
/// logged; the kernel's cached attributes then expire after [`KERNEL_CACHE_TTL`] anyway.
pub const INVALIDATIONS_QUEUED_MAX: usize = 4096;

/// Threads reading requests from the kernel, so that one file's slow fsync does not hold up
/// reads and writes of the others.
pub const EVENT_LOOP_THREADS: usize = 4;

/// How long the kernel may cache a name lookup or a file's attributes. Every change goes
/// through lazyfs, which answers writes and truncates with the new size, so a cached value only
/// goes stale when lazyfs drops unsynced data; then it asks the kernel to forget it.
pub const KERNEL_CACHE_TTL: Duration = Duration::from_secs(1);
