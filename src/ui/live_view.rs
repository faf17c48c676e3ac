//! `LiveView`: the QML-facing side of one fast-lane run. The scene-graph item (cpp/frame_item)
//! asks it for the newest frame on the render thread; QML reads the HUD of that same frame from
//! its properties, which are refreshed on the GUI thread once per rendered frame.

#[cxx_qt::bridge]
pub mod qobject {
    unsafe extern "C++" {
        include!("cxx-qt-lib/qstring.h");
        type QString = cxx_qt_lib::QString;
        include!("framelane/frame_source.h");
        /// cpp/frame_source.h: what the frame item paints.
        type FrameSource;
    }

    extern "RustQt" {
        #[qobject]
        #[qml_element]
        #[base = FrameSource]
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

        /// Render thread, GUI thread blocked: shape of the frames to expect (width 0: none;
        /// format: 1 = RGB8, 2 = RGBA8, 3 = BGRA8, the fast-lane format codes).
        #[cxx_override]
        #[cxx_name = "frameShape"]
        fn frame_shape(self: &LiveView, width: &mut u32, height: &mut u32, format: &mut u32);

        /// Render thread, GUI thread blocked: copies the newest frame into `dst` (rows
        /// `stride` bytes apart); false when there is nothing new.
        #[cxx_override]
        #[cxx_name = "grabFrame"]
        fn grab_frame(self: &LiveView, dst: &mut [u8], stride: usize) -> bool;

        /// Render thread, after the buffer swap that showed the last grabbed frame.
        #[cxx_override]
        #[cxx_name = "framePresented"]
        fn frame_presented(self: &LiveView);

        /// GUI thread, in the polish phase before each sync: follow the writer (attach, detect
        /// gone, re-attach after a restart), choose the frame the render thread will copy and
        /// publish its HUD values, so picture and HUD of one rendered frame always match.
        #[cxx_override]
        fn tick(self: Pin<&mut LiveView>);

        /// Presentation statistics as JSON (latency percentiles, frames shown and skipped).
        #[qinvokable]
        #[cxx_name = "statsJson"]
        fn stats_json(self: &LiveView) -> QString;
    }

    unsafe extern "RustQt" {
        /// Something changed for this run (a new frame, or the writer's state): render a frame.
        #[inherit]
        #[qsignal]
        #[cxx_name = "frameAvailable"]
        fn frame_available(self: Pin<&mut LiveView>);
    }

    impl cxx_qt::Initialize for LiveView {}
    impl cxx_qt::Threading for LiveView {}
}

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use cxx_qt::{CxxQtType, Threading};
use cxx_qt_lib::QString;

use super::follower::Follower;
use framelane_core::ingest::client::follow_frames;
use framelane_core::live::{watch_segment, FeedState, LiveFeed};

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
    /// The current run's fast-lane watcher and daemon-frames followers (stopped on drop).
    followers: Vec<Follower>,
    /// A frame_available notification is queued and not yet handled (coalescing, queue of 1).
    notify_pending: Arc<AtomicBool>,
}

fn lock(feed: &Mutex<LiveFeed>) -> MutexGuard<'_, LiveFeed> {
    // A panic while holding the lock leaves plain data behind; keep using it.
    feed.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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

/// Asks the GUI thread to render, unless a request is already queued; false once the view is
/// gone.
fn request_render(
    pending: &Arc<AtomicBool>,
    qt_thread: &cxx_qt::CxxQtThread<qobject::LiveView>,
) -> bool {
    if pending.swap(true, Ordering::AcqRel) {
        return true;
    }
    let handled = Arc::clone(pending);
    qt_thread
        .queue(move |view| {
            handled.store(false, Ordering::Release);
            view.frame_available();
        })
        .is_ok()
}

impl qobject::LiveView {
    /// Starts following the current run (fast lane, and the daemon's frames as a fallback).
    fn follow_run(mut self: Pin<&mut Self>) {
        let run_id = self.run_id().to_string();
        lock(&self.rust().feed).follow(&run_id);
        self.as_mut().rust_mut().followers.clear();
        if !run_id.is_empty() {
            self.as_mut().start_followers(run_id);
        }
        self.frame_available();
    }

    fn start_followers(mut self: Pin<&mut Self>, run_id: String) {
        let qt_thread = self.qt_thread();
        let pending = Arc::clone(&self.rust().notify_pending);
        pending.store(false, Ordering::Release);
        // A follower that cannot start says so in the HUD's state line.
        let report = {
            let (feed, qt_thread) = (Arc::clone(&self.rust().feed), qt_thread.clone());
            move |message: String| {
                lock(&feed).set_daemon_note(message);
                let _ = qt_thread.queue(|view| view.frame_available());
            }
        };
        let mut followers = Vec::new();
        let address = self.daemon_address().to_string();
        if !address.is_empty() {
            match address.parse::<std::net::SocketAddr>() {
                Ok(address) => {
                    let (feed, run, pending, qt_thread) = (
                        Arc::clone(&self.rust().feed),
                        run_id.clone(),
                        Arc::clone(&pending),
                        qt_thread.clone(),
                    );
                    let notes = Arc::clone(&feed);
                    followers.extend(Follower::spawn_async(
                        "daemon-frames",
                        report.clone(),
                        move |stop| {
                            follow_frames(
                                address,
                                run,
                                move |frame| {
                                    if stop.is_set() {
                                        return false;
                                    }
                                    let offered =
                                        frame.is_some_and(|f| lock(&feed).offer_daemon_frame(f));
                                    !offered || request_render(&pending, &qt_thread)
                                },
                                move |message| lock(&notes).set_daemon_note(message),
                            )
                        },
                    ));
                }
                Err(_) => lock(&self.rust().feed)
                    .set_daemon_note(format!("not a daemon address: {address:?}")),
            }
        }
        followers.extend(Follower::spawn("fastlane-watch", report, move |stop, _| {
            watch_segment(&run_id, stop.as_atomic(), || {
                request_render(&pending, &qt_thread)
            })
        }));
        self.as_mut().rust_mut().followers = followers;
    }

    fn frame_shape(&self, width: &mut u32, height: &mut u32, format: &mut u32) {
        let (w, h, f) = lock(&self.rust().feed)
            .shape()
            .map_or((0, 0, 0), |(w, h, f)| (w, h, f.code()));
        (*width, *height, *format) = (w, h, f);
    }

    fn grab_frame(&self, dst: &mut [u8], stride: usize) -> bool {
        lock(&self.rust().feed).grab(dst, stride)
    }

    fn frame_presented(&self) {
        lock(&self.rust().feed).presented();
    }

    fn tick(mut self: Pin<&mut Self>) {
        let hud = lock(&self.rust().feed).tick();
        let mut this = self.as_mut();
        this.as_mut()
            .set_connection_state(QString::from(hud.state.label()));
        this.as_mut().set_state_reason(QString::from(&hud.reason));
        this.as_mut()
            .set_segment_kind(QString::from(hud.segment_kind));
        this.as_mut()
            .set_frame_width(hud.geometry.map_or(0, |g| g.width as i32));
        this.as_mut()
            .set_frame_height(hud.geometry.map_or(0, |g| g.height as i32));
        if let Some(meta) = hud.frame {
            this.as_mut().set_episode(meta.hud.episode as i64);
            this.as_mut().set_step(meta.hud.step as i64);
            this.as_mut().set_reward(meta.hud.reward);
            this.as_mut().set_episodic_return(meta.hud.episodic_return);
            this.as_mut().set_producer_rate(meta.hud.steps_per_second);
        }
        this.as_mut().set_frames_skipped(hud.frames_skipped as i64);
        this.as_mut().set_display_fps(hud.display_fps);
        this.as_mut()
            .set_latency_ms(hud.latency_ns.map_or(-1.0, |ns| ns as f64 / 1e6));
    }

    fn stats_json(&self) -> QString {
        QString::from(&lock(&self.rust().feed).stats().to_string())
    }
}
