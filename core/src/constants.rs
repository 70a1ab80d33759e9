//! Every limit and default in one place (STYLE habit 5). Names carry their unit last.

/// Largest request frame the server reads (`socket.request.max.bytes`). A frame whose size prefix
/// is larger is refused before any buffer is allocated for it.
pub const REQUEST_BYTES_MAX_DEFAULT: usize = 100 * 1024 * 1024;

/// Largest record batch a producer may send (`max.message.bytes`, Kafka's default).
pub const MESSAGE_BYTES_MAX_DEFAULT: i32 = 1_048_588;

/// `segment.bytes`: roll to a new segment when the active one would exceed this.
pub const SEGMENT_BYTES_DEFAULT: i64 = 1024 * 1024 * 1024;

/// `segment.ms`: roll a segment once it is this old (7 days, Kafka's default).
pub const SEGMENT_MS_DEFAULT: i64 = 7 * 24 * 60 * 60 * 1000;

/// `retention.ms`: delete segments whose newest record is older than this (7 days).
pub const RETENTION_MS_DEFAULT: i64 = 7 * 24 * 60 * 60 * 1000;

/// `retention.bytes`: unlimited by default.
pub const RETENTION_BYTES_DEFAULT: i64 = -1;

/// `index.interval.bytes`: add an offset-index entry every this many log bytes.
pub const INDEX_INTERVAL_BYTES_DEFAULT: i32 = 4096;

/// `log.retention.check.interval.ms`: how often retention runs.
pub const RETENTION_CHECK_INTERVAL_MS: i64 = 5 * 60 * 1000;

/// Minimum size of a v2 record batch: the fixed header without records.
pub const BATCH_HEADER_BYTES: usize = 61;

/// Most partitions a topic may have; bounds memory per topic.
pub const PARTITIONS_PER_TOPIC_MAX: i32 = 10_000;

/// Longest topic name Kafka accepts.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;

/// How many recent batches per producer are remembered for duplicate detection (Kafka: 5,
/// matching `max.in.flight.requests.per.connection` with idempotence).
pub const PRODUCER_BATCHES_CACHED_MAX: usize = 5;

/// Longest a Fetch may wait (`max_wait_ms` is clamped to this).
pub const FETCH_WAIT_MS_MAX: i64 = 30_000;

/// Requests waiting in the core for an fsync or for data, across all connections.
pub const PARKED_REQUESTS_MAX: usize = 100_000;

/// Producer ids are reserved in blocks so that a restart never reuses one: the end of the
/// current block is persisted before any id in it is handed out.
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

/// A follower's replica fetcher waits this long at most for every partition it follows on a
/// leader to be ready (durable) before sending the fetches it has; see `broker/replication.rs`.
pub const REPLICA_FETCH_GATHER_MS_MAX: i64 = 250;

/// A replica fetch unanswered this long is given up (the peer link lost it) and sent again.
pub const REPLICA_FETCH_IN_FLIGHT_MS_MAX: i64 = 1_500;

/// A leader answers a replica fetch by this long at the latest, even if a partition's Raft
/// went away (its topic deleted) while the fetch waited.
pub const REPLICA_FETCH_WAIT_MS_MAX: i64 = 1_000;

/// A follower that has not caught up with its leader's log end for this long leaves the
/// in-sync replicas (Kafka's `replica.lag.time.max.ms`, 30 s there).
pub const REPLICA_LAG_MS_MAX: i64 = 10_000;

/// How often a leader looks at its partitions' in-sync replicas again (time alone shrinks them).
pub const ISR_CHECK_INTERVAL_MS: i64 = 1_000;

/// How long a broker waits for the controller's answer to an admin request it forwarded before
/// handling the request itself (the controller may have died with it).
pub const FORWARD_TIMEOUT_MS: i64 = 5_000;

/// Kafka's `transaction.max.timeout.ms`: the longest transaction timeout a producer may ask for.
pub const TXN_TIMEOUT_MS_MAX: i32 = 900_000;

/// How often a transaction coordinator checks open transactions against their timeout and
/// sends again the markers not yet written.
pub const TXN_TICK_MS: i64 = 1_000;

/// How long a transaction state record or marker waits for its commit before it counts as
/// failed (and a marker sent to another broker before it is sent again).
pub const TXN_WRITE_WAIT_MS: i64 = 30_000;

/// How long a WriteTxnMarkers request waits for its markers to commit (Kafka waits up to the
/// request timeout; the coordinator sends the markers again after an error).
pub const TXN_MARKERS_COMMIT_WAIT_MS: i64 = 30_000;

/// How long a partition leader holds a transactional request for the coordinator's answer to
/// its verification or implicit add; then it is handled without one (NOT_ENOUGH_REPLICAS, which
/// clients retry).
pub const TXN_VERIFY_WAIT_MS: i64 = 5_000;

/// How long a broker waits before asking the controller again for an internal topic
/// (`__consumer_offsets`, `__transaction_state`).
pub const INTERNAL_TOPIC_CREATE_RETRY_MS: i64 = 1_000;
