//! `framelane bench memory`: the daemon's memory ceiling held while its store is stalled and
//! many publishers send large frames, beside the same daemon with the ceiling lifted (queues
//! bounded in items only), in one run.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::{announce, rss_mib, spawn_serve, Scratch};
use framelane_core::ingest::proto::framelane_v1 as v1;
use framelane_core::store;

/// Options of `framelane bench memory`.
#[derive(Debug, Clone, clap::Args)]
pub struct MemoryBenchArgs {
    /// Write all figures as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// The ceiling under test, in MiB.
    #[arg(long, default_value_t = 256)]
    pub limit_mib: u64,
    /// Publishers (half keep frames inline, half as PNG snapshots).
    #[arg(long, default_value_t = 8)]
    pub publishers: u32,
    /// Seconds the store stays stalled.
    #[arg(long, default_value_t = 8.0)]
    pub stall_seconds: f64,
    /// The daemon's store queue in steps (`serve --queue`): large, so that the queues' bounds
    /// in items do not stop the publishers before their bytes reach the ceiling.
    #[arg(long, default_value_t = 1 << 20)]
    pub queue: u32,
    /// Frame size, WIDTHxHEIGHT (RGB).
    #[arg(long, default_value = "1280x720", value_parser = parse_frame_size)]
    pub frame: (u32, u32),
}

fn parse_frame_size(text: &str) -> Result<(u32, u32), String> {
    let (w, h) = text
        .split_once('x')
        .ok_or_else(|| format!("{text:?} is not WIDTHxHEIGHT"))?;
    let side = |v: &str| {
        v.parse::<u32>()
            .ok()
            .filter(|n| (16..=4096).contains(n))
            .ok_or_else(|| format!("{v:?} is not a side in 16..=4096"))
    };
    Ok((side(w)?, side(h)?))
}

/// Frame-keeping profiles: inline frames into the store queue, PNG frames into the snapshot
/// queue; both shed when there is no room (live views).
const PROFILES: &str = "
profiles:
  inline:
    capture_frames: true
    keep_every_n_frames: 1
    frame_compression: none
    jpeg_quality: 85
    drop_render_payload: true
    drop_observation: false
    batch_rows: 100
    flush_interval_ms: 20
  png:
    capture_frames: true
    keep_every_n_frames: 1
    frame_compression: png
    jpeg_quality: 85
    drop_render_payload: true
    drop_observation: false
    batch_rows: 100
    flush_interval_ms: 20
";

/// Figures of one daemon under the stall.
#[derive(Debug, serde::Serialize)]
struct StallFigures {
    ceiling: String,
    idle_rss_mib: f64,
    stalled_peak_rss_mib: f64,
    /// The most the ceiling's accounting held (MiB).
    accounted_peak_mib: f64,
    memory_waits: f64,
    memory_refused: f64,
    frames_sent: u64,
    steps_acknowledged: u64,
    frames_shed: u64,
    shed_by_kind: std::collections::BTreeMap<String, f64>,
}

fn stalled(args: &MemoryBenchArgs, limit: &str) -> anyhow::Result<StallFigures> {
    let dir = Scratch::new("memory")?;
    let profiles = dir.0.join("profiles.yaml");
    std::fs::write(&profiles, PROFILES)?;
    let profiles = profiles.display().to_string();
    let (mut child, addr) = spawn_serve(
        &dir.0,
        &[
            "--memory-limit",
            limit,
            "--profiles",
            &profiles,
            "--queue",
            &args.queue.to_string(),
        ],
    )?;
    let pid = child.id();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let idle = rss_mib(pid);
    let lock = rusqlite::Connection::open(dir.0.join(store::DATABASE_FILE))?;
    lock.busy_timeout(Duration::from_secs(5))?;
    let (width, height) = args.frame;
    let figures = runtime.block_on(async {
        let mut c = super::ingest_bench::client(addr).await?;
        for w in 0..args.publishers {
            c.register_worker(v1::RegisterWorkerRequest {
                run_id: format!("pub-{w}"),
                worker_id: "w0".into(),
                worker_kind: "bench".into(),
                profile: if w % 2 == 0 { "inline" } else { "png" }.into(),
            })
            .await?;
        }
        lock.execute_batch("BEGIN EXCLUSIVE")?;
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut tasks = Vec::new();
        for w in 0..args.publishers {
            let mut c = super::ingest_bench::client(addr).await?;
            let stop = Arc::clone(&stop);
            let sent = Arc::clone(&sent);
            let run = format!("pub-{w}");
            tasks.push(tokio::spawn(async move {
                let steps = (0u64..).map_while(move |i| {
                    if stop.load(Ordering::Relaxed) {
                        return None;
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                    Some(v1::Step {
                        run_id: run.clone(),
                        worker_id: "w0".into(),
                        agent_id: "a0".into(),
                        step: i,
                        producer_unix_ns: i,
                        frame: Some(v1::Frame {
                            content: Some(v1::frame::Content::Raw(v1::RawFrame {
                                width,
                                height,
                                format: v1::PixelFormat::Rgb8 as i32,
                                pixels: vec![(i % 251) as u8; (width * height * 3) as usize],
                            })),
                        }),
                        ..Default::default()
                    })
                });
                c.publish_steps(tokio_stream::iter(steps))
                    .await
                    .map(|r| r.into_inner())
            }));
        }
        let mut peak = 0.0f64;
        let stall_end = Instant::now() + Duration::from_secs_f64(args.stall_seconds);
        while Instant::now() < stall_end {
            tokio::time::sleep(Duration::from_millis(100)).await;
            peak = peak.max(rss_mib(pid));
        }
        lock.execute_batch("ROLLBACK")?;
        stop.store(true, Ordering::Relaxed);
        let (mut acknowledged, mut shed) = (0, 0);
        for task in tasks {
            let reply = task.await.context("publisher")?.context("publish")?;
            acknowledged += reply.accepted;
            shed += reply.frames_shed;
        }
        peak = peak.max(rss_mib(pid));
        let health = c.health(v1::HealthRequest {}).await?.into_inner().metrics;
        let shed_by_kind = health
            .iter()
            .filter_map(|(k, v)| {
                let kind = k.strip_prefix("framelane_shed_total{kind=\"")?;
                Some((kind.trim_end_matches("\"}").to_owned(), *v))
            })
            .collect();
        let figure = |name: &str| health.get(name).copied().unwrap_or(0.0);
        anyhow::Ok(StallFigures {
            ceiling: limit.to_owned(),
            idle_rss_mib: idle,
            stalled_peak_rss_mib: peak,
            accounted_peak_mib: figure("framelane_memory_peak_bytes") / 1048576.0,
            memory_waits: figure("framelane_memory_waits_total"),
            memory_refused: figure("framelane_memory_refused_total"),
            frames_sent: sent.load(Ordering::Relaxed),
            steps_acknowledged: acknowledged,
            frames_shed: shed,
            shed_by_kind,
        })
    })?;
    // SAFETY: stopping our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = child.wait();
    Ok(figures)
}

/// Runs the stall with the ceiling and without, prints the figures and writes JSON when asked.
pub fn run_memory_bench(args: &MemoryBenchArgs) -> anyhow::Result<()> {
    let (machine, command) = announce("memory");
    let (w, h) = args.frame;
    println!(
        "\n== store stalled {:.0} s (write lock held elsewhere); {} publishers of {w}x{h} RGB frames, half inline, half PNG; --queue {} ==",
        args.stall_seconds, args.publishers, args.queue
    );
    println!(
        "{:<22} {:>9} {:>10} {:>10} {:>8} {:>8} {:>9} {:>9} {:>8}",
        "daemon", "idle MiB", "peak MiB", "acct MiB", "waits", "refused", "sent", "acked", "shed"
    );
    let mut rows = Vec::new();
    for (label, limit) in [
        (
            format!("ceiling {} MiB", args.limit_mib),
            format!("{}MiB", args.limit_mib),
        ),
        ("no ceiling (1 TiB)".to_owned(), "1TiB".to_owned()),
    ] {
        let f = stalled(args, &limit)?;
        println!(
            "{label:<22} {:>9.1} {:>10.1} {:>10.1} {:>8.0} {:>8.0} {:>9} {:>9} {:>8}",
            f.idle_rss_mib,
            f.stalled_peak_rss_mib,
            f.accounted_peak_mib,
            f.memory_waits,
            f.memory_refused,
            f.frames_sent,
            f.steps_acknowledged,
            f.frames_shed
        );
        println!("{:<22} shed by kind: {:?}", "", f.shed_by_kind);
        rows.push(f);
    }
    let report = serde_json::json!({
        "benchmark": "memory",
        "machine": machine,
        "command": command,
        "frame": format!("{w}x{h}"),
        "publishers": args.publishers,
        "stall_seconds": args.stall_seconds,
        "queue_steps": args.queue,
        "runs": rows,
    });
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("\nwrote {}", path.display());
    }
    Ok(())
}
