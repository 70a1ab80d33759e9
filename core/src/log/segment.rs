//! One segment: a file of whole record batches starting at `base_offset`, named
//! `<base_offset:020>.log`, with its indexes beside it.

use std::io;

use super::batch::{check_stored, BatchHeader, ScanItem};
use super::epoch::LeaderEpochCache;
use super::index::{OffsetIndex, TimeIndex};
use super::LogReach;
use crate::constants::BATCH_HEADER_BYTES;
use crate::storage::{FileRef, NamedFile, Storage};

pub fn log_file_name(base_offset: i64) -> String {
    format!("{base_offset:020}.log")
}

pub fn index_file_name(base_offset: i64) -> String {
    format!("{base_offset:020}.index")
}

pub fn time_index_file_name(base_offset: i64) -> String {
    format!("{base_offset:020}.timeindex")
}

/// Parses a base offset out of a `<020 digits>.log` name.
pub fn parse_log_file_name(name: &str) -> Option<i64> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[derive(Debug)]
pub struct Segment {
    pub base_offset: i64,
    pub file: FileRef,
    pub size_bytes: u64,
    /// Offset after the last batch; `base_offset` when empty.
    pub next_offset: i64,
    /// Largest batch max timestamp in the segment; -1 when empty.
    pub max_timestamp: i64,
    /// When the first batch was appended (driver time), for `segment.ms`.
    pub created_ms: i64,
    pub offset_index: OffsetIndex,
    pub time_index: TimeIndex,
    bytes_since_index_entry: u64,
    /// Written since the last sync was issued.
    pub unsynced: bool,
}

/// What scanning a segment from disk found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanOutcome {
    /// Bytes cut off the end because they were torn or corrupt.
    pub truncated_bytes: u64,
    pub batches: u64,
    /// Bytes of the batches whose CRC was checked (those at or past the recovery point).
    pub checked_bytes: u64,
    /// Set when the cut was at a whole batch failing its CRC: damage, perhaps to synced data,
    /// rather than a torn write. How far the batches past it reached (by their headers).
    pub damaged_to: Option<LogReach>,
}

/// Called with where the log reached before recovery cuts a damaged batch, before the cut.
pub type BeforeDamagedCut<'a> = &'a mut dyn FnMut(LogReach) -> io::Result<()>;

impl Segment {
    pub fn create(storage: &dyn Storage, dir: &str, base_offset: i64, now_ms: i64) -> io::Result<Segment> {
        let file = storage.open(&format!("{dir}/{}", log_file_name(base_offset)), true)?;
        file.truncate(0)?;
        Ok(Segment::empty(file, base_offset, now_ms))
    }

    fn empty(file: FileRef, base_offset: i64, now_ms: i64) -> Segment {
        Segment {
            base_offset,
            file,
            size_bytes: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            created_ms: now_ms,
            offset_index: OffsetIndex::default(),
            time_index: TimeIndex::default(),
            bytes_since_index_entry: 0,
            unsynced: true,
        }
    }

    /// Opens a sealed segment. Its index files are trusted when well formed, so only the
    /// batches after the last index entry are read; otherwise every batch header is read.
    pub fn open_sealed(
        storage: &dyn Storage,
        dir: &str,
        base_offset: i64,
        index_interval_bytes: u64,
    ) -> io::Result<Segment> {
        let file = storage.open(&format!("{dir}/{}", log_file_name(base_offset)), false)?;
        let mut segment = Segment::empty(file, base_offset, 0);
        segment.unsynced = false;
        let size_bytes = segment.file.len()?;
        let index = crate::storage::read_file(storage, &format!("{dir}/{}", index_file_name(base_offset)))?
            .and_then(|bytes| OffsetIndex::decode(&bytes, size_bytes));
        let time_index = crate::storage::read_file(storage, &format!("{dir}/{}", time_index_file_name(base_offset)))?
            .and_then(|bytes| TimeIndex::decode(&bytes));
        match (index, time_index) {
            (Some(index), Some(time_index)) => {
                let mut position = u64::from(index.floor_position(u32::MAX));
                segment.max_timestamp = time_index.max_timestamp().unwrap_or(-1);
                segment.offset_index = index;
                segment.time_index = time_index;
                while position < size_bytes {
                    let header = segment.header_at(position)?;
                    let size = header.size_bytes().ok_or_else(|| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("segment {base_offset}: bad batch length at {position}"),
                        )
                    })?;
                    segment.next_offset = header.last_offset() + 1;
                    segment.max_timestamp = segment.max_timestamp.max(header.max_timestamp);
                    position += size as u64;
                }
                segment.size_bytes = size_bytes;
                segment.bytes_since_index_entry = index_interval_bytes;
            }
            _ => {
                segment.scan(None, index_interval_bytes, None, None)?;
            }
        }
        segment.created_ms = segment.max_timestamp.max(0);
        Ok(segment)
    }

    /// Opens a segment that may hold unsynced bytes past `recovery_point`: batches before it
    /// were synced and are walked by header only; from the first batch reaching it on, every
    /// batch's CRC is checked and the file is cut at the first torn or corrupt one, or at the
    /// first whose leader epoch is not the one `epochs` gives for its offset. Before cutting
    /// at a damaged batch (whole, failing its CRC) it calls `before_cut` with how far the log
    /// reached past it.
    pub fn open_and_recover(
        storage: &dyn Storage,
        dir: &str,
        base_offset: i64,
        index_interval_bytes: u64,
        recovery_point: i64,
        epochs: &LeaderEpochCache,
        before_cut: BeforeDamagedCut,
    ) -> io::Result<(Segment, ScanOutcome)> {
        let file = storage.open(&format!("{dir}/{}", log_file_name(base_offset)), false)?;
        // Left marked unsynced: its bytes may be only in the page cache.
        let mut segment = Segment::empty(file, base_offset, 0);
        let outcome = segment.scan(Some(recovery_point), index_interval_bytes, Some(epochs), Some(before_cut))?;
        segment.created_ms = segment.max_timestamp.max(0);
        Ok((segment, outcome))
    }

    /// Walks the batches from the start, rebuilding indexes and counters. With `crc_from`,
    /// checks the CRC of every batch whose last offset is at or past it (the recovery point:
    /// what lies before was synced), stops at the first batch that is torn, corrupt, or out of
    /// order and truncates there. Without it (a sealed, synced segment), a malformed batch is
    /// an error. With `epochs`, a checked batch must also carry the leader epoch they give for
    /// its offset: `partitionLeaderEpoch` lies outside the CRC, and a crash may garble it in
    /// an unsynced batch (simulator, cluster seed 256). The checkpoint is durable before any
    /// batch of a new epoch is synced, so a batch it does not account for was never synced.
    fn scan(
        &mut self,
        crc_from: Option<i64>,
        index_interval_bytes: u64,
        epochs: Option<&LeaderEpochCache>,
        before_damaged_cut: Option<BeforeDamagedCut>,
    ) -> io::Result<ScanOutcome> {
        let recovering = crc_from.is_some();
        let file_len = self.file.len()?;
        let mut position: u64 = 0;
        let mut batches = 0;
        let mut checked_bytes = 0;
        let mut damaged_to = None;
        self.offset_index = OffsetIndex::default();
        self.time_index = TimeIndex::default();
        self.bytes_since_index_entry = 0;
        self.next_offset = self.base_offset;
        self.max_timestamp = -1;
        while position < file_len {
            let header_bytes = self.file.read_at(position, BATCH_HEADER_BYTES)?;
            let Some(header) = BatchHeader::parse(&header_bytes) else {
                break;
            };
            let Some(size) = header.size_bytes() else {
                break;
            };
            // Batches in a segment are contiguous: the first starts at the segment's base offset
            // and each follows the last. `baseOffset` lies outside the CRC, so a damaged one is
            // caught here or not at all (found by the simulator, seed 566).
            if position + size as u64 > file_len
                || header.base_offset != self.next_offset
                || header.last_offset_delta < 0
            {
                break;
            }
            if crc_from.is_some_and(|from| header.last_offset() >= from) {
                let bytes = self.file.read_at(position, size)?;
                match check_stored(&bytes) {
                    ScanItem::Batch(_) => {}
                    ScanItem::Torn => break,
                    ScanItem::Corrupt => {
                        let end_offset = self.chain_end(position, file_len)?;
                        damaged_to = Some(LogReach { end_offset, last_epoch: header.partition_leader_epoch });
                        break;
                    }
                }
                let expected = epochs.and_then(|e| e.epoch_at(header.base_offset));
                if expected.is_some_and(|epoch| epoch != header.partition_leader_epoch) {
                    // Whole and passing its CRC, so written out and perhaps synced and
                    // counted: a flipped bit in the epoch, which the CRC does not cover. Damage,
                    // fenced like a failed CRC.
                    let end_offset = self.chain_end(position, file_len)?;
                    damaged_to = Some(LogReach { end_offset, last_epoch: header.partition_leader_epoch });
                    break;
                }
                // Counted once kept: a batch cut here is not part of the segment.
                checked_bytes += size as u64;
            } else if header.magic != 2 {
                break;
            }
            self.note_batch(&header, position, size as u64, index_interval_bytes);
            position += size as u64;
            batches += 1;
        }
        if recovering && crate::planted::active(crate::planted::PlantedBug::KeepTornTail) {
            // Planted bug: keep whatever follows the last good batch.
            position = file_len;
        }
        let truncated_bytes = file_len - position;
        if truncated_bytes > 0 {
            if !recovering {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("sealed segment {} has a malformed batch at byte {position}", self.base_offset),
                ));
            }
            if let (Some(to), Some(before_cut)) = (damaged_to, before_damaged_cut) {
                before_cut(to)?;
            }
            self.file.truncate(position)?;
            self.unsynced = true;
        }
        self.size_bytes = position;
        Ok(ScanOutcome { truncated_bytes, batches, checked_bytes, damaged_to })
    }

    /// Where the batches from `position` on end, judged by their headers alone (lengths that
    /// fit, offsets that follow on): how far a log reached past a damaged batch. A damaged
    /// batch's own fields cannot be trusted, and this reach fences the replica's vote until
    /// its log is back there, so an end past anything written would fence it for good (found
    /// by the simulator: a flipped bit in a last offset delta). Each batch's last offset is
    /// therefore taken from the next batch's base offset when one follows, else from the two
    /// copies every stored batch carries (last offset delta and record count) and how many
    /// records its bytes can hold ([`plausible_last_offset_delta`]). Leader epochs are left
    /// to the caller, who has the epoch checkpoint.
    fn chain_end(&self, mut position: u64, file_len: u64) -> io::Result<i64> {
        let mut next = self.next_offset;
        let header_at = |position: u64| -> io::Result<Option<BatchHeader>> {
            if position + BATCH_HEADER_BYTES as u64 > file_len {
                return Ok(None);
            }
            Ok(BatchHeader::parse(&self.file.read_at(position, BATCH_HEADER_BYTES)?))
        };
        while let Some(header) = header_at(position)? {
            let Some(size) = header.size_bytes().filter(|&s| position + s as u64 <= file_len) else { break };
            if header.base_offset != next {
                break;
            }
            let following = header_at(position + size as u64)?.map(|h| h.base_offset);
            next = header.base_offset + plausible_last_offset_delta(&header, size, following) + 1;
            position += size as u64;
        }
        Ok(next)
    }

    /// How far the segment file at `base_offset` reaches (its end offset), by its batch
    /// headers alone.
    pub fn chain_end_of(storage: &dyn Storage, dir: &str, base_offset: i64) -> io::Result<i64> {
        let file = storage.open(&format!("{dir}/{}", log_file_name(base_offset)), false)?;
        let file_len = file.len()?;
        Segment::empty(file, base_offset, 0).chain_end(0, file_len)
    }

    /// Updates indexes and counters for a batch now stored at `position`.
    fn note_batch(&mut self, header: &BatchHeader, position: u64, size: u64, index_interval_bytes: u64) {
        let relative =
            u32::try_from(header.base_offset - self.base_offset).expect("segment offsets span less than 2^32");
        if self.bytes_since_index_entry >= index_interval_bytes || position == 0 {
            if position > 0 {
                self.offset_index.push(relative, u32::try_from(position).expect("segment smaller than 4 GiB"));
            }
            self.bytes_since_index_entry = 0;
        }
        self.bytes_since_index_entry += size;
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.time_index.push(header.max_timestamp, relative);
        }
        self.next_offset = header.last_offset() + 1;
    }

    /// Appends a validated batch whose base offset is already patched to `next_offset`.
    pub fn append(&mut self, batch: &[u8], index_interval_bytes: u64) -> io::Result<()> {
        let header = BatchHeader::parse(batch).expect("appended batches were validated");
        assert!(
            header.base_offset >= self.next_offset,
            "batch offset {} below segment end {}",
            header.base_offset,
            self.next_offset
        );
        self.file.write_at(self.size_bytes, batch)?;
        let position = self.size_bytes;
        self.note_batch(&header, position, batch.len() as u64, index_interval_bytes);
        self.size_bytes += batch.len() as u64;
        self.unsynced = true;
        Ok(())
    }

    /// Byte position of the batch holding `offset`, or of the first batch after it; `None` if
    /// the segment ends before `offset`.
    pub fn position_of(&self, offset: i64) -> io::Result<Option<u64>> {
        if offset >= self.next_offset {
            return Ok(None);
        }
        let relative = u32::try_from((offset - self.base_offset).max(0)).unwrap_or(u32::MAX);
        let mut position = u64::from(self.offset_index.floor_position(relative));
        while position < self.size_bytes {
            let header = self.header_at(position)?;
            if header.last_offset() >= offset {
                return Ok(Some(position));
            }
            position += header.size_bytes().expect("stored batches have sane sizes") as u64;
        }
        Ok(None)
    }

    pub fn header_at(&self, position: u64) -> io::Result<BatchHeader> {
        let bytes = self.file.read_at(position, BATCH_HEADER_BYTES)?;
        BatchHeader::parse(&bytes).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("segment {}: short batch header at {position}", self.base_offset),
            )
        })
    }

    /// Writes the index files; done when the segment is sealed.
    pub fn write_indexes(&self, storage: &dyn Storage, dir: &str) -> io::Result<Vec<NamedFile>> {
        let index_path = format!("{dir}/{}", index_file_name(self.base_offset));
        let index = storage.open(&index_path, true)?;
        index.truncate(0)?;
        index.write_at(0, &self.offset_index.encode())?;
        let time_index_path = format!("{dir}/{}", time_index_file_name(self.base_offset));
        let time_index = storage.open(&time_index_path, true)?;
        time_index.truncate(0)?;
        time_index.write_at(0, &self.time_index.encode())?;
        Ok(vec![NamedFile::new(index_path, index), NamedFile::new(time_index_path, time_index)])
    }

    /// Removes the segment's files.
    pub fn delete_files(&self, storage: &dyn Storage, dir: &str) -> io::Result<()> {
        for name in
            [log_file_name(self.base_offset), index_file_name(self.base_offset), time_index_file_name(self.base_offset)]
        {
            let path = format!("{dir}/{name}");
            if storage.exists(&path)? {
                storage.remove_file(&path)?;
            }
        }
        Ok(())
    }

    /// Cuts the segment so that it ends before `offset`.
    pub fn truncate_to(&mut self, offset: i64, index_interval_bytes: u64) -> io::Result<()> {
        if offset >= self.next_offset {
            return Ok(());
        }
        let position = self.position_of(offset)?.unwrap_or(self.size_bytes);
        self.file.truncate(position)?;
        self.unsynced = true;
        // Rebuild from what remains, checking everything; truncation is rare (replication,
        // recovery).
        self.scan(Some(self.base_offset), index_interval_bytes, None, None)?;
        Ok(())
    }
}

/// The smallest a v2 record can be: length, attributes, timestamp delta, offset delta, key
/// length, value length and header count, one byte each.
const RECORD_BYTES_MIN: i64 = 7;

/// A batch's last offset delta as far as its header can be believed when its CRC cannot be
/// checked or has failed: the span up to `following` (the next batch's base offset) if that
/// is one the batch's bytes can hold; else its last offset delta and its record count less
/// one, which agree in every batch a log stores (produce and replication check it), and of
/// which a single flipped bit changes one; where they disagree, the one its bytes can hold (an
/// uncompressed record takes at least [`RECORD_BYTES_MIN`] bytes), the larger if both can.
pub fn plausible_last_offset_delta(header: &BatchHeader, size: usize, following: Option<i64>) -> i64 {
    let most = if header.compression() != 0 {
        i64::from(i32::MAX)
    } else {
        ((size as i64 - BATCH_HEADER_BYTES as i64) / RECORD_BYTES_MIN - 1).max(0)
    };
    let fits = |delta: i64| (0..=most).contains(&delta);
    if let Some(span) = following.map(|base| base - header.base_offset - 1).filter(|&span| fits(span)) {
        return span;
    }
    let (delta, count_less_one) = (i64::from(header.last_offset_delta), i64::from(header.records_count) - 1);
    match (fits(delta), fits(count_less_one)) {
        (true, true) => delta.max(count_less_one),
        (true, false) => delta,
        (false, true) => count_less_one,
        (false, false) => most,
    }
}
