//! The producer against a real Headwater broker started in this process.

use std::time::Duration;

use headwater_client::{
    Acks, Admin, ClientConfig, Compression, ErrorKind, NewTopic, Producer, ProducerConfig, ProducerRecord,
};
use headwater_server::embedded::{EmbeddedBroker, EmbeddedOptions};

fn broker(settings: &[(&str, &str)]) -> EmbeddedBroker {
    EmbeddedBroker::start(EmbeddedOptions {
        data_dir: None,
        settings: settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    })
    .expect("embedded broker starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_codec_delivers_contiguous_offsets_in_send_order() {
    let broker = broker(&[]);
    let admin = Admin::new(ClientConfig::new(broker.bootstrap())).unwrap();
    for compression in [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd]
    {
        let topic = format!("codec-{compression:?}").to_lowercase();
        admin.create_topic(NewTopic::new(&topic, 1)).await.unwrap();
        let mut config = ProducerConfig::new(broker.bootstrap());
        config.compression = compression;
        let producer = Producer::new(config).unwrap();
        let mut deliveries = Vec::new();
        for i in 0..2000 {
            let record = ProducerRecord::new(&topic, format!("value-{i}")).with_header("n", Some(i.to_string().into()));
            deliveries.push(producer.send(record).await.unwrap());
        }
        for (i, delivery) in deliveries.into_iter().enumerate() {
            let metadata = delivery.await.unwrap();
            assert_eq!((metadata.partition, metadata.offset), (0, i as i64), "{compression:?}");
        }
        producer.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_records_go_where_the_java_client_puts_them() {
    let broker = broker(&[]);
    let admin = Admin::new(ClientConfig::new(broker.bootstrap())).unwrap();
    admin.create_topic(NewTopic::new("keyed", 6)).await.unwrap();
    let producer = Producer::new(ProducerConfig::new(broker.bootstrap())).unwrap();
    // murmur2("order-1") and friends, as Utils.murmur2 computes them, modulo 6.
    for key in ["order-1", "order-2", "order-3", "customer-42"] {
        let metadata = producer.send_and_wait(ProducerRecord::new("keyed", "v").with_key(key)).await.unwrap();
        assert_eq!(metadata.partition, headwater_client::records::partition_for_key(key.as_bytes(), 6), "{key}");
    }
    let explicit = producer.send_and_wait(ProducerRecord::new("keyed", "v").with_partition(5)).await.unwrap();
    assert_eq!(explicit.partition, 5);
    let bad = producer.send_and_wait(ProducerRecord::new("keyed", "v").with_partition(6)).await.unwrap_err();
    assert_eq!(bad.kind, ErrorKind::UnknownTopic, "{bad}");
    producer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_zero_and_one_deliver_and_unknown_topics_fail_clearly() {
    let broker = broker(&[("auto_create_topics", "false")]);
    Admin::new(ClientConfig::new(broker.bootstrap())).unwrap().create_topic(NewTopic::new("t", 1)).await.unwrap();
    for acks in [Acks::None, Acks::Leader] {
        let mut config = ProducerConfig::new(broker.bootstrap());
        config.acks = acks;
        config.idempotence = false;
        let producer = Producer::new(config).unwrap();
        let metadata = producer.send_and_wait(ProducerRecord::new("t", "x")).await.unwrap();
        assert_eq!(metadata.offset < 0, acks == Acks::None, "{acks:?}: {metadata:?}");
        producer.close().await;
    }
    let mut config = ProducerConfig::new(broker.bootstrap());
    config.metadata_wait = Duration::from_millis(300);
    let producer = Producer::new(config).unwrap();
    let error = producer.send_and_wait(ProducerRecord::new("missing", "x")).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::UnknownTopic, "{error}");
    assert!(error.message.contains("missing"), "{error}");
    let mut invalid = ProducerConfig::new(broker.bootstrap());
    invalid.acks = Acks::Leader;
    assert_eq!(Producer::new(invalid).err().unwrap().kind, ErrorKind::Config);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_creates_lists_describes_and_deletes_topics() {
    let broker = broker(&[]);
    let admin = Admin::new(ClientConfig::new(broker.bootstrap())).unwrap();
    admin.create_topic(NewTopic::new("orders", 3)).await.unwrap();
    let again = admin.create_topic(NewTopic::new("orders", 3)).await.unwrap_err();
    assert_eq!(again.code, 36, "{again}");
    assert!(admin.list_topics().await.unwrap().contains(&"orders".to_string()));
    let described = admin.describe_topic("orders").await.unwrap();
    assert_eq!(described.partitions, 3);
    assert!(!described.id.is_nil());
    admin.delete_topic("orders").await.unwrap();
    assert!(!admin.list_topics().await.unwrap().contains(&"orders".to_string()));
    assert_eq!(admin.describe_topic("orders").await.unwrap_err().kind, ErrorKind::UnknownTopic);
}
