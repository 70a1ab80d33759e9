//! Kafka RecordBatch v2, handled without decoding records.
//!
//! The broker stores batches exactly as producers send them. It reads only the fixed 61-byte
//! header, checks it, and patches the two fields that lie outside the CRC (`baseOffset` and
//! `partitionLeaderEpoch`). Layout (big-endian):
//!
//! ```text
//!  0 baseOffset i64        | 12 partitionLeaderEpoch i32 | 21 attributes i16  | 43 producerId i64
//!  8 batchLength i32       | 16 magic i8                 | 23 lastOffsetDelta | 51 producerEpoch i16
//!                          | 17 crc u32 (CRC-32C of 21..)| 27 baseTimestamp   | 53 baseSequence i32
//!                          |                             | 35 maxTimestamp    | 57 recordsCount i32
//! ```

use crate::constants::BATCH_HEADER_BYTES;
use crate::error::ErrorCode;

/// Bytes before `batchLength`'s count starts: baseOffset and batchLength themselves.
pub const LOG_OVERHEAD_BYTES: usize = 12;

const ATTR_COMPRESSION_MASK: i16 = 0x07;
const ATTR_TIMESTAMP_LOG_APPEND: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;

/// Producer id meaning "not an idempotent producer".
pub const NO_PRODUCER_ID: i64 = -1;

/// The fixed header of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Bytes after the length field; the whole batch is `LOG_OVERHEAD_BYTES + batch_length`.
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

impl BatchHeader {
    /// Reads a header from the first 61 bytes. Checks nothing but length.
    pub fn parse(bytes: &[u8]) -> Option<BatchHeader> {
        if bytes.len() < BATCH_HEADER_BYTES {
            return None;
        }
        let i64_at = |at: usize| i64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let i32_at = |at: usize| i32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let i16_at = |at: usize| i16::from_be_bytes(bytes[at..at + 2].try_into().expect("2 bytes"));
        Some(BatchHeader {
            base_offset: i64_at(0),
            batch_length: i32_at(8),
            partition_leader_epoch: i32_at(12),
            magic: bytes[16] as i8,
            crc: u32::from_be_bytes(bytes[17..21].try_into().expect("4 bytes")),
            attributes: i16_at(21),
            last_offset_delta: i32_at(23),
            base_timestamp: i64_at(27),
            max_timestamp: i64_at(35),
            producer_id: i64_at(43),
            producer_epoch: i16_at(51),
            base_sequence: i32_at(53),
            records_count: i32_at(57),
        })
    }

    /// Size of the whole batch in bytes, if `batch_length` is sane.
    pub fn size_bytes(&self) -> Option<usize> {
        let length = usize::try_from(self.batch_length).ok()?;
        let size = length.checked_add(LOG_OVERHEAD_BYTES)?;
        (size >= BATCH_HEADER_BYTES).then_some(size)
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    pub fn compression(&self) -> i16 {
        self.attributes & ATTR_COMPRESSION_MASK
    }

    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTR_TIMESTAMP_LOG_APPEND != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    pub fn is_idempotent(&self) -> bool {
        self.producer_id != NO_PRODUCER_ID
    }

    /// Sequence number of the last record, wrapping at `i32::MAX` as Kafka does.
    pub fn last_sequence(&self) -> i32 {
        sequence_add(self.base_sequence, self.last_offset_delta)
    }
}

/// Adds to a producer sequence number, wrapping from `i32::MAX` to 0.
pub fn sequence_add(sequence: i32, delta: i32) -> i32 {
    let sum = i64::from(sequence) + i64::from(delta);
    let wrapped = sum % (i64::from(i32::MAX) + 1);
    i32::try_from(wrapped).expect("wrapped into i32 range")
}

/// CRC-32C of a batch: over everything from `attributes` to the end.
pub fn batch_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[21..])
}

/// A batch from a producer that passed validation, with where it sits in the request's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidBatch {
    pub header: BatchHeader,
    pub start: usize,
    pub end: usize,
}

/// Checks the record set of one partition of a Produce request, batch by batch, without
/// decoding records. Errors are the Kafka codes the producer should see.
pub fn validate_produce(records: &[u8], message_bytes_max: i32) -> Result<Vec<ValidBatch>, ErrorCode> {
    let mut batches = Vec::new();
    let mut position = 0;
    if records.is_empty() {
        return Err(ErrorCode::CorruptMessage);
    }
    while position < records.len() {
        let rest = &records[position..];
        let header = BatchHeader::parse(rest).ok_or(ErrorCode::CorruptMessage)?;
        if header.magic != 2 {
            return Err(ErrorCode::UnsupportedForMessageFormat);
        }
        let size = header.size_bytes().ok_or(ErrorCode::CorruptMessage)?;
        if size > rest.len() {
            return Err(ErrorCode::CorruptMessage);
        }
        if i64::try_from(size).unwrap_or(i64::MAX) > i64::from(message_bytes_max) {
            return Err(ErrorCode::MessageTooLarge);
        }
        let batch = &rest[..size];
        if batch_crc(batch) != header.crc {
            return Err(ErrorCode::CorruptMessage);
        }
        if header.records_count <= 0 || header.last_offset_delta < 0 {
            return Err(ErrorCode::InvalidRecord);
        }
        if i64::from(header.last_offset_delta) + 1 != i64::from(header.records_count) {
            return Err(ErrorCode::InvalidRecord);
        }
        if header.compression() > 4 {
            return Err(ErrorCode::UnsupportedCompressionType);
        }
        if header.is_control() {
            // Only the broker writes control batches (transaction markers).
            return Err(ErrorCode::InvalidRecord);
        }
        if header.is_idempotent() && (header.base_sequence < 0 || header.producer_epoch < 0) {
            return Err(ErrorCode::InvalidRecord);
        }
        batches.push(ValidBatch { header, start: position, end: position + size });
        position += size;
    }
    Ok(batches)
}

/// Sets `baseOffset` and `partitionLeaderEpoch`, which the CRC does not cover.
pub fn patch_offset_and_epoch(batch: &mut [u8], base_offset: i64, leader_epoch: i32) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
    batch[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
}

/// Marks a batch as LogAppendTime with `now_ms` as its max timestamp, and recomputes the CRC
/// (the only case where the broker rewrites bytes the CRC covers).
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attributes = i16::from_be_bytes([batch[21], batch[22]]) | ATTR_TIMESTAMP_LOG_APPEND;
    batch[21..23].copy_from_slice(&attributes.to_be_bytes());
    batch[35..43].copy_from_slice(&now_ms.to_be_bytes());
    let crc = batch_crc(batch);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// What a scan of stored bytes found at one position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanItem {
    Batch(BatchHeader),
    /// The bytes end partway through a batch: a torn write.
    Torn,
    /// The bytes are a whole batch by length, but the header or CRC is wrong.
    Corrupt,
}

/// Reads the batch at the start of `bytes` as a recovery scan does: with its CRC checked.
/// `bytes` must hold the whole batch; the caller reads the header first to learn its size.
pub fn check_stored(bytes: &[u8]) -> ScanItem {
    let Some(header) = BatchHeader::parse(bytes) else {
        return ScanItem::Torn;
    };
    let Some(size) = header.size_bytes() else {
        return ScanItem::Corrupt;
    };
    if header.magic != 2 {
        return ScanItem::Corrupt;
    }
    if bytes.len() < size {
        return ScanItem::Torn;
    }
    if batch_crc(&bytes[..size]) != header.crc || header.last_offset_delta < 0 {
        return ScanItem::Corrupt;
    }
    ScanItem::Batch(header)
}

/// One record of an uncompressed batch, for finding offsets by timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordView {
    pub offset: i64,
    pub timestamp: i64,
}

/// Lists the offsets and timestamps of the records in a batch, decompressing its records if
/// needed. `None` for malformed record bytes or a batch that fails to decompress.
pub fn records_of(batch: &[u8]) -> Option<Vec<RecordView>> {
    Some(decode_records(batch)?.into_iter().map(|r| RecordView { offset: r.offset, timestamp: r.timestamp }).collect())
}

/// A record's offset, key and value, for the broker's own internal logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadRecord {
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

/// Decodes the keys and values of a batch (decompressing if needed). `None` if malformed.
pub fn payload_records(batch: &[u8]) -> Option<Vec<PayloadRecord>> {
    Some(
        decode_records(batch)?
            .into_iter()
            .map(|r| PayloadRecord { offset: r.offset, key: r.key, value: r.value })
            .collect(),
    )
}

/// One record with everything a consumer sees (clients decode fetched batches with this).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedRecord {
    pub offset: i64,
    /// Create time, or the broker's append time when the batch says so.
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// In order; a key may repeat.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Decodes every record of one batch (decompressing if needed), checking nothing but
/// structure. `None` if malformed or if it fails to decompress.
pub fn decode_records(batch: &[u8]) -> Option<Vec<DecodedRecord>> {
    let header = BatchHeader::parse(batch)?;
    let size = header.size_bytes()?.min(batch.len());
    let body = batch.get(BATCH_HEADER_BYTES..size)?;
    let decompressed;
    let records = if header.compression() == 0 {
        body
    } else {
        decompressed = super::compression::decompress(header.compression(), body).ok()?;
        &decompressed[..]
    };
    let mut reader = VarReader { bytes: records, position: 0 };
    let count = usize::try_from(header.records_count).ok()?;
    let mut out = Vec::with_capacity(count.min(records.len()));
    for _ in 0..count {
        let length = usize::try_from(reader.varint()?).ok()?;
        let record_start = reader.position;
        let _attributes = reader.byte()?;
        let timestamp_delta = reader.varlong()?;
        let offset_delta = reader.varint()?;
        let key = reader.bytes()?;
        let value = reader.bytes()?;
        let header_count = usize::try_from(reader.varint()?).ok()?;
        let mut headers = Vec::with_capacity(header_count.min(64));
        for _ in 0..header_count {
            let name = String::from_utf8(reader.bytes()??).ok()?;
            headers.push((name, reader.bytes()?));
        }
        let record_end = record_start.checked_add(length)?;
        if reader.position > record_end || record_end > reader.bytes.len() {
            return None;
        }
        reader.position = record_end;
        let timestamp = if header.is_log_append_time() {
            header.max_timestamp
        } else {
            header.base_timestamp.checked_add(timestamp_delta)?
        };
        out.push(DecodedRecord {
            offset: header.base_offset + i64::from(offset_delta),
            timestamp,
            key,
            value,
            headers,
        });
    }
    Some(out)
}

/// The type of a control batch's record (0 abort, 1 commit, 2 leader change, ...): the second
/// int16 of its key. `None` for a data batch or a malformed one.
pub fn control_type(batch: &[u8]) -> Option<i16> {
    if !BatchHeader::parse(batch)?.is_control() {
        return None;
    }
    let key = payload_records(batch)?.into_iter().next()?.key?;
    Some(i16::from_be_bytes(key.get(2..4)?.try_into().ok()?))
}

/// A transaction marker as the broker writes it into a partition: a control batch of one
/// record, transactional, from the producer whose transaction it ends, with base sequence -1.
/// Key: version 0 and `control_type` (0 abort, 1 commit); value: version 0 and the epoch of
/// the transaction coordinator that wrote it.
pub fn marker_batch(
    producer_id: i64,
    producer_epoch: i16,
    control_type: i16,
    coordinator_epoch: i32,
    timestamp: i64,
) -> Vec<u8> {
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&control_type.to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    let mut batch = build::control_batch(key, value, timestamp);
    batch[43..51].copy_from_slice(&producer_id.to_be_bytes());
    batch[51..53].copy_from_slice(&producer_epoch.to_be_bytes());
    build::transactional(batch)
}

struct VarReader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl VarReader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let byte = *self.bytes.get(self.position)?;
        self.position += 1;
        Some(byte)
    }

    fn varlong(&mut self) -> Option<i64> {
        let mut raw: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            raw |= u64::from(byte & 0x7F) << shift;
            if byte & 0x80 == 0 {
                return Some(((raw >> 1) as i64) ^ -((raw & 1) as i64));
            }
        }
        None
    }

    fn varint(&mut self) -> Option<i32> {
        i32::try_from(self.varlong()?).ok()
    }

    /// A length-prefixed byte string; length -1 is null.
    fn bytes(&mut self) -> Option<Option<Vec<u8>>> {
        let length = self.varint()?;
        if length < 0 {
            return Some(None);
        }
        let end = self.position.checked_add(usize::try_from(length).ok()?)?;
        let bytes = self.bytes.get(self.position..end)?.to_vec();
        self.position = end;
        Some(Some(bytes))
    }
}

/// Builds v2 batches. The broker never builds producer batches; tests, benchmarks and the
/// simulator's clients do.
pub mod build {
    use super::*;

    #[derive(Debug, Clone, Default)]
    pub struct Record {
        pub key: Option<Vec<u8>>,
        pub value: Option<Vec<u8>>,
        pub headers: Vec<(String, Option<Vec<u8>>)>,
        pub timestamp: i64,
    }

    /// Producer identity for idempotent batches: (producer id, epoch, base sequence).
    #[derive(Debug, Clone, Copy)]
    pub struct Idempotence {
        pub producer_id: i64,
        pub producer_epoch: i16,
        pub base_sequence: i32,
    }

    /// An uncompressed batch holding `records`, with base offset 0.
    pub fn batch(records: &[Record], idempotence: Option<Idempotence>) -> Vec<u8> {
        compressed_batch(records, idempotence, 0).expect("codec 0 cannot fail")
    }

    /// A batch holding `records` compressed with `codec` (0 none, 1 gzip, 2 snappy, 3 lz4,
    /// 4 zstd), with base offset 0.
    pub fn compressed_batch(
        records: &[Record],
        idempotence: Option<Idempotence>,
        codec: i16,
    ) -> Result<Vec<u8>, String> {
        assert!(!records.is_empty(), "a batch holds at least one record");
        let base_timestamp = records.iter().map(|r| r.timestamp).min().unwrap_or(0);
        let max_timestamp = records.iter().map(|r| r.timestamp).max().unwrap_or(0);
        let mut body = Vec::new();
        for (index, record) in records.iter().enumerate() {
            let mut encoded = Vec::new();
            encoded.push(0u8);
            put_varlong(&mut encoded, record.timestamp - base_timestamp);
            put_varlong(&mut encoded, index as i64);
            put_bytes(&mut encoded, record.key.as_deref());
            put_bytes(&mut encoded, record.value.as_deref());
            put_varlong(&mut encoded, record.headers.len() as i64);
            for (key, value) in &record.headers {
                put_bytes(&mut encoded, Some(key.as_bytes()));
                put_bytes(&mut encoded, value.as_deref());
            }
            put_varlong(&mut body, encoded.len() as i64);
            body.extend_from_slice(&encoded);
        }
        let body = crate::log::compression::compress(codec, &body)?;
        let (producer_id, producer_epoch, base_sequence) = match idempotence {
            Some(i) => (i.producer_id, i.producer_epoch, i.base_sequence),
            None => (NO_PRODUCER_ID, -1, -1),
        };
        let count = i32::try_from(records.len()).expect("record count fits i32");
        let mut batch = Vec::with_capacity(BATCH_HEADER_BYTES + body.len());
        batch.extend_from_slice(&0i64.to_be_bytes());
        let batch_length = i32::try_from(BATCH_HEADER_BYTES - LOG_OVERHEAD_BYTES + body.len()).expect("fits");
        batch.extend_from_slice(&batch_length.to_be_bytes());
        batch.extend_from_slice(&(-1i32).to_be_bytes());
        batch.push(2);
        batch.extend_from_slice(&0u32.to_be_bytes());
        batch.extend_from_slice(&(codec & ATTR_COMPRESSION_MASK).to_be_bytes());
        batch.extend_from_slice(&(count - 1).to_be_bytes());
        batch.extend_from_slice(&base_timestamp.to_be_bytes());
        batch.extend_from_slice(&max_timestamp.to_be_bytes());
        batch.extend_from_slice(&producer_id.to_be_bytes());
        batch.extend_from_slice(&producer_epoch.to_be_bytes());
        batch.extend_from_slice(&base_sequence.to_be_bytes());
        batch.extend_from_slice(&count.to_be_bytes());
        batch.extend_from_slice(&body);
        let crc = batch_crc(&batch);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        Ok(batch)
    }

    /// The same batch marked transactional (attributes bit 4), its CRC recomputed.
    pub fn transactional(mut batch: Vec<u8>) -> Vec<u8> {
        let attributes = i16::from_be_bytes([batch[21], batch[22]]) | ATTR_TRANSACTIONAL;
        batch[21..23].copy_from_slice(&attributes.to_be_bytes());
        let crc = batch_crc(&batch);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        batch
    }

    /// A control batch (attributes bit 5) holding one control record with `key` and `value`:
    /// Kafka writes transaction markers and KRaft its leader changes this way, and consumers
    /// skip such batches.
    pub fn control_batch(key: Vec<u8>, value: Vec<u8>, timestamp: i64) -> Vec<u8> {
        let record = Record { key: Some(key), value: Some(value), headers: Vec::new(), timestamp };
        let mut batch = batch(&[record], None);
        let attributes = i16::from_be_bytes([batch[21], batch[22]]) | ATTR_CONTROL;
        batch[21..23].copy_from_slice(&attributes.to_be_bytes());
        let crc = batch_crc(&batch);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        batch
    }

    fn put_varlong(out: &mut Vec<u8>, value: i64) {
        let mut raw = ((value << 1) ^ (value >> 63)) as u64;
        loop {
            let byte = (raw & 0x7F) as u8;
            raw >>= 7;
            if raw == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    fn put_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
        match bytes {
            None => put_varlong(out, -1),
            Some(b) => {
                put_varlong(out, b.len() as i64);
                out.extend_from_slice(b);
            }
        }
    }

    /// `count` small records with timestamps `timestamp_first..`.
    pub fn simple(count: usize, timestamp_first: i64) -> Vec<Record> {
        (0..count)
            .map(|i| Record {
                key: Some(format!("k{i}").into_bytes()),
                value: Some(format!("value-{i}").into_bytes()),
                headers: vec![("h".to_string(), Some(b"v".to_vec()))],
                timestamp: timestamp_first + i as i64,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn built_batch_validates() {
        let batch = batch(&simple(3, 1000), None);
        let valid = validate_produce(&batch, 1 << 20).unwrap();
        assert_eq!(valid.len(), 1);
        assert_eq!(valid[0].header.records_count, 3);
        assert_eq!(valid[0].header.max_timestamp, 1002);
        assert_eq!(valid[0].end, batch.len());
    }

    #[test]
    fn wrong_crc_is_corrupt() {
        let mut batch = batch(&simple(3, 1000), None);
        let last = batch.len() - 1;
        batch[last] ^= 1;
        assert_eq!(validate_produce(&batch, 1 << 20), Err(ErrorCode::CorruptMessage));
    }

    #[test]
    fn too_large_is_refused() {
        let batch = batch(&simple(50, 0), None);
        assert_eq!(validate_produce(&batch, 100), Err(ErrorCode::MessageTooLarge));
    }

    #[test]
    fn truncated_is_corrupt() {
        let batch = batch(&simple(3, 0), None);
        assert_eq!(validate_produce(&batch[..batch.len() - 1], 1 << 20), Err(ErrorCode::CorruptMessage));
        assert_eq!(validate_produce(&batch[..30], 1 << 20), Err(ErrorCode::CorruptMessage));
    }

    #[test]
    fn count_mismatch_is_invalid() {
        let mut batch = batch(&simple(3, 0), None);
        batch[57..61].copy_from_slice(&5i32.to_be_bytes());
        let crc = batch_crc(&batch);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(validate_produce(&batch, 1 << 20), Err(ErrorCode::InvalidRecord));
    }

    #[test]
    fn patching_keeps_crc_valid() {
        let mut batch = batch(&simple(2, 0), None);
        patch_offset_and_epoch(&mut batch, 4242, 7);
        match check_stored(&batch) {
            ScanItem::Batch(h) => {
                assert_eq!(h.base_offset, 4242);
                assert_eq!(h.partition_leader_epoch, 7);
            }
            other => panic!("expected a batch, got {other:?}"),
        }
    }

    #[test]
    fn log_append_time_rewrites_crc() {
        let mut batch = batch(&simple(2, 0), None);
        set_log_append_time(&mut batch, 99);
        let ScanItem::Batch(h) = check_stored(&batch) else { panic!("corrupt after rewrite") };
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 99);
    }

    #[test]
    fn records_of_a_batch() {
        let mut batch = batch(&simple(4, 500), None);
        patch_offset_and_epoch(&mut batch, 10, 0);
        let records = records_of(&batch).unwrap();
        let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![10, 11, 12, 13]);
        assert_eq!(records[3].timestamp, 503);
    }

    #[test]
    fn payload_records_round_trip() {
        let mut records = simple(3, 0);
        records[1].key = None;
        records[2].value = None;
        let mut bytes = batch(&records, None);
        patch_offset_and_epoch(&mut bytes, 7, 0);
        let decoded = payload_records(&bytes).unwrap();
        assert_eq!(decoded.len(), 3);
        assert_eq!(decoded[0].offset, 7);
        assert_eq!(decoded[0].key.as_deref(), Some(&b"k0"[..]));
        assert_eq!(decoded[1].key, None);
        assert_eq!(decoded[2].value, None);
        assert_eq!(decoded[2].offset, 9);
    }

    #[test]
    fn sequences_wrap() {
        assert_eq!(sequence_add(i32::MAX, 1), 0);
        assert_eq!(sequence_add(5, 3), 8);
    }

    proptest! {
        // Fuzz target for the batch validator: arbitrary bytes never panic, and anything it
        // accepts really is a sequence of whole, CRC-valid batches.
        #[test]
        fn validator_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(batches) = validate_produce(&bytes, 1 << 20) {
                let mut position = 0;
                for b in batches {
                    prop_assert_eq!(b.start, position);
                    prop_assert!(matches!(check_stored(&bytes[b.start..b.end]), ScanItem::Batch(_)));
                    position = b.end;
                }
                prop_assert_eq!(position, bytes.len());
            }
            // Only that these return, whatever the bytes, matters here; their results are checked elsewhere.
            let _ = check_stored(&bytes);
            let _ = records_of(&bytes);
            let _ = payload_records(&bytes);
        }

        #[test]
        fn validator_survives_mutation(flip in 0usize..200, bit in 0u8..8) {
            let mut batch = batch(&simple(3, 0), None);
            let at = flip % batch.len();
            batch[at] ^= 1 << bit;
            // Either caught, or the flip was in a field outside the CRC.
            if validate_produce(&batch, 1 << 20).is_ok() {
                prop_assert!(at < 21);
            }
        }
    }
}
