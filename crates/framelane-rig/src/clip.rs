//! Clips: for one trigger, every camera's packets of [first trigger - pre-roll, last trigger +
//! post-roll] written by packet copy into `<output>/<clip>/<camera>.mp4` (fast start), and
//! `clip.json` beside them, written last and atomically: a clip folder without `clip.json` is
//! unfinished (a killed writer) and is never listed.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use framelane_core::encode::packets::write_clip;

use crate::camera::Camera;
use crate::RigError;

pub const DESCRIPTION: &str = "clip.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClipCamera {
    pub name: String,
    pub file: String,
    pub frames: u64,
    pub encoder: String,
    /// Capture time of the first and last frame, relative to the (first) trigger, ms.
    pub start_offset_ms: f64,
    pub end_offset_ms: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClipDescription {
    pub id: String,
    /// Monotonic ns of the first trigger and of every trigger the clip took in.
    pub triggers_ns: Vec<u64>,
    pub triggered_unix_ms: u64,
    pub pre_roll_ms: u64,
    pub post_roll_ms: u64,
    pub cameras: Vec<ClipCamera>,
    /// Largest difference of the cameras' first-frame capture times, ms.
    pub start_skew_ms: f64,
    pub codec: String,
    /// Cameras that had nothing for the interval (failed, or not started), with why.
    pub missing: Vec<String>,
}

/// Writes one clip; returns its description. `from_ns`..`to_ns` is the interval wanted.
#[allow(clippy::too_many_arguments)]
pub fn write(
    dir: &Path,
    id: &str,
    cameras: &[Camera],
    triggers_ns: &[u64],
    from_ns: u64,
    to_ns: u64,
    pre_roll_ms: u64,
    post_roll_ms: u64,
    codec: &str,
) -> Result<ClipDescription, RigError> {
    let folder = dir.join(id);
    std::fs::create_dir_all(&folder).map_err(|e| RigError::Output {
        path: folder.clone(),
        reason: e.to_string(),
    })?;
    let first_trigger = triggers_ns.first().copied().unwrap_or(from_ns);
    let offset = |ns: u64| (ns as f64 - first_trigger as f64) / 1e6;
    let mut described = Vec::new();
    let mut missing = Vec::new();
    for camera in cameras {
        let (format, packets) = camera.interval(from_ns, to_ns);
        let (Some(format), Some(first), Some(last)) = (format, packets.first(), packets.last())
        else {
            missing.push(format!(
                "{}: no frames for the interval ({})",
                camera.name(),
                camera.status().reason
            ));
            continue;
        };
        let file = format!("{}.mp4", camera.name());
        let path = folder.join(&file);
        let frames =
            write_clip(&path, &format, packets.iter().map(|p| &p.packet)).map_err(|e| {
                RigError::Output {
                    path: path.clone(),
                    reason: e.to_string(),
                }
            })?;
        described.push(ClipCamera {
            name: camera.name().to_owned(),
            file,
            frames,
            encoder: format.encoder.clone(),
            start_offset_ms: offset(first.captured_ns),
            end_offset_ms: offset(last.captured_ns),
        });
    }
    let starts: Vec<f64> = described.iter().map(|c| c.start_offset_ms).collect();
    let skew = match (
        starts.iter().cloned().reduce(f64::min),
        starts.iter().cloned().reduce(f64::max),
    ) {
        (Some(a), Some(b)) => b - a,
        _ => 0.0,
    };
    let description = ClipDescription {
        id: id.to_owned(),
        triggers_ns: triggers_ns.to_vec(),
        triggered_unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
        pre_roll_ms,
        post_roll_ms,
        cameras: described,
        start_skew_ms: skew,
        codec: codec.to_owned(),
        missing,
    };
    let json = folder.join(DESCRIPTION);
    let part = folder.join(format!("{DESCRIPTION}.part"));
    let text = serde_json::to_vec_pretty(&description).map_err(|e| RigError::Output {
        path: json.clone(),
        reason: e.to_string(),
    })?;
    std::fs::write(&part, text)
        .and_then(|()| std::fs::rename(&part, &json))
        .map_err(|e| RigError::Output {
            path: json.clone(),
            reason: e.to_string(),
        })?;
    Ok(description)
}

/// Finished clips in `dir` (folders with a `clip.json`), oldest first.
pub fn list(dir: &Path) -> Vec<(PathBuf, ClipDescription)> {
    let mut clips: Vec<(PathBuf, ClipDescription)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let folder = entry.path();
            let text = std::fs::read_to_string(folder.join(DESCRIPTION)).ok()?;
            let description: ClipDescription = serde_json::from_str(&text).ok()?;
            Some((folder, description))
        })
        .collect();
    clips.sort_by_key(|(_, d)| (d.triggered_unix_ms, d.id.clone()));
    clips
}
