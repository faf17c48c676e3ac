//! The `framelane` command: the GUI (default), the demo producer, fast-lane tools, benchmarks.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use framelane::bench;

mod cli;

use cli::analyze::{run_analyze, AnalyzeArgs};
use cli::demo::{run_demo, DemoArgs};
use cli::encode::{run_encode, EncodeArgs};
use cli::fastlane::{run_fastlane, FastlaneCommand};
use cli::gui::{run_gui, GuiArgs};
use cli::proxy::{run_proxy, ProxyArgs};
use cli::rig::{run_rig, RigArgs};
use cli::serve::{run_health, run_serve, HealthArgs, ServeArgs};

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
    Gui(Box<GuiArgs>),
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
        Some(Command::Gui(args)) => run_gui(*args),
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
