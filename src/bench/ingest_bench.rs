//! `framelane bench ingest`: end-to-end steps/s from a gRPC client into committed SQLite rows
//! beside a raw rusqlite insert loop of the same rows (the floor), acknowledgement latency at a
//! steady 10k steps/s, and daemon memory while the store stalls.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::{announce, rss_mib, Scratch, Summary};
use framelane_core::daemon::{Daemon, DaemonConfig};
use framelane_core::ingest::proto::framelane_v1 as v1;
use framelane_core::store::{self, BatchPolicy};

/// Options of `framelane bench ingest`.
#[derive(Debug, Clone, clap::Args)]
pub struct IngestBenchArgs {
    /// Write all figures as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Steps per throughput run at flush sizes 100 and 1000 (a tenth of it at flush size 1).
    #[arg(long, default_value_t = 200_000)]
    pub steps: u64,
    /// Seconds of the steady-rate acknowledgement latency run.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Times the scalar runs (floor and end to end, in turn) are repeated at each flush size:
    /// a run takes about a second, so one alone moves with the machine's noise; the table
    /// shows the medians and the range of the per-pair ratios.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub repeat: u32,
}

fn bench_step(run: &str, i: u64, frame: bool) -> v1::Step {
    v1::Step {
        run_id: run.into(),
        worker_id: "w0".into(),
        agent_id: "a0".into(),
        episode: i / 100,
        step: i,
        reward: i as f64 * 0.5,
        producer_unix_ns: i,
        action: Some(v1::Payload {
            content: Some(v1::payload::Content::Json("{\"a\":1}".into())),
        }),
        frame: frame.then(|| v1::Frame {
            content: Some(v1::frame::Content::Raw(v1::RawFrame {
                width: 96,
                height: 96,
                format: v1::PixelFormat::Rgb8 as i32,
                pixels: vec![(i % 251) as u8; 96 * 96 * 3],
            })),
        }),
        ..Default::default()
    }
}

fn start_daemon(dir: &Scratch, batch_rows: usize) -> anyhow::Result<Daemon> {
    let mut config = DaemonConfig::new(dir.0.clone());
    config.listen = "127.0.0.1:0".parse()?;
    config.batch = BatchPolicy {
        max_rows: batch_rows,
        max_delay: Duration::from_millis(50),
    };
    Ok(Daemon::start(config)?)
}

pub(super) async fn client(
    addr: std::net::SocketAddr,
) -> anyhow::Result<v1::telemetry_client::TelemetryClient<tonic::transport::Channel>> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .initial_stream_window_size(16 << 20)
        .initial_connection_window_size(16 << 20);
    Ok(
        v1::telemetry_client::TelemetryClient::new(endpoint.connect().await?)
            .max_encoding_message_size(64 << 20),
    )
}

/// Steps/s of one publish stream of `steps` steps, through gRPC into committed rows.
fn end_to_end(
    steps: u64,
    batch_rows: usize,
    frame: bool,
    profile: &str,
) -> anyhow::Result<(f64, u64)> {
    let dir = Scratch::new("ingest")?;
    let daemon = start_daemon(&dir, batch_rows)?;
    let addr = daemon.local_addr();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let (elapsed, reply) = runtime.block_on(async {
        let mut client = client(addr).await?;
        // Profiles may batch more tightly than the daemon default; make the run use the
        // flush size under test.
        client
            .register_worker(v1::RegisterWorkerRequest {
                run_id: "bench".into(),
                worker_id: "w0".into(),
                worker_kind: "bench".into(),
                profile: profile.into(),
            })
            .await?;
        let started = Instant::now();
        let stream = tokio_stream::iter((0..steps).map(move |i| bench_step("bench", i, frame)));
        let reply = client.publish_steps(stream).await?.into_inner();
        anyhow::Ok((started.elapsed(), reply))
    })?;
    drop(runtime);
    daemon.shutdown();
    if reply.accepted != steps {
        bail!("only {} of {steps} steps were accepted", reply.accepted);
    }
    Ok((steps as f64 / elapsed.as_secs_f64(), reply.frames_shed))
}

fn raw_floor(steps: u64, batch_rows: u64) -> anyhow::Result<f64> {
    let dir = Scratch::new("floor")?;
    let elapsed = raw_insert_floor(&dir.0.join(store::DATABASE_FILE), steps, batch_rows)?;
    Ok(steps as f64 / elapsed.as_secs_f64())
}

/// The floor: `rows` steps inserted straight into a fresh database at `path` with the store's
/// schema, pragmas and statement, committed every `batch` rows. Returns the elapsed time.
fn raw_insert_floor(path: &std::path::Path, rows: u64, batch: u64) -> anyhow::Result<Duration> {
    let mut conn = store::open_for_writing(path)?;
    conn.execute(
        "INSERT INTO runs (run_key, run_id, profile, created_unix_ns, last_seen_unix_ns) VALUES (1, 'floor', '', 0, 0)",
        [],
    )?;
    let started = Instant::now();
    let mut seq = 0u64;
    while seq < rows {
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(store::INSERT_STEP)?;
            for _ in 0..batch.min(rows - seq) {
                seq += 1;
                stmt.execute(rusqlite::params![
                    1,
                    seq as i64,
                    "w0",
                    "a0",
                    (seq / 100) as i64,
                    seq as i64,
                    seq as f64 * 0.5,
                    false,
                    false,
                    seq as i64,
                    seq as i64,
                    "{\"a\":1}",
                    None::<Vec<u8>>,
                    None::<String>,
                    None::<Vec<u8>>,
                    None::<String>,
                ])?;
            }
        }
        tx.commit()?;
    }
    Ok(started.elapsed())
}

/// Acknowledgement latency of 10-step publishes sent every millisecond (10k steps/s).
fn ack_latency(seconds: f64) -> anyhow::Result<(Summary, f64)> {
    let dir = Scratch::new("ack")?;
    let daemon = start_daemon(&dir, 1000)?;
    let addr = daemon.local_addr();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let (mut samples, achieved) = runtime.block_on(async {
        let mut client = client(addr).await?;
        let mut samples = Vec::new();
        let started = Instant::now();
        let mut interval = tokio::time::interval(Duration::from_millis(1));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sent = 0u64;
        let mut inflight = tokio::task::JoinSet::new();
        while started.elapsed().as_secs_f64() < seconds {
            interval.tick().await;
            let first = sent;
            sent += 10;
            let mut c = client.clone();
            inflight.spawn(async move {
                let t = Instant::now();
                let stream =
                    tokio_stream::iter((first..first + 10).map(|i| bench_step("ack", i, false)));
                c.publish_steps(stream)
                    .await
                    .map(|_| t.elapsed().as_secs_f64() * 1e3)
            });
            while let Some(done) = inflight.try_join_next() {
                samples.push(done??);
            }
        }
        while let Some(done) = inflight.join_next().await {
            samples.push(done??);
        }
        client.health(v1::HealthRequest {}).await?;
        anyhow::Ok((samples, sent as f64 / started.elapsed().as_secs_f64()))
    })?;
    drop(runtime);
    daemon.shutdown();
    Ok((
        Summary::of(&mut samples).context("no acknowledgements")?,
        achieved,
    ))
}

/// Daemon memory while the store cannot commit (another connection holds the write lock):
/// publishers fill the bounded queue and then wait.
fn stalled_store_memory(queue: u32) -> anyhow::Result<serde_json::Value> {
    let dir = Scratch::new("stall")?;
    let (mut child, addr) = super::spawn_serve(&dir.0, &["--queue", &queue.to_string()])?;
    let pid = child.id();
    let idle = rss_mib(pid);
    let lock = rusqlite::Connection::open(dir.0.join(store::DATABASE_FILE))?;
    lock.busy_timeout(Duration::from_secs(5))?;
    lock.execute_batch("BEGIN EXCLUSIVE")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let peak = runtime.block_on(async {
        let mut peak = 0.0f64;
        let mut tasks = Vec::new();
        for w in 0..4 {
            let mut c = client(addr).await?;
            tasks.push(tokio::spawn(async move {
                let stream = tokio_stream::iter(
                    (0..200_000u64).map(move |i| bench_step(&format!("stall-{w}"), i, true)),
                );
                let _ = c.publish_steps(stream).await;
            }));
        }
        for _ in 0..80 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            peak = peak.max(rss_mib(pid));
        }
        for t in &tasks {
            t.abort();
        }
        anyhow::Ok(peak)
    })?;
    lock.execute_batch("ROLLBACK")?;
    // SAFETY: stopping our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = child.wait();
    Ok(
        serde_json::json!({"queue_steps": queue, "idle_rss_mib": idle, "stalled_peak_rss_mib": peak}),
    )
}

/// Runs every ingest benchmark, prints the figures and writes JSON when asked.
pub fn run_ingest_bench(args: &IngestBenchArgs) -> anyhow::Result<()> {
    let (machine, command) = announce("ingest");
    println!("\n== end-to-end steps/s (gRPC client -> committed SQLite rows) beside raw rusqlite inserts ==");
    println!(
        "{:<7} {:<34} {:>12} {:>12} {:>7}",
        "flush", "payload", "e2e steps/s", "floor/s", "ratio"
    );
    let mut throughput = Vec::new();
    for flush in [1u64, 100, 1000] {
        let steps = if flush == 1 {
            args.steps / 10
        } else {
            args.steps
        };
        // Scalars: floor and end to end in turn, `repeat` times; medians and the ratio range.
        let (mut floors, mut rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..args.repeat {
            let floor = raw_floor(steps, flush)?;
            let (rate, _) = end_to_end(steps, flush as usize, false, "telemetry_only")?;
            floors.push(floor);
            rates.push(rate);
            ratios.push(rate / floor);
        }
        let median = |samples: &mut Vec<f64>| Summary::of(samples).map_or(0.0, |s| s.p50);
        let runs = ratios.clone();
        let (floor, rate, ratio) = (median(&mut floors), median(&mut rates), median(&mut ratios));
        let (low, high) = (ratios[0], ratios[ratios.len() - 1]);
        println!(
            "{flush:<7} {:<34} {rate:>12.0} {floor:>12.0} {ratio:>6.2}x  (runs {low:.2}-{high:.2}x)",
            "scalars"
        );
        throughput.push(serde_json::json!({"flush_rows": flush, "payload": "scalars", "profile": "telemetry_only", "steps": steps, "repeat": args.repeat, "steps_per_second": rate, "floor_rows_per_second": floor, "ratio": ratio, "ratios_of_runs": runs, "frames_shed": 0}));
        if flush == 1 {
            continue;
        }
        for (label, profile) in [
            ("scalars + 96x96x3 frame (thinned)", "telemetry_only"),
            ("scalars + 96x96x3 frame (png 1/10)", "box2d"),
        ] {
            let (rate, shed) = end_to_end(steps, flush as usize, true, profile)?;
            let ratio = rate / floor;
            println!("{flush:<7} {label:<34} {rate:>12.0} {floor:>12.0} {ratio:>6.2}x");
            throughput.push(serde_json::json!({"flush_rows": flush, "payload": label, "profile": profile, "steps": steps, "steps_per_second": rate, "floor_rows_per_second": floor, "ratio": ratio, "frames_shed": shed}));
        }
    }
    println!(
        "\n== acknowledgement latency at a steady 10k steps/s (10-step publishes every 1 ms) =="
    );
    let (latency, achieved) = ack_latency(args.seconds)?;
    println!(
        "achieved {achieved:.0} steps/s: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        latency.p50, latency.p99, latency.max
    );
    println!("\n== daemon memory while the store stalls for 8 s (write lock held elsewhere; 4 publishers with frames) ==");
    let memory = stalled_store_memory(16_384)?;
    println!(
        "queue {} steps: idle {:.1} MiB, stalled peak {:.1} MiB",
        memory["queue_steps"],
        memory["idle_rss_mib"].as_f64().unwrap_or(0.0),
        memory["stalled_peak_rss_mib"].as_f64().unwrap_or(0.0)
    );
    let report = serde_json::json!({
        "benchmark": "ingest",
        "machine": machine,
        "command": command,
        "throughput": throughput,
        "ack_latency_ms": latency,
        "ack_rate_steps_per_second": achieved,
        "stalled_store_memory": memory,
    });
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("\nwrote {}", path.display());
    }
    Ok(())
}
