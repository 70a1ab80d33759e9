//! Where an owner keeps a replica's [`QuorumState`]: a `quorum-state` file in the log's
//! directory (KRaft's name for it), written whole and renamed into place, so a crash leaves
//! either the old state or the new one. The Raft asks for it with `RaftOutput::SaveState`
//! and must not be acted on further until it is written.

use std::io;

use super::QuorumState;
use crate::ids::NodeId;
use crate::log::LogReach;
use crate::storage::{read_file, write_file_atomic, Storage};

pub const QUORUM_STATE_FILE: &str = "quorum-state";

/// The state saved in `dir`; the default (epoch 0, no vote, no leader) if none was.
pub fn read(storage: &dyn Storage, dir: &str) -> io::Result<QuorumState> {
    let path = format!("{dir}/{QUORUM_STATE_FILE}");
    let Some(bytes) = read_file(storage, &path)? else { return Ok(QuorumState::default()) };
    let text = String::from_utf8_lossy(&bytes);
    let field = |name: &str| -> Option<i64> {
        text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix('=')?.trim().parse().ok())
    };
    let invalid = || io::Error::new(io::ErrorKind::InvalidData, format!("{path}: malformed"));
    let epoch = field("epoch").ok_or_else(invalid)?;
    let node = |v: i64| i32::try_from(v).ok().filter(|&n| n >= 0).map(NodeId);
    Ok(QuorumState {
        epoch: i32::try_from(epoch).map_err(|_| invalid())?,
        voted_for: field("voted_for").and_then(node),
        leader: field("leader").and_then(node),
        // Absent in files written before it existed: nothing to recover.
        recovering_to: field("recovering_to").unwrap_or(0).max(0),
        recovering_epoch: field("recovering_epoch").and_then(|e| i32::try_from(e).ok()).unwrap_or(0),
    })
}

pub fn write(storage: &dyn Storage, dir: &str, state: QuorumState) -> io::Result<()> {
    let id = |n: Option<NodeId>| n.map_or(-1, |n| i64::from(n.0));
    let text = format!(
        "epoch={}\nvoted_for={}\nleader={}\nrecovering_to={}\nrecovering_epoch={}\n",
        state.epoch,
        id(state.voted_for),
        id(state.leader),
        state.recovering_to,
        state.recovering_epoch
    );
    write_file_atomic(storage, dir, QUORUM_STATE_FILE, text.as_bytes())
}

/// Start-up recovery of the log in `dir` is about to cut a damaged batch from a log that
/// reached `reached`: saves, before the cut, that this replica does not stand until its log
/// reaches that far again and votes meanwhile as the uncut log would have (as
/// [`Raft::damaged`](super::Raft::damaged) does for damage found while running). What is cut
/// may have been synced and counted toward a commit; a vote judged on the shorter log could
/// elect a replica that lacks it.
pub fn fence(storage: &dyn Storage, dir: &str, reached: LogReach) -> io::Result<()> {
    let mut state = read(storage, dir)?;
    if (reached.last_epoch, reached.end_offset) > (state.recovering_epoch, state.recovering_to) {
        state.recovering_to = state.recovering_to.max(reached.end_offset);
        state.recovering_epoch = state.recovering_epoch.max(reached.last_epoch);
        write(storage, dir, state)?;
    }
    Ok(())
}
