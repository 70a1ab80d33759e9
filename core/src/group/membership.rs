//! A classic group's membership as a record of the `__consumer_offsets` log, so that a
//! coordinator that takes the group over (a restart, or a failover in a cluster) carries on
//! with the same generation, members and assignments instead of making every member rejoin.
//!
//! The coordinator writes a group's record when a generation's assignment is decided (the
//! leader's SyncGroup; the members' SyncGroup answers wait until the record is committed, so
//! no member acts on an assignment a new coordinator would not know), when the group becomes
//! empty, and when a static member takes over its old identity. The record sits beside the
//! offsets in the same log, under a key of its own version, which older readers of the log
//! skip:
//!
//! ```text
//! key:    version u8 = 1 | group len u16 | group
//! value:  version u8 = 0 | generation i32 | protocol type opt-str | protocol opt-str
//!         | leader opt-str | member count u32 | member...
//! member: member id str | instance id opt-str | client id str | session timeout ms i32
//!         | rebalance timeout ms i32 | metadata len u32 | metadata | assignment len u32
//!         | assignment
//! str:     len u16 | UTF-8 bytes;  opt-str: present u8 (0 or 1) | str when present
//! ```
//!
//! A tombstone (no value) forgets the group: DeleteGroups writes one.

use bytes::Bytes;

use crate::log::batch::build::Record;

/// The version byte that opens a group record's key (offset keys open with 0).
const KEY_VERSION: u8 = 1;
const VALUE_VERSION: u8 = 0;

/// What a coordinator needs to take a group over: its generation, and each member with its
/// metadata for the chosen protocol and its assignment, in join order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredGroup {
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: Vec<StoredMember>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    /// The member's metadata for the group's protocol.
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// The log record for `group`'s membership (`Some`), or its tombstone (`None`).
pub fn record(group: &str, stored: Option<&StoredGroup>, timestamp_ms: i64) -> Record {
    Record {
        key: Some(encode_key(group)),
        value: stored.map(encode_value),
        headers: Vec::new(),
        timestamp: timestamp_ms,
    }
}

/// A record read back from the offsets log: `None` if its key is not a group record's;
/// `Some((group, None))` for a tombstone, or for a value this version cannot read (the group
/// is then taken over without its members, which rejoin).
pub fn decode(key: Option<&[u8]>, value: Option<&[u8]>) -> Option<(String, Option<StoredGroup>)> {
    let mut r = Reader(key?);
    if r.u8()? != KEY_VERSION {
        return None;
    }
    let group = r.str()?;
    if !r.0.is_empty() {
        return None;
    }
    Some((group, value.and_then(decode_value)))
}

fn encode_key(group: &str) -> Vec<u8> {
    let mut out = vec![KEY_VERSION];
    put_str(&mut out, group);
    out
}

fn encode_value(stored: &StoredGroup) -> Vec<u8> {
    let mut out = vec![VALUE_VERSION];
    out.extend_from_slice(&stored.generation.to_be_bytes());
    put_opt_str(&mut out, stored.protocol_type.as_deref());
    put_opt_str(&mut out, stored.protocol.as_deref());
    put_opt_str(&mut out, stored.leader.as_deref());
    let count = u32::try_from(stored.members.len()).expect("group.max.size bounds the members");
    out.extend_from_slice(&count.to_be_bytes());
    for m in &stored.members {
        put_str(&mut out, &m.member_id);
        put_opt_str(&mut out, m.instance_id.as_deref());
        put_str(&mut out, &m.client_id);
        out.extend_from_slice(&m.session_timeout_ms.to_be_bytes());
        out.extend_from_slice(&m.rebalance_timeout_ms.to_be_bytes());
        put_bytes(&mut out, &m.metadata);
        put_bytes(&mut out, &m.assignment);
    }
    out
}

fn decode_value(bytes: &[u8]) -> Option<StoredGroup> {
    let mut r = Reader(bytes);
    if r.u8()? != VALUE_VERSION {
        return None;
    }
    let generation = r.i32()?;
    let protocol_type = r.opt_str()?;
    let protocol = r.opt_str()?;
    let leader = r.opt_str()?;
    let count = r.u32()?;
    let mut members = Vec::new();
    for _ in 0..count {
        members.push(StoredMember {
            member_id: r.str()?,
            instance_id: r.opt_str()?,
            client_id: r.str()?,
            session_timeout_ms: r.i32()?,
            rebalance_timeout_ms: r.i32()?,
            metadata: r.bytes()?,
            assignment: r.bytes()?,
        });
    }
    if !r.0.is_empty() {
        return None;
    }
    Some(StoredGroup { generation, protocol_type, protocol, leader, members })
}

pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    // Kafka's strings on the wire are at most i16::MAX bytes long, so every id fits.
    let len = u16::try_from(s.len()).expect("ids from the wire are shorter than 64 KiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).expect("a request's bytes are bounded far below 4 GiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Reads the big-endian fields of the broker's own internal records, `None` when short.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl Reader<'_> {
    pub(crate) fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    pub(crate) fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    pub(crate) fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    pub(crate) fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    pub(crate) fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    pub(crate) fn str(&mut self) -> Option<String> {
        let len = u16::from_be_bytes(self.take(2)?.try_into().ok()?) as usize;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
    fn opt_str(&mut self) -> Option<Option<String>> {
        match self.u8()? {
            0 => Some(None),
            1 => Some(Some(self.str()?)),
            _ => None,
        }
    }
    fn bytes(&mut self) -> Option<Bytes> {
        let len = self.u32()? as usize;
        Some(Bytes::copy_from_slice(self.take(len)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::OffsetStore;

    fn group() -> StoredGroup {
        StoredGroup {
            generation: 7,
            protocol_type: Some("consumer".into()),
            protocol: Some("range".into()),
            leader: Some("a-1".into()),
            members: vec![
                StoredMember {
                    member_id: "a-1".into(),
                    instance_id: None,
                    client_id: "a".into(),
                    session_timeout_ms: 10_000,
                    rebalance_timeout_ms: 30_000,
                    metadata: Bytes::from_static(b"meta-a"),
                    assignment: Bytes::from_static(b"assign-a"),
                },
                StoredMember {
                    member_id: "b-2".into(),
                    instance_id: Some("b".into()),
                    client_id: "b".into(),
                    session_timeout_ms: 6_000,
                    rebalance_timeout_ms: 6_000,
                    metadata: Bytes::new(),
                    assignment: Bytes::from_static(b"assign-b"),
                },
            ],
        }
    }

    #[test]
    fn group_records_round_trip_and_tombstones_forget() {
        let stored = group();
        let r = record("g", Some(&stored), 5);
        assert_eq!(decode(r.key.as_deref(), r.value.as_deref()), Some(("g".to_string(), Some(stored))));
        let tombstone = record("g", None, 6);
        assert_eq!(decode(tombstone.key.as_deref(), tombstone.value.as_deref()), Some(("g".to_string(), None)));
    }

    #[test]
    fn group_and_offset_records_do_not_read_as_each_other() {
        let r = record("g", Some(&group()), 5);
        let mut offsets = OffsetStore::default();
        offsets.apply_record(r.key.as_deref(), r.value.as_deref());
        assert!(offsets.is_empty(), "an offsets reader skips group records");
        let key = ("g".to_string(), "t".to_string(), 0);
        let value = crate::group::CommittedOffset { offset: 1, leader_epoch: 0, metadata: String::new(), commit_ms: 1 };
        let offset = crate::group::offsets::record(&key, Some(&value), 1);
        assert_eq!(decode(offset.key.as_deref(), offset.value.as_deref()), None);
    }

    #[test]
    fn a_truncated_or_unknown_value_reads_as_a_group_without_members() {
        let r = record("g", Some(&group()), 5);
        let value = r.value.expect("a record");
        for cut in 0..value.len() {
            assert_eq!(decode(r.key.as_deref(), Some(&value[..cut])), Some(("g".to_string(), None)), "cut at {cut}");
        }
        let mut future = value.clone();
        future[0] = 9;
        assert_eq!(decode(r.key.as_deref(), Some(&future)), Some(("g".to_string(), None)));
    }
}
