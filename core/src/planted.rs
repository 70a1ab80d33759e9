//! Planted bugs: mistakes a careless broker could make, compiled in only with the cargo
//! feature `planted-bugs`, which only the simulator (`sim/`) enables. Each exists to show that
//! the simulator's checkers can fail: `make sim` switches each one on in turn and requires the
//! anomaly it causes to be reported. Without the feature, [`active`] is a constant `false` and
//! the code paths compile away.

/// The bugs, and the anomaly each must cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlantedBug {
    /// acks=all is answered before the fsync completes. A crash then loses acknowledged
    /// records: `lost-write`.
    AckBeforeFsync = 1,
    /// Recovery leaves a torn last batch in place instead of cutting it off; later appends land
    /// behind unreadable bytes: `lost-write`.
    KeepTornTail = 2,
    /// Producer state is not rebuilt from the log after a restart, so a producer's retry of a
    /// batch that was written before the crash is written again: `duplicate`.
    ForgetProducerState = 3,
    /// A rebalance does not start a new generation, so members of the old assignment and the
    /// new one hold the same partitions under one generation number: `split-ownership`.
    SameGeneration = 4,
    /// The consumer protocol hands a partition to its new owner without waiting for the old
    /// owner to revoke it: `double-holding`.
    EarlyHandover = 5,
    /// A replicated partition's leader counts a write committed once its own copy is durable,
    /// without a majority: a leader cut off or killed takes acknowledged records with it
    /// (`lost-write`).
    AckBeforeQuorum = 6,
    /// A replica grants its vote whatever the candidate's log holds, so a replica that lacks
    /// committed records can be elected (`lost-write`, or the Raft's own check that a cut never
    /// removes committed entries).
    ElectStaleReplica = 7,
    /// A follower told its log diverges from the leader's does not cut its tail; it never
    /// catches up, and its replica differs from the others (`replica-divergence`).
    SkipTruncation = 8,
    /// A follower serves consumers (KIP-392) up to its log end, not the high watermark it was
    /// told, and gives that as the high watermark: when it later cuts a divergent tail, the
    /// high watermark it reports goes down (`hw-moved-back`), and what it served is gone
    /// (`inconsistent-offsets`).
    FollowerReadsPastCommit = 9,
    /// The controller answers CreateTopics as soon as it has proposed the topic's records,
    /// before the metadata quorum commits them: a controller killed or cut off before its
    /// followers have them loses a topic it acknowledged (`lost-create`, and `create-reordered`
    /// once a later create is listed without it).
    CreateBeforeCommit = 10,
    /// A transaction coordinator takes a state record as durable once appended to its own log:
    /// EndTxn is answered and the markers go out before the decision commits. A coordinator
    /// killed then leaves a successor that never heard of the decision and aborts the
    /// transaction where the markers have not reached (`lost-txn-commit`, `torn-transaction`).
    MarkersBeforeCommit = 11,
    /// KAFKA-17754's hole reopened in the second generation: an EndTxn carrying the epoch
    /// before the current one is taken for the ongoing transaction's, so a finished
    /// transaction's delayed commit ends the next one half written (`late-end-accepted`,
    /// `torn-transaction`).
    AcceptStaleEnd = 12,
}

impl PlantedBug {
    pub const ALL: [PlantedBug; 12] = [
        PlantedBug::AckBeforeFsync,
        PlantedBug::KeepTornTail,
        PlantedBug::ForgetProducerState,
        PlantedBug::SameGeneration,
        PlantedBug::EarlyHandover,
        PlantedBug::AckBeforeQuorum,
        PlantedBug::ElectStaleReplica,
        PlantedBug::SkipTruncation,
        PlantedBug::FollowerReadsPastCommit,
        PlantedBug::CreateBeforeCommit,
        PlantedBug::MarkersBeforeCommit,
        PlantedBug::AcceptStaleEnd,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::AckBeforeFsync => "ack-before-fsync",
            PlantedBug::KeepTornTail => "keep-torn-tail",
            PlantedBug::ForgetProducerState => "forget-producer-state",
            PlantedBug::SameGeneration => "same-generation",
            PlantedBug::EarlyHandover => "early-handover",
            PlantedBug::AckBeforeQuorum => "ack-before-quorum",
            PlantedBug::ElectStaleReplica => "elect-stale-replica",
            PlantedBug::SkipTruncation => "skip-truncation",
            PlantedBug::FollowerReadsPastCommit => "follower-reads-past-commit",
            PlantedBug::CreateBeforeCommit => "create-before-commit",
            PlantedBug::MarkersBeforeCommit => "markers-before-commit",
            PlantedBug::AcceptStaleEnd => "accept-stale-end",
        }
    }

    pub fn from_name(name: &str) -> Option<PlantedBug> {
        PlantedBug::ALL.into_iter().find(|b| b.name() == name)
    }
}

#[cfg(feature = "planted-bugs")]
static ACTIVE: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Switches a planted bug on (or all off). Process-wide: the simulator runs one broker at a
/// time per process.
#[cfg(feature = "planted-bugs")]
pub fn set(bug: Option<PlantedBug>) {
    ACTIVE.store(bug.map_or(0, |b| b as u8), std::sync::atomic::Ordering::SeqCst);
}

/// Whether `bug` is switched on. Always false without the `planted-bugs` feature.
#[inline]
pub fn active(bug: PlantedBug) -> bool {
    #[cfg(feature = "planted-bugs")]
    {
        ACTIVE.load(std::sync::atomic::Ordering::SeqCst) == bug as u8
    }
    #[cfg(not(feature = "planted-bugs"))]
    {
        // Without the feature there is nothing to switch on.
        let _ = bug;
        false
    }
}
