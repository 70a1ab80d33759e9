//! The simulated disk: a [`Storage`] whose contents outlive a node kill, with the faults a
//! real disk and kernel inflict. It is the core's [`MemStorage`] (one directory tree, one path
//! model, shared with the unit tests) with these faults layered on top; every one is a fault
//! the broker must survive without losing an acknowledged (acks=all) record or serving a
//! corrupt one:
//!
//! - **Unsynced writes are lost on a crash.** A kill drops every byte written since the file's
//!   last sync, as a power loss drops the page cache. The broker must acknowledge acks=all only
//!   after the fsync covering the batch completed, and must keep the high watermark at synced
//!   data so consumers never read what a crash can take back.
//! - **The last unsynced write may be torn.** At a crash, a file whose unsynced bytes extend its
//!   synced content may keep any prefix of them, cut at any byte. Recovery must find the first
//!   incomplete batch and cut the log there.
//! - **Unsynced bytes may be garbled.** A kept unsynced prefix may have one bit flipped (a
//!   write that reached the platter damaged). The CRC-32C check in recovery must catch it.
//! - **Operations may fail.** Writes may fail with EIO or ENOSPC and syncs with EIO, at rates
//!   drawn from the seed. The broker must refuse to acknowledge what it could not make durable
//!   and take the affected partitions offline rather than guess what is on disk.
//! - **The disk fills up.** While [`SimDisk::set_full`] holds, every write that would grow a
//!   file fails with ENOSPC (overwrites inside a file's length and truncations still work, as
//!   on a real filesystem). The broker must answer the produce requests it cannot store with
//!   KAFKA_STORAGE_ERROR at once, keep serving what is durable, and after space returns and a
//!   restart have lost nothing it acknowledged.
//!
//! - **Synced data rots** (once in every cluster run). [`SimDisk::rot`] flips one bit inside
//!   the records of a stored batch of a running broker's replica: no write, sync or crash is
//!   involved. The scrub or a read may find it while the broker runs, or recovery at a restart. The broker must
//!   never serve the damaged batch, and must repair it from another replica, so that all
//!   replicas end byte for byte the same.
//!
//! Not injected (documented in docs/simulation.md): lost directory entries (renames, creations
//! and removals are treated as durable at once).

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use headwater_core::storage::{CrashKeeps, FileRef, MemStorage, Storage, StorageFile};
use madsim::rand::{thread_rng, Rng};

/// Fault probabilities, drawn per run from the seed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DiskFaults {
    /// Probability that a write fails with EIO or ENOSPC.
    pub write_error: f64,
    /// Probability that a sync fails with EIO.
    pub sync_error: f64,
    /// Probability, per file with unsynced appended bytes at a crash, that a prefix survives.
    pub torn_write: f64,
    /// Probability that a surviving unsynced prefix has a bit flipped.
    pub garble: f64,
}

/// How many faults of each kind were injected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskFaultCounts {
    pub write_errors: u64,
    pub sync_errors: u64,
    pub torn_writes: u64,
    pub garbled_writes: u64,
    pub lost_unsynced_files: u64,
    /// Writes refused because the disk was full.
    pub full_disk_writes: u64,
    /// Bits flipped in synced data ([`SimDisk::rot`]).
    pub rotted_bits: u64,
}

impl DiskFaultCounts {
    pub fn total(&self) -> u64 {
        self.write_errors
            + self.sync_errors
            + self.torn_writes
            + self.garbled_writes
            + self.lost_unsynced_files
            + self.full_disk_writes
            + self.rotted_bits
    }
}

#[derive(Debug, Default)]
struct Shared {
    faults: Mutex<DiskFaults>,
    counts: Mutex<DiskFaultCounts>,
    full: AtomicBool,
}

impl Shared {
    /// The ENOSPC of a full disk, counted.
    fn no_space(&self) -> io::Error {
        self.counts.lock().expect("counts lock").full_disk_writes += 1;
        injected(io::ErrorKind::StorageFull, "disk full (ENOSPC)")
    }

    fn full(&self) -> bool {
        self.full.load(Ordering::SeqCst)
    }
}

/// The disk of one simulated node. Clones share the same contents.
#[derive(Debug, Clone, Default)]
pub struct SimDisk {
    tree: MemStorage,
    shared: Arc<Shared>,
}

/// A file of the tree, with the write and sync faults in front of it.
#[derive(Debug)]
struct SimFile {
    inner: FileRef,
    shared: Arc<Shared>,
}

fn injected(kind: io::ErrorKind, what: &str) -> io::Error {
    io::Error::new(kind, format!("simulated {what}"))
}

impl SimDisk {
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    pub fn set_faults(&self, faults: DiskFaults) {
        *self.shared.faults.lock().expect("faults lock") = faults;
    }

    /// Fills the disk (`true`) or frees space again (`false`).
    pub fn set_full(&self, full: bool) {
        self.shared.full.store(full, Ordering::SeqCst);
    }

    pub fn counts(&self) -> DiskFaultCounts {
        *self.shared.counts.lock().expect("counts lock")
    }

    /// What a power loss leaves: per file, the synced bytes, plus possibly a torn (and possibly
    /// garbled) prefix of the unsynced appended bytes. Called while the node is down.
    pub fn crash(&self) {
        let faults = *self.shared.faults.lock().expect("faults lock");
        let mut counts = self.shared.counts.lock().expect("counts lock");
        let mut rng = thread_rng();
        self.tree.crash_with(|_, durable, current| {
            let appended = current.len() > durable.len() && current.starts_with(durable);
            if appended && rng.gen_bool(faults.torn_write) {
                let extra = current.len() - durable.len();
                let keep = rng.gen_range(1..=extra);
                let mut survived = current[..durable.len() + keep].to_vec();
                counts.torn_writes += 1;
                if rng.gen_bool(faults.garble) {
                    let at = durable.len() + rng.gen_range(0..keep);
                    survived[at] ^= 1 << rng.gen_range(0..8);
                    counts.garbled_writes += 1;
                }
                CrashKeeps::Bytes(survived)
            } else {
                counts.lost_unsynced_files += 1;
                CrashKeeps::Synced
            }
        });
    }
}

impl SimDisk {
    /// Flips one bit inside the records (the part a batch's CRC covers) of a random stored
    /// batch in a random segment under the directories named `prefix`-N, in synced data, as a
    /// disk rotting under a running broker: the file and the batch's first offset, or `None`
    /// if there is no such batch.
    pub fn rot(&self, prefix: &str) -> Option<(String, i64)> {
        let mut rng = thread_rng();
        let segments: Vec<String> =
            self.tree.file_paths().into_iter().filter(|p| p.starts_with(prefix) && p.ends_with(".log")).collect();
        if segments.is_empty() {
            return None;
        }
        let path = &segments[rng.gen_range(0..segments.len())];
        let file = self.tree.open(path, false).ok()?;
        let bytes = file.len().and_then(|len| file.read_at(0, len as usize)).ok()?;
        let mut batches = Vec::new();
        let mut at = 0;
        while let Some(header) = headwater_core::log::batch::BatchHeader::parse(&bytes[at..]) {
            let Some(size) = header.size_bytes().filter(|&s| at + s <= bytes.len()) else { break };
            batches.push((at, size, header.base_offset));
            at += size;
        }
        if batches.is_empty() {
            return None;
        }
        // 21: the attributes, where a batch's CRC starts.
        let (start, size, offset) = batches[rng.gen_range(0..batches.len())];
        self.tree.flip_bit(path, start + rng.gen_range(21..size), rng.gen_range(0..8));
        self.shared.counts.lock().expect("counts lock").rotted_bits += 1;
        Some((path.clone(), offset))
    }
}

impl SimFile {
    fn fail(&self, rate: impl Fn(&DiskFaults) -> f64) -> bool {
        let p = rate(&self.shared.faults.lock().expect("faults lock"));
        p > 0.0 && thread_rng().gen_bool(p)
    }
}

impl StorageFile for SimFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn write_at(&self, position: u64, bytes: &[u8]) -> io::Result<()> {
        if self.fail(|f| f.write_error) {
            self.shared.counts.lock().expect("counts lock").write_errors += 1;
            let kind = if thread_rng().gen_bool(0.5) { io::ErrorKind::Other } else { io::ErrorKind::StorageFull };
            return Err(injected(kind, "write error (EIO/ENOSPC)"));
        }
        if self.shared.full() && position + bytes.len() as u64 > self.inner.len()? {
            return Err(self.shared.no_space());
        }
        self.inner.write_at(position, bytes)
    }

    fn read_at(&self, position: u64, len: usize) -> io::Result<Vec<u8>> {
        self.inner.read_at(position, len)
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        if self.shared.full() && len > self.inner.len()? {
            return Err(self.shared.no_space());
        }
        self.inner.truncate(len)
    }

    fn sync(&self) -> io::Result<()> {
        if self.fail(|f| f.sync_error) {
            self.shared.counts.lock().expect("counts lock").sync_errors += 1;
            return Err(injected(io::ErrorKind::Other, "fsync error (EIO)"));
        }
        self.inner.sync()
    }
}

impl Storage for SimDisk {
    fn open(&self, path: &str, create: bool) -> io::Result<FileRef> {
        if create && self.shared.full() && !self.tree.exists(path)? {
            // A new file needs an inode and a directory entry: no space for either.
            return Err(self.shared.no_space());
        }
        let inner = self.tree.open(path, create)?;
        Ok(Arc::new(SimFile { inner, shared: self.shared.clone() }))
    }

    fn exists(&self, path: &str) -> io::Result<bool> {
        self.tree.exists(path)
    }

    fn create_dir_all(&self, path: &str) -> io::Result<()> {
        if self.shared.full() && !self.tree.exists(path)? {
            return Err(self.shared.no_space());
        }
        self.tree.create_dir_all(path)
    }

    fn list_dir(&self, path: &str) -> io::Result<Vec<String>> {
        self.tree.list_dir(path)
    }

    fn remove_file(&self, path: &str) -> io::Result<()> {
        self.tree.remove_file(path)
    }

    fn remove_dir_all(&self, path: &str) -> io::Result<()> {
        self.tree.remove_dir_all(path)
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.tree.rename(from, to)
    }

    fn sync_dir(&self, path: &str) -> io::Result<()> {
        // Directory entries are durable at once in this model (see the top of the file).
        self.tree.sync_dir(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_disk_conforms() {
        let disk = SimDisk::new();
        madsim::runtime::Runtime::with_seed_and_config(2, madsim::Config::default()).block_on(async {
            headwater_core::storage::conformance::run(&disk, Some(&|| disk.crash()));
        });
    }

    #[test]
    fn crash_keeps_synced_bytes_and_at_most_a_prefix_of_the_rest() {
        madsim::runtime::Runtime::with_seed_and_config(3, madsim::Config::default()).block_on(async {
            let disk = SimDisk::new();
            disk.create_dir_all("d").unwrap();
            let file = disk.open("d/f", true).unwrap();
            file.write_at(0, b"synced").unwrap();
            file.sync().unwrap();
            file.write_at(6, b"-unsynced-tail").unwrap();
            disk.set_faults(DiskFaults { torn_write: 1.0, ..DiskFaults::default() });
            disk.crash();
            let after = file.read_at(0, 100).unwrap();
            assert!(after.starts_with(b"synced") && after.len() > 6);
            assert!(b"synced-unsynced-tail".starts_with(&after[..]));
            file.write_at(after.len() as u64, b"x").unwrap();
            disk.set_faults(DiskFaults::default());
            disk.crash();
            assert_eq!(file.read_at(0, 100).unwrap(), after, "a crash with no torn writes keeps only synced bytes");
            assert_eq!(disk.counts().torn_writes, 1);
        });
    }

    #[test]
    fn injected_errors_fail_operations() {
        madsim::runtime::Runtime::with_seed_and_config(4, madsim::Config::default()).block_on(async {
            let disk = SimDisk::new();
            disk.create_dir_all("d").unwrap();
            let file = disk.open("d/f", true).unwrap();
            disk.set_faults(DiskFaults { write_error: 1.0, sync_error: 1.0, ..DiskFaults::default() });
            assert!(file.write_at(0, b"x").is_err());
            assert!(file.sync().is_err());
            assert_eq!(disk.counts().write_errors, 1);
        });
    }

    #[test]
    fn a_full_disk_refuses_growth_until_space_returns() {
        madsim::runtime::Runtime::with_seed_and_config(5, madsim::Config::default()).block_on(async {
            let disk = SimDisk::new();
            disk.create_dir_all("d").unwrap();
            let file = disk.open("d/f", true).unwrap();
            file.write_at(0, b"before").unwrap();
            disk.set_full(true);
            let error = file.write_at(6, b"more").unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::StorageFull);
            assert_eq!(disk.open("d/new", true).unwrap_err().kind(), io::ErrorKind::StorageFull);
            assert_eq!(disk.create_dir_all("e").unwrap_err().kind(), io::ErrorKind::StorageFull);
            file.write_at(0, b"B").unwrap();
            file.truncate(3).unwrap();
            disk.remove_file("d/f").unwrap();
            assert_eq!(disk.counts().full_disk_writes, 3);
            disk.set_full(false);
            disk.open("d/new", true).unwrap().write_at(0, b"fits again").unwrap();
        });
    }
}
