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
    /// Steps and episodes in `telemetry.jsonl` (what the daemon received in the interval).
    #[serde(default)]
    pub telemetry_items: u64,
    /// Why there is no telemetry slice, when one was asked for and could not be read.
    #[serde(default)]
    pub telemetry_note: String,
}

/// Most telemetry rows of each kind beside one clip.
pub const TELEMETRY_LIMIT: usize = 100_000;

/// Writes `telemetry.jsonl` for monotonic [`from_ns`, `to_ns`] from the store in `data_dir`;
/// returns the number of lines.
fn write_telemetry(
    folder: &Path,
    data_dir: &Path,
    from_ns: u64,
    to_ns: u64,
) -> Result<u64, String> {
    use std::io::Write;
    // Monotonic to wall clock: the store keeps arrival times as Unix nanoseconds.
    let mono_now = framelane_core::fastlane::shm::monotonic_ns();
    let unix_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let to_unix = |ns: u64| unix_now.saturating_sub(mono_now.saturating_sub(ns));
    let database = data_dir.join(framelane_core::store::DATABASE_FILE);
    let reader = framelane_core::store::StoreReader::open(&database).map_err(|e| e.to_string())?;
    let items = reader
        .telemetry_between(to_unix(from_ns), to_unix(to_ns), TELEMETRY_LIMIT)
        .map_err(|e| e.to_string())?;
    let path = folder.join("telemetry.jsonl");
    let mut file =
        std::io::BufWriter::new(std::fs::File::create(&path).map_err(|e| e.to_string())?);
    for item in &items {
        serde_json::to_writer(&mut file, item).map_err(|e| e.to_string())?;
        file.write_all(b"\n").map_err(|e| e.to_string())?;
    }
    file.flush().map_err(|e| e.to_string())?;
    Ok(items.len() as u64)
}

/// Writes one clip; returns its description. `from_ns`..`to_ns` is the interval wanted;
/// `telemetry` the daemon's data directory for the telemetry slice (its failure is noted in
/// the description, the clip is still written).
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
    telemetry: Option<&Path>,
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
    let (telemetry_items, telemetry_note) = match telemetry {
        Some(data_dir) => match write_telemetry(&folder, data_dir, from_ns, to_ns) {
            Ok(n) => (n, String::new()),
            Err(reason) => (
                0,
                format!("no telemetry slice: {}: {reason}", data_dir.display()),
            ),
        },
        None => (0, String::new()),
    };
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
        telemetry_items,
        telemetry_note,
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
    list_where(dir, |_| true)
}

/// Finished clips in `dir` whose folder name `wanted` accepts, oldest first: only their
/// `clip.json` is read (a rig's folder holds thousands of clips after months).
pub fn list_where(dir: &Path, wanted: impl Fn(&str) -> bool) -> Vec<(PathBuf, ClipDescription)> {
    let mut clips: Vec<(PathBuf, ClipDescription)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.file_name().to_str().is_some_and(&wanted))
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

/// The `n` newest finished clips, newest first, reading only theirs: clip folders are named
/// `clip-<unix ms>-<n>`, so their names sort by time.
pub fn newest(dir: &Path, n: usize) -> Vec<(PathBuf, ClipDescription)> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| name.starts_with("clip-"))
        .collect();
    names.sort_by(|a, b| (b.len(), b).cmp(&(a.len(), a)));
    names
        .iter()
        .filter_map(|name| {
            let folder = dir.join(name);
            let text = std::fs::read_to_string(folder.join(DESCRIPTION)).ok()?;
            let description: ClipDescription = serde_json::from_str(&text).ok()?;
            Some((folder, description))
        })
        .take(n)
        .collect()
}
