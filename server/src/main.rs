//! `headwater`: the broker binary.

use std::process::ExitCode;

use headwater_core::alloc_guard::LargeAllocGuard;
use headwater_server::config::{RawConfig, KEYS};

#[global_allocator]
static ALLOCATOR: LargeAllocGuard = LargeAllocGuard;

const USAGE: &str = "usage: headwater serve [--config FILE] [--listen HOST:PORT] [--advertise HOST:PORT] [--data-dir DIR] [--node-id N] [--log-level LEVEL] [--KEY VALUE ...]
       headwater help | --version";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => serve(&args[1..]),
        Some("--version") | Some("version") => {
            println!("headwater {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some("help") | Some("--help") | Some("-h") => {
            println!("{USAGE}\n\nConfig keys (file key / HEADWATER_KEY / --key-name), default, meaning:");
            for (key, default, doc) in KEYS {
                println!("  {key:<26} {default:<14} {doc}");
            }
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn serve(args: &[String]) -> ExitCode {
    let (planted, args) = take_planted_bug(args);
    if let Some(name) = planted {
        if let Err(message) = plant(&name) {
            eprintln!("headwater: {message}");
            return ExitCode::from(2);
        }
    }
    let (config, ignored_env) = match parse_config(&args) {
        Ok(c) => c,
        Err(message) => {
            eprintln!("headwater: {message}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt().with_max_level(config.log_level).with_target(false).with_ansi(false).init();
    if let Some(bug) =
        headwater_core::planted::PlantedBug::ALL.into_iter().find(|b| headwater_core::planted::active(*b))
    {
        tracing::warn!(bug = bug.name(), "PLANTED BUG switched on: this broker is wrong on purpose (test only)");
    }
    if !ignored_env.is_empty() {
        tracing::warn!(variables = ?ignored_env, "ignoring HEADWATER_* environment variables that are not config keys");
    }
    raise_open_files_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("headwater: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(headwater_server::server::run(config, shutdown_signal()));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            eprintln!("headwater: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Splits a hidden `--planted-bug NAME` (or `--planted-bug=NAME`) off the arguments: it is not
/// a config key, and `headwater help` does not list it.
fn take_planted_bug(args: &[String]) -> (Option<String>, Vec<String>) {
    let mut rest = Vec::with_capacity(args.len());
    let mut planted = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--planted-bug" {
            planted = Some(iter.next().cloned().unwrap_or_default());
        } else if let Some(name) = arg.strip_prefix("--planted-bug=") {
            planted = Some(name.to_string());
        } else {
            rest.push(arg.clone());
        }
    }
    (planted, rest)
}

/// Switches on a planted bug (see core's `planted` module): only in a build with the cargo
/// feature `planted-bugs`, which the fault harness builds apart from the release binary.
fn plant(name: &str) -> Result<(), String> {
    use headwater_core::planted::PlantedBug;
    let bug = PlantedBug::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = PlantedBug::ALL.iter().map(|b| b.name()).collect();
        format!("--planted-bug {name:?}: no such planted bug (known: {})", names.join(", "))
    })?;
    #[cfg(feature = "planted-bugs")]
    {
        headwater_core::planted::set(Some(bug));
        Ok(())
    }
    #[cfg(not(feature = "planted-bugs"))]
    {
        Err(format!(
            "--planted-bug {}: this build has no planted bugs; they exist only in a test build with the cargo \
             feature planted-bugs (make jepsen-planted)",
            bug.name()
        ))
    }
}

fn parse_config(args: &[String]) -> Result<(headwater_server::config::ServerConfig, Vec<String>), String> {
    let mut raw = RawConfig::default();
    let mut flags = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let (flag, value) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), v.to_string()),
            _ if arg.starts_with("--") => {
                let value = iter.next().ok_or_else(|| format!("flag {arg} needs a value"))?;
                (arg.clone(), value.clone())
            }
            _ => return Err(format!("unexpected argument {arg:?}\n{USAGE}")),
        };
        flags.push((flag, value));
    }
    if let Some((_, path)) = flags.iter().find(|(f, _)| f == "--config") {
        let text = std::fs::read_to_string(path).map_err(|e| format!("config file {path}: {e}"))?;
        raw.from_toml(&text, path).map_err(|e| e.to_string())?;
    }
    let ignored_env = raw.from_env(std::env::vars());
    for (flag, value) in flags.into_iter().filter(|(f, _)| f != "--config") {
        raw.set_flag(&flag, value).map_err(|e| e.to_string())?;
    }
    let config = raw.build().map_err(|e| e.to_string())?;
    Ok((config, ignored_env))
}

/// Lifts the soft limit on open files to the hard limit, as Go's runtime and Kafka's start
/// scripts advise: each connection is a descriptor, and `connections_max` (20,000 by default)
/// is far above the usual soft limit of 1,024.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit read and write the struct we own, nothing else.
    #[allow(unsafe_code)]
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            let wanted = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                limit = wanted;
            }
        }
    }
    tracing::debug!(open_files_max = limit.rlim_cur, "open files limit");
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
        _ = interrupt.recv() => tracing::info!("SIGINT received"),
    }
}
