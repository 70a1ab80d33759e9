//! A broker inside the calling process, on its own thread and runtime: what the SDKs' test
//! fixtures (`headwater.testing.EmbeddedBroker`, `headwatertest.NewBroker`) and the client's
//! own tests start. It listens on 127.0.0.1 on a free port, keeps its data in a fresh
//! temporary directory (removed when it stops) unless given one, and stops when dropped.

use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use crate::config::RawConfig;

/// Settings for an embedded broker.
#[derive(Debug, Clone, Default)]
pub struct EmbeddedOptions {
    /// Where the logs go; a fresh temporary directory (deleted at stop) when `None`.
    pub data_dir: Option<PathBuf>,
    /// Any other config keys (`num_partitions`, `group_consumer_session_timeout_ms`, ...), as
    /// in the config file.
    pub settings: Vec<(String, String)>,
}

pub struct EmbeddedBroker {
    bootstrap: String,
    data_dir: PathBuf,
    temporary: bool,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

impl EmbeddedBroker {
    /// Starts a broker; returns once it accepts connections (its port is bound before this
    /// returns, so clients may connect at once).
    pub fn start(options: EmbeddedOptions) -> Result<EmbeddedBroker, String> {
        let (data_dir, temporary) = match options.data_dir {
            Some(dir) => (dir, false),
            None => {
                let unique = format!(
                    "headwater-embedded-{}-{}-{}",
                    std::process::id(),
                    NEXT_DIR.fetch_add(1, Ordering::Relaxed),
                    crate::driver::now_ms()
                );
                (std::env::temp_dir().join(unique), true)
            }
        };
        let listener = StdListener::bind("127.0.0.1:0").map_err(|e| format!("cannot bind 127.0.0.1:0: {e}"))?;
        let address = listener.local_addr().map_err(|e| e.to_string())?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let mut raw = RawConfig::default();
        raw.set_flag("--listen", address.to_string()).map_err(|e| e.to_string())?;
        raw.set_flag("--advertise", address.to_string()).map_err(|e| e.to_string())?;
        raw.set_flag("--data-dir", data_dir.display().to_string()).map_err(|e| e.to_string())?;
        for (key, value) in options.settings {
            raw.set_flag(&format!("--{key}"), value).map_err(|e| e.to_string())?;
        }
        let config = raw.build().map_err(|e| e.to_string())?;
        let opened = crate::server::open_data_dir(&config)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("headwater-embedded-{}", address.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("headwater-broker")
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot start the broker's runtime: {e}"))?;
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
                    crate::server::run_opened(listener, config, opened, async {
                        // A dropped sender means stop too.
                        let _ = stopped.await;
                    })
                    .await
                })
            })
            .map_err(|e| format!("cannot start the broker's thread: {e}"))?;
        Ok(EmbeddedBroker {
            bootstrap: address.to_string(),
            data_dir,
            temporary,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// host:port to give clients.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// Stops the broker gracefully and waits for it. Errors if it had failed.
    pub fn stop(mut self) -> Result<(), String> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), String> {
        if let Some(stop) = self.stop.take() {
            // The broker may have stopped already.
            let _ = stop.send(());
        }
        let result = match self.thread.take() {
            Some(thread) => thread.join().unwrap_or_else(|_| Err("the broker's thread panicked".to_string())),
            None => Ok(()),
        };
        if self.temporary {
            // A temporary directory left behind harms nothing once the broker has stopped.
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
        result
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        // Drop cannot report; shutdown() returns the error to callers who want it.
        let _ = self.shutdown();
    }
}
