//! `framelane gui` (the default command): the window, with an embedded daemon, a daemon
//! elsewhere (`--connect`) or none.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Args;

use framelane::demo::{self, DemoConfig};
use framelane::ui;
use framelane_core::daemon;
use framelane_core::fastlane::PixelFormat;

use super::tuning::DaemonTuning;
use super::{parse_size, program_name};

#[derive(Args, Debug, Clone)]
pub struct GuiArgs {
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
    /// The agent of that worker whose episodes and frames the replay view shows first
    /// (default: the first; the Replay tab switches between them in a multi-agent run).
    #[arg(long, value_name = "AGENT", requires = "replay_run")]
    replay_agent: Option<String>,
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
    pub rig_config: Option<PathBuf>,
    /// Data directory of the embedded daemon, and of replay (default: the platform's data
    /// directory; with --connect, replay needs it given).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The embedded daemon's settings, as `framelane serve` takes them (not with --connect or
    /// --no-daemon, which start none).
    #[command(flatten)]
    daemon: DaemonTuning,
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

pub fn run_gui(args: GuiArgs) -> anyhow::Result<()> {
    if let (Some(flag), true) = (
        args.daemon.first_given(),
        args.connect.is_some() || args.no_daemon,
    ) {
        bail!(
            "{flag} sets the embedded daemon, and with {} the window starts none: give it to the daemon it connects to (framelane serve {flag} ...)",
            if args.no_daemon { "--no-daemon" } else { "--connect" }
        );
    }
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
        args.daemon.apply(&mut config);
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
                if let Some(flag) = args.daemon.first_given() {
                    eprintln!("framelane: {flag} is not applied: the running daemon keeps the settings it was started with");
                }
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
        replay_agent: args.replay_agent.clone().unwrap_or_default(),
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

fn path_string(path: Option<&PathBuf>) -> String {
    path.map(|p| p.display().to_string()).unwrap_or_default()
}
