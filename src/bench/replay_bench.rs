//! `framelane bench replay`: random seeks to exact frames in a 1280x720 file with a one-second
//! GOP (beside the ffmpeg tool's accurate seek), and opening a run of a million steps with its
//! plot data and episode list.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

use crate::bench::pattern::{numbered_frame, read_number};
use framelane_core::bus::{FrameOwner, RawPixelFormat, ShedCounters, StepRecord};
use framelane_core::encode::{
    CodecFamily, EncoderService, EncoderSettings, JobSpec, ServiceConfig,
};
use framelane_core::replay::VideoReader;
use framelane_core::store::{self, BatchPolicy, StoreCommand, StoreReader, StoreWriter};

use super::{announce, Scratch, Summary};

#[derive(Args, Debug, Clone)]
pub struct ReplayBenchArgs {
    /// Write all figures as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Frames in the seek test file (30 fps, GOP 30).
    #[arg(long, default_value_t = 900)]
    pub frames: u64,
    /// Random seeks.
    #[arg(long, default_value_t = 200)]
    pub seeks: usize,
    /// Steps of the long run.
    #[arg(long, default_value_t = 1_000_000)]
    pub steps: u64,
}

fn xorshift(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

fn write_video(path: &Path, frames: u64, faststart: bool) -> anyhow::Result<()> {
    let (w, h) = (1280u32, 720u32);
    let service = EncoderService::start(ServiceConfig::never_shed(1), None)?;
    let mut settings = EncoderSettings::for_family(CodecFamily::H264);
    settings.gop = Some(30);
    settings.faststart_on_finish = faststart;
    let job = service.open_job(JobSpec {
        run_id: "bench".into(),
        worker_id: String::new(),
        agent_id: String::new(),
        episode: 0,
        path: path.to_owned(),
        settings,
    })?;
    let mut rgb = vec![0; (w * h * 3) as usize];
    for i in 0..frames {
        numbered_frame(i, w, h, &mut rgb);
        service.submit_copy(job, i, w, h, RawPixelFormat::Rgb8, &rgb, w as usize * 3)?;
    }
    service.finish_job(job)?;
    service.wait_job(job, Duration::from_secs(3600));
    service.shutdown();
    Ok(())
}

/// The random seek targets every row of the comparison uses.
fn seek_targets(frames: u64, n: usize) -> Vec<u64> {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    (0..n).map(|_| xorshift(&mut seed) % frames).collect()
}

/// Seek latency to `targets` (p50/p99 in ms), each frame checked.
fn seeks(path: &Path, targets: &[u64]) -> anyhow::Result<Summary> {
    let mut reader = VideoReader::open(path, 30, 30)?;
    let mut samples = Vec::with_capacity(targets.len());
    for &target in targets {
        let t = Instant::now();
        let frame = reader
            .frame(target)?
            .with_context(|| format!("frame {target} missing"))?;
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
        let got = read_number(&frame.rgba, frame.width, frame.height);
        anyhow::ensure!(got == target, "seek to {target} showed frame {got}");
    }
    Summary::of(&mut samples).context("no seeks")
}

/// The OpenCV route (scripts/bench/opencv_seek.py, run by a Python with cv2): one capture
/// kept open, CAP_PROP_POS_FRAMES, read. None when no Python with OpenCV is installed
/// (Debian: python3-opencv). Returns the summary and how many frames were the exact target.
fn opencv_seeks(path: &Path, targets: &[u64]) -> anyhow::Result<Option<(Summary, usize)>> {
    const SCRIPT: &str = include_str!("../../scripts/bench/opencv_seek.py");
    let Some(python) = ["python3", "/usr/bin/python3"].into_iter().find(|python| {
        Command::new(python)
            .args(["-c", "import cv2"])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }) else {
        return Ok(None);
    };
    let list = targets
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let output = Command::new(python)
        .args(["-c", SCRIPT])
        .arg(path)
        .arg(list)
        .output()
        .context("running the OpenCV seek script")?;
    anyhow::ensure!(
        output.status.success(),
        "OpenCV seek script failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut samples = Vec::with_capacity(targets.len());
    let mut exact = 0;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [target, ms, got] = fields[..] else {
            anyhow::bail!("unexpected line from the OpenCV script: {line:?}");
        };
        samples.push(ms.parse::<f64>()?);
        exact += usize::from(target == got);
    }
    Ok(Summary::of(&mut samples).map(|s| (s, exact)))
}

/// The ffmpeg tool's accurate seek (-ss before -i) and one decoded frame, per process.
fn cli_seeks(path: &Path, targets: &[u64]) -> anyhow::Result<Summary> {
    let mut samples = Vec::with_capacity(targets.len());
    for &target in targets {
        let t = Instant::now();
        let status = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-ss"])
            .arg(format!("{:.4}", target as f64 / 30.0))
            .arg("-i")
            .arg(path)
            .args([
                "-frames:v",
                "1",
                "-pix_fmt",
                "rgba",
                "-f",
                "rawvideo",
                "-y",
                "/dev/null",
            ])
            // The decoder warns about references it skipped while seeking: not our figures.
            .stderr(std::process::Stdio::null())
            .status()
            .context("running ffmpeg")?;
        anyhow::ensure!(status.success(), "ffmpeg failed");
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Summary::of(&mut samples).context("no seeks")
}

/// A store holding one run of `steps` steps in episodes of 1000.
fn build_long_run(dir: &Path, steps: u64) -> anyhow::Result<PathBuf> {
    let db = store::database_path(dir)?;
    let writer = StoreWriter::start(
        &db,
        64,
        BatchPolicy {
            max_rows: 10_000,
            max_delay: Duration::from_millis(200),
        },
        ShedCounters::new(),
    )?;
    let sender = writer.sender();
    let mut chunk = Vec::with_capacity(1024);
    for i in 0..steps {
        chunk.push(StepRecord {
            run_id: "long".into(),
            worker_id: "w".into(),
            agent_id: "a".into(),
            episode: i / 1000,
            step: i % 1000,
            reward: ((i as f64) * 0.001).sin(),
            terminated: i % 1000 == 999,
            truncated: false,
            producer_unix_ns: i,
            action: None,
            observation: None,
            extra_json: None,
            worker_seq: 0,
        });
        if chunk.len() == 1024 || i + 1 == steps {
            sender
                .blocking_send(StoreCommand::Steps {
                    origin: framelane_core::store::NO_ORIGIN,
                    steps: std::mem::take(&mut chunk),
                    charge: framelane_core::budget::Charge::none(),
                })
                .map_err(|_| anyhow::anyhow!("store writer stopped"))?;
        }
        if i % 1000 == 999 {
            sender
                .blocking_send(StoreCommand::Episode {
                    origin: framelane_core::store::NO_ORIGIN,
                    episode: framelane_core::bus::EpisodeRecord {
                        run_id: "long".into(),
                        worker_id: "w".into(),
                        agent_id: "a".into(),
                        episode: i / 1000,
                        total_reward: 1.0,
                        steps: 1000,
                        terminated: true,
                        truncated: false,
                        metadata_json: "{}".into(),
                        producer_unix_ns: i,
                    },
                })
                .map_err(|_| anyhow::anyhow!("store writer stopped"))?;
        }
    }
    writer.shutdown();
    Ok(db)
}

/// Opening the run: a fresh reader, the episode list and the whole-run plot data.
fn open_long_run(db: &Path) -> anyhow::Result<(f64, usize, usize)> {
    let t = Instant::now();
    let reader = StoreReader::open(db)?;
    let episodes = reader.replay_episodes("long", FrameOwner::ANY)?;
    let overview = reader.reward_overview("long", 2000)?;
    Ok((
        t.elapsed().as_secs_f64() * 1000.0,
        episodes.len(),
        overview.len(),
    ))
}

pub fn run_replay_bench(args: &ReplayBenchArgs) -> anyhow::Result<()> {
    let (machine, command) = announce("replay");
    let scratch = Scratch::new("replay")?;
    let frames = args.frames.max(2);
    println!(
        "\n== random seek to an exact frame: 1280x720 H.264 (libx264 veryfast), GOP 30 at 30 fps, {frames} frames, decode + RGBA =="
    );
    let finished = scratch.0.join("finished.mp4");
    let recording = scratch.0.join("recording.mp4");
    write_video(&finished, frames, true)?;
    write_video(&recording, frames, false)?;
    // The same targets for every row; enough of them that p99 is not the maximum.
    let targets = seek_targets(frames, args.seeks.max(101));
    let ours = seeks(&finished, &targets)?;
    let ours_fragmented = seeks(&recording, &targets)?;
    let opencv = opencv_seeks(&finished, &targets)?;
    let cli = cli_seeks(&finished, &targets[..targets.len().min(101)])?;
    println!(
        "{:<46} {:>7} {:>8} {:>8} {:>8} {:>14}",
        "", "seeks", "p50 ms", "p99 ms", "max ms", "p50 vs ours"
    );
    let row = |label: &str, s: &Summary, note: &str| {
        println!(
            "{label:<46} {:>7} {:>8.1} {:>8.1} {:>8.1} {:>13.2}x {note}",
            s.count,
            s.p50,
            s.p99,
            s.max,
            s.p50 / ours.p50
        );
    };
    row("framelane, finished (fast-start) file", &ours, "");
    row(
        "framelane, fragmented file (recording)",
        &ours_fragmented,
        "",
    );
    match &opencv {
        Some((s, exact)) => row(
            "OpenCV VideoCapture kept open (POS_FRAMES)",
            s,
            &format!("({exact} of {} exact)", s.count),
        ),
        None => println!("OpenCV row skipped: no Python with cv2 (Debian: python3-opencv)"),
    }
    row("ffmpeg CLI -ss (new process per seek)", &cli, "");

    println!(
        "\n== opening a run of {} steps: episode list + whole-run plot (2000 buckets) ==",
        args.steps
    );
    let t = Instant::now();
    let db = build_long_run(&scratch.0, args.steps)?;
    let build = t.elapsed().as_secs_f64();
    let mut opens = Vec::new();
    let mut shape = (0, 0);
    for _ in 0..5 {
        let (ms, episodes, points) = open_long_run(&db)?;
        opens.push(ms);
        shape = (episodes, points);
    }
    let open = Summary::of(&mut opens).context("no opens")?;
    println!(
        "store built in {build:.1} s; open: p50 {:.0} ms, max {:.0} ms ({} episodes, {} plot buckets)",
        open.p50, open.max, shape.0, shape.1
    );

    if let Some(path) = &args.json {
        let doc = serde_json::json!({
            "machine": machine,
            "command": command,
        "command": command,
            "seek_frames": frames,
            "seek_ms_finished": ours,
            "seek_ms_fragmented": ours_fragmented,
            "seek_ms_ffmpeg_cli": cli,
            "seek_ms_opencv": opencv.as_ref().map(|(s, _)| s),
            "opencv_exact_frames": opencv.as_ref().map(|(_, exact)| exact),
            "long_run_steps": args.steps,
            "long_run_open_ms": open,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("\nJSON written to {}", path.display());
    }
    Ok(())
}
