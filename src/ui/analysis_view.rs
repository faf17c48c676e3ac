//! `AnalysisView`: an episode analysis (the output folder of `framelane analyze`) in the Replay
//! tab. The `analysis-review` thread reads the manifests and the video, decodes the asked frame,
//! draws the faces' boxes and track ids over it and hands it to the same `FrameItem` as the live
//! and replay views. The GUI thread navigates: step through analysed frames, jump to the next
//! scene cut or the next appearance of a track, cut marks along the timeline.

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
        /// Output folder of an analysis (setting it opens it; empty closes).
        #[qproperty(QString, folder)]
        #[qproperty(QString, ep_id, cxx_name = "epId")]
        /// Analysed frames.
        #[qproperty(i32, count)]
        /// Index of the shown analysed frame.
        #[qproperty(i32, position)]
        /// Frame number (in the video) at `position`.
        #[qproperty(i64, frame)]
        #[qproperty(f64, time)]
        /// Why the frame was analysed: cut, warmup, stride.
        #[qproperty(QString, reason)]
        /// Faces in the frame at `position`.
        #[qproperty(i32, faces)]
        #[qproperty(i32, cut_count, cxx_name = "cutCount")]
        #[qproperty(i32, track_count, cxx_name = "trackCount")]
        /// Frame number of the picture on screen (-1: none yet).
        #[qproperty(i64, shown_frame, cxx_name = "shownFrame")]
        #[qproperty(QString, note)]
        #[qproperty(bool, loading)]
        type AnalysisView = super::AnalysisViewRust;

        #[cxx_override]
        #[cxx_name = "frameShape"]
        fn frame_shape(self: &AnalysisView, width: &mut u32, height: &mut u32, format: &mut u32);

        #[cxx_override]
        #[cxx_name = "grabFrame"]
        fn grab_frame(self: &AnalysisView, dst: &mut [u8], stride: usize) -> bool;

        /// Shows the analysed frame at `position` (clamped).
        #[qinvokable]
        fn seek(self: Pin<&mut AnalysisView>, position: i32);

        /// Moves by `delta` analysed frames; false at either end.
        #[qinvokable]
        #[cxx_name = "stepBy"]
        fn step_by(self: Pin<&mut AnalysisView>, delta: i32) -> bool;

        /// Jumps to the first analysed frame of the next scene cut; false when there is none.
        #[qinvokable]
        #[cxx_name = "nextCut"]
        fn next_cut(self: Pin<&mut AnalysisView>) -> bool;

        /// Jumps to the next analysed frame where `track` appears; false when it does not.
        #[qinvokable]
        #[cxx_name = "nextAppearance"]
        fn next_appearance(self: Pin<&mut AnalysisView>, track: i32) -> bool;

        /// Where cut `index` lies along the timeline, 0..1 (-1 outside).
        #[qinvokable]
        #[cxx_name = "cutFraction"]
        fn cut_fraction(self: &AnalysisView, index: i32) -> f64;
    }

    unsafe extern "RustQt" {
        #[inherit]
        #[qsignal]
        #[cxx_name = "frameAvailable"]
        fn frame_available(self: Pin<&mut AnalysisView>);
    }

    impl cxx_qt::Threading for AnalysisView {}
    impl cxx_qt::Initialize for AnalysisView {}
}

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use cxx_qt::{CxxQtType, Threading};
use cxx_qt_lib::QString;

use framelane_analyze::review::{draw_overlay, Review};
use framelane_core::replay::VideoReader;

use super::view_worker::{post_to_worker, FrameSlot, RequestSlots, Requests};

/// Frames a forward step decodes on instead of seeking.
const FORWARD_WINDOW: u32 = 60;

/// What the GUI asked for; each slot holds only the newest request.
#[derive(Default)]
struct Asked {
    open: Option<PathBuf>,
    frame: Option<u64>,
}

impl RequestSlots for Asked {
    fn is_empty(&self) -> bool {
        self.open.is_none() && self.frame.is_none()
    }
}

enum Outcome {
    Opened(Arc<Review>),
    Frame { frame: u64, note: String },
    Failed(String),
}

pub struct AnalysisViewRust {
    folder: QString,
    ep_id: QString,
    count: i32,
    position: i32,
    frame: i64,
    time: f64,
    reason: QString,
    faces: i32,
    cut_count: i32,
    track_count: i32,
    shown_frame: i64,
    note: QString,
    loading: bool,
    review: Option<Arc<Review>>,
    shown: Arc<FrameSlot>,
    worker: Option<Arc<Requests<Asked>>>,
}

impl Default for AnalysisViewRust {
    fn default() -> Self {
        Self {
            folder: QString::default(),
            ep_id: QString::default(),
            count: 0,
            position: 0,
            frame: -1,
            time: 0.0,
            reason: QString::default(),
            faces: 0,
            cut_count: 0,
            track_count: 0,
            shown_frame: -1,
            note: QString::default(),
            loading: false,
            review: None,
            shown: Arc::new(FrameSlot::default()),
            worker: None,
        }
    }
}

impl Drop for AnalysisViewRust {
    fn drop(&mut self) {
        if let Some(worker) = &self.worker {
            worker.stop();
        }
    }
}

fn review_loop(requests: Arc<Requests<Asked>>, shown: Arc<FrameSlot>, post: impl Fn(Outcome)) {
    let mut review: Option<Arc<Review>> = None;
    let mut reader: Option<VideoReader> = None;
    while let Some(asked) = requests.next() {
        if let Some(dir) = asked.open {
            reader = None;
            review = None;
            let opened = Review::open(&dir).map_err(|e| e.to_string()).and_then(|r| {
                let fps = r.fps.round().clamp(0.0, 1000.0) as u32;
                let video =
                    VideoReader::open(&r.video, fps, FORWARD_WINDOW).map_err(|e| e.to_string())?;
                Ok((Arc::new(r), video))
            });
            match opened {
                Ok((r, video)) => {
                    reader = Some(video);
                    review = Some(r.clone());
                    post(Outcome::Opened(r));
                }
                Err(err) => post(Outcome::Failed(err)),
            }
        }
        if let (Some(n), Some(video), Some(r)) = (asked.frame, reader.as_mut(), review.as_ref()) {
            let note = match video.frame(n) {
                Ok(Some(mut picture)) => {
                    draw_overlay(
                        &mut picture.rgba,
                        picture.width,
                        picture.height,
                        r.boxes_of(n),
                    );
                    shown.show(Arc::new(picture));
                    String::new()
                }
                Ok(None) => format!("frame {n} is past the end of the video"),
                Err(err) => err.to_string(),
            };
            post(Outcome::Frame { frame: n, note });
        }
    }
}

impl qobject::AnalysisView {
    fn request(mut self: Pin<&mut Self>, fill: impl FnOnce(&mut Asked)) {
        let qt = self.qt_thread();
        let frames = self.shown.clone();
        let posted = post_to_worker(
            &mut self.as_mut().rust_mut().worker,
            "analysis-review",
            frames,
            move |outcome| {
                let _ = qt.queue(move |view| view.receive(outcome));
            },
            review_loop,
            fill,
        );
        if let Err(err) = posted {
            self.as_mut().set_loading(false);
            self.as_mut().set_note(QString::from(&format!(
                "analysis review cannot start its thread: {err}"
            )));
        }
    }

    fn open(mut self: Pin<&mut Self>) {
        let folder = self.folder.to_string();
        self.as_mut().rust_mut().review = None;
        self.shown.clear();
        self.as_mut().set_count(0);
        self.as_mut().set_position(0);
        self.as_mut().set_frame(-1);
        self.as_mut().set_shown_frame(-1);
        self.as_mut().set_cut_count(0);
        self.as_mut().set_track_count(0);
        self.as_mut().set_note(QString::default());
        if folder.is_empty() {
            return;
        }
        self.as_mut().set_loading(true);
        self.request(|r| r.open = Some(PathBuf::from(folder)));
    }

    fn receive(mut self: Pin<&mut Self>, outcome: Outcome) {
        match outcome {
            Outcome::Opened(review) => {
                // The review first: the counts' change handlers (timeline marks) query it.
                self.as_mut().rust_mut().review = Some(review.clone());
                self.as_mut().set_loading(false);
                self.as_mut().set_ep_id(QString::from(&review.ep_id));
                self.as_mut()
                    .set_count(i32::try_from(review.frames.len()).unwrap_or(i32::MAX));
                self.as_mut()
                    .set_cut_count(i32::try_from(review.cuts.len()).unwrap_or(i32::MAX));
                self.as_mut()
                    .set_track_count(i32::try_from(review.tracks).unwrap_or(i32::MAX));
                if review.frames.is_empty() {
                    self.as_mut()
                        .set_note(QString::from("this analysis holds no analysed frames"));
                }
                self.seek(0);
            }
            Outcome::Frame { frame, note } => {
                if frame as i64 != self.frame {
                    return;
                }
                self.as_mut().set_note(QString::from(&note));
                if note.is_empty() {
                    self.as_mut().set_shown_frame(frame as i64);
                    self.frame_available();
                }
            }
            Outcome::Failed(error) => {
                self.as_mut().set_loading(false);
                self.as_mut().set_note(QString::from(&error));
            }
        }
    }

    fn seek(mut self: Pin<&mut Self>, position: i32) {
        let Some(review) = self.review.clone() else {
            return;
        };
        if review.frames.is_empty() {
            return;
        }
        let position = position.clamp(0, review.frames.len() as i32 - 1);
        let line = &review.frames[position as usize];
        self.as_mut().set_position(position);
        self.as_mut().set_frame(line.frame as i64);
        self.as_mut().set_time(line.time);
        let reason = serde_json::to_value(line.reason)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        self.as_mut().set_reason(QString::from(&reason));
        self.as_mut()
            .set_faces(review.boxes_of(line.frame).len() as i32);
        let n = line.frame;
        self.request(|r| r.frame = Some(n));
    }

    fn step_by(self: Pin<&mut Self>, delta: i32) -> bool {
        let target = self.position.saturating_add(delta);
        if target < 0 || target >= self.count {
            return false;
        }
        self.seek(target);
        true
    }

    fn next_cut(self: Pin<&mut Self>) -> bool {
        let target = self
            .review
            .as_ref()
            .and_then(|r| r.next_cut(self.position.max(0) as usize));
        match target {
            Some(position) => {
                self.seek(position as i32);
                true
            }
            None => false,
        }
    }

    fn next_appearance(self: Pin<&mut Self>, track: i32) -> bool {
        let Ok(track) = u64::try_from(track) else {
            return false;
        };
        let target = self
            .review
            .as_ref()
            .and_then(|r| r.next_appearance(self.position.max(0) as usize, track));
        match target {
            Some(position) => {
                self.seek(position as i32);
                true
            }
            None => false,
        }
    }

    fn cut_fraction(&self, index: i32) -> f64 {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.review.as_ref()?.cut_fraction(i))
            .unwrap_or(-1.0)
    }

    fn frame_shape(&self, width: &mut u32, height: &mut u32, format: &mut u32) {
        self.shown.shape(width, height, format);
    }

    fn grab_frame(&self, dst: &mut [u8], stride: usize) -> bool {
        self.shown.grab(dst, stride)
    }
}

impl cxx_qt::Initialize for qobject::AnalysisView {
    fn initialize(self: Pin<&mut Self>) {
        self.on_folder_changed(|view| view.open()).release();
    }
}
