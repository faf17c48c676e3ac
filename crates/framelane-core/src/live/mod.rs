//! The live view's feed, without Qt: follows one run's fast-lane segment (attach, writer gone,
//! re-attach after a restart), falls back to the daemon's kept frames when the run has no
//! segment, chooses the frame the window will show so its HUD matches the picture, copies it on
//! the render thread, and measures presentation latency. `src/ui/live_view.rs` is its Qt face.

mod latency;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub use latency::{LatencyPercentiles, LatencyRing, LATENCY_SAMPLES};

use crate::fastlane::{
    shm, FastLaneError, FastLaneReader, FrameGeometry, FrameMeta, HudValues, PixelFormat,
    ReadOutcome, WriterStatus,
};
use crate::ingest::client::DaemonFrame;
use crate::media::copy_rows;
use crate::metrics::Histogram;

mod rate;
pub use rate::RateAdvisor;

/// How often the GUI thread checks the writer and retries attaching.
const STATUS_INTERVAL_NS: u64 = 250_000_000;
/// Longest sleep of the watcher thread while it waits for a frame (it wakes at once on a
/// publish; this bounds how long a stop request waits).
const WATCH_SLICE: Duration = Duration::from_millis(100);
/// Sleep of the watcher while the run has no segment to wait on.
const WATCH_DETACHED: Duration = Duration::from_millis(50);
/// Even with no new frame, the window refreshes this often so writer state changes show.
const REFRESH_INTERVAL_NS: u64 = 250_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FeedState {
    #[default]
    Idle,
    Waiting,
    Live,
    Silent,
    Gone,
    Invalid,
}

impl FeedState {
    /// The state as the HUD shows it.
    pub fn label(self) -> &'static str {
        match self {
            FeedState::Idle => "idle",
            FeedState::Waiting => "waiting",
            FeedState::Live => "live",
            FeedState::Silent => "silent",
            FeedState::Gone => "writer gone",
            FeedState::Invalid => "invalid segment",
        }
    }
}

/// What the HUD shows for the frame chosen in one `tick`.
#[derive(Debug, Clone)]
pub struct FeedHud {
    pub state: FeedState,
    pub reason: String,
    /// "framelane" or "mosaic"; empty without a segment.
    pub segment_kind: &'static str,
    pub geometry: Option<FrameGeometry>,
    /// The frame the render thread will copy (or the one on screen).
    pub frame: Option<FrameMeta>,
    pub frames_skipped: u64,
    pub display_fps: f64,
    /// Producer timestamp to the buffer swap of the last presented frame.
    pub latency_ns: Option<u64>,
    /// Where the frame on screen comes from.
    pub source: FrameSource,
}

/// Where the live view's frames come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FrameSource {
    #[default]
    None,
    /// The run's fast-lane segment (shared memory).
    SharedMemory,
    /// The daemon's kept frames (its step stream).
    Daemon,
}

impl FrameSource {
    pub fn label(self) -> &'static str {
        match self {
            FrameSource::None => "",
            FrameSource::SharedMemory => "shared memory",
            FrameSource::Daemon => "daemon",
        }
    }
}

/// State shared by the GUI thread (tick) and the render thread (grab, present). The two never
/// contend: the render thread runs its part while the GUI thread is blocked in sync.
#[derive(Default)]
pub struct LiveFeed {
    run_id: String,
    /// The fast lane is not attached even when the run has a segment; the daemon's kept frames
    /// are shown ("Shared memory" switched off).
    shared_memory_off: bool,
    reader: Option<FastLaneReader>,
    state: FeedState,
    reason: String,
    /// Frame chosen on the GUI thread (its HUD is laid out now); the render thread copies it.
    pending: Option<FrameMeta>,
    /// Newest kept frame from the daemon, shown while the run has no fast-lane segment.
    daemon_frame: Option<DaemonFrame>,
    /// Why the daemon's frames are not coming (unreachable, unknown run), shown with the state.
    daemon_note: Option<String>,
    /// The daemon frame whose geometry was refused (not offered again).
    refused_daemon_seq: Option<u64>,
    shown: Option<FrameMeta>,
    /// Times the chosen frame was overwritten before the render thread copied it, so the
    /// newest frame was shown under the HUD of the chosen one.
    hud_lag_frames: u64,
    awaiting_present: Option<u64>,
    /// Producer timestamp to the buffer swap that showed the frame.
    present_latency: LatencyRing,
    /// Producer timestamp to the copy out of shared memory (part of the above).
    copy_latency: LatencyRing,
    last_latency_ns: Option<u64>,
    presented: u64,
    fps_window_start_ns: u64,
    fps_window_frames: u64,
    display_fps: f64,
    last_status_ns: u64,
    /// Time between consecutive presented frames (gaps over `IDLE_GAP_NS` excluded), seconds.
    frame_seconds: Histogram,
    /// Presented frames that came later than their budget (see `presented`).
    late_frames: u64,
    last_present_ns: u64,
}

/// A gap between presented frames longer than this is the producer idling, not a slow frame.
const IDLE_GAP_NS: u64 = 250_000_000;
/// The frame budget of a 60 Hz display, and how far past it a frame counts as late (jank).
const FRAME_BUDGET_NS: u64 = 16_666_667;
const LATE_FACTOR: f64 = 1.5;

impl LiveFeed {
    /// Starts following `run_id` (empty: none), forgetting everything about the last run.
    pub fn follow(&mut self, run_id: &str) {
        let shared_memory_off = self.shared_memory_off;
        *self = LiveFeed {
            run_id: run_id.to_owned(),
            shared_memory_off,
            state: if run_id.is_empty() {
                FeedState::Idle
            } else {
                FeedState::Waiting
            },
            ..LiveFeed::default()
        };
        self.check_writer(shm::monotonic_ns(), true);
    }

    /// Whether the fast lane is attached when the run has a segment (off: the daemon's kept
    /// frames are shown instead). Takes effect at the next `follow`.
    pub fn set_prefer_shared_memory(&mut self, prefer: bool) {
        self.shared_memory_off = !prefer;
    }

    /// GUI thread, polish phase: follows the writer, chooses the frame the render thread will
    /// copy and returns the HUD of exactly that frame.
    pub fn tick(&mut self) -> FeedHud {
        self.check_writer(shm::monotonic_ns(), false);
        self.choose();
        let reader = self.reader.as_ref();
        FeedHud {
            state: self.state,
            reason: self.reason.clone(),
            segment_kind: reader.map(|r| r.kind().label()).unwrap_or(""),
            geometry: reader.map(FastLaneReader::geometry),
            frame: self.pending.or(self.shown),
            frames_skipped: reader.map(FastLaneReader::frames_skipped).unwrap_or(0),
            display_fps: self.display_fps,
            latency_ns: self.last_latency_ns,
            source: match (&self.reader, &self.daemon_frame) {
                (Some(_), _) => FrameSource::SharedMemory,
                (None, Some(_)) => FrameSource::Daemon,
                (None, None) => FrameSource::None,
            },
        }
    }

    /// Render thread: size and pixel format of the frame to allocate for (None: no frame).
    pub fn shape(&self) -> Option<(u32, u32, PixelFormat)> {
        match (
            self.reader.as_ref().map(FastLaneReader::geometry),
            &self.daemon_frame,
        ) {
            (Some(g), _) => Some((g.width, g.height, g.format)),
            (None, Some(frame)) => Some((frame.width, frame.height, PixelFormat::Rgba8)),
            (None, None) => None,
        }
    }

    /// Offers the daemon's newest kept frame; false (and dropped) while the fast lane is
    /// attached, which always wins.
    pub fn offer_daemon_frame(&mut self, frame: DaemonFrame) -> bool {
        if self.reader.is_some() {
            return false;
        }
        self.daemon_note = None;
        self.daemon_frame = Some(frame);
        true
    }

    /// Records why the daemon's frames are not coming; shown while the run has no segment.
    pub fn set_daemon_note(&mut self, note: String) {
        self.daemon_note = Some(note);
    }

    /// The run being followed.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Attaches, detects a gone writer and re-attaches after a restart.
    pub fn check_writer(&mut self, now: u64, force: bool) {
        if self.shared_memory_off {
            self.reader = None;
            if self.daemon_frame.is_none() {
                self.state = FeedState::Waiting;
                self.reason = match &self.daemon_note {
                    Some(note) => {
                        format!("shared memory is off; waiting for the daemon's frames: {note}")
                    }
                    None => "shared memory is off; waiting for the daemon's frames".into(),
                };
            }
            return;
        }
        if self.run_id.is_empty()
            || (!force && now.saturating_sub(self.last_status_ns) < STATUS_INTERVAL_NS)
        {
            return;
        }
        self.last_status_ns = now;
        let status = self.reader.as_ref().map(FastLaneReader::writer_status);
        match status {
            Some(WriterStatus::Alive) => {
                self.state = if self.shown.is_some() {
                    FeedState::Live
                } else {
                    FeedState::Waiting
                };
                self.reason.clear();
            }
            Some(WriterStatus::Silent { idle_ms }) => {
                self.state = FeedState::Silent;
                self.reason = format!("no new frame for {:.1} s", idle_ms as f64 / 1000.0);
            }
            Some(WriterStatus::Gone { reason }) => {
                self.state = FeedState::Gone;
                self.reason = reason;
                self.try_attach(true);
            }
            Some(WriterStatus::Replaced) | None => self.try_attach(false),
        }
    }

    /// Opens the run's current segment; with `keep_old`, a failure keeps the old reader (and
    /// the last frame) on screen.
    fn try_attach(&mut self, keep_old: bool) {
        match FastLaneReader::attach(&self.run_id) {
            Ok(reader) => {
                if let Some(old) = &self.reader {
                    if old.path() == reader.path() && old.writer_status() != WriterStatus::Replaced
                    {
                        return;
                    }
                }
                tracing::info!(run = %self.run_id, kind = reader.kind().label(), "attached to fast-lane segment");
                self.reader = Some(reader);
                self.state = FeedState::Waiting;
                self.reason.clear();
            }
            Err(FastLaneError::RunNotFound { .. }) => {
                if !keep_old {
                    self.reader = None;
                    self.state = FeedState::Waiting;
                    self.reason = match &self.daemon_note {
                        Some(note) => format!("no fast-lane segment for this run yet; {note}"),
                        None => "no fast-lane segment for this run yet".into(),
                    };
                }
            }
            Err(err) => {
                if !keep_old {
                    self.reader = None;
                }
                self.state = FeedState::Invalid;
                self.reason = err.to_string();
            }
        }
    }

    /// GUI thread: picks the newest frame so its HUD is laid out before the render thread
    /// copies its pixels.
    pub fn choose(&mut self) {
        if let Some(reader) = self.reader.as_mut() {
            if let Some(meta) = reader.peek_newest() {
                self.pending = Some(meta);
            }
        } else if let Some(frame) = &self.daemon_frame {
            if self.refused_daemon_seq == Some(frame.seq) {
                // Its refusal stays on screen until a newer frame comes.
                return;
            }
            if self.shown.map(|m| m.frame_number) != Some(frame.seq) {
                self.pending = Some(daemon_meta(frame));
            }
            self.state = FeedState::Live;
            self.reason = if self.shared_memory_off {
                "frames from the daemon's step stream (shared memory is off)".into()
            } else {
                "frames from the daemon's step stream (no fast-lane segment)".into()
            };
        }
    }

    /// Render thread: copies the chosen frame (or, if the writer overwrote it meanwhile, the
    /// newest one) into `dst`.
    pub fn grab(&mut self, dst: &mut [u8], stride: usize) -> bool {
        let Some(chosen) = self.pending.take() else {
            return false;
        };
        let Some(reader) = self.reader.as_mut() else {
            return self.grab_daemon_frame(chosen, dst, stride);
        };
        let copied = match reader.read_frame(chosen.frame_number, dst, stride) {
            Ok(Some(meta)) => Ok(Some(meta)),
            Ok(None) => reader
                .read_newest(dst, stride)
                .map(|outcome| match outcome {
                    ReadOutcome::Frame(meta) => {
                        self.hud_lag_frames += 1;
                        Some(meta)
                    }
                    _ => None,
                }),
            Err(err) => Err(err),
        };
        match copied {
            Ok(Some(meta)) => {
                self.shown = Some(meta);
                self.awaiting_present = meta.producer_mono_ns;
                if let Some(produced) = meta.producer_mono_ns {
                    self.copy_latency
                        .push(shm::monotonic_ns().saturating_sub(produced));
                }
                if self.state == FeedState::Waiting {
                    self.state = FeedState::Live;
                }
                true
            }
            Ok(None) => false,
            Err(err) => {
                self.state = FeedState::Invalid;
                self.reason = err.to_string();
                false
            }
        }
    }

    /// Copies the daemon's frame (RGBA) if it is the chosen one.
    fn grab_daemon_frame(&mut self, chosen: FrameMeta, dst: &mut [u8], stride: usize) -> bool {
        let Some(frame) = self
            .daemon_frame
            .as_ref()
            .filter(|f| f.seq == chosen.frame_number)
        else {
            return false;
        };
        match copy_rows(&frame.rgba, frame.width, frame.height, 4, dst, stride) {
            Ok(()) => {
                self.shown = Some(chosen);
                true
            }
            Err(err) => {
                self.state = FeedState::Invalid;
                self.reason = format!("daemon frame of step {}: {err}", frame.step);
                self.refused_daemon_seq = Some(frame.seq);
                false
            }
        }
    }

    /// Render thread, after the swap that showed the last grabbed frame.
    pub fn presented(&mut self) {
        let now = shm::monotonic_ns();
        self.presented += 1;
        let gap = now.saturating_sub(self.last_present_ns);
        if self.last_present_ns != 0 && gap <= IDLE_GAP_NS {
            self.frame_seconds.observe(gap as f64 / 1e9);
            // Late: past 1.5 display frames, or 1.5 producer periods for a slower producer
            // (a 10 Hz producer's frames are 100 ms apart by design).
            let producer_period_ns = self
                .shown
                .map(|m| m.hud.steps_per_second)
                .filter(|r| r.is_finite() && *r > 0.0)
                .map_or(0.0, |r| 1e9 / r);
            let budget = (FRAME_BUDGET_NS as f64).max(producer_period_ns) * LATE_FACTOR;
            if gap as f64 > budget {
                self.late_frames += 1;
            }
        }
        self.last_present_ns = now;
        if let Some(produced) = self.awaiting_present.take() {
            let latency = now.saturating_sub(produced);
            self.last_latency_ns = Some(latency);
            self.present_latency.push(latency);
        }
        if self.fps_window_start_ns == 0 {
            self.fps_window_start_ns = now;
        }
        self.fps_window_frames += 1;
        let elapsed = now - self.fps_window_start_ns;
        if elapsed >= 500_000_000 {
            self.display_fps = self.fps_window_frames as f64 * 1e9 / elapsed as f64;
            self.fps_window_start_ns = now;
            self.fps_window_frames = 0;
        }
    }

    /// Presentation statistics (latency percentiles, frames shown and skipped).
    pub fn stats(&self) -> serde_json::Value {
        let present = self.present_latency.percentiles_ms();
        let copy = self.copy_latency.percentiles_ms();
        let frame = self.frame_seconds.snapshot();
        let reader = self.reader.as_ref();
        serde_json::json!({
            "run_id": self.run_id,
            "state": self.state.label(),
            "frames_presented": self.presented,
            "frames_read": reader.map(FastLaneReader::frames_read).unwrap_or(0),
            "frames_skipped": reader.map(FastLaneReader::frames_skipped).unwrap_or(0),
            "frames_published": reader.map(FastLaneReader::head).unwrap_or(0),
            "torn_reads": reader.map(FastLaneReader::torn_reads).unwrap_or(0),
            "hud_lag_frames": self.hud_lag_frames,
            "latency_samples": present.count,
            "latency_p50_ms": present.p50,
            "latency_p99_ms": present.p99,
            "latency_max_ms": present.max,
            "copy_latency_p50_ms": copy.p50,
            "copy_latency_p99_ms": copy.p99,
            "display_fps": self.display_fps,
            "prefer_shared_memory": !self.shared_memory_off,
            "frame_time_p50_ms": frame.quantile(0.5).map(|v| v * 1e3),
            "frame_time_p99_ms": frame.quantile(0.99).map(|v| v * 1e3),
            "frame_time_histogram": frame
                .buckets()
                .into_iter()
                .map(|(le, n)| serde_json::json!({"le_ms": if le.is_finite() { Some(le * 1e3) } else { None }, "count": n}))
                .collect::<Vec<_>>(),
            "late_frames": self.late_frames,
            "shown_frame_number": self.shown.map(|m| m.frame_number),
            "shown_step": self.shown.map(|m| m.hud.step),
        })
    }
}

/// Frame metadata of a daemon frame: its step sequence number stands in for the frame number.
fn daemon_meta(frame: &DaemonFrame) -> FrameMeta {
    FrameMeta {
        frame_number: frame.seq,
        hud: HudValues {
            episode: frame.episode,
            step: frame.step,
            reward: frame.reward,
            episodic_return: 0.0,
            steps_per_second: 0.0,
        },
        producer_mono_ns: None,
    }
}

/// Watches a run's segment for new frames and calls `notify` when one arrives, so the window
/// renders on new frames (at most once per display frame) instead of on a timer. It sleeps
/// until the writer wakes it (framelane writers), or polls `head` every millisecond (MOSAIC
/// writers, which do not wake readers).
///
/// `notify` is called at most once per new head (and every refresh interval); it returns false
/// when nobody listens any more, which ends the watch, as does `stop`.
pub fn watch_segment(run_id: &str, stop: &AtomicBool, mut notify: impl FnMut() -> bool) {
    let mut reader: Option<FastLaneReader> = None;
    let mut last_head = 0;
    let mut last_notify_ns = 0;
    let mut last_attach_ns = 0;
    while !stop.load(Ordering::Relaxed) {
        let now = shm::monotonic_ns();
        let stale = reader.as_ref().is_some_and(|r| {
            now.saturating_sub(last_notify_ns) >= REFRESH_INTERVAL_NS
                && !matches!(
                    r.writer_status(),
                    WriterStatus::Alive | WriterStatus::Silent { .. }
                )
        });
        if (reader.is_none() || stale) && now.saturating_sub(last_attach_ns) >= STATUS_INTERVAL_NS {
            last_attach_ns = now;
            reader = FastLaneReader::attach(run_id).ok();
        }
        let head = reader.as_ref().map_or(0, FastLaneReader::head);
        let due = head != last_head || now.saturating_sub(last_notify_ns) >= REFRESH_INTERVAL_NS;
        if due {
            last_head = head;
            last_notify_ns = now;
            if !notify() {
                break;
            }
        }
        match &reader {
            Some(reader) => {
                let until_refresh = REFRESH_INTERVAL_NS
                    .saturating_sub(shm::monotonic_ns().saturating_sub(last_notify_ns));
                let slice = Duration::from_nanos(until_refresh.max(1_000_000)).min(WATCH_SLICE);
                reader.wait_for_head(last_head, slice);
            }
            None => std::thread::sleep(WATCH_DETACHED),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fastlane::{FastLaneWriter, WriterConfig};

    fn unique_run(tag: &str) -> String {
        format!(
            "test-live-{tag}-{}-{}",
            std::process::id(),
            shm::monotonic_ns()
        )
    }

    fn hud(step: u64) -> HudValues {
        HudValues {
            episode: 3,
            step,
            reward: step as f64 * 0.5,
            episodic_return: 1.0,
            steps_per_second: 60.0,
        }
    }

    #[test]
    fn the_frame_grabbed_is_the_one_whose_hud_was_chosen() {
        let run = unique_run("match");
        let mut config = WriterConfig::new(4, 2, PixelFormat::Rgba8);
        config.cleanup_on_signal = false;
        let mut writer = FastLaneWriter::create(&run, config).expect("writer");
        writer.publish(&[7u8; 4 * 2 * 4], &hud(1)).expect("publish");

        let mut feed = LiveFeed::default();
        feed.follow(&run);
        let chosen = feed.tick();
        assert_eq!(chosen.frame.map(|m| m.hud.step), Some(1));
        assert_eq!(feed.shape(), Some((4, 2, PixelFormat::Rgba8)));
        // A newer frame published between tick and grab is not what the HUD shows, but the
        // chosen slot still holds frame 1 (capacity > 1), so frame 1's pixels are copied.
        writer.publish(&[9u8; 4 * 2 * 4], &hud(2)).expect("publish");
        let stride = 4 * 4 + 8;
        let mut dst = vec![0u8; stride * 2];
        assert!(feed.grab(&mut dst, stride));
        assert_eq!(&dst[..16], &[7u8; 16]);
        assert_eq!(&dst[stride..stride + 16], &[7u8; 16]);
        assert_eq!(&dst[16..stride], &[0u8; 8], "row padding untouched");
        assert!(
            !feed.grab(&mut dst, stride),
            "nothing new until the next tick"
        );
        assert_eq!(feed.tick().frame.map(|m| m.hud.step), Some(2));
    }

    #[test]
    fn a_daemon_frame_of_the_wrong_size_is_refused_without_panicking() {
        let mut feed = LiveFeed::default();
        feed.follow(&unique_run("daemon"));
        let frame = DaemonFrame {
            seq: 5,
            episode: 0,
            step: 4,
            reward: 0.0,
            width: 3,
            height: 2,
            // One byte short of 3x2 RGBA.
            rgba: vec![1; 23],
        };
        assert!(feed.offer_daemon_frame(frame));
        let hud = feed.tick();
        assert_eq!(hud.state, FeedState::Live);
        assert_eq!(hud.frame.map(|m| m.hud.step), Some(4));
        let mut dst = vec![0u8; 3 * 4 * 2];
        assert!(!feed.grab(&mut dst, 12));
        assert!(dst.iter().all(|&b| b == 0));
        let hud = feed.tick();
        assert!(
            hud.reason.contains("holds 23 bytes"),
            "the refusal is shown: {:?}",
            hud.reason
        );
    }

    #[test]
    fn a_daemon_note_is_shown_while_the_run_has_no_segment() {
        let mut feed = LiveFeed::default();
        feed.follow(&unique_run("note"));
        feed.set_daemon_note("daemon at 127.0.0.1:9 not reachable".into());
        feed.check_writer(shm::monotonic_ns(), true);
        let hud = feed.tick();
        assert_eq!(hud.state, FeedState::Waiting);
        assert!(hud.reason.contains("not reachable"), "{:?}", hud.reason);
    }

    #[test]
    fn the_watcher_notifies_on_a_new_head_and_stops_when_asked() {
        let run = unique_run("watch");
        let mut config = WriterConfig::new(2, 2, PixelFormat::Rgb8);
        config.cleanup_on_signal = false;
        let mut writer = FastLaneWriter::create(&run, config).expect("writer");
        let stop = AtomicBool::new(false);
        let finished = AtomicBool::new(false);
        let mut calls = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                watch_segment(&run, &stop, || {
                    calls += 1;
                    calls < 3
                });
                finished.store(true, Ordering::Release);
            });
            while !finished.load(Ordering::Acquire) && std::time::Instant::now() < deadline {
                writer.publish(&[1u8; 12], &hud(1)).expect("publish");
                std::thread::yield_now();
            }
            // Ends the watch if notify was never called often enough (the assert then fails).
            stop.store(true, Ordering::Relaxed);
        });
        assert_eq!(calls, 3, "the watch ends when notify says nobody listens");

        // A stop flag alone also ends it, with nothing published.
        let stop = AtomicBool::new(true);
        let mut quiet = 0;
        watch_segment(&run, &stop, || {
            quiet += 1;
            true
        });
        assert_eq!(quiet, 0);
    }
}
