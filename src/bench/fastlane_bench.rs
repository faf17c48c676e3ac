//! `framelane bench fastlane`: publish cost beside memcpy, cross-process publish-to-readable
//! latency, the live view's watcher woken by the writer beside polling, producer-to-pixels latency in the GUI (frame cadence beside the 16 ms GUI-thread
//! timer of the reference design) and producer slowdown with a reader attached.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::{announce, Summary};
use framelane_core::fastlane::{
    shm, FastLaneReader, FastLaneWriter, HudValues, PixelFormat, ReadOutcome, WriterConfig,
};

/// Options of `framelane bench fastlane`.
#[derive(Debug, Clone, clap::Args)]
pub struct FastlaneBenchArgs {
    /// Write all figures as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Seconds per latency and slowdown measurement.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Skip the GUI measurements (they need a display, for example under xvfb-run).
    #[arg(long)]
    pub no_gui: bool,
    /// Producer rate for the GUI latency runs, frames per second.
    #[arg(long, default_value_t = 60.0)]
    pub gui_producer_rate: f64,
}

const SIZES: [(u32, u32, PixelFormat); 4] = [
    (84, 84, PixelFormat::Rgb8),
    (640, 480, PixelFormat::Rgb8),
    (1280, 720, PixelFormat::Rgba8),
    (1920, 1080, PixelFormat::Rgba8),
];

fn label(w: u32, h: u32, format: PixelFormat) -> String {
    format!("{w}x{h}x{}", format.bytes_per_pixel())
}

/// Runs every fast-lane benchmark, prints a table per part and writes JSON when asked.
pub fn run_fastlane_bench(args: &FastlaneBenchArgs) -> anyhow::Result<()> {
    if !(args.seconds > 0.0 && args.seconds.is_finite()) {
        bail!("--seconds {} must be a positive number", args.seconds);
    }
    let exe = std::env::current_exe().context("locating the framelane binary")?;
    let (machine, command) = announce("fastlane");

    println!("\n== publish cost beside memcpy of the same bytes (in-process, per frame) ==");
    println!(
        "{:<16} {:>12} {:>12} {:>12} {:>12} {:>9}",
        "frame", "memcpy p50", "publish p50", "memcpy p99", "publish p99", "p50 ratio"
    );
    let mut publish = Vec::new();
    for (w, h, format) in SIZES {
        let row = publish_cost(w, h, format)?;
        println!(
            "{:<16} {:>10.2}us {:>10.2}us {:>10.2}us {:>10.2}us {:>8.2}x",
            row["frame"].as_str().unwrap_or_default(),
            row["memcpy_us"]["p50"].as_f64().unwrap_or(0.0),
            row["publish_us"]["p50"].as_f64().unwrap_or(0.0),
            row["memcpy_us"]["p99"].as_f64().unwrap_or(0.0),
            row["publish_us"]["p99"].as_f64().unwrap_or(0.0),
            row["ratio_p50"].as_f64().unwrap_or(0.0),
        );
        publish.push(row);
    }

    println!("\n== publish-to-readable latency across processes (640x480x3 producer at 500 Hz) ==");
    let mut cross = Vec::new();
    for (mode, poll) in [
        ("busy-poll", None),
        ("display cadence 60 Hz", Some(Duration::from_micros(16_667))),
    ] {
        let row = cross_process_latency(&exe, mode, poll, args.seconds)?;
        println!(
            "{:<24} p50 {:>8.3} ms  p99 {:>8.3} ms  ({} frames read)",
            mode,
            row["latency_ms"]["p50"].as_f64().unwrap_or(0.0),
            row["latency_ms"]["p99"].as_f64().unwrap_or(0.0),
            row["latency_ms"]["count"].as_u64().unwrap_or(0)
        );
        cross.push(row);
    }

    println!("\n== the live view's watcher: woken by the writer beside polling every 1 ms ==");
    println!(
        "{:<30} {:>13} {:>13} {:>12} {:>12}",
        "watcher", "idle wakes/s", "idle CPU %", "p50 ms", "p99 ms"
    );
    let mut wake = Vec::new();
    for mode in [WatchMode::Woken, WatchMode::Polled] {
        let row = watcher_figures(&exe, mode, args.seconds)?;
        println!(
            "{:<30} {:>13.1} {:>13.3} {:>12.3} {:>12.3}",
            mode.label(),
            row["idle_wakeups_per_second"].as_f64().unwrap_or(f64::NAN),
            row["idle_cpu_percent"].as_f64().unwrap_or(f64::NAN),
            row["publish_to_readable_ms"]["p50"]
                .as_f64()
                .unwrap_or(f64::NAN),
            row["publish_to_readable_ms"]["p99"]
                .as_f64()
                .unwrap_or(f64::NAN),
        );
        wake.push(row);
    }

    let mut gui = Vec::new();
    let mut slowdown = Vec::new();
    let display = crate::ui::display_available();
    if args.no_gui || !display {
        println!(
            "\n(GUI measurements skipped: {})",
            if args.no_gui {
                "--no-gui"
            } else {
                "no display; run under xvfb-run -a"
            }
        );
    } else {
        println!(
            "\n== producer-to-pixels latency in the GUI (producer at {} Hz) ==",
            args.gui_producer_rate
        );
        for (w, h) in [(640, 480), (1280, 720)] {
            for (design, poll_ms) in [
                ("frame cadence (framelane)", 0u32),
                ("16 ms GUI timer (reference)", 16),
            ] {
                let row = gui_latency(&exe, w, h, args.gui_producer_rate, poll_ms, args.seconds)?;
                println!(
                    "{:<10} {:<28} p50 {:>7.2} ms  p99 {:>7.2} ms  shown {:>5} of {:>5} produced, skipped {:>5}, display {:>5.1} fps",
                    format!("{w}x{h}"),
                    design,
                    row["latency_p50_ms"].as_f64().unwrap_or(f64::NAN),
                    row["latency_p99_ms"].as_f64().unwrap_or(f64::NAN),
                    row["frames_read"].as_u64().unwrap_or(0),
                    row["frames_published"].as_u64().unwrap_or(0),
                    row["frames_skipped"].as_u64().unwrap_or(0),
                    row["display_fps"].as_f64().unwrap_or(0.0),
                );
                gui.push(
                    serde_json::json!({"size": format!("{w}x{h}"), "design": design, "stats": row}),
                );
            }
        }
    }

    println!("\n== producer slowdown (unthrottled 640x480x3 producer, steps/s) ==");
    for attached in ["none", "reader at 60 Hz", "GUI"] {
        if attached == "GUI" && (args.no_gui || !display) {
            continue;
        }
        let rate = producer_rate(&exe, attached, args.seconds)?;
        let base = slowdown
            .first()
            .and_then(|r: &serde_json::Value| r["steps_per_second"].as_f64())
            .unwrap_or(rate);
        let change = (1.0 - rate / base) * 100.0;
        println!("{attached:<18} {rate:>12.0} steps/s   slowdown {change:>6.2} %");
        slowdown.push(serde_json::json!({"attached": attached, "steps_per_second": rate, "slowdown_percent": change}));
    }

    let report = serde_json::json!({
        "benchmark": "fastlane",
        "machine": machine,
        "command": command,
        "publish_cost": publish,
        "cross_process_latency": cross,
        "watcher_wake": wake,
        "gui_latency": gui,
        "producer_slowdown": slowdown,
    });
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("\nwrote {}", path.display());
    }
    Ok(())
}

fn unique_run(tag: &str) -> String {
    format!(
        "bench-{tag}-{}-{}",
        std::process::id(),
        shm::monotonic_ns() % 1_000_000
    )
}

fn publish_cost(w: u32, h: u32, format: PixelFormat) -> anyhow::Result<serde_json::Value> {
    let mut config = WriterConfig::new(w, h, format);
    config.cleanup_on_signal = true;
    let mut writer = FastLaneWriter::create(&unique_run("publish"), config)?;
    let bytes = writer.geometry().frame_bytes();
    let frame: Vec<u8> = (0..bytes).map(|i| (i * 7) as u8).collect();
    // The floor: the same bytes copied into a ring of as many buffers as the writer has slots.
    let mut ring: Vec<Vec<u8>> = (0..config.capacity).map(|_| vec![1u8; bytes]).collect();
    let iterations = (1_500_000_000 / bytes).clamp(300, 200_000);
    let rounds = 5;
    let (mut copy_us, mut publish_us) = (Vec::new(), Vec::new());
    let hud = HudValues::default();
    for _ in 0..8 {
        writer.publish(&frame, &hud)?;
    }
    for _ in 0..rounds {
        for i in 0..iterations / rounds {
            let slots = ring.len();
            let dst = &mut ring[i % slots];
            let t = Instant::now();
            dst.copy_from_slice(black_box(&frame));
            black_box(&dst);
            copy_us.push(t.elapsed().as_secs_f64() * 1e6);
        }
        for _ in 0..iterations / rounds {
            let t = Instant::now();
            black_box(writer.publish(black_box(&frame), &hud)?);
            publish_us.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    let copy = Summary::of(&mut copy_us);
    let publish = Summary::of(&mut publish_us);
    let ratio = match (copy, publish) {
        (Some(c), Some(p)) if c.p50 > 0.0 => p.p50 / c.p50,
        _ => f64::NAN,
    };
    Ok(serde_json::json!({
        "frame": label(w, h, format),
        "bytes": bytes,
        "memcpy_us": copy,
        "publish_us": publish,
        "ratio_p50": ratio,
    }))
}

/// Child process running the demo producer; killed on drop.
struct Producer(Child);

impl Drop for Producer {
    fn drop(&mut self) {
        // SIGTERM lets the producer remove its segment.
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

fn spawn_producer(
    exe: &Path,
    run: &str,
    size: &str,
    rate: f64,
    seconds: Option<f64>,
    report: bool,
) -> anyhow::Result<Producer> {
    let mut cmd = Command::new(exe);
    cmd.args([
        "demo",
        "--run",
        run,
        "--size",
        size,
        "--format",
        "rgb",
        "--rate",
        &rate.to_string(),
    ]);
    if let Some(s) = seconds {
        cmd.args(["--seconds", &s.to_string()]);
    }
    if report {
        cmd.arg("--report-json").stdout(Stdio::piped());
    } else {
        cmd.stdout(Stdio::null());
    }
    let child = cmd
        .stderr(Stdio::null())
        .spawn()
        .context("starting the demo producer")?;
    Ok(Producer(child))
}

fn attach_when_ready(run: &str) -> anyhow::Result<FastLaneReader> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match FastLaneReader::attach(run) {
            Ok(reader) => return Ok(reader),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Err(err) => return Err(err).context("the producer's segment did not appear"),
        }
    }
}

fn cross_process_latency(
    exe: &Path,
    mode: &str,
    poll: Option<Duration>,
    seconds: f64,
) -> anyhow::Result<serde_json::Value> {
    let run = unique_run("latency");
    let _producer = spawn_producer(exe, &run, "640x480", 500.0, None, false)?;
    let mut reader = attach_when_ready(&run)?;
    let g = reader.geometry();
    let mut buf = vec![0u8; g.frame_bytes()];
    let mut samples = Vec::new();
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let mut next = Instant::now();
    while Instant::now() < end {
        if let Some(period) = poll {
            next += period;
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        if let ReadOutcome::Frame(meta) = reader.read_newest(&mut buf, g.row_stride)? {
            if let Some(produced) = meta.producer_mono_ns {
                samples.push(shm::monotonic_ns().saturating_sub(produced) as f64 / 1e6);
            }
        }
    }
    Ok(serde_json::json!({
        "mode": mode,
        "latency_ms": Summary::of(&mut samples),
        "frames_skipped": reader.frames_skipped(),
        "torn_reads": reader.torn_reads(),
    }))
}

/// How the live view's watcher thread waits for a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WatchMode {
    /// Sleeps on the segment's publish futex (framelane writers wake it).
    Woken,
    /// Looks at `head` every millisecond (MOSAIC writers; the watcher before wake-on-publish).
    Polled,
}

impl WatchMode {
    fn label(self) -> &'static str {
        match self {
            WatchMode::Woken => "woken by the writer (futex)",
            WatchMode::Polled => "polls head every 1 ms",
        }
    }

    /// One wait of the watcher loop.
    fn wait(self, reader: &FastLaneReader, seen: u64) {
        match self {
            WatchMode::Woken => {
                reader.wait_for_head(seen, Duration::from_millis(100));
            }
            WatchMode::Polled => std::thread::sleep(framelane_core::fastlane::POLL_INTERVAL),
        }
    }
}

/// CPU time of the calling thread, in seconds.
fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// The watcher loop alone: wake-ups and CPU while a live writer publishes nothing, then
/// publish-to-readable latency of a producer process at 100 Hz (84x84x3).
fn watcher_figures(exe: &Path, mode: WatchMode, seconds: f64) -> anyhow::Result<serde_json::Value> {
    let idle_run = unique_run("idle");
    let mut config = WriterConfig::new(84, 84, PixelFormat::Rgb8);
    config.cleanup_on_signal = false;
    let writer = FastLaneWriter::create(&idle_run, config)?;
    let reader = FastLaneReader::attach(&idle_run)?;
    if mode == WatchMode::Woken && !reader.woken_by_writer() {
        bail!("the segment's writer does not wake readers");
    }
    let (wakeups, cpu) = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let cpu_start = thread_cpu_seconds();
                let end = Instant::now() + Duration::from_secs_f64(seconds);
                let mut wakeups = 0u64;
                while Instant::now() < end {
                    mode.wait(&reader, reader.head());
                    wakeups += 1;
                }
                (wakeups, thread_cpu_seconds() - cpu_start)
            })
            .join()
    })
    .map_err(|_| anyhow::anyhow!("the watcher thread panicked"))?;
    drop(reader);
    drop(writer);

    let run = unique_run("wake");
    let _producer = spawn_producer(exe, &run, "84x84", 100.0, None, false)?;
    let mut reader = attach_when_ready(&run)?;
    let g = reader.geometry();
    let mut buf = vec![0u8; g.frame_bytes()];
    let mut samples = Vec::new();
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let mut seen = reader.head();
    while Instant::now() < end {
        mode.wait(&reader, seen);
        let head = reader.head();
        if head == seen {
            continue;
        }
        seen = head;
        if let ReadOutcome::Frame(meta) = reader.read_newest(&mut buf, g.row_stride)? {
            if let Some(produced) = meta.producer_mono_ns {
                samples.push(shm::monotonic_ns().saturating_sub(produced) as f64 / 1e6);
            }
        }
    }
    Ok(serde_json::json!({
        "watcher": mode.label(),
        "idle_wakeups_per_second": wakeups as f64 / seconds,
        "idle_cpu_percent": cpu / seconds * 100.0,
        "publish_to_readable_ms": Summary::of(&mut samples),
    }))
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("framelane-bench-{}-{name}", std::process::id()))
}

fn gui_latency(
    exe: &Path,
    w: u32,
    h: u32,
    rate: f64,
    poll_ms: u32,
    seconds: f64,
) -> anyhow::Result<serde_json::Value> {
    let run = unique_run("gui");
    let _producer = spawn_producer(exe, &run, &format!("{w}x{h}"), rate, None, false)?;
    attach_when_ready(&run)?;
    let stats = temp_path("gui-stats.json");
    let status = Command::new(exe)
        .args([
            "gui",
            "--run",
            &run,
            "--poll-interval-ms",
            &poll_ms.to_string(),
        ])
        .args([
            "--exit-after-ms",
            &((seconds * 1000.0) as u64 + 1500).to_string(),
        ])
        .arg("--stats-json")
        .arg(&stats)
        .stdout(Stdio::null())
        .status()
        .context("starting the GUI")?;
    if !status.success() {
        bail!("the GUI exited with {status}");
    }
    let text =
        std::fs::read_to_string(&stats).with_context(|| format!("reading {}", stats.display()))?;
    let _ = std::fs::remove_file(&stats);
    Ok(serde_json::from_str(&text)?)
}

fn producer_rate(exe: &Path, attached: &str, seconds: f64) -> anyhow::Result<f64> {
    let run = unique_run("slowdown");
    let mut gui = None;
    if attached == "GUI" {
        gui = Some(
            Command::new(exe)
                .args([
                    "gui",
                    "--run",
                    &run,
                    "--exit-after-ms",
                    &((seconds * 1000.0) as u64 + 4000).to_string(),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting the GUI")?,
        );
        // Let the window come up and start polling for the run before the producer starts.
        std::thread::sleep(Duration::from_millis(1500));
    }
    let mut producer = spawn_producer(exe, &run, "640x480", 0.0, Some(seconds), true)?;
    let reader_thread = (attached == "reader at 60 Hz").then(|| {
        let run = run.clone();
        std::thread::spawn(move || -> anyhow::Result<()> {
            let mut reader = attach_when_ready(&run)?;
            let g = reader.geometry();
            let mut buf = vec![0u8; g.frame_bytes()];
            while !matches!(
                reader.writer_status(),
                framelane_core::fastlane::WriterStatus::Gone { .. }
            ) {
                reader.read_newest(&mut buf, g.row_stride)?;
                std::thread::sleep(Duration::from_micros(16_667));
            }
            Ok(())
        })
    });
    let mut output = Vec::new();
    if let Some(mut stdout) = producer.0.stdout.take() {
        std::io::Read::read_to_end(&mut stdout, &mut output)
            .context("reading the producer's report")?;
    }
    drop(producer);
    if let Some(thread) = reader_thread {
        let _ = thread.join();
    }
    if let Some(mut gui) = gui {
        let _ = gui.wait();
    }
    let report: serde_json::Value =
        serde_json::from_slice(&output).context("reading the producer's report")?;
    report["steps_per_second"]
        .as_f64()
        .context("the producer's report has no steps_per_second")
}
