//! The partition log: an ordered list of segments in one directory, Kafka's layout.
//!
//! ```text
//! <topic>-<partition>/
//!   00000000000000000000.log        whole RecordBatch v2 batches, as producers sent them
//!   00000000000000000000.index      sparse offset -> position (written when sealed)
//!   00000000000000000000.timeindex  max timestamp -> offset (written when sealed)
//!   leader-epoch-checkpoint         epoch -> first offset
//!   <offset>-<epoch>.checkpoint     a Raft snapshot, the state before the log start (snapshot.rs)
//! ```
//!
//! Offsets: `log_start_offset <= durable_offset <= end_offset`. `end_offset` is the next offset to
//! assign. `durable_offset` is the end of what is fsynced; on a single node it is the high
//! watermark, so consumers never see a record that a crash could take back.

pub mod batch;
pub mod checkpoint;
pub mod compression;
pub mod epoch;
pub mod index;
pub mod raft_view;
pub mod segment;
pub mod snapshot;
pub mod txn_index;

use std::io;
use std::sync::Arc;

use bytes::Bytes;

use self::batch::{patch_offset_and_epoch, records_of, BatchHeader};
use self::epoch::LeaderEpochCache;
use self::segment::{log_file_name, parse_log_file_name, Segment};
use crate::constants::BATCH_HEADER_BYTES;
use crate::raft::SnapshotId;
use crate::storage::{NamedFile, Storage};

/// Per-log settings, from topic configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub segment_bytes: i64,
    pub segment_ms: i64,
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub index_interval_bytes: i32,
}

impl Default for LogConfig {
    fn default() -> Self {
        use crate::constants::*;
        LogConfig {
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            segment_ms: SEGMENT_MS_DEFAULT,
            retention_ms: RETENTION_MS_DEFAULT,
            retention_bytes: RETENTION_BYTES_DEFAULT,
            index_interval_bytes: INDEX_INTERVAL_BYTES_DEFAULT,
        }
    }
}

/// What opening a log found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments: usize,
    /// Segments that reach past the recovery point, walked batch by batch.
    pub segments_scanned: usize,
    /// Bytes whose CRC was checked: the batches at or past the recovery point.
    pub scanned_bytes: u64,
    /// Bytes before the recovery point, opened from indexes or by header without a CRC check
    /// (they were synced before the checkpoint was written).
    pub trusted_bytes: u64,
    pub truncated_bytes: u64,
    pub segments_dropped: usize,
    /// Recovery cut at a damaged batch (whole, failing its CRC) in a log that reached this far.
    pub damaged_to: Option<LogReach>,
}

impl RecoveryReport {
    /// Adds another log's report to this one.
    pub fn add(&mut self, other: &RecoveryReport) {
        self.segments += other.segments;
        self.segments_scanned += other.segments_scanned;
        self.scanned_bytes += other.scanned_bytes;
        self.trusted_bytes += other.trusted_bytes;
        self.truncated_bytes += other.truncated_bytes;
        self.segments_dropped += other.segments_dropped;
    }
}

/// Batches read for a fetch.
#[derive(Debug, Clone, Default)]
pub struct ReadResult {
    pub records: Bytes,
    /// The first batch alone was larger than `max_bytes` (returned anyway, KIP-74).
    pub oversized: bool,
}

/// How far a log reached: the offset after its last batch and that batch's leader epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogReach {
    pub end_offset: i64,
    pub last_epoch: i32,
}

/// A stored batch that fails its CRC, or whose offsets do not follow on from the batch before
/// it: what a bit flipped on the disk looks like to a checked read ([`Log::read_checked`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptBatch {
    /// The offset the damaged batch should start at.
    pub offset: i64,
    /// The segment file that holds it.
    pub file: String,
}

impl std::fmt::Display for CorruptBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: the stored batch at offset {} fails its CRC-32C check", self.file, self.offset)
    }
}

impl std::error::Error for CorruptBatch {}

impl CorruptBatch {
    pub fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self)
    }

    /// The damaged batch an error of a checked read names, if it is one.
    pub fn of(error: &io::Error) -> Option<&CorruptBatch> {
        error.get_ref()?.downcast_ref::<CorruptBatch>()
    }
}

/// Files to fsync and the offset that becomes durable once they are.
#[derive(Debug)]
pub struct SyncPlan {
    pub files: Vec<NamedFile>,
    pub durable_offset: i64,
}

#[derive(Debug)]
pub struct Log {
    dir: String,
    storage: Arc<dyn Storage>,
    config: LogConfig,
    segments: Vec<Segment>,
    log_start_offset: i64,
    end_offset: i64,
    durable_offset: i64,
    epochs: LeaderEpochCache,
    /// Index files of sealed segments that still need an fsync.
    unsynced_index_files: Vec<NamedFile>,
    /// The lowest offset the log was cut to since the last sync was planned: what was written
    /// there after the cut is not covered by that sync, whatever offset it planned.
    cut_since_plan: i64,
    /// The latest snapshot file in the directory (a Raft log's, see [`snapshot`]).
    snapshot: Option<SnapshotId>,
}

impl Log {
    /// Creates an empty log in a new directory. If its first segment cannot be created, the
    /// directory is removed again (best effort), since an empty one left behind would refuse
    /// every later creation of the partition.
    pub fn create(storage: Arc<dyn Storage>, dir: &str, config: LogConfig, now_ms: i64) -> io::Result<Log> {
        storage.create_dir_all(dir)?;
        let segment = match Segment::create(storage.as_ref(), dir, 0, now_ms) {
            Ok(segment) => segment,
            Err(error) => {
                // The creation's own error is the one to report; a failed removal leaves an
                // empty directory that the caller's error message names.
                let _ = storage.remove_dir_all(dir);
                return Err(error);
            }
        };
        Ok(Log {
            dir: dir.to_string(),
            epochs: LeaderEpochCache::default(),
            storage,
            config,
            segments: vec![segment],
            log_start_offset: 0,
            end_offset: 0,
            durable_offset: 0,
            unsynced_index_files: Vec::new(),
            cut_since_plan: i64::MAX,
            snapshot: None,
        })
    }

    /// Opens an existing log after a restart or crash. Bytes from `recovery_point` onwards may
    /// be unsynced: each of those batches' CRC is checked, and the first torn or corrupt batch
    /// and everything after it are cut off. Earlier segments were fully synced and are opened
    /// from their indexes; in the segment holding the recovery point, the batches before it
    /// are walked by header only. After a clean stop the recovery point is the log end, so
    /// nothing is CRC-checked and a large log opens quickly.
    pub fn open(
        storage: Arc<dyn Storage>,
        dir: &str,
        config: LogConfig,
        recovery_point: i64,
        log_start_offset: i64,
        now_ms: i64,
    ) -> io::Result<(Log, RecoveryReport)> {
        Log::open_fenced(storage, dir, config, recovery_point, log_start_offset, now_ms, &mut |_| Ok(()))
    }

    /// [`Log::open`] for a replica: recovery may find a damaged batch (whole, failing its CRC)
    /// past the recovery point, in data that was perhaps synced and counted toward a commit.
    /// Before cutting there it calls `before_damaged_cut` with how far the log reached (past
    /// the damage, over every segment it is about to drop), so the replica can save that it
    /// must not vote until it holds that much again. An error from it stops the open, and
    /// nothing is cut.
    pub fn open_fenced(
        storage: Arc<dyn Storage>,
        dir: &str,
        config: LogConfig,
        recovery_point: i64,
        log_start_offset: i64,
        now_ms: i64,
        before_damaged_cut: &mut dyn FnMut(LogReach) -> io::Result<()>,
    ) -> io::Result<(Log, RecoveryReport)> {
        let mut bases: Vec<i64> = storage.list_dir(dir)?.iter().filter_map(|n| parse_log_file_name(n)).collect();
        bases.sort_unstable();
        let interval = config.index_interval_bytes.max(1) as u64;
        let mut report = RecoveryReport::default();
        // Read first: recovery checks scanned batches' leader epochs against it.
        let mut epochs = LeaderEpochCache::load(storage.as_ref(), dir)?;
        let mut segments: Vec<Segment> = Vec::with_capacity(bases.len());
        let mut broken_at: Option<usize> = None;
        for (i, &base) in bases.iter().enumerate() {
            let next_base = bases.get(i + 1).copied();
            let sealed_and_synced = next_base.is_some_and(|next| next <= recovery_point);
            let (segment, truncated) = if sealed_and_synced {
                let segment = Segment::open_sealed(storage.as_ref(), dir, base, interval)?;
                report.trusted_bytes += segment.size_bytes;
                (segment, false)
            } else {
                let later = &bases[i + 1..];
                let mut before_cut = |damaged_to: LogReach| -> io::Result<()> {
                    let mut reached = damaged_to;
                    // Every epoch is checkpointed before its first batch is written, and a
                    // header's epoch lies outside its CRC: the checkpoint's last epoch is the
                    // one to trust. Only without a checkpoint is the damaged batch's taken.
                    reached.last_epoch = epochs.latest_epoch().unwrap_or(reached.last_epoch);
                    for &later_base in later {
                        let later_end = Segment::chain_end_of(storage.as_ref(), dir, later_base)?;
                        reached.end_offset = reached.end_offset.max(later_end);
                    }
                    report.damaged_to = Some(reached);
                    before_damaged_cut(reached)
                };
                let (segment, outcome) = Segment::open_and_recover(
                    storage.as_ref(),
                    dir,
                    base,
                    interval,
                    recovery_point,
                    &epochs,
                    &mut before_cut,
                )?;
                report.segments_scanned += 1;
                report.scanned_bytes += outcome.checked_bytes;
                report.trusted_bytes += segment.size_bytes - outcome.checked_bytes;
                report.truncated_bytes += outcome.truncated_bytes;
                (segment, outcome.truncated_bytes > 0)
            };
            if segments.last().is_some_and(|prev| prev.next_offset != base) {
                // Overlapping segments, or a gap: a segment lost its unsynced tail in a crash
                // while the next one (created by a roll) survived, so its first offset no longer
                // follows on. Keep the earlier one, drop this and everything after: a log with a
                // hole would let the end jump over offsets it never held.
                broken_at = Some(i);
                break;
            }
            segments.push(segment);
            if truncated {
                // A torn or corrupt batch: nothing after it can be trusted to follow on.
                broken_at = Some(i + 1);
                break;
            }
        }
        if let Some(first_dropped) = broken_at {
            for &base in &bases[first_dropped..] {
                let path = format!("{dir}/{}", log_file_name(base));
                storage.remove_file(&path)?;
                for name in [segment::index_file_name(base), segment::time_index_file_name(base)] {
                    let path = format!("{dir}/{name}");
                    if storage.exists(&path)? {
                        storage.remove_file(&path)?;
                    }
                }
                report.segments_dropped += 1;
            }
        }
        if segments.is_empty() {
            let base = log_start_offset.max(0);
            segments.push(Segment::create(storage.as_ref(), dir, base, now_ms)?);
        }
        report.segments = segments.len();
        let end_offset = segments.last().expect("at least one segment").next_offset;
        let first_base = segments[0].base_offset;
        // An epoch starting at or past the end holds no records: its first batch was lost in
        // a crash after the checkpoint was written. Keeping it would report it as the last.
        epochs.truncate_from(end_offset);
        let latest_snapshot = snapshot::latest(storage.as_ref(), dir)?;
        let mut log = Log {
            dir: dir.to_string(),
            storage,
            config,
            log_start_offset: log_start_offset.clamp(first_base, end_offset),
            end_offset,
            // Bytes past the recovery point survived in the page cache but may never have been
            // synced; they become the high watermark after the first sync, which is due at once
            // because recovered segments are marked unsynced.
            durable_offset: recovery_point.clamp(log_start_offset.clamp(first_base, end_offset), end_offset),
            segments,
            epochs,
            unsynced_index_files: Vec::new(),
            cut_since_plan: i64::MAX,
            snapshot: latest_snapshot,
        };
        log.start_from_snapshot(now_ms)?;
        Ok((log, report))
    }

    /// After opening: the log starts where its latest snapshot ends. A log that does not reach
    /// the snapshot (a crash took its unsynced tail, or came between storing a fetched
    /// snapshot and starting the log over) starts over at it; what it held was all before the
    /// snapshot, or never synced.
    fn start_from_snapshot(&mut self, now_ms: i64) -> io::Result<()> {
        let Some(id) = self.snapshot else { return Ok(()) };
        if id.end_offset < self.segments[0].base_offset || id.end_offset > self.end_offset {
            return self.restart_at_snapshot(now_ms);
        }
        if id.end_offset > self.log_start_offset {
            self.durable_offset = self.durable_offset.max(id.end_offset);
            self.advance_start(id.end_offset)?;
        }
        Ok(())
    }

    pub fn dir(&self) -> &str {
        &self.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    pub fn end_offset(&self) -> i64 {
        self.end_offset
    }

    /// High watermark: the end of what is fsynced.
    pub fn durable_offset(&self) -> i64 {
        self.durable_offset
    }

    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size_bytes).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    pub fn epochs(&self) -> &LeaderEpochCache {
        &self.epochs
    }

    /// Appends one validated batch, assigning it offsets from `end_offset`. Returns the base
    /// offset. The bytes are in the page cache; they are durable after the next sync.
    pub fn append(&mut self, batch: &mut [u8], leader_epoch: i32, now_ms: i64) -> io::Result<i64> {
        let header = BatchHeader::parse(batch).expect("batch was validated");
        let base_offset = self.end_offset;
        patch_offset_and_epoch(batch, base_offset, leader_epoch);
        self.maybe_roll(batch.len() as u64, now_ms)?;
        let interval = self.config.index_interval_bytes.max(1) as u64;
        let active = self.segments.last_mut().expect("a log always has an active segment");
        if active.size_bytes == 0 {
            active.created_ms = now_ms;
        }
        // A new epoch is checkpointed before its first batch is written: recovery keeps only
        // batches whose epoch the checkpoint knows, so the other order could leave a batch that
        // is synced and committed but cut at restart. If the checkpoint fails, nothing changed;
        // if the batch then fails, the checkpoint names an epoch past the log end, which
        // loading drops.
        if self.epochs.latest_epoch() != Some(leader_epoch) {
            let mut epochs = self.epochs.clone();
            epochs.assign(leader_epoch, base_offset);
            epochs.write(self.storage.as_ref(), &self.dir)?;
            self.epochs = epochs;
        }
        if let Err(e) = active.append(batch, interval) {
            self.epochs.truncate_from(base_offset);
            return Err(e);
        }
        self.end_offset = base_offset + i64::from(header.last_offset_delta) + 1;
        assert_eq!(active.next_offset, self.end_offset, "segment and log end must agree");
        Ok(base_offset)
    }

    /// Appends batches read from a leader's log: each keeps its offsets and its leader epoch,
    /// and must start at this log's end. Their CRCs are checked (they crossed the network).
    pub fn append_replicated(&mut self, batches: &[u8], now_ms: i64) -> io::Result<()> {
        let mut position = 0;
        while position < batches.len() {
            let rest = &batches[position..];
            let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {what}", self.dir));
            let header = BatchHeader::parse(rest).ok_or_else(|| invalid("a replicated batch is cut short"))?;
            let size = header
                .size_bytes()
                .filter(|&s| s <= rest.len())
                .ok_or_else(|| invalid("a replicated batch is cut short"))?;
            if header.base_offset != self.end_offset {
                return Err(invalid(&format!(
                    "a replicated batch starts at {} but the log ends at {}",
                    header.base_offset, self.end_offset
                )));
            }
            let mut bytes = rest[..size].to_vec();
            if batch::batch_crc(&bytes) != header.crc {
                return Err(invalid("a replicated batch fails its CRC"));
            }
            self.append(&mut bytes, header.partition_leader_epoch, now_ms)?;
            position += size;
        }
        Ok(())
    }

    /// Removes every record at or after `offset` (a follower cutting a tail its leader does
    /// not have). Cuts at a batch boundary: a batch holding `offset` goes whole.
    pub fn truncate_to(&mut self, offset: i64) -> io::Result<()> {
        assert!(offset >= self.log_start_offset, "truncating below the log start");
        if offset >= self.end_offset {
            return Ok(());
        }
        while self.segments.len() > 1 && self.segments.last().is_some_and(|s| s.base_offset >= offset) {
            let segment = self.segments.pop().expect("more than one segment");
            let prefix = format!("{}/{:020}.", self.dir, segment.base_offset);
            self.unsynced_index_files.retain(|f| !f.path.starts_with(&prefix));
            segment.delete_files(self.storage.as_ref(), &self.dir)?;
        }
        let interval = self.config.index_interval_bytes.max(1) as u64;
        let active = self.segments.last_mut().expect("a log always has an active segment");
        active.truncate_to(offset, interval)?;
        self.end_offset = active.next_offset;
        self.cut_since_plan = self.cut_since_plan.min(self.end_offset);
        self.durable_offset = self.durable_offset.min(self.end_offset);
        self.epochs.truncate_from(self.end_offset);
        self.epochs.write(self.storage.as_ref(), &self.dir)
    }

    fn maybe_roll(&mut self, incoming_bytes: u64, now_ms: i64) -> io::Result<()> {
        let active = self.segments.last().expect("a log always has an active segment");
        if active.size_bytes == 0 {
            return Ok(());
        }
        let too_big = active.size_bytes + incoming_bytes > self.config.segment_bytes.max(1) as u64;
        let too_old = now_ms - active.created_ms >= self.config.segment_ms;
        if too_big || too_old {
            self.roll(now_ms)?;
        }
        Ok(())
    }

    /// Seals the active segment and starts a new one at `end_offset`.
    pub fn roll(&mut self, now_ms: i64) -> io::Result<()> {
        let active = self.segments.last().expect("a log always has an active segment");
        if active.size_bytes == 0 {
            return Ok(());
        }
        let index_files = active.write_indexes(self.storage.as_ref(), &self.dir)?;
        self.unsynced_index_files.extend(index_files);
        let segment = Segment::create(self.storage.as_ref(), &self.dir, self.end_offset, now_ms)?;
        self.segments.push(segment);
        Ok(())
    }

    /// Rolls if the active segment is older than `segment.ms` (time passes without appends).
    pub fn roll_if_old(&mut self, now_ms: i64) -> io::Result<()> {
        let active = self.segments.last().expect("a log always has an active segment");
        if active.size_bytes > 0 && now_ms - active.created_ms >= self.config.segment_ms {
            self.roll(now_ms)?;
        }
        Ok(())
    }

    /// Whether anything written is not yet covered by a sync.
    pub fn needs_sync(&self) -> bool {
        self.durable_offset < self.end_offset
            || self.segments.iter().any(|s| s.unsynced)
            || !self.unsynced_index_files.is_empty()
    }

    /// Takes the files with unsynced writes. Once the driver has synced them all,
    /// [`Log::synced`] moves the high watermark to `durable_offset`.
    pub fn plan_sync(&mut self) -> SyncPlan {
        self.cut_since_plan = i64::MAX;
        let mut files: Vec<NamedFile> = self.unsynced_index_files.drain(..).collect();
        for segment in self.segments.iter_mut().filter(|s| s.unsynced) {
            segment.unsynced = false;
            files.push(NamedFile::new(
                format!("{}/{}", self.dir, log_file_name(segment.base_offset)),
                segment.file.clone(),
            ));
        }
        SyncPlan { files, durable_offset: self.end_offset }
    }

    /// A sync planned by [`Log::plan_sync`] completed.
    pub fn synced(&mut self, durable_offset: i64) {
        // The log may have been cut below the planned offset meanwhile, and written again past
        // the cut after the sync was planned: only what lies before the cut is covered.
        let durable_offset = durable_offset.min(self.end_offset).min(self.cut_since_plan);
        if durable_offset > self.durable_offset {
            self.durable_offset = durable_offset;
        }
    }

    /// Reads whole batches starting with the one that holds `offset`, up to `max_bytes`, never
    /// past `limit_offset` (the high watermark). With `must_return_one`, a first batch larger
    /// than `max_bytes` is returned whole so the consumer can progress (KIP-74).
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        limit_offset: i64,
        must_return_one: bool,
    ) -> io::Result<ReadResult> {
        let limit_offset = limit_offset.min(self.end_offset);
        if offset >= limit_offset || offset < self.log_start_offset {
            return Ok(ReadResult::default());
        }
        let mut segment_index = self.segment_index_for(offset);
        let mut out: Vec<u8> = Vec::new();
        let mut oversized = false;
        while let Some(segment) = self.segments.get(segment_index) {
            let Some(start) = segment.position_of(offset.max(segment.base_offset))? else {
                segment_index += 1;
                continue;
            };
            let budget = max_bytes.saturating_sub(out.len());
            let want = budget.max(if out.is_empty() && must_return_one { BATCH_HEADER_BYTES } else { 0 });
            let available = segment.size_bytes.saturating_sub(start) as usize;
            let chunk = segment.file.read_at(start, want.min(available))?;
            let mut used = 0;
            while let Some(header) = BatchHeader::parse(&chunk[used..]) {
                // A damaged length ends the read here (a checked read reports it).
                let Some(size) = header.size_bytes() else { break };
                if header.base_offset >= limit_offset {
                    break;
                }
                if used + size > chunk.len() {
                    break;
                }
                used += size;
            }
            if used == 0 && out.is_empty() && must_return_one {
                // The first batch is larger than the budget: return it alone.
                let header = segment.header_at(start)?;
                if header.base_offset < limit_offset {
                    // Never past the segment: a damaged length must not size the read.
                    let size = header.size_bytes().unwrap_or(0).min(available);
                    out = segment.file.read_at(start, size)?;
                    oversized = out.len() > max_bytes;
                }
                break;
            }
            out.extend_from_slice(&chunk[..used]);
            let segment_done = start + used as u64 >= segment.size_bytes;
            if !segment_done || out.len() >= max_bytes {
                break;
            }
            segment_index += 1;
        }
        Ok(ReadResult { records: Bytes::from(out), oversized })
    }

    /// [`Log::read`], checking each batch read: its CRC, and that its offsets follow on from
    /// the offset asked for and the batch before. The first batch that fails ends the read:
    /// the batches before it are returned, with the damaged one named.
    pub fn read_checked(
        &self,
        offset: i64,
        max_bytes: usize,
        limit_offset: i64,
        must_return_one: bool,
    ) -> io::Result<(ReadResult, Option<CorruptBatch>)> {
        let mut read = self.read(offset, max_bytes, limit_offset, must_return_one)?;
        let mut expected = offset;
        let mut at = 0;
        let bytes = read.records.clone();
        let damaged = loop {
            if at == bytes.len() {
                // Nothing at all where a record was due: the first header is damaged.
                let due = must_return_one
                    && at == 0
                    && offset >= self.log_start_offset
                    && offset < limit_offset.min(self.end_offset);
                break due.then_some(expected);
            }
            let header = BatchHeader::parse(&bytes[at..]);
            let size = header.and_then(|h| h.size_bytes()).filter(|&size| at + size <= bytes.len());
            let (Some(header), Some(size)) = (header, size) else { break Some(expected) };
            let follows_on = if at == 0 {
                header.base_offset <= offset && offset <= header.last_offset()
            } else {
                header.base_offset == expected
            };
            if !follows_on || batch::batch_crc(&bytes[at..at + size]) != header.crc {
                break Some(if at == 0 { offset } else { expected });
            }
            expected = header.last_offset() + 1;
            at += size;
        };
        let Some(damaged) = damaged else { return Ok((read, None)) };
        read.records = bytes.slice(..at);
        let segment = &self.segments[self.segment_index_for(damaged)];
        let file = format!("{}/{}", self.dir, log_file_name(segment.base_offset));
        Ok((read, Some(CorruptBatch { offset: damaged, file })))
    }

    fn segment_index_for(&self, offset: i64) -> usize {
        let index = self.segments.partition_point(|s| s.base_offset <= offset);
        index.saturating_sub(1)
    }

    /// ListOffsets by timestamp: the first offset whose record timestamp is at least
    /// `timestamp`, with that timestamp, among durable records. Compressed batches are
    /// decompressed to find the record; one that cannot be (corrupt inside, or over the
    /// decompression cap) answers with its first offset and max timestamp.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> io::Result<Option<(i64, i64)>> {
        for segment in &self.segments {
            if segment.max_timestamp < timestamp {
                continue;
            }
            let relative = segment.time_index.first_at_or_after(timestamp).unwrap_or(0);
            let start_offset = (segment.base_offset + i64::from(relative)).max(self.log_start_offset);
            let Some(mut position) = segment.position_of(start_offset)? else {
                continue;
            };
            while position < segment.size_bytes {
                let header = segment.header_at(position)?;
                let size = header.size_bytes().expect("stored batches have sane sizes");
                if header.base_offset >= self.durable_offset {
                    return Ok(None);
                }
                if header.max_timestamp >= timestamp {
                    let bytes = segment.file.read_at(position, size)?;
                    if let Some(records) = records_of(&bytes) {
                        if let Some(r) =
                            records.iter().find(|r| r.timestamp >= timestamp && r.offset >= self.log_start_offset)
                        {
                            return Ok(Some((r.offset, r.timestamp)));
                        }
                    } else {
                        return Ok(Some((header.base_offset.max(self.log_start_offset), header.max_timestamp)));
                    }
                }
                position += size as u64;
            }
        }
        Ok(None)
    }

    /// ListOffsets MAX_TIMESTAMP: the offset and timestamp of the (first) record with the
    /// largest timestamp.
    pub fn offset_of_max_timestamp(&self) -> io::Result<Option<(i64, i64)>> {
        let Some(segment) = self.segments.iter().filter(|s| s.size_bytes > 0).max_by_key(|s| s.max_timestamp) else {
            return Ok(None);
        };
        let mut position = 0;
        let mut best: Option<(i64, i64)> = None;
        while position < segment.size_bytes {
            let header = segment.header_at(position)?;
            let size = header.size_bytes().expect("stored batches have sane sizes");
            if header.base_offset >= self.durable_offset {
                break;
            }
            if header.max_timestamp == segment.max_timestamp && best.is_none() {
                let bytes = segment.file.read_at(position, size)?;
                best = match records_of(&bytes) {
                    Some(records) => {
                        records.iter().find(|r| r.timestamp == header.max_timestamp).map(|r| (r.offset, r.timestamp))
                    }
                    None => Some((header.last_offset(), header.max_timestamp)),
                };
            }
            position += size as u64;
        }
        Ok(best)
    }

    /// DeleteRecords for `offset`: the log start offset it gives, never past the high watermark
    /// and never back. Changes nothing: the caller checkpoints the new start, then calls
    /// [`Log::advance_start`].
    pub fn start_after_delete_records(&self, offset: i64) -> i64 {
        offset.min(self.durable_offset).max(self.log_start_offset)
    }

    /// Retention (`retention.ms`, `retention.bytes`, empty sealed segments): the log start
    /// offset after deleting the oldest segments that break it, never the active one and never
    /// anything not yet durable; `None` if no segment is due. Segments already wholly before the
    /// log start (left by a deletion that failed) are due too. Changes nothing: the caller
    /// checkpoints the new start, then calls [`Log::advance_start`].
    pub fn start_after_retention(&self, now_ms: i64) -> Option<i64> {
        let mut size = self.size_bytes();
        let mut start = None;
        for pair in self.segments.windows(2) {
            let (oldest, next_base) = (&pair[0], pair[1].base_offset);
            if next_base > self.durable_offset {
                break;
            }
            let expired = self.config.retention_ms >= 0
                && oldest.max_timestamp >= 0
                && now_ms - oldest.max_timestamp > self.config.retention_ms;
            let empty = oldest.size_bytes == 0;
            let over_size = self.config.retention_bytes >= 0
                && size.saturating_sub(oldest.size_bytes) >= self.config.retention_bytes as u64;
            let before_start = next_base <= self.log_start_offset;
            if !(expired || empty || over_size || before_start) {
                break;
            }
            size -= oldest.size_bytes;
            start = Some(next_base.max(self.log_start_offset));
        }
        start
    }

    /// Moves the log start offset to `offset` (if that is forward) and deletes the segments
    /// that now lie wholly before it. The caller has made `offset` durable in the log-start
    /// checkpoint first, so a restart never shows records a client was told are gone. The
    /// start moves even if a deletion fails: the segments left are unreadable (below the log
    /// start) and the next retention check deletes them.
    pub fn advance_start(&mut self, offset: i64) -> io::Result<()> {
        assert!(offset <= self.durable_offset.max(self.log_start_offset), "log start past the high watermark");
        self.log_start_offset = self.log_start_offset.max(offset);
        while self.segments.len() > 1 && self.segments[1].base_offset <= self.log_start_offset {
            self.segments[0].delete_files(self.storage.as_ref(), &self.dir)?;
            self.segments.remove(0);
        }
        Ok(())
    }

    /// OffsetForLeaderEpoch: the end offset of `epoch` (the start of the next larger epoch, or
    /// the log end), and the largest known epoch not above it.
    /// A log started over at a snapshot knows no epoch before it but the snapshot's, which
    /// ends where the first epoch of its own begins.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        match (self.epochs.end_offset_for(epoch, self.end_offset), self.snapshot) {
            (None, Some(id)) if epoch >= id.epoch => {
                Some((id.epoch, self.epochs.entries().first().map_or(self.end_offset, |&(_, start)| start)))
            }
            (found, _) => found,
        }
    }

    /// The epoch of the last record (of the snapshot's last entry if the log holds none since
    /// it started over at a snapshot); 0 for an empty log.
    pub fn last_epoch(&self) -> i32 {
        self.epochs.latest_epoch().or(self.snapshot.map(|id| id.epoch)).unwrap_or(0)
    }

    // ----- snapshots (a Raft log's, see `snapshot`) -----

    /// The latest snapshot: the snapshot file, or, where retention or DeleteRecords moved the
    /// start past it, an empty one ending at the log start (a partition's records are its state).
    pub fn snapshot(&self) -> Option<SnapshotId> {
        match self.snapshot {
            Some(id) if id.end_offset >= self.log_start_offset => Some(id),
            _ if self.log_start_offset > 0 => {
                let before_start = self.epochs.epoch_at(self.log_start_offset - 1);
                let epoch = before_start.or(self.snapshot.map(|id| id.epoch)).unwrap_or(0);
                Some(SnapshotId { end_offset: self.log_start_offset, epoch })
            }
            file => file,
        }
    }

    /// Up to `max_bytes` of the snapshot `id` from `position`, and its whole size; `None` if
    /// `id` is not the latest snapshot.
    pub fn read_snapshot(&self, id: SnapshotId, position: u64, max_bytes: usize) -> io::Result<Option<(u64, Bytes)>> {
        if self.snapshot() != Some(id) {
            return Ok(None);
        }
        snapshot::read(self.storage.as_ref(), &self.dir, id, position, max_bytes).map(Some)
    }

    /// Stores a snapshot of this log's own state (the metadata image at `id.end_offset`) and
    /// moves the log start up to it as far as the log is durable, deleting the segments wholly
    /// before it.
    pub fn save_snapshot(&mut self, id: SnapshotId, bytes: &[u8]) -> io::Result<()> {
        assert!(id.end_offset <= self.end_offset, "a snapshot of entries the log does not hold");
        snapshot::write(self.storage.as_ref(), &self.dir, id, bytes)?;
        self.snapshot = Some(id);
        self.advance_start(id.end_offset.min(self.durable_offset))
    }

    /// Stores a snapshot fetched from the leader and starts the log over at its end. The
    /// snapshot is written first: a crash before the log starts over leaves a log that either
    /// reaches the snapshot (kept; a Raft fetch checks it against the leader) or not (started
    /// over when opened).
    pub fn install_snapshot(&mut self, id: SnapshotId, bytes: &[u8], now_ms: i64) -> io::Result<()> {
        snapshot::check(bytes)
            .map_err(|reason| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {reason}", self.dir)))?;
        snapshot::write(self.storage.as_ref(), &self.dir, id, bytes)?;
        self.snapshot = Some(id);
        self.restart_at_snapshot(now_ms)
    }

    /// Starts the log over, empty and durable, at the latest snapshot's end: a segment there
    /// (emptied, or new) becomes the only one and the others are deleted. A deletion that
    /// fails leaves files that opening drops (they overlap it) or that lie before the start.
    fn restart_at_snapshot(&mut self, now_ms: i64) -> io::Result<()> {
        let id = self.snapshot.expect("restarting at a snapshot there is");
        let base = id.end_offset;
        let interval = self.config.index_interval_bytes.max(1) as u64;
        let active = match self.segments.iter().position(|s| s.base_offset == base) {
            Some(i) => {
                let mut segment = self.segments.remove(i);
                if let Err(error) = segment.truncate_to(base, interval) {
                    self.segments.insert(i, segment);
                    return Err(error);
                }
                segment
            }
            None => Segment::create(self.storage.as_ref(), &self.dir, base, now_ms)?,
        };
        let old = std::mem::replace(&mut self.segments, vec![active]);
        self.unsynced_index_files.clear();
        self.log_start_offset = base;
        self.end_offset = base;
        self.durable_offset = base;
        self.cut_since_plan = self.cut_since_plan.min(base);
        self.epochs = LeaderEpochCache::default();
        self.epochs.write(self.storage.as_ref(), &self.dir)?;
        for segment in old {
            segment.delete_files(self.storage.as_ref(), &self.dir)?;
        }
        Ok(())
    }

    /// Calls `visit` with the header of every stored batch, oldest first, and for a control
    /// batch the type of its record (a transaction marker's commit or abort). Used when a
    /// partition opens to rebuild its producers' state and its aborted transactions.
    pub fn for_each_producer_batch(&self, mut visit: impl FnMut(&BatchHeader, Option<i16>)) -> io::Result<()> {
        for segment in &self.segments {
            let mut position = 0;
            while position < segment.size_bytes {
                let header = segment.header_at(position)?;
                let size = header.size_bytes().expect("stored batches have sane sizes");
                let control_type = if header.is_control() {
                    batch::control_type(&segment.file.read_at(position, size)?)
                } else {
                    None
                };
                visit(&header, control_type);
                position += size as u64;
            }
        }
        Ok(())
    }

    /// Calls `visit` with the bytes of every stored batch from the log start offset on, oldest
    /// first. Used at start-up to replay the broker's internal logs.
    pub fn for_each_batch(&self, mut visit: impl FnMut(&[u8])) -> io::Result<()> {
        for segment in &self.segments {
            let mut position = 0;
            while position < segment.size_bytes {
                let header = segment.header_at(position)?;
                let size = header.size_bytes().expect("stored batches have sane sizes");
                if header.last_offset() >= self.log_start_offset {
                    visit(&segment.file.read_at(position, size)?);
                }
                position += size as u64;
            }
        }
        Ok(())
    }

    /// Removes the whole log from disk.
    pub fn delete(self) -> io::Result<()> {
        self.storage.remove_dir_all(&self.dir)
    }
}

#[cfg(test)]
mod tests;
