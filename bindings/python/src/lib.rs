//! `headwater._headwater`: the native half of the `headwater` Python package. The Python half
//! (`python/headwater/`) gives these classes their Pythonic shape (keyword arguments, context
//! managers, iteration, futures); this module runs the Rust client and the embedded broker.
//!
//! Every blocking call runs its work on one shared tokio runtime and waits with the GIL
//! released, in slices of 100 ms between which it checks for signals, so Ctrl-C interrupts it
//! promptly. Callbacks (delivery reports, rebalance listeners) are called from the runtime's
//! threads after taking the GIL.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use headwater_client::{
    Acks, Admin, ClientConfig, Compression, Consumer, ConsumerConfig, ConsumerRecord, Error, ErrorKind, NewTopic,
    OffsetReset, Producer, ProducerConfig, ProducerRecord, Rebalance, RecordMetadata,
};
use headwater_server::embedded::{EmbeddedBroker, EmbeddedOptions};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3::IntoPyObjectExt;

/// How long a blocking call waits with the GIL released before checking for signals.
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("headwater-client")
            .enable_all()
            .build()
            .expect("the client runtime starts")
    })
}

/// The Python exception for a client error: `headwater.errors` has one class per kind.
fn to_py(error: Error) -> PyErr {
    Python::attach(|py| {
        let class = match error.kind {
            ErrorKind::Timeout => "HeadwaterTimeoutError",
            ErrorKind::UnknownTopic => "UnknownTopicError",
            ErrorKind::Commit => "CommitFailedError",
            ErrorKind::Fatal | ErrorKind::Closed => "FatalError",
            ErrorKind::Config => "ConfigError",
            _ => "HeadwaterError",
        };
        let made = py
            .import("headwater.errors")
            .and_then(|m| m.getattr(class))
            .and_then(|c| c.call1((error.message.clone(), error.code, error.retriable)));
        match made {
            Ok(instance) => PyErr::from_value(instance),
            Err(e) => e,
        }
    })
}

/// Runs `work` on the runtime and waits for it without the GIL, checking for Ctrl-C.
fn wait<T: Send + 'static>(py: Python<'_>, work: impl Future<Output = T> + Send + 'static) -> PyResult<T> {
    let mut handle = runtime().spawn(work);
    loop {
        let done = py.detach(|| runtime().block_on(async { tokio::time::timeout(SIGNAL_CHECK, &mut handle).await }));
        match done {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) => return Err(pyo3::exceptions::PyRuntimeError::new_err(format!("client task failed: {e}"))),
            Err(_) => {
                if let Err(interrupted) = py.check_signals() {
                    handle.abort();
                    return Err(interrupted);
                }
            }
        }
    }
}

/// Runs `work` on the runtime; then calls `callback(value, None)` or `callback(None, error)`
/// from the runtime's thread (asyncio code resolves its future with `call_soon_threadsafe`).
fn spawn_then<T, F>(callback: Py<PyAny>, work: F)
where
    T: for<'py> IntoPyObject<'py> + Send + 'static,
    F: Future<Output = Result<T, Error>> + Send + 'static,
{
    runtime().spawn(async move {
        let result = work.await;
        Python::attach(|py| {
            let outcome = match result {
                Ok(value) => match value.into_py_any(py) {
                    Ok(value) => callback.call1(py, (value, py.None())),
                    Err(e) => callback.call1(py, (py.None(), e.into_value(py))),
                },
                Err(e) => callback.call1(py, (py.None(), to_py(e).into_value(py))),
            };
            if let Err(e) = outcome {
                e.print(py);
            }
        });
    });
}

fn client_config(bootstrap: &str, client_id: Option<String>, request_timeout_ms: Option<u64>) -> ClientConfig {
    let mut config = ClientConfig::new(bootstrap);
    if let Some(id) = client_id {
        config.client_id = id;
    }
    if let Some(ms) = request_timeout_ms {
        config.request_timeout = Duration::from_millis(ms);
    }
    config
}

type MetadataTuple = (String, i32, i64, i64);

fn metadata_tuple(m: RecordMetadata) -> MetadataTuple {
    (m.topic, m.partition, m.offset, m.timestamp)
}

#[pyclass(name = "NativeProducer", module = "headwater._headwater")]
struct NativeProducer {
    producer: Arc<Producer>,
}

#[pymethods]
impl NativeProducer {
    #[new]
    #[pyo3(signature = (bootstrap, acks, linger_ms, batch_bytes, compression, idempotence, client_id=None, request_timeout_ms=None, delivery_timeout_ms=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        bootstrap: &str,
        acks: &str,
        linger_ms: u64,
        batch_bytes: usize,
        compression: &str,
        idempotence: bool,
        client_id: Option<String>,
        request_timeout_ms: Option<u64>,
        delivery_timeout_ms: Option<u64>,
    ) -> PyResult<NativeProducer> {
        let mut config = ProducerConfig::new(bootstrap);
        config.client = client_config(bootstrap, client_id, request_timeout_ms);
        config.acks = match acks {
            "all" | "-1" => Acks::All,
            "1" | "leader" => Acks::Leader,
            "0" | "none" => Acks::None,
            other => return Err(to_py(Error::config(format!("acks must be \"all\", 1 or 0, not {other:?}")))),
        };
        config.linger = Duration::from_millis(linger_ms);
        config.batch_bytes = batch_bytes;
        config.compression = Compression::from_name(compression)
            .ok_or_else(|| to_py(Error::config(format!("unknown compression {compression:?}"))))?;
        config.idempotence = idempotence;
        if let Some(ms) = delivery_timeout_ms {
            config.delivery_timeout = Duration::from_millis(ms);
        }
        let producer = py.detach(|| {
            let _guard = runtime().enter();
            Producer::new(config)
        });
        Ok(NativeProducer { producer: Arc::new(producer.map_err(to_py)?) })
    }

    /// Sends and waits for the delivery report: (topic, partition, offset, timestamp).
    #[pyo3(signature = (topic, value, key=None, headers=None, partition=None, timestamp=None))]
    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        py: Python<'_>,
        topic: String,
        value: Option<Vec<u8>>,
        key: Option<Vec<u8>>,
        headers: Option<Vec<(String, Option<Vec<u8>>)>>,
        partition: Option<i32>,
        timestamp: Option<i64>,
    ) -> PyResult<MetadataTuple> {
        let record = ProducerRecord { topic, partition, key, value, headers: headers.unwrap_or_default(), timestamp };
        let producer = self.producer.clone();
        wait(py, async move { producer.send_and_wait(record).await }).and_then(|r| r.map(metadata_tuple).map_err(to_py))
    }

    /// Queues a record; `callback(metadata_tuple, None)` or `callback(None, exception)` is
    /// called from the client's thread when the broker answers.
    #[pyo3(signature = (callback, topic, value, key=None, headers=None, partition=None, timestamp=None))]
    #[allow(clippy::too_many_arguments)]
    fn send_async(
        &self,
        py: Python<'_>,
        callback: Py<PyAny>,
        topic: String,
        value: Option<Vec<u8>>,
        key: Option<Vec<u8>>,
        headers: Option<Vec<(String, Option<Vec<u8>>)>>,
        partition: Option<i32>,
        timestamp: Option<i64>,
    ) -> PyResult<()> {
        let record = ProducerRecord { topic, partition, key, value, headers: headers.unwrap_or_default(), timestamp };
        let producer = self.producer.clone();
        let delivery = wait(py, async move { producer.send(record).await })?.map_err(to_py)?;
        runtime().spawn(async move {
            let result = delivery.await;
            Python::attach(|py| {
                let outcome = match result {
                    Ok(m) => callback.call1(py, (metadata_tuple(m), py.None())),
                    Err(e) => callback.call1(py, (py.None(), to_py(e).into_value(py))),
                };
                if let Err(e) = outcome {
                    e.print(py);
                }
            });
        });
        Ok(())
    }

    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        let producer = self.producer.clone();
        wait(py, async move { producer.flush().await })?.map_err(to_py)
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let producer = self.producer.clone();
        wait(py, async move { producer.close().await })
    }

    /// `flush`, reporting to `callback(None, error_or_None)` instead of blocking.
    fn flush_then(&self, callback: Py<PyAny>) {
        let producer = self.producer.clone();
        spawn_then(callback, async move { producer.flush().await });
    }

    /// `close`, reporting to `callback` instead of blocking.
    fn close_then(&self, callback: Py<PyAny>) {
        let producer = self.producer.clone();
        spawn_then(callback, async move {
            producer.close().await;
            Ok(())
        });
    }
}

/// A member as `describe_group` returns it.
type MemberTuple = (String, Option<String>, String, String, Vec<(String, i32)>);
type GroupTuple = (String, String, String, String, Vec<MemberTuple>);

/// ((topic, partition), committed offset or None)
type CommittedTuple = ((String, i32), Option<i64>);

type RecordTuple = (String, i32, i64, i64, Option<Vec<u8>>, Option<Vec<u8>>, Vec<(String, Option<Vec<u8>>)>);

fn record_tuple(r: ConsumerRecord) -> RecordTuple {
    (r.topic, r.partition, r.offset, r.timestamp, r.key, r.value, r.headers)
}

#[pyclass(name = "NativeConsumer", module = "headwater._headwater")]
struct NativeConsumer {
    consumer: Arc<Consumer>,
}

#[pymethods]
impl NativeConsumer {
    #[new]
    #[pyo3(signature = (bootstrap, group_id=None, auto_offset_reset="latest", enable_auto_commit=false, max_poll_records=500, group_instance_id=None, client_id=None, request_timeout_ms=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        bootstrap: &str,
        group_id: Option<String>,
        auto_offset_reset: &str,
        enable_auto_commit: bool,
        max_poll_records: usize,
        group_instance_id: Option<String>,
        client_id: Option<String>,
        request_timeout_ms: Option<u64>,
    ) -> PyResult<NativeConsumer> {
        let mut config = ConsumerConfig::new(bootstrap);
        config.client = client_config(bootstrap, client_id, request_timeout_ms);
        config.group_id = group_id;
        config.group_instance_id = group_instance_id;
        config.auto_offset_reset = match auto_offset_reset {
            "earliest" => OffsetReset::Earliest,
            "latest" => OffsetReset::Latest,
            "none" => OffsetReset::None,
            other => {
                return Err(to_py(Error::config(format!(
                    "auto_offset_reset must be \"earliest\", \"latest\" or \"none\", not {other:?}"
                ))))
            }
        };
        config.enable_auto_commit = enable_auto_commit;
        config.max_poll_records = max_poll_records;
        Ok(NativeConsumer { consumer: Arc::new(Consumer::new(config).map_err(to_py)?) })
    }

    /// `listener(kind, [(topic, partition), ...])` with kind "assigned", "revoked" or "lost",
    /// called inside `poll`.
    fn set_rebalance_listener(&self, listener: Py<PyAny>) {
        self.consumer.set_rebalance_listener(Arc::new(move |event: &Rebalance| {
            let (kind, partitions) = match event {
                Rebalance::Assigned(p) => ("assigned", p.clone()),
                Rebalance::Revoked(p) => ("revoked", p.clone()),
                Rebalance::Lost(p) => ("lost", p.clone()),
            };
            // The listener may block (an on_revoke that commits waits for the commit): let
            // the runtime move this worker's other tasks elsewhere meanwhile.
            tokio::task::block_in_place(|| {
                Python::attach(|py| {
                    if let Err(e) = listener.call1(py, (kind, partitions)) {
                        e.print(py);
                    }
                })
            });
        }));
    }

    fn subscribe(&self, py: Python<'_>, topics: Vec<String>) -> PyResult<()> {
        let consumer = self.consumer.clone();
        wait(py, async move {
            let names: Vec<&str> = topics.iter().map(String::as_str).collect();
            consumer.subscribe(&names).await
        })?
        .map_err(to_py)
    }

    fn assign(&self, py: Python<'_>, partitions: Vec<(String, i32)>) -> PyResult<()> {
        let consumer = self.consumer.clone();
        wait(py, async move { consumer.assign(&partitions).await })?.map_err(to_py)
    }

    fn assignment(&self, py: Python<'_>) -> PyResult<Vec<(String, i32)>> {
        let consumer = self.consumer.clone();
        wait(py, async move { consumer.assignment().await })
    }

    #[pyo3(signature = (timeout_s, max_records=None))]
    fn poll(&self, py: Python<'_>, timeout_s: f64, max_records: Option<usize>) -> PyResult<Vec<RecordTuple>> {
        let consumer = self.consumer.clone();
        let timeout = Duration::from_secs_f64(timeout_s.max(0.0));
        let max = max_records.unwrap_or(usize::MAX);
        let records = wait(py, async move { consumer.poll_max(timeout, max).await })?.map_err(to_py)?;
        Ok(records.into_iter().map(record_tuple).collect())
    }

    fn commit(&self, py: Python<'_>) -> PyResult<()> {
        let consumer = self.consumer.clone();
        wait(py, async move { consumer.commit().await })?.map_err(to_py)
    }

    /// `poll`, reporting `callback(records, None)` instead of blocking.
    fn poll_then(&self, timeout_s: f64, callback: Py<PyAny>) {
        let consumer = self.consumer.clone();
        let timeout = Duration::from_secs_f64(timeout_s.max(0.0));
        spawn_then(callback, async move {
            consumer.poll(timeout).await.map(|records| records.into_iter().map(record_tuple).collect::<Vec<_>>())
        });
    }

    /// `commit`, reporting to `callback` instead of blocking.
    fn commit_then(&self, callback: Py<PyAny>) {
        let consumer = self.consumer.clone();
        spawn_then(callback, async move { consumer.commit().await });
    }

    /// `close`, reporting to `callback` instead of blocking.
    fn close_then(&self, callback: Py<PyAny>) {
        let consumer = self.consumer.clone();
        spawn_then(callback, async move {
            consumer.close().await;
            Ok(())
        });
    }

    fn commit_offsets(&self, py: Python<'_>, offsets: Vec<((String, i32), i64)>) -> PyResult<()> {
        let consumer = self.consumer.clone();
        wait(py, async move { consumer.commit_offsets(&offsets).await })?.map_err(to_py)
    }

    fn committed(&self, py: Python<'_>, partitions: Vec<(String, i32)>) -> PyResult<Vec<CommittedTuple>> {
        let consumer = self.consumer.clone();
        let map = wait(py, async move { consumer.committed(&partitions).await })?.map_err(to_py)?;
        Ok(map.into_iter().collect())
    }

    fn seek(&self, py: Python<'_>, topic: String, partition: i32, offset: i64) -> PyResult<()> {
        let consumer = self.consumer.clone();
        wait(py, async move { consumer.seek(&(topic, partition), offset).await })?.map_err(to_py)
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let consumer = self.consumer.clone();
        wait(py, async move { consumer.close().await })
    }
}

#[pyclass(name = "NativeAdmin", module = "headwater._headwater")]
struct NativeAdmin {
    admin: Arc<Admin>,
}

#[pymethods]
impl NativeAdmin {
    #[new]
    #[pyo3(signature = (bootstrap, client_id=None, request_timeout_ms=None))]
    fn new(bootstrap: &str, client_id: Option<String>, request_timeout_ms: Option<u64>) -> PyResult<NativeAdmin> {
        let admin = Admin::new(client_config(bootstrap, client_id, request_timeout_ms)).map_err(to_py)?;
        Ok(NativeAdmin { admin: Arc::new(admin) })
    }

    #[pyo3(signature = (name, partitions, replication_factor, config=None))]
    fn create_topic(
        &self,
        py: Python<'_>,
        name: String,
        partitions: i32,
        replication_factor: i16,
        config: Option<Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let mut topic = NewTopic::new(name, partitions);
        topic.replication_factor = replication_factor;
        if let Some(config) = config {
            for (k, v) in config.iter() {
                topic.config.insert(k.str()?.to_string(), v.str()?.to_string());
            }
        }
        let admin = self.admin.clone();
        wait(py, async move { admin.create_topic(topic).await })?.map_err(to_py)
    }

    fn delete_topic(&self, py: Python<'_>, name: String) -> PyResult<()> {
        let admin = self.admin.clone();
        wait(py, async move { admin.delete_topic(&name).await })?.map_err(to_py)
    }

    fn list_topics(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let admin = self.admin.clone();
        wait(py, async move { admin.list_topics().await })?.map_err(to_py)
    }

    /// [(group id, state, type)]
    fn list_groups(&self, py: Python<'_>) -> PyResult<Vec<(String, String, String)>> {
        let admin = self.admin.clone();
        let groups = wait(py, async move { admin.list_groups().await })?.map_err(to_py)?;
        Ok(groups.into_iter().map(|g| (g.group_id, g.state, g.group_type)).collect())
    }

    /// (group id, state, type, assignor, [(member id, instance id, client id, host, [(topic, partition)])])
    fn describe_group(&self, py: Python<'_>, group: String) -> PyResult<GroupTuple> {
        let admin = self.admin.clone();
        let g = wait(py, async move { admin.describe_group(&group).await })?.map_err(to_py)?;
        let members =
            g.members.into_iter().map(|m| (m.member_id, m.instance_id, m.client_id, m.host, m.assignment)).collect();
        Ok((g.group_id, g.state, g.group_type, g.assignor, members))
    }

    fn delete_group(&self, py: Python<'_>, group: String) -> PyResult<()> {
        let admin = self.admin.clone();
        wait(py, async move { admin.delete_group(&group).await })?.map_err(to_py)
    }

    fn group_offsets(&self, py: Python<'_>, group: String) -> PyResult<Vec<((String, i32), i64)>> {
        let admin = self.admin.clone();
        let offsets = wait(py, async move { admin.group_offsets(&group).await })?.map_err(to_py)?;
        Ok(offsets.into_iter().collect())
    }

    fn describe_topic_config(&self, py: Python<'_>, topic: String) -> PyResult<Vec<(String, String)>> {
        let admin = self.admin.clone();
        let config = wait(py, async move { admin.describe_topic_config(&topic).await })?.map_err(to_py)?;
        Ok(config.into_iter().collect())
    }

    fn alter_topic_config(
        &self,
        py: Python<'_>,
        topic: String,
        changes: Vec<(String, Option<String>)>,
    ) -> PyResult<()> {
        let admin = self.admin.clone();
        let changes = changes.into_iter().collect();
        wait(py, async move { admin.alter_topic_config(&topic, &changes).await })?.map_err(to_py)
    }

    /// (name, topic id, partitions)
    fn describe_topic(&self, py: Python<'_>, name: String) -> PyResult<(String, String, i32)> {
        let admin = self.admin.clone();
        let t = wait(py, async move { admin.describe_topic(&name).await })?.map_err(to_py)?;
        Ok((t.name, t.id.to_string(), t.partitions))
    }
}

#[pyclass(name = "NativeBroker", module = "headwater._headwater")]
struct NativeBroker {
    broker: std::sync::Mutex<Option<EmbeddedBroker>>,
    bootstrap: String,
}

#[pymethods]
impl NativeBroker {
    /// Starts a broker in this process on 127.0.0.1 and a free port.
    #[new]
    #[pyo3(signature = (data_dir=None, settings=None))]
    fn new(
        py: Python<'_>,
        data_dir: Option<String>,
        settings: Option<Vec<(String, String)>>,
    ) -> PyResult<NativeBroker> {
        let options = EmbeddedOptions { data_dir: data_dir.map(Into::into), settings: settings.unwrap_or_default() };
        let broker = py.detach(|| EmbeddedBroker::start(options)).map_err(|e| to_py(Error::config(e)))?;
        Ok(NativeBroker { bootstrap: broker.bootstrap().to_string(), broker: std::sync::Mutex::new(Some(broker)) })
    }

    #[getter]
    fn bootstrap(&self) -> String {
        self.bootstrap.clone()
    }

    /// Stops it (idempotent).
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        let broker = self.broker.lock().expect("broker lock").take();
        match broker {
            Some(broker) => py.detach(|| broker.stop()).map_err(|e| to_py(Error::new(ErrorKind::Fatal, e))),
            None => Ok(()),
        }
    }
}

#[pymodule]
fn _headwater(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeProducer>()?;
    m.add_class::<NativeConsumer>()?;
    m.add_class::<NativeAdmin>()?;
    m.add_class::<NativeBroker>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
