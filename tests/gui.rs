//! GUI end to end, with Qt in its own process on its main thread (harness = false): the real
//! QML window attaches to a demo producer process, renders, and a window grab is checked
//! against the producer's frame and HUD. Runs offscreen (software scene graph) and under Xvfb
//! (OpenGL, threaded render loop).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::wait_until;
use framelane::demo::DemoPattern;
use framelane_core::fastlane::{FastLaneReader, FrameGeometry, PixelFormat};

const EXE: &str = env!("CARGO_BIN_EXE_framelane");

struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        // SIGTERM so the producer removes its segment.
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// Runs the GUI until `ready` holds for its statistics (rewritten every 100 ms) or a generous
/// deadline passes, then has it quit through its quit file, which takes the final screenshot
/// and statistics. Returns the exit status and whether `ready` was seen.
fn run_gui_until(
    mut command: Command,
    stats_path: &Path,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> (ExitStatus, bool) {
    let quit = stats_path.with_extension("quit");
    let _ = std::fs::remove_file(&quit);
    let _ = std::fs::remove_file(stats_path);
    let mut child = command
        .arg("--stats-json")
        .arg(stats_path)
        .args(["--stats-interval-ms", "100", "--quit-file"])
        .arg(&quit)
        .spawn()
        .expect("start the GUI");
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut seen = false;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return (status, seen);
        }
        let stats: serde_json::Value = std::fs::read_to_string(stats_path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        if !stats.is_null() && ready(&stats) {
            seen = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::write(&quit, b"quit").expect("write the quit file");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return (status, seen);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            return (child.wait().expect("wait for the GUI"), seen);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("gui");
    std::fs::create_dir_all(&dir).expect("create artifact dir");
    dir
}

enum Display {
    Offscreen,
    Xvfb,
}

impl Display {
    fn name(&self) -> &'static str {
        match self {
            Display::Offscreen => "offscreen",
            Display::Xvfb => "xvfb",
        }
    }

    fn command(&self) -> Command {
        match self {
            Display::Offscreen => {
                let mut cmd = Command::new(EXE);
                cmd.env("QT_QPA_PLATFORM", "offscreen");
                cmd
            }
            Display::Xvfb => {
                let mut cmd = Command::new("xvfb-run");
                cmd.args(["-a", "-s", "-screen 0 1600x1000x24", EXE]);
                cmd.env_remove("QT_QPA_PLATFORM").env_remove("DISPLAY");
                cmd
            }
        }
    }
}

fn check(ok: bool, what: String, failures: &mut Vec<String>) {
    if ok {
        println!("  ok: {what}");
    } else {
        println!("  FAILED: {what}");
        failures.push(what);
    }
}

/// Reads a binary PPM (P6) as written by QImage.
fn read_ppm(path: &Path) -> (usize, usize, Vec<u8>) {
    let bytes = std::fs::read(path).expect("read screenshot");
    let mut fields = Vec::new();
    let mut pos = 0;
    while fields.len() < 4 {
        while bytes[pos].is_ascii_whitespace() {
            pos += 1;
        }
        let start = pos;
        while !bytes[pos].is_ascii_whitespace() {
            pos += 1;
        }
        fields.push(String::from_utf8_lossy(&bytes[start..pos]).into_owned());
    }
    assert_eq!(fields[0], "P6", "screenshot is not a binary PPM");
    let w: usize = fields[1].parse().expect("width");
    let h: usize = fields[2].parse().expect("height");
    (w, h, bytes[pos + 1..].to_vec())
}

/// The picture painted in `painted` (a rect of a screenshot `w` pixels wide, RGB), sampled back
/// at `width` x `height` with `channels` bytes per pixel (the rest stays 0).
fn painted_picture(
    pixels: &[u8],
    w: usize,
    painted: [f64; 4],
    (width, height): (u32, u32),
    channels: usize,
) -> Vec<u8> {
    let mut out = vec![0u8; width as usize * height as usize * channels];
    for y in 0..height as usize {
        for x in 0..width as usize {
            let sx = (painted[0] + (x as f64 + 0.5) * painted[2] / f64::from(width)) as usize;
            let sy = (painted[1] + (y as f64 + 0.5) * painted[3] / f64::from(height)) as usize;
            let src = &pixels[(sy * w + sx) * 3..][..3];
            out[(y * width as usize + x) * channels..][..3].copy_from_slice(src);
        }
    }
    out
}

/// Checks the GUI exited cleanly and reads the statistics it wrote (null when missing).
fn exited_with_stats(
    status: std::process::ExitStatus,
    stats_path: &Path,
    failures: &mut Vec<String>,
) -> serde_json::Value {
    check(
        status.success(),
        format!("GUI exited cleanly ({status})"),
        failures,
    );
    std::fs::read_to_string(stats_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// A number that Qt may have written as a string (64-bit integers).
fn number(value: &serde_json::Value) -> Option<i64> {
    value
        .as_i64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

fn rect(value: &serde_json::Value) -> Option<[f64; 4]> {
    let a = value.as_array()?;
    Some([
        a.first()?.as_f64()?,
        a.get(1)?.as_f64()?,
        a.get(2)?.as_f64()?,
        a.get(3)?.as_f64()?,
    ])
}

fn live_window_shows_the_producer_frame_and_hud(display: Display, failures: &mut Vec<String>) {
    println!(
        "{}: live window attached to a demo producer",
        display.name()
    );
    let run = format!("gui-{}-{}", display.name(), std::process::id());
    let producer = Reaped(
        Command::new(EXE)
            .args([
                "demo", "--run", &run, "--size", "320x240", "--format", "rgb", "--rate", "30",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("start demo producer"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while FastLaneReader::attach(&run).is_err() {
        assert!(Instant::now() < deadline, "demo segment did not appear");
        std::thread::sleep(Duration::from_millis(10));
    }
    let dir = artifacts();
    let shot = dir.join(format!("live-{}.ppm", display.name()));
    let stats_path = dir.join(format!("live-{}.json", display.name()));
    let mut command = display.command();
    command
        .args(["gui", "--run", &run, "--screenshot"])
        .arg(&shot);
    let (status, _) = run_gui_until(command, &stats_path, |stats| {
        let step = stats["shown_step"].as_u64().unwrap_or(0);
        stats["state"] == "live"
            && step > 0
            && stats["frames_presented"].as_u64().unwrap_or(0) > 10
            && stats["hud"]["hudStep"] == format!("step {step}").as_str()
            && stats["fastlane_runs_listed"].as_i64() >= Some(1)
    });
    drop(producer);
    check(
        status.success(),
        format!("GUI exited cleanly ({status})"),
        failures,
    );
    let Ok(text) = std::fs::read_to_string(&stats_path) else {
        check(
            false,
            format!("stats written to {}", stats_path.display()),
            failures,
        );
        return;
    };
    let stats: serde_json::Value = serde_json::from_str(&text).expect("stats are JSON");
    println!("  stats: {stats}");
    check(
        stats["state"] == "live",
        format!("state is live ({})", stats["state"]),
        failures,
    );
    let number = stats["shown_frame_number"].as_u64().unwrap_or(0);
    check(
        number > 0,
        format!("a frame was shown (frame {number})"),
        failures,
    );
    check(
        stats["frames_presented"].as_u64().unwrap_or(0) > 10,
        "the window kept rendering".into(),
        failures,
    );
    let step = stats["shown_step"].as_u64().unwrap_or(0);
    let hud_step = stats["hud"]["hudStep"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    check(
        hud_step == format!("step {step}"),
        format!("HUD shows the published step ({hud_step:?} for step {step})"),
        failures,
    );
    check(
        stats["hud"]["hudRun"]
            .as_str()
            .unwrap_or_default()
            .contains(&run),
        "HUD names the run".into(),
        failures,
    );
    check(
        stats["fastlane_runs_listed"].as_i64() >= Some(1),
        format!(
            "the run picker's model lists the live segment ({} listed)",
            stats["fastlane_runs_listed"]
        ),
        failures,
    );
    if matches!(display, Display::Xvfb) {
        check(
            stats["graphics_api"].as_i64() != Some(1),
            format!(
                "hardware-style scene graph under Xvfb (graphics API {})",
                stats["graphics_api"]
            ),
            failures,
        );
    }

    let (Some(painted), Some(hud_rect)) = (rect(&stats["painted_rect"]), rect(&stats["hud_rect"]))
    else {
        check(
            false,
            "stats carry the painted and HUD rectangles".into(),
            failures,
        );
        return;
    };
    let (sw, sh, pixels) = read_ppm(&shot);
    let geometry = FrameGeometry::packed(320, 240, PixelFormat::Rgb8);
    let pattern = DemoPattern::new(geometry);
    let (mut compared, mut total_diff, mut worst) = (0usize, 0u64, 0u8);
    for gy in 0..12 {
        for gx in 0..16 {
            let (u, v) = ((gx as f64 + 0.5) / 16.0, (gy as f64 + 0.5) / 12.0);
            let (x, y) = (painted[0] + u * painted[2], painted[1] + v * painted[3]);
            let inside_hud = x >= hud_rect[0] - 4.0
                && x <= hud_rect[0] + hud_rect[2] + 4.0
                && y >= hud_rect[1] - 4.0
                && y <= hud_rect[1] + hud_rect[3] + 4.0;
            let (px, py) = (x as usize, y as usize);
            if inside_hud || px >= sw || py >= sh {
                continue;
            }
            let fx = (u * 320.0) as usize;
            let fy = (v * 240.0) as usize;
            let want = pattern.pixel(number, fx, fy);
            let got = &pixels[(py * sw + px) * 3..][..3];
            for c in 0..3 {
                let d = (i16::from(got[c]) - i16::from(want[c])).unsigned_abs() as u8;
                total_diff += u64::from(d);
                worst = worst.max(d);
            }
            compared += 1;
        }
    }
    let mean = total_diff as f64 / (compared.max(1) * 3) as f64;
    check(
        compared > 100,
        format!("{compared} sample points outside the HUD"),
        failures,
    );
    check(
        mean < 6.0 && worst <= 48,
        format!(
            "window pixels match producer frame {number} (mean abs diff {mean:.2}, worst {worst})"
        ),
        failures,
    );
}

/// The runs panel and the live plot, fed by a `framelane serve` child over gRPC.
fn recorded_runs_are_listed_and_plotted(failures: &mut Vec<String>) {
    use framelane_core::ingest::proto::framelane_v1 as v1;
    println!("offscreen: runs panel and plot from a daemon");
    let dir = std::env::temp_dir().join(format!("framelane-gui-daemon-{}", std::process::id()));
    let mut serve = Command::new(EXE)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start serve");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(serve.stdout.as_mut().expect("stdout")),
        &mut line,
    )
    .expect("address line");
    let addr: std::net::SocketAddr = line
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .expect("address");
    let serve = Reaped(serve);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let mut client = v1::telemetry_client::TelemetryClient::connect(format!("http://{addr}"))
            .await
            .expect("connect");
        let steps = (0..3000u64).map(|i| v1::Step {
            run_id: "plotted".into(),
            step: i,
            episode: i / 100,
            reward: (i as f64 * 0.01).sin(),
            ..Default::default()
        });
        client
            .publish_steps(tokio_stream::iter(steps))
            .await
            .expect("steps");
        let episodes = (0..30u64).map(|e| v1::Episode {
            run_id: "plotted".into(),
            episode: e,
            total_reward: e as f64,
            steps: 100,
            ..Default::default()
        });
        client
            .publish_episodes(tokio_stream::iter(episodes))
            .await
            .expect("episodes");
        // A run with frames kept by the daemon ("debug": every frame as PNG) and no fast-lane segment.
        client
            .register_worker(v1::RegisterWorkerRequest {
                run_id: "framed".into(),
                worker_id: "w".into(),
                worker_kind: "test".into(),
                profile: "debug".into(),
            })
            .await
            .expect("register");
        let frames = (0..20u64).map(|i| v1::Step {
            run_id: "framed".into(),
            step: i,
            reward: 1.0,
            frame: Some(v1::Frame {
                content: Some(v1::frame::Content::Raw(v1::RawFrame {
                    width: 64,
                    height: 48,
                    format: v1::PixelFormat::Rgb8 as i32,
                    pixels: [200u8, 60, 120].repeat(64 * 48),
                })),
            }),
            ..Default::default()
        });
        client
            .publish_steps(tokio_stream::iter(frames))
            .await
            .expect("framed steps");
    });
    let stats_path = artifacts().join("plot.json");
    let mut command = Display::Offscreen.command();
    command
        .args([
            "gui",
            "--no-demo",
            "--connect",
            &addr.to_string(),
            "--plot-run",
            "plotted",
            "--run",
            "framed",
        ])
        .arg("--screenshot")
        .arg(artifacts().join("plot.ppm"));
    let (status, _) = run_gui_until(command, &stats_path, |stats| {
        stats["telemetry_runs"].as_i64() == Some(2)
            && stats["plot_points"].as_i64() == Some(30)
            && stats["state"] == "live"
            && stats["shown_step"].as_u64().is_some()
    });
    drop(serve);
    let _ = std::fs::remove_dir_all(&dir);
    let stats = exited_with_stats(status, &stats_path, failures);
    check(
        stats["telemetry_runs"].as_i64() == Some(2),
        format!(
            "the runs panel lists both recorded runs ({})",
            stats["telemetry_runs"]
        ),
        failures,
    );
    check(
        stats["plot_points"].as_i64() == Some(30),
        format!(
            "the plot holds the run's 30 episode returns ({})",
            stats["plot_points"]
        ),
        failures,
    );
    match rect(&stats["plot_rect"]) {
        Some(plot) if stats["plot_visible"] == true => {
            // The plot's line colour (#58a6ff) in the plot's own rectangle, counted per column.
            let (w, h, pixels) = read_ppm(&artifacts().join("plot.ppm"));
            let mut columns = std::collections::BTreeSet::new();
            for y in plot[1].max(0.0) as usize..((plot[1] + plot[3]) as usize).min(h) {
                for x in plot[0].max(0.0) as usize..((plot[0] + plot[2]) as usize).min(w) {
                    let p = &pixels[(y * w + x) * 3..][..3];
                    let near = |got: u8, want: u8| (i16::from(got) - i16::from(want)).abs() < 40;
                    if near(p[0], 0x58) && near(p[1], 0xa6) && near(p[2], 0xff) {
                        columns.insert(x);
                    }
                }
            }
            check(
                columns.len() as f64 > plot[2] * 0.5,
                format!(
                    "the plot's line is drawn across its width ({} of {} columns)",
                    columns.len(),
                    plot[2] as usize
                ),
                failures,
            );
        }
        _ => check(false, "the plot item is on screen".into(), failures),
    }
    check(
        stats["state"] == "live" && stats["shown_step"].as_u64().is_some(),
        format!(
            "a run without a fast-lane segment shows the daemon's kept frames ({}, step {})",
            stats["state"], stats["shown_step"]
        ),
        failures,
    );
    if let Some(painted) = rect(&stats["painted_rect"]) {
        let (w, _, pixels) = read_ppm(&artifacts().join("plot.ppm"));
        let (x, y) = (
            (painted[0] + painted[2] * 0.75) as usize,
            (painted[1] + painted[3] * 0.75) as usize,
        );
        let got = &pixels[(y * w + x) * 3..][..3];
        check(
            got == [200, 60, 120],
            format!("the daemon frame's pixels are on screen ({got:?})"),
            failures,
        );
    } else {
        check(false, "the daemon frame was painted".into(), failures);
    }
}

/// Records a run of two workers to video with a daemon in this process, then replays it in the
/// window: each worker's own episode 0 (they number steps and episodes alike), the first
/// listed worker's by default and another's with `--replay-worker`; a worker that sends no id
/// is one of its own (not "every worker"); the second named worker runs two agents on the same
/// steps, the first shown by default and the other with `--replay-agent`.
fn recorded_video_replays_in_the_window(failures: &mut Vec<String>) {
    use framelane::bench::pattern::{numbered_frame, read_number};
    use framelane_core::ingest::proto::framelane_v1 as v1;
    println!("offscreen: replay of a run recorded to video");
    const W: u32 = 320;
    const H: u32 = 240;
    let dir = std::env::temp_dir().join(format!("framelane-gui-replay-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("data dir");
    let profiles = dir.join("profiles.yaml");
    std::fs::write(
        &profiles,
        "profiles:\n  vid:\n    capture_frames: true\n    keep_every_n_frames: 1\n    frame_compression: video\n    drop_render_payload: true\n    drop_observation: false\n    batch_rows: 100\n    flush_interval_ms: 20\n    video_codec: h264\n",
    )
    .expect("profiles");
    let mut config = framelane_core::daemon::DaemonConfig::new(dir.clone());
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.profiles_file = Some(profiles);
    config.encode.max_wait = std::time::Duration::from_secs(2);
    let daemon = framelane_core::daemon::Daemon::start(config).expect("daemon");
    let addr = daemon.local_addr();
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let mut client =
                v1::telemetry_client::TelemetryClient::connect(format!("http://{addr}"))
                    .await
                    .expect("connect")
                    .max_encoding_message_size(64 << 20);
            for worker in ["w", "w2"] {
                client
                    .register_worker(v1::RegisterWorkerRequest {
                        run_id: "replayed".into(),
                        worker_id: worker.into(),
                        worker_kind: "test".into(),
                        profile: "vid".into(),
                    })
                    .await
                    .expect("register");
            }
            // w: 90 steps (episode 0 has 60) with frames numbered as their steps; w2: 30 steps
            // of its own episode 0 for agent a, numbered from 500, and the first 20 of them for
            // agent b, numbered from 800.
            let w = (0..90u64).map(|i| ("w", "", i, i));
            let w2a = (0..30u64).map(|i| ("w2", "a", i, 500 + i));
            let w2b = (0..20u64).map(|i| ("w2", "b", i, 800 + i));
            // A worker that sends no id: 10 steps of its own episode 0, numbered from 900.
            let unnamed = (0..10u64).map(|i| ("", "", i, 900 + i));
            let steps = w
                .chain(w2a)
                .chain(w2b)
                .chain(unnamed)
                .map(|(worker, agent, i, number)| {
                    let mut rgb = vec![0; (W * H * 3) as usize];
                    numbered_frame(number, W, H, &mut rgb);
                    v1::Step {
                        run_id: "replayed".into(),
                        worker_id: worker.into(),
                        agent_id: agent.into(),
                        step: i,
                        episode: i / 60,
                        reward: i as f64,
                        frame: Some(v1::Frame {
                            content: Some(v1::frame::Content::Raw(v1::RawFrame {
                                width: W,
                                height: H,
                                format: v1::PixelFormat::Rgb8 as i32,
                                pixels: rgb,
                            })),
                        }),
                        ..Default::default()
                    }
                });
            client
                .publish_steps(tokio_stream::iter(steps))
                .await
                .expect("steps");
            client
                .publish_episodes(tokio_stream::iter([v1::Episode {
                    run_id: "replayed".into(),
                    worker_id: "w".into(),
                    episode: 0,
                    steps: 60,
                    ..Default::default()
                }]))
                .await
                .expect("episode");
        });
    daemon.shutdown();
    // (--replay-worker, --replay-agent, the worker and agent shown, their agents, episode 0's
    // steps, the number on its first frame)
    let cases = [
        (None, None, ("", ""), vec![""], 10, 900),
        (Some("w"), None, ("w", ""), vec![""], 60, 0),
        (Some("w2"), None, ("w2", "a"), vec!["a", "b"], 30, 500),
        (Some("w2"), Some("b"), ("w2", "b"), vec!["a", "b"], 20, 800),
    ];
    for (asked, asked_agent, (worker, agent), agents, steps, first) in cases {
        let stats_path = artifacts().join(format!("replay-stats-{worker}{agent}.json"));
        let shot = artifacts().join(format!("replay-{worker}{agent}.ppm"));
        let mut command = Display::Offscreen.command();
        command
            .args(["--no-demo", "--no-daemon", "--replay-run", "replayed"])
            .arg("--data-dir")
            .arg(&dir)
            .arg("--screenshot")
            .arg(&shot);
        if let Some(asked) = asked {
            command.args(["--replay-worker", asked]);
        }
        if let Some(asked) = asked_agent {
            command.args(["--replay-agent", asked]);
        }
        let (status, _) = run_gui_until(command, &stats_path, |stats| {
            let replay = &stats["replay"];
            replay["frameOrigin"] == "video"
                && replay["workerId"] == worker
                && replay["agentId"] == agent
                && number(&replay["step"]) == Some(0)
                && replay["stepCount"].as_i64() == Some(steps)
                && replay["overviewPoints"].as_i64() > Some(0)
                && replay["episodes"].as_i64() > Some(0)
        });
        let stats = exited_with_stats(status, &stats_path, failures);
        let replay = &stats["replay"];
        check(
            replay["workers"] == serde_json::json!(["", "w", "w2"]),
            format!("the run's workers are listed, the unnamed one first ({replay})"),
            failures,
        );
        check(
            replay["workerId"] == worker,
            format!("worker {worker}'s episodes are shown ({replay})"),
            failures,
        );
        check(
            replay["agents"] == serde_json::json!(agents) && replay["agentId"] == agent,
            format!("{worker}'s agents {agents:?} are listed, {agent:?} shown ({replay})"),
            failures,
        );
        check(
            replay["frameOrigin"] == "video" && number(&replay["step"]) == Some(0),
            format!("the first step's frame comes from the video ({replay})"),
            failures,
        );
        check(
            replay["stepCount"].as_i64() == Some(steps)
                && replay["overviewPoints"].as_i64() > Some(0),
            format!("{worker}/{agent}'s episode 0 has its own {steps} steps, not another worker's or agent's ({replay})"),
            failures,
        );
        check(
            replay["episodes"].as_i64() == Some(if worker == "w" { 2 } else { 1 }),
            format!("the episode list holds {worker}'s episodes only ({replay})"),
            failures,
        );
        if let Some(painted) = rect(&stats["painted_rect"]) {
            // Sample the painted picture back at the frame's own resolution and read its number.
            let (w, _, pixels) = read_ppm(&shot);
            let rgba = painted_picture(&pixels, w, painted, (W, H), 4);
            let shown = read_number(&rgba, W, H);
            check(
                shown == first,
                format!(
                    "the window shows {worker}/{agent}'s step 0 frame, {first} (it shows {shown})"
                ),
                failures,
            );
        } else {
            check(false, "the replayed frame was painted".into(), failures);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// An episode analysis opens in the Replay tab: the frame its manifest names, with the face's
/// box drawn in its track's colour.
fn analysis_opens_in_the_replay_tab(failures: &mut Vec<String>) {
    use framelane_analyze::manifest::DetectionLine;
    use framelane_analyze::review::track_colour;
    use framelane_analyze::synth::{read_stamp, FaceShot, Sprite, SynthSpec};
    println!("offscreen: an episode analysis in the Replay tab");
    const W: u32 = 480;
    const H: u32 = 270;
    let dir = std::env::temp_dir().join(format!("framelane-gui-analysis-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let face = std::env::var_os("FRAMELANE_FACE_IMAGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME"))
                .join(".cache/framelane/testdata/astronaut.png")
        });
    let mut spec = SynthSpec::new(W, H, 30, vec![36, 36]);
    spec.face = Some(Sprite::from_png(&face, (150, 35, 150, 150)).expect("face image"));
    spec.shots = vec![FaceShot {
        start: 0,
        end: 36,
        from: (40, 30),
        to: (120, 40),
    }];
    let video = spec.write(&dir.join("episode.mp4")).expect("video");
    let out = dir.join("analysis");
    let options = framelane_analyze::AnalyzeOptions::new("gui-ep", &video, &out);
    let summary =
        framelane_analyze::analyze(&options, framelane_analyze::progress::ProgressStyle::Quiet)
            .expect("analysis");
    let first_box = std::fs::read_to_string(out.join("detections.jsonl"))
        .ok()
        .and_then(|t| t.lines().next().map(str::to_owned))
        .and_then(|l| serde_json::from_str::<DetectionLine>(&l).ok())
        .filter(|d| d.frame == 0);
    let stats_path = artifacts().join("analysis-stats.json");
    let shot = artifacts().join("analysis.ppm");
    let mut command = Display::Offscreen.command();
    command
        .args(["--no-demo", "--no-daemon", "--analysis"])
        .arg(&out)
        .arg("--screenshot")
        .arg(&shot);
    let analysed = summary.frames.analysed as i64;
    let (status, _) = run_gui_until(command, &stats_path, |stats| {
        number(&stats["analysis"]["shownFrame"]) == Some(0)
            && stats["analysis"]["count"].as_i64() == Some(analysed)
    });
    let stats = exited_with_stats(status, &stats_path, failures);
    let analysis = &stats["analysis"];
    check(
        number(&analysis["shownFrame"]) == Some(0)
            && analysis["count"].as_i64() == Some(analysed)
            && analysis["cutCount"].as_i64() == Some(1)
            && analysis["trackCount"].as_i64() == Some(1),
        format!(
            "the analysis opened: {analysed} frames, 1 cut, 1 track, frame 0 shown ({analysis})"
        ),
        failures,
    );
    match (rect(&stats["painted_rect"]), first_box) {
        (Some(painted), Some(face)) => {
            let (w, _, pixels) = read_ppm(&shot);
            let sample = |x: f64, y: f64| {
                let sx = (painted[0] + (x + 0.5) * painted[2] / W as f64) as usize;
                let sy = (painted[1] + (y + 0.5) * painted[3] / H as f64) as usize;
                let at = (sy * w + sx) * 3;
                [pixels[at], pixels[at + 1], pixels[at + 2]]
            };
            let mut rgb = vec![0u8; (W * H * 3) as usize];
            for y in 0..H {
                for x in 0..W {
                    let px = sample(f64::from(x), f64::from(y));
                    rgb[((y * W + x) * 3) as usize..][..3].copy_from_slice(&px);
                }
            }
            let shown = read_stamp(&rgb, W, H, 3);
            check(
                shown == Some(0),
                format!("the window shows frame 0 of the video (it shows {shown:?})"),
                failures,
            );
            let edge = sample(
                f64::from(face.bbox[0].max(0.0).floor()),
                f64::from(face.bbox[1] + face.bbox[3] / 2.0),
            );
            let want = track_colour(Some(1));
            let close = edge.iter().zip(want).all(|(a, b)| a.abs_diff(b) <= 40);
            check(
                close,
                format!("the face's box is drawn in track 1's colour {want:?} (pixel {edge:?})"),
                failures,
            );
        }
        (painted, face) => check(
            false,
            format!(
                "the analysed frame was painted ({painted:?}) and frame 0 has a face ({face:?})"
            ),
            failures,
        ),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The rig kiosk: previews of two synthetic cameras (each camera's own frames, read back from
/// the window), a trigger from another process makes a clip that the kiosk lists.
fn rig_kiosk_shows_cameras_and_clips(failures: &mut Vec<String>) {
    use framelane_core::media::stamp::read_stamp;
    println!("offscreen: the recording rig's kiosk");
    const W: u32 = 320;
    const H: u32 = 240;
    let dir = std::env::temp_dir().join(format!("framelane-gui-rig-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let config = dir.join("rig.yaml");
    std::fs::write(
        &config,
        format!("cameras:\n  - name: a\n    source: synthetic\n    size: {W}x{H}\n    fps: 30\n  - name: b\n    source: synthetic\n    size: {W}x{H}\n    fps: 30\nrecording:\n  pre_roll_ms: 500\n  post_roll_ms: 300\n  gop_ms: 250\n  output_dir: clips\n  disk_reserve_mb: 1\n"),
    )
    .expect("rig.yaml");
    let stats_path = artifacts().join("rig-stats.json");
    let shot = artifacts().join("rig.ppm");
    let mut command = Display::Offscreen.command();
    command
        .args(["--no-demo", "--no-daemon", "--rig-config"])
        .arg(&config)
        .arg("--screenshot")
        .arg(&shot);
    // Trigger from another process once both previews are painted (the kiosk's own rig takes
    // it through its control socket), then wait for the clip in the kiosk's list.
    let triggered = std::cell::Cell::new(false);
    // Camera a's line as shown before any trigger: it must follow the frames as they come,
    // not only when a trigger or the free disk space changes.
    let lines_seen = std::cell::RefCell::new(std::collections::BTreeSet::<String>::new());
    let (status, _) = run_gui_until(command, &stats_path, |stats| {
        let rig = &stats["rig"];
        let painted = rig["previews"].as_array().is_some_and(|p| p.len() == 2);
        if !triggered.get() {
            if let Some(line) = rig["cameraLines"][0]
                .as_str()
                .filter(|l| l.contains("frames"))
            {
                lines_seen.borrow_mut().insert(line.to_owned());
            }
        }
        if painted && !triggered.get() && lines_seen.borrow().len() >= 3 {
            let ok = Command::new(EXE)
                .args(["rig", "trigger", "--config"])
                .arg(&config)
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).starts_with("ok trigger"));
            triggered.set(ok);
        }
        triggered.get() && rig["clips"].as_i64() >= Some(1)
    });
    let stats = exited_with_stats(status, &stats_path, failures);
    let rig = &stats["rig"];
    check(
        rig["cameraCount"].as_i64() == Some(2) && rig["error"] == "",
        format!("the kiosk runs the rig's two cameras ({rig})"),
        failures,
    );
    check(
        lines_seen.borrow().len() >= 3,
        format!(
            "camera a's line followed its frames before any trigger ({:?})",
            lines_seen.borrow()
        ),
        failures,
    );
    check(
        rig["clips"].as_i64() >= Some(1)
            && rig["lastClip"]
                .as_str()
                .is_some_and(|c| c.starts_with("clip-")),
        format!("a trigger from another process gives a clip the kiosk lists ({rig})"),
        failures,
    );
    let previews: Vec<[f64; 4]> = rig["previews"]
        .as_array()
        .map(|a| a.iter().filter_map(rect).collect())
        .unwrap_or_default();
    if previews.len() == 2 {
        let (w, _, pixels) = read_ppm(&shot);
        for (camera, painted) in previews.iter().enumerate() {
            let rgb = painted_picture(&pixels, w, *painted, (W, H), 3);
            let id = read_stamp(&rgb, W, H, 3, 1);
            check(
                id == Some(camera as u64),
                format!("preview {camera} shows camera {camera}'s frames (its pixels say {id:?})"),
                failures,
            );
        }
    } else {
        check(
            false,
            format!("both previews were painted ({rig})"),
            failures,
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// An X server of the test's own (not `xvfb-run`), so xdotool can send real key presses and
/// clicks to the window on it.
struct OwnXServer {
    server: Child,
    display: String,
}

impl OwnXServer {
    fn start() -> Option<Self> {
        for n in 0..20 {
            let number = 60 + (std::process::id() as usize + n) % 200;
            if Path::new(&format!("/tmp/.X11-unix/X{number}")).exists() {
                continue;
            }
            let display = format!(":{number}");
            let mut server = Command::new("Xvfb")
                .args([&display, "-screen", "0", "1280x800x24", "-nolisten", "tcp"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok()?;
            // The socket appears once the server listens; a server that exits gave up.
            let up = wait_until(|| {
                if Path::new(&format!("/tmp/.X11-unix/X{number}")).exists() {
                    Some(true)
                } else {
                    matches!(server.try_wait(), Ok(Some(_))).then_some(false)
                }
            });
            if up == Some(true) {
                return Some(Self { server, display });
            }
            let _ = server.kill();
            let _ = server.wait();
        }
        None
    }

    /// Runs xdotool on this display; whether it succeeded.
    fn xdotool(&self, args: &[&str]) -> bool {
        Command::new("xdotool")
            .args(args)
            .env("DISPLAY", &self.display)
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for OwnXServer {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// The kiosk as a lab uses it, on a real X server: the T key triggers a clip, its thumbnail
/// shows the clip's first frame, and touching the thumbnail plays the clip.
fn rig_kiosk_takes_keys_and_plays_clips(failures: &mut Vec<String>) {
    println!("xvfb: the kiosk's key trigger and clip thumbnails");
    let Some(x) = OwnXServer::start() else {
        failures.push("could not start Xvfb for the kiosk test".into());
        return;
    };
    let dir = artifacts().join(format!("kiosk-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let config = dir.join("rig.yaml");
    std::fs::write(
        &config,
        "cameras:\n  - name: a\n    source: synthetic\n    size: 320x240\n    fps: 30\nrecording:\n  pre_roll_ms: 500\n  post_roll_ms: 800\n  gop_ms: 250\n  output_dir: clips\n  disk_reserve_mb: 1\n",
    )
    .expect("rig.yaml");
    let stats_path = artifacts().join("kiosk-keys.json");
    let shot = artifacts().join("kiosk-keys.ppm");
    // What `framelane rig --config rig.yaml --kiosk` opens, with the test's statistics.
    let mut command = Command::new(EXE);
    command
        .env("DISPLAY", &x.display)
        .env_remove("QT_QPA_PLATFORM")
        .args(["--no-demo", "--no-daemon", "--fullscreen", "--rig-config"])
        .arg(&config)
        .arg("--screenshot")
        .arg(&shot);
    let keyed = std::cell::Cell::new(false);
    let touched = std::cell::Cell::new(false);
    let first_shown = std::cell::Cell::new(0i64);
    let (status, ready) = run_gui_until(command, &stats_path, |stats| {
        let rig = &stats["rig"];
        let live = rig["previews"].as_array().is_some_and(|p| p.len() == 1);
        if live && !keyed.get() {
            // The pointer over the kiosk (X gives key presses to the window under it).
            keyed.set(x.xdotool(&["mousemove", "400", "300", "key", "t"]));
        }
        let thumb = &rig["thumbs"][0];
        let shown = number(&thumb["shown"]).unwrap_or(0);
        if rig["clips"].as_i64() >= Some(1) && shown >= 1 && !touched.get() {
            if let Some(r) = rect(&thumb["rect"]) {
                let (cx, cy) = ((r[0] + r[2] / 2.0) as i64, (r[1] + r[3] / 2.0) as i64);
                first_shown.set(shown);
                touched.set(x.xdotool(&[
                    "mousemove",
                    &cx.to_string(),
                    &cy.to_string(),
                    "click",
                    "1",
                ]));
            }
        }
        touched.get() && shown >= first_shown.get() + 15
    });
    let stats = exited_with_stats(status, &stats_path, failures);
    let rig = &stats["rig"];
    check(
        keyed.get() && rig["triggers"].as_i64() >= Some(1) && rig["clips"].as_i64() >= Some(1),
        format!("the T key triggered a clip that the kiosk lists ({rig})"),
        failures,
    );
    check(
        ready,
        format!(
            "touching the clip's thumbnail played it ({})",
            rig["thumbs"]
        ),
        failures,
    );
    let thumb = rect(&rig["thumbs"][0]["rect"]);
    let button = rect(&rig["trigger_rect"]);
    check(
        matches!((thumb, button), (Some(t), Some(b)) if t[1] >= b[1] + b[3]),
        format!(
            "the clip list sits below the trigger button (thumbnail {thumb:?}, button {button:?})"
        ),
        failures,
    );
    // The thumbnail shows a picture (the synthetic camera's pattern), not an empty box.
    if let Some(r) = thumb.filter(|r| r[2] >= 8.0 && r[3] >= 8.0) {
        let (w, _, pixels) = read_ppm(&shot);
        let mut seen = std::collections::HashSet::new();
        for y in (r[1] as usize..(r[1] + r[3]) as usize).step_by(3) {
            for x in (r[0] as usize..(r[0] + r[2]) as usize).step_by(3) {
                let p = &pixels[(y * w + x) * 3..][..3];
                seen.insert((p[0] / 32, p[1] / 32, p[2] / 32));
            }
        }
        check(
            seen.len() >= 4,
            format!(
                "the thumbnail shows the clip's frames ({} colours)",
                seen.len()
            ),
            failures,
        );
    } else {
        check(
            false,
            format!("the thumbnail was painted ({rig})"),
            failures,
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A clip a headless rig recorded and listed in the daemon's store opens (and plays) in the
/// Replay tab of a window on the same data directory.
fn rig_clip_plays_in_the_replay_tab(failures: &mut Vec<String>) {
    use framelane_core::media::stamp::read_stamp;
    println!("offscreen: a rig clip in the Replay tab");
    let dir = artifacts().join(format!("replay-clip-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let data = dir.join("data");
    let daemon = Reaped(
        Command::new(EXE)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the daemon"),
    );
    let config = dir.join("rig.yaml");
    std::fs::write(
        &config,
        format!("cameras:\n  - name: a\n    source: synthetic\n    size: 320x240\n    fps: 30\nrecording:\n  pre_roll_ms: 500\n  post_roll_ms: 1000\n  gop_ms: 250\n  output_dir: clips\n  disk_reserve_mb: 1\n  telemetry_data_dir: {}\n", data.display()),
    )
    .expect("rig.yaml");
    let rig = Reaped(
        Command::new(EXE)
            .args(["rig", "--status-interval-s", "0", "--config"])
            .arg(&config)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the rig"),
    );
    let database = data.join(framelane_core::store::DATABASE_FILE);
    let mut triggered = false;
    let listed = wait_until(|| {
        if !triggered {
            triggered = Command::new(EXE)
                .args(["rig", "trigger", "--config"])
                .arg(&config)
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).starts_with("ok trigger"));
        }
        framelane_core::store::StoreReader::open(&database)
            .and_then(|r| r.clips(10))
            .ok()
            .and_then(|clips| clips.into_iter().next())
    });
    drop(rig);
    drop(daemon);
    let Some(clip) = listed else {
        failures.push("the rig's clip was not listed in the daemon's store".into());
        return;
    };
    let stats_path = artifacts().join("replay-clip.json");
    let shot = artifacts().join("replay-clip.ppm");
    let mut command = Display::Offscreen.command();
    command
        .args(["--no-demo", "--no-daemon", "--data-dir"])
        .arg(&data)
        .args([
            "--replay-clip",
            &clip.clip_id,
            "--play-clip",
            "--screenshot",
        ])
        .arg(&shot);
    let (status, ready) = run_gui_until(command, &stats_path, |stats| {
        let player = &stats["clips"]["player"];
        number(&player["shown"]).unwrap_or(0) >= 20 && player["playing"] == false
    });
    let stats = exited_with_stats(status, &stats_path, failures);
    let clips = &stats["clips"];
    check(
        clips["count"].as_i64() == Some(1)
            && clips["player"]["file"].as_str() == Some(clip.files[0].path.as_str()),
        format!("the Replay tab lists the clip and opened its file ({clips})"),
        failures,
    );
    check(
        ready && clips["player"]["note"] == "",
        format!("the clip played to its end ({clips})"),
        failures,
    );
    // The frame area shows the camera's frames (camera 0's id in their pixels).
    if let Some(painted) = rect(&stats["painted_rect"]) {
        const W: u32 = 320;
        const H: u32 = 240;
        let (w, _, pixels) = read_ppm(&shot);
        let rgb = painted_picture(&pixels, w, painted, (W, H), 3);
        let id = read_stamp(&rgb, W, H, 3, 1);
        check(
            id == Some(0),
            format!("the Replay tab paints the clip's frames (camera id in pixels: {id:?})"),
            failures,
        );
    } else {
        check(false, format!("the clip was painted ({stats})"), failures);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn smoke_test(failures: &mut Vec<String>) {
    println!("offscreen: --smoke-test");
    let out = Display::Offscreen
        .command()
        .arg("--smoke-test")
        .output()
        .expect("run smoke test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    check(
        out.status.success() && stdout.contains("smoke test passed"),
        format!("--smoke-test passes ({}; {stdout} {stderr})", out.status),
        failures,
    );
}

fn no_display_gives_a_hint(failures: &mut Vec<String>) {
    println!("no display: the GUI explains how to run headless");
    let out = Command::new(EXE)
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("QT_QPA_PLATFORM")
        .arg("--no-demo")
        .output()
        .expect("run without display");
    let stderr = String::from_utf8_lossy(&out.stderr);
    check(
        out.status.code() == Some(1)
            && stderr.contains(&format!("xvfb-run -a {EXE} --no-demo"))
            && stderr.contains(&format!("QT_QPA_PLATFORM=offscreen {EXE} --no-demo")),
        format!("exits with a hint, not a crash ({})", stderr.trim()),
        failures,
    );
}

/// The first run a new user makes: the window with its built-in demo and embedded daemon. Every
/// lane fills within seconds: the live frame, the demo run among the recorded runs, its returns
/// in the plot, and its episode recorded to video, ready in the Replay view.
fn first_run_fills_every_lane(failures: &mut Vec<String>) {
    println!("offscreen: first run with the built-in demo");
    let dir = artifacts().join(format!("first-run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let stats_path = artifacts().join("first-run.json");
    let mut command = Display::Offscreen.command();
    // A free port: another daemon on the default one must not stand in for this window's.
    command
        .arg("--data-dir")
        .arg(&dir)
        .args(["--listen", "127.0.0.1:0"]);
    let (status, ready) = run_gui_until(command, &stats_path, |stats| {
        let replay = &stats["replay"];
        stats["state"] == "live"
            && stats["telemetry_runs"].as_i64() >= Some(1)
            && stats["plot_points"].as_i64() >= Some(2)
            && replay["episodes"].as_i64() >= Some(1)
            && replay["frameOrigin"] == "video"
    });
    let _ = std::fs::remove_dir_all(&dir);
    let stats = exited_with_stats(status, &stats_path, failures);
    let replay = &stats["replay"];
    check(
        ready,
        format!("every lane filled before the deadline ({stats})"),
        failures,
    );
    check(
        stats["state"] == "live" && stats["shown_step"].as_u64() > Some(0),
        format!("the live view shows the demo ({})", stats["state"]),
        failures,
    );
    check(
        stats["telemetry_runs"].as_i64() >= Some(1),
        format!(
            "the demo run is among the recorded runs ({})",
            stats["telemetry_runs"]
        ),
        failures,
    );
    check(
        stats["plot_points"].as_i64() >= Some(2),
        format!(
            "the plot draws its returns ({} points)",
            stats["plot_points"]
        ),
        failures,
    );
    check(
        replay["runId"] == stats["run_id"] && replay["frameOrigin"] == "video",
        format!("the Replay view holds the demo run, frames from its video ({replay})"),
        failures,
    );
}

/// The live view's frame-rate cap holds against a faster producer, and the HUD says so (under
/// Xvfb: the threaded render loop with its 60 Hz throttle, as on a desktop).
fn fps_cap_holds(failures: &mut Vec<String>) {
    println!("xvfb: live view with an FPS cap");
    let run = format!("gui-cap-{}", std::process::id());
    let producer = Reaped(
        Command::new(EXE)
            .args([
                "demo", "--run", &run, "--size", "320x240", "--format", "rgb", "--rate", "60",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("start demo producer"),
    );
    let stats_path = artifacts().join("fps-cap.json");
    let mut command = Display::Xvfb.command();
    command.args(["gui", "--no-daemon", "--run", &run, "--fps-cap", "12"]);
    let (status, _) = run_gui_until(command, &stats_path, |stats| {
        stats["frames_presented"].as_u64() >= Some(40)
    });
    drop(producer);
    let stats = exited_with_stats(status, &stats_path, failures);
    let fps = stats["display_fps"].as_f64().unwrap_or(0.0);
    // The cap is the upper bound; a loaded machine may show fewer (the 40 frames presented
    // already show that frames flow).
    check(
        fps > 1.0 && fps <= 13.5,
        format!("the display rate keeps under the cap of 12 with a 60 Hz producer ({fps:.1} fps)"),
        failures,
    );
    check(
        stats["hud"]["hudRates"]
            .as_str()
            .is_some_and(|t| t.contains("(cap 12)")),
        format!("the HUD states the cap ({})", stats["hud"]["hudRates"]),
        failures,
    );
}

/// A worker of `run` listening on the daemon's control stream; records the last rate asked.
fn control_listener(
    address: std::net::SocketAddr,
    run: String,
    received: std::sync::Arc<std::sync::Mutex<Option<u32>>>,
) {
    use framelane_core::ingest::proto::framelane_v1 as v1;
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async move {
            let Ok(mut client) = framelane_core::ingest::client::connect(address).await else {
                return;
            };
            let _ = framelane_core::ingest::client::follow_control(&mut client, &run, |event| {
                if let v1::control_message::Event::MaxRateHz(hz) = event {
                    *received.lock().unwrap_or_else(|p| p.into_inner()) = Some(hz);
                }
                true
            })
            .await;
        });
    });
}

/// The live view's controls under Xvfb: a producer rate asked from the window reaches the
/// run's workers over the control stream (the demo slows to it, a second worker receives it),
/// the HUD states it, the metrics panel shows live figures; then, with "Shared memory" off,
/// the same run is shown from the daemon's kept frames.
fn live_controls_work(failures: &mut Vec<String>) {
    println!("xvfb: live controls and the metrics panel");
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        probe.local_addr().expect("addr").port()
    };
    let address: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let dir = artifacts().join(format!("controls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let stats_path = artifacts().join("controls.json");
    let received = std::sync::Arc::new(std::sync::Mutex::new(None));
    let listening = std::sync::Mutex::new(false);
    let mut command = Display::Xvfb.command();
    command.arg("--data-dir").arg(&dir).args([
        "--listen",
        &address.to_string(),
        "--ask-rate",
        "7",
        "--show-metrics",
        // The embedded daemon takes serve's settings (it used to ignore them all).
        "--memory-limit",
        "768MiB",
    ]);
    let (status, ready) = run_gui_until(command, &stats_path, |stats| {
        if let Some(run) = stats["run_id"].as_str().filter(|r| !r.is_empty()) {
            let mut started = listening.lock().unwrap_or_else(|p| p.into_inner());
            if !*started {
                *started = true;
                control_listener(address, run.to_owned(), std::sync::Arc::clone(&received));
            }
        }
        let producer_rate = stats["hud"]["hudRates"]
            .as_str()
            .and_then(|t| t.split_whitespace().nth(1)?.parse::<f64>().ok())
            .unwrap_or(f64::NAN);
        let got = *received.lock().unwrap_or_else(|p| p.into_inner());
        stats["controls"]["rateAsked"] == 7
            && (5.0..=8.5).contains(&producer_rate)
            && got == Some(7)
            && ["metricsStore", "metricsFrameTime", "metricsStepRate"]
                .iter()
                .all(|label| {
                    stats["metrics"][*label]
                        .as_str()
                        .is_some_and(|t| !t.contains("n/a"))
                })
    });
    let stats = exited_with_stats(status, &stats_path, failures);
    let got = *received.lock().unwrap_or_else(|p| p.into_inner());
    check(
        ready,
        format!("the ask reached the workers and the figures came before the deadline ({stats})"),
        failures,
    );
    check(
        got == Some(7),
        format!("a worker on the run's control stream received max_rate_hz 7 ({got:?})"),
        failures,
    );
    check(
        stats["hud"]["hudControls"]
            .as_str()
            .is_some_and(|t| t.contains("source shared memory") && t.contains("rate asked 7/s")),
        format!(
            "the HUD states the source and the rate asked ({})",
            stats["hud"]["hudControls"]
        ),
        failures,
    );
    check(
        stats["hud"]["hudRates"]
            .as_str()
            .and_then(|t| t.split_whitespace().nth(1)?.parse::<f64>().ok())
            .is_some_and(|rate| rate <= 8.5),
        format!(
            "the demo producer slowed to the rate asked ({})",
            stats["hud"]["hudRates"]
        ),
        failures,
    );
    let metrics = &stats["metrics"];
    for (label, must) in [
        ("metricsFrameTime", "frame time p50"),
        ("metricsStore", "commit p50"),
        ("metricsStepRate", "steps/s (gRPC)"),
        ("metricsMemory", "of 768 MiB ceiling"),
    ] {
        check(
            metrics[label]
                .as_str()
                .is_some_and(|t| t.contains(must) && !t.contains("n/a")),
            format!(
                "the metrics panel shows live figures: {label} ({})",
                metrics[label]
            ),
            failures,
        );
    }

    // The same data directory, with the fast lane switched off: the daemon's frames show.
    let stats_path = artifacts().join("controls-no-shm.json");
    let mut command = Display::Xvfb.command();
    command
        .arg("--data-dir")
        .arg(&dir)
        .args(["--listen", "127.0.0.1:0", "--no-shared-memory"]);
    let (status, ready) = run_gui_until(command, &stats_path, |stats| {
        stats["controls"]["frameSource"] == "daemon" && stats["state"] == "live"
    });
    let _ = std::fs::remove_dir_all(&dir);
    let stats = exited_with_stats(status, &stats_path, failures);
    check(
        ready && stats["controls"]["frameSource"] == "daemon",
        format!(
            "with shared memory off the live view shows the daemon's frames ({})",
            stats["controls"]
        ),
        failures,
    );
    check(
        stats["hud"]["hudControls"]
            .as_str()
            .is_some_and(|t| t.contains("source daemon")),
        format!("the HUD names the source ({})", stats["hud"]["hudControls"]),
        failures,
    );
}

/// "Slow when skipping": a 120 Hz built-in demo shown under a 15 fps cap skips frames every
/// second; after the sustained stretch the window asks the producer for the display's rate, and
/// the producer slows to it.
fn auto_slow_asks_for_the_display_rate(failures: &mut Vec<String>) {
    println!("xvfb: slowing the producer after sustained skipping");
    let dir = artifacts().join(format!("auto-slow-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let stats_path = artifacts().join("auto-slow.json");
    let mut command = Display::Xvfb.command();
    command.arg("--data-dir").arg(&dir).args([
        "--listen",
        "127.0.0.1:0",
        "--demo-rate",
        "120",
        "--fps-cap",
        "15",
        "--auto-slow",
    ]);
    let producer_rate = |stats: &serde_json::Value| {
        stats["hud"]["hudRates"]
            .as_str()
            .and_then(|t| t.split_whitespace().nth(1)?.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    // The ask is the display's own rate, which on a loaded machine under Xvfb may be a few
    // frames a second: any ask from 1 up to the cap counts, and the producer (120/s) must come
    // down to it.
    let (status, ready) = run_gui_until(command, &stats_path, |stats| {
        let asked = stats["controls"]["rateAsked"].as_i64().unwrap_or(-1);
        (1..=16).contains(&asked) && producer_rate(stats) <= asked as f64 * 1.2 + 1.0
    });
    let _ = std::fs::remove_dir_all(&dir);
    let stats = exited_with_stats(status, &stats_path, failures);
    check(
        ready,
        format!(
            "the window asked for about the display's rate and the producer slowed to it ({}, {})",
            stats["controls"], stats["hud"]["hudRates"]
        ),
        failures,
    );
}

fn main() {
    // libtest-style filtering is not needed; accept and ignore its flags.
    let mut failures = Vec::new();
    no_display_gives_a_hint(&mut failures);
    smoke_test(&mut failures);
    first_run_fills_every_lane(&mut failures);
    recorded_runs_are_listed_and_plotted(&mut failures);
    recorded_video_replays_in_the_window(&mut failures);
    analysis_opens_in_the_replay_tab(&mut failures);
    rig_kiosk_shows_cameras_and_clips(&mut failures);
    rig_clip_plays_in_the_replay_tab(&mut failures);
    live_window_shows_the_producer_frame_and_hud(Display::Offscreen, &mut failures);
    if Command::new("xvfb-run")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
    {
        live_window_shows_the_producer_frame_and_hud(Display::Xvfb, &mut failures);
        fps_cap_holds(&mut failures);
        live_controls_work(&mut failures);
        auto_slow_asks_for_the_display_rate(&mut failures);
        rig_kiosk_takes_keys_and_plays_clips(&mut failures);
    } else {
        failures.push("xvfb-run is not installed (scripts/setup-debian.sh installs it)".into());
    }
    if failures.is_empty() {
        println!("gui: all checks passed");
    } else {
        println!("gui: {} check(s) failed:", failures.len());
        for f in &failures {
            println!("  - {f}");
        }
        std::process::exit(1);
    }
}
