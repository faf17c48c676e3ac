//! What the rig's controls act on, shared by the rig, its control socket, its gRPC API and the
//! clip registry: the rig's counters (`State`), its status, and the handles that trigger.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use framelane_core::fastlane::shm::monotonic_ns;
use serde::Serialize;

use crate::camera::{lock, Camera, CameraStatus};
use crate::clip::ClipDescription;
use crate::config::RigConfig;

#[derive(Debug, Clone, Default, Serialize)]
pub struct RigStatus {
    pub cameras: Vec<CameraStatus>,
    pub triggers: u64,
    pub triggers_refused: u64,
    pub clips_written: u64,
    pub clips_failed: u64,
    pub pending: usize,
    pub errors: Vec<String>,
    pub output_dir: String,
    pub disk_free_mb: u64,
    /// Bytes of clip files written since the rig started, and for how long it has run: the
    /// rate that disk space is used at.
    pub bytes_written: u64,
    pub uptime_s: f64,
    pub last_clip: Option<ClipDescription>,
    /// Clips listed in the telemetry daemon's store (with `telemetry_data_dir`).
    pub clips_registered: u64,
    /// Why clips are not listed in the store yet (no daemon, refused), empty when they are.
    pub register_note: String,
}

impl RigStatus {
    /// Hours until the disk reaches the reserve at the rate clips were written so far (None
    /// before the first clip).
    pub fn hours_left(&self, reserve_mb: u64) -> Option<f64> {
        if self.bytes_written == 0 || self.uptime_s <= 0.0 {
            return None;
        }
        let per_hour = self.bytes_written as f64 / self.uptime_s * 3600.0;
        let usable = self.disk_free_mb.saturating_sub(reserve_mb) as f64 * (1u64 << 20) as f64;
        Some(usable / per_hour)
    }
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) triggers: u64,
    pub(crate) refused: u64,
    pub(crate) written: u64,
    pub(crate) failed: u64,
    pub(crate) pending: usize,
    pub(crate) errors: Vec<String>,
    pub(crate) last_clip: Option<ClipDescription>,
    pub(crate) bytes_written: u64,
    pub(crate) started: Option<Instant>,
    pub(crate) registered: u64,
    pub(crate) register_note: String,
}

/// Free megabytes of the file system holding `dir`.
pub fn free_mb(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we own; the path is NUL-terminated.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    Some((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64) >> 20)
}

/// Triggers clips on a rig from another thread.
#[derive(Clone)]
pub struct TriggerHandle {
    pub(crate) triggers: SyncSender<u64>,
    pub(crate) state: Arc<Mutex<State>>,
}

impl TriggerHandle {
    /// Triggers a clip now; false when the queue is full or the rig has stopped.
    pub fn trigger(&self) -> bool {
        trigger(&self.triggers, &self.state)
    }
}

pub(crate) fn trigger(triggers: &SyncSender<u64>, state: &Mutex<State>) -> bool {
    let ok = triggers.try_send(monotonic_ns()).is_ok();
    let mut s = lock(state);
    if ok {
        s.triggers += 1;
    } else {
        s.refused += 1;
    }
    ok
}

pub(crate) fn status(cameras: &[Camera], state: &Mutex<State>, config: &RigConfig) -> RigStatus {
    let s = lock(state);
    RigStatus {
        cameras: cameras.iter().map(Camera::status).collect(),
        triggers: s.triggers,
        triggers_refused: s.refused,
        clips_written: s.written,
        clips_failed: s.failed,
        pending: s.pending,
        errors: s.errors.clone(),
        output_dir: config.output_dir().display().to_string(),
        disk_free_mb: free_mb(&config.output_dir()).unwrap_or(0),
        bytes_written: s.bytes_written,
        uptime_s: s.started.map_or(0.0, |t| t.elapsed().as_secs_f64()),
        last_clip: s.last_clip.clone(),
        clips_registered: s.registered,
        register_note: s.register_note.clone(),
    }
}

/// What the control socket and the gRPC API act on.
#[derive(Clone)]
pub(crate) struct ControlHandle {
    pub(crate) triggers: SyncSender<u64>,
    pub(crate) state: Arc<Mutex<State>>,
    pub(crate) cameras: Arc<Vec<Camera>>,
    pub(crate) config: RigConfig,
    pub(crate) seq: Arc<AtomicU64>,
}

impl ControlHandle {
    /// Triggers a clip; the trigger's number, or None when the queue is full.
    pub(crate) fn trigger(&self) -> Option<u64> {
        trigger(&self.triggers, &self.state).then(|| self.seq.fetch_add(1, Ordering::Relaxed) + 1)
    }

    pub(crate) fn status(&self) -> RigStatus {
        status(&self.cameras, &self.state, &self.config)
    }

    pub(crate) fn token(&self) -> Option<String> {
        self.config.token.clone()
    }
}
