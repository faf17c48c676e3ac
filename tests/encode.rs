//! Encoder queues end to end: real FFmpeg encodes from memory, decoded back and checked frame by
//! frame; codec fallback; `framelane encode` killed with SIGKILL mid-recording; a deliberately
//! slow encoder against the queue policy.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::ScratchDir;
use framelane::bench::pattern::{add_sensor_noise, numbered_frame, psnr_rgb_rgba, read_number};
use framelane_core::bus::RawPixelFormat;
use framelane_core::encode::{
    probe, CodecFamily, Container, EncoderService, EncoderSettings, IndexSink, JobSpec,
    SegmentInfo, SegmentOutcome, ServiceConfig,
};
use framelane_core::replay::VideoReader;

const W: u32 = 320;
const H: u32 = 240;

/// The tests of this file take turns: encoders use every core, and the slow-encoder test
/// measures how long a producer waits, which a machine saturated by another test would blur.
static TURN: Mutex<()> = Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}

/// A job for episode `episode` of `run` (no worker or agent) into `path`.
fn episode_job(
    run: &str,
    episode: u64,
    path: std::path::PathBuf,
    settings: EncoderSettings,
) -> JobSpec {
    JobSpec {
        run_id: run.into(),
        worker_id: String::new(),
        agent_id: String::new(),
        episode,
        path,
        settings,
    }
}

/// Encodes frames 0..n with the service and returns the job's counters.
fn encode_numbered(path: &Path, settings: EncoderSettings, n: u64) {
    let service = EncoderService::start(ServiceConfig::never_shed(1), None).expect("service");
    let job = service
        .open_job(episode_job("r", 0, path.to_owned(), settings))
        .expect("job");
    let mut rgb = vec![0; (W * H * 3) as usize];
    for i in 0..n {
        numbered_frame(i, W, H, &mut rgb);
        service
            .submit_copy(job, i, W, H, RawPixelFormat::Rgb8, &rgb, (W * 3) as usize)
            .expect("submit");
    }
    service.finish_job(job).expect("finish");
    let stats = service
        .wait_job(job, Duration::from_secs(120))
        .expect("stats");
    assert!(stats.finished && !stats.failed, "{stats:?}");
    assert_eq!((stats.encoded, stats.shed), (n, 0));
    service.shutdown();
}

/// Decodes every frame: the right number at every index, same size, PSNR above `min_db`.
fn check_round_trip(path: &Path, n: u64, min_db: f64) {
    let mut reader = VideoReader::open(path, 30, 30).expect("open");
    let mut expected = vec![0; (W * H * 3) as usize];
    let mut worst = f64::MAX;
    let mut count = 0;
    reader
        .for_each(|index, frame| {
            assert_eq!((frame.width, frame.height), (W, H));
            assert_eq!(index, count, "frames come in order without gaps");
            assert_eq!(
                read_number(&frame.rgba, W, H),
                index,
                "frame {index} carries its number"
            );
            numbered_frame(index, W, H, &mut expected);
            worst = worst.min(psnr_rgb_rgba(&expected, &frame.rgba));
            count += 1;
        })
        .expect("decode");
    assert_eq!(count, n, "same frame count");
    assert!(
        worst > min_db,
        "worst PSNR {worst:.1} dB is not above {min_db} dB"
    );
    // Random access lands on the exact frame too.
    for target in [n - 1, 0, n / 2, 7, n / 3 + 1] {
        let frame = reader.frame(target).expect("seek").expect("frame there");
        assert_eq!(read_number(&frame.rgba, W, H), target);
    }
}

/// Encodes `n` numbered frames into a file of `ext` and checks them back.
fn round_trip(tag: &str, settings: EncoderSettings, ext: &str, n: u64, min_db: f64) {
    let _turn = turn();
    let dir = ScratchDir::new(tag);
    let path = dir.path().join(format!("a.{ext}"));
    encode_numbered(&path, settings, n);
    check_round_trip(&path, n, min_db);
}

#[test]
fn h264_round_trip_keeps_every_frame_in_place() {
    round_trip(
        "enc-h264",
        EncoderSettings::for_family(CodecFamily::H264),
        "mp4",
        90,
        30.0,
    );
}

#[test]
fn av1_round_trip_keeps_every_frame_in_place() {
    round_trip(
        "enc-av1",
        EncoderSettings::for_family(CodecFamily::Av1),
        "mp4",
        60,
        28.0,
    );
}

#[test]
fn matroska_round_trip_keeps_every_frame_in_place() {
    let mut settings = EncoderSettings::for_family(CodecFamily::H264);
    settings.container = Container::Matroska;
    round_trip("enc-mkv", settings, "mkv", 45, 30.0);
}

#[test]
fn a_disabled_encoder_falls_back_to_the_next_and_the_log_line_says_so() {
    let _turn = turn();
    let mut settings = EncoderSettings::for_family(CodecFamily::H264);
    settings.disabled_encoders = vec!["libx264".into()];
    let report = probe(&settings).expect("a fallback");
    assert_ne!(report.chosen, "libx264");
    assert!(
        report
            .passed_over
            .iter()
            .any(|(name, why)| name == "libx264" && why.contains("disabled by configuration")),
        "{report:?}"
    );

    // The same through the command line: the log line names the choice and the reasons.
    let dir = ScratchDir::new("enc-fallback");
    let out = dir.path().join("f.mp4");
    let mut child = Command::new(env!("CARGO_BIN_EXE_framelane"))
        .args([
            "encode",
            "--raw",
            "64x48",
            "--quiet",
            "--disable-encoder",
            "libx264",
            "-o",
        ])
        .arg(&out)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&vec![90u8; 64 * 48 * 3 * 10])
        .expect("frames");
    let output = child.wait_with_output().expect("wait");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert!(
        log.contains(&format!("h264 encoder: {}", report.chosen))
            && log.contains("libx264: disabled by configuration"),
        "{log}"
    );
    let mut reader = VideoReader::open(&out, 30, 30).expect("open");
    assert_eq!(reader.count_frames().expect("count"), 10);
}

#[test]
fn with_no_usable_encoder_the_error_names_every_candidate() {
    let _turn = turn();
    let mut settings = EncoderSettings::for_family(CodecFamily::Av1);
    settings.disabled_encoders = vec!["libsvtav1".into(), "libaom-av1".into()];
    let err = probe(&settings).expect_err("nothing left").to_string();
    assert!(err.contains("no av1 encoder is usable"), "{err}");
    for name in ["av1_nvenc", "libsvtav1", "libaom-av1"] {
        assert!(err.contains(name), "{err} should name {name}");
    }
}

#[test]
fn killed_encoding_process_leaves_files_that_decode_up_to_their_last_fragment() {
    let _turn = turn();
    let dir = ScratchDir::new("enc-crash");
    const GOP: u64 = 30;
    for (round, (target, container)) in [(45u64, "mp4"), (130, "mp4"), (200, "mkv"), (77, "mp4")]
        .into_iter()
        .enumerate()
    {
        let out = dir.path().join(format!("crash-{round}.{container}"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_framelane"))
            .args(["encode", "--raw", &format!("{W}x{H}"), "--gop", "30"])
            .args(["--container", container, "--progress-json", "-o"])
            .arg(&out)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let mut stdin = child.stdin.take().expect("stdin");
        let feeder = std::thread::spawn(move || {
            let mut rgb = vec![0; (W * H * 3) as usize];
            for i in 0.. {
                numbered_frame(i, W, H, &mut rgb);
                if stdin.write_all(&rgb).is_err() {
                    return;
                }
            }
        });
        let mut reported = 0u64;
        for line in BufReader::new(child.stdout.take().expect("stdout")).lines() {
            let line = line.expect("progress line");
            let value: serde_json::Value = serde_json::from_str(&line).expect("json");
            reported = value["encoded"].as_u64().expect("encoded");
            if reported >= target {
                break;
            }
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        feeder.join().expect("feeder");
        let mut reader = VideoReader::open(&out, 30, 30).expect("the killed file opens");
        // Every decoded frame is the frame its timestamp says; count the gapless prefix (a
        // frame cut short at the very end may be missing).
        let mut decoded = 0u64;
        reader
            .for_each(|index, frame| {
                assert_eq!(read_number(&frame.rgba, W, H), index, "round {round}");
                if index == decoded {
                    decoded += 1;
                }
            })
            .expect("decodes up to its last complete fragment");
        assert!(
            decoded + GOP >= reported,
            "round {round}: {decoded} decodable frames, {reported} were handed to the encoder"
        );
    }
}

#[derive(Default)]
struct CollectIndex {
    frames: Mutex<Vec<(u64, u64)>>,
    closed: Mutex<Vec<(String, u64)>>,
}

impl IndexSink for CollectIndex {
    fn segment_opened(&self, _: &SegmentInfo) {}
    fn frames_written(&self, _: &SegmentInfo, frames: &[(u64, u64)]) {
        self.frames.lock().unwrap().extend_from_slice(frames);
    }
    fn segment_closed(&self, _: &SegmentInfo, outcome: &SegmentOutcome) {
        self.closed
            .lock()
            .unwrap()
            .push((outcome.status.to_owned(), outcome.frames));
    }
}

/// Frames 0..n of `path` that decode, as a process killed now would leave them (a copy is read,
/// the writer keeps going).
fn decodable_prefix(path: &Path, scratch: &Path) -> u64 {
    let copy = scratch.join("as-killed.mp4");
    std::fs::copy(path, &copy).expect("copy the file being written");
    let Ok(mut reader) = VideoReader::open(&copy, 30, 30) else {
        return 0;
    };
    let mut decoded = 0u64;
    let _ = reader.for_each(|index, frame| {
        if index == decoded && read_number(&frame.rgba, W, H) == index {
            decoded += 1;
        }
    });
    decoded
}

#[test]
fn the_frame_index_names_only_frames_the_file_already_holds() {
    let _turn = turn();
    let dir = ScratchDir::new("enc-index");
    let path = dir.path().join("a.mp4");
    let index = Arc::new(CollectIndex::default());
    let service =
        EncoderService::start(ServiceConfig::never_shed(1), Some(index.clone())).expect("service");
    let job = service
        .open_job(episode_job(
            "r",
            0,
            path.clone(),
            EncoderSettings::for_family(CodecFamily::H264),
        ))
        .expect("job");
    let mut rgb = vec![0; (W * H * 3) as usize];
    let mut checked = 0;
    for i in 0..90u64 {
        numbered_frame(i, W, H, &mut rgb);
        service
            .submit_copy(job, i, W, H, RawPixelFormat::Rgb8, &rgb, (W * 3) as usize)
            .expect("submit");
        // At fragment cuts and between them: the encoder holds frames back (lookahead), so
        // a frame handed to it is not yet in the file.
        if ![7, 8, 14, 15, 29, 45, 60, 89].contains(&i) {
            continue;
        }
        common::wait_until(|| (service.job_stats(job).map_or(0, |s| s.encoded) > i).then_some(()))
            .unwrap_or_else(|| panic!("frame {i} never encoded"));
        // Rows first, then the file: a row is sent only after its fragment is written.
        let named = index.frames.lock().unwrap().iter().map(|(_, n)| *n).max();
        let held = decodable_prefix(&path, dir.path());
        if let Some(highest) = named {
            assert!(
                highest < held,
                "after {} frames the index names frame {highest}, the file holds {held}",
                i + 1
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 3,
        "the index named frames at {checked} checkpoints only"
    );
    service.finish_job(job).expect("finish");
    let stats = service
        .wait_job(job, Duration::from_secs(60))
        .expect("stats");
    assert!(stats.finished && !stats.failed, "{stats:?}");
    let mut named: Vec<u64> = index
        .frames
        .lock()
        .unwrap()
        .iter()
        .map(|(_, n)| *n)
        .collect();
    named.sort_unstable();
    assert_eq!(
        named,
        (0..90).collect::<Vec<_>>(),
        "every frame indexed once finished"
    );
    service.shutdown();
}

#[test]
fn a_slow_encoder_never_holds_the_producer_past_the_policy_and_sheds_are_counted_exactly() {
    let _turn = turn();
    let dir = ScratchDir::new("enc-slow");
    let index = Arc::new(CollectIndex::default());
    let max_wait = Duration::from_millis(5);
    let service = EncoderService::start(
        ServiceConfig {
            workers: 1,
            queue_frames: 4,
            max_wait,
            max_frames_per_file: 10_000,
            nice: 10,
            ..ServiceConfig::default()
        },
        Some(index.clone()),
    )
    .expect("service");
    // A really slow encoder: x264's slowest preset on one thread, at 1280x720 of camera-like
    // noise, tuned to encode each frame as it comes (no look-ahead that would swallow frames
    // and finish them all at the end). It takes well over the producer's pace per frame.
    let (w, h) = (1280, 720);
    let mut settings = EncoderSettings::for_family(CodecFamily::H264);
    settings.preset = Some("placebo".into());
    settings.tune = Some("zerolatency".into());
    settings.threads = 1;
    let path = dir.path().join("slow.mp4");
    let job = service
        .open_job(episode_job("slow", 0, path.clone(), settings))
        .expect("job");
    const N: u64 = 60;
    let mut rgb = vec![0; (w * h * 3) as usize];
    let mut shed_seen = 0;
    let mut longest = Duration::ZERO;
    for i in 0..N {
        numbered_frame(i, w, h, &mut rgb);
        add_sensor_noise(&mut rgb, 12, i);
        let outcome = service
            .submit_copy(job, i, w, h, RawPixelFormat::Rgb8, &rgb, (w * 3) as usize)
            .expect("submit");
        longest = longest.max(outcome.waited);
        if outcome.shed_job.is_some() {
            assert_eq!(outcome.shed_job, Some(job));
            shed_seen += 1;
        }
    }
    // Waiting is bounded by the policy plus scheduling slack on a busy machine, far below the
    // time a producer would wait for each frame if it waited for this encoder.
    assert!(
        longest <= max_wait + Duration::from_millis(60),
        "a producer waited {longest:?}"
    );
    assert!(
        shed_seen > 0,
        "a placebo-preset encoder cannot keep up with an unpaced producer: {shed_seen} shed"
    );
    service.finish_job(job).expect("finish");
    let stats = service
        .wait_job(job, Duration::from_secs(60))
        .expect("stats");
    assert!(stats.finished && !stats.failed);
    assert_eq!(stats.submitted, N);
    assert_eq!(
        stats.shed, shed_seen,
        "the job's counter matches every shed reported"
    );
    assert_eq!(
        stats.encoded + stats.shed,
        N,
        "every frame is encoded or counted"
    );
    service.shutdown();

    let indexed = index.frames.lock().unwrap().clone();
    assert_eq!(indexed.len() as u64, stats.encoded);
    assert_eq!(
        index.closed.lock().unwrap().as_slice(),
        &[("finished".to_owned(), stats.encoded)]
    );
    // The file holds exactly the encoded frames, each the step the index says.
    let mut reader = VideoReader::open(&path, 30, 30).expect("open");
    let mut decoded = Vec::new();
    reader
        .for_each(|n, frame| decoded.push((read_number(&frame.rgba, w, h), n)))
        .expect("decode");
    assert_eq!(decoded, indexed);
}

#[test]
fn encode_command_reads_png_folders_and_names_bad_frames() {
    let _turn = turn();
    let dir = ScratchDir::new("enc-dataset");
    let frames = dir.path().join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    let mut rgb = vec![0; (W * H * 3) as usize];
    let write_png = |path: &Path, w: u32, h: u32, data: &[u8]| {
        let file = std::fs::File::create(path).unwrap();
        let mut encoder = png::Encoder::new(file, w, h);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder
            .write_header()
            .unwrap()
            .write_image_data(data)
            .unwrap();
    };
    for i in 0..20u64 {
        numbered_frame(i, W, H, &mut rgb);
        write_png(&frames.join(format!("{i:04}.png")), W, H, &rgb);
    }
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_framelane"))
            .arg("encode")
            .args(args)
            .output()
            .expect("run encode")
    };
    let out = dir.path().join("d.mp4");
    let encode_dir = || {
        run(&[
            "--input-dir",
            frames.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ])
    };
    let ok = encode_dir();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let log = String::from_utf8_lossy(&ok.stderr);
    assert!(log.contains("20/20 frames") && log.contains("ETA"), "{log}");
    check_round_trip(&out, 20, 30.0);

    // A frame of another size: refused with the file named; the frames before it are kept.
    write_png(
        &frames.join("0020.png"),
        W / 2,
        H / 2,
        &rgb[..(W * H * 3 / 4) as usize],
    );
    let bad = encode_dir();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(err.contains("0020.png") && err.contains("160x120"), "{err}");
    let mut reader = VideoReader::open(&out, 30, 30).expect("open");
    assert_eq!(reader.count_frames().unwrap(), 20);

    // An unreadable frame.
    std::fs::write(frames.join("0020.png"), b"not a png").unwrap();
    let bad = encode_dir();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(
        err.contains("0020.png") && err.contains("unreadable"),
        "{err}"
    );

    // Raw input that ends inside a frame.
    let mut child = Command::new(env!("CARGO_BIN_EXE_framelane"))
        .args(["encode", "--raw", "64x48", "--quiet", "-o"])
        .arg(dir.path().join("r.mp4"))
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&vec![1u8; 64 * 48 * 3 * 3 + 100])
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        err.contains("inside frame 3") && err.contains("100 of 9216 bytes"),
        "{err}"
    );

    // Bad flags: refused with exit status 1 (2 for what the parser itself refuses) and the
    // value named.
    let bad = run(&["--raw", "64by48", "-o", "x.mp4"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("64by48"));
    let bad = run(&["--raw", "64x48", "--codec", "vp9", "-o", "x.mp4"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("vp9"));
    let bad = run(&["--raw", "64x48", "--fps", "fast", "-o", "x.mp4"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("fast"));
    // A missing folder: the cause is said once, with the path.
    let bad = run(&["--input-dir", "/nonexistent-frames", "-o", "x.mp4"]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1));
    assert!(err.contains("/nonexistent-frames"), "{err}");
    assert_eq!(
        err.matches("No such file or directory").count(),
        1,
        "the cause is said once: {err}"
    );
}

#[test]
fn a_failed_job_reports_its_error_and_keeps_its_frames_for_a_retry() {
    let _turn = turn();
    let dir = ScratchDir::new("enc-failed");
    let path = dir.path().join("odd.mp4");
    let (service, mut events, job) = failing_job(&path);
    let (w, h) = (321u32, 241u32);
    for i in 0..5u64 {
        service
            .submit(
                job,
                100 + i,
                w,
                h,
                RawPixelFormat::Rgb8,
                vec![i as u8; (w * h * 3) as usize],
            )
            .expect("submit");
    }
    service.finish_job(job).expect("finish");
    let stats = service
        .wait_job(job, Duration::from_secs(30))
        .expect("stats");
    assert!(stats.failed && stats.finished, "{stats:?}");
    assert_eq!((stats.spooled, stats.shed, stats.encoded), (5, 0, 0));
    service.shutdown();
    let mut failure = None;
    while let Ok(event) = events.try_recv() {
        if let framelane_core::encode::EncodeEvent::Failed {
            error, kept_input, ..
        } = event
        {
            failure = Some((error, kept_input));
        }
    }
    let (error, kept) = failure.expect("a Failed event");
    assert!(error.contains("no h264 encoder is usable"), "{error}");
    let kept = kept.expect("the frames were kept");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&kept).expect("description")).expect("json");
    assert_eq!(meta["steps"], serde_json::json!([100, 101, 102, 103, 104]));
    assert_eq!(
        (meta["width"].as_u64(), meta["height"].as_u64()),
        (Some(321), Some(241))
    );
    let raw = std::fs::read(kept.with_extension("raw")).expect("raw frames");
    assert_eq!(raw.len(), 5 * (w * h * 3) as usize);
    assert_eq!(raw[(w * h * 3) as usize * 4], 4, "frames kept in order");

    // A restarted daemon failing the same file again keeps its frames in a spool of their own:
    // the first spool is untouched, and the new one's description lists exactly its frames
    // (appending to the first used to leave a description of 2 steps over 7 frames).
    let first_raw = raw;
    let (service, mut events, job) = failing_job(&path);
    for i in 0..2u64 {
        service
            .submit(
                job,
                200 + i,
                w,
                h,
                RawPixelFormat::Rgb8,
                vec![9; (w * h * 3) as usize],
            )
            .expect("submit");
    }
    service.finish_job(job).expect("finish");
    service
        .wait_job(job, Duration::from_secs(30))
        .expect("stats");
    service.shutdown();
    let mut second = None;
    while let Ok(event) = events.try_recv() {
        if let framelane_core::encode::EncodeEvent::Failed { kept_input, .. } = event {
            second = kept_input;
        }
    }
    let second = second.expect("the second failure kept its frames");
    assert_ne!(second, kept, "a spool of its own");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&second).expect("description")).expect("json");
    assert_eq!(meta["steps"], serde_json::json!([200, 201]));
    let raw = std::fs::read(second.with_extension("raw")).expect("raw frames");
    assert_eq!(
        raw.len(),
        2 * (w * h * 3) as usize,
        "exactly the frames listed"
    );
    assert_eq!(
        std::fs::read(kept.with_extension("raw")).expect("first spool"),
        first_raw,
        "the first spool is untouched"
    );
}

/// A service with one job on `path` that fails on its first frame (no H.264 encoder may be
/// used), and the service's events.
fn failing_job(
    path: &Path,
) -> (
    EncoderService,
    tokio::sync::broadcast::Receiver<framelane_core::encode::EncodeEvent>,
    u64,
) {
    let service = EncoderService::start(ServiceConfig::never_shed(1), None).expect("service");
    let events = service.events();
    let mut settings = EncoderSettings::for_family(CodecFamily::H264);
    settings.disabled_encoders = no_h264_encoders();
    let job = service
        .open_job(episode_job("odd", 3, path.to_owned(), settings))
        .expect("job");
    (service, events, job)
}

/// Every H.264 encoder FFmpeg might offer, for a job that must fail to open its file.
fn no_h264_encoders() -> Vec<String> {
    [
        "h264_nvenc",
        "h264_vaapi",
        "h264_qsv",
        "libx264",
        "libopenh264",
        "mpeg4",
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn odd_and_tiny_pictures_are_coded_padded_and_replay_crops_them_back() {
    let _turn = turn();
    let dir = ScratchDir::new("enc-odd");
    // 85x85 failed both H.264 and AV1 ("expected even ... 4:2:0"); SVT-AV1 refused 48x48 and
    // 64x48 ("Invalid argument").
    for (family, w, h, coded) in [
        (CodecFamily::H264, 85u32, 85u32, (86u32, 86u32)),
        (CodecFamily::Av1, 85, 85, (86, 86)),
        (CodecFamily::Av1, 48, 48, (64, 64)),
        (CodecFamily::Av1, 64, 48, (64, 64)),
    ] {
        let case = format!("{family:?} {w}x{h}");
        let path = dir.path().join(format!("{family:?}-{w}x{h}.mp4"));
        let picture = |i: u64| -> Vec<u8> {
            let mut rgb = Vec::with_capacity((w * h * 3) as usize);
            for y in 0..h {
                for x in 0..w {
                    rgb.extend_from_slice(&[
                        (x * 255 / w) as u8,
                        (y * 255 / h) as u8,
                        (i * 20 % 256) as u8,
                    ]);
                }
            }
            rgb
        };
        let service = EncoderService::start(ServiceConfig::never_shed(1), None).expect("service");
        let job = service
            .open_job(episode_job(
                "r",
                0,
                path.clone(),
                EncoderSettings::for_family(family),
            ))
            .expect("job");
        const N: u64 = 10;
        for i in 0..N {
            service
                .submit_copy(
                    job,
                    i,
                    w,
                    h,
                    RawPixelFormat::Rgb8,
                    &picture(i),
                    (w * 3) as usize,
                )
                .expect("submit");
        }
        service.finish_job(job).expect("finish");
        let stats = service
            .wait_job(job, Duration::from_secs(120))
            .expect("stats");
        service.shutdown();
        assert!(
            stats.finished && !stats.failed && stats.encoded == N,
            "{case}: {stats:?}"
        );
        let mut reader = VideoReader::open(&path, 30, 30).expect("open");
        let first = reader.frame(0).expect("decode").expect("frame 0");
        assert_eq!((first.width, first.height), coded, "{case}: coded padded");
        reader.crop_to(w, h);
        let mut count = 0;
        reader
            .for_each(|i, frame| {
                assert_eq!((frame.width, frame.height), (w, h), "{case}: cropped back");
                let db = psnr_rgb_rgba(&picture(i), &frame.rgba);
                // Padding done wrong (shifted rows, a wrong stride) would be far below this.
                assert!(db > 25.0, "{case}: frame {i} PSNR {db:.1} dB");
                count += 1;
            })
            .expect("decode all");
        assert_eq!(count, N, "{case}: every frame");
    }
}
