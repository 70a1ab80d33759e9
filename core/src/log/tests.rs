//! Log tests on the in-memory disk: append and read, roll, retention, recovery from torn and
//! corrupt tails, and restart with and without index files.

use std::sync::Arc;

use super::batch::build::{batch, simple};
use super::batch::BatchHeader;
use super::*;
use crate::storage::MemStorage;

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        segment_ms: 1_000_000,
        retention_ms: -1,
        retention_bytes: -1,
        index_interval_bytes: 200,
    }
}

fn append_n(log: &mut Log, batches: usize, records_per_batch: usize, now_ms: i64) -> Vec<i64> {
    (0..batches)
        .map(|i| {
            let mut bytes = batch(&simple(records_per_batch, now_ms + i as i64), None);
            log.append(&mut bytes, 0, now_ms).unwrap()
        })
        .collect()
}

fn sync_all(log: &mut Log) {
    let plan = log.plan_sync();
    for file in &plan.files {
        file.file.sync().unwrap();
    }
    log.synced(plan.durable_offset);
}

fn offsets_in(records: &[u8]) -> Vec<i64> {
    let mut position = 0;
    let mut out = Vec::new();
    while position < records.len() {
        let header = BatchHeader::parse(&records[position..]).unwrap();
        out.push(header.base_offset);
        position += header.size_bytes().unwrap();
    }
    out
}

#[test]
fn append_assigns_offsets_and_reads_respect_high_watermark() {
    let storage = Arc::new(MemStorage::new());
    let mut log = Log::create(storage, "t-0", small_config(), 0).unwrap();
    let bases = append_n(&mut log, 3, 4, 0);
    assert_eq!(bases, vec![0, 4, 8]);
    assert_eq!(log.end_offset(), 12);
    // Nothing is durable yet: a consumer sees nothing.
    assert!(log.read(0, 1 << 20, log.durable_offset(), true).unwrap().records.is_empty());
    sync_all(&mut log);
    assert_eq!(log.durable_offset(), 12);
    let read = log.read(5, 1 << 20, log.durable_offset(), true).unwrap();
    // The batch holding offset 5 starts at 4: returned whole.
    assert_eq!(offsets_in(&read.records), vec![4, 8]);
}

#[test]
fn segments_roll_and_reads_cross_them() {
    let storage = Arc::new(MemStorage::new());
    let mut log = Log::create(storage, "t-0", small_config(), 0).unwrap();
    append_n(&mut log, 30, 3, 0);
    assert!(log.segment_count() > 3, "segments: {}", log.segment_count());
    sync_all(&mut log);
    let mut offset = 0;
    let mut seen = Vec::new();
    while offset < log.end_offset() {
        let read = log.read(offset, 700, log.durable_offset(), true).unwrap();
        let bases = offsets_in(&read.records);
        assert!(!bases.is_empty());
        seen.extend(bases.iter().copied());
        offset = *bases.last().unwrap() + 3;
    }
    assert_eq!(seen, (0..30).map(|i| i * 3).collect::<Vec<_>>());
}

#[test]
fn oversized_first_batch_is_returned_whole() {
    let storage = Arc::new(MemStorage::new());
    let mut log = Log::create(storage, "t-0", LogConfig::default(), 0).unwrap();
    append_n(&mut log, 2, 50, 0);
    sync_all(&mut log);
    let read = log.read(0, 10, log.durable_offset(), true).unwrap();
    assert!(read.oversized);
    assert_eq!(offsets_in(&read.records), vec![0]);
    assert!(log.read(0, 10, log.durable_offset(), false).unwrap().records.is_empty());
}

#[test]
fn recovery_truncates_a_torn_tail_and_keeps_synced_data() {
    let storage = Arc::new(MemStorage::new());
    let mut log = Log::create(storage.clone(), "t-0", LogConfig::default(), 0).unwrap();
    append_n(&mut log, 5, 2, 0);
    sync_all(&mut log);
    let durable = log.durable_offset();
    // Unsynced writes, then a torn write: half a batch.
    append_n(&mut log, 2, 2, 0);
    let active = log.segments.last().unwrap();
    let partial = batch(&simple(2, 0), None);
    active.file.write_at(active.size_bytes, &partial[..partial.len() / 2]).unwrap();
    drop(log);
    // Process crash: page cache survives, so unsynced whole batches remain; the torn one goes.
    let (log, report) = Log::open(storage.clone(), "t-0", LogConfig::default(), 0, 0, 0).unwrap();
    assert!(report.truncated_bytes > 0);
    assert_eq!(log.end_offset(), 14);
    // Power loss: only synced bytes survive.
    drop(log);
    storage.crash();
    let (log, _) = Log::open(storage, "t-0", LogConfig::default(), 0, 0, 0).unwrap();
    assert_eq!(log.end_offset(), durable);
}

/// A batch whose new epoch could not be checkpointed is not in the log: recovery keeps only
/// batches of epochs the checkpoint knows, so keeping it would let a restart cut a record
/// that had been synced, acknowledged and counted toward a commit.
#[test]
fn a_failed_epoch_checkpoint_leaves_the_log_unchanged() {
    let disk = crate::storage::failing::FailingStorage::default();
    let storage: Arc<dyn Storage> = Arc::new(disk.clone());
    let mut log = Log::create(storage.clone(), "t-0", LogConfig::default(), 0).unwrap();
    append_n(&mut log, 2, 2, 0);
    disk.fail_under("t-0/leader-epoch-checkpoint");
    let mut next = batch(&simple(2, 0), None);
    assert!(log.append(&mut next.clone(), 1, 0).is_err());
    assert_eq!(log.end_offset(), 4, "the batch of the unrecorded epoch must not stay");
    assert_eq!(log.epochs().latest_epoch(), Some(0));
    disk.heal();
    assert_eq!(log.append(&mut next, 1, 0).unwrap(), 4);
    sync_all(&mut log);
    drop(log);
    disk.tree.crash();
    let (log, report) = Log::open(storage, "t-0", LogConfig::default(), 0, 0, 0).unwrap();
    assert_eq!(report.truncated_bytes, 0);
    assert_eq!(log.end_offset(), 6);
    assert_eq!(log.epochs().entries(), &[(0, 0), (1, 4)]);
}

#[test]
fn recovery_cuts_at_a_flipped_bit() {
    let storage = Arc::new(MemStorage::new());
    let mut log = Log::create(storage.clone(), "t-0", LogConfig::default(), 0).unwrap();
    append_n(&mut log, 4, 2, 0);
    sync_all(&mut log);
    let second_batch_position = batch(&simple(2, 0), None).len();
    drop(log);
    storage.flip_bit("t-0/00000000000000000000.log", second_batch_position + 70, 3);
    let (log, report) = Log::open(storage, "t-0", LogConfig::default(), 0, 0, 0).unwrap();
    assert!(report.truncated_bytes > 0);
    assert_eq!(log.end_offset(), 2, "only the batch before the corrupt one survives");
}

#[test]
fn a_damaged_batchs_reach_is_only_what_its_header_can_be_believed_to_hold() {
    let stride = batch(&simple(3, 0), None).len();
    // (batch, byte within it, bit): the last offset delta of the last batch and of the middle
    // one (+4096), the last batch's record count (+4096), its leader epoch (outside the CRC:
    // 0 becomes 1024), and a record's byte.
    for (index, byte, bit) in [(2, 25, 4), (1, 25, 4), (2, 59, 4), (2, 14, 2), (2, 70, 3)] {
        let storage = Arc::new(MemStorage::new());
        let mut log = Log::create(storage.clone(), "t-0", LogConfig::default(), 0).unwrap();
        append_n(&mut log, 3, 3, 0);
        sync_all(&mut log);
        drop(log);
        storage.flip_bit("t-0/00000000000000000000.log", index * stride + byte, bit);
        let mut seen = Vec::new();
        let mut fence = |reached: LogReach| {
            seen.push(reached);
            Ok(())
        };
        let (log, _) = Log::open_fenced(storage.clone(), "t-0", LogConfig::default(), 0, 0, 0, &mut fence).unwrap();
        let case = format!("batch {index}, byte {byte}, bit {bit}");
        assert_eq!(seen, vec![LogReach { end_offset: 9, last_epoch: 0 }], "{case}: fenced at the log's true end");
        assert_eq!(log.end_offset(), 3 * index as i64, "{case}: cut at the damaged batch");
    }
}

#[test]
fn a_headers_last_offset_delta_is_believed_only_as_far_as_its_bytes_go() {
    let bytes = batch(&simple(3, 0), None);
    let header = BatchHeader::parse(&bytes).unwrap();
    let size = bytes.len();
    assert_eq!(super::segment::plausible_last_offset_delta(&header, size, None), 2);
    assert_eq!(super::segment::plausible_last_offset_delta(&header, size, Some(3)), 2);
    let mut flipped = header;
    flipped.last_offset_delta += 4096;
    assert_eq!(super::segment::plausible_last_offset_delta(&flipped, size, None), 2, "the record count holds");
    flipped.records_count += 4096;
    let most = super::segment::plausible_last_offset_delta(&flipped, size, None);
    assert!((2..10).contains(&most), "both wrong: no more than the bytes hold ({most})");
    // A following batch that the bytes could not reach is no evidence.
    assert_eq!(super::segment::plausible_last_offset_delta(&header, size, Some(5_000)), 2);
}

#[test]
fn recovery_reports_how_far_a_log_with_a_damaged_batch_reached_before_cutting() {
    let storage = Arc::new(MemStorage::new());
    let mut log = Log::create(storage.clone(), "t-0", small_config(), 0).unwrap();
    append_n(&mut log, 30, 3, 0);
    sync_all(&mut log);
    assert!(log.segment_count() > 2);
    let end = log.end_offset();
    let first_segment_bytes = log.segments[0].size_bytes;
    drop(log);
    let second_batch_position = batch(&simple(3, 0), None).len();
    storage.flip_bit("t-0/00000000000000000000.log", second_batch_position + 70, 3);
    let mut seen = Vec::new();
    let mut fence = |reached: LogReach| {
        // Called before anything is cut.
        let file = storage.open("t-0/00000000000000000000.log", false).unwrap();
        seen.push((reached, file.len().unwrap()));
        Ok(())
    };
    let (log, report) = Log::open_fenced(storage.clone(), "t-0", small_config(), 0, 0, 0, &mut fence).unwrap();
    let reach = LogReach { end_offset: end, last_epoch: 0 };
    assert_eq!(seen, vec![(reach, first_segment_bytes)], "past the damage and over the segments dropped");
    assert_eq!(report.damaged_to, Some(reach));
    assert_eq!(log.end_offset(), 3);

    // A torn tail is not damage: nothing to fence.
    let mut log = log;
    append_n(&mut log, 2, 3, 0);
    let active = log.segments.last().unwrap();
    let partial = batch(&simple(2, 0), None);
    active.file.write_at(active.size_bytes, &partial[..partial.len() / 2]).unwrap();
    drop(log);
    let mut fence = |_: LogReach| -> io::Result<()> { panic!("a torn tail is not damage") };
    let (log, report) = Log::open_fenced(storage.clone(), "t-0", small_config(), 0, 0, 0, &mut fence).unwrap();
    assert_eq!((report.damaged_to, log.end_offset()), (None, 9));

    // A fence that cannot be saved stops the open before anything is cut.
    let mut log = log;
    sync_all(&mut log);
    drop(log);
    storage.flip_bit("t-0/00000000000000000000.log", second_batch_position + 70, 3);
    let mut fence = |_: LogReach| Err(io::Error::other("cannot save"));
    assert!(Log::open_fenced(storage.clone(), "t-0", small_config(), 0, 0, 0, &mut fence).is_err());
    let (log, _) = Log::open(storage, "t-0", small_config(), 0, 0, 0).unwrap();
    assert_eq!(log.end_offset(), 3, "the damaged batch was still there to find");
}

#[test]
fn restart_uses_index_files_of_sealed_segments() {
    let storage = Arc::new(MemStorage::new());
    let mut log = Log::create(storage.clone(), "t-0", small_config(), 0).unwrap();
    append_n(&mut log, 40, 3, 0);
    sync_all(&mut log);
    let end = log.end_offset();
    let segments = log.segment_count();
    drop(log);
    let (log, report) = Log::open(storage, "t-0", small_config(), end, 0, 0).unwrap();
    assert_eq!(report.segments, segments);
    assert_eq!(report.segments_scanned, 1, "only the active segment is scanned");
    assert_eq!(log.end_offset(), end);
    let read = log.read(61, 1 << 20, log.durable_offset(), true).unwrap();
    assert_eq!(offsets_in(&read.records)[0], 60);
}

#[test]
fn retention_by_bytes_and_time() {
    let storage = Arc::new(MemStorage::new());
    let mut config = small_config();
    config.retention_bytes = 2048;
    let mut log = Log::create(storage, "t-0", config.clone(), 0).unwrap();
    append_n(&mut log, 40, 3, 1000);
    sync_all(&mut log);
    let before = log.segment_count();
    let start = log.start_after_retention(2000).expect("segments are due");
    assert_eq!(log.segment_count(), before, "planning deletes nothing");
    assert_eq!(log.log_start_offset(), 0);
    log.advance_start(start).unwrap();
    assert!(log.segment_count() < before);
    assert_eq!(log.start_after_retention(2000), None, "nothing more is due");
    assert!(log.size_bytes() < 2048 + 1024);
    assert_eq!(log.log_start_offset(), log.segments[0].base_offset);
    assert!(log.read(0, 100, log.durable_offset(), true).unwrap().records.is_empty());
    config.retention_bytes = -1;
    config.retention_ms = 10;
    log.set_config(config);
    let start = log.start_after_retention(1_000_000).unwrap();
    log.advance_start(start).unwrap();
    assert_eq!(log.segment_count(), 1, "everything but the active segment expired");
    assert_eq!(log.log_start_offset(), log.segments[0].base_offset);
}

#[test]
fn delete_records_moves_start_and_is_bounded_by_high_watermark() {
    let storage = Arc::new(MemStorage::new());
    let mut log = Log::create(storage, "t-0", small_config(), 0).unwrap();
    append_n(&mut log, 20, 3, 0);
    sync_all(&mut log);
    append_n(&mut log, 1, 3, 0);
    assert_eq!(log.start_after_delete_records(1000), 60, "bounded by the high watermark");
    log.advance_start(60).unwrap();
    assert_eq!(log.log_start_offset(), 60);
    assert_eq!(log.start_after_delete_records(30), 60, "never moves back");
}

#[test]
fn offset_for_timestamp_finds_the_record() {
    let storage = Arc::new(MemStorage::new());
    let mut log = Log::create(storage, "t-0", small_config(), 0).unwrap();
    for i in 0..10 {
        let mut bytes = batch(&simple(3, 100 * i), None);
        log.append(&mut bytes, 0, 0).unwrap();
    }
    sync_all(&mut log);
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((0, 0)));
    assert_eq!(log.offset_for_timestamp(201).unwrap(), Some((7, 201)));
    assert_eq!(log.offset_for_timestamp(250).unwrap(), Some((9, 300)));
    assert_eq!(log.offset_for_timestamp(10_000).unwrap(), None);
    assert_eq!(log.offset_of_max_timestamp().unwrap(), Some((29, 902)));
}

proptest::proptest! {
    // Fuzz target for the recovery scan: whatever bytes follow the valid batches in the active
    // segment (a torn write, garbage, a partial header), opening the log never panics, keeps
    // every valid batch before them, and leaves a log that accepts appends.
    #[test]
    fn recovery_survives_any_tail(tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), valid in 0usize..4) {
        let storage = Arc::new(MemStorage::new());
        let mut log = Log::create(storage.clone(), "t-0", LogConfig::default(), 0).unwrap();
        append_n(&mut log, valid, 2, 0);
        sync_all(&mut log);
        let active = log.segments.last().unwrap();
        active.file.write_at(active.size_bytes, &tail).unwrap();
        drop(log);
        let (mut log, _) = Log::open(storage, "t-0", LogConfig::default(), 0, 0, 0).unwrap();
        proptest::prop_assert!(log.end_offset() >= valid as i64 * 2);
        let mut bytes = batch(&simple(1, 0), None);
        let base = log.append(&mut bytes, 0, 0).unwrap();
        proptest::prop_assert_eq!(base + 1, log.end_offset());
    }
}

#[test]
fn recovery_cuts_at_a_batch_whose_base_offset_is_damaged() {
    // Regression (simulator, seed 566): baseOffset lies outside the CRC; a bit flip there made
    // recovery accept a batch far past the log end, and the next append panicked.
    let storage = Arc::new(MemStorage::new());
    let mut log = Log::create(storage.clone(), "t-0", LogConfig::default(), 0).unwrap();
    append_n(&mut log, 3, 2, 0);
    sync_all(&mut log);
    let second_batch_position = batch(&simple(2, 0), None).len();
    drop(log);
    storage.flip_bit("t-0/00000000000000000000.log", second_batch_position + 3, 6);
    let (mut log, report) = Log::open(storage, "t-0", LogConfig::default(), 0, 0, 0).unwrap();
    assert!(report.truncated_bytes > 0);
    assert_eq!(log.end_offset(), 2);
    let mut bytes = batch(&simple(1, 0), None);
    assert_eq!(log.append(&mut bytes, 0, 0).unwrap(), 2);
}

#[test]
fn a_segment_after_a_lost_tail_is_dropped_so_the_log_has_no_hole() {
    let storage = MemStorage::new();
    let mut log = Log::create(Arc::new(storage.clone()), "t-0", small_config(), 0).unwrap();
    append_n(&mut log, 2, 4, 0);
    sync_all(&mut log);
    // Two more batches stay unsynced in the first segment; a roll creates the next one, whose
    // own batch reaches the disk (a crash in the middle of a multi-file sync can do this).
    append_n(&mut log, 2, 4, 0);
    log.roll(0).unwrap();
    append_n(&mut log, 1, 4, 0);
    assert_eq!(log.segment_count(), 2);
    crate::storage::Storage::open(&storage, "t-0/00000000000000000016.log", false).unwrap().sync().unwrap();
    storage.crash();
    let (log, report) = Log::open(Arc::new(storage.clone()), "t-0", small_config(), 8, 0, 0).unwrap();
    // The first segment ends at 8 now; the second, starting at 16, would leave 8..16 a hole.
    assert_eq!(log.end_offset(), 8);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(report.segments_dropped, 1);
    assert!(!crate::storage::Storage::exists(&storage, "t-0/00000000000000000016.log").unwrap());
}

#[test]
fn a_sync_planned_before_a_cut_does_not_cover_what_was_written_after_it() {
    let storage = Arc::new(MemStorage::new());
    let mut log = Log::create(storage, "t-0", small_config(), 0).unwrap();
    append_n(&mut log, 3, 4, 0);
    sync_all(&mut log);
    append_n(&mut log, 2, 4, 0);
    // A sync is planned up to 20; before it completes the log is cut back to 8 and written
    // again up to 16. The planned fsync may have run before those writes.
    let plan = log.plan_sync();
    assert_eq!(plan.durable_offset, 20);
    log.truncate_to(8).unwrap();
    append_n(&mut log, 2, 4, 0);
    assert_eq!(log.end_offset(), 16);
    log.synced(plan.durable_offset);
    assert_eq!(log.durable_offset(), 8, "only what lies before the cut is covered");
    sync_all(&mut log);
    assert_eq!(log.durable_offset(), 16);
}

#[test]
fn an_epoch_whose_first_batch_was_lost_is_not_the_last_epoch_after_a_restart() {
    let storage = MemStorage::new();
    let mut log = Log::create(Arc::new(storage.clone()), "t-0", small_config(), 0).unwrap();
    let mut bytes = batch(&simple(2, 0), None);
    log.append(&mut bytes, 1, 0).unwrap();
    sync_all(&mut log);
    // Epoch 2's first batch reaches the page cache, and its checkpoint the disk; then a crash.
    let mut bytes = batch(&simple(2, 0), None);
    log.append(&mut bytes, 2, 0).unwrap();
    assert_eq!(log.epochs().latest_epoch(), Some(2));
    storage.crash();
    let (mut log, _) = Log::open(Arc::new(storage.clone()), "t-0", small_config(), 2, 0, 0).unwrap();
    assert_eq!(log.end_offset(), 2);
    assert_eq!(log.epochs().latest_epoch(), Some(1), "epoch 2 holds nothing");
    // A cut forgets the epochs that start at or after it.
    let mut bytes = batch(&simple(1, 0), None);
    log.append(&mut bytes, 3, 0).unwrap();
    log.truncate_to(2).unwrap();
    assert_eq!(log.epochs().latest_epoch(), Some(1));
}

#[test]
fn recovery_cuts_at_a_batch_whose_leader_epoch_the_checkpoint_does_not_give() {
    // Regression (simulator, cluster seed 256): partitionLeaderEpoch lies outside the CRC; a
    // crash garbled it in an unsynced batch, recovery kept the batch, and the replica's bytes
    // differed from its peers'.
    let storage = Arc::new(MemStorage::new());
    let mut log = Log::create(storage.clone(), "t-0", LogConfig::default(), 0).unwrap();
    for epoch in [1, 1, 2, 2] {
        let mut bytes = batch(&simple(2, 0), None);
        log.append(&mut bytes, epoch, 0).unwrap();
    }
    sync_all(&mut log);
    drop(log);
    // Reopened from recovery point 0, every batch is checked, and every epoch matches.
    let (log, report) = Log::open(storage.clone(), "t-0", LogConfig::default(), 0, 0, 0).unwrap();
    assert_eq!((log.end_offset(), report.truncated_bytes), (8, 0));
    drop(log);
    let batch_bytes = batch(&simple(2, 0), None).len();
    // Bit 2 of the epoch's lowest byte: the third batch now claims epoch 6.
    storage.flip_bit("t-0/00000000000000000000.log", 2 * batch_bytes + 15, 2);
    let (mut log, report) = Log::open(storage, "t-0", LogConfig::default(), 4, 0, 0).unwrap();
    assert!(report.truncated_bytes > 0);
    assert_eq!(log.end_offset(), 4, "the batch with the garbled epoch and all after it are cut");
    assert_eq!(log.epochs().entries(), &[(1, 0)], "epoch 2 started in what was cut");
    let mut bytes = batch(&simple(1, 0), None);
    assert_eq!(log.append(&mut bytes, 3, 0).unwrap(), 4);
}

#[test]
fn a_checked_read_stops_before_a_damaged_batch_and_names_it() {
    let storage = Arc::new(MemStorage::new());
    let mut log = Log::create(storage.clone(), "t-0", LogConfig::default(), 0).unwrap();
    append_n(&mut log, 3, 4, 0);
    sync_all(&mut log);
    let all = log.read(0, 1 << 20, 12, true).unwrap().records;
    let size = BatchHeader::parse(&all).unwrap().size_bytes().unwrap();
    let file = storage.open("t-0/00000000000000000000.log", false).unwrap();
    let (clean, _) = log.read_checked(0, 1 << 20, 12, true).unwrap();
    assert_eq!(clean.records, all);

    // A bit of the second batch's records: the first batch is served, the second is named.
    let at = (2 * size - 1) as u64;
    let byte = file.read_at(at, 1).unwrap()[0];
    file.write_at(at, &[byte ^ 1]).unwrap();
    let (read, damaged) = log.read_checked(0, 1 << 20, 12, true).unwrap();
    assert_eq!(offsets_in(&read.records), vec![0]);
    assert_eq!(damaged, Some(CorruptBatch { offset: 4, file: "t-0/00000000000000000000.log".into() }));
    let (read, damaged) = log.read_checked(5, 1 << 20, 12, true).unwrap();
    assert!(read.records.is_empty());
    assert_eq!(damaged.map(|d| d.offset), Some(5), "the batch holding the offset asked for");
    file.write_at(at, &[byte]).unwrap();

    // A damaged length (outside the CRC) neither panics nor sizes a huge read.
    let length_at = (size + 8) as u64;
    let length = file.read_at(length_at, 4).unwrap();
    file.write_at(length_at, &[length[0] ^ 0x40, length[1], length[2], length[3]]).unwrap();
    assert_eq!(offsets_in(&log.read(0, 1 << 20, 12, true).unwrap().records), vec![0]);
    let (read, damaged) = log.read_checked(4, 1 << 20, 12, true).unwrap();
    assert!(read.records.is_empty());
    assert_eq!(damaged.map(|d| d.offset), Some(4));
}
