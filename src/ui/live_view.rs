//! `LiveView`: the QML-facing side of one fast-lane run. The scene-graph item (cpp/frame_item)
//! asks it for the newest frame on the render thread; QML reads the HUD of that same frame from
//! its properties, which are refreshed on the GUI thread once per rendered frame.

#[cxx_qt::bridge]
pub mod qobject {
    unsafe extern "C++" {
        include!("cxx-qt-lib/qstring.h");
        type QString = cxx_qt_lib::QString;
    }

    /// Size and pixel format of the frames the item should allocate for (width 0: none).
    #[derive(Debug, Default)]
    struct FrameShape {
        width: u32,
        height: u32,
        /// 1 = RGB8, 2 = RGBA8, 3 = BGRA8 (the fast-lane format codes).
        format: u32,
    }

    extern "RustQt" {
        #[qobject]
        #[qml_element]
        #[qproperty(QString, run_id, cxx_name = "runId")]
        /// Telemetry daemon whose kept frames are shown when the run has no fast-lane segment.
        #[qproperty(QString, daemon_address, cxx_name = "daemonAddress")]
        #[qproperty(QString, connection_state, cxx_name = "connectionState")]
        #[qproperty(QString, state_reason, cxx_name = "stateReason")]
        #[qproperty(QString, segment_kind, cxx_name = "segmentKind")]
        #[qproperty(i32, frame_width, cxx_name = "frameWidth")]
        #[qproperty(i32, frame_height, cxx_name = "frameHeight")]
        #[qproperty(i64, episode)]
        #[qproperty(i64, step)]
        #[qproperty(f64, reward)]
        #[qproperty(f64, episodic_return, cxx_name = "episodicReturn")]
        #[qproperty(f64, producer_rate, cxx_name = "producerRate")]
        #[qproperty(f64, display_fps, cxx_name = "displayFps")]
        #[qproperty(i64, frames_skipped, cxx_name = "framesSkipped")]
        #[qproperty(f64, latency_ms, cxx_name = "latencyMs")]
        type LiveView = super::LiveViewRust;

        /// Render thread, GUI thread blocked: shape of the frames to expect.
        #[cxx_name = "frameShape"]
        fn frame_shape(self: &LiveView) -> FrameShape;

        /// Render thread, GUI thread blocked: copies the newest frame into `dst` (rows
        /// `stride` bytes apart); false when there is nothing new.
        #[cxx_name = "grabFrame"]
        fn grab_frame(self: &LiveView, dst: &mut [u8], stride: usize) -> bool;

        /// Render thread, after the buffer swap that showed the last grabbed frame.
        #[cxx_name = "framePresented"]
        fn frame_presented(self: &LiveView);

        /// GUI thread, in the polish phase before each sync: follow the writer (attach, detect
        /// gone, re-attach after a restart), choose the frame the render thread will copy and
        /// publish its HUD values, so picture and HUD of one rendered frame always match.
        #[qinvokable]
        fn tick(self: Pin<&mut LiveView>);

        /// Presentation statistics as JSON (latency percentiles, frames shown and skipped).
        #[qinvokable]
        #[cxx_name = "statsJson"]
        fn stats_json(self: &LiveView) -> QString;
    }

    unsafe extern "RustQt" {
        /// Something changed for this run (a new frame, or the writer's state): render a frame.
        #[qsignal]
        #[cxx_name = "frameAvailable"]
        fn frame_available(self: Pin<&mut LiveView>);
    }

    impl cxx_qt::Initialize for LiveView {}
    impl cxx_qt::Threading for LiveView {}
}

use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cxx_qt::{CxxQtType, Threading};
use cxx_qt_lib::QString;

use crate::fastlane::{shm, FastLaneError, FastLaneReader, FrameMeta, ReadOutcome, WriterStatus};
use crate::ingest::client::{follow_frames, DaemonFrame};

/// How often the GUI thread checks the writer and retries attaching.
const STATUS_INTERVAL_NS: u64 = 250_000_000;
/// How often the watcher thread looks for a new frame: well under a display frame, so a frame
/// waits at most this long before the window starts rendering it.
const WATCH_INTERVAL: Duration = Duration::from_millis(1);
/// Even with no new frame, the window refreshes this often so writer state changes show.
const REFRESH_INTERVAL_NS: u64 = 250_000_000;
/// Latency samples kept for statistics (a bounded ring; older samples are overwritten).
const LATENCY_SAMPLES: usize = 1 << 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum FeedState {
    #[default]
    Idle,
    Waiting,
    Live,
    Silent,
    Gone,
    Invalid,
}

impl FeedState {
    fn label(self) -> &'static str {
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

/// State shared by the GUI thread (tick) and the render thread (grab, present). The two never
/// contend: the render thread runs its part while the GUI thread is blocked in sync.
#[derive(Default)]
pub struct LiveFeed {
    run_id: String,
    reader: Option<FastLaneReader>,
    state: FeedState,
    reason: String,
    /// Frame chosen on the GUI thread (its HUD is laid out now); the render thread copies it.
    pending: Option<FrameMeta>,
    /// Newest kept frame from the daemon, shown while the run has no fast-lane segment.
    daemon_frame: Option<DaemonFrame>,
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
}

impl LiveFeed {
    fn follow(&mut self, run_id: &str) {
        *self = LiveFeed {
            run_id: run_id.to_owned(),
            state: if run_id.is_empty() {
                FeedState::Idle
            } else {
                FeedState::Waiting
            },
            ..LiveFeed::default()
        };
        self.check_writer(shm::monotonic_ns(), true);
    }

    /// Attaches, detects a gone writer and re-attaches after a restart.
    fn check_writer(&mut self, now: u64, force: bool) {
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
                    self.reason = "no fast-lane segment for this run yet".into();
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
    fn choose(&mut self) {
        if let Some(reader) = self.reader.as_mut() {
            if let Some(meta) = reader.peek_newest() {
                self.pending = Some(meta);
            }
        } else if let Some(frame) = &self.daemon_frame {
            if self.shown.map(|m| m.frame_number) != Some(frame.seq) {
                self.pending = Some(daemon_meta(frame));
            }
            self.state = FeedState::Live;
            self.reason = "frames from the daemon's step stream (no fast-lane segment)".into();
        }
    }

    /// Render thread: copies the chosen frame (or, if the writer overwrote it meanwhile, the
    /// newest one) into `dst`.
    fn grab(&mut self, dst: &mut [u8], stride: usize) -> bool {
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
        let row = frame.width as usize * 4;
        if stride < row || dst.len() < stride * (frame.height as usize - 1) + row {
            return false;
        }
        for (y, src) in frame.rgba.chunks_exact(row).enumerate() {
            dst[y * stride..y * stride + row].copy_from_slice(src);
        }
        self.shown = Some(chosen);
        true
    }

    fn presented(&mut self) {
        let now = shm::monotonic_ns();
        self.presented += 1;
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

    fn stats(&self) -> serde_json::Value {
        let present = self.present_latency.percentiles_ms();
        let copy = self.copy_latency.percentiles_ms();
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
            "shown_frame_number": self.shown.map(|m| m.frame_number),
            "shown_step": self.shown.map(|m| m.hud.step),
        })
    }
}

/// The most recent latency samples, in a fixed ring (older ones are overwritten).
#[derive(Default)]
struct LatencyRing {
    samples_ns: Vec<u64>,
    next: usize,
}

/// Percentiles of a latency ring, in milliseconds (None without samples).
struct LatencyPercentiles {
    count: usize,
    p50: Option<f64>,
    p99: Option<f64>,
    max: Option<f64>,
}

impl LatencyRing {
    fn push(&mut self, ns: u64) {
        if self.samples_ns.len() < LATENCY_SAMPLES {
            if self.samples_ns.capacity() == 0 {
                self.samples_ns.reserve_exact(LATENCY_SAMPLES);
            }
            self.samples_ns.push(ns);
        } else {
            self.samples_ns[self.next] = ns;
            self.next = (self.next + 1) % LATENCY_SAMPLES;
        }
    }

    fn percentiles_ms(&self) -> LatencyPercentiles {
        let mut sorted = self.samples_ns.clone();
        sorted.sort_unstable();
        let at = |p: f64| {
            (!sorted.is_empty())
                .then(|| sorted[((sorted.len() - 1) as f64 * p).round() as usize] as f64 / 1e6)
        };
        LatencyPercentiles {
            count: sorted.len(),
            p50: at(0.5),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

/// Frame metadata of a daemon frame: its step sequence number stands in for the frame number.
fn daemon_meta(frame: &DaemonFrame) -> FrameMeta {
    FrameMeta {
        frame_number: frame.seq,
        hud: crate::fastlane::HudValues {
            episode: frame.episode,
            step: frame.step,
            reward: frame.reward,
            episodic_return: 0.0,
            steps_per_second: 0.0,
        },
        producer_mono_ns: None,
    }
}

/// Rust state of the `LiveView` QObject.
#[derive(Default)]
pub struct LiveViewRust {
    run_id: QString,
    daemon_address: QString,
    connection_state: QString,
    state_reason: QString,
    segment_kind: QString,
    frame_width: i32,
    frame_height: i32,
    episode: i64,
    step: i64,
    reward: f64,
    episodic_return: f64,
    producer_rate: f64,
    display_fps: f64,
    frames_skipped: i64,
    latency_ms: f64,
    feed: Arc<Mutex<LiveFeed>>,
    /// Stop flag of the current run's watcher thread.
    watcher_stop: Option<Arc<AtomicBool>>,
    /// A frame_available notification is queued and not yet handled (coalescing, queue of 1).
    notify_pending: Arc<AtomicBool>,
}

impl LiveViewRust {
    fn feed(&self) -> MutexGuard<'_, LiveFeed> {
        // A panic while holding the lock leaves plain data behind; keep using it.
        self.feed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl cxx_qt::Initialize for qobject::LiveView {
    fn initialize(mut self: Pin<&mut Self>) {
        self.as_mut()
            .set_connection_state(QString::from(FeedState::Idle.label()));
        self.as_mut().set_latency_ms(-1.0);
        self.as_mut()
            .on_run_id_changed(|view| view.follow_run())
            .release();
        self.on_daemon_address_changed(|view| view.follow_run())
            .release();
    }
}

impl Drop for LiveViewRust {
    fn drop(&mut self) {
        if let Some(stop) = self.watcher_stop.take() {
            stop.store(true, Ordering::Relaxed);
        }
    }
}

/// Watches a run's segment for new frames and asks the GUI thread to render when one arrives,
/// so the window renders on new frames (at most once per display frame) instead of a timer.
fn watch_run(
    run_id: String,
    stop: Arc<AtomicBool>,
    pending: Arc<AtomicBool>,
    qt_thread: cxx_qt::CxxQtThread<qobject::LiveView>,
) {
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
            reader = FastLaneReader::attach(&run_id).ok();
        }
        let head = reader.as_ref().map_or(0, FastLaneReader::head);
        let due = head != last_head || now.saturating_sub(last_notify_ns) >= REFRESH_INTERVAL_NS;
        if due && !pending.swap(true, Ordering::AcqRel) {
            last_head = head;
            last_notify_ns = now;
            let handled = Arc::clone(&pending);
            let queued = qt_thread.queue(move |view| {
                handled.store(false, Ordering::Release);
                view.frame_available();
            });
            if queued.is_err() {
                break;
            }
        }
        std::thread::sleep(WATCH_INTERVAL);
    }
}

/// Feeds the view with the run's kept frames from the daemon while the run has no fast-lane
/// segment (the fast lane wins whenever there is one).
fn follow_daemon_frames(
    address: std::net::SocketAddr,
    run_id: String,
    feed: Arc<Mutex<LiveFeed>>,
    stop: Arc<AtomicBool>,
    pending: Arc<AtomicBool>,
    qt_thread: cxx_qt::CxxQtThread<qobject::LiveView>,
) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    runtime.block_on(follow_frames(
        address,
        run_id,
        |frame| {
            if stop.load(Ordering::Relaxed) {
                return false;
            }
            let Some(frame) = frame else { return true };
            {
                let mut feed = feed.lock().unwrap_or_else(|p| p.into_inner());
                if feed.reader.is_some() {
                    return true;
                }
                feed.daemon_frame = Some(frame);
            }
            if !pending.swap(true, Ordering::AcqRel) {
                let handled = Arc::clone(&pending);
                return qt_thread
                    .queue(move |view| {
                        handled.store(false, Ordering::Release);
                        view.frame_available();
                    })
                    .is_ok();
            }
            true
        },
        |message| tracing::debug!(%message, "daemon frames"),
    ));
}

impl qobject::LiveView {
    /// Starts following the current run (fast lane, and the daemon's frames as a fallback).
    fn follow_run(mut self: Pin<&mut Self>) {
        let run_id = self.run_id().to_string();
        self.rust().feed().follow(&run_id);
        self.as_mut().start_watcher(run_id);
        self.frame_available();
    }

    fn start_watcher(mut self: Pin<&mut Self>, run_id: String) {
        let qt_thread = self.qt_thread();
        let mut rust = self.as_mut().rust_mut();
        if let Some(stop) = rust.watcher_stop.take() {
            stop.store(true, Ordering::Relaxed);
        }
        if run_id.is_empty() {
            return;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let pending = Arc::clone(&rust.notify_pending);
        pending.store(false, Ordering::Release);
        let thread_stop = Arc::clone(&stop);
        if let Ok(address) = rust
            .daemon_address
            .to_string()
            .parse::<std::net::SocketAddr>()
        {
            let feed = Arc::clone(&rust.feed);
            let (run, stop, pending, qt_thread) = (
                run_id.clone(),
                Arc::clone(&stop),
                Arc::clone(&pending),
                qt_thread.clone(),
            );
            let spawned = std::thread::Builder::new()
                .name("daemon-frames".into())
                .spawn(move || follow_daemon_frames(address, run, feed, stop, pending, qt_thread));
            if let Err(err) = spawned {
                tracing::error!(error = %err, "could not start the daemon frame thread");
            }
        }
        let spawned = std::thread::Builder::new()
            .name("fastlane-watch".into())
            .spawn(move || watch_run(run_id, thread_stop, pending, qt_thread));
        match spawned {
            Ok(_) => rust.watcher_stop = Some(stop),
            Err(err) => {
                tracing::error!(error = %err, "could not start the fast-lane watcher thread")
            }
        }
    }

    fn frame_shape(&self) -> qobject::FrameShape {
        let feed = self.rust().feed();
        match (
            feed.reader.as_ref().map(FastLaneReader::geometry),
            &feed.daemon_frame,
        ) {
            (Some(g), _) => qobject::FrameShape {
                width: g.width,
                height: g.height,
                format: g.format.code(),
            },
            (None, Some(frame)) => qobject::FrameShape {
                width: frame.width,
                height: frame.height,
                format: crate::fastlane::PixelFormat::Rgba8.code(),
            },
            (None, None) => qobject::FrameShape::default(),
        }
    }

    fn grab_frame(&self, dst: &mut [u8], stride: usize) -> bool {
        self.rust().feed().grab(dst, stride)
    }

    fn frame_presented(&self) {
        self.rust().feed().presented();
    }

    fn tick(mut self: Pin<&mut Self>) {
        let snapshot = {
            let mut feed = self.rust().feed();
            feed.check_writer(shm::monotonic_ns(), false);
            feed.choose();
            let geometry = feed.reader.as_ref().map(FastLaneReader::geometry);
            let kind = feed.reader.as_ref().map(|r| r.kind().label()).unwrap_or("");
            let skipped = feed
                .reader
                .as_ref()
                .map(FastLaneReader::frames_skipped)
                .unwrap_or(0);
            (
                feed.state.label(),
                feed.reason.clone(),
                kind,
                geometry,
                feed.pending.or(feed.shown),
                skipped,
                feed.display_fps,
                feed.last_latency_ns,
            )
        };
        let (state, reason, kind, geometry, shown, skipped, fps, latency) = snapshot;
        let mut this = self.as_mut();
        this.as_mut().set_connection_state(QString::from(state));
        this.as_mut().set_state_reason(QString::from(&reason));
        this.as_mut().set_segment_kind(QString::from(kind));
        this.as_mut()
            .set_frame_width(geometry.map_or(0, |g| g.width as i32));
        this.as_mut()
            .set_frame_height(geometry.map_or(0, |g| g.height as i32));
        if let Some(meta) = shown {
            this.as_mut().set_episode(meta.hud.episode as i64);
            this.as_mut().set_step(meta.hud.step as i64);
            this.as_mut().set_reward(meta.hud.reward);
            this.as_mut().set_episodic_return(meta.hud.episodic_return);
            this.as_mut().set_producer_rate(meta.hud.steps_per_second);
        }
        this.as_mut().set_frames_skipped(skipped as i64);
        this.as_mut().set_display_fps(fps);
        this.as_mut()
            .set_latency_ms(latency.map_or(-1.0, |ns| ns as f64 / 1e6));
    }

    fn stats_json(&self) -> QString {
        QString::from(&self.rust().feed().stats().to_string())
    }
}
