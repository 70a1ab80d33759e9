//! `headwater-sim`: runs seeds and prints a summary.
//!
//! ```text
//! headwater-sim [--seeds N] [--first-seed S]      N seeds from S (default 1)
//! headwater-sim --seed S                          replay one seed, with its anomalies
//! headwater-sim --seed S --check-determinism      run it twice and compare
//! headwater-sim --planted BUG [--seeds N]         expect BUG's anomaly within N seeds
//! headwater-sim --cluster ...                     the same, over a cluster of 3 or 5 brokers
//! ```

#[cfg(not(madsim))]
fn main() {
    eprintln!("headwater-sim must be built with RUSTFLAGS=\"--cfg madsim\"; run `make sim`");
    std::process::exit(2);
}

#[cfg(madsim)]
fn main() {
    use headwater_core::planted::PlantedBug;
    use headwater_sim::scenario::RunReport;

    let args: Vec<String> = std::env::args().skip(1).collect();
    if std::env::var_os("HEADWATER_SIM_VERBOSE").is_some() {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .init();
    }
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let seeds: u64 = value("--seeds").and_then(|v| v.parse().ok()).unwrap_or(20);
    let first: u64 = value("--first-seed").and_then(|v| v.parse().ok()).unwrap_or(1);
    let single: Option<u64> = value("--seed").and_then(|v| v.parse().ok());
    let planted = value("--planted").map(|name| {
        PlantedBug::from_name(&name).unwrap_or_else(|| {
            eprintln!("unknown planted bug {name}; known: {:?}", PlantedBug::ALL.map(|b| b.name()));
            std::process::exit(2);
        })
    });
    let check_determinism = args.iter().any(|a| a == "--check-determinism");
    let cluster = args.iter().any(|a| a == "--cluster");
    let run = move |seed: u64,
                    planted: Option<PlantedBug>|
          -> std::pin::Pin<Box<dyn std::future::Future<Output = RunReport>>> {
        if cluster {
            Box::pin(headwater_sim::cluster::run(seed, planted))
        } else {
            Box::pin(headwater_sim::scenario::run(seed, planted))
        }
    };
    let verbose = args.iter().any(|a| a == "--verbose") || single.is_some();

    let run_one = |seed: u64| -> RunReport {
        let runtime = madsim::runtime::Runtime::with_seed_and_config(seed, network_config(seed));
        runtime.block_on(run(seed, planted))
    };

    if let (Some(seed), true) = (single, check_determinism) {
        // `check_determinism` takes a plain fn: one per scenario.
        if cluster {
            madsim::runtime::Runtime::check_determinism(seed, network_config(seed), || async move {
                let report = headwater_sim::cluster::run(madsim::runtime::Handle::current().seed(), None).await;
                assert!(report.acked > 0);
            });
        } else {
            madsim::runtime::Runtime::check_determinism(seed, network_config(seed), || async move {
                let report = headwater_sim::scenario::run(madsim::runtime::Handle::current().seed(), None).await;
                assert!(report.acked > 0);
            });
        }
        println!("sim: seed {seed} is deterministic");
        return;
    }

    let seed_list: Vec<u64> = match single {
        Some(seed) => vec![seed],
        None => (first..first + seeds).collect(),
    };
    let (mut faults, mut acked, mut verified, mut anomalies) = (0u64, 0u64, 0u64, 0usize);
    let mut failed_seeds = Vec::new();
    let mut expected_found = false;
    let mut seeds_run = 0usize;
    for &seed in &seed_list {
        // A panic anywhere (broker or harness) is reported with its seed, not a bare abort.
        let report = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_one(seed))) {
            Ok(report) => report,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".to_string());
                RunReport {
                    seed,
                    anomalies: vec![headwater_sim::checker::Anomaly { kind: "panic", detail: message }],
                    ..RunReport::default()
                }
            }
        };
        seeds_run += 1;
        faults += report.faults;
        acked += report.acked;
        verified += report.verified;
        anomalies += report.anomalies.len();
        if verbose || !report.anomalies.is_empty() {
            println!(
                "seed {seed}: {} faults, {} acknowledged, {} verified, {} anomalies",
                report.faults,
                report.acked,
                report.verified,
                report.anomalies.len()
            );
        }
        if !report.anomalies.is_empty() {
            let mut kinds: Vec<&str> = report.anomalies.iter().map(|a| a.kind).collect();
            kinds.sort();
            kinds.dedup();
            for a in report.anomalies.iter().take(5) {
                println!("  {}: {}", a.kind, a.detail);
            }
            let planted_flag = planted.map(|b| format!(" PLANTED={}", b.name())).unwrap_or_default();
            let cluster_flag = if cluster { " CLUSTER=1" } else { "" };
            println!("  anomalies {kinds:?}; replay with: make sim SEED={seed}{planted_flag}{cluster_flag}");
            failed_seeds.push(seed);
            if planted.is_some() {
                expected_found = true;
                break;
            }
        }
    }
    println!("sim: {seeds_run} seeds, {faults} faults injected, {acked} records acknowledged, {verified} verified, {anomalies} anomalies");
    match planted {
        Some(bug) if expected_found => println!("sim: planted bug {} was caught", bug.name()),
        Some(bug) => {
            println!("sim: planted bug {} was NOT caught in {seeds_run} seeds", bug.name());
            std::process::exit(1);
        }
        None if !failed_seeds.is_empty() => std::process::exit(1),
        None => {}
    }
}

/// Network latency and packet loss for a seed (TCP in madsim retransmits lost packets, so loss
/// shows as delay). Derived from the seed with Headwater's own generator, outside the runtime.
#[cfg(madsim)]
fn network_config(seed: u64) -> madsim::Config {
    let mut rng = headwater_core::rng::Rng::new(seed ^ 0x0005_EED0_F4E7);
    let mut config = madsim::Config::default();
    config.net.packet_loss_rate = (rng.next_u64() % 50) as f64 / 1000.0;
    let latency_max_ms = 2 + rng.next_u64() % 20;
    config.net.send_latency = std::time::Duration::from_millis(1)..std::time::Duration::from_millis(latency_max_ms);
    config
}
