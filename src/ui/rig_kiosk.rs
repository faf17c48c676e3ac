//! The recording rig in the window (`framelane rig --config rig.yaml --kiosk`): `RigControl`
//! runs the rig in this process and shows its state to QML; one `RigCameraView` per camera is
//! the `FrameSource` of its preview. The rig lives in one slot of this module so the camera
//! views find it; `RigControl` starts it and stops it (writing pending clips) when it goes.

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
        /// rig.yaml to run (setting it starts the rig).
        #[qproperty(QString, config)]
        #[qproperty(i32, camera_count, cxx_name = "cameraCount")]
        #[qproperty(i32, clips)]
        #[qproperty(i32, triggers)]
        #[qproperty(f64, disk_free_mb, cxx_name = "diskFreeMb")]
        /// Hours until the disk reserve at the current rate; -1 before the first clip.
        #[qproperty(f64, hours_left, cxx_name = "hoursLeft")]
        #[qproperty(QString, last_clip, cxx_name = "lastClip")]
        /// The newest error (a failed clip, a rig that cannot start); empty when none.
        #[qproperty(QString, error)]
        /// Bumped by every refresh: bindings of the per-camera lines (counts that move with
        /// every frame) depend on it, so they follow each look, not only triggers and disk.
        #[qproperty(i32, looks)]
        type RigControl = super::RigControlRust;

        /// Triggers a clip now.
        #[qinvokable]
        fn trigger(self: Pin<&mut RigControl>) -> bool;

        /// Re-reads the rig's status into the properties.
        #[qinvokable]
        fn refresh(self: Pin<&mut RigControl>);

        /// Camera `index`: name.
        #[qinvokable]
        #[cxx_name = "cameraName"]
        fn camera_name(self: &RigControl, index: i32) -> QString;

        /// Camera `index`: state (live, retrying, failed, starting).
        #[qinvokable]
        #[cxx_name = "cameraState"]
        fn camera_state(self: &RigControl, index: i32) -> QString;

        /// Camera `index`: one line of figures (or the reason it is not live).
        #[qinvokable]
        #[cxx_name = "cameraLine"]
        fn camera_line(self: &RigControl, index: i32) -> QString;

        /// The `index`-th newest clip: its name, cameras and frame counts.
        #[qinvokable]
        #[cxx_name = "clipLine"]
        fn clip_line(self: &RigControl, index: i32) -> QString;

        /// Path of the first camera's MP4 of the `index`-th newest clip (its thumbnail).
        #[qinvokable]
        #[cxx_name = "clipFile"]
        fn clip_file(self: &RigControl, index: i32) -> QString;
    }

    extern "RustQt" {
        #[qobject]
        #[qml_element]
        #[base = FrameSource]
        #[qproperty(i32, camera)]
        /// Previews shown so far.
        #[qproperty(i32, shown)]
        type RigCameraView = super::RigCameraViewRust;

        #[cxx_override]
        #[cxx_name = "frameShape"]
        fn frame_shape(self: &RigCameraView, width: &mut u32, height: &mut u32, format: &mut u32);

        #[cxx_override]
        #[cxx_name = "grabFrame"]
        fn grab_frame(self: &RigCameraView, dst: &mut [u8], stride: usize) -> bool;

        /// Asks for a repaint when the camera has a newer preview.
        #[qinvokable]
        fn poll(self: Pin<&mut RigCameraView>);
    }

    unsafe extern "RustQt" {
        #[inherit]
        #[qsignal]
        #[cxx_name = "frameAvailable"]
        fn frame_available(self: Pin<&mut RigCameraView>);
    }

    impl cxx_qt::Initialize for RigControl {}
}

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cxx_qt::CxxQtType;
use cxx_qt_lib::QString;

use framelane_core::fastlane::PixelFormat;
use framelane_core::media::copy_rows;
use framelane_rig::clip::ClipDescription;
use framelane_rig::rig::RigStatus;
use framelane_rig::{Rig, RigConfig};

use super::view_worker::lock;

/// The rig this process runs (one at most).
static RIG: Mutex<Option<Arc<Rig>>> = Mutex::new(None);

fn rig() -> Option<Arc<Rig>> {
    lock(&RIG).clone()
}

#[derive(Default)]
pub struct RigControlRust {
    config: QString,
    camera_count: i32,
    clips: i32,
    triggers: i32,
    disk_free_mb: f64,
    hours_left: f64,
    last_clip: QString,
    error: QString,
    looks: i32,
    status: RigStatus,
    recent: Vec<ClipDescription>,
}

impl Drop for RigControlRust {
    fn drop(&mut self) {
        // The last reference: the rig stops and writes its pending clips.
        let taken = lock(&RIG).take();
        if let Some(rig) = taken.and_then(|r| Arc::try_unwrap(r).ok()) {
            rig.stop();
        }
    }
}

fn text(s: impl AsRef<str>) -> QString {
    QString::from(s.as_ref())
}

impl qobject::RigControl {
    fn start(mut self: Pin<&mut Self>) {
        let path = PathBuf::from(self.config.to_string());
        if path.as_os_str().is_empty() {
            return;
        }
        let started = RigConfig::load(&path).and_then(Rig::start);
        match started {
            Ok(rig) => {
                let cameras = rig.config().cameras.len() as i32;
                *lock(&RIG) = Some(Arc::new(rig));
                self.as_mut().set_camera_count(cameras);
                self.as_mut().set_error(QString::default());
                self.refresh();
            }
            Err(err) => self.as_mut().set_error(text(err.to_string())),
        }
    }

    fn trigger(mut self: Pin<&mut Self>) -> bool {
        let ok = rig().is_some_and(|r| r.trigger());
        if !ok {
            self.as_mut().set_error(text(
                "trigger refused: no rig, or its trigger queue is full",
            ));
        }
        self.refresh();
        ok
    }

    fn refresh(mut self: Pin<&mut Self>) {
        let Some(rig) = rig() else {
            return;
        };
        let status = rig.status();
        let reserve = rig.config().recording.disk_reserve_mb;
        // The clip folders are read again only when a clip was written since the last look.
        let recent = if status.clips_written as i32 != self.clips || self.recent.is_empty() {
            rig.newest_clips(8).into_iter().map(|(_, d)| d).collect()
        } else {
            self.recent.clone()
        };
        let last = recent.first().map(|d| d.id.clone()).unwrap_or_default();
        let (clips, triggers, free) = (
            status.clips_written as i32,
            status.triggers as i32,
            status.disk_free_mb as f64,
        );
        let hours = status.hours_left(reserve).unwrap_or(-1.0);
        let newest_error = status.errors.last().cloned();
        // The rows first: the properties' change handlers (QML bindings) read them.
        {
            let mut rust = self.as_mut().rust_mut();
            rust.status = status;
            rust.recent = recent;
        }
        self.as_mut().set_clips(clips);
        self.as_mut().set_triggers(triggers);
        self.as_mut().set_disk_free_mb(free);
        self.as_mut().set_hours_left(hours);
        self.as_mut().set_last_clip(text(last));
        if let Some(newest) = newest_error {
            self.as_mut().set_error(text(newest));
        }
        let looks = self.looks.wrapping_add(1) & i32::MAX;
        self.as_mut().set_looks(looks);
    }

    fn camera(&self, index: i32) -> Option<&framelane_rig::camera::CameraStatus> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.status.cameras.get(i))
    }

    fn camera_name(&self, index: i32) -> QString {
        text(
            self.camera(index)
                .map(|c| c.name.as_str())
                .unwrap_or_default(),
        )
    }

    fn camera_state(&self, index: i32) -> QString {
        text(
            self.camera(index)
                .map(|c| c.state.as_str())
                .unwrap_or_default(),
        )
    }

    fn camera_line(&self, index: i32) -> QString {
        text(match self.camera(index) {
            Some(c) if c.state == "live" => format!(
                "{} frames · {} dropped · {:.1} s pre-roll · {}",
                c.captured, c.dropped, c.ring_seconds, c.encoder
            ),
            Some(c) => format!("{}: {}", c.state, c.reason),
            None => String::new(),
        })
    }

    fn clip_line(&self, index: i32) -> QString {
        let Some(d) = usize::try_from(index).ok().and_then(|i| self.recent.get(i)) else {
            return QString::default();
        };
        let cams: Vec<String> = d
            .cameras
            .iter()
            .map(|c| format!("{} {} frames", c.name, c.frames))
            .collect();
        text(format!("{} · {}", d.id, cams.join(", ")))
    }
}

impl qobject::RigControl {
    fn clip_file(&self, index: i32) -> QString {
        let Some(d) = usize::try_from(index).ok().and_then(|i| self.recent.get(i)) else {
            return QString::default();
        };
        let Some(first) = d.cameras.first() else {
            return QString::default();
        };
        let Some(rig) = rig() else {
            return QString::default();
        };
        text(
            rig.config()
                .output_dir()
                .join(&d.id)
                .join(&first.file)
                .display()
                .to_string(),
        )
    }
}

impl cxx_qt::Initialize for qobject::RigControl {
    fn initialize(self: Pin<&mut Self>) {
        self.on_config_changed(|control| control.start()).release();
    }
}

#[derive(Default)]
pub struct RigCameraViewRust {
    camera: i32,
    shown: i32,
    /// Sequence of the preview painted last.
    painted: AtomicU64,
    /// Sequence seen by the last poll.
    polled: u64,
    shape: Mutex<(u32, u32)>,
}

impl qobject::RigCameraView {
    fn poll(mut self: Pin<&mut Self>) {
        let Some(rig) = rig() else {
            return;
        };
        let Some(camera) = usize::try_from(self.camera)
            .ok()
            .and_then(|i| rig.cameras().get(i))
        else {
            return;
        };
        if let Some((seq, shape)) = camera.with_preview(self.polled, |p| (p.width, p.height)) {
            *lock(&self.shape) = shape;
            self.as_mut().rust_mut().polled = seq;
            self.frame_available();
        }
    }

    fn frame_shape(&self, width: &mut u32, height: &mut u32, format: &mut u32) {
        let (w, h) = *lock(&self.shape);
        (*width, *height, *format) = if w > 0 && h > 0 {
            (w, h, PixelFormat::Rgb8.code())
        } else {
            (0, 0, 0)
        };
    }

    fn grab_frame(&self, dst: &mut [u8], stride: usize) -> bool {
        let Some(rig) = rig() else {
            return false;
        };
        let Some(camera) = usize::try_from(self.camera)
            .ok()
            .and_then(|i| rig.cameras().get(i))
        else {
            return false;
        };
        let seen = self.painted.load(Ordering::Relaxed);
        let copied = camera.with_preview(seen, |p| {
            copy_rows(&p.rgb, p.width, p.height, 3, dst, stride)
        });
        match copied {
            Some((seq, Ok(()))) => {
                self.painted.store(seq, Ordering::Relaxed);
                true
            }
            Some((_, Err(err))) => {
                tracing::warn!(error = %err, "rig preview not shown");
                false
            }
            None => false,
        }
    }
}
