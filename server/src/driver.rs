//! The core loop: one task owns the [`Broker`] and feeds it inputs from connections, fsync
//! completions and its timer; it drains outputs after each input. Responses go back to the
//! connection that asked through a oneshot channel; syncs run on tokio's blocking pool, so the
//! loop keeps serving while the disk works, and the next sync collects everything written
//! meanwhile (group commit).

use std::collections::BTreeMap;
use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use headwater_core::ids::NodeId;
use headwater_core::peer::PeerMessage;
use headwater_core::{Broker, IoCommand, IoToken, Output, Request, RequestId, ResponseBody};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};

use crate::peers::Peers;

/// Inputs to the core loop.
pub enum CoreInput {
    Request(Box<Request>, oneshot::Sender<ResponseBody>),
    IoDone(IoToken, io::Result<()>),
    /// A peer's answer to a request this node sent ([`Output::Peer`]).
    Peer {
        from: NodeId,
        message: PeerMessage,
    },
    /// Finish: answer what is parked, sync, checkpoint, then reply.
    Shutdown(oneshot::Sender<()>),
}

/// The core's `now_ms`: the wall clock when the process first asked, plus the monotonic time
/// since. A step of the system clock (NTP, an operator, a VM resumed) then moves no timer of
/// the broker's: read directly, a jump forward would expire every election, session and
/// liveness timeout at once, and a jump back would hold them all for its length. Timestamps
/// (LogAppendTime, retention) drift from the wall clock by the steps taken since start-up,
/// which a restart puts right.
#[cfg(not(madsim))]
pub fn now_ms() -> i64 {
    static ANCHOR: std::sync::OnceLock<(i64, std::time::Instant)> = std::sync::OnceLock::new();
    let (wall_ms, start) = ANCHOR.get_or_init(|| (wall_clock_ms(), std::time::Instant::now()));
    wall_ms + start.elapsed().as_millis() as i64
}

/// Under the simulator, the simulated wall clock itself: a process-wide anchor would carry one
/// run's start into the next run of the same process and break replay.
#[cfg(madsim)]
pub fn now_ms() -> i64 {
    wall_clock_ms()
}

fn wall_clock_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

pub async fn run_core(
    mut broker: Broker,
    mut inputs: mpsc::Receiver<CoreInput>,
    io_done: mpsc::Sender<CoreInput>,
    peers: Peers,
) {
    let mut waiting: BTreeMap<RequestId, oneshot::Sender<ResponseBody>> = BTreeMap::new();
    let mut shutdown_reply: Option<oneshot::Sender<()>> = None;
    let mut quorum_leader = None;
    // Outputs from `Broker::open` (the sync of recovered segments) are drained before the first
    // input arrives, so the high watermark reaches the recovered log end at once.
    drain(&mut broker, &mut waiting, &io_done, &peers);
    loop {
        let sleep_ms = (broker.next_timeout_ms() - now_ms()).clamp(0, 60_000) as u64;
        // `biased`: the branches are tried in this order rather than in tokio's random one,
        // whose generator is seeded per process, so a simulator run does not depend on the
        // runs before it. A due deadline goes first, so a busy input channel cannot starve
        // session and request timeouts; `handle_timeout` moves every due deadline on.
        tokio::select! {
            biased;
            _ = tokio::time::sleep(Duration::from_millis(sleep_ms)) => {
                broker.handle_timeout(now_ms());
            }
            input = inputs.recv() => {
                let Some(input) = input else { break };
                match input {
                    CoreInput::Request(request, reply) => {
                        waiting.insert(request.id, reply);
                        broker.handle_request(now_ms(), *request);
                    }
                    CoreInput::IoDone(token, result) => {
                        broker.handle_io_done(now_ms(), token, result);
                    }
                    CoreInput::Peer { from, message } => broker.handle_peer(now_ms(), from, message),
                    CoreInput::Shutdown(reply) => {
                        broker.begin_shutdown(now_ms());
                        shutdown_reply = Some(reply);
                    }
                }
            }
        }
        drain(&mut broker, &mut waiting, &io_done, &peers);
        log_quorum_leader(&broker, &mut quorum_leader);
        if shutdown_reply.is_some() && !broker.sync_pending() && !broker.has_unsynced() {
            match broker.finish_shutdown() {
                Ok(()) => info!("final sync done, recovery checkpoint written"),
                Err(e) => error!(error = %e, "could not write the recovery checkpoint; the next start scans more"),
            }
            if let Some(reply) = shutdown_reply.take() {
                // The caller may have stopped waiting; the shutdown is done either way.
                let _ = reply.send(());
            }
            debug!("core loop finished");
            return;
        }
    }
}

/// Logs each change of the metadata quorum's epoch or leader, as this node learns of it.
fn log_quorum_leader(broker: &Broker, last: &mut Option<(i32, Option<NodeId>)>) {
    let now = broker.quorum_leader();
    if now == *last {
        return;
    }
    if let Some((epoch, leader)) = now {
        match leader {
            Some(leader) => info!(epoch, %leader, "metadata quorum leader known"),
            None => info!(epoch, "metadata quorum has no leader in this epoch yet (an election is running)"),
        }
    }
    *last = now;
}

/// Sends responses to their connections and starts I/O commands.
fn drain(
    broker: &mut Broker,
    waiting: &mut BTreeMap<RequestId, oneshot::Sender<ResponseBody>>,
    io_done: &mpsc::Sender<CoreInput>,
    peers: &Peers,
) {
    while let Some(output) = broker.poll_output() {
        match output {
            Output::Response(response) => {
                if let Some(reply) = waiting.remove(&response.id) {
                    // The connection may be gone; then nobody needs the answer.
                    let _ = reply.send(response.body);
                } else {
                    warn!(id = response.id.0, "response for an unknown request");
                }
            }
            Output::Io(IoCommand::Sync { token, files }) => run_sync(token, files, io_done.clone()),
            Output::Fault(fault) => error!(
                operation = fault.op.name(),
                path = %fault.path,
                error = %fault.error,
                "storage failure: {}",
                fault.consequence
            ),
            Output::Peer { to, message } => peers.send(to, message),
        }
    }
}

/// Runs a sync off the core loop and reports its completion as an input.
#[cfg(not(madsim))]
fn run_sync(token: IoToken, files: Vec<headwater_core::NamedFile>, done: mpsc::Sender<CoreInput>) {
    tokio::task::spawn_blocking(move || {
        let result = files.iter().try_for_each(|f| f.file.sync());
        // The core loop is gone only after shutdown, when nobody needs the result.
        let _ = done.blocking_send(CoreInput::IoDone(token, result));
    });
}

/// Under the simulator: a sync takes simulated time, so a node can be killed between a write
/// and its fsync, and between the fsync and the reply.
#[cfg(madsim)]
fn run_sync(token: IoToken, files: Vec<headwater_core::NamedFile>, done: mpsc::Sender<CoreInput>) {
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_micros(500)).await;
        let result = files.iter().try_for_each(|f| f.file.sync());
        tokio::time::sleep(Duration::from_micros(500)).await;
        // The core loop is gone only after shutdown, when nobody needs the result.
        let _ = done.send(CoreInput::IoDone(token, result)).await;
    });
}
