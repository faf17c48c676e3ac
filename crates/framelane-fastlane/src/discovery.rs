//! Finding live fast-lane segments (ours and MOSAIC's) and removing the ones whose writer died.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::format::{self, FrameGeometry, SegmentKind};
use super::reader::{FastLaneReader, WriterStatus};
use super::{mosaic, shm, FastLaneError};

/// One segment file as a run picker shows it.
#[derive(Debug, Clone)]
pub struct SegmentInfo {
    pub run_id: String,
    pub kind: SegmentKind,
    pub path: PathBuf,
    pub bytes: u64,
    /// Time since the file was last modified (creation, for a segment written through a mapping).
    pub age: Duration,
    /// Geometry and frames published, when the segment could be read.
    pub geometry: Option<FrameGeometry>,
    pub frames_published: u64,
    /// Writer state, or why the segment cannot be read.
    pub state: Result<WriterStatus, String>,
}

impl SegmentInfo {
    /// A segment whose writer is known to be gone.
    pub fn is_stale(&self) -> bool {
        matches!(self.state, Ok(WriterStatus::Gone { .. }))
    }

    /// State in a few words, for lists.
    pub fn state_label(&self) -> String {
        match &self.state {
            Ok(WriterStatus::Alive) => "live".into(),
            Ok(WriterStatus::Silent { idle_ms }) => {
                format!("silent {:.1}s", *idle_ms as f64 / 1000.0)
            }
            Ok(WriterStatus::Gone { reason }) => format!("writer gone ({reason})"),
            Ok(WriterStatus::Replaced) => "replaced".into(),
            Err(reason) => format!("invalid: {reason}"),
        }
    }
}

fn kind_of(name: &str) -> Option<SegmentKind> {
    if name.starts_with(format::SEGMENT_PREFIX) {
        Some(SegmentKind::Framelane)
    } else if name.starts_with(mosaic::SEGMENT_PREFIX) {
        Some(SegmentKind::MosaicV1)
    } else {
        None
    }
}

/// Lists framelane and MOSAIC segments in the segment directory, newest first.
pub fn list_segments() -> Result<Vec<SegmentInfo>, FastLaneError> {
    let files =
        shm::list_segment_files().map_err(|e| FastLaneError::io(shm::segment_dir(), "list", e))?;
    let now = SystemTime::now();
    let mut out = Vec::new();
    for (name, bytes, modified) in files {
        let Some(kind) = kind_of(&name) else { continue };
        let path = shm::segment_path(&name);
        let age = now.duration_since(modified).unwrap_or_default();
        let fallback_id = name
            .strip_prefix(format::SEGMENT_PREFIX)
            .or_else(|| name.strip_prefix(mosaic::SEGMENT_PREFIX))
            .unwrap_or(&name)
            .to_owned();
        let info = match FastLaneReader::open(&path) {
            Ok(reader) => SegmentInfo {
                run_id: reader.run_id().to_owned(),
                kind: reader.kind(),
                bytes,
                age,
                geometry: Some(reader.geometry()),
                frames_published: reader.head(),
                state: Ok(reader.writer_status()),
                path,
            },
            Err(err) => SegmentInfo {
                run_id: fallback_id,
                kind,
                path,
                bytes,
                age,
                geometry: None,
                frames_published: 0,
                state: Err(err.to_string()),
            },
        };
        out.push(info);
    }
    out.sort_by(|a, b| a.age.cmp(&b.age).then_with(|| a.run_id.cmp(&b.run_id)));
    Ok(out)
}

/// Removes segments whose writer is gone and half-created segments left by dead writers.
/// Returns the paths removed.
pub fn clean_stale_segments() -> Result<Vec<PathBuf>, FastLaneError> {
    let mut removed = Vec::new();
    for info in list_segments()? {
        if info.is_stale() {
            shm::unlink_segment(&info.path)
                .map_err(|e| FastLaneError::io(&info.path, "remove", e))?;
            removed.push(info.path);
        }
    }
    let files =
        shm::list_segment_files().map_err(|e| FastLaneError::io(shm::segment_dir(), "list", e))?;
    for (name, _, _) in files {
        let Some(pid) = leftover_creator(&name) else {
            continue;
        };
        if shm::process_start_ticks(pid).is_none() {
            let path = shm::segment_path(&name);
            shm::unlink_segment(&path).map_err(|e| FastLaneError::io(&path, "remove", e))?;
            removed.push(path);
        }
    }
    Ok(removed)
}

/// Pid of the writer that was creating `.framelane.<run>.creating-<pid>`.
fn leftover_creator(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?;
    if !rest.starts_with(format::SEGMENT_PREFIX) {
        return None;
    }
    rest.rsplit_once(".creating-")?.1.parse().ok()
}

/// The segments as JSON (`framelane fastlane ls --json`).
pub fn segments_json(runs: &[SegmentInfo]) -> serde_json::Value {
    let items: Vec<serde_json::Value> = runs
        .iter()
        .map(|run| {
            serde_json::json!({
                "runId": run.run_id,
                "kind": run.kind.label(),
                "path": run.path.display().to_string(),
                "bytes": run.bytes,
                "ageSeconds": run.age.as_secs_f64(),
                "width": run.geometry.map_or(0, |g| g.width),
                "height": run.geometry.map_or(0, |g| g.height),
                "format": run.geometry.map_or("", |g| g.format.name()),
                "frames": run.frames_published,
                "state": run.state_label(),
                "stale": run.is_stale(),
            })
        })
        .collect();
    serde_json::Value::Array(items)
}
