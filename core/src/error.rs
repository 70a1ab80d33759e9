//! Kafka error codes the broker returns. Bad input becomes one of these, never a panic.

/// The subset of Kafka's error codes that Headwater produces, with Kafka's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i16)]
pub enum ErrorCode {
    None = 0,
    OffsetOutOfRange = 1,
    CorruptMessage = 2,
    UnknownTopicOrPartition = 3,
    InvalidFetchSize = 4,
    LeaderNotAvailable = 5,
    NotLeaderOrFollower = 6,
    RequestTimedOut = 7,
    MessageTooLarge = 10,
    OffsetMetadataTooLarge = 12,
    CoordinatorLoadInProgress = 14,
    CoordinatorNotAvailable = 15,
    NotCoordinator = 16,
    InvalidTopicException = 17,
    RecordListTooLarge = 18,
    NotEnoughReplicas = 19,
    NotEnoughReplicasAfterAppend = 20,
    InvalidRequiredAcks = 21,
    IllegalGeneration = 22,
    InconsistentGroupProtocol = 23,
    InvalidGroupId = 24,
    UnknownMemberId = 25,
    InvalidSessionTimeout = 26,
    RebalanceInProgress = 27,
    InvalidTimestamp = 32,
    UnsupportedVersion = 35,
    TopicAlreadyExists = 36,
    InvalidPartitions = 37,
    InvalidReplicationFactor = 38,
    InvalidReplicaAssignment = 39,
    InvalidConfig = 40,
    NotController = 41,
    InvalidRequest = 42,
    UnsupportedForMessageFormat = 43,
    PolicyViolation = 44,
    OutOfOrderSequenceNumber = 45,
    DuplicateSequenceNumber = 46,
    InvalidProducerEpoch = 47,
    InvalidTxnState = 48,
    InvalidProducerIdMapping = 49,
    InvalidTransactionTimeout = 50,
    ConcurrentTransactions = 51,
    TransactionCoordinatorFenced = 52,
    TransactionalIdAuthorizationFailed = 53,
    OperationNotAttempted = 55,
    KafkaStorageError = 56,
    UnknownProducerId = 59,
    ReassignmentInProgress = 60,
    FencedLeaderEpoch = 74,
    StaleBrokerEpoch = 77,
    UnknownLeaderEpoch = 75,
    UnsupportedCompressionType = 76,
    OffsetNotAvailable = 78,
    NonEmptyGroup = 68,
    GroupIdNotFound = 69,
    MemberIdRequired = 79,
    GroupMaxSizeReached = 81,
    FencedInstanceId = 82,
    GroupSubscribedToTopic = 86,
    InvalidRecord = 87,
    UnstableOffsetCommit = 88,
    UnknownTopicId = 100,
    TransactionalIdNotFound = 105,
    BrokerIdNotRegistered = 102,
    InconsistentTopicId = 103,
    InconsistentClusterId = 104,
    ProducerFenced = 90,
    ResourceNotFound = 91,
    SnapshotNotFound = 98,
    FencedMemberEpoch = 110,
    UnreleasedInstanceId = 111,
    UnsupportedAssignor = 112,
    StaleMemberEpoch = 113,
    InvalidRegularExpression = 128,
}

impl ErrorCode {
    pub fn code(self) -> i16 {
        self as i16
    }

    /// Kafka's message for the code, where the client shows one.
    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::None => "",
            ErrorCode::OffsetOutOfRange => {
                "the requested offset is not within the range of offsets kept for this partition"
            }
            ErrorCode::CorruptMessage => "the record batch failed its CRC-32C check or is malformed",
            ErrorCode::UnknownTopicOrPartition => "this broker does not host this topic-partition",
            ErrorCode::MessageTooLarge => "the record batch is larger than max.message.bytes",
            ErrorCode::InvalidRecord => "the record batch is invalid",
            ErrorCode::InvalidConfig => "a configuration value is invalid",
            ErrorCode::OutOfOrderSequenceNumber => "the broker received an out of order sequence number",
            ErrorCode::InvalidProducerEpoch => "the producer's epoch is older than the one this partition has seen",
            ErrorCode::KafkaStorageError => "a disk error occurred on this broker",
            ErrorCode::NotEnoughReplicas => "fewer replicas are in sync than min.insync.replicas asks for",
            ErrorCode::InconsistentClusterId => "the request names a cluster id other than this node's",
            _ => "",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?} ({})", self.code())
    }
}
