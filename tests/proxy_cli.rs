//! `framelane proxy -- CMD`: a real worker process printing MOSAIC's JSONL lines, forwarded to
//! a real daemon and the fast lane; its exit status passed through; every line accounted for.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{output_within, wait_until, ScratchDir, ServeProcess};
use framelane_core::fastlane::{FastLaneReader, ReadOutcome};
use framelane_core::store::StoreReader;

const EXE: &str = env!("CARGO_BIN_EXE_framelane");

fn worker_script() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/mosaic_jsonl_worker.py")
        .display()
        .to_string()
}

/// The frame the worker prints for its n-th step: 4x3 RGB.
fn expected_frame(n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for y in 0..3u64 {
        for x in 0..4u64 {
            out.extend_from_slice(&[
                ((n + x + y) % 256) as u8,
                ((2 * n + x) % 256) as u8,
                ((3 * n + y) % 256) as u8,
            ]);
        }
    }
    out
}

#[test]
fn a_mosaic_worker_is_forwarded_unchanged_and_its_exit_status_passes_through() {
    let dir = ScratchDir::new("proxy");
    let data = dir.path().join("data");
    let serve = ServeProcess::start(&data, &[]);
    let run = format!("proxy-run-{}", std::process::id());
    let report_path = dir.path().join("report.json");
    let release = dir.path().join("release");
    let (episodes, steps) = (3u64, 40u64);
    let mut proxy = Command::new(EXE)
        .args([
            "proxy",
            "--target",
            &serve.addr.to_string(),
            "--run-id",
            &run,
        ])
        .arg("--report-json")
        .arg(&report_path)
        .args(["--", "python3", &worker_script(), "3", "40", "7"])
        .arg(&release)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the proxy");

    // While the worker waits after its last line, the fast lane shows its last frame.
    let shown = wait_until(|| {
        let mut reader = FastLaneReader::attach(&run).ok()?;
        let g = reader.geometry();
        let mut buf = vec![0u8; g.frame_bytes()];
        match reader.read_newest(&mut buf, g.row_stride).ok()? {
            ReadOutcome::Frame(meta)
                if meta.hud.step == steps && meta.hud.episode == episodes - 1 =>
            {
                Some((g.width, g.height, buf, meta.hud))
            }
            _ => None,
        }
    });
    let (width, height, pixels, hud) = shown.expect("the last frame reaches the fast lane");
    assert_eq!((width, height), (4, 3));
    assert_eq!(pixels, expected_frame(episodes * steps));
    assert_eq!(hud.episodic_return, 0.5 * steps as f64);
    assert!(
        (hud.steps_per_second - 100.0).abs() < 1.0,
        "steps/s from the spacing of ts_unix_ns: {}",
        hud.steps_per_second
    );

    std::fs::write(&release, b"").expect("release the worker");
    let status = proxy.wait().expect("proxy ends");
    assert_eq!(
        status.code(),
        Some(7),
        "the worker's exit status passes through"
    );
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut proxy.stderr.take().expect("stderr"), &mut stderr)
        .expect("read stderr");
    assert!(
        stderr.contains("the last frame is published"),
        "the worker's stderr is passed on: {stderr}"
    );
    assert!(
        stderr.contains("120 steps and 3 episodes forwarded (120 and 3 committed)"),
        "{stderr}"
    );
    assert!(stderr.contains("2 lines not forwarded"), "{stderr}");

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).expect("report"))
            .expect("JSON");
    assert_eq!(report["steps_committed"], episodes * steps);
    assert_eq!(report["episodes_committed"], episodes);
    assert_eq!(report["not_forwarded"]["not JSON"], 1);
    assert_eq!(report["not_forwarded"]["reward is not a number"], 1);
    assert_eq!(report["other_types"], 1);
    assert_eq!(report["frames_published"], episodes * steps);
    assert_eq!(report["exit_code"], 7);

    serve.terminate();
    let store =
        StoreReader::open(&data.join(framelane_core::store::DATABASE_FILE)).expect("open store");
    let runs = store.list_runs().expect("runs");
    let summary = runs
        .iter()
        .find(|r| r.run_id == run)
        .expect("the run is stored");
    assert_eq!(
        (summary.steps, summary.episodes),
        (episodes * steps, episodes)
    );
}

#[test]
fn the_proxy_refuses_clearly_without_a_daemon_or_a_command() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = free.local_addr().expect("addr").to_string();
    drop(free);
    let output = output_within(
        Command::new(EXE).args(["proxy", "--target", &address, "--run-id", "r", "--", "true"]),
        60,
    )
    .expect("refuses in time");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("daemon at {address} not reachable")),
        "{stderr}"
    );

    let output = output_within(Command::new(EXE).args(["proxy", "--run-id", "r"]), 30)
        .expect("refuses at once");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("<CMD>"));

    let output = output_within(
        Command::new(EXE).args(["proxy", "--run-id", "a\nb", "--", "true"]),
        30,
    )
    .expect("refuses at once");
    assert!(String::from_utf8_lossy(&output.stderr).contains("--run-id"));
}
