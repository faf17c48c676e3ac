//! `ClipPlayer`: one MP4 of a rig clip in the window, through the same `FrameItem` as every
//! other view. Setting `file` shows its first frame (the kiosk's thumbnails); `playing` plays
//! it once at its own pace and stops on the last frame. A `clip-player` thread owns the
//! decoder: the GUI thread only posts requests (newest wins) and receives positions.

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
        /// The MP4 to show (setting it shows the first frame).
        #[qproperty(QString, file)]
        /// Playing from the first frame to the last; false again at the end.
        #[qproperty(bool, playing)]
        /// Frame number shown (-1: none yet).
        #[qproperty(i64, position)]
        /// Frames shown since the file was set.
        #[qproperty(i32, shown)]
        /// Why nothing is shown (a missing or unreadable file); empty otherwise.
        #[qproperty(QString, note)]
        type ClipPlayer = super::ClipPlayerRust;

        #[cxx_override]
        #[cxx_name = "frameShape"]
        fn frame_shape(self: &ClipPlayer, width: &mut u32, height: &mut u32, format: &mut u32);

        #[cxx_override]
        #[cxx_name = "grabFrame"]
        fn grab_frame(self: &ClipPlayer, dst: &mut [u8], stride: usize) -> bool;
    }

    unsafe extern "RustQt" {
        #[inherit]
        #[qsignal]
        #[cxx_name = "frameAvailable"]
        fn frame_available(self: Pin<&mut ClipPlayer>);
    }

    impl cxx_qt::Threading for ClipPlayer {}
    impl cxx_qt::Initialize for ClipPlayer {}
}

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cxx_qt::{CxxQtType, Threading};
use cxx_qt_lib::QString;

use framelane_core::replay::VideoReader;

use super::view_worker::{post_to_worker, FrameSlot, RequestSlots, Requests};

#[derive(Default)]
struct Asked {
    /// A file and the generation it starts.
    open: Option<(PathBuf, u64)>,
    play: Option<bool>,
}

impl RequestSlots for Asked {
    fn is_empty(&self) -> bool {
        self.open.is_none() && self.play.is_none()
    }
}

#[derive(Default)]
pub struct ClipPlayerRust {
    file: QString,
    playing: bool,
    position: i64,
    shown: i32,
    note: QString,
    frames: Arc<FrameSlot>,
    worker: Option<Arc<Requests<Asked>>>,
    /// Files posted so far: outcomes of an earlier file are ignored.
    generation_posted: u64,
}

impl Drop for ClipPlayerRust {
    fn drop(&mut self) {
        if let Some(worker) = &self.worker {
            worker.stop();
        }
    }
}

enum Outcome {
    /// Frame `position` of the file `generation` is in the slot.
    Shown {
        generation: u64,
        position: u64,
    },
    /// Playback reached the end.
    Ended {
        generation: u64,
    },
    Failed {
        generation: u64,
        reason: String,
    },
}

/// The decoder thread: opens files, shows their first frame, plays them at their frame rate
/// (frame numbers from presentation times, so a recording's gaps keep their length).
fn player_loop(requests: Arc<Requests<Asked>>, slot: Arc<FrameSlot>, post: impl Fn(Outcome)) {
    let mut reader: Option<VideoReader> = None;
    let mut generation = 0u64;
    // While playing: when the first frame was shown and its number.
    let mut clock: Option<(Instant, u64)> = None;
    loop {
        let asked = if clock.is_some() {
            requests.next_within(Duration::ZERO)
        } else {
            requests.next()
        };
        let Some(Asked { open, play }) = asked else {
            return;
        };
        if let Some((path, opened_as)) = open {
            generation = opened_as;
            clock = None;
            reader = None;
            match VideoReader::open(&path, 0, 1) {
                Ok(mut opened) => match opened.next_frame() {
                    Ok(Some((n, frame))) => {
                        slot.show(Arc::new(frame));
                        post(Outcome::Shown {
                            generation,
                            position: n,
                        });
                        reader = Some(opened);
                    }
                    Ok(None) => post(Outcome::Failed {
                        generation,
                        reason: format!("{}: no frames", path.display()),
                    }),
                    Err(err) => post(Outcome::Failed {
                        generation,
                        reason: err.to_string(),
                    }),
                },
                Err(err) => post(Outcome::Failed {
                    generation,
                    reason: err.to_string(),
                }),
            }
        }
        if let Some(play) = play {
            clock = None;
            if let (true, Some(r)) = (play, reader.as_mut()) {
                if r.rewind().is_ok() {
                    clock = Some((Instant::now(), u64::MAX));
                }
            }
        }
        let (Some((started, first)), Some(r)) = (clock, reader.as_mut()) else {
            continue;
        };
        match r.next_frame() {
            Ok(Some((n, frame))) => {
                let first = if first == u64::MAX { n } else { first };
                let due = started + Duration::from_secs_f64((n - first.min(n)) as f64 / r.fps());
                clock = Some((started, first));
                // Wait for the frame's time, still taking requests (a new file, a stop).
                let wait = due.saturating_duration_since(Instant::now());
                if !wait.is_zero() {
                    std::thread::sleep(wait.min(Duration::from_millis(200)));
                }
                slot.show(Arc::new(frame));
                post(Outcome::Shown {
                    generation,
                    position: n,
                });
            }
            Ok(None) => {
                clock = None;
                post(Outcome::Ended { generation });
            }
            Err(err) => {
                clock = None;
                post(Outcome::Failed {
                    generation,
                    reason: err.to_string(),
                });
            }
        }
    }
}

impl qobject::ClipPlayer {
    fn request(mut self: Pin<&mut Self>, fill: impl FnOnce(&mut Asked)) {
        let qt = self.qt_thread();
        let frames = self.frames.clone();
        let posted = post_to_worker(
            &mut self.as_mut().rust_mut().worker,
            "clip-player",
            frames,
            move |outcome| {
                let _ = qt.queue(move |view| view.receive(outcome));
            },
            player_loop,
            fill,
        );
        if let Err(err) = posted {
            self.as_mut().set_note(QString::from(&format!(
                "the clip player cannot start its thread: {err}"
            )));
        }
    }

    fn open(mut self: Pin<&mut Self>) {
        let file = self.file.to_string();
        self.frames.clear();
        self.as_mut().set_position(-1);
        self.as_mut().set_shown(0);
        self.as_mut().set_note(QString::default());
        self.as_mut().set_playing(false);
        if file.is_empty() {
            return;
        }
        let generation = self.generation_posted + 1;
        self.as_mut().rust_mut().generation_posted = generation;
        self.request(|r| {
            r.open = Some((PathBuf::from(file), generation));
            r.play = Some(false);
        });
    }

    fn play_changed(self: Pin<&mut Self>) {
        let play = self.playing;
        if self.file.is_empty() {
            return;
        }
        self.request(|r| r.play = Some(play));
    }

    fn receive(mut self: Pin<&mut Self>, outcome: Outcome) {
        let current = self.generation_posted;
        match outcome {
            Outcome::Shown {
                generation,
                position,
            } if generation == current => {
                self.as_mut().set_position(position as i64);
                let shown = self.shown.saturating_add(1);
                self.as_mut().set_shown(shown);
                self.frame_available();
            }
            Outcome::Ended { generation } if generation == current => {
                self.as_mut().set_playing(false);
            }
            Outcome::Failed { generation, reason } if generation == current => {
                self.as_mut().set_playing(false);
                self.as_mut().set_note(QString::from(&reason));
            }
            _ => {}
        }
    }

    fn frame_shape(&self, width: &mut u32, height: &mut u32, format: &mut u32) {
        self.frames.shape(width, height, format);
    }

    fn grab_frame(&self, dst: &mut [u8], stride: usize) -> bool {
        self.frames.grab(dst, stride)
    }
}

impl cxx_qt::Initialize for qobject::ClipPlayer {
    fn initialize(mut self: Pin<&mut Self>) {
        self.as_mut()
            .on_file_changed(|player| player.open())
            .release();
        self.on_playing_changed(|player| player.play_changed())
            .release();
    }
}
