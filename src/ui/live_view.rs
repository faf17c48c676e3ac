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
        /// Off: show the daemon's kept frames even when the run has a fast-lane segment.
        #[qproperty(bool, prefer_shared_memory, cxx_name = "preferSharedMemory")]
        /// "shared memory", "daemon" or empty: where the frame on screen comes from.
        #[qproperty(QString, frame_source, cxx_name = "frameSource")]
        /// The producer rate last asked for over the control stream (-1: none; 0: cap lifted).
        #[qproperty(i32, rate_asked, cxx_name = "rateAsked")]
        /// Control streams of the run that received the last ask.
        #[qproperty(i32, rate_listeners, cxx_name = "rateListeners")]
        /// Why the last ask failed (empty when it was delivered).
        #[qproperty(QString, rate_note, cxx_name = "rateNote")]
        /// Ask the producer to slow to the display's rate after sustained skipping.
        #[qproperty(bool, auto_slow, cxx_name = "autoSlow")]
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

        /// Asks the run's workers (over the daemon's control stream) to publish at most `hz`
        /// frames a second (0: lift the cap); the outcome lands in rateAsked/rateListeners/
        /// rateNote.
        #[qinvokable]
        #[cxx_name = "askMaxRate"]
        fn ask_max_rate(self: Pin<&mut LiveView>, hz: i32);
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
use framelane_core::fastlane::shm;
use framelane_core::ingest::client::{ask_max_rate, follow_frames};
use framelane_core::live::{watch_segment, FeedState, FrameSource, LiveFeed, RateAdvisor};

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
    prefer_shared_memory: bool,
    frame_source: QString,
    rate_asked: i32,
    rate_listeners: i32,
    rate_note: QString,
    auto_slow: bool,
    advisor: RateAdvisor,
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
        self.as_mut().set_rate_asked(-1);
        // Before the change handler is connected: the feed reads it at the next follow.
        self.as_mut().set_prefer_shared_memory(true);
        self.as_mut()
            .on_run_id_changed(|view| view.follow_run())
            .release();
        self.as_mut()
            .on_prefer_shared_memory_changed(|view| view.follow_run())
            .release();
        self.as_mut()
            .on_auto_slow_changed(|mut view| view.as_mut().rust_mut().advisor.reset())
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
        {
            let mut feed = lock(&self.rust().feed);
            feed.set_prefer_shared_memory(*self.prefer_shared_memory());
            feed.follow(&run_id);
        }
        self.as_mut().rust_mut().advisor.reset();
        self.as_mut().set_rate_asked(-1);
        self.as_mut().set_rate_listeners(0);
        self.as_mut().set_rate_note(QString::default());
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
        if *self.prefer_shared_memory() {
            followers.extend(Follower::spawn("fastlane-watch", report, move |stop, _| {
                watch_segment(&run_id, stop.as_atomic(), || {
                    request_render(&pending, &qt_thread)
                })
            }));
        }
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
        this.as_mut()
            .set_frame_source(QString::from(hud.source.label()));
        if *this.auto_slow() && hud.source == FrameSource::SharedMemory {
            let producer_rate = hud.frame.map_or(0.0, |m| m.hud.steps_per_second);
            let ask = this.as_mut().rust_mut().advisor.update(
                shm::monotonic_ns(),
                hud.frames_skipped,
                hud.display_fps,
                producer_rate,
            );
            if let Some(hz) = ask {
                tracing::info!(run = %this.run_id(), hz, "live view skips frames; asking the producer to slow down");
                this.ask_max_rate(hz.min(i32::MAX as u32) as i32);
            }
        }
    }

    fn ask_max_rate(mut self: Pin<&mut Self>, hz: i32) {
        let run_id = self.run_id().to_string();
        let address = self.daemon_address().to_string();
        let hz = hz.max(0) as u32;
        let Ok(address) = address.parse::<std::net::SocketAddr>() else {
            self.as_mut()
                .set_rate_note(QString::from("no daemon to send the ask through"));
            return;
        };
        if run_id.is_empty() {
            self.as_mut().set_rate_note(QString::from("no run shown"));
            return;
        }
        let qt_thread = self.qt_thread();
        let spawned = std::thread::Builder::new()
            .name("rate-ask".into())
            .spawn(move || {
                let outcome = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())
                    .and_then(|rt| {
                        rt.block_on(ask_max_rate(address, &run_id, hz))
                            .map_err(|e| e.to_string())
                    });
                let _ = qt_thread.queue(move |mut view| {
                    // An answer for a run no longer shown is stale.
                    if view.run_id().to_string() != run_id {
                        return;
                    }
                    match outcome {
                        Ok(listeners) => {
                            view.as_mut().set_rate_asked(hz as i32);
                            view.as_mut()
                                .set_rate_listeners(listeners.min(i32::MAX as u32) as i32);
                            view.as_mut().set_rate_note(QString::default());
                        }
                        Err(err) => view
                            .as_mut()
                            .set_rate_note(QString::from(&format!("ask not sent: {err}"))),
                    }
                });
            });
        if let Err(err) = spawned {
            self.as_mut()
                .set_rate_note(QString::from(&format!("ask not sent: {err}")));
        }
    }

    fn stats_json(&self) -> QString {
        QString::from(&lock(&self.rust().feed).stats().to_string())
    }
}
