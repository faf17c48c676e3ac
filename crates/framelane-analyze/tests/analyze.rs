//! Episode analysis end to end: real H.264 files with B-frames written by the ffmpeg tool,
//! a real face photograph, real OpenCV detection, real JPEG exports.

use std::path::{Path, PathBuf};

use framelane_analyze::manifest::{AnalysedLine, DetectionLine, TrackLine};
use framelane_analyze::progress::ProgressStyle;
use framelane_analyze::scene::SceneCut;
use framelane_analyze::synth::{read_stamp, FaceShot, Sprite, SynthSpec};
use framelane_analyze::track::BBox;
use framelane_analyze::{analyze, AnalyzeError, AnalyzeOptions};

/// The face photograph the setup script fetches (scikit-image's public-domain astronaut).
fn face_image() -> PathBuf {
    let path = std::env::var_os("FRAMELANE_FACE_IMAGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .expect("HOME or XDG_CACHE_HOME is set");
            home.join("framelane/testdata/astronaut.png")
        });
    assert!(
        path.is_file(),
        "{} is missing: run ./scripts/setup-debian.sh",
        path.display()
    );
    path
}

/// Where the face is inside the sprite (found once with the default cascade).
const SPRITE_REGION: (u32, u32, u32, u32) = (150, 35, 150, 150);
const FACE_IN_SPRITE: (f32, f32, f32) = (27.0, 32.0, 93.0);

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("framelane-analyze-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn read_lines<T: serde::de::DeserializeOwned>(path: &Path) -> Vec<T> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}: {l}", path.display())))
        .collect()
}

/// Scenes of 60, 40, 8, 10, 70 and 52 frames: cuts at 60, 100, 108, 118 and 188, the middle
/// ones closer together than the 24-frame cooldown. The face crosses scene 0 and scene 4.
fn episode_spec() -> SynthSpec {
    let mut spec = SynthSpec::new(640, 360, 30, vec![60, 40, 8, 10, 70, 52]);
    spec.face = Some(Sprite::from_png(&face_image(), SPRITE_REGION).expect("face sprite"));
    spec.shots = vec![
        FaceShot {
            start: 5,
            end: 55,
            from: (20, 100),
            to: (420, 120),
        },
        FaceShot {
            start: 130,
            end: 180,
            from: (450, 40),
            to: (60, 170),
        },
    ];
    spec
}

fn expected_face(spec: &SynthSpec, frame: u64) -> Option<BBox> {
    let (x, y) = spec.face_at(frame)?;
    let (fx, fy, side) = FACE_IN_SPRITE;
    Some(BBox {
        x: x as f32 + fx,
        y: y as f32 + fy,
        w: side,
        h: side,
    })
}

fn has_b_frames(path: &Path) -> bool {
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=has_b_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse::<u32>()
        .unwrap_or(0)
        > 0
}

#[test]
fn cuts_resets_frames_faces_tracks_and_exports_follow_the_rules() {
    let dir = scratch("rules");
    let spec = episode_spec();
    let video = spec.write(&dir.join("episode.mp4")).expect("video written");
    assert!(has_b_frames(&video), "the test video has B-frames");
    let mut options = AnalyzeOptions::new("ep-7", &video, dir.join("out"));
    options.stride = 6;
    options.scene_warmup = 2;
    options.save_frames = true;
    options.save_crops = true;
    options.track_sample_limit = 3;
    let summary = analyze(&options, ProgressStyle::Quiet).expect("analysis");
    let out = dir.join("out");
    assert_eq!(summary.status, "complete");
    assert_eq!(summary.frames_decoded, spec.frames());

    // Every cut found, each at its frame; resets only outside the cooldown.
    let cuts: Vec<SceneCut> =
        serde_json::from_slice(&std::fs::read(out.join("scene_cuts.json")).expect("cuts"))
            .expect("json");
    let found: Vec<(u64, bool)> = cuts.iter().map(|c| (c.frame, c.tracker_reset)).collect();
    assert_eq!(
        found,
        vec![
            (60, true),
            (100, true),
            (108, false),
            (118, false),
            (188, true)
        ]
    );
    assert_eq!(summary.scene.resets, 3);
    assert_eq!(summary.scene.resets_skipped, 2);

    // Exactly the frames the rules select.
    let cut_frames = spec.cut_frames();
    let expected: Vec<u64> = (0..spec.frames())
        .filter(|&n| {
            let last_cut = cut_frames.iter().rev().find(|&&c| c <= n);
            n % 6 == 0 || cut_frames.contains(&n) || last_cut.is_some_and(|&c| n > c && n - c <= 2)
        })
        .collect();
    let analysed: Vec<AnalysedLine> = read_lines(&out.join("analysed.jsonl"));
    let numbers: Vec<u64> = analysed.iter().map(|a| a.frame).collect();
    assert_eq!(numbers, expected);

    // The face is found in every analysed frame it is in (where it is), and nowhere else.
    let detections: Vec<DetectionLine> = read_lines(&out.join("detections.jsonl"));
    for a in &analysed {
        let here: Vec<&DetectionLine> = detections.iter().filter(|d| d.frame == a.frame).collect();
        match expected_face(&spec, a.frame) {
            Some(face) => {
                let best = here
                    .iter()
                    .map(|d| {
                        BBox {
                            x: d.bbox[0],
                            y: d.bbox[1],
                            w: d.bbox[2],
                            h: d.bbox[3],
                        }
                        .iou(&face)
                    })
                    .fold(0.0, f32::max);
                assert!(
                    best > 0.5,
                    "frame {}: face at {face:?} not found (best IoU {best}, {} boxes)",
                    a.frame,
                    here.len()
                );
            }
            None => assert!(
                here.is_empty(),
                "frame {}: {} boxes where no face is",
                a.frame,
                here.len()
            ),
        }
    }

    // One track per continuous appearance, ids numbered by first appearance.
    let tracks: Vec<TrackLine> = read_lines(&out.join("tracks.jsonl"));
    assert_eq!(tracks.len(), 2, "{tracks:?}");
    assert_eq!(tracks[0].track, 1);
    assert!(
        tracks[0].first_frame >= 5 && tracks[0].last_frame < 55,
        "{:?}",
        tracks[0]
    );
    assert!(
        tracks[1].first_frame >= 130 && tracks[1].last_frame < 180,
        "{:?}",
        tracks[1]
    );
    for d in &detections {
        let id = d
            .track
            .expect("stamped")
            .expect("every detection belongs to a kept track");
        assert!(id == 1 || id == 2);
    }
    // Crops: at most the sample limit per track, every listed crop on disk.
    for t in &tracks {
        assert!(!t.crops.is_empty() && t.crops.len() <= 3, "{:?}", t.crops);
        for c in &t.crops {
            assert!(out.join(c).is_file(), "{c}");
        }
    }

    // Every exported frame is the frame its manifest line names.
    for a in &analysed {
        let file = a.file.as_ref().expect("frames saved");
        let bytes = std::fs::read(out.join(file)).expect("frame file");
        let image = framelane_core::media::decode_jpeg(&bytes).expect("jpeg");
        let rgba = image.into_rgba();
        assert_eq!(read_stamp(&rgba, 640, 360, 4), Some(a.frame), "{file}");
    }
    assert_eq!(
        summary.export.written,
        summary.frames.frames_saved + summary.frames.crops_saved
    );
    assert!(
        !out.join("checkpoint.json").exists(),
        "a complete run leaves no checkpoint"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_damaged_video_names_the_frame_and_keeps_what_came_before() {
    let dir = scratch("corrupt");
    let mut spec = SynthSpec::new(320, 240, 30, vec![150]);
    spec.gop = 30;
    let video = spec.write(&dir.join("good.mp4")).expect("video");
    let mut bytes = std::fs::read(&video).expect("read");
    // Garbage over the middle of the media data.
    let at = bytes.len() * 6 / 10;
    for (i, b) in bytes[at..at + 4000].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(151).wrapping_add(7);
    }
    let damaged = dir.join("damaged.mp4");
    std::fs::write(&damaged, &bytes).expect("write");
    let mut options = AnalyzeOptions::new("ep", &damaged, dir.join("out"));
    options.stride = 1;
    let err = analyze(&options, ProgressStyle::Quiet).expect_err("damaged");
    let AnalyzeError::Corrupt { frame, .. } = err else {
        panic!("expected a damage error naming the frame, got: {err}");
    };
    assert!(frame > 0 && frame < 150, "{frame}");
    let analysed: Vec<AnalysedLine> = read_lines(&dir.join("out/analysed.jsonl"));
    assert_eq!(
        analysed.len() as u64,
        frame,
        "every frame before the damage is kept"
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("out/summary.json")).expect("summary"))
            .expect("json");
    assert_eq!(summary["status"], "failed");
    assert!(
        summary["error"]
            .as_str()
            .is_some_and(|e| e.contains(&format!("frame {frame}"))),
        "{summary}"
    );

    // Truncated: the second half of the file is gone.
    let truncated = dir.join("truncated.mp4");
    std::fs::write(
        &truncated,
        &std::fs::read(&video).expect("read")[..bytes.len() / 2],
    )
    .expect("write");
    let mut options = AnalyzeOptions::new("ep", &truncated, dir.join("out2"));
    options.stride = 1;
    let err = analyze(&options, ProgressStyle::Quiet)
        .expect_err("truncated")
        .to_string();
    assert!(
        err.contains("truncated") || err.contains("damaged at frame"),
        "{err}"
    );
    let kept: Vec<AnalysedLine> = read_lines(&dir.join("out2/analysed.jsonl"));
    assert!(
        !kept.is_empty() && kept.len() < 150,
        "{} frames kept",
        kept.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn files_that_are_not_videos_get_a_clear_error() {
    let dir = scratch("novideo");
    let audio = dir.join("tone.m4a");
    let status = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "sine=duration=1",
            "-c:a",
            "aac",
        ])
        .arg(&audio)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success());
    let err = analyze(
        &AnalyzeOptions::new("ep", &audio, dir.join("a")),
        ProgressStyle::Quiet,
    )
    .expect_err("no video")
    .to_string();
    assert!(
        err.contains("no video stream") && err.contains("tone.m4a"),
        "{err}"
    );
    let text = dir.join("notes.mp4");
    std::fs::write(&text, b"these are not the frames you are looking for").expect("write");
    let err = analyze(
        &AnalyzeOptions::new("ep", &text, dir.join("b")),
        ProgressStyle::Quiet,
    )
    .expect_err("text")
    .to_string();
    assert!(
        err.contains("notes.mp4") && err.contains("not a readable video"),
        "{err}"
    );
    let err = analyze(
        &AnalyzeOptions::new("ep", dir.join("missing.mp4"), dir.join("c")),
        ProgressStyle::Quiet,
    )
    .expect_err("missing")
    .to_string();
    assert!(
        err.contains("missing.mp4") && err.contains("no such file"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
