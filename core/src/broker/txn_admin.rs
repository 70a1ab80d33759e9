//! The transaction admin APIs `kafka-transactions.sh` uses: DescribeTransactions and
//! ListTransactions (answered by the coordinator of the ids, this node on a single node) and
//! DescribeProducers (answered by each partition's leader from its producer state).

use kafka_protocol::messages::describe_producers_response::{PartitionResponse, ProducerState, TopicResponse};
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedTransaction;
use kafka_protocol::messages::{
    DescribeProducersRequest, DescribeProducersResponse, DescribeTransactionsRequest, DescribeTransactionsResponse,
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use super::Broker;
use crate::error::ErrorCode;
use crate::txn::metadata::TxnState;

fn s(value: impl Into<String>) -> StrBytes {
    StrBytes::from_string(value.into())
}

impl Broker {
    pub(super) fn describe_transactions(&self, request: DescribeTransactionsRequest) -> DescribeTransactionsResponse {
        let mut response = DescribeTransactionsResponse::default();
        for id in request.transactional_ids {
            let mut state = TransactionState::default().with_transactional_id(id.clone());
            // One node coordinates every id; in a cluster, only those of its state partitions.
            let not_here = if self.is_cluster() { self.txn_not_here(&id.0) } else { None };
            match (not_here, self.txn.state(&id.0)) {
                (Some(code), _) => state.error_code = code.code(),
                (None, None) => state.error_code = ErrorCode::TransactionalIdNotFound.code(),
                (None, Some(meta)) => {
                    let mut topics: Vec<TopicData> = Vec::new();
                    for (topic, index) in &meta.partitions {
                        match topics.last_mut() {
                            Some(t) if *t.topic.0 == **topic => t.partitions.push(*index),
                            _ => topics.push(
                                TopicData::default()
                                    .with_topic(TopicName(s(topic.as_str())))
                                    .with_partitions(vec![*index]),
                            ),
                        }
                    }
                    state = state
                        .with_transaction_state(s(meta.state.name()))
                        .with_transaction_timeout_ms(meta.timeout_ms)
                        .with_transaction_start_time_ms(meta.start_ms)
                        .with_producer_id(ProducerId(meta.producer_id))
                        .with_producer_epoch(meta.producer_epoch)
                        .with_topics(topics);
                }
            }
            response.transaction_states.push(state);
        }
        response
    }

    pub(super) fn list_transactions(&self, now_ms: i64, request: ListTransactionsRequest) -> ListTransactionsResponse {
        let mut response = ListTransactionsResponse::default();
        let all = [
            TxnState::Empty,
            TxnState::Ongoing,
            TxnState::PrepareCommit,
            TxnState::PrepareAbort,
            TxnState::CompleteCommit,
            TxnState::CompleteAbort,
        ];
        let mut wanted = Vec::new();
        for filter in &request.state_filters {
            match all.iter().find(|state| state.name() == filter.as_str()) {
                Some(state) => wanted.push(*state),
                None => response.unknown_state_filters.push(filter.clone()),
            }
        }
        let producers: Vec<i64> = request.producer_id_filters.iter().map(|p| p.0).collect();
        for (id, meta) in self.txn.ids() {
            let running_for = if meta.start_ms >= 0 { now_ms - meta.start_ms } else { -1 };
            let listed = (request.state_filters.is_empty() || wanted.contains(&meta.state))
                && (producers.is_empty() || producers.contains(&meta.producer_id))
                && (request.duration_filter < 0 || running_for >= request.duration_filter);
            if listed {
                response.transaction_states.push(
                    ListedTransaction::default()
                        .with_transactional_id(TransactionalId(s(id)))
                        .with_producer_id(ProducerId(meta.producer_id))
                        .with_transaction_state(s(meta.state.name())),
                );
            }
        }
        response
    }

    pub(super) fn describe_producers(&self, request: DescribeProducersRequest) -> DescribeProducersResponse {
        let mut response = DescribeProducersResponse::default();
        for topic in request.topics {
            let mut topic_response = TopicResponse::default().with_name(topic.name.clone());
            for index in topic.partition_indexes {
                let mut partition = PartitionResponse::default().with_partition_index(index);
                match self.partition(&topic.name.0, index) {
                    None => partition.error_code = self.absent_partition(&topic.name.0, index).code(),
                    Some(p) if !p.is_leader() => partition.error_code = ErrorCode::NotLeaderOrFollower.code(),
                    Some(p) => {
                        partition.active_producers = p
                            .producers
                            .describe()
                            .map(|(producer_id, epoch, last_sequence, txn_first_offset)| {
                                ProducerState::default()
                                    .with_producer_id(ProducerId(producer_id))
                                    .with_producer_epoch(i32::from(epoch))
                                    .with_last_sequence(last_sequence)
                                    .with_last_timestamp(-1)
                                    .with_coordinator_epoch(-1)
                                    .with_current_txn_start_offset(txn_first_offset.unwrap_or(-1))
                            })
                            .collect();
                    }
                }
                topic_response.partitions.push(partition);
            }
            response.topics.push(topic_response);
        }
        response
    }
}
