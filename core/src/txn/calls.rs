//! What transaction coordinators and partition leaders of a cluster send each other, as the
//! Kafka requests Kafka's brokers use for it:
//!
//! - a partition leader asks a transactional id's coordinator whether partitions are in the
//!   producer's ongoing transaction before it takes the first transactional batch of that
//!   transaction (KIP-890 part 1: AddPartitionsToTxn v4 with `verify_only`);
//! - a coordinator asks a partition's leader to end a producer's transaction there
//!   (WriteTxnMarkers).
//!
//! Each call carries a token, so its answer finds what waits for it.

use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey, RequestKind, ResponseKind, WriteTxnMarkersRequest,
    WriteTxnMarkersResponse,
};

/// The first AddPartitionsToTxn version of the broker-to-broker form (batched, with
/// `verify_only`).
pub const VERIFY_VERSION: i16 = 4;

#[derive(Debug, Clone, PartialEq)]
pub enum TxnCall {
    Verify { token: u64, request: AddPartitionsToTxnRequest },
    Verified { token: u64, response: AddPartitionsToTxnResponse },
    Markers { token: u64, request: WriteTxnMarkersRequest },
    MarkersWritten { token: u64, response: WriteTxnMarkersResponse },
}

impl TxnCall {
    /// The API and the one version that carries this call; `None` for an answer.
    pub fn api(&self) -> Option<(ApiKey, i16)> {
        match self {
            TxnCall::Verify { .. } => Some((ApiKey::AddPartitionsToTxn, VERIFY_VERSION)),
            TxnCall::Markers { .. } => Some((ApiKey::WriteTxnMarkers, 1)),
            TxnCall::Verified { .. } | TxnCall::MarkersWritten { .. } => None,
        }
    }

    pub fn request(&self) -> Option<RequestKind> {
        match self {
            TxnCall::Verify { request, .. } => Some(RequestKind::AddPartitionsToTxn(request.clone())),
            TxnCall::Markers { request, .. } => Some(RequestKind::WriteTxnMarkers(request.clone())),
            TxnCall::Verified { .. } | TxnCall::MarkersWritten { .. } => None,
        }
    }

    /// The answer `response` gives to this call.
    pub fn answer(&self, response: &ResponseKind) -> Result<TxnCall, String> {
        match (self, response) {
            (TxnCall::Verify { token, .. }, ResponseKind::AddPartitionsToTxn(r)) => {
                Ok(TxnCall::Verified { token: *token, response: r.clone() })
            }
            (TxnCall::Markers { token, .. }, ResponseKind::WriteTxnMarkers(r)) => {
                Ok(TxnCall::MarkersWritten { token: *token, response: r.clone() })
            }
            _ => Err("the response does not answer the transaction call sent".into()),
        }
    }
}
