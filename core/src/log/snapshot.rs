//! Snapshots of a Raft-replicated log, KRaft's `.checkpoint` files: the state of every entry
//! before `end_offset`, the last of which has `epoch` ([`SnapshotId`]). A leader whose log no
//! longer starts where a follower needs it sends that follower its latest snapshot instead
//! (FetchSnapshot); the follower stores it and starts its log over, empty, at the snapshot's end.
//!
//! The metadata log's snapshots hold its image as metadata records (record batches, checked by
//! CRC when they arrive). A partition's are empty: its records are its state, so a follower
//! below the leader's log start (retention or DeleteRecords moved it) starts over at that
//! start, as a Kafka follower out of range does.
//!
//! On disk: `<end offset, 20 digits>-<epoch, 10 digits>.checkpoint` in the log's directory,
//! written atomically (temporary file, fsync, rename, directory fsync); only the latest is kept.

use std::io;

use bytes::Bytes;

use super::batch::{batch_crc, BatchHeader};
use crate::raft::SnapshotId;
use crate::storage::{write_file_atomic, Storage};

const SUFFIX: &str = ".checkpoint";

pub fn file_name(id: SnapshotId) -> String {
    format!("{:020}-{:010}{SUFFIX}", id.end_offset, id.epoch)
}

pub fn parse_file_name(name: &str) -> Option<SnapshotId> {
    let (offset, epoch) = name.strip_suffix(SUFFIX)?.split_once('-')?;
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(offset, 20) || !digits(epoch, 10) {
        return None;
    }
    Some(SnapshotId { end_offset: offset.parse().ok()?, epoch: epoch.parse().ok()? })
}

/// The latest snapshot in `dir`, if any.
pub fn latest(storage: &dyn Storage, dir: &str) -> io::Result<Option<SnapshotId>> {
    Ok(storage.list_dir(dir)?.iter().filter_map(|n| parse_file_name(n)).max())
}

/// Writes the snapshot `id` and removes every older one (a crash in between leaves an older
/// one behind, which the next write removes).
pub fn write(storage: &dyn Storage, dir: &str, id: SnapshotId, bytes: &[u8]) -> io::Result<()> {
    write_file_atomic(storage, dir, &file_name(id), bytes)?;
    for old in storage.list_dir(dir)?.iter().filter_map(|n| parse_file_name(n)).filter(|&old| old < id) {
        storage.remove_file(&format!("{dir}/{}", file_name(old)))?;
    }
    Ok(())
}

/// Up to `max_bytes` of the snapshot `id` from `position`, and its whole size (empty, size 0,
/// if it has no file: a partition's, made by retention). Only the chunk is read.
pub fn read(
    storage: &dyn Storage,
    dir: &str,
    id: SnapshotId,
    position: u64,
    max_bytes: usize,
) -> io::Result<(u64, Bytes)> {
    let path = format!("{dir}/{}", file_name(id));
    if !storage.exists(&path)? {
        return Ok((0, Bytes::new()));
    }
    let file = storage.open(&path, false)?;
    let size = file.len()?;
    let from = position.min(size);
    let len = usize::try_from(size - from).unwrap_or(usize::MAX).min(max_bytes.max(1));
    Ok((size, Bytes::from(file.read_at(from, len)?)))
}

/// Checks that `bytes` are whole record batches, each passing its CRC (a snapshot crossed the
/// network in chunks, and a bad one must not replace a log).
pub fn check(bytes: &[u8]) -> Result<(), String> {
    let mut at = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let header = BatchHeader::parse(rest).ok_or("a snapshot batch is cut short")?;
        let size = header.size_bytes().filter(|&s| s <= rest.len()).ok_or("a snapshot batch is cut short")?;
        if batch_crc(&rest[..size]) != header.crc {
            return Err(format!("the snapshot batch at offset {} fails its CRC", header.base_offset));
        }
        at += size;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::build::{batch, Record};
    use crate::storage::MemStorage;

    #[test]
    fn names_round_trip_and_only_the_latest_is_kept() {
        let id = SnapshotId { end_offset: 1234, epoch: 7 };
        assert_eq!(file_name(id), "00000000000000001234-0000000007.checkpoint");
        assert_eq!(parse_file_name(&file_name(id)), Some(id));
        for bad in ["00000000000000001234-0000000007.checkpoint.tmp", "1234-7.checkpoint", "00000000000000000000.log"] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
        let storage = MemStorage::new();
        storage.create_dir_all("d").unwrap();
        assert_eq!(latest(&storage, "d").unwrap(), None);
        let older = SnapshotId { end_offset: 10, epoch: 2 };
        write(&storage, "d", older, b"old").unwrap();
        write(&storage, "d", id, b"new").unwrap();
        assert_eq!(latest(&storage, "d").unwrap(), Some(id));
        assert_eq!(read(&storage, "d", id, 0, 100).unwrap(), (3, Bytes::from_static(b"new")));
        assert_eq!(read(&storage, "d", id, 1, 1).unwrap(), (3, Bytes::from_static(b"e")), "a chunk");
        assert_eq!(read(&storage, "d", older, 0, 100).unwrap(), (0, Bytes::new()), "the older one is gone");
    }

    #[test]
    fn a_damaged_snapshot_fails_its_check() {
        let mut bytes = batch(&[Record { value: Some(b"state".to_vec()), ..Record::default() }], None);
        assert_eq!(check(&bytes), Ok(()));
        assert!(check(&bytes[..bytes.len() - 1]).is_err(), "cut short");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(check(&bytes).is_err(), "a flipped bit");
    }
}
