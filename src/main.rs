//! The `framelane` command: the GUI (default), the demo producer, fast-lane tools, benchmarks.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

use framelane::demo::{self, DemoConfig};
use framelane::{bench, ui};
use framelane_core::daemon;
use framelane_core::fastlane::{self, PixelFormat};

/// Live frames and telemetry from RL workers, robots and camera rigs.
#[derive(Parser, Debug)]
#[command(name = "framelane", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    gui: GuiArgs,
    /// Log lines as text (for people) or JSON (one object per line, for services and log
    /// collectors); FRAMELANE_LOG sets the filter.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// CA certificate (PEM) to verify a daemon that serves TLS with (`serve --tls-cert`):
    /// every connection of this command (--connect, health, proxy, rig clip listing) then
    /// speaks TLS. Also FRAMELANE_TLS_CA.
    #[arg(long, global = true, env = "FRAMELANE_TLS_CA", value_name = "FILE")]
    tls_ca: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Open the window (the default when no command is given).
    Gui(GuiArgs),
    /// Publish a moving test pattern with HUD values into a fast-lane segment.
    Demo(DemoArgs),
    /// Inspect and tidy fast-lane segments in shared memory.
    #[command(subcommand)]
    Fastlane(FastlaneCommand),
    /// Run the telemetry daemon headless: gRPC ingest (framelane.v1 and MOSAIC's trainer API)
    /// into SQLite, with storage profiles and frame gating.
    Serve(ServeArgs),
    /// Encode a folder of PNG/JPEG frames, or raw frames on stdin, into a video file.
    Encode(EncodeArgs),
    /// Analyse an episode video: scene cuts, faces and tracks, exported frames and crops.
    Analyze(AnalyzeArgs),
    /// Recording rig: cameras encode into a pre-roll ring; a trigger saves a clip per camera
    /// from before to after it. Without a subcommand, runs headless until SIGINT/SIGTERM.
    Rig(RigArgs),
    /// Measure speed and print figures (optionally as JSON).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Ask a running daemon whether it is healthy; prints its Health reply as JSON (exit 1 when
    /// it cannot be reached or says it is not healthy).
    Health(HealthArgs),
    /// Run a worker that prints one JSON object per step or episode (MOSAIC's JSONL format) and
    /// forward its steps, episodes and frames; exits with the worker's status.
    Proxy(ProxyArgs),
}

#[derive(Args, Debug)]
struct HealthArgs {
    /// The daemon.
    #[arg(long, default_value = "127.0.0.1:50551", value_name = "HOST:PORT")]
    target: std::net::SocketAddr,
    /// Bearer token for the daemon (also FRAMELANE_TOKEN).
    #[arg(long, env = "FRAMELANE_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Args, Debug)]
struct ProxyArgs {
    /// The daemon (MOSAIC's flag).
    #[arg(long, default_value = "127.0.0.1:50551", value_name = "HOST:PORT")]
    target: std::net::SocketAddr,
    /// Run the worker's lines belong to.
    #[arg(long, value_name = "RUN")]
    run_id: String,
    /// Agent of lines that name none.
    #[arg(long, default_value = "agent_1", value_name = "ID")]
    agent_id: String,
    /// Worker id sent with every line (default: the line's; registers as proxy-<pid>).
    #[arg(long, value_name = "ID")]
    worker_id: Option<String>,
    /// Bearer token for the daemon (also FRAMELANE_TOKEN).
    #[arg(long, env = "FRAMELANE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Do not publish the lines' frames to the fast lane.
    #[arg(long)]
    no_fast_lane: bool,
    /// Also write the final report (what was forwarded, what was not and why) as JSON here.
    #[arg(long, value_name = "FILE")]
    report_json: Option<PathBuf>,
    /// The worker's command and its arguments, after --.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<std::ffi::OsString>,
}

#[derive(Args, Debug, Clone)]
struct RigArgs {
    /// The rig's configuration (cameras, recording).
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Print the rig's status this often while it runs (0: never).
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    status_interval_s: u64,
    /// Open the full-screen kiosk (previews, trigger button, clips) instead of running headless.
    #[arg(long)]
    kiosk: bool,
    /// Bearer token of the rig's gRPC API and of the daemon it lists clips with (also
    /// FRAMELANE_TOKEN).
    #[arg(long, env = "FRAMELANE_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    #[command(subcommand)]
    action: Option<RigAction>,
}

#[derive(Subcommand, Debug, Clone)]
enum RigAction {
    /// Trigger a clip on the rig running with this configuration (its control socket), or on
    /// the rig whose gRPC API listens at --addr.
    Trigger {
        /// The rig's gRPC address (recording.grpc_listen), on this or another machine.
        #[arg(long, value_name = "HOST:PORT")]
        addr: Option<std::net::SocketAddr>,
        /// Who triggers, for the rig's log.
        #[arg(long, default_value = "cli")]
        source: String,
    },
    /// Print the running rig's status as JSON (from its control socket, or its gRPC API at
    /// --addr).
    Status {
        #[arg(long, value_name = "HOST:PORT")]
        addr: Option<std::net::SocketAddr>,
    },
}

#[derive(Args, Debug, Clone)]
struct AnalyzeArgs {
    /// Episode id written into the manifests.
    #[arg(long, value_name = "ID")]
    ep_id: String,
    /// The episode video (any container and codec FFmpeg reads).
    #[arg(long, value_name = "FILE")]
    video: PathBuf,
    /// Output folder for the manifests, frames and crops.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Analyse every STRIDE-th frame.
    #[arg(long, default_value_t = 6)]
    stride: u64,
    /// Signature distance (0..1] at which a frame starts a new scene.
    #[arg(long, default_value_t = 0.35)]
    scene_threshold: f64,
    /// Shortest scene in frames: a cut closer than this to the previous one is ignored.
    #[arg(long, default_value_t = 6)]
    min_scene_len: u64,
    /// Frames after a tracker reset before a cut may reset it again (cuts are still recorded).
    #[arg(long, default_value_t = 24)]
    scene_cut_cooldown: u64,
    /// Frames after a cut analysed densely, whatever the stride.
    #[arg(long, default_value_t = 3)]
    scene_warmup: u64,
    /// A track unseen for more than this many frames ends.
    #[arg(long, default_value_t = 30)]
    max_gap: u64,
    /// ... or for more than this many seconds (takes precedence over --max-gap).
    #[arg(long, value_name = "SECONDS")]
    max_gap_sec: Option<f64>,
    /// Tracks with fewer detections are dropped on export.
    #[arg(long, default_value_t = 3)]
    min_track_length: u32,
    /// Most crops saved per track.
    #[arg(long, default_value_t = 8)]
    track_sample_limit: u32,
    /// Save every analysed frame as JPEG under OUT/frames.
    #[arg(long)]
    save_frames: bool,
    /// Save face crops (up to --track-sample-limit per track) under OUT/crops.
    #[arg(long)]
    save_crops: bool,
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u8).range(1..=100))]
    jpeg_quality: u8,
    /// Where the DNN detector runs: auto (CUDA when OpenCV has it) or cpu.
    #[arg(long, default_value = "auto")]
    device: String,
    /// A YuNet ONNX face model: the DNN detector instead of the Haar cascade.
    #[arg(long, value_name = "FILE")]
    face_model: Option<PathBuf>,
    /// Haar cascade file (default: opencv-data's frontal face cascade).
    #[arg(long, value_name = "FILE")]
    cascade: Option<PathBuf>,
    /// Width frames are scaled to for detection (0: full size).
    #[arg(long, default_value_t = 640)]
    detect_width: u32,
    /// Start over even when OUT holds an interrupted run of the same video.
    #[arg(long)]
    restart: bool,
    /// Progress as one JSON object per line on stdout instead of a bar on stderr.
    #[arg(long, conflicts_with = "quiet")]
    progress_json: bool,
    #[arg(long)]
    quiet: bool,
}

#[derive(Args, Debug, Clone)]
struct EncodeArgs {
    /// Folder of PNG/JPEG frames, encoded in file-name order.
    #[arg(long, value_name = "DIR", conflicts_with = "raw")]
    input_dir: Option<PathBuf>,
    /// Raw frames of this size (WIDTHxHEIGHT), read from --raw-file or stdin.
    #[arg(long, value_name = "WxH")]
    raw: Option<String>,
    /// Layout of raw frames: rgb24, rgba, bgra or gray.
    #[arg(long, default_value = "rgb24", requires = "raw")]
    raw_format: String,
    /// File of raw frames (default: stdin).
    #[arg(long, value_name = "FILE", requires = "raw")]
    raw_file: Option<PathBuf>,
    /// Video file to write.
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// Codec family: h264 or av1 (the encoder is probed: hardware first).
    #[arg(long, default_value = "h264")]
    codec: String,
    /// Constant rate factor (default 23 for h264, 35 for av1).
    #[arg(long, conflicts_with = "bitrate_kbps")]
    crf: Option<u32>,
    /// Target bitrate in kbit/s instead of a CRF.
    #[arg(long)]
    bitrate_kbps: Option<u32>,
    /// Encoder preset (default: veryfast for x264, 10 for SVT-AV1, p4 for NVENC).
    #[arg(long)]
    preset: Option<String>,
    /// Encoder tuning (x264: zerolatency, film, animation, ...).
    #[arg(long)]
    tune: Option<String>,
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// Frames between keyframes (default: one second).
    #[arg(long)]
    gop: Option<u32>,
    /// Encoder pixel format.
    #[arg(long, default_value = "yuv420p")]
    pixel_format: String,
    /// Encoder threads (0: the encoder decides).
    #[arg(long, default_value_t = 0)]
    threads: u32,
    /// Threads for the RGB to YUV conversion.
    #[arg(long, default_value_t = 1)]
    convert_threads: u32,
    /// Container while writing: mp4 (fragmented) or mkv.
    #[arg(long, default_value = "mp4")]
    container: String,
    /// Keep the fragmented MP4 instead of rewriting it as a fast-start MP4 at the end.
    #[arg(long)]
    no_faststart: bool,
    /// Never use this encoder (FFmpeg name); may be given several times.
    #[arg(long = "disable-encoder", value_name = "NAME")]
    disable_encoder: Vec<String>,
    /// Progress as one JSON object per line on stdout instead of a bar on stderr.
    #[arg(long, conflicts_with = "quiet")]
    progress_json: bool,
    #[arg(long)]
    quiet: bool,
}

#[derive(Args, Debug, Clone)]
struct ServeArgs {
    /// Where the database and kept frames live (default: the platform's data directory).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on; anything but loopback needs --token and TLS (or
    /// --allow-plaintext).
    #[arg(long, default_value = "127.0.0.1:50551")]
    listen: std::net::SocketAddr,
    /// Bearer token clients must send (also FRAMELANE_TOKEN).
    #[arg(long, env = "FRAMELANE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Serve TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Listen beyond loopback without TLS (a trusted network only: the token travels in clear).
    #[arg(long, conflicts_with = "tls_cert")]
    allow_plaintext: bool,
    /// Storage profile file overriding the built-ins (default: ~/.config/framelane/profiles.yaml if present).
    #[arg(long, value_name = "FILE")]
    profiles: Option<PathBuf>,
    /// Commit after this many rows ...
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    batch_rows: u32,
    /// ... or after this many milliseconds, whichever comes first.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(0..=60_000))]
    flush_ms: u32,
    /// Most steps waiting for the store writer; publishers wait beyond it.
    #[arg(long, default_value_t = 16_384, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    queue: u32,
    /// The daemon's memory ceiling: queued steps and frames and open video encoders draw from
    /// it; past it frames are shed or their workers wait, by profile (e.g. 512MiB, 2GiB; at
    /// least 16MiB).
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = parse_memory_limit)]
    memory_limit: u64,
    /// Serve the pipeline figures for Prometheus at http://ADDR/metrics (e.g. 127.0.0.1:9551).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
}

#[derive(Args, Debug, Clone)]
struct GuiArgs {
    /// Run to show when the window opens (default: the built-in demo run).
    #[arg(long)]
    run: Option<String>,
    /// Do not start the built-in demo producer.
    #[arg(long)]
    no_demo: bool,
    /// Demo frame size, WIDTHxHEIGHT.
    #[arg(long, default_value = "640x480", value_parser = parse_size)]
    demo_size: (u32, u32),
    /// Demo frames per second.
    #[arg(long, default_value_t = 60.0)]
    demo_rate: f64,
    /// Load the QML, render one frame and exit non-zero on any QML error or missing module.
    #[arg(long)]
    smoke_test: bool,
    /// Quit after this many milliseconds.
    #[arg(long, value_name = "MS")]
    exit_after_ms: Option<u64>,
    /// Quit as soon as this file exists (for scripts and tests that wait for a condition).
    #[arg(long, value_name = "FILE")]
    quit_file: Option<PathBuf>,
    /// Save a screenshot of the window when it quits through --exit-after-ms or --quit-file.
    #[arg(long, value_name = "FILE")]
    screenshot: Option<PathBuf>,
    /// Write presentation statistics (latency, frames shown and skipped, HUD text) as JSON.
    #[arg(long, value_name = "FILE")]
    stats_json: Option<PathBuf>,
    /// Rewrite the statistics file this often while the window runs (needs --stats-json).
    #[arg(long, value_name = "MS", requires = "stats_json")]
    stats_interval_ms: Option<u64>,
    /// Window size, WIDTHxHEIGHT.
    #[arg(long, default_value = "1280x760", value_parser = parse_size)]
    window_size: (u32, u32),
    /// Open full screen (kiosks).
    #[arg(long)]
    fullscreen: bool,
    /// Show runs and plots from a running daemon instead of starting one in this process.
    #[arg(long, value_name = "ADDR")]
    connect: Option<std::net::SocketAddr>,
    /// Bearer token for a daemon that listens beyond loopback (also FRAMELANE_TOKEN).
    #[arg(long, env = "FRAMELANE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Address of the embedded daemon (loopback; port 0 picks a free one).
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:50551",
        conflicts_with = "connect"
    )]
    listen: std::net::SocketAddr,
    /// Start no telemetry daemon (fast lane only).
    #[arg(long, conflicts_with = "connect")]
    no_daemon: bool,
    /// Recorded run to plot when the window opens.
    #[arg(long, value_name = "RUN")]
    plot_run: Option<String>,
    /// Recorded run to open in the replay view when the window opens.
    #[arg(long, value_name = "RUN")]
    replay_run: Option<String>,
    /// The worker of that run whose episodes the replay view shows first (default: the run's
    /// first worker; the Replay tab switches between them).
    #[arg(long, value_name = "WORKER", requires = "replay_run")]
    replay_worker: Option<String>,
    /// Output folder of `framelane analyze` to open in the Replay tab when the window opens.
    #[arg(long, value_name = "DIR")]
    analysis: Option<PathBuf>,
    /// A rig clip the store lists (its id, `clip-...`) to open in the Replay tab when the
    /// window opens; `--play-clip` also plays it.
    #[arg(long, value_name = "CLIP")]
    replay_clip: Option<String>,
    #[arg(long, requires = "replay_clip")]
    play_clip: bool,
    /// Run the recording rig of this rig.yaml and show it as a kiosk in the window (what
    /// `framelane rig --kiosk` opens).
    #[arg(long, value_name = "FILE")]
    rig_config: Option<PathBuf>,
    /// Data directory of the embedded daemon, and of replay (default: the platform's data
    /// directory; with --connect, replay needs it given).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Sample frames on a GUI-thread timer of this period instead of at every rendered frame
    /// (the reference design polls every 16 ms; for comparisons). 0: frame cadence.
    #[arg(long, value_name = "MS", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1000))]
    poll_interval_ms: u32,
    /// Render the live view at most this many frames a second (the HUD shows the cap).
    #[arg(long, value_name = "FPS", value_parser = clap::value_parser!(u32).range(1..=1000))]
    fps_cap: Option<u32>,
    /// Show the daemon's kept frames even when the run has a fast-lane segment (the window's
    /// "Shared memory" switch, off).
    #[arg(long)]
    no_shared_memory: bool,
    /// Ask the shown run's producer, over the daemon's control stream, to publish at most this
    /// many frames a second (0: lift a cap).
    #[arg(long, value_name = "HZ", value_parser = clap::value_parser!(u32).range(0..=1000))]
    ask_rate: Option<u32>,
    /// Ask the producer to slow to the display's rate after 3 s of skipped frames.
    #[arg(long)]
    auto_slow: bool,
    /// Open with the metrics panel shown.
    #[arg(long)]
    show_metrics: bool,
    /// Serve the embedded daemon's figures for Prometheus at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
}

#[derive(Args, Debug)]
struct DemoArgs {
    /// Run id to publish under.
    #[arg(long, default_value = "demo")]
    run: String,
    /// Frame size, WIDTHxHEIGHT.
    #[arg(long, default_value = "640x480", value_parser = parse_size)]
    size: (u32, u32),
    /// Pixel format: rgb, rgba or bgra.
    #[arg(long, default_value = "rgb", value_parser = parse_format)]
    format: PixelFormat,
    /// Frames per second (0: as fast as possible).
    #[arg(long, default_value_t = 60.0)]
    rate: f64,
    /// Stop after this many frames.
    #[arg(long)]
    frames: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    seconds: Option<f64>,
    /// Slots in the ring.
    #[arg(long, default_value_t = 4)]
    capacity: u32,
    /// Print the achieved rate as JSON when done.
    #[arg(long)]
    report_json: bool,
}

#[derive(Subcommand, Debug)]
enum FastlaneCommand {
    /// List fast-lane segments (framelane and MOSAIC) with size, age and writer state.
    Ls {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one run's segment header, writer state and newest frame.
    Inspect {
        /// Run id (or a segment path under /dev/shm).
        run: String,
        /// Print the header, writer state and newest frame's HUD as one JSON object (HUD floats
        /// also as their bit patterns, for exact comparisons).
        #[arg(long)]
        json: bool,
        /// Write the newest frame's pixels, rows tightly packed, to this file.
        #[arg(long, value_name = "FILE")]
        dump_frame: Option<PathBuf>,
    },
    /// Remove segments whose writer is gone.
    Clean,
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Fast-lane publish cost, cross-process latency, GUI latency and producer slowdown.
    Fastlane(bench::FastlaneBenchArgs),
    /// gRPC ingest into SQLite: steps/s beside raw inserts, ack latency, memory under a stall.
    Ingest(bench::IngestBenchArgs),
    /// The daemon's memory ceiling under a stalled store and many publishers of large frames,
    /// beside the same daemon without a ceiling.
    Memory(bench::MemoryBenchArgs),
    /// Video encoding from memory beside the ffmpeg tool, PNG-first route, enqueue latency.
    Encode(bench::EncodeBenchArgs),
    /// Replay: random seeks to exact frames, opening a run of a million steps.
    Replay(bench::ReplayBenchArgs),
    /// Episode analysis read loop beside decode-all and OpenCV grab/retrieve; scene detection.
    Analyze(bench::AnalyzeBenchArgs),
    /// Recording rig beside raw-frame deques + OpenCV VideoWriter: memory, CPU, disk, drops.
    Rig(bench::RigBenchArgs),
    /// The durable lane's fault harness: kill -9 the daemon during ingest, round after round;
    /// acknowledged steps lost, duplicates, integrity, playable recordings.
    Crash(bench::CrashBenchArgs),
}

fn parse_size(text: &str) -> Result<(u32, u32), String> {
    let (w, h) = text
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("{text:?} is not WIDTHxHEIGHT (for example 640x480)"))?;
    let parse = |v: &str, what: &str| {
        v.trim()
            .parse::<u32>()
            .ok()
            .filter(|n| *n > 0 && *n <= 16_384)
            .ok_or_else(|| {
                format!("{what} {v:?} in {text:?} must be a whole number from 1 to 16384")
            })
    };
    Ok((parse(w, "width")?, parse(h, "height")?))
}

fn parse_format(text: &str) -> Result<PixelFormat, String> {
    PixelFormat::parse(text)
        .ok_or_else(|| format!("{text:?} is not a pixel format (rgb, rgba or bgra)"))
}

/// Log lines on stderr, filtered by FRAMELANE_LOG; JSON lines carry the span (pipeline stage)
/// each event happened in.
fn init_logging(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("FRAMELANE_LOG").unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new("warn,framelane_core::encode::probe=info")
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    if let Some(path) = &cli.tls_ca {
        match std::fs::read(path) {
            Ok(pem) if String::from_utf8_lossy(&pem).contains("CERTIFICATE") => {
                framelane_core::ingest::client::set_client_tls_ca(Some(pem))
            }
            Ok(_) => {
                eprintln!(
                    "framelane: --tls-ca {}: no PEM CERTIFICATE block in it",
                    path.display()
                );
                return ExitCode::from(2);
            }
            Err(err) => {
                eprintln!("framelane: --tls-ca {}: {err}", path.display());
                return ExitCode::from(2);
            }
        }
    }
    if let Some(Command::Proxy(args)) = cli.command {
        return run_proxy(args);
    }
    let result = match cli.command {
        None => run_gui(cli.gui),
        Some(Command::Gui(args)) => run_gui(args),
        Some(Command::Demo(args)) => run_demo(args),
        Some(Command::Fastlane(cmd)) => run_fastlane(cmd),
        Some(Command::Serve(args)) => run_serve(args),
        Some(Command::Encode(args)) => run_encode(args),
        Some(Command::Analyze(args)) => run_analyze(args),
        Some(Command::Rig(args)) => run_rig(args),
        Some(Command::Bench(BenchCommand::Fastlane(args))) => bench::run_fastlane_bench(&args),
        Some(Command::Bench(BenchCommand::Ingest(args))) => bench::run_ingest_bench(&args),
        Some(Command::Bench(BenchCommand::Encode(args))) => bench::run_encode_bench(&args),
        Some(Command::Bench(BenchCommand::Memory(args))) => bench::run_memory_bench(&args),
        Some(Command::Bench(BenchCommand::Replay(args))) => bench::run_replay_bench(&args),
        Some(Command::Bench(BenchCommand::Analyze(args))) => bench::run_analyze_bench(&args),
        Some(Command::Bench(BenchCommand::Rig(args))) => bench::run_rig_bench(&args),
        Some(Command::Bench(BenchCommand::Crash(args))) => bench::run_crash_bench(&args),
        Some(Command::Health(args)) => run_health(args),
        Some(Command::Proxy(_)) => unreachable!("handled above"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("framelane: {}", describe(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each said once: many errors already quote their
/// source ("path: No such file or directory"), which the chain would repeat.
fn describe(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn run_gui(args: GuiArgs) -> anyhow::Result<()> {
    framelane_core::ingest::client::set_client_token(args.token.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let mut demo_thread = None;
    let published = Arc::new(std::sync::atomic::AtomicU64::new(0));
    // A producer rate cap asked for from the window, over the demo run's control stream.
    let rate_cap = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let run_id = match (&args.run, args.no_demo || args.smoke_test) {
        (Some(run), _) => run.clone(),
        (None, true) => String::new(),
        (None, false) => format!("demo-{}", std::process::id()),
    };
    if !ui::display_available() {
        bail!(ui::UiError::NoDisplay {
            program: program_name(),
            args: std::env::args().skip(1).collect::<Vec<_>>().join(" "),
        });
    }
    if args.run.is_none() && !args.no_demo && !args.smoke_test {
        let config = DemoConfig {
            run_id: run_id.clone(),
            width: args.demo_size.0,
            height: args.demo_size.1,
            format: PixelFormat::Rgba8,
            rate_hz: args.demo_rate,
            frames: None,
            duration: None,
            capacity: 4,
            published: Some(Arc::clone(&published)),
            rate_cap_hz: Some(Arc::clone(&rate_cap)),
        };
        let stop = Arc::clone(&stop);
        demo_thread = Some(
            std::thread::Builder::new()
                .name("demo-producer".into())
                .spawn(move || demo::run_demo(&config, &stop))
                .context("starting the built-in demo producer")?,
        );
    }
    // The embedded daemon lives as long as the window; a running one is used with --connect.
    let mut embedded = None;
    // The demo records only into this data directory's daemon, never into one found by chance.
    let mut own_daemon = false;
    // Replay reads the store directly: the embedded daemon's, or --data-dir's.
    let data_dir_for_replay = match (&args.data_dir, args.connect.is_some() || args.no_daemon) {
        (Some(dir), _) => dir.display().to_string(),
        (None, false) => daemon::default_data_dir().display().to_string(),
        (None, true) => String::new(),
    };
    let daemon_address = if let Some(address) = args.connect {
        address.to_string()
    } else if args.no_daemon || args.smoke_test {
        String::new()
    } else {
        let mut config = daemon::DaemonConfig::new(
            args.data_dir
                .clone()
                .unwrap_or_else(daemon::default_data_dir),
        );
        config.listen = args.listen;
        config.metrics = args.metrics;
        match daemon::Daemon::start(config) {
            Ok(d) => {
                let address = d.local_addr().to_string();
                if let Some(metrics) = d.metrics_addr() {
                    println!("framelane: metrics at http://{metrics}/metrics");
                }
                embedded = Some(d);
                own_daemon = true;
                address
            }
            Err(daemon::DaemonError::DataDir(daemon::LockError::Busy {
                holder:
                    daemon::LockHolder {
                        address: Some(address),
                        ..
                    },
                ..
            })) => {
                // The data directory's own daemon is running: show its runs instead of a second one.
                eprintln!("framelane: the data directory's daemon is already running at {address}; showing its runs");
                own_daemon = true;
                address.to_string()
            }
            Err(err) => {
                eprintln!("framelane: no embedded daemon ({err}); showing the one at 127.0.0.1:{} if it runs (use --connect ADDR or --no-daemon)", daemon::DEFAULT_PORT);
                format!("127.0.0.1:{}", daemon::DEFAULT_PORT)
            }
        }
    };
    // The built-in demo also records itself through the daemon, so every lane has data.
    let mut telemetry_thread = None;
    if demo_thread.is_some() && own_daemon {
        if let Ok(address) = daemon_address.parse::<std::net::SocketAddr>() {
            let (run, published, stop) = (run_id.clone(), published, Arc::clone(&stop));
            let spawned = std::thread::Builder::new()
                .name("demo-telemetry".into())
                .spawn(move || {
                    demo::stream_demo_telemetry(address, run, published, rate_cap, stop)
                });
            match spawned {
                Ok(thread) => telemetry_thread = Some(thread),
                Err(err) => eprintln!("framelane: the demo run is not recorded: {err}"),
            }
        }
    }
    let demo_recorded = telemetry_thread.is_some();
    let options = ui::AppOptions {
        initial_run_id: run_id.clone(),
        window_title: "framelane".into(),
        smoke_test: args.smoke_test,
        exit_after_ms: args.exit_after_ms.unwrap_or(0),
        screenshot_path: path_string(args.screenshot.as_ref()),
        stats_path: path_string(args.stats_json.as_ref()),
        stats_interval_ms: args.stats_interval_ms.unwrap_or(0),
        quit_file: path_string(args.quit_file.as_ref()),
        poll_interval_ms: args.poll_interval_ms,
        max_fps: args.fps_cap.unwrap_or(0),
        window_width: args.window_size.0,
        window_height: args.window_size.1,
        fullscreen: args.fullscreen,
        daemon_address,
        plot_run_id: args
            .plot_run
            .clone()
            .or_else(|| demo_recorded.then(|| run_id.clone()))
            .unwrap_or_default(),
        data_dir: data_dir_for_replay,
        replay_run_id: args
            .replay_run
            .clone()
            .or_else(|| demo_recorded.then(|| run_id.clone()))
            .unwrap_or_default(),
        replay_worker: args.replay_worker.clone().unwrap_or_default(),
        analysis_dir: args
            .analysis
            .as_ref()
            .map(|dir| dir.display().to_string())
            .unwrap_or_default(),
        replay_clip: args.replay_clip.clone().unwrap_or_default(),
        play_clip: args.play_clip,
        rig_config: args
            .rig_config
            .as_ref()
            .map(|path| path.display().to_string())
            .unwrap_or_default(),
        no_shared_memory: args.no_shared_memory,
        ask_rate_hz: args.ask_rate.map_or(-1, |hz| hz as i32),
        auto_slow: args.auto_slow,
        show_metrics: args.show_metrics,
    };
    let hint = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    let result = ui::run_gui(&options, &hint);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(thread) = telemetry_thread {
        match thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(message)) => eprintln!("framelane: the demo run was not recorded: {message}"),
            Err(_) => eprintln!("framelane: the demo's telemetry thread panicked"),
        }
    }
    if let Some(daemon) = embedded {
        daemon.shutdown();
    }
    if let Some(thread) = demo_thread {
        match thread.join() {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => eprintln!("framelane: built-in demo stopped: {err}"),
            Err(_) => eprintln!("framelane: built-in demo producer panicked"),
        }
    }
    result.map_err(Into::into)
}

fn daemon_config(args: &ServeArgs) -> anyhow::Result<daemon::DaemonConfig> {
    let mut config = daemon::DaemonConfig::new(
        args.data_dir
            .clone()
            .unwrap_or_else(daemon::default_data_dir),
    );
    config.listen = args.listen;
    config.token = args.token.clone().filter(|t| !t.is_empty());
    config.tls = args.tls_cert.clone().zip(args.tls_key.clone());
    config.allow_plaintext = args.allow_plaintext;
    config.profiles_file = args.profiles.clone().or_else(daemon::default_profiles_file);
    config.batch = framelane_core::store::BatchPolicy {
        max_rows: args.batch_rows as usize,
        max_delay: Duration::from_millis(u64::from(args.flush_ms)),
    };
    config.store_queue = args.queue as usize;
    config.memory_limit = args.memory_limit;
    config.metrics = args.metrics;
    Ok(config)
}

/// `--memory-limit`: a size with a binary unit, at least the budget's minimum.
fn parse_memory_limit(text: &str) -> Result<u64, String> {
    let bytes = framelane_core::budget::parse_size(text)?;
    let min = framelane_core::budget::MIN_LIMIT;
    if bytes < min {
        return Err(format!(
            "{text:?} is below the smallest ceiling, {} MiB",
            min >> 20
        ));
    }
    Ok(bytes)
}

type Signal = tokio::signal::unix::Signal;

/// A small runtime listening for SIGTERM and SIGINT (installed before anything starts, so
/// either means a clean stop from then on).
fn stop_signals() -> anyhow::Result<(tokio::runtime::Runtime, Signal, Signal)> {
    let signals = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal listener")?;
    let (term, int) = signals.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        Ok::<_, std::io::Error>((
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        ))
    })?;
    Ok((signals, term, int))
}

fn run_serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = daemon_config(&args)?;
    let data_dir = config.data_dir.clone();
    // Signal handlers first: once the address is printed, SIGTERM must mean a clean stop.
    let (signals, mut term, mut int) = stop_signals()?;
    let daemon = daemon::Daemon::start(config)?;
    // One line, so scripts that read the address read everything they need at once.
    let metrics = daemon
        .metrics_addr()
        .map(|m| format!("; metrics at http://{m}/metrics"))
        .unwrap_or_default();
    println!(
        "framelane serve: listening on {} (data in {}{metrics})",
        daemon.local_addr(),
        data_dir.display()
    );
    signals.block_on(async {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    });
    eprintln!("framelane serve: stopping; committing what is in flight");
    daemon.shutdown();
    Ok(())
}

fn run_health(args: HealthArgs) -> anyhow::Result<()> {
    framelane_core::ingest::client::set_client_token(args.token.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a runtime")?;
    let reply = runtime.block_on(async {
        let mut client = tokio::time::timeout(
            Duration::from_secs(10),
            framelane_core::ingest::client::connect(args.target),
        )
        .await
        .map_err(|_| anyhow::anyhow!("daemon at {} not reachable within 10 s", args.target))?
        .with_context(|| format!("daemon at {} not reachable", args.target))?;
        client
            .health(framelane_core::ingest::proto::framelane_v1::HealthRequest {})
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| anyhow::anyhow!("Health at {}: {}", args.target, s.message()))
    })?;
    let metrics: std::collections::BTreeMap<_, _> = reply.metrics.iter().collect();
    println!(
        "{}",
        serde_json::json!({
            "healthy": reply.healthy,
            "problems": reply.problems,
            "pid": reply.pid,
            "listen_address": reply.listen_address,
            "started_unix_ns": reply.started_unix_ns,
            "queue_depth": reply.queue_depth,
            "queue_capacity": reply.queue_capacity,
            "metrics": metrics,
        })
    );
    if !reply.healthy {
        bail!(
            "the daemon at {} says it is not healthy: {}",
            args.target,
            reply.problems.join("; ")
        );
    }
    Ok(())
}

/// Runs the proxy; the exit code is the worker's (1 when the proxy itself could not run it).
fn run_proxy(args: ProxyArgs) -> ExitCode {
    let outcome =
        (|| -> anyhow::Result<(std::process::ExitStatus, framelane::proxy::ProxyReport)> {
            fastlane::validate_run_id(&args.run_id).context("--run-id")?;
            framelane_core::ingest::client::set_client_token(args.token.clone());
            let config = framelane::proxy::ProxyConfig {
                target: args.target,
                run_id: args.run_id.clone(),
                agent_id: args.agent_id.clone(),
                worker_id: args.worker_id.clone(),
                fast_lane: !args.no_fast_lane,
                command: args.command.clone(),
            };
            let (status, report) = framelane::proxy::run(&config)?;
            if let Some(path) = &args.report_json {
                std::fs::write(path, serde_json::to_string_pretty(&report)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok((status, report))
        })();
    match outcome {
        Ok((status, report)) => {
            eprintln!("framelane proxy: worker {status}; {}", report.summary());
            let code = framelane::proxy::exit_code(status).unwrap_or(1);
            ExitCode::from(code.clamp(0, 255) as u8)
        }
        Err(err) => {
            eprintln!("framelane proxy: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn path_string(path: Option<&PathBuf>) -> String {
    path.map(|p| p.display().to_string()).unwrap_or_default()
}

fn run_demo(args: DemoArgs) -> anyhow::Result<()> {
    if !(args.rate >= 0.0 && args.rate.is_finite()) {
        bail!(
            "--rate {} must be a number of frames per second, 0 or more",
            args.rate
        );
    }
    let duration = match args.seconds {
        Some(s) if !(s > 0.0 && s.is_finite()) => bail!("--seconds {s} must be a positive number"),
        Some(s) => Some(Duration::from_secs_f64(s)),
        None => None,
    };
    let config = DemoConfig {
        run_id: args.run.clone(),
        width: args.size.0,
        height: args.size.1,
        format: args.format,
        rate_hz: args.rate,
        frames: args.frames,
        duration,
        capacity: args.capacity,
        published: None,
        rate_cap_hz: None,
    };
    let stop = AtomicBool::new(false);
    if !args.report_json {
        eprintln!(
            "framelane demo: publishing run {:?} at {}x{} {} ({}); Ctrl-C to stop",
            args.run,
            args.size.0,
            args.size.1,
            args.format,
            if args.rate > 0.0 {
                format!("{} Hz", args.rate)
            } else {
                "unthrottled".into()
            }
        );
    }
    let report =
        demo::run_demo(&config, &stop).with_context(|| format!("demo run {:?}", args.run))?;
    if args.report_json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}

fn run_fastlane(cmd: FastlaneCommand) -> anyhow::Result<()> {
    match cmd {
        FastlaneCommand::Ls { json } => {
            let runs = fastlane::list_segments()?;
            if json {
                println!("{}", fastlane::segments_json(&runs));
                return Ok(());
            }
            if runs.is_empty() {
                println!(
                    "no fast-lane segments in {}",
                    fastlane::shm::segment_dir().display()
                );
                return Ok(());
            }
            println!(
                "{:<32} {:<9} {:>14} {:>10} {:>8} {:>10}  state",
                "run", "kind", "frame", "size", "age", "frames"
            );
            for run in &runs {
                let frame = run
                    .geometry
                    .map(|g| format!("{}x{} {}", g.width, g.height, g.format))
                    .unwrap_or_else(|| "-".into());
                println!(
                    "{:<32} {:<9} {:>14} {:>10} {:>7.0}s {:>10}  {}",
                    run.run_id,
                    run.kind.label(),
                    frame,
                    format!("{:.1} MiB", run.bytes as f64 / 1_048_576.0),
                    run.age.as_secs_f64(),
                    run.frames_published,
                    run.state_label()
                );
            }
            Ok(())
        }
        FastlaneCommand::Inspect {
            run,
            json,
            dump_frame,
        } => inspect(&run, json, dump_frame.as_deref()),
        FastlaneCommand::Clean => {
            let removed = fastlane::clean_stale_segments()?;
            if removed.is_empty() {
                println!("no stale segments");
            }
            for path in removed {
                println!("removed {}", path.display());
            }
            Ok(())
        }
    }
}

fn inspect(run: &str, json: bool, dump_frame: Option<&std::path::Path>) -> anyhow::Result<()> {
    let mut reader = if run.starts_with('/') {
        fastlane::FastLaneReader::open(std::path::Path::new(run))?
    } else {
        fastlane::FastLaneReader::attach(run)?
    };
    let g = reader.geometry();
    let mut buf = vec![0u8; g.frame_bytes()];
    let newest = reader.read_newest(&mut buf, g.width as usize * g.format.bytes_per_pixel())?;
    if let (Some(path), fastlane::ReadOutcome::Frame(_)) = (dump_frame, &newest) {
        std::fs::write(path, &buf).with_context(|| format!("writing {}", path.display()))?;
    }
    if json {
        let frame = match &newest {
            fastlane::ReadOutcome::Frame(meta) => serde_json::json!({
                "frame_number": meta.frame_number,
                "episode": meta.hud.episode,
                "step": meta.hud.step,
                "reward": meta.hud.reward,
                "reward_bits": meta.hud.reward.to_bits().to_string(),
                "episodic_return": meta.hud.episodic_return,
                "episodic_return_bits": meta.hud.episodic_return.to_bits().to_string(),
                "steps_per_second": meta.hud.steps_per_second,
            }),
            _ => serde_json::Value::Null,
        };
        let report = serde_json::json!({
            "run_id": reader.run_id(),
            "segment": reader.path().display().to_string(),
            "kind": reader.kind().label(),
            "width": g.width,
            "height": g.height,
            "format": g.format.name(),
            "row_stride": g.row_stride,
            "published": reader.head(),
            "woken_by_writer": reader.woken_by_writer(),
            "writer": format!("{:?}", reader.writer_status()),
            "newest": frame,
        });
        println!("{report}");
        return Ok(());
    }
    println!("run:        {}", reader.run_id());
    println!(
        "segment:    {} ({})",
        reader.path().display(),
        reader.kind().label()
    );
    println!(
        "frame:      {}x{} {} (row stride {} bytes)",
        g.width, g.height, g.format, g.row_stride
    );
    println!("published:  {} frames", reader.head());
    println!("writer:     {:?}", reader.writer_status());
    println!(
        "wake-ups:   {}",
        if reader.woken_by_writer() {
            "the writer wakes readers"
        } else {
            "readers poll"
        }
    );
    match newest {
        fastlane::ReadOutcome::Frame(meta) => {
            println!(
                "newest:     frame {} episode {} step {}",
                meta.frame_number, meta.hud.episode, meta.hud.step
            );
            println!(
                "hud:        reward {:.4} return {:.3} producer {:.1} steps/s",
                meta.hud.reward, meta.hud.episodic_return, meta.hud.steps_per_second
            );
            if let Some(ns) = meta.producer_mono_ns {
                println!(
                    "age:        {:.2} ms",
                    fastlane::shm::monotonic_ns().saturating_sub(ns) as f64 / 1e6
                );
            }
        }
        other => println!("newest:     {other:?}"),
    }
    Ok(())
}

fn run_encode(args: EncodeArgs) -> anyhow::Result<()> {
    use framelane_core::encode::dataset::{self, DatasetInput, ProgressStyle};
    use framelane_core::encode::{CodecFamily, Container, EncoderSettings, Quality};
    let family = CodecFamily::parse(&args.codec)?;
    let mut settings = EncoderSettings::for_family(family);
    if let Some(crf) = args.crf {
        settings.quality = Quality::Crf(crf);
    }
    if let Some(kbps) = args.bitrate_kbps {
        settings.quality = Quality::BitrateKbps(kbps);
    }
    settings.preset = args.preset;
    settings.tune = args.tune;
    settings.fps = args.fps;
    settings.gop = args.gop;
    settings.pixel_format = args.pixel_format;
    settings.threads = args.threads;
    settings.convert_threads = args.convert_threads;
    settings.container = Container::parse(&args.container)?;
    settings.faststart_on_finish = !args.no_faststart;
    settings.disabled_encoders = args.disable_encoder;
    let input = match (args.input_dir, args.raw) {
        (Some(dir), None) => DatasetInput::ImageDir(dir),
        (None, Some(size)) => {
            let (width, height) = dataset::parse_size(&size)?;
            DatasetInput::Raw {
                path: args.raw_file,
                width,
                height,
                format: dataset::parse_pixel_format(&args.raw_format)?,
            }
        }
        _ => bail!("give the frames with --input-dir DIR or --raw WIDTHxHEIGHT"),
    };
    let style = if args.progress_json {
        ProgressStyle::Json
    } else if args.quiet {
        ProgressStyle::Quiet
    } else {
        ProgressStyle::Bar
    };
    let outcome = dataset::encode_dataset(&input, &args.output, &settings, style)?;
    if style != ProgressStyle::Json {
        eprintln!(
            "{}: {} frames with {} in {:.1} s ({:.1} frames/s), {} bytes",
            args.output.display(),
            outcome.frames,
            outcome.encoder,
            outcome.seconds,
            outcome.frames as f64 / outcome.seconds.max(1e-9),
            outcome.bytes
        );
    }
    Ok(())
}

fn run_rig(args: RigArgs) -> anyhow::Result<()> {
    use framelane_rig::{rig, Rig, RigConfig};
    framelane_core::ingest::client::set_client_token(args.token.clone());
    let remote = match &args.action {
        Some(RigAction::Trigger {
            addr: Some(addr),
            source,
        }) => Some((*addr, Some(source.clone()))),
        Some(RigAction::Status { addr: Some(addr) }) => Some((*addr, None)),
        _ => None,
    };
    if let Some((addr, trigger)) = remote {
        return rig_over_grpc(addr, trigger);
    }
    let Some(path) = args.config else {
        bail!("give the rig's configuration with --config FILE (see docs/rig.md), or the rig's gRPC address with --addr");
    };
    let mut config = RigConfig::load(&path)?;
    if let Some(token) = args.token.clone().filter(|t| !t.is_empty()) {
        config.token = Some(token);
    }
    if args.kiosk && args.action.is_none() {
        let mut gui =
            Cli::try_parse_from(["framelane", "--no-demo", "--no-daemon", "--fullscreen"])?.gui;
        gui.rig_config = Some(path);
        return run_gui(gui);
    }
    match args.action {
        Some(RigAction::Trigger { .. }) => {
            println!("{}", rig::send_command(&config.output_dir(), "trigger")?);
            return Ok(());
        }
        Some(RigAction::Status { .. }) => {
            println!("{}", rig::send_command(&config.output_dir(), "status")?);
            return Ok(());
        }
        None => {}
    }
    let (signals, mut term, mut int) = stop_signals()?;
    let output = config.output_dir();
    let rig = Rig::start(config)?;
    println!(
        "framelane rig: {} camera(s) recording into {}; trigger with `{} rig trigger --config {}` or a line on stdin",
        rig.status().cameras.len(),
        output.display(),
        program_name(),
        path.display()
    );
    if let Some(addr) = rig.grpc_addr() {
        println!("framelane rig: gRPC API (framelane.v1.Rig) on {addr}");
    }
    {
        let rig = rig.trigger_handle();
        std::thread::Builder::new()
            .name("rig-stdin".into())
            .spawn(move || {
                use std::io::BufRead;
                for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                    if matches!(line.trim(), "" | "t" | "trigger") && !rig.trigger() {
                        eprintln!("framelane rig: trigger refused: the trigger queue is full");
                    }
                }
            })
            .context("starting the stdin reader")?;
    }
    let interval = args.status_interval_s;
    signals.block_on(async {
        let mut tick = tokio::time::interval(Duration::from_secs(interval.max(1)));
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = tick.tick() => {
                    if interval > 0 {
                        let s = rig.status();
                        let cams: Vec<String> = s.cameras.iter().map(|c| {
                            format!("{} {} ({} captured, {} dropped, {:.1} s ring)", c.name, c.state, c.captured, c.dropped, c.ring_seconds)
                        }).collect();
                        println!("framelane rig: {}; {} clips, {} failed, {} MB free", cams.join("; "), s.clips_written, s.clips_failed, s.disk_free_mb);
                    }
                }
            }
        }
    });
    eprintln!("framelane rig: stopping; writing pending clips");
    rig.stop();
    Ok(())
}

/// `framelane rig trigger|status --addr`: the rig's gRPC API.
fn rig_over_grpc(addr: std::net::SocketAddr, trigger: Option<String>) -> anyhow::Result<()> {
    use framelane_core::ingest::proto::framelane_v1 as v1;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a runtime")?;
    runtime.block_on(async {
        let mut client = framelane_core::ingest::client::connect_rig(addr)
            .await
            .with_context(|| format!("no rig API at {addr}"))?;
        match trigger {
            Some(source) => {
                let reply = client
                    .trigger(v1::TriggerRequest { source })
                    .await
                    .map_err(|s| anyhow::anyhow!("{addr}: trigger refused: {}", s.message()))?;
                println!("ok trigger {}", reply.into_inner().triggers);
            }
            None => {
                let reply = client
                    .get_rig_status(v1::RigStatusRequest {})
                    .await
                    .map_err(|s| anyhow::anyhow!("{addr}: status refused: {}", s.message()))?;
                println!("{}", reply.into_inner().json);
            }
        }
        Ok(())
    })
}

fn run_analyze(args: AnalyzeArgs) -> anyhow::Result<()> {
    use framelane_analyze::progress::ProgressStyle;
    use framelane_analyze::{AnalyzeOptions, Device};
    let mut options = AnalyzeOptions::new(args.ep_id, args.video, args.out);
    options.stride = args.stride;
    options.scene_threshold = args.scene_threshold;
    options.min_scene_len = args.min_scene_len;
    options.scene_cut_cooldown = args.scene_cut_cooldown;
    options.scene_warmup = args.scene_warmup;
    options.max_gap = args.max_gap;
    options.max_gap_sec = args.max_gap_sec;
    options.min_track_length = args.min_track_length;
    options.track_sample_limit = args.track_sample_limit;
    options.save_frames = args.save_frames;
    options.save_crops = args.save_crops;
    options.jpeg_quality = args.jpeg_quality;
    options.device = Device::parse(&args.device)?;
    options.face_model = args.face_model;
    options.cascade = args.cascade;
    options.detect_width = args.detect_width;
    options.restart = args.restart;
    let style = if args.progress_json {
        ProgressStyle::Json
    } else if args.quiet {
        ProgressStyle::Quiet
    } else {
        ProgressStyle::Bar
    };
    let summary = framelane_analyze::analyze(&options, style)?;
    if style != ProgressStyle::Json {
        eprintln!(
            "{}: {} frames decoded, {} analysed, {} scene cuts ({} tracker resets), {} faces in {} tracks; {:.1} s; manifests in {}",
            summary.video,
            summary.frames_decoded,
            summary.frames.analysed,
            summary.scene_cuts,
            summary.scene.resets,
            summary.frames.detections,
            summary.tracks_kept,
            summary.stages.total_ms / 1e3,
            options.out.display()
        );
    }
    Ok(())
}

/// How the user started this program (for hints that name a command they can run).
fn program_name() -> String {
    std::env::args()
        .next()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "framelane".into())
}
