//! Fast lane across real processes: the demo producer and MOSAIC's Python writer in child
//! processes, readers in this test, kill -9, stale-segment cleanup and malformed segments.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use framelane::demo::DemoPattern;
use framelane_core::fastlane::{FastLaneReader, ReadOutcome, SegmentKind, WriterStatus};

/// These tests create, kill and clean segments in the shared /dev/shm; one at a time, so that
/// one test's `fastlane clean` cannot race another test's deliberately stale segment.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn framelane() -> Command {
    Command::new(env!("CARGO_BIN_EXE_framelane"))
}

fn unique(tag: &str) -> String {
    format!(
        "it-{tag}-{}-{}",
        std::process::id(),
        framelane_core::fastlane::shm::monotonic_ns() % 1_000_000_000
    )
}

/// Stops the child with SIGTERM (so a writer removes its segment) when the test is done.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        // SAFETY: signalling our own child; harmless if it already exited and was reaped.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

fn start_demo(run: &str, size: &str, rate: &str) -> Reaped {
    let child = framelane()
        .args(["demo", "--run", run, "--size", size, "--rate", rate])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start framelane demo");
    Reaped(child)
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn shm_entries_mentioning(run: &str) -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .expect("list /dev/shm")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.contains(run))
        .collect()
}

/// Segments whose writer is alive (or cannot be judged), which `clean` must leave alone.
fn live_segments() -> Vec<PathBuf> {
    framelane_core::fastlane::list_segments()
        .expect("list segments")
        .into_iter()
        .filter(|s| !s.is_stale())
        .map(|s| s.path)
        .collect()
}

#[test]
fn reader_in_another_process_reads_demo_frames_bit_exact_then_sees_kill9_and_clean_removes_the_segment(
) {
    let _serial = serial();
    let live_before = live_segments();
    let run = unique("kill");
    let mut demo = start_demo(&run, "96x64", "200");
    let mut reader = wait_for("the demo segment", || FastLaneReader::attach(&run).ok());
    assert_eq!(reader.kind(), SegmentKind::Framelane);
    let g = reader.geometry();
    assert_eq!((g.width, g.height), (96, 64));
    let mut buf = vec![0u8; g.frame_bytes()];
    let meta = wait_for("a frame", || {
        match reader.read_newest(&mut buf, g.row_stride).expect("read") {
            ReadOutcome::Frame(meta) => Some(meta),
            _ => None,
        }
    });
    let mut expected = vec![0u8; g.frame_bytes()];
    DemoPattern::new(g).render(meta.frame_number, &mut expected);
    assert!(
        buf == expected,
        "frame {} differs from the demo pattern",
        meta.frame_number
    );
    assert_eq!(meta.hud.step, meta.frame_number);
    assert_eq!(reader.writer_status(), WriterStatus::Alive);

    demo.0.kill().expect("kill -9 the writer");
    demo.0.wait().expect("reap the writer");
    match reader.writer_status() {
        WriterStatus::Gone { reason } => assert!(reason.contains("is gone"), "{reason}"),
        other => panic!("expected the writer to be reported gone, got {other:?}"),
    }
    // Reading after the writer died neither hangs nor fails: the last frame stays readable.
    assert!(matches!(
        reader.read_newest(&mut buf, g.row_stride),
        Ok(ReadOutcome::Unchanged | ReadOutcome::Frame(_))
    ));
    assert_eq!(
        shm_entries_mentioning(&run).len(),
        1,
        "kill -9 leaves the segment behind"
    );

    let ls = framelane()
        .args(["fastlane", "ls"])
        .output()
        .expect("fastlane ls");
    let listing = String::from_utf8_lossy(&ls.stdout);
    let line = listing
        .lines()
        .find(|l| l.contains(&run))
        .unwrap_or_default();
    assert!(
        line.contains("writer gone"),
        "fastlane ls should show the dead writer: {listing}"
    );

    let clean = framelane()
        .args(["fastlane", "clean"])
        .output()
        .expect("fastlane clean");
    assert!(clean.status.success());
    assert!(String::from_utf8_lossy(&clean.stdout).contains(&run));
    assert!(
        shm_entries_mentioning(&run).is_empty(),
        "clean must remove the stale segment"
    );
    drop(reader);
    for path in &live_before {
        assert!(
            path.exists(),
            "clean removed {}, whose writer was alive",
            path.display()
        );
    }
}

#[test]
fn sigterm_invalidates_and_removes_the_segment() {
    let _serial = serial();
    let run = unique("term");
    let demo = start_demo(&run, "32x32", "100");
    let reader = wait_for("the demo segment", || FastLaneReader::attach(&run).ok());
    // SAFETY: signalling our own child.
    unsafe { libc::kill(demo.0.id() as i32, libc::SIGTERM) };
    wait_for("the segment to be removed", || {
        shm_entries_mentioning(&run).is_empty().then_some(())
    });
    assert!(matches!(reader.writer_status(), WriterStatus::Gone { .. }));
}

#[test]
fn a_restarted_run_is_followed_to_its_new_segment() {
    let _serial = serial();
    let run = unique("restart");
    let mut first = start_demo(&run, "32x32", "100");
    let reader = wait_for("the first segment", || FastLaneReader::attach(&run).ok());
    first.0.kill().expect("kill first writer");
    first.0.wait().expect("reap");
    let _second = start_demo(&run, "48x32", "100");
    wait_for("the replacement", || {
        (reader.writer_status() == WriterStatus::Replaced).then_some(())
    });
    let fresh = FastLaneReader::attach(&run).expect("re-attach");
    assert_eq!(fresh.geometry().width, 48);
}

fn write_segment(name: &str, bytes: &[u8]) -> PathBuf {
    let path = Path::new("/dev/shm").join(name);
    std::fs::write(&path, bytes).expect("write test segment");
    path
}

fn inspect_error(path: &Path) -> String {
    let out = framelane()
        .args(["fastlane", "inspect"])
        .arg(path)
        .output()
        .expect("inspect");
    assert_eq!(
        out.status.code(),
        Some(1),
        "inspect of {} should fail with status 1",
        path.display()
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn valid_header(width: u32, height: u32, capacity: u32) -> Vec<u8> {
    let frame = (width * height * 3) as usize;
    let stride = (64 + frame).div_ceil(64) * 64;
    let mut b = vec![0u8; 256 + stride * capacity as usize];
    b[..8].copy_from_slice(b"FRAMELN\0");
    let mut put = |o: usize, v: &[u8]| b[o..o + v.len()].copy_from_slice(v);
    put(8, &1u32.to_le_bytes());
    put(12, &256u32.to_le_bytes());
    put(20, &1u32.to_le_bytes());
    put(24, &width.to_le_bytes());
    put(28, &height.to_le_bytes());
    put(32, &(width * 3).to_le_bytes());
    put(36, &capacity.to_le_bytes());
    put(40, &(stride as u64).to_le_bytes());
    b
}

#[test]
fn malformed_segments_each_give_their_specific_error() {
    let _serial = serial();
    let tag = unique("bad");
    let good = valid_header(16, 8, 2);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated",
            good[..100].to_vec(),
            "truncated segment: 100 bytes",
        ),
        (
            "magic",
            [b"GARBAGE!".as_slice(), &good[8..]].concat(),
            "wrong magic",
        ),
        (
            "capacity",
            {
                let mut b = good.clone();
                b[36..40].copy_from_slice(&900u32.to_le_bytes());
                b
            },
            "900 slots",
        ),
        (
            "zero",
            {
                let mut b = good.clone();
                b[24..28].fill(0);
                b
            },
            "header field width is zero",
        ),
        (
            "mosaic-overflow",
            {
                let mut b = vec![0u8; 200];
                b[..4].copy_from_slice(b"FLAN");
                for (o, v) in [
                    (4usize, 1u32),
                    (12, 64),
                    (16, 16 + 48),
                    (20, 48),
                    (24, 4),
                    (28, 4),
                    (32, 3),
                ] {
                    b[o..o + 4].copy_from_slice(&v.to_le_bytes());
                }
                b
            },
            "64 slots of 64 bytes need",
        ),
    ];
    for (name, bytes, expected) in cases {
        let path = write_segment(&format!("framelane.{tag}-{name}"), &bytes);
        let message = inspect_error(&path);
        std::fs::remove_file(&path).expect("remove test segment");
        assert!(
            message.contains(expected),
            "{name}: expected {expected:?} in {message:?}"
        );
        assert!(
            message.contains(&path.display().to_string()),
            "{name}: the error must name the file: {message}"
        );
    }
    let missing = framelane()
        .args(["fastlane", "inspect", &format!("{tag}-missing")])
        .output()
        .expect("inspect");
    assert_eq!(
        missing.status.code(),
        Some(1),
        "a missing run is an error exit"
    );
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no fast-lane segment for run"));
}

#[test]
fn mosaic_v1_segments_from_a_python_writer_read_bit_exact_with_their_hud() {
    let _serial = serial();
    let run = unique("mosaic");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mosaic_writer.py");
    let mut child = Reaped(
        Command::new("python3")
            .arg(&script)
            .args([
                "--run",
                &run,
                "--width",
                "40",
                "--height",
                "30",
                "--frames",
                "7",
                "--capacity",
                "4",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the MOSAIC writer (python3)"),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.as_mut().expect("stdout"))
        .read_line(&mut line)
        .expect("read ready");
    assert_eq!(line.trim(), "ready");

    let mut reader = FastLaneReader::attach(&run).expect("attach to the MOSAIC segment");
    assert_eq!(reader.kind(), SegmentKind::MosaicV1);
    let g = reader.geometry();
    assert_eq!((g.width, g.height, g.format.bytes_per_pixel()), (40, 30, 3));
    let mut buf = vec![0u8; g.frame_bytes()];
    let meta = match reader.read_newest(&mut buf, g.row_stride).expect("read") {
        ReadOutcome::Frame(meta) => meta,
        other => panic!("expected a frame, got {other:?}"),
    };
    assert_eq!(meta.frame_number, 7);
    let expected: Vec<u8> = (0..buf.len())
        .map(|i| ((7 * 7 + i * 13) % 256) as u8)
        .collect();
    assert!(
        buf == expected,
        "pixels differ from what the MOSAIC writer published"
    );
    assert_eq!(meta.hud.reward, 3.5);
    assert_eq!(meta.hud.episodic_return, 8.75);
    assert_eq!(meta.hud.steps_per_second, 37.0);
    assert_eq!((meta.hud.episode, meta.hud.step), (2, 70));
    assert_eq!(reader.writer_status(), WriterStatus::Alive);

    let ls = framelane()
        .args(["fastlane", "ls", "--json"])
        .output()
        .expect("ls");
    let runs: serde_json::Value = serde_json::from_slice(&ls.stdout).expect("ls --json is JSON");
    let listed = runs
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["runId"] == run.as_str())
        .cloned();
    assert_eq!(
        listed.map(|r| r["kind"].clone()),
        Some(serde_json::json!("mosaic"))
    );

    drop(child.0.stdin.take());
    child.0.wait().expect("writer exits");
    assert!(matches!(reader.writer_status(), WriterStatus::Gone { .. }));
    assert!(
        shm_entries_mentioning(&run).is_empty(),
        "the MOSAIC writer unlinks at exit"
    );
}

#[test]
fn hostile_files_named_like_segments_are_refused_without_hanging() {
    let _serial = serial();
    let tag = unique("hostile");
    // A FIFO: opening it for reading would block until a writer came.
    let fifo = Path::new("/dev/shm").join(format!("framelane.{tag}-fifo"));
    let name = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: mkfifo with a NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0, "mkfifo");
    // A link to a valid segment: a reader must not follow names it did not create.
    let target = write_segment(&format!("framelane.{tag}-target"), &valid_header(16, 8, 2));
    let link = Path::new("/dev/shm").join(format!("framelane.{tag}-link"));
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    for (path, expected) in [(&fifo, "not a regular file"), (&link, "symbolic links")] {
        let out = common::output_within(framelane().args(["fastlane", "inspect"]).arg(path), 30);
        let Some(out) = out else {
            panic!("{}: inspect hung", path.display());
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&path.display().to_string()) && stderr.contains(expected),
            "{}: {stderr}",
            path.display()
        );
    }
    for path in [&fifo, &link, &target] {
        let _ = std::fs::remove_file(path);
    }
}
