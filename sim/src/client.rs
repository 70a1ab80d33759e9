//! A minimal Kafka client for simulated nodes: one request at a time per connection, every
//! call bounded by a timeout (a killed broker never closes its sockets in the simulator).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Conn {
    stream: TcpStream,
    correlation_id: i32,
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn timeout_error() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "request timed out")
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let stream =
            tokio::time::timeout(CALL_TIMEOUT, TcpStream::connect(addr)).await.map_err(|_| timeout_error())??;
        Ok(Conn { stream, correlation_id: 0 })
    }

    /// Sends one request and waits for its response.
    pub async fn call<R: Request>(&mut self, request: &R, version: i16) -> io::Result<R::Response> {
        tokio::time::timeout(CALL_TIMEOUT, self.call_inner(request, version)).await.map_err(|_| timeout_error())?
    }

    async fn call_inner<R: Request>(&mut self, request: &R, version: i16) -> io::Result<R::Response> {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("sim")));
        let mut body = BytesMut::new();
        header.encode(&mut body, R::header_version(version)).map_err(io::Error::other)?;
        request.encode(&mut body, version).map_err(io::Error::other)?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        self.stream.write_all(&frame).await?;
        self.stream.flush().await?;
        let size = self.stream.read_i32().await?;
        let mut response = vec![0u8; usize::try_from(size).map_err(io::Error::other)?];
        self.stream.read_exact(&mut response).await?;
        let mut response = Bytes::from(response);
        let header =
            ResponseHeader::decode(&mut response, R::Response::header_version(version)).map_err(io::Error::other)?;
        if header.correlation_id != self.correlation_id {
            return Err(io::Error::other(format!(
                "correlation id {} != {}",
                header.correlation_id, self.correlation_id
            )));
        }
        let decoded = R::Response::decode(&mut response, version).map_err(io::Error::other)?;
        let _ = response.remaining();
        Ok(decoded)
    }

    pub async fn create_topic(&mut self, name: &str, partitions: i32) -> io::Result<i16> {
        self.create_replicated_topic(name, partitions, 1).await
    }

    pub async fn create_replicated_topic(&mut self, name: &str, partitions: i32, replicas: i16) -> io::Result<i16> {
        let request = CreateTopicsRequest::default().with_timeout_ms(5000).with_topics(vec![CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(partitions)
            .with_replication_factor(replicas)]);
        let response = self.call(&request, 7).await?;
        Ok(response.topics.first().map_or(-1, |t| t.error_code))
    }

    /// Each partition's (leader, leader epoch) as this broker's Metadata names them (leader -1:
    /// none now).
    pub async fn leaders(&mut self, topic: &str) -> io::Result<std::collections::BTreeMap<i32, (i32, i32)>> {
        let request = MetadataRequest::default()
            .with_topics(Some(vec![
                metadata_request::MetadataRequestTopic::default().with_name(Some(topic_name(topic)))
            ]))
            .with_allow_auto_topic_creation(false);
        let response = self.call(&request, 9).await?;
        let topic = response.topics.first().ok_or_else(|| io::Error::other("empty metadata response"))?;
        Ok(topic.partitions.iter().map(|p| (p.partition_index, (p.leader_id.0, p.leader_epoch))).collect())
    }

    /// The names of every topic this broker's Metadata lists (a request for all topics), and
    /// the controller it names (-1: none known).
    pub async fn topic_names(&mut self) -> io::Result<(Vec<String>, i32)> {
        let request = MetadataRequest::default().with_topics(None).with_allow_auto_topic_creation(false);
        let response = self.call(&request, 9).await?;
        let names = response.topics.iter().filter_map(|t| t.name.as_ref().map(|n| n.0.to_string())).collect();
        Ok((names, response.controller_id.0))
    }

    pub async fn delete_topic(&mut self, name: &str) -> io::Result<i16> {
        let request = DeleteTopicsRequest::default().with_timeout_ms(5000).with_topic_names(vec![topic_name(name)]);
        let response = self.call(&request, 5).await?;
        Ok(response.responses.first().map_or(-1, |t| t.error_code))
    }

    pub async fn init_producer_id(&mut self) -> io::Result<(i16, i64, i16)> {
        let request = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let response = self.call(&request, 4).await?;
        Ok((response.error_code, response.producer_id.0, response.producer_epoch))
    }

    /// Produce one batch to one partition: (error code, base offset). `None` for acks=0.
    pub async fn produce(&mut self, topic: &str, partition: i32, acks: i16, batch: Vec<u8>) -> io::Result<(i16, i64)> {
        let request = ProduceRequest::default().with_acks(acks).with_timeout_ms(5000).with_topic_data(vec![
            TopicProduceData::default().with_name(topic_name(topic)).with_partition_data(vec![
                PartitionProduceData::default().with_index(partition).with_records(Some(Bytes::from(batch))),
            ]),
        ]);
        let response = self.call(&request, 9).await?;
        let p = response
            .responses
            .first()
            .and_then(|t| t.partition_responses.first())
            .ok_or_else(|| io::Error::other("empty produce response"))?;
        Ok((p.error_code, p.base_offset))
    }

    /// Fetch from one partition: (error code, high watermark, record bytes).
    pub async fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait_ms: i32,
    ) -> io::Result<(i16, i64, Bytes)> {
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(256 * 1024)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default().with_topic(topic_name(topic)).with_partitions(vec![
                FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(64 * 1024),
            ])]);
        let response = self.call(&request, 12).await?;
        if response.error_code != 0 {
            return Ok((response.error_code, -1, Bytes::new()));
        }
        let p = response
            .responses
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or_else(|| io::Error::other("empty fetch response"))?;
        Ok((p.error_code, p.high_watermark, p.records.clone().unwrap_or_default()))
    }

    /// ListOffsets: (error code, offset) for `timestamp` (-1 latest, -2 earliest).
    pub async fn list_offset(&mut self, topic: &str, partition: i32, timestamp: i64) -> io::Result<(i16, i64)> {
        let request =
            ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(partition)
                    .with_timestamp(timestamp)])]);
        let response = self.call(&request, 7).await?;
        let p = response
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or_else(|| io::Error::other("empty list offsets response"))?;
        Ok((p.error_code, p.offset))
    }
}

/// The answer to a JoinGroup: (error, generation, member id, leader, member ids if leader).
pub struct Joined {
    pub error: i16,
    pub generation: i32,
    pub member_id: String,
    pub leader: String,
    pub members: Vec<String>,
}

impl Conn {
    pub async fn join_group(&mut self, group: &str, member_id: &str) -> io::Result<Joined> {
        use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
        let request = JoinGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
            .with_session_timeout_ms(6_000)
            .with_rebalance_timeout_ms(10_000)
            .with_member_id(StrBytes::from_string(member_id.to_string()))
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("sim"))
                .with_metadata(Bytes::new())]);
        // The join may wait for a whole rebalance: longer than an ordinary call.
        let response = tokio::time::timeout(Duration::from_secs(15), self.call_inner(&request, 5))
            .await
            .map_err(|_| timeout_error())??;
        Ok(Joined {
            error: response.error_code,
            generation: response.generation_id,
            member_id: response.member_id.to_string(),
            leader: response.leader.to_string(),
            members: response.members.iter().map(|m| m.member_id.to_string()).collect(),
        })
    }

    /// SyncGroup; the leader passes every member's partitions. Returns (error, my partitions).
    pub async fn sync_group(
        &mut self,
        group: &str,
        generation: i32,
        member_id: &str,
        assignments: &[(String, Vec<i32>)],
    ) -> io::Result<(i16, Vec<i32>)> {
        use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
        let encode =
            |partitions: &[i32]| Bytes::from(partitions.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(","));
        let request = SyncGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
            .with_generation_id(generation)
            .with_member_id(StrBytes::from_string(member_id.to_string()))
            .with_assignments(
                assignments
                    .iter()
                    .map(|(m, ps)| {
                        SyncGroupRequestAssignment::default()
                            .with_member_id(StrBytes::from_string(m.clone()))
                            .with_assignment(encode(ps))
                    })
                    .collect(),
            );
        let response = tokio::time::timeout(Duration::from_secs(15), self.call_inner(&request, 3))
            .await
            .map_err(|_| timeout_error())??;
        let text = String::from_utf8_lossy(&response.assignment).into_owned();
        let partitions = text.split(',').filter(|p| !p.is_empty()).filter_map(|p| p.parse().ok()).collect();
        Ok((response.error_code, partitions))
    }

    pub async fn leave_group(&mut self, group: &str, member_id: &str) -> io::Result<i16> {
        let request = LeaveGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
            .with_member_id(StrBytes::from_string(member_id.to_string()));
        Ok(self.call(&request, 1).await?.error_code)
    }

    pub async fn heartbeat(&mut self, group: &str, generation: i32, member_id: &str) -> io::Result<i16> {
        let request = HeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
            .with_generation_id(generation)
            .with_member_id(StrBytes::from_string(member_id.to_string()));
        Ok(self.call(&request, 3).await?.error_code)
    }

    pub async fn commit(
        &mut self,
        group: &str,
        generation: i32,
        member_id: &str,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> io::Result<i16> {
        use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(StrBytes::from_string(member_id.to_string()))
            .with_topics(vec![OffsetCommitRequestTopic::default().with_name(topic_name(topic)).with_partitions(vec![
                OffsetCommitRequestPartition::default().with_partition_index(partition).with_committed_offset(offset),
            ])]);
        let response = self.call(&request, 7).await?;
        Ok(response.topics.first().and_then(|t| t.partitions.first()).map_or(-1, |p| p.error_code))
    }

    /// The coordinator of `group` as this broker names it: (error code, node id).
    pub async fn find_coordinator(&mut self, group: &str) -> io::Result<(i16, i32)> {
        let request = FindCoordinatorRequest::default().with_key(StrBytes::from_string(group.to_string()));
        let response = self.call(&request, 3).await?;
        Ok((response.error_code, response.node_id.0))
    }

    /// The committed offset of one partition, if the broker answered it as the group's
    /// coordinator: `Ok(None)` for an error answer (NOT_COORDINATOR, still loading).
    pub async fn committed_here(&mut self, group: &str, topic: &str, partition: i32) -> io::Result<Option<i64>> {
        use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
        let request = OffsetFetchRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(topic_name(topic))
                .with_partition_indexes(vec![partition])]));
        let response = self.call(&request, 5).await?;
        let found = response.topics.iter().flat_map(|t| &t.partitions).find(|p| p.partition_index == partition);
        Ok(match found {
            Some(p) if response.error_code == 0 && p.error_code == 0 => Some(p.committed_offset),
            _ => None,
        })
    }

    /// Committed offsets of `partitions` (-1 where none).
    pub async fn committed(&mut self, group: &str, topic: &str, partitions: &[i32]) -> io::Result<Vec<(i32, i64)>> {
        use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
        let request = OffsetFetchRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(topic_name(topic))
                .with_partition_indexes(partitions.to_vec())]));
        let response = self.call(&request, 5).await?;
        Ok(response
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (p.partition_index, p.committed_offset)))
            .collect())
    }
}

/// A ConsumerGroupHeartbeat (KIP-848) answer.
#[derive(Debug, Clone)]
pub struct Beat {
    pub error: i16,
    pub epoch: i32,
    /// The member's whole assignment, when the coordinator sent one: (topic id, partitions).
    pub assignment: Option<Vec<(uuid::Uuid, Vec<i32>)>>,
}

impl Conn {
    /// ConsumerGroupHeartbeat v1. `epoch` 0 joins (subscribing to `topic`), -1 leaves; `owned`
    /// reports the partitions the member holds.
    pub async fn consumer_heartbeat(
        &mut self,
        group: &str,
        member_id: &str,
        epoch: i32,
        topic: &str,
        owned: &[(uuid::Uuid, Vec<i32>)],
    ) -> io::Result<Beat> {
        use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
        let joining = epoch == 0;
        let request = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
            .with_member_id(StrBytes::from_string(member_id.to_string()))
            .with_member_epoch(epoch)
            .with_rebalance_timeout_ms(if joining { 5_000 } else { -1 })
            .with_subscribed_topic_names(joining.then(|| vec![topic_name(topic)]))
            .with_topic_partitions((epoch >= 0).then(|| {
                owned
                    .iter()
                    .map(|(id, partitions)| {
                        TopicPartitions::default().with_topic_id(*id).with_partitions(partitions.clone())
                    })
                    .collect()
            }));
        let response = self.call(&request, 1).await?;
        Ok(Beat {
            error: response.error_code,
            epoch: response.member_epoch,
            assignment: response
                .assignment
                .map(|a| a.topic_partitions.into_iter().map(|t| (t.topic_id, t.partitions)).collect()),
        })
    }
}

/// A record as a consumer saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub offset: i64,
    pub value: Vec<u8>,
}

/// Decodes fetched record bytes, checking every batch's CRC. `Err` names a corrupt batch.
pub fn decode_records(mut bytes: Bytes) -> Result<Vec<Seen>, String> {
    let mut out = Vec::new();
    while bytes.has_remaining() {
        let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes).map_err(|e| e.to_string())?;
        // Control batches (a partition leader's LeaderChange, later transaction markers) hold no
        // data; consumers skip them.
        for record in set.records.into_iter().filter(|r| !r.control) {
            out.push(Seen { offset: record.offset, value: record.value.map(|v| v.to_vec()).unwrap_or_default() });
        }
    }
    Ok(out)
}

/// Transactions (KIP-98, the first generation), for `crate::txn`.
impl Conn {
    /// The coordinator of transactional id `id` as this broker names it: (error, node id).
    pub async fn find_txn_coordinator(&mut self, id: &str) -> io::Result<(i16, i32)> {
        let request = FindCoordinatorRequest::default().with_key_type(1).with_key(StrBytes::from_string(id.into()));
        let response = self.call(&request, 3).await?;
        Ok((response.error_code, response.node_id.0))
    }

    /// InitProducerId with a transactional id: (error, producer id, epoch).
    pub async fn init_txn(&mut self, id: &str, timeout_ms: i32) -> io::Result<(i16, i64, i16)> {
        let request = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(StrBytes::from_string(id.into()))))
            .with_transaction_timeout_ms(timeout_ms)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let response = self.call(&request, 4).await?;
        Ok((response.error_code, response.producer_id.0, response.producer_epoch))
    }

    /// AddPartitionsToTxn v3: the first partition error that is not NONE, else 0.
    pub async fn add_partitions(
        &mut self,
        id: &str,
        producer: (i64, i16),
        topic: &str,
        partitions: &[i32],
    ) -> io::Result<i16> {
        use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
        let request = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(TransactionalId(StrBytes::from_string(id.into())))
            .with_v3_and_below_producer_id(ProducerId(producer.0))
            .with_v3_and_below_producer_epoch(producer.1)
            .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(partitions.to_vec())]);
        let response = self.call(&request, 3).await?;
        let codes = response.results_by_topic_v3_and_below.iter().flat_map(|t| &t.results_by_partition);
        Ok(codes.map(|p| p.partition_error_code).find(|&c| c != 0).unwrap_or(response.error_code))
    }

    pub async fn add_offsets(&mut self, id: &str, producer: (i64, i16), group: &str) -> io::Result<i16> {
        let request = AddOffsetsToTxnRequest::default()
            .with_transactional_id(TransactionalId(StrBytes::from_string(id.into())))
            .with_producer_id(ProducerId(producer.0))
            .with_producer_epoch(producer.1)
            .with_group_id(GroupId(StrBytes::from_string(group.into())));
        Ok(self.call(&request, 3).await?.error_code)
    }

    /// TxnOffsetCommit v3 of one partition's offset, at the group's coordinator.
    pub async fn txn_commit_offset(
        &mut self,
        id: &str,
        producer: (i64, i16),
        group: &str,
        (topic, partition, offset): (&str, i32, i64),
        version: i16,
    ) -> io::Result<i16> {
        use kafka_protocol::messages::txn_offset_commit_request::{
            TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
        };
        let request = TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(StrBytes::from_string(id.into())))
            .with_group_id(GroupId(StrBytes::from_string(group.into())))
            .with_producer_id(ProducerId(producer.0))
            .with_producer_epoch(producer.1)
            .with_generation_id(-1)
            .with_topics(vec![TxnOffsetCommitRequestTopic::default().with_name(topic_name(topic)).with_partitions(
                vec![TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(partition)
                    .with_committed_offset(offset)],
            )]);
        let response = self.call(&request, version).await?;
        Ok(response.topics.first().and_then(|t| t.partitions.first()).map_or(-1, |p| p.error_code))
    }

    pub async fn end_txn(&mut self, id: &str, producer: (i64, i16), commit: bool) -> io::Result<i16> {
        Ok(self.end_txn_at(3, id, producer, commit).await?.0)
    }

    /// EndTxn at `version` (5: the second generation, which answers the bumped epoch): (error,
    /// producer id, epoch).
    pub async fn end_txn_at(
        &mut self,
        version: i16,
        id: &str,
        producer: (i64, i16),
        commit: bool,
    ) -> io::Result<(i16, i64, i16)> {
        let request = EndTxnRequest::default()
            .with_transactional_id(TransactionalId(StrBytes::from_string(id.into())))
            .with_producer_id(ProducerId(producer.0))
            .with_producer_epoch(producer.1)
            .with_committed(commit);
        let response = self.call(&request, version).await?;
        Ok((response.error_code, response.producer_id.0, response.producer_epoch))
    }

    /// A transactional Produce of one batch at `version` (12: its partition joins the
    /// transaction through the leader): (error, base offset).
    pub async fn produce_txn(
        &mut self,
        version: i16,
        id: &str,
        topic: &str,
        partition: i32,
        batch: Vec<u8>,
    ) -> io::Result<(i16, i64)> {
        let request = ProduceRequest::default()
            .with_transactional_id(Some(TransactionalId(StrBytes::from_string(id.into()))))
            .with_acks(-1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![TopicProduceData::default().with_name(topic_name(topic)).with_partition_data(vec![
                PartitionProduceData::default().with_index(partition).with_records(Some(Bytes::from(batch))),
            ])]);
        let response = self.call(&request, version).await?;
        let p = response
            .responses
            .first()
            .and_then(|t| t.partition_responses.first())
            .ok_or_else(|| io::Error::other("empty produce response"))?;
        Ok((p.error_code, p.base_offset))
    }

    /// A read_committed Fetch: (error, last stable offset, record bytes, aborted transactions
    /// as (producer id, first offset)).
    pub async fn fetch_committed_with_aborted(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> io::Result<(i16, i64, Bytes, Vec<(i64, i64)>)> {
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(256 * 1024)
            .with_isolation_level(1)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default().with_topic(topic_name(topic)).with_partitions(vec![
                FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(64 * 1024),
            ])]);
        let response = self.call(&request, 12).await?;
        let p = response
            .responses
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or_else(|| io::Error::other("empty fetch response"))?;
        let code = if response.error_code != 0 { response.error_code } else { p.error_code };
        let aborted = p.aborted_transactions.iter().flatten().map(|a| (a.producer_id.0, a.first_offset)).collect();
        Ok((code, p.last_stable_offset, p.records.clone().unwrap_or_default(), aborted))
    }

    /// ListOffsets latest: (error, high watermark, last stable offset).
    pub async fn ends(&mut self, topic: &str, partition: i32) -> io::Result<(i16, i64, i64)> {
        let mut ends = [0i64; 2];
        for (i, isolation) in [0i8, 1].into_iter().enumerate() {
            let request = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_isolation_level(isolation)
                .with_topics(vec![ListOffsetsTopic::default().with_name(topic_name(topic)).with_partitions(vec![
                    ListOffsetsPartition::default().with_partition_index(partition).with_timestamp(-1),
                ])]);
            let response = self.call(&request, 7).await?;
            let p = response
                .topics
                .first()
                .and_then(|t| t.partitions.first())
                .ok_or_else(|| io::Error::other("empty list offsets response"))?;
            if p.error_code != 0 {
                return Ok((p.error_code, -1, -1));
            }
            ends[i] = p.offset;
        }
        Ok((0, ends[0], ends[1]))
    }

    /// The stable committed offset of one partition (OffsetFetch v7, require_stable):
    /// `Ok(None)` for an error answer (not the coordinator, loading, offsets still unstable).
    pub async fn committed_stable(&mut self, group: &str, topic: &str, partition: i32) -> io::Result<Option<i64>> {
        use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
        let request = OffsetFetchRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
            .with_require_stable(true)
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(topic_name(topic))
                .with_partition_indexes(vec![partition])]));
        let response = self.call(&request, 7).await?;
        let found = response.topics.iter().flat_map(|t| &t.partitions).find(|p| p.partition_index == partition);
        Ok(match found {
            Some(p) if response.error_code == 0 && p.error_code == 0 => Some(p.committed_offset),
            _ => None,
        })
    }
}
