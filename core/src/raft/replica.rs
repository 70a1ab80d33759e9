//! One replica of a Raft log: the state machine the module documentation describes.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;

use bytes::{Bytes, BytesMut};

use super::message::{Diverging, Message, SnapshotId};
use super::state::{LeaderState, ParkedFetch, QuorumState, Role};
use super::RaftLog;
use crate::ids::NodeId;
use crate::rng::Rng;

#[derive(Debug, Clone)]
pub struct RaftConfig {
    pub node: NodeId,
    pub voters: BTreeSet<NodeId>,
    /// A follower that hears nothing from its leader this long stands for election; a leader
    /// that hears from no majority this long steps down (KRaft's `fetch.timeout.ms`).
    pub fetch_timeout_ms: i64,
    /// Elections wait a random time in [this, twice this) (KRaft's `election.timeout.ms`).
    pub election_timeout_ms: i64,
    /// How long a leader holds a fetch that has nothing new.
    pub fetch_max_wait_ms: i64,
    pub fetch_max_bytes: usize,
    /// A brand-new replica (epoch 0, nothing saved) stands at once instead of after an
    /// election timeout: a partition's preferred leader, so new partitions get the leader
    /// placement chose, spread over the brokers, within one round trip.
    pub stand_at_once: bool,
}

impl RaftConfig {
    pub fn new(node: NodeId, voters: impl IntoIterator<Item = NodeId>) -> RaftConfig {
        RaftConfig {
            node,
            voters: voters.into_iter().collect(),
            fetch_timeout_ms: 2_000,
            election_timeout_ms: 1_000,
            fetch_max_wait_ms: 500,
            fetch_max_bytes: 1 << 20,
            stand_at_once: false,
        }
    }

    fn majority(&self) -> usize {
        self.voters.len() / 2 + 1
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RaftOutput {
    /// Make this durable before performing any later output: the epoch and the vote.
    SaveState(QuorumState),
    Send {
        to: NodeId,
        message: Message,
    },
    /// The high watermark moved: every entry before it is committed.
    Committed {
        high_watermark: i64,
    },
    /// Who leads `epoch`, as far as this replica knows (`None` while nobody does).
    LeaderChanged {
        epoch: i32,
        leader: Option<NodeId>,
    },
}

#[derive(Debug)]
pub struct Raft {
    config: RaftConfig,
    state: QuorumState,
    role: Role,
    high_watermark: Option<i64>,
    rng: Rng,
    outputs: VecDeque<RaftOutput>,
    /// Unattached, prospective, candidate: when to (re)start an election.
    election_deadline_ms: i64,
    /// Follower: when it gives up on its leader (moved on by every answer from it).
    follower_deadline_ms: i64,
    /// Follower: when it last heard from its leader itself. `None` for a leader it only heard
    /// of from another replica; such a follower does not refuse pre-votes on its behalf.
    leader_contact_ms: Option<i64>,
    /// Follower: the outstanding fetch, (when it was sent, its id); sent again, under a new
    /// id, if unanswered.
    fetch_sent: Option<(i64, u64)>,
    next_fetch_id: u64,
    /// Follower: the leader's snapshot being fetched instead of entries, and its bytes so far.
    snapshot_fetch: Option<(SnapshotId, BytesMut)>,
    /// Leader: the next check-quorum, and the next resend of BeginQuorumEpoch.
    check_quorum_ms: i64,
    announce_ms: i64,
}

impl Raft {
    /// A replica starting (or restarting) with the state it saved last, over `log`.
    pub fn new(config: RaftConfig, saved: QuorumState, seed: u64, now_ms: i64, log: &mut dyn RaftLog) -> Raft {
        assert!(config.voters.contains(&config.node), "a replica is one of its voters");
        let mut raft = Raft {
            config,
            state: saved,
            role: Role::Unattached,
            high_watermark: None,
            rng: Rng::new(seed),
            outputs: VecDeque::new(),
            election_deadline_ms: now_ms,
            follower_deadline_ms: now_ms,
            leader_contact_ms: None,
            fetch_sent: None,
            next_fetch_id: 1,
            snapshot_fetch: None,
            check_quorum_ms: now_ms,
            announce_ms: now_ms,
        };
        raft.election_deadline_ms = now_ms + raft.election_timeout();
        // Fetch ids start at random, so an answer to a fetch sent before a restart cannot pass
        // for the answer to one sent after it.
        raft.next_fetch_id = raft.rng.next_u64() >> 1;
        if raft.state.leader == Some(raft.config.node) {
            // It led this epoch before a restart; it cannot know what it promised since, so it
            // does not lead again in this epoch.
            raft.state.leader = None;
            raft.save();
        }
        match raft.state.leader {
            Some(leader) => raft.become_follower(now_ms, leader, false, log),
            // A lone voter has nobody to wait for: it stands at the first timeout, now.
            None if raft.config.voters.len() == 1 => raft.election_deadline_ms = now_ms,
            None if raft.config.stand_at_once && raft.state == QuorumState::default() => {
                raft.election_deadline_ms = now_ms
            }
            None => {}
        }
        raft
    }

    // ----- inputs -----

    pub fn handle_message(
        &mut self,
        now_ms: i64,
        from: NodeId,
        message: Message,
        log: &mut dyn RaftLog,
    ) -> io::Result<()> {
        // A pre-vote names the epoch its sender would stand in, one past its own.
        let epoch_seen = match message {
            Message::Vote { pre_vote: true, epoch, .. } => epoch - 1,
            _ => message.epoch(),
        };
        if epoch_seen > self.state.epoch {
            // Also from a pre-vote: its sender stood in an epoch this replica missed (its votes
            // were lost), and a leader of an older epoch would otherwise never hear of it while
            // the sender, stuck above, could never follow that leader.
            self.adopt_epoch(now_ms, epoch_seen);
        }
        match message {
            Message::Vote { epoch, last_epoch, end_offset, pre_vote } => {
                self.on_vote(now_ms, from, epoch, (last_epoch, end_offset), pre_vote, log)
            }
            Message::VoteResponse { epoch, granted, pre_vote, leader } => {
                self.on_vote_response(now_ms, from, epoch, granted, pre_vote, leader, log)?
            }
            Message::BeginQuorumEpoch { epoch } => self.on_begin_quorum_epoch(now_ms, from, epoch, log),
            Message::BeginQuorumEpochResponse { epoch } => {
                if let Role::Leader(leader) = &mut self.role {
                    if epoch == self.state.epoch {
                        leader.unannounced.remove(&from);
                        leader.heard_from.insert(from);
                    }
                }
            }
            Message::EndQuorumEpoch { epoch, preferred_successors } => {
                if epoch == self.state.epoch && matches!(self.role, Role::Follower { leader } if leader == from) {
                    self.step_down(now_ms);
                    // The first preferred successor stands at once; the others give it time.
                    let rank = preferred_successors.iter().position(|&n| n == self.config.node);
                    let delay = match rank {
                        Some(rank) => rank as i64 * self.config.election_timeout_ms / 2,
                        None => self.election_timeout(),
                    };
                    self.election_deadline_ms = now_ms + delay;
                }
            }
            Message::Fetch { epoch, offset, last_epoch, id } => {
                self.on_fetch(now_ms, from, epoch, FetchAsked { id, offset, last_epoch }, log)?
            }
            Message::FetchResponse { epoch, id, offset, leader, high_watermark, diverging, entries, snapshot } => {
                let answer = FetchAnswer { id, offset, high_watermark, diverging, entries, snapshot };
                self.on_fetch_response(now_ms, from, epoch, leader, answer, log)?
            }
            Message::FetchSnapshot { epoch, snapshot, position, id } => {
                self.on_fetch_snapshot(from, epoch, snapshot, position, id, log)?
            }
            Message::FetchSnapshotResponse { epoch, id, leader, snapshot, position, chunk } => {
                let answer = SnapshotAnswer { id, snapshot, position, chunk };
                self.on_fetch_snapshot_response(now_ms, from, epoch, leader, answer, log)?
            }
        }
        Ok(())
    }

    /// Time passed; see [`Raft::next_timeout_ms`].
    pub fn handle_timeout(&mut self, now_ms: i64, log: &mut dyn RaftLog) -> io::Result<()> {
        match &mut self.role {
            Role::Leader(leader) => {
                let expired: Vec<NodeId> =
                    leader.parked_fetches.iter().filter(|(_, p)| p.deadline_ms <= now_ms).map(|(&n, _)| n).collect();
                for follower in expired {
                    self.answer_parked_fetch(follower, log)?;
                }
                if now_ms >= self.check_quorum_ms {
                    let Role::Leader(leader) = &mut self.role else { unreachable!("matched above") };
                    let heard = leader.heard_from.iter().filter(|n| self.config.voters.contains(n)).count() + 1;
                    leader.heard_from.clear();
                    if heard < self.config.majority() {
                        self.step_down(now_ms);
                        return Ok(());
                    }
                    self.check_quorum_ms = now_ms + self.config.fetch_timeout_ms;
                }
                if now_ms >= self.announce_ms {
                    self.announce_ms = now_ms + self.config.fetch_timeout_ms / 4;
                    let Role::Leader(leader) = &self.role else { unreachable!("matched above") };
                    let epoch = self.state.epoch;
                    for &to in &leader.unannounced.clone() {
                        self.send(to, Message::BeginQuorumEpoch { epoch });
                    }
                }
            }
            Role::Follower { .. } => {
                if now_ms >= self.follower_deadline_ms {
                    self.become_prospective(now_ms, log)?;
                } else if self.fetch_sent.is_some_and(|(sent, _)| now_ms >= sent + self.fetch_retry_ms()) {
                    self.fetch_sent = None;
                    self.send_fetch(now_ms, log);
                }
            }
            Role::Unattached | Role::Prospective { .. } | Role::Candidate { .. } => {
                if now_ms >= self.election_deadline_ms {
                    self.become_prospective(now_ms, log)?;
                }
            }
        }
        Ok(())
    }

    /// The log's durable offset moved (a sync completed).
    pub fn handle_durable(&mut self, now_ms: i64, log: &mut dyn RaftLog) -> io::Result<()> {
        match &self.role {
            Role::Leader(_) => self.update_leader_high_watermark(log)?,
            // A fetch waits for the log to be durable; this may be that moment.
            Role::Follower { .. } if self.fetch_sent.is_none() => self.send_fetch(now_ms, log),
            _ => {}
        }
        Ok(())
    }

    /// Appends `batch` as leader. `None` if this replica does not lead (the caller redirects
    /// to [`Raft::leader`]); otherwise the offset of its first entry, committed once the high
    /// watermark passes it.
    pub fn propose(&mut self, batch: Bytes, log: &mut dyn RaftLog) -> io::Result<Option<i64>> {
        if !matches!(self.role, Role::Leader(_)) {
            return Ok(None);
        }
        let offset = log.append_as_leader(self.state.epoch, batch)?;
        self.wake_parked_fetches(log)?;
        Ok(Some(offset))
    }

    /// The leader appended to the log itself (a partition's produce, which stamps the batch
    /// with [`Raft::leader_epoch`]): followers waiting for entries are answered.
    pub fn appended(&mut self, log: &dyn RaftLog) -> io::Result<()> {
        self.wake_parked_fetches(log)
    }

    /// Answers `follower`'s parked fetch now, with whatever there is (a broker answering one
    /// request that carries fetches of many partitions answers all of them once one has news).
    pub fn release_fetch(&mut self, follower: NodeId, log: &dyn RaftLog) -> io::Result<()> {
        self.answer_parked_fetch(follower, log)
    }

    // ----- outputs and queries -----

    pub fn poll_output(&mut self) -> Option<RaftOutput> {
        self.outputs.pop_front()
    }

    pub fn next_timeout_ms(&self) -> i64 {
        match &self.role {
            Role::Leader(leader) => {
                let parked = leader.parked_fetches.values().map(|p| p.deadline_ms).min().unwrap_or(i64::MAX);
                self.check_quorum_ms.min(self.announce_ms).min(parked)
            }
            Role::Follower { .. } => {
                let retry = self.fetch_sent.map_or(i64::MAX, |(sent, _)| sent + self.fetch_retry_ms());
                self.follower_deadline_ms.min(retry)
            }
            _ => self.election_deadline_ms,
        }
    }

    pub fn epoch(&self) -> i32 {
        self.state.epoch
    }

    pub fn leader(&self) -> Option<NodeId> {
        self.state.leader
    }

    pub fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader(_))
    }

    /// Whether this replica follows a leader it knows in its current epoch.
    pub fn is_follower(&self) -> bool {
        matches!(self.role, Role::Follower { .. })
    }

    /// The epoch this replica leads, if it leads.
    pub fn leader_epoch(&self) -> Option<i32> {
        self.is_leader().then_some(self.state.epoch)
    }

    pub fn voters(&self) -> &BTreeSet<NodeId> {
        &self.config.voters
    }

    /// On a leader: itself and the voters that were caught up with its log end within the
    /// last `lag_max_ms` (Kafka's in-sync replicas, `replica.lag.time.max.ms`). Empty elsewhere.
    pub fn in_sync(&self, now_ms: i64, lag_max_ms: i64) -> Vec<NodeId> {
        let Role::Leader(leader) = &self.role else { return Vec::new() };
        self.config
            .voters
            .iter()
            .copied()
            .filter(|v| *v == self.config.node || leader.caught_up_ms.get(v).is_some_and(|&t| now_ms - t < lag_max_ms))
            .collect()
    }

    /// How many replicas acks=all may count as in sync at append time (Kafka's gate before a
    /// write, not the commit rule): those in sync and, for a new leader's first fetch timeout,
    /// the voters it has not heard from yet. A live follower's first fetch comes within a round
    /// trip of the election; without the grace, the first writes to every new partition and
    /// after every failover were refused with NOT_ENOUGH_REPLICAS and waited out the producer's
    /// retry backoff. A voter that fetched and is behind is not counted.
    pub fn in_sync_for_append(&self, now_ms: i64, lag_max_ms: i64) -> usize {
        let Role::Leader(leader) = &self.role else { return 0 };
        let new_leader = now_ms - leader.since_ms < self.config.fetch_timeout_ms;
        let unheard = |v: &NodeId| new_leader && !leader.last_fetch.contains_key(v);
        let in_sync = self.in_sync(now_ms, lag_max_ms);
        in_sync.len() + self.config.voters.iter().filter(|v| !in_sync.contains(v) && unheard(v)).count()
    }

    pub fn role(&self) -> &Role {
        &self.role
    }

    pub fn high_watermark(&self) -> Option<i64> {
        self.high_watermark
    }

    /// The outstanding fetch (when sent, its id), for test traces.
    #[cfg(test)]
    pub fn fetch_sent(&self) -> Option<(i64, u64)> {
        self.fetch_sent
    }

    /// Each voter with the log end this replica knows it holds: exact for every voter on the
    /// leader (`own_end` for itself), only its own elsewhere.
    /// Leader: the offset below which at least `copies` voters (this one counted with
    /// `own_durable`) hold every entry durably; 0 where fewer voters are known to.
    pub fn held_by(&self, copies: usize, own_durable: i64) -> i64 {
        let mut ends: Vec<i64> = self.voter_ends(own_durable).into_iter().map(|(_, end)| end.unwrap_or(0)).collect();
        ends.sort_unstable_by(|a, b| b.cmp(a));
        copies.checked_sub(1).and_then(|i| ends.get(i)).copied().unwrap_or(0)
    }

    pub fn voter_ends(&self, own_end: i64) -> Vec<(NodeId, Option<i64>)> {
        self.config
            .voters
            .iter()
            .map(|&v| {
                let end = match &self.role {
                    _ if v == self.config.node => Some(own_end),
                    Role::Leader(leader) => leader.follower_end.get(&v).copied(),
                    _ => None,
                };
                (v, end)
            })
            .collect()
    }

    pub fn quorum_state(&self) -> QuorumState {
        self.state
    }

    // ----- votes -----

    fn on_vote(
        &mut self,
        now_ms: i64,
        candidate: NodeId,
        epoch: i32,
        candidate_log: (i32, i64),
        pre_vote: bool,
        log: &dyn RaftLog,
    ) {
        // A replica that cut damaged entries judges by its log before the cut: it may have
        // counted toward the commit of what it no longer holds.
        let mut own_log = (log.last_epoch(), log.end_offset());
        if self.recovering(log) {
            own_log = own_log.max((self.state.recovering_epoch, self.state.recovering_to));
        }
        let log_ok = candidate_log >= own_log || crate::planted::active(crate::planted::PlantedBug::ElectStaleReplica);
        let granted = if pre_vote {
            // A pre-vote changes nothing here. Refused while this replica still has a live
            // leader, so a replica that was cut off cannot depose it on its return.
            let leader_alive = match self.role {
                Role::Leader(_) => true,
                Role::Follower { .. } => {
                    self.leader_contact_ms.is_some_and(|t| now_ms < t + self.config.fetch_timeout_ms)
                }
                _ => false,
            };
            epoch > self.state.epoch && log_ok && !leader_alive
        } else {
            let free = self.state.voted_for.is_none_or(|v| v == candidate);
            let granted = epoch == self.state.epoch && self.state.leader.is_none() && free && log_ok;
            if granted && self.state.voted_for.is_none() {
                self.state.voted_for = Some(candidate);
                self.save();
                self.election_deadline_ms = now_ms + self.election_timeout();
            }
            granted
        };
        let response = Message::VoteResponse { epoch: self.state.epoch, granted, pre_vote, leader: self.state.leader };
        self.send(candidate, response);
    }

    #[allow(clippy::too_many_arguments)]
    fn on_vote_response(
        &mut self,
        now_ms: i64,
        voter: NodeId,
        epoch: i32,
        granted: bool,
        pre_vote: bool,
        leader: Option<NodeId>,
        log: &mut dyn RaftLog,
    ) -> io::Result<()> {
        if epoch != self.state.epoch || !self.config.voters.contains(&voter) {
            return Ok(());
        }
        if let (false, Some(leader)) = (granted, leader) {
            // Refused because the voter follows a leader of this epoch: try that leader (on
            // hearsay, so this replica grants pre-votes until it reaches the leader itself).
            if !matches!(self.role, Role::Leader(_) | Role::Follower { .. }) && leader != self.config.node {
                self.become_follower(now_ms, leader, false, log);
            }
            return Ok(());
        }
        if self.recovering(log) {
            // It cut entries while standing (the pre-vote or vote went out with its log of
            // before): it may not win with the shorter log.
            if matches!(self.role, Role::Prospective { .. } | Role::Candidate { .. }) {
                self.role = Role::Unattached;
            }
            return Ok(());
        }
        let majority = self.config.majority();
        match &mut self.role {
            Role::Prospective { granted: votes } if pre_vote => {
                if granted {
                    votes.insert(voter);
                }
                if votes.len() >= majority {
                    self.become_candidate(now_ms, log)?;
                }
            }
            Role::Candidate { granted: votes } if !pre_vote => {
                if granted {
                    votes.insert(voter);
                }
                if votes.len() >= majority {
                    self.become_leader(now_ms, log)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn on_begin_quorum_epoch(&mut self, now_ms: i64, leader: NodeId, epoch: i32, log: &mut dyn RaftLog) {
        if epoch == self.state.epoch {
            assert!(!matches!(self.role, Role::Leader(_)), "two leaders in epoch {epoch}: this replica and {leader}");
            if matches!(self.role, Role::Follower { leader: l } if l == leader) {
                self.heard_from_leader(now_ms);
            } else {
                self.become_follower(now_ms, leader, true, log);
            }
        }
        self.send(leader, Message::BeginQuorumEpochResponse { epoch: self.state.epoch });
    }

    // ----- replication -----

    fn on_fetch(
        &mut self,
        now_ms: i64,
        follower: NodeId,
        epoch: i32,
        asked: FetchAsked,
        log: &mut dyn RaftLog,
    ) -> io::Result<()> {
        let FetchAsked { id, offset, last_epoch } = asked;
        let Role::Leader(leader) = &mut self.role else {
            self.send(follower, self.not_leader_response(id, offset));
            return Ok(());
        };
        if epoch != self.state.epoch {
            // Behind: tell it who leads now.
            self.send(follower, self.not_leader_response(id, offset));
            return Ok(());
        }
        leader.heard_from.insert(follower);
        leader.unannounced.remove(&follower);
        // A fetch still parked from before is answered now (the follower ignores the answer,
        // it waits for this one): a transport answers a connection's requests in order, and
        // one never answered would hold up every answer after it.
        self.answer_parked_fetch(follower, &*log)?;
        let diverging = diverging_from(log, offset, last_epoch);
        let start = log.start_offset();
        if offset < start || diverging.is_some_and(|d| d.end_offset < start) {
            // What the follower needs is no longer in the log: it fetches the snapshot.
            if let Some(snapshot) = log.snapshot() {
                let mut response = self.leader_fetch_response(id, offset, None, Bytes::new());
                if let Message::FetchResponse { snapshot: wanted, .. } = &mut response {
                    *wanted = Some(snapshot);
                }
                self.send(follower, response);
                return Ok(());
            }
        }
        if let Some(diverging) = diverging {
            let response = self.leader_fetch_response(id, offset, Some(diverging), Bytes::new());
            self.send(follower, response);
            return Ok(());
        }
        // The follower's log matches this one up to `offset`, all of it durable there.
        if self.config.voters.contains(&follower) {
            let Role::Leader(leader) = &mut self.role else { return Ok(()) };
            let end = leader.follower_end.entry(follower).or_insert(0);
            *end = (*end).max(offset);
            // Caught up now if it holds the whole log; else as of its previous fetch if it
            // holds what the log held then (Kafka's rule for lastCaughtUpTime).
            let log_end = log.end_offset();
            let caught_up = match leader.last_fetch.get(&follower) {
                _ if offset >= log_end => Some(now_ms),
                Some(&(at_ms, end_then)) if offset >= end_then => Some(at_ms),
                _ => None,
            };
            if let Some(at_ms) = caught_up {
                let known = leader.caught_up_ms.entry(follower).or_insert(at_ms);
                *known = (*known).max(at_ms);
            }
            leader.last_fetch.insert(follower, (now_ms, log_end));
        }
        self.update_leader_high_watermark(log)?;
        let Role::Leader(leader) = &mut self.role else { return Ok(()) };
        if offset >= log.end_offset() {
            leader
                .parked_fetches
                .insert(follower, ParkedFetch { id, offset, deadline_ms: now_ms + self.config.fetch_max_wait_ms });
            // A high watermark the follower has not heard of is worth an answer now.
            return self.answer_parked_fetch_if_news(follower, log);
        }
        self.answer_fetch(follower, id, offset, log)
    }

    fn on_fetch_response(
        &mut self,
        now_ms: i64,
        from: NodeId,
        epoch: i32,
        leader: Option<NodeId>,
        answer: FetchAnswer,
        log: &mut dyn RaftLog,
    ) -> io::Result<()> {
        let FetchAnswer { id, offset, high_watermark, diverging, entries, snapshot } = answer;
        if epoch < self.state.epoch {
            return Ok(());
        }
        if let Some(leader) = leader {
            let following = matches!(self.role, Role::Follower { leader: l } if l == leader);
            if !following && !matches!(self.role, Role::Leader(_)) && leader != self.config.node {
                self.become_follower(now_ms, leader, from == leader, log);
                return Ok(());
            }
        }
        if !matches!(self.role, Role::Follower { leader: l } if l == from) {
            return Ok(());
        }
        if leader != Some(from) {
            // The replica it followed no longer leads this epoch: wait for an election.
            self.step_down(now_ms);
            return Ok(());
        }
        self.heard_from_leader(now_ms);
        if self.fetch_sent.map(|(_, sent_id)| sent_id) != Some(id) {
            // Late or repeated: the answer to a fetch already answered or given up on.
            return Ok(());
        }
        debug_assert_eq!(offset, log.end_offset(), "the log changed under an outstanding fetch");
        self.fetch_sent = None;
        if let Some(snapshot) = snapshot {
            self.snapshot_fetch = Some((snapshot, BytesMut::new()));
        } else if let Some(diverging) = diverging {
            let own_end = log.end_offset_for_epoch(diverging.epoch).map_or(0, |(_, end)| end);
            // Never below this log's start: what lies before it is a snapshot of committed
            // entries, which no leader diverges from.
            let cut = diverging.end_offset.min(own_end).max(log.start_offset());
            assert!(
                self.high_watermark.is_none_or(|hw| cut >= hw),
                "truncating to {cut} would remove committed entries (high watermark {:?})",
                self.high_watermark
            );
            if !crate::planted::active(crate::planted::PlantedBug::SkipTruncation) {
                log.truncate_to(cut)?;
            }
        } else {
            if !entries.is_empty() {
                log.append_replicated(&entries)?;
                self.recovered_if_caught_up(log);
            }
            if let Some(leader_hw) = high_watermark {
                self.advance_high_watermark(leader_hw.min(log.end_offset()));
            }
        }
        self.send_fetch(now_ms, log);
        Ok(())
    }

    /// A follower pulls the snapshot this leader named; a fetch's worth of it is the answer.
    fn on_fetch_snapshot(
        &mut self,
        follower: NodeId,
        epoch: i32,
        snapshot: SnapshotId,
        position: u64,
        id: u64,
        log: &dyn RaftLog,
    ) -> io::Result<()> {
        let mut chunk = None;
        if let Role::Leader(leader) = &mut self.role {
            if epoch == self.state.epoch {
                leader.heard_from.insert(follower);
                chunk = log.read_snapshot(snapshot, position, self.config.fetch_max_bytes)?;
            }
        }
        let leader = self.state.leader;
        let epoch = self.state.epoch;
        self.send(follower, Message::FetchSnapshotResponse { epoch, id, leader, snapshot, position, chunk });
        Ok(())
    }

    fn on_fetch_snapshot_response(
        &mut self,
        now_ms: i64,
        from: NodeId,
        epoch: i32,
        leader: Option<NodeId>,
        answer: SnapshotAnswer,
        log: &mut dyn RaftLog,
    ) -> io::Result<()> {
        if epoch < self.state.epoch || !matches!(self.role, Role::Follower { leader: l } if l == from) {
            return Ok(());
        }
        if leader != Some(from) {
            self.step_down(now_ms);
            return Ok(());
        }
        self.heard_from_leader(now_ms);
        if self.fetch_sent.map(|(_, sent_id)| sent_id) != Some(answer.id) {
            return Ok(());
        }
        self.fetch_sent = None;
        let Some((snapshot, mut bytes)) = self.snapshot_fetch.take() else { return Ok(()) };
        // A snapshot the leader no longer has (a newer one replaced it), or an answer that does
        // not continue what was fetched: fetch from the log end again, and the leader names
        // its latest snapshot.
        if let (Some((size, chunk)), true) = (answer.chunk, answer.snapshot == snapshot) {
            if answer.position == bytes.len() as u64 && (!chunk.is_empty() || size == answer.position) {
                bytes.extend_from_slice(&chunk);
                if bytes.len() as u64 == size {
                    log.install_snapshot(snapshot, &bytes)?;
                    self.recovered_if_caught_up(log);
                } else if (bytes.len() as u64) < size {
                    self.snapshot_fetch = Some((snapshot, bytes));
                }
            }
        }
        self.send_fetch(now_ms, log);
        Ok(())
    }

    /// Fetches from the log end, once all of it is durable (so the leader may count it), or
    /// the next chunk of the snapshot the leader named.
    fn send_fetch(&mut self, now_ms: i64, log: &dyn RaftLog) {
        let Role::Follower { leader } = self.role else { return };
        if self.fetch_sent.is_some() {
            return;
        }
        if let Some((snapshot, bytes)) = &self.snapshot_fetch {
            let message = Message::FetchSnapshot {
                epoch: self.state.epoch,
                snapshot: *snapshot,
                position: bytes.len() as u64,
                id: self.next_fetch_id,
            };
            self.fetch_sent = Some((now_ms, self.next_fetch_id));
            self.next_fetch_id += 1;
            self.send(leader, message);
            return;
        }
        if log.durable_offset() < log.end_offset() {
            return;
        }
        let id = self.next_fetch_id;
        self.next_fetch_id += 1;
        self.fetch_sent = Some((now_ms, id));
        let message =
            Message::Fetch { epoch: self.state.epoch, offset: log.end_offset(), last_epoch: log.last_epoch(), id };
        self.send(leader, message);
    }

    fn answer_fetch(&mut self, follower: NodeId, id: u64, offset: i64, log: &dyn RaftLog) -> io::Result<()> {
        let entries = log.read(offset, self.config.fetch_max_bytes)?;
        if let (Role::Leader(leader), Some(hw)) = (&mut self.role, self.high_watermark) {
            leader.told_high_watermark.insert(follower, hw);
        }
        let response = self.leader_fetch_response(id, offset, None, entries);
        self.send(follower, response);
        Ok(())
    }

    /// This leader's answer to the fetch `id` from `offset`.
    fn leader_fetch_response(&self, id: u64, offset: i64, diverging: Option<Diverging>, entries: Bytes) -> Message {
        Message::FetchResponse {
            epoch: self.state.epoch,
            id,
            offset,
            leader: Some(self.config.node),
            high_watermark: self.high_watermark,
            diverging,
            entries,
            snapshot: None,
        }
    }

    fn answer_parked_fetch(&mut self, follower: NodeId, log: &dyn RaftLog) -> io::Result<()> {
        let Role::Leader(leader) = &mut self.role else { return Ok(()) };
        let Some(parked) = leader.parked_fetches.remove(&follower) else { return Ok(()) };
        self.answer_fetch(follower, parked.id, parked.offset, log)
    }

    fn answer_parked_fetch_if_news(&mut self, follower: NodeId, log: &dyn RaftLog) -> io::Result<()> {
        let Role::Leader(leader) = &self.role else { return Ok(()) };
        let Some(parked) = leader.parked_fetches.get(&follower) else { return Ok(()) };
        let told = leader.told_high_watermark.get(&follower).copied();
        if log.end_offset() > parked.offset || told < self.high_watermark {
            return self.answer_parked_fetch(follower, log);
        }
        Ok(())
    }

    fn wake_parked_fetches(&mut self, log: &dyn RaftLog) -> io::Result<()> {
        let Role::Leader(leader) = &self.role else { return Ok(()) };
        let followers: Vec<NodeId> = leader.parked_fetches.keys().copied().collect();
        for follower in followers {
            self.answer_parked_fetch_if_news(follower, log)?;
        }
        Ok(())
    }

    fn update_leader_high_watermark(&mut self, log: &dyn RaftLog) -> io::Result<()> {
        let Role::Leader(leader) = &self.role else { return Ok(()) };
        let mut ends: Vec<i64> = self
            .config
            .voters
            .iter()
            .map(|v| {
                if *v == self.config.node {
                    log.durable_offset()
                } else {
                    leader.follower_end.get(v).copied().unwrap_or(0)
                }
            })
            .collect();
        ends.sort_unstable_by(|a, b| b.cmp(a));
        let held_by_majority = ends[self.config.majority() - 1];
        if held_by_majority > leader.commit_floor && self.advance_high_watermark(held_by_majority) {
            self.wake_parked_fetches(log)?;
        }
        Ok(())
    }

    /// Moves the high watermark forward (never back). True if it moved.
    fn advance_high_watermark(&mut self, high_watermark: i64) -> bool {
        if self.high_watermark.is_some_and(|hw| hw >= high_watermark) {
            return false;
        }
        self.high_watermark = Some(high_watermark);
        self.outputs.push_back(RaftOutput::Committed { high_watermark });
        true
    }

    fn not_leader_response(&self, id: u64, offset: i64) -> Message {
        Message::FetchResponse {
            epoch: self.state.epoch,
            id,
            offset,
            leader: self.state.leader,
            high_watermark: None,
            diverging: None,
            entries: Bytes::new(),
            snapshot: None,
        }
    }

    // ----- transitions -----

    /// A higher epoch was seen: adopt it with no vote and no leader.
    fn adopt_epoch(&mut self, now_ms: i64, epoch: i32) {
        self.answer_parked_fetches_not_leader();
        self.state = QuorumState { epoch, voted_for: None, leader: None, ..self.state };
        self.save();
        self.role = Role::Unattached;
        self.fetch_sent = None;
        self.snapshot_fetch = None;
        self.election_deadline_ms = now_ms + self.election_timeout();
        self.outputs.push_back(RaftOutput::LeaderChanged { epoch, leader: None });
    }

    /// The owner found the entry at `offset` damaged (a stored batch that fails its CRC): this
    /// replica cuts its log there and fetches the rest again ([`Raft::cut_damaged`], called
    /// once what this saves is durable). Until its log reaches where it ends now it does not
    /// stand, and it votes as its log of now would: it may have counted toward the commit of
    /// entries it no longer holds, and a vote judged on the shorter log could elect a replica
    /// that lacks them (the others who hold them are then a minority). A leader hands its
    /// leadership over first.
    pub fn damaged(&mut self, now_ms: i64, log: &dyn RaftLog) {
        self.state.recovering_to = self.state.recovering_to.max(log.end_offset());
        self.state.recovering_epoch = self.state.recovering_epoch.max(log.last_epoch());
        self.save();
        self.resign(now_ms);
        // An election it runs ends here: its requests carried the log it is about to cut.
        if matches!(self.role, Role::Prospective { .. } | Role::Candidate { .. }) {
            self.role = Role::Unattached;
        }
    }

    /// Cuts the log at the damaged entry `offset` (see [`Raft::damaged`]) and fetches on.
    pub fn cut_damaged(&mut self, now_ms: i64, offset: i64, log: &mut dyn RaftLog) -> io::Result<()> {
        debug_assert!(self.state.recovering_to >= log.end_offset(), "cut before `damaged` was saved");
        log.truncate_to(offset.max(log.start_offset()))?;
        // An answer to a fetch sent before the cut is for a log that is gone.
        self.fetch_sent = None;
        self.snapshot_fetch = None;
        self.send_fetch(now_ms, log);
        Ok(())
    }

    fn recovering(&self, log: &dyn RaftLog) -> bool {
        log.end_offset() < self.state.recovering_to
    }

    fn recovered_if_caught_up(&mut self, log: &dyn RaftLog) {
        if self.state.recovering_to > 0 && !self.recovering(log) {
            self.state.recovering_to = 0;
            self.state.recovering_epoch = 0;
            self.save();
        }
    }

    /// A leader that is about to stop (a graceful shutdown) hands over: it asks the voters to
    /// elect a successor now (EndQuorumEpoch, the most caught-up first) and stops leading, so
    /// the others need not wait out `fetch_timeout_ms`. It does not stand again until its own
    /// election timeout, which a stopping node never reaches. Nothing for a non-leader.
    pub fn resign(&mut self, now_ms: i64) {
        let Role::Leader(leader) = &self.role else { return };
        let mut successors: Vec<(i64, NodeId)> = self
            .config
            .voters
            .iter()
            .filter(|&&v| v != self.config.node)
            .map(|&v| (leader.follower_end.get(&v).copied().unwrap_or(-1), v))
            .collect();
        // Most caught up first; ties by id, so the order is the same on every run.
        successors.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let preferred_successors: Vec<NodeId> = successors.into_iter().map(|(_, v)| v).collect();
        let epoch = self.state.epoch;
        // Sent before stepping down answers the parked fetches: a follower told "no leader" by
        // its fetch's answer first would stop following and take the EndQuorumEpoch for stale.
        self.send_to_voters(Message::EndQuorumEpoch { epoch, preferred_successors });
        self.step_down(now_ms);
    }

    /// Stops leading or following in the current epoch, keeping its vote (a replica never
    /// votes twice in one epoch).
    fn step_down(&mut self, now_ms: i64) {
        self.answer_parked_fetches_not_leader();
        self.state.leader = None;
        self.save();
        self.role = Role::Unattached;
        self.fetch_sent = None;
        self.snapshot_fetch = None;
        self.election_deadline_ms = now_ms + self.election_timeout();
        self.outputs.push_back(RaftOutput::LeaderChanged { epoch: self.state.epoch, leader: None });
    }

    fn become_prospective(&mut self, now_ms: i64, log: &mut dyn RaftLog) -> io::Result<()> {
        if matches!(self.role, Role::Leader(_) | Role::Follower { .. }) {
            self.step_down(now_ms);
        }
        if self.recovering(log) {
            // It cut entries it may have promised to keep: it waits for a leader instead.
            self.election_deadline_ms = now_ms + self.election_timeout();
            return Ok(());
        }
        let mut granted = BTreeSet::new();
        granted.insert(self.config.node);
        self.role = Role::Prospective { granted };
        self.election_deadline_ms = now_ms + self.election_timeout();
        if self.config.voters.len() == 1 {
            return self.become_candidate(now_ms, log);
        }
        let vote = Message::Vote {
            epoch: self.state.epoch + 1,
            last_epoch: log.last_epoch(),
            end_offset: log.end_offset(),
            pre_vote: true,
        };
        self.send_to_voters(vote);
        Ok(())
    }

    fn become_candidate(&mut self, now_ms: i64, log: &mut dyn RaftLog) -> io::Result<()> {
        self.state =
            QuorumState { epoch: self.state.epoch + 1, voted_for: Some(self.config.node), leader: None, ..self.state };
        self.save();
        let mut granted = BTreeSet::new();
        granted.insert(self.config.node);
        self.role = Role::Candidate { granted };
        self.election_deadline_ms = now_ms + self.election_timeout();
        self.outputs.push_back(RaftOutput::LeaderChanged { epoch: self.state.epoch, leader: None });
        if self.config.voters.len() == 1 {
            return self.become_leader(now_ms, log);
        }
        let vote = Message::Vote {
            epoch: self.state.epoch,
            last_epoch: log.last_epoch(),
            end_offset: log.end_offset(),
            pre_vote: false,
        };
        self.send_to_voters(vote);
        Ok(())
    }

    fn become_leader(&mut self, now_ms: i64, log: &mut dyn RaftLog) -> io::Result<()> {
        self.state.leader = Some(self.config.node);
        self.save();
        // Raft's rule: nothing of an earlier epoch counts as committed until an entry of this
        // epoch is. A leader that may hold uncommitted entries opens its epoch with one; a lone
        // voter (a majority by itself) and a leader whose whole log is known committed need
        // none, so a fresh log's first entry is offset 0, as a Kafka partition's first record.
        let uncommitted = log.end_offset() > self.high_watermark.unwrap_or(0);
        let commit_floor = if self.config.voters.len() > 1 && uncommitted {
            log.append_leader_change(self.state.epoch, self.config.node)?
        } else {
            -1
        };
        let others: BTreeSet<NodeId> = self.config.voters.iter().copied().filter(|&v| v != self.config.node).collect();
        self.role = Role::Leader(Box::new(LeaderState {
            commit_floor,
            follower_end: BTreeMap::new(),
            heard_from: BTreeSet::new(),
            unannounced: others.clone(),
            parked_fetches: BTreeMap::new(),
            told_high_watermark: BTreeMap::new(),
            // A voter is in sync from its first fetch that holds this leader's whole log, so a
            // replica that died with the old leader is never counted (its first fetch after an
            // election comes within a round trip for a live one).
            caught_up_ms: BTreeMap::new(),
            last_fetch: BTreeMap::new(),
            since_ms: now_ms,
        }));
        self.check_quorum_ms = now_ms + self.config.fetch_timeout_ms;
        self.announce_ms = now_ms + self.config.fetch_timeout_ms / 4;
        self.outputs.push_back(RaftOutput::LeaderChanged { epoch: self.state.epoch, leader: Some(self.config.node) });
        let epoch = self.state.epoch;
        for to in others {
            self.send(to, Message::BeginQuorumEpoch { epoch });
        }
        self.update_leader_high_watermark(log)
    }

    /// Follows `leader`; `contact` when the news came from the leader itself.
    fn become_follower(&mut self, now_ms: i64, leader: NodeId, contact: bool, log: &dyn RaftLog) {
        debug_assert_ne!(leader, self.config.node);
        self.state.leader = Some(leader);
        self.save();
        self.role = Role::Follower { leader };
        self.follower_deadline_ms = now_ms + self.config.fetch_timeout_ms;
        self.leader_contact_ms = None;
        if contact {
            self.heard_from_leader(now_ms);
        }
        self.fetch_sent = None;
        self.snapshot_fetch = None;
        self.outputs.push_back(RaftOutput::LeaderChanged { epoch: self.state.epoch, leader: Some(leader) });
        self.send_fetch(now_ms, log);
    }

    fn answer_parked_fetches_not_leader(&mut self) {
        let Role::Leader(leader) = &mut self.role else { return };
        let parked: Vec<(NodeId, ParkedFetch)> = std::mem::take(&mut leader.parked_fetches).into_iter().collect();
        for (follower, ParkedFetch { id, offset, .. }) in parked {
            let response = Message::FetchResponse {
                epoch: self.state.epoch,
                id,
                offset,
                leader: None,
                high_watermark: None,
                diverging: None,
                entries: Bytes::new(),
                snapshot: None,
            };
            self.send(follower, response);
        }
    }

    // ----- helpers -----

    fn heard_from_leader(&mut self, now_ms: i64) {
        self.leader_contact_ms = Some(now_ms);
        self.follower_deadline_ms = now_ms + self.config.fetch_timeout_ms;
    }

    fn save(&mut self) {
        self.outputs.push_back(RaftOutput::SaveState(self.state));
    }

    fn send(&mut self, to: NodeId, message: Message) {
        self.outputs.push_back(RaftOutput::Send { to, message });
    }

    fn send_to_voters(&mut self, message: Message) {
        let others: Vec<NodeId> = self.config.voters.iter().copied().filter(|&v| v != self.config.node).collect();
        for to in others {
            self.send(to, message.clone());
        }
    }

    fn election_timeout(&mut self) -> i64 {
        let base = self.config.election_timeout_ms.max(1);
        base + (self.rng.next_u64() % base as u64) as i64
    }

    fn fetch_retry_ms(&self) -> i64 {
        2 * self.config.fetch_max_wait_ms
    }
}

/// What a fetch asks for besides its epoch.
struct FetchAsked {
    id: u64,
    offset: i64,
    last_epoch: i32,
}

/// What a fetch response carries besides its epoch and leader.
struct FetchAnswer {
    id: u64,
    offset: i64,
    high_watermark: Option<i64>,
    diverging: Option<Diverging>,
    entries: Bytes,
    snapshot: Option<SnapshotId>,
}

/// What a FetchSnapshot response carries besides its epoch and leader.
struct SnapshotAnswer {
    id: u64,
    snapshot: SnapshotId,
    position: u64,
    chunk: Option<(u64, Bytes)>,
}

/// Whether a fetch from `offset`, whose previous entry has `last_epoch`, disagrees with `log`;
/// if so, where the follower's epoch ends here.
fn diverging_from(log: &dyn RaftLog, offset: i64, last_epoch: i32) -> Option<Diverging> {
    if offset == 0 {
        return None;
    }
    match log.end_offset_for_epoch(last_epoch) {
        Some((epoch, end)) if epoch == last_epoch && offset <= end => None,
        Some((epoch, end)) => Some(Diverging { epoch, end_offset: end.min(offset) }),
        None => Some(Diverging { epoch: 0, end_offset: 0 }),
    }
}
