//! A transactional id's state as a record of its `__transaction_state` partition. The
//! coordinator that leads the partition writes one record per state change; a coordinator that
//! takes the partition over replays them, the last record of each id winning, and a tombstone
//! (no value) forgets the id.
//!
//! ```text
//! key:    version u8 = 0 | id len u16 | id (UTF-8)
//! value:  version u8 = 0 | producer id i64 | previous producer id i64 | next producer id i64
//!         | producer epoch i16 | timeout ms i32 | state i8 (Kafka's ids) | tv2 u8
//!         | last update ms i64 | start ms i64 | partition count u32 | partition...
//! partition: topic len u16 | topic (UTF-8) | index i32
//! ```
//!
//! Kafka's own layout (TransactionLogValue v1) needs its flexible encoding for the fields
//! KIP-890 added; no tool reads these records but the coordinator, so the layout is ours.

use super::metadata::{TxnMetadata, TxnState};
use crate::group::membership::{put_str, Reader};
use crate::log::batch::build::Record;

const KEY_VERSION: u8 = 0;
const VALUE_VERSION: u8 = 0;

/// The record of `id`'s state (`Some`), or its tombstone (`None`).
pub fn record(id: &str, meta: Option<&TxnMetadata>, timestamp_ms: i64) -> Record {
    Record { key: Some(encode_key(id)), value: meta.map(encode_value), headers: Vec::new(), timestamp: timestamp_ms }
}

/// A record read back: the id and its state (`None`: a tombstone). `None` for a record that is
/// not a transaction record or is damaged.
pub fn decode(key: Option<&[u8]>, value: Option<&[u8]>) -> Option<(String, Option<TxnMetadata>)> {
    let mut key = Reader(key?);
    if key.u8()? != KEY_VERSION {
        return None;
    }
    let id = key.str()?;
    match value {
        None => Some((id, None)),
        Some(value) => Some((id, Some(decode_value(value)?))),
    }
}

fn encode_key(id: &str) -> Vec<u8> {
    let mut out = vec![KEY_VERSION];
    put_str(&mut out, id);
    out
}

fn encode_value(meta: &TxnMetadata) -> Vec<u8> {
    let mut out = vec![VALUE_VERSION];
    out.extend_from_slice(&meta.producer_id.to_be_bytes());
    out.extend_from_slice(&meta.prev_producer_id.to_be_bytes());
    out.extend_from_slice(&meta.next_producer_id.to_be_bytes());
    out.extend_from_slice(&meta.producer_epoch.to_be_bytes());
    out.extend_from_slice(&meta.timeout_ms.to_be_bytes());
    out.push(meta.state.id() as u8);
    out.push(u8::from(meta.tv2));
    out.extend_from_slice(&meta.last_update_ms.to_be_bytes());
    out.extend_from_slice(&meta.start_ms.to_be_bytes());
    out.extend_from_slice(&(meta.partitions.len() as u32).to_be_bytes());
    for (topic, index) in &meta.partitions {
        put_str(&mut out, topic);
        out.extend_from_slice(&index.to_be_bytes());
    }
    out
}

fn decode_value(bytes: &[u8]) -> Option<TxnMetadata> {
    let mut r = Reader(bytes);
    if r.u8()? != VALUE_VERSION {
        return None;
    }
    let producer_id = r.i64()?;
    let prev_producer_id = r.i64()?;
    let next_producer_id = r.i64()?;
    let producer_epoch = i16::from_be_bytes(r.take(2)?.try_into().ok()?);
    let timeout_ms = r.i32()?;
    let state = TxnState::from_id(r.u8()? as i8)?;
    let tv2 = r.u8()? != 0;
    let last_update_ms = r.i64()?;
    let start_ms = r.i64()?;
    let count = r.u32()?;
    let mut partitions = std::collections::BTreeSet::new();
    for _ in 0..count {
        let topic = r.str()?;
        partitions.insert((topic, r.i32()?));
    }
    Some(TxnMetadata {
        producer_id,
        prev_producer_id,
        next_producer_id,
        producer_epoch,
        last_producer_epoch: -1,
        timeout_ms,
        state,
        partitions,
        last_update_ms,
        start_ms,
        tv2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_reads_back_as_written_and_a_tombstone_forgets() {
        let mut meta = TxnMetadata::new(42, 30_000, 1_000);
        meta.state = TxnState::Ongoing;
        meta.tv2 = true;
        meta.start_ms = 1_500;
        meta.partitions.insert(("orders".into(), 3));
        meta.partitions.insert(("__consumer_offsets".into(), 7));
        let written = record("tx-1", Some(&meta), 2_000);
        let read = decode(written.key.as_deref(), written.value.as_deref());
        assert_eq!(read, Some(("tx-1".to_string(), Some(meta.clone()))));
        let tombstone = record("tx-1", None, 3_000);
        assert_eq!(decode(tombstone.key.as_deref(), None), Some(("tx-1".to_string(), None)));
        // A damaged value is not taken for a state.
        let value = written.value.unwrap();
        assert_eq!(decode(written.key.as_deref(), Some(&value[..value.len() - 1])), None);
    }
}
