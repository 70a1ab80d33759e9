//! Start-up, the accept loop, and graceful shutdown.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

use headwater_core::ids::NodeId;
use headwater_core::{Broker, BrokerConfig, ConnId, Storage};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tracing::{error, info, warn};

use crate::config::ServerConfig;
use crate::driver::{now_ms, run_core, CoreInput};
use crate::fs_storage::FsStorage;
use crate::peers::{LinkContext, Peers};

/// Requests queued for the core loop before connections wait.
const CORE_QUEUE_MAX: usize = 4096;

/// Holds an exclusive lock on the data directory for the process's life, so two brokers never
/// write the same logs.
pub struct DataDirLock {
    _file: File,
}

pub fn lock_data_dir(config: &ServerConfig) -> Result<DataDirLock, String> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| format!("cannot create data_dir {}: {e}", config.data_dir.display()))?;
    let path = config.data_dir.join(".lock");
    let file = File::create(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    // SAFETY: flock on a valid descriptor we own; no memory is involved.
    #[allow(unsafe_code)]
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    if !locked {
        return Err(format!("data_dir {} is in use by another headwater process", config.data_dir.display()));
    }
    Ok(DataDirLock { _file: file })
}

/// Runs the broker on real files in `config.data_dir` until `shutdown` resolves, then shuts
/// down gracefully.
pub async fn run(config: ServerConfig, shutdown: impl std::future::Future<Output = ()>) -> Result<(), String> {
    let _lock = lock_data_dir(&config)?;
    let storage =
        Arc::new(FsStorage::new(&config.data_dir).map_err(|e| format!("data_dir {}: {e}", config.data_dir.display()))?);
    serve(config, storage, seed_from_os(), shutdown).await
}

/// [`run`] on a listener the caller already bound (the embedded broker binds port 0 itself to
/// learn its port before starting).
pub async fn run_on(
    listener: TcpListener,
    config: ServerConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    let opened = open_data_dir(&config)?;
    run_opened(listener, config, opened, shutdown).await
}

/// The data directory, locked and opened: what can fail before a broker serves (another
/// broker holds the directory, it cannot be created or read).
pub struct OpenedDataDir {
    _lock: DataDirLock,
    storage: Arc<FsStorage>,
}

/// Locks and opens `config.data_dir`; the embedded broker calls this on its caller's thread
/// so that these failures come back from `start`, not later from `stop`.
pub fn open_data_dir(config: &ServerConfig) -> Result<OpenedDataDir, String> {
    let lock = lock_data_dir(config)?;
    let storage =
        Arc::new(FsStorage::new(&config.data_dir).map_err(|e| format!("data_dir {}: {e}", config.data_dir.display()))?);
    Ok(OpenedDataDir { _lock: lock, storage })
}

/// `run_on` for a data directory already opened.
pub async fn run_opened(
    listener: TcpListener,
    config: ServerConfig,
    opened: OpenedDataDir,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    let OpenedDataDir { _lock, storage } = opened;
    serve_on(Some(listener), config, storage, seed_from_os(), shutdown).await
}

/// Runs the broker on `storage` until `shutdown` resolves. The simulator calls this directly
/// with its faulty disk and a seed derived from the run's seed.
pub async fn serve(
    config: ServerConfig,
    storage: Arc<dyn Storage>,
    seed: u64,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    serve_on(None, config, storage, seed, shutdown).await
}

async fn serve_on(
    listener: Option<TcpListener>,
    config: ServerConfig,
    storage: Arc<dyn Storage>,
    seed: u64,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    let started = Instant::now();
    let broker_config = BrokerConfig {
        node_id: config.node_id,
        advertised_host: config.advertise_host.clone(),
        advertised_port: i32::from(config.advertise_port),
        auto_create_topics: config.auto_create_topics,
        default_partitions: config.num_partitions,
        default_replication_factor: config.default_replication_factor,
        topic_defaults: config.topic_defaults.clone(),
        seed,
        // Kafka reports log directories by absolute path; a directory that cannot be resolved
        // (the simulator's has no real counterpart) is named as configured.
        log_dir: std::fs::canonicalize(&config.data_dir)
            .unwrap_or_else(|_| config.data_dir.clone())
            .display()
            .to_string(),
        retention_check_interval_ms: config.retention_check_interval_ms,
        group: config.group.clone(),
        consumer_group: config.consumer_group.clone(),
        offsets_retention_ms: config.offsets_retention_ms,
        offsets_topic_partitions: config.offsets_topic_partitions,
        txn_topic_partitions: config.txn_topic_partitions,
        // Every node `cluster_nodes` lists votes in the metadata quorum (a combined
        // broker and controller, as KRaft's `process.roles=broker,controller`).
        // A list of this node alone is a single node, as before (`make run`'s data stays
        // served the same way).
        quorum_voters: (config.cluster_nodes.len() > 1)
            .then(|| config.cluster_nodes.iter().map(|n| NodeId(n.id)).collect()),
        cluster_id: config.cluster_id.clone(),
        rack: config.rack.clone(),
        rack_aware_reads: config.rack_aware_reads,
        metadata_snapshot_records: config.metadata_snapshot_records,
        metadata_log_segment_bytes: config.metadata_log_segment_bytes,
        scrub_bytes_per_sec: config.scrub_bytes_per_sec,
        ..BrokerConfig::default()
    };
    let (broker, report) = Broker::open(broker_config, storage, now_ms())
        .map_err(|e| format!("cannot open data_dir {}: {e}", config.data_dir.display()))?;
    info!(
        topics = report.topics,
        partitions = report.partitions,
        segments = report.recovery.segments,
        segments_scanned = report.recovery.segments_scanned,
        scanned_bytes = report.recovery.scanned_bytes,
        trusted_bytes = report.recovery.trusted_bytes,
        truncated_bytes = report.recovery.truncated_bytes,
        producers = report.producers,
        cluster_id = broker.cluster_id(),
        "log recovered"
    );
    let listener = match listener {
        Some(listener) => listener,
        None => TcpListener::bind(config.listen)
            .await
            .map_err(|e| format!("cannot listen on {} (config key `listen`): {e}", config.listen))?,
    };
    info!(
        listen = %config.listen,
        advertise = %format!("{}:{}", config.advertise_host, config.advertise_port),
        data_dir = %config.data_dir.display(),
        startup_ms = started.elapsed().as_millis() as u64,
        "headwater is serving"
    );
    if config.cluster_nodes.len() > 1 {
        info!(
            nodes = config.cluster_nodes.len(),
            default_replication_factor = config.default_replication_factor,
            "serving as one node of a cluster"
        );
    }
    let (core_tx, core_rx) = mpsc::channel(CORE_QUEUE_MAX);
    let stop = Arc::new(crate::connection::Stop::default());
    let peer_stop = Arc::new(crate::connection::Stop::default());
    let link_context = LinkContext {
        own: NodeId(config.node_id),
        cluster_id: broker.cluster_id().to_string(),
        core: core_tx.clone(),
        // Links stop only after the core loop, so what it sends last (a resigning leader's
        // EndQuorumEpoch) still leaves.
        stop: peer_stop.clone(),
    };
    let mut peers = Peers::start(
        &link_context,
        config
            .cluster_nodes
            .iter()
            .filter(|n| n.id != config.node_id)
            .map(|n| (NodeId(n.id), format!("{}:{}", n.host, n.port))),
    );
    let link_tasks = peers.take_tasks();
    let core_task = tokio::spawn(run_core(broker, core_rx, core_tx.clone(), peers));
    let connections = Arc::new(Semaphore::new(config.connections_max));
    let limits = crate::connection::Limits {
        request_bytes_max: config.socket_request_max_bytes,
        queued_bytes: Arc::new(Semaphore::new(config.queued_max_request_bytes)),
        idle: std::time::Duration::from_millis(config.connections_max_idle_ms),
    };
    let mut next_conn = 1u64;
    let request_ids = Arc::new(std::sync::atomic::AtomicU64::new(1));
    let mut tasks: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    tokio::pin!(shutdown);
    loop {
        // `biased` (a stop first, then accepts): deterministic under the simulator, whose runs
        // must not depend on tokio's per-process select generator.
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of file descriptors (EMFILE) lasts until a connection closes:
                        // pause rather than spin on a listener that stays readable.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = connections.clone().try_acquire_owned() else {
                    warn!(%peer, limit = config.connections_max, "too many connections (config key `connections_max`); refusing");
                    continue;
                };
                let conn = ConnId(next_conn);
                next_conn += 1;
                let core = core_tx.clone();
                let stop = stop.clone();
                let limits = limits.clone();
                let ids = request_ids.clone();
                tasks.retain(|t| !t.is_finished());
                tasks.push(tokio::spawn(async move {
                    crate::connection::serve(stream, conn, core, limits, ids, stop).await;
                    drop(permit);
                }));
            }
        }
    }
    info!("shutting down: finishing in-flight requests");
    drop(listener);
    stop.stop();
    let (done_tx, done_rx) = oneshot::channel();
    if core_tx.send(CoreInput::Shutdown(done_tx)).await.is_ok() {
        // The core loop answers or is gone; either way it has finished.
        let _ = done_rx.await;
    }
    // Connections flush what they have; do not wait forever on a stuck client.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        for task in tasks {
            // How a connection task ended (even by panic) does not change the shutdown.
            let _ = task.await;
        }
    })
    .await;
    drop(core_tx);
    if let Err(e) = core_task.await {
        error!(error = %e, "core loop failed");
    }
    peer_stop.stop();
    // A peer that does not take the last messages within this is left behind.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        for task in link_tasks {
            let _ = task.await;
        }
    })
    .await;
    info!("stopped");
    Ok(())
}

/// A seed for topic and cluster ids. The core takes randomness only as a seed; here, at the
/// edge, it may come from the OS.
fn seed_from_os() -> u64 {
    let mut bytes = [0u8; 8];
    if let Ok(mut f) = File::open("/dev/urandom") {
        use std::io::Read;
        if f.read_exact(&mut bytes).is_ok() {
            return u64::from_le_bytes(bytes);
        }
    }
    now_ms() as u64 ^ u64::from(std::process::id())
}
