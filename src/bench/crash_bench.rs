//! `framelane bench crash`: the durable lane's fault harness. Every round starts `framelane
//! serve` on one data directory, runs three workers at once (scalar steps; steps with frames
//! kept as PNG; steps with frames recorded to H.264 video, episodes ending every 50 steps),
//! kills the daemon with SIGKILL at a random moment, and after the restart counts:
//! acknowledged steps lost, steps stored twice (a worker re-sends what was not acknowledged:
//! delivery is at least once), the database's integrity check, and recorded video files that
//! do not open or decode.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use serde::Serialize;

use framelane_core::ingest::client;
use framelane_core::ingest::proto::framelane_v1 as v1;
use framelane_core::replay::VideoReader;
use framelane_core::store::{StoreError, StoreReader, DATABASE_FILE};

use super::{announce, Scratch};

#[derive(Args, Debug, Clone)]
pub struct CrashBenchArgs {
    /// Kill -9 rounds.
    #[arg(long, default_value_t = 100)]
    pub rounds: usize,
    /// Steps per acknowledged publish.
    #[arg(long, default_value_t = 50)]
    pub batch: u64,
    /// Write all figures as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Copy every recorded video file that has indexed frames but does not decode into this
    /// folder, to find out why (the figures list each with its index row and decode error).
    #[arg(long, value_name = "DIR")]
    pub keep_unplayable: Option<PathBuf>,
}

/// A recorded file with indexed frames that did not decode.
#[derive(Debug, Serialize)]
struct Unplayable {
    path: String,
    /// Its row in the index: status, frames indexed, error.
    status: String,
    frames_indexed: u64,
    index_error: Option<String>,
    bytes: u64,
    /// What decoding said (or "no frame decoded").
    decode_error: String,
    /// Where it was copied (--keep-unplayable).
    kept_as: Option<String>,
}

/// The workers: (run, profile, frame kept).
const WORKERS: [(&str, &str, bool); 3] = [
    ("scalars", "telemetry_only", false),
    ("frames", "box2d", true),
    ("video", "demo", true),
];
const STEPS_PER_EPISODE: u64 = 50;

#[derive(Debug, Default, Serialize)]
struct Figures {
    machine: String,
    command: String,
    rounds: usize,
    steps_acknowledged: u64,
    /// Steps acknowledged per worker's run (the video worker waits for its encoder).
    steps_acknowledged_by_run: std::collections::BTreeMap<String, u64>,
    steps_stored: u64,
    /// Distinct steps stored that were never acknowledged (committed just before a kill): the
    /// re-send of these is what becomes a duplicate.
    stored_unacknowledged: u64,
    acknowledged_lost: u64,
    duplicates: u64,
    integrity_failures: usize,
    video_files: usize,
    video_files_unplayable: usize,
    /// Files killed before their first fragment (no frame indexed): nothing to play, nothing
    /// acknowledged lost.
    video_files_empty: usize,
    video_frames_decoded: u64,
    unplayable: Vec<Unplayable>,
    restart_ms_p50: f64,
    restart_ms_max: f64,
}

struct Daemon {
    child: Child,
    addr: SocketAddr,
}

fn start_daemon(data: &Path) -> anyhow::Result<Daemon> {
    let (child, addr) = super::spawn_serve(data, &[])?;
    Ok(Daemon { child, addr })
}

fn step(run: &str, i: u64, frame: bool) -> v1::Step {
    v1::Step {
        run_id: run.into(),
        worker_id: "w0".into(),
        agent_id: "a0".into(),
        episode: i / STEPS_PER_EPISODE,
        step: i,
        reward: (i % 7) as f64,
        producer_unix_ns: 1_700_000_000_000_000_000 + i,
        // Numbered: a re-send after a kill is recognised and not stored twice.
        worker_seq: i + 1,
        frame: frame.then(|| v1::Frame {
            content: Some(v1::frame::Content::Raw(v1::RawFrame {
                width: 64,
                height: 48,
                format: v1::PixelFormat::Rgb8 as i32,
                pixels: vec![(i % 251) as u8; 64 * 48 * 3],
            })),
        }),
        ..Default::default()
    }
}

/// Publishes batches until the daemon goes; returns the steps acknowledged (the next index to
/// send afterwards is the first unacknowledged one: what a worker re-sends after a crash).
async fn work(
    addr: SocketAddr,
    run: &'static str,
    profile: &str,
    frame: bool,
    from: u64,
    batch: u64,
) -> (u64, bool) {
    let Ok(mut c) = client::connect(addr).await else {
        return (from, false);
    };
    let registered = c
        .register_worker(v1::RegisterWorkerRequest {
            run_id: run.into(),
            worker_id: "w0".into(),
            worker_kind: "bench".into(),
            profile: profile.into(),
        })
        .await;
    if registered.is_err() {
        return (from, false);
    }
    let mut next = from;
    loop {
        let steps: Vec<v1::Step> = (next..next + batch).map(|i| step(run, i, frame)).collect();
        match c.publish_steps(tokio_stream::iter(steps)).await {
            Ok(reply) if reply.get_ref().accepted == batch => {}
            _ => return (next, true),
        }
        next += batch;
        if next % STEPS_PER_EPISODE == 0 {
            let episode = v1::Episode {
                run_id: run.into(),
                worker_id: "w0".into(),
                agent_id: "a0".into(),
                episode: next / STEPS_PER_EPISODE - 1,
                steps: STEPS_PER_EPISODE,
                terminated: true,
                ..Default::default()
            };
            if c.publish_episodes(tokio_stream::iter([episode]))
                .await
                .is_err()
            {
                return (next, true);
            }
        }
    }
}

pub fn run_crash_bench(args: &CrashBenchArgs) -> anyhow::Result<()> {
    if args.batch == 0 || STEPS_PER_EPISODE % args.batch != 0 && args.batch % STEPS_PER_EPISODE != 0
    {
        bail!("--batch must divide {STEPS_PER_EPISODE} or be a multiple of it");
    }
    let (machine, command) = announce("crash");
    let scratch = Scratch::new("crash")?;
    let data = scratch.0.join("data");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("runtime")?;
    let mut acked: HashMap<&str, u64> = WORKERS.iter().map(|(run, _, _)| (*run, 0)).collect();
    let mut figures = Figures {
        machine,
        command,
        rounds: args.rounds,
        ..Figures::default()
    };
    let mut restarts = Vec::with_capacity(args.rounds);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..=args.rounds {
        let started = Instant::now();
        let mut daemon = start_daemon(&data)?;
        restarts.push(started.elapsed().as_secs_f64() * 1e3);
        let last = round == args.rounds;
        let keep = last.then_some(args.keep_unplayable.as_deref()).flatten();
        check_store(&data, &acked, &mut figures, (last, keep))?;
        if round == args.rounds {
            let _ = daemon.child.kill();
            let _ = daemon.child.wait();
            break;
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_millis(150 + seed % 600);
        let pid = daemon.child.id() as i32;
        let killer = std::thread::spawn(move || {
            std::thread::sleep(delay);
            // SAFETY: signalling our own child process.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        });
        let addr = daemon.addr;
        let batch = args.batch;
        let outcomes = runtime.block_on(async {
            let tasks: Vec<_> = WORKERS
                .iter()
                .map(|(run, profile, frame)| {
                    let from = acked[run];
                    tokio::spawn(work(addr, run, profile, *frame, from, batch))
                })
                .collect();
            let mut out = Vec::new();
            for task in tasks {
                out.push(task.await.unwrap_or((0, false)));
            }
            out
        });
        let _ = killer.join();
        let _ = daemon.child.wait();
        for ((run, _, _), (next, _)) in WORKERS.iter().zip(outcomes) {
            if next > acked[run] {
                acked.insert(run, next);
            }
        }
        if round % 10 == 9 {
            println!(
                "  round {:>3}: {} acknowledged, {} lost, {} duplicates so far",
                round + 1,
                acked.values().sum::<u64>(),
                figures.acknowledged_lost,
                figures.duplicates
            );
        }
    }
    if let Some(summary) = super::Summary::of(&mut restarts) {
        figures.restart_ms_p50 = summary.p50;
        figures.restart_ms_max = summary.max;
    }
    figures.steps_acknowledged = acked.values().sum();
    figures.steps_acknowledged_by_run = acked.iter().map(|(r, n)| (r.to_string(), *n)).collect();
    println!(
        "{} kill -9 rounds, 3 workers each: {} steps acknowledged ({:?}), {} rows stored ({} distinct steps committed but not acknowledged before a kill); acknowledged steps lost: {}; stored twice: {}; integrity failures: {}; video files {} ({} unplayable, {} killed before their first fragment, {} frames decoded); restart p50 {:.0} ms, max {:.0} ms",
        figures.rounds,
        figures.steps_acknowledged,
        figures.steps_acknowledged_by_run,
        figures.steps_stored,
        figures.stored_unacknowledged,
        figures.acknowledged_lost,
        figures.duplicates,
        figures.integrity_failures,
        figures.video_files,
        figures.video_files_unplayable,
        figures.video_files_empty,
        figures.video_frames_decoded,
        figures.restart_ms_p50,
        figures.restart_ms_max
    );
    for file in &figures.unplayable {
        println!(
            "  unplayable: {} ({}, {} frames indexed, {} bytes): {}{}",
            file.path,
            file.status,
            file.frames_indexed,
            file.bytes,
            file.decode_error,
            file.kept_as
                .as_deref()
                .map(|k| format!("; kept as {k}"))
                .unwrap_or_default()
        );
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&figures)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("figures written to {}", path.display());
    }
    Ok(())
}

/// After a restart: every acknowledged step is stored (else counted lost), integrity holds;
/// at the end also counts duplicates and checks every video file.
fn check_store(
    data: &Path,
    acked: &HashMap<&str, u64>,
    figures: &mut Figures,
    (last, keep_unplayable): (bool, Option<&Path>),
) -> anyhow::Result<()> {
    let database = data.join(DATABASE_FILE);
    if !database.exists() {
        return Ok(());
    }
    let reader = StoreReader::open(&database)?;
    if reader.integrity_check()? != "ok" {
        figures.integrity_failures += 1;
    }
    let mut lost = 0;
    let mut stored_total = 0;
    let mut duplicates = 0;
    let mut unacknowledged = 0;
    for (run, _, _) in WORKERS {
        let rows = match reader.steps_since(run, 1, usize::MAX >> 1) {
            Ok(rows) => rows,
            Err(StoreError::UnknownRun(_)) => Vec::new(),
            Err(err) => return Err(err.into()),
        };
        stored_total += rows.len() as u64;
        let mut seen: HashMap<u64, u32> = HashMap::with_capacity(rows.len());
        for row in &rows {
            *seen.entry(row.record.step).or_default() += 1;
        }
        duplicates += seen.values().map(|n| u64::from(n - 1)).sum::<u64>();
        lost += (0..acked[run]).filter(|i| !seen.contains_key(i)).count() as u64;
        unacknowledged += seen.keys().filter(|i| **i >= acked[run]).count() as u64;
    }
    figures.acknowledged_lost = figures.acknowledged_lost.max(lost);
    if last {
        figures.steps_stored = stored_total;
        figures.duplicates = duplicates;
        figures.stored_unacknowledged = unacknowledged;
        for video in reader.videos("video").unwrap_or_default() {
            figures.video_files += 1;
            let decoded = VideoReader::open(Path::new(&video.path), video.fps, video.gop)
                .and_then(|mut r| r.count_frames());
            match decoded {
                Ok(n) if n > 0 => figures.video_frames_decoded += n,
                _ if video.frames == 0 => figures.video_files_empty += 1,
                outcome => {
                    figures.video_files_unplayable += 1;
                    let decode_error = match outcome {
                        Err(err) => err.to_string(),
                        Ok(_) => "no frame decoded".into(),
                    };
                    let source = Path::new(&video.path);
                    let kept_as = match (keep_unplayable, source.file_name()) {
                        (Some(dir), Some(name)) => {
                            std::fs::create_dir_all(dir)
                                .with_context(|| format!("creating {}", dir.display()))?;
                            let target = dir.join(name);
                            std::fs::copy(source, &target).with_context(|| {
                                format!("copying {} to {}", source.display(), target.display())
                            })?;
                            Some(target.display().to_string())
                        }
                        _ => None,
                    };
                    figures.unplayable.push(Unplayable {
                        path: video.path.clone(),
                        status: video.status.clone(),
                        frames_indexed: video.frames,
                        index_error: video.error.clone(),
                        bytes: std::fs::metadata(source).map_or(0, |m| m.len()),
                        decode_error,
                        kept_as,
                    });
                }
            }
        }
    }
    Ok(())
}
