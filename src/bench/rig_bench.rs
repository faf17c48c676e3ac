//! `framelane bench rig`: the recording rig (encoded pre-roll ring, clips by packet copy)
//! beside the design it replaces (raw-frame deques of the pre-roll, encode on trigger through
//! OpenCV's VideoWriter), each design in a child process of its own so memory figures do not
//! mix: RSS avg/peak, CPU avg/peak, disk MB/s, frames captured/encoded/dropped,
//! trigger-to-file latency. `--compare A.json B.json` prints two runs side by side.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use serde::{Deserialize, Serialize};

use framelane_rig::reference::DequeRig;
use framelane_rig::{Rig, RigConfig};

use super::{announce, cpu_seconds, rss_mib, Scratch};

#[derive(Args, Debug, Clone)]
pub struct RigBenchArgs {
    /// Seconds each design records.
    #[arg(long, default_value_t = 30)]
    pub duration: u64,
    /// Camera backend: sim (synthetic cameras; the only one a benchmark can repeat).
    #[arg(long, default_value = "sim")]
    pub backend: String,
    /// Cases as WIDTHxHEIGHT@FPS, comma separated.
    #[arg(long, default_value = "1280x720@30,1920x1080@60")]
    pub cases: String,
    #[arg(long, default_value_t = 2)]
    pub cameras: usize,
    #[arg(long, default_value_t = 2000)]
    pub pre_roll_ms: u64,
    #[arg(long, default_value_t = 1000)]
    pub post_roll_ms: u64,
    /// The rig's encoder preset (rig.yaml `preset`; default: the rig's own, veryfast).
    #[arg(long, value_name = "PRESET")]
    pub preset: Option<String>,
    /// Only these designs (framelane, deque), comma separated.
    #[arg(long, default_value = "framelane,deque")]
    pub designs: String,
    /// Write all figures as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Print two earlier JSON runs side by side instead of measuring.
    #[arg(long, num_args = 2, value_names = ["OLD", "NEW"])]
    pub compare: Option<Vec<PathBuf>>,
    /// Internal: run one design in this process and print its figures as JSON.
    #[arg(long, hide = true, value_name = "DESIGN")]
    pub child: Option<String>,
    #[arg(long, hide = true)]
    pub case: Option<String>,
    #[arg(long, hide = true)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DesignFigures {
    pub design: String,
    pub case: String,
    pub cameras: usize,
    pub duration_s: f64,
    /// RSS of the process before the design started (the program and its libraries).
    #[serde(default)]
    pub rss_baseline_mb: f64,
    pub rss_avg_mb: f64,
    pub rss_peak_mb: f64,
    pub cpu_avg_pct: f64,
    pub cpu_peak_pct: f64,
    pub disk_mb_s: f64,
    pub captured: u64,
    pub encoded: u64,
    pub dropped: u64,
    pub trigger_to_file_ms: f64,
    pub encoder: String,
}

fn parse_case(text: &str) -> anyhow::Result<(u32, u32, u32)> {
    let (size, fps) = text
        .split_once('@')
        .with_context(|| format!("{text:?} is not WIDTHxHEIGHT@FPS"))?;
    let (w, h) = framelane_core::encode::dataset::parse_size(size)?;
    let fps: u32 = fps
        .parse()
        .with_context(|| format!("{text:?}: bad frame rate"))?;
    if !(1..=240).contains(&fps) {
        bail!("{text:?}: frame rate must be 1 to 240");
    }
    Ok((w, h, fps))
}

/// Samples RSS and CPU every 200 ms until told to stop.
struct Sampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(f64, f64)>>,
}

impl Sampler {
    fn start() -> anyhow::Result<Self> {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("bench-sampler".into())
            .spawn(move || {
                let mut samples: Vec<(f64, f64)> = Vec::new();
                let (mut last_cpu, mut last_t) = (cpu_seconds(), Instant::now());
                while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(200));
                    let (cpu, t) = (cpu_seconds(), Instant::now());
                    let pct =
                        (cpu - last_cpu) / t.duration_since(last_t).as_secs_f64().max(1e-6) * 100.0;
                    samples.push((rss_mib(std::process::id()), pct));
                    (last_cpu, last_t) = (cpu, t);
                }
                samples
            })?;
        Ok(Self { stop, thread })
    }

    fn finish(self) -> (f64, f64, f64, f64) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let samples = self.thread.join().unwrap_or_default();
        let n = samples.len().max(1) as f64;
        (
            samples.iter().map(|s| s.0).sum::<f64>() / n,
            samples.iter().map(|s| s.0).fold(0.0, f64::max),
            samples.iter().map(|s| s.1).sum::<f64>() / n,
            samples.iter().map(|s| s.1).fold(0.0, f64::max),
        )
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            total += dir_bytes(&path);
        } else {
            total += entry.metadata().map(|m| m.len()).unwrap_or(0);
        }
    }
    total
}

fn run_child(args: &RigBenchArgs, design: &str) -> anyhow::Result<DesignFigures> {
    let case = args.case.clone().context("--case is needed")?;
    let out = args.out.clone().context("--out is needed")?;
    let (w, h, fps) = parse_case(&case)?;
    std::fs::create_dir_all(&out)?;
    let duration = Duration::from_secs(args.duration.max(4));
    let rss_baseline_mb = rss_mib(std::process::id());
    let sampler = Sampler::start()?;
    let started = Instant::now();
    let half = duration / 2;
    let (captured, encoded, dropped, latency, encoder);
    match design {
        "framelane" => {
            let mut yaml = String::from("cameras:\n");
            for i in 0..args.cameras {
                yaml.push_str(&format!(
                    "  - name: cam{i}\n    source: synthetic\n    size: {w}x{h}\n    fps: {fps}\n"
                ));
            }
            yaml.push_str(&format!(
                "recording:\n  pre_roll_ms: {}\n  post_roll_ms: {}\n  gop_ms: 500\n  output_dir: {}\n  disk_reserve_mb: 1\n  ring_mb: 512\n",
                args.pre_roll_ms,
                args.post_roll_ms,
                out.display()
            ));
            if let Some(preset) = &args.preset {
                yaml.push_str(&format!("  preset: {preset}\n"));
            }
            let rig = Rig::start(RigConfig::parse(&yaml, &out.join("rig.yaml"))?)?;
            std::thread::sleep(half.saturating_sub(started.elapsed()));
            let t = Instant::now();
            rig.trigger();
            while rig.clips_written() == 0 && t.elapsed() < Duration::from_secs(60) {
                std::thread::sleep(Duration::from_millis(5));
            }
            latency = t.elapsed().as_secs_f64() * 1e3 - args.post_roll_ms as f64;
            std::thread::sleep(duration.saturating_sub(started.elapsed()));
            let status = rig.status();
            captured = status.cameras.iter().map(|c| c.captured).sum();
            encoded = status.cameras.iter().map(|c| c.encoded).sum();
            dropped = status.cameras.iter().map(|c| c.dropped).sum();
            encoder = status
                .cameras
                .first()
                .map(|c| c.encoder.clone())
                .unwrap_or_default();
            rig.stop();
        }
        "deque" => {
            let rig =
                DequeRig::start(args.cameras, w, h, fps, args.pre_roll_ms, args.post_roll_ms)?;
            std::thread::sleep(half.saturating_sub(started.elapsed()));
            let t = Instant::now();
            let (files, fourcc) = rig.trigger_and_write(&out, 1)?;
            latency = t.elapsed().as_secs_f64() * 1e3 - args.post_roll_ms as f64;
            std::thread::sleep(duration.saturating_sub(started.elapsed()));
            captured = rig.captured();
            encoded =
                (args.pre_roll_ms + args.post_roll_ms) * u64::from(fps) / 1000 * files.len() as u64;
            dropped = 0;
            encoder = format!("OpenCV VideoWriter {fourcc}");
            rig.stop();
        }
        other => bail!("unknown design {other:?}"),
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (rss_avg_mb, rss_peak_mb, cpu_avg_pct, cpu_peak_pct) = sampler.finish();
    Ok(DesignFigures {
        design: design.into(),
        case,
        cameras: args.cameras,
        duration_s: elapsed,
        rss_baseline_mb,
        rss_avg_mb,
        rss_peak_mb,
        cpu_avg_pct,
        cpu_peak_pct,
        disk_mb_s: dir_bytes(&out) as f64 / (1u64 << 20) as f64 / elapsed,
        captured,
        encoded,
        dropped,
        trigger_to_file_ms: latency,
        encoder: match (&args.preset, design) {
            (Some(preset), "framelane") => format!("{encoder} {preset}"),
            _ => encoder,
        },
    })
}

fn print_row(f: &DesignFigures) {
    println!(
        "  {:<10} {:<14} rss base {:>6.1} avg {:>7.1} peak {:>7.1} MB  cpu avg {:>5.1} % peak {:>5.1} %  disk {:>6.2} MB/s  captured {:>6} encoded {:>6} dropped {:>5}  trigger→file {:>7.0} ms  ({})",
        f.design,
        f.case,
        f.rss_baseline_mb,
        f.rss_avg_mb,
        f.rss_peak_mb,
        f.cpu_avg_pct,
        f.cpu_peak_pct,
        f.disk_mb_s,
        f.captured,
        f.encoded,
        f.dropped,
        f.trigger_to_file_ms,
        f.encoder
    );
}

fn compare(old: &Path, new: &Path) -> anyhow::Result<()> {
    let read = |p: &Path| -> anyhow::Result<Vec<DesignFigures>> {
        let doc: serde_json::Value = serde_json::from_slice(
            &std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        )
        .with_context(|| format!("{} is not JSON", p.display()))?;
        serde_json::from_value(doc["runs"].clone())
            .with_context(|| format!("{}: no \"runs\" of bench rig", p.display()))
    };
    let (a, b) = (read(old)?, read(new)?);
    println!("{} → {}", old.display(), new.display());
    for x in &a {
        let Some(y) = b.iter().find(|y| y.design == x.design && y.case == x.case) else {
            continue;
        };
        println!(
            "  {:<10} {:<14} rss peak {:>7.1} → {:>7.1} MB  cpu avg {:>5.1} → {:>5.1} %  disk {:>5.2} → {:>5.2} MB/s  dropped {} → {}  trigger→file {:.0} → {:.0} ms",
            x.design, x.case, x.rss_peak_mb, y.rss_peak_mb, x.cpu_avg_pct, y.cpu_avg_pct, x.disk_mb_s, y.disk_mb_s, x.dropped, y.dropped, x.trigger_to_file_ms, y.trigger_to_file_ms
        );
    }
    Ok(())
}

pub fn run_rig_bench(args: &RigBenchArgs) -> anyhow::Result<()> {
    if let Some(design) = &args.child {
        let figures = run_child(args, design)?;
        println!("{}", serde_json::to_string(&figures)?);
        return Ok(());
    }
    if let Some(files) = &args.compare {
        return compare(&files[0], &files[1]);
    }
    if args.backend != "sim" {
        bail!(
            "--backend {:?}: only sim (synthetic cameras) can be benchmarked repeatably",
            args.backend
        );
    }
    let (machine, command) = announce("rig");
    let scratch = Scratch::new("rig")?;
    let exe = std::env::current_exe().context("finding this program")?;
    let mut runs = Vec::new();
    for case in args
        .cases
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
    {
        parse_case(case)?;
        for design in args.designs.split(',').map(str::trim) {
            if !matches!(design, "framelane" | "deque") {
                bail!("--designs: {design:?} is not framelane or deque");
            }
            let out = scratch
                .0
                .join(format!("{design}-{}", case.replace(['@', 'x'], "_")));
            let output = Command::new(&exe)
                .args(["bench", "rig", "--child", design, "--case", case])
                .arg("--out")
                .arg(&out)
                .args([
                    "--duration",
                    &args.duration.to_string(),
                    "--cameras",
                    &args.cameras.to_string(),
                ])
                .args([
                    "--pre-roll-ms",
                    &args.pre_roll_ms.to_string(),
                    "--post-roll-ms",
                    &args.post_roll_ms.to_string(),
                ])
                .args(args.preset.iter().flat_map(|p| ["--preset", p.as_str()]))
                .output()
                .context("running a design")?;
            if !output.status.success() {
                bail!(
                    "{design} {case}: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                );
            }
            let line = String::from_utf8_lossy(&output.stdout);
            let figures: DesignFigures =
                serde_json::from_str(line.lines().last().unwrap_or_default())
                    .with_context(|| format!("{design} {case}: no figures"))?;
            print_row(&figures);
            runs.push(figures);
        }
    }
    for pair in runs.chunks(2) {
        if let [ours, theirs] = pair {
            println!(
                "  {}: peak memory {:.1}x lower ({:.0} vs {:.0} MB; above the program itself, {:.0} vs {:.0} MB), CPU avg {:.0} % vs {:.0} %",
                ours.case,
                theirs.rss_peak_mb / ours.rss_peak_mb.max(1e-9),
                ours.rss_peak_mb,
                theirs.rss_peak_mb,
                ours.rss_peak_mb - ours.rss_baseline_mb,
                theirs.rss_peak_mb - theirs.rss_baseline_mb,
                ours.cpu_avg_pct,
                theirs.cpu_avg_pct
            );
        }
    }
    if let Some(path) = &args.json {
        let doc = serde_json::json!({
            "benchmark": "rig",
            "machine": machine,
            "command": command,
            "pre_roll_ms": args.pre_roll_ms,
            "post_roll_ms": args.post_roll_ms,
            "runs": runs,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("figures written to {}", path.display());
    }
    Ok(())
}
