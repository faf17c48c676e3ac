//! `framelane rig` as a lab runs it: headless in its own process, triggered from another
//! process through `framelane rig trigger`, killed with SIGKILL while clips are being written
//! (finished clips stay intact, a half clip is never listed), restarted on the same folder; a
//! bad rig.yaml is refused with its line and key.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{output_within, wait_until, ScratchDir};
use framelane_core::media::stamp::read_stamp;
use framelane_core::replay::VideoReader;
use framelane_rig::clip;

fn framelane() -> Command {
    Command::new(env!("CARGO_BIN_EXE_framelane"))
}

fn write_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("rig.yaml");
    std::fs::write(
        &path,
        "cameras:\n  - name: a\n    source: synthetic\n    size: 320x240\n    fps: 30\n  - name: b\n    source: synthetic\n    size: 320x240\n    fps: 30\nrecording:\n  pre_roll_ms: 500\n  post_roll_ms: 300\n  gop_ms: 250\n  output_dir: clips\n  disk_reserve_mb: 1\n",
    )
    .expect("config");
    path
}

fn trigger(config: &Path) -> String {
    let out = output_within(
        framelane().args(["rig", "trigger", "--config"]).arg(config),
        30,
    )
    .expect("trigger returns");
    String::from_utf8_lossy(&out.stdout).trim().to_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// How many frames a clip file holds when every one decodes, in presentation order, with the
/// stamped frame numbers running on without a gap or a repeat; None when it does not play.
/// (Clip timestamps are capture times: frame numbers derived from them may skip where a frame
/// was captured late, so the walk goes by presentation order, not by number.)
fn played(path: &Path) -> Option<u64> {
    let mut reader = VideoReader::open(path, 30, 8).ok()?;
    let mut last: Option<u64> = None;
    let mut count = 0;
    while let Some((_, f)) = reader.next_frame().ok()? {
        let number = read_stamp(&f.rgba, f.width, f.height, 4, 0)?;
        if last.is_some_and(|l| number != l + 1) {
            return None;
        }
        last = Some(number);
        count += 1;
    }
    (count > 0).then_some(count)
}

/// `framelane rig --config` in a child process (stdin kept open, output discarded).
fn headless_rig(config: &Path) -> std::process::Child {
    framelane()
        .args(["rig", "--status-interval-s", "0", "--config"])
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the rig")
}

#[test]
fn a_headless_rig_takes_triggers_from_another_process_and_survives_sigkill() {
    let dir = ScratchDir::new("rig-cli");
    let config = write_config(dir.path());
    let clips_dir = dir.path().join("clips");
    let mut rig = headless_rig(&config);
    wait_until(|| {
        (clips_dir.join("rig.sock").exists() && trigger(&config).starts_with("ok trigger"))
            .then_some(())
    })
    .expect("the rig takes a trigger");
    let first = wait_until(|| clip::list(&clips_dir).first().cloned()).expect("a clip is written");
    assert_eq!(first.1.cameras.len(), 2);
    // More triggers, then SIGKILL while their clips may be being written.
    for _ in 0..3 {
        assert!(trigger(&config).starts_with("ok trigger"));
    }
    // Killed as soon as the second clip is listed: the later ones are pending or half written.
    wait_until(|| (clip::list(&clips_dir).len() >= 2).then_some(())).expect("a second clip");
    rig.kill().expect("SIGKILL");
    let _ = rig.wait();
    let listed = clip::list(&clips_dir);
    assert!(!listed.is_empty());
    for (folder, description) in &listed {
        for cam in &description.cameras {
            assert_eq!(
                played(&folder.join(&cam.file)),
                Some(cam.frames),
                "{}/{} plays to its end",
                folder.display(),
                cam.file
            );
        }
    }
    // A restart on the same folder (the dead rig's socket is still there) works.
    let mut again = headless_rig(&config);
    let status = wait_until(|| {
        let out = output_within(
            framelane().args(["rig", "status", "--config"]).arg(&config),
            30,
        )?;
        let value: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (value["cameras"][0]["state"] == "live").then_some(value)
    })
    .expect("the restarted rig answers");
    assert_eq!(status["cameras"].as_array().map(Vec::len), Some(2));
    // SAFETY: signalling our own child so it writes pending clips and stops cleanly.
    unsafe { libc::kill(again.id() as i32, libc::SIGTERM) };
    let _ = again.wait();
}

#[test]
fn a_bad_rig_file_is_refused_with_line_and_key() {
    let dir = ScratchDir::new("rig-bad");
    let config = write_config(dir.path());
    let text = std::fs::read_to_string(&config).expect("read");
    std::fs::write(
        &config,
        text.replace("fps: 30\n  - name: b", "fps: 900\n  - name: b"),
    )
    .expect("write");
    let out = output_within(framelane().args(["rig", "--config"]).arg(&config), 30)
        .expect("refused at once");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("rig.yaml:5") && stderr.contains("fps"),
        "{stderr}"
    );
}

/// A daemon on a scratch data directory and a one-camera rig whose recording section gets
/// `extra` YAML lines (the data directory is `telemetry_data_dir`).
fn daemon_and_rig(
    dir: &Path,
    post_roll_ms: u64,
    extra: &str,
) -> (framelane_core::daemon::Daemon, framelane_rig::Rig) {
    let data = dir.join("data");
    let mut config = framelane_core::daemon::DaemonConfig::new(data.clone());
    config.listen = "127.0.0.1:0".parse().expect("addr");
    let daemon = framelane_core::daemon::Daemon::start(config).expect("daemon");
    let yaml = format!(
        "cameras:\n  - name: a\n    source: synthetic\n    size: 320x240\n    fps: 30\nrecording:\n  pre_roll_ms: 500\n  post_roll_ms: {post_roll_ms}\n  gop_ms: 250\n  output_dir: clips\n  disk_reserve_mb: 1\n  telemetry_data_dir: {}\n{extra}",
        data.display()
    );
    let rig = framelane_rig::Rig::start(
        framelane_rig::RigConfig::parse(&yaml, &dir.join("rig.yaml")).expect("config"),
    )
    .expect("rig");
    (daemon, rig)
}

#[test]
fn a_clip_carries_the_telemetry_the_daemon_received_during_it() {
    use common::{runtime, step, telemetry_client};
    use framelane_core::fastlane::shm::monotonic_ns;
    let dir = ScratchDir::new("rig-telemetry");
    let (daemon, rig) = daemon_and_rig(dir.path(), 1500, "");
    let addr = daemon.local_addr();
    let rt = runtime();
    let publish = |run: &'static str| {
        rt.block_on(async {
            let mut client = telemetry_client(addr).await;
            client
                .publish_steps(tokio_stream::iter((0..3).map(move |i| step(run, i))))
                .await
                .expect("committed");
        })
    };
    // Received well before the clip's interval (more than the pre-roll and a GOP earlier).
    publish("before");
    let earlier = monotonic_ns();
    wait_until(|| (monotonic_ns() > earlier + 1_500_000_000).then_some(())).expect("time passes");
    assert!(rig.trigger());
    // Received inside it.
    publish("during");
    let (folder, clip) = wait_until(|| rig.clips().first().cloned()).expect("a clip");
    assert_eq!(clip.telemetry_note, "", "the slice was read");
    let text = std::fs::read_to_string(folder.join("telemetry.jsonl")).expect("telemetry.jsonl");
    let runs: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("json")["run_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(
        runs,
        vec!["during"; 3],
        "exactly the steps received during the clip: {text}"
    );
    assert_eq!(clip.telemetry_items, 3);
    rig.stop();
    daemon.shutdown();
}

#[test]
fn an_episode_end_recorded_by_the_daemon_triggers_a_clip_for_watched_runs_only() {
    use common::{runtime, telemetry_client};
    use framelane_core::ingest::proto::framelane_v1 as v1;
    let dir = ScratchDir::new("rig-episode");
    let (daemon, rig) = daemon_and_rig(
        dir.path(),
        300,
        "  trigger_on_episode_end: true\n  trigger_runs: [watched]\n",
    );
    let addr = daemon.local_addr();
    let rt = runtime();
    let episode = |run: &'static str| {
        rt.block_on(async {
            let mut client = telemetry_client(addr).await;
            client
                .publish_episodes(tokio_stream::iter([v1::Episode {
                    run_id: run.into(),
                    episode: 0,
                    steps: 10,
                    ..Default::default()
                }]))
                .await
                .expect("committed");
        })
    };
    episode("ignored");
    episode("watched");
    let Some((_, clip)) = wait_until(|| rig.clips().first().cloned()) else {
        let status = rig.status();
        panic!(
            "no clip from the episode end: {} triggers, {} written, {} failed, errors {:?}",
            status.triggers, status.clips_written, status.clips_failed, status.errors
        );
    };
    assert_eq!(clip.triggers_ns.len(), 1);
    let status = rig.status();
    assert_eq!(
        status.triggers, 1,
        "only the watched run's episode triggered"
    );
    rig.stop();
    daemon.shutdown();
}

#[test]
fn a_trigger_over_grpc_makes_a_clip_that_the_daemons_store_lists_once() {
    use common::runtime;
    use framelane_core::ingest::client;
    let dir = ScratchDir::new("rig-grpc");
    let (daemon, rig) = daemon_and_rig(dir.path(), 300, "  grpc_listen: 127.0.0.1:0\n");
    let rig_addr = rig.grpc_addr().expect("the rig serves gRPC");
    // From another process, as lab software would.
    let out = output_within(
        framelane().args([
            "rig",
            "trigger",
            "--addr",
            &rig_addr.to_string(),
            "--source",
            "test",
        ]),
        30,
    )
    .expect("trigger returns");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.starts_with("ok trigger 1"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (folder, clip) = wait_until(|| rig.clips().first().cloned()).expect("a clip");
    let folder = std::fs::canonicalize(folder).expect("clip folder");
    let rt = runtime();
    let listed = wait_until(|| {
        rt.block_on(client::list_clips(daemon.local_addr(), 0))
            .ok()
            .filter(|l| !l.is_empty())
    })
    .expect("the daemon lists the clip");
    assert_eq!(listed.len(), 1, "{listed:?}");
    let record = &listed[0];
    assert_eq!(record.clip_id, clip.id);
    assert_eq!(record.folder, folder.display().to_string());
    assert_eq!(record.files.len(), 1);
    assert_eq!(record.files[0].frames, clip.cameras[0].frames);
    assert_eq!(
        played(Path::new(&record.files[0].path)),
        Some(record.files[0].frames),
        "the listed file plays: {record:?}"
    );
    // A re-send (a restarted rig lists its folder again) changes nothing.
    let again = rt
        .block_on(client::register_clip(daemon.local_addr(), record.clone()))
        .expect("re-send acknowledged");
    assert!(!again, "a re-sent clip is not listed twice");
    assert_eq!(
        rt.block_on(client::list_clips(daemon.local_addr(), 0))
            .expect("list")
            .len(),
        1
    );
    // A record naming files outside its folder is refused, naming the field.
    let mut hostile = record.clone();
    hostile.files[0].path = "/etc/passwd".into();
    let refused = rt
        .block_on(client::register_clip(daemon.local_addr(), hostile))
        .expect_err("outside the folder")
        .to_string();
    assert!(refused.contains("files.path"), "{refused}");
    // The status over gRPC, from another process, counts the listed clip.
    let out = output_within(
        framelane().args(["rig", "status", "--addr", &rig_addr.to_string()]),
        30,
    )
    .expect("status returns");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status is JSON");
    assert_eq!(status["clips_written"], 1, "{status}");
    assert_eq!(status["clips_registered"], 1, "{status}");
    rig.stop();
    daemon.shutdown();
}

#[test]
fn a_rig_api_beyond_loopback_needs_a_token() {
    let dir = ScratchDir::new("rig-grpc-token");
    let yaml = "cameras:\n  - name: a\n    source: synthetic\n    size: 64x48\n    fps: 10\nrecording:\n  output_dir: clips\n  disk_reserve_mb: 1\n  grpc_listen: 0.0.0.0:0\n";
    let mut config =
        framelane_rig::RigConfig::parse(yaml, &dir.path().join("rig.yaml")).expect("config");
    config.token = None;
    let err = framelane_rig::Rig::start(config)
        .err()
        .expect("refused without a token")
        .to_string();
    assert!(
        err.contains("grpc_listen") && err.contains("needs a token"),
        "{err}"
    );
}
