//! The rig end to end with synthetic cameras: real capture and encode threads, real H.264
//! packets in the rings, real clip files read back frame by frame.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use framelane_core::fastlane::shm::monotonic_ns;
use framelane_core::media::stamp::read_stamp;
use framelane_core::replay::VideoReader;
use framelane_rig::clip::ClipDescription;
use framelane_rig::{Rig, RigConfig};

const FPS: u32 = 30;
const PERIOD_MS: f64 = 1000.0 / FPS as f64;

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("framelane-rig-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch");
    dir
}

fn config(dir: &Path, cameras: &[(&str, &str)], overlap: &str) -> RigConfig {
    let mut yaml = String::from("cameras:\n");
    for (name, source) in cameras {
        yaml.push_str(&format!(
            "  - name: {name}\n    source: {source}\n    size: 320x240\n    fps: {FPS}\n"
        ));
    }
    yaml.push_str(&format!(
        "recording:\n  pre_roll_ms: 1000\n  post_roll_ms: 600\n  gop_ms: 250\n  output_dir: {}\n  disk_reserve_mb: 1\n  overlap: {overlap}\n",
        dir.join("clips").display()
    ));
    RigConfig::parse(&yaml, &dir.join("rig.yaml")).expect("config")
}

fn wait_for<T>(what: &str, seconds: u64, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// (frame number, camera id) of every frame in a clip file, in presentation order. Clip
/// timestamps are capture times, so a frame captured late leaves a gap in the numbers the
/// reader derives from them: walking by number would stop at the first gap.
fn stamps(path: &Path) -> Vec<(u64, u64)> {
    let mut reader = VideoReader::open(path, FPS, 8).expect("clip opens");
    let mut out = Vec::new();
    while let Some((_, f)) = reader.next_frame().expect("frame decodes") {
        out.push((
            read_stamp(&f.rgba, f.width, f.height, 4, 0).expect("frame stamp"),
            read_stamp(&f.rgba, f.width, f.height, 4, 1).expect("camera stamp"),
        ));
    }
    out
}

fn warm(rig: &Rig) {
    wait_for("1.5 s of pre-roll in every ring", 30, || {
        rig.status()
            .cameras
            .iter()
            .all(|c| c.ring_seconds >= 1.5)
            .then_some(())
    });
}

fn one_clip(rig: &Rig, count: usize) -> Vec<(PathBuf, ClipDescription)> {
    wait_for("the clip", 30, || {
        let clips = rig.clips();
        (clips.len() >= count).then_some(clips)
    })
}

#[test]
fn a_trigger_saves_every_camera_from_before_to_after_it() {
    let dir = scratch("trigger");
    let rig = Rig::start(config(
        &dir,
        &[("left", "synthetic"), ("right", "synthetic")],
        "extend",
    ))
    .expect("rig");
    warm(&rig);
    let before = monotonic_ns();
    assert!(rig.trigger());
    let clips = one_clip(&rig, 1);
    let (folder, clip) = &clips[0];
    assert_eq!(clip.cameras.len(), 2, "{clip:?}");
    assert!(clip.missing.is_empty(), "{:?}", clip.missing);
    assert!(clip.triggers_ns[0] >= before);
    for (i, cam) in clip.cameras.iter().enumerate() {
        // Starts at the keyframe at or before t - pre-roll (by at most one GOP and a frame).
        assert!(
            cam.start_offset_ms <= -1000.0,
            "{}: starts {} ms",
            cam.name,
            cam.start_offset_ms
        );
        assert!(
            cam.start_offset_ms >= -(1000.0 + 250.0 + PERIOD_MS + 5.0),
            "{}: starts {} ms",
            cam.name,
            cam.start_offset_ms
        );
        assert!(
            cam.end_offset_ms >= 600.0,
            "{}: ends {} ms",
            cam.name,
            cam.end_offset_ms
        );
        let frames = stamps(&folder.join(&cam.file));
        assert_eq!(
            frames.len() as u64,
            cam.frames,
            "{}: every packet is a frame",
            cam.name
        );
        assert!(
            frames.iter().all(|&(_, id)| id == i as u64),
            "{}: only its own frames",
            cam.name
        );
        for pair in frames.windows(2) {
            assert_eq!(
                pair[1].0,
                pair[0].0 + 1,
                "{}: no gap and no duplicate ({pair:?})",
                cam.name
            );
        }
        let status = &rig.status().cameras[i];
        assert_eq!(
            status.dropped, 0,
            "{}: no frame dropped at 320x240",
            cam.name
        );
    }
    assert!(
        clip.start_skew_ms <= PERIOD_MS + 5.0,
        "cameras start within a frame: {} ms",
        clip.start_skew_ms
    );
    let handoff = rig.status().cameras[0].handoff_us;
    assert!(
        handoff[2] > 0.0,
        "hand-off latencies are measured ({handoff:?})"
    );
    rig.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_trigger_during_the_post_roll_extends_the_clip() {
    let dir = scratch("extend");
    let rig = Rig::start(config(&dir, &[("only", "synthetic")], "extend")).expect("rig");
    warm(&rig);
    assert!(rig.trigger());
    // The second trigger comes while the first clip waits for its post-roll.
    wait_for("the first clip to be pending", 10, || {
        (rig.status().pending == 1).then_some(())
    });
    assert!(rig.trigger());
    // Every trigger handled (nothing pending) and at least one clip written: with the extend
    // policy that is exactly one clip.
    let clips = wait_for("every trigger's clip", 30, || {
        let clips = rig.clips();
        (!clips.is_empty() && rig.status().pending == 0).then_some(clips)
    });
    assert_eq!(clips.len(), 1, "one clip for two overlapping triggers");
    let clip = &clips[0].1;
    assert_eq!(clip.triggers_ns.len(), 2);
    let second_ms = (clip.triggers_ns[1] - clip.triggers_ns[0]) as f64 / 1e6;
    assert!(
        clip.cameras[0].end_offset_ms >= second_ms + 600.0,
        "ends after the second trigger's post-roll: {clip:?}"
    );
    rig.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_failing_camera_is_shown_and_does_not_stop_the_others() {
    let dir = scratch("failing");
    let rig = Rig::start(config(
        &dir,
        &[("good", "synthetic"), ("gone", "/nonexistent/camera.mp4")],
        "next",
    ))
    .expect("rig");
    let status = wait_for("the failing camera's state", 10, || {
        let s = rig.status();
        (s.cameras[1].state == "retrying" && s.cameras[0].ring_seconds >= 1.5).then_some(s)
    });
    assert!(
        status.cameras[1].reason.contains("no such file"),
        "{:?}",
        status.cameras[1]
    );
    assert_eq!(status.cameras[0].state, "live");
    assert!(rig.trigger());
    let clips = one_clip(&rig, 1);
    let clip = &clips[0].1;
    assert_eq!(clip.cameras.len(), 1);
    assert_eq!(
        clip.missing.len(),
        1,
        "the missing camera is named: {:?}",
        clip.missing
    );
    assert!(clip.missing[0].starts_with("gone"));
    rig.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Mounts a tmpfs of `mb` megabytes at `dir` (root only); false when that is not allowed.
fn mount_tmpfs(dir: &Path, mb: u32) -> bool {
    std::fs::create_dir_all(dir).expect("mount point");
    std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn a_full_disk_fails_clips_clearly_and_recording_recovers_when_space_returns() {
    let dir = scratch("full");
    let clips = dir.join("clips");
    // SAFETY: geteuid only reads the process's credentials.
    let root = unsafe { libc::geteuid() } == 0;
    let mounted = root && mount_tmpfs(&clips, 4);
    assert!(
        !root || mounted,
        "root could not mount a tmpfs for the full-disk test"
    );
    let mut config = config(&dir, &[("cam", "synthetic")], "next");
    // On a real small file system the write fails; without one, a reserve larger than any disk
    // takes the same refusal path.
    config.recording.disk_reserve_mb = if mounted { 0 } else { u64::MAX / 2 };
    let rig = Rig::start(config).expect("rig");
    warm(&rig);
    let filler = clips.join("filler");
    if mounted {
        // Fill the file system to the last byte.
        use std::io::Write;
        let mut file = std::fs::File::create(&filler).expect("filler");
        let block = vec![7u8; 64 << 10];
        while file.write_all(&block).is_ok() {}
        let mut byte = [7u8];
        while file.write_all(&byte).is_ok() {
            byte[0] = 7;
        }
    }
    assert!(rig.trigger());
    let status = wait_for("the failed clip", 30, || {
        let s = rig.status();
        (s.clips_failed >= 1).then_some(s)
    });
    let error = status.errors.last().cloned().unwrap_or_default();
    assert!(
        error.contains("No space left") || error.contains("below the") || error.contains("space"),
        "the error says the disk is full: {error}"
    );
    assert!(rig.clips().is_empty(), "no half clip is listed");
    assert_eq!(status.cameras[0].state, "live", "recording goes on");
    if mounted {
        std::fs::remove_file(&filler).expect("free the space");
        assert!(rig.trigger());
        wait_for("a clip once space is back", 30, || {
            (!rig.clips().is_empty()).then_some(())
        });
    }
    rig.stop();
    if mounted {
        let _ = std::process::Command::new("umount").arg(&clips).status();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_control_socket_survives_a_client_that_never_ends_its_line() {
    use std::io::Write;
    let dir = scratch("socket");
    let config = config(&dir, &[("cam", "synthetic")], "extend");
    let out = config.output_dir();
    let rig = Rig::start(config).expect("rig");
    {
        let mut hostile =
            std::os::unix::net::UnixStream::connect(out.join(framelane_rig::rig::SOCKET))
                .expect("connect");
        let junk = vec![b'x'; 1 << 20];
        // The rig stops reading after 256 bytes and closes: the write may fail; that is fine.
        let _ = hostile.write_all(&junk);
    }
    let reply = framelane_rig::rig::send_command(&out, "status").expect("the rig still answers");
    let status: serde_json::Value = serde_json::from_str(&reply).expect("status is JSON");
    assert_eq!(
        status["triggers"], 0,
        "the junk was not taken for a trigger"
    );
    let reply = framelane_rig::rig::send_command(&out, "launch").expect("answers");
    assert!(reply.contains("unknown command"), "{reply}");
    rig.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_fast_lane_run_is_a_camera() {
    use framelane_core::fastlane::{FastLaneWriter, HudValues, PixelFormat, WriterConfig};
    use framelane_core::media::stamp::stamp;
    let dir = scratch("fastlane");
    let run = format!("rig-test-{}", std::process::id());
    // A producer publishing RGBA frames with their number stamped; the rig records them as RGB.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producer = {
        let (stop, run) = (stop.clone(), run.clone());
        std::thread::spawn(move || {
            let mut writer =
                FastLaneWriter::create(&run, WriterConfig::new(320, 240, PixelFormat::Rgba8))
                    .expect("segment");
            let mut rgb = vec![0u8; 320 * 240 * 3];
            let mut rgba = vec![0u8; 320 * 240 * 4];
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                rgb.fill(60);
                stamp(n, 0, &mut rgb, 320, 240);
                for (d, s) in rgba.chunks_exact_mut(4).zip(rgb.chunks_exact(3)) {
                    d[..3].copy_from_slice(s);
                    d[3] = 255;
                }
                writer
                    .publish(&rgba, &HudValues::default())
                    .expect("publish");
                n += 1;
                std::thread::sleep(Duration::from_millis(33));
            }
        })
    };
    let source = format!("fastlane:{run}");
    let rig = Rig::start(config(&dir, &[("robot", source.as_str())], "extend")).expect("rig");
    warm(&rig);
    assert_eq!(
        rig.status().cameras[0].state,
        "live",
        "{:?}",
        rig.status().cameras[0]
    );
    assert!(rig.trigger());
    let clips = one_clip(&rig, 1);
    let (folder, clip) = &clips[0];
    let frames = stamps(&folder.join(&clip.cameras[0].file));
    assert!(frames.len() > 20, "{} frames", frames.len());
    for pair in frames.windows(2) {
        assert!(
            pair[1].0 > pair[0].0,
            "the producer's frames in order, none twice: {pair:?}"
        );
    }
    rig.stop();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = producer.join();
    let _ = std::fs::remove_dir_all(&dir);
}
