//! `framelane analyze` as a user runs it: a process killed with SIGKILL mid-walk resumes from
//! its checkpoint and ends with the same manifests as an uninterrupted run; bad flags are
//! refused with the flag named.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{output_within, wait_until, ScratchDir};
use framelane_analyze::synth::{FaceShot, Sprite, SynthSpec};

fn framelane() -> Command {
    Command::new(env!("CARGO_BIN_EXE_framelane"))
}

fn face_sprite() -> Sprite {
    let home = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache")))
        .expect("HOME is set");
    let path = std::env::var_os("FRAMELANE_FACE_IMAGE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| home.join("framelane/testdata/astronaut.png"));
    Sprite::from_png(&path, (150, 35, 150, 150))
        .expect("face image (run ./scripts/setup-debian.sh)")
}

fn analyze_args(video: &Path, out: &Path) -> Vec<String> {
    [
        "analyze",
        "--ep-id",
        "ep-resume",
        "--video",
        &video.to_string_lossy(),
        "--out",
        &out.to_string_lossy(),
        "--stride",
        "1",
        "--save-frames",
        "--jpeg-quality",
        "50",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_killed_analysis_resumes_and_ends_as_if_never_interrupted() {
    let dir = ScratchDir::new("analyze-resume");
    let mut spec = SynthSpec::new(480, 270, 30, vec![400, 300, 300, 200]);
    spec.face = Some(face_sprite());
    spec.shots = vec![
        FaceShot {
            start: 50,
            end: 350,
            from: (10, 60),
            to: (300, 90),
        },
        FaceShot {
            start: 720,
            end: 1100,
            from: (300, 20),
            to: (30, 100),
        },
    ];
    let video = spec.write(&dir.path().join("episode.mp4")).expect("video");

    // The reference: one uninterrupted run.
    let reference = dir.path().join("reference");
    let out = output_within(
        framelane()
            .args(analyze_args(&video, &reference))
            .arg("--quiet"),
        300,
    )
    .expect("the reference run ends");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The same run, killed once it has checkpointed past the first frames.
    let resumed = dir.path().join("resumed");
    let mut child = framelane()
        .args(analyze_args(&video, &resumed))
        .arg("--progress-json")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    let checkpoint = resumed.join("checkpoint.json");
    let at = wait_until(|| {
        let text = std::fs::read_to_string(&checkpoint).ok()?;
        let value: serde_json::Value = serde_json::from_str(&text).ok()?;
        value["next_frame"].as_u64().filter(|&n| n > 0)
    });
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let at = at.expect("a checkpoint within the deadline");
    assert!(
        at < spec.frames(),
        "killed before the end (checkpoint at {at})"
    );
    assert!(
        !resumed.join("summary.json").exists(),
        "no summary from a killed run"
    );

    let out = output_within(
        framelane()
            .args(analyze_args(&video, &resumed))
            .arg("--quiet"),
        300,
    )
    .expect("the resumed run ends");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_str(&read(&resumed.join("summary.json"))).expect("summary");
    let resumed_at = summary["resumed_at"]
        .as_u64()
        .expect("the second run resumed");
    assert!(
        resumed_at >= at,
        "resumed at {resumed_at}, checkpoint said {at}"
    );
    for name in [
        "analysed.jsonl",
        "detections.jsonl",
        "tracks.jsonl",
        "scene_cuts.json",
    ] {
        assert_eq!(
            read(&resumed.join(name)),
            read(&reference.join(name)),
            "{name} differs after the resume"
        );
    }
    let list = |d: &Path| {
        let mut names: Vec<String> = std::fs::read_dir(d.join("frames"))
            .expect("frames")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        list(&resumed),
        list(&reference),
        "the same frames exported, no .part left"
    );
    assert_eq!(summary["frames_decoded"].as_u64(), Some(spec.frames()));
}

#[test]
fn bad_analyze_flags_are_refused_with_the_flag_named() {
    let dir = ScratchDir::new("analyze-flags");
    let video = dir.path().join("v.mp4");
    let cases: [(&[&str], &str); 4] = [
        (&["--stride", "0"], "--stride"),
        (&["--scene-threshold", "NaN"], "--scene-threshold"),
        (&["--device", "gpu"], "--device"),
        (&["--max-gap-sec=-1"], "--max-gap-sec"),
    ];
    for (extra, flag) in cases {
        let out = output_within(
            framelane()
                .args(["analyze", "--ep-id", "e", "--video"])
                .arg(&video)
                .arg("--out")
                .arg(dir.path().join("out"))
                .args(extra),
            60,
        )
        .expect("refused at once");
        assert!(!out.status.success(), "{extra:?} accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(flag), "{extra:?}: {stderr}");
    }
}
