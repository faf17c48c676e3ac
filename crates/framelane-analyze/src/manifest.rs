//! The files an analysis leaves in its output folder, and the checkpoint it resumes from.
//!
//! - `analysed.jsonl`: one line per analysed frame: frame, time, why it was chosen, faces.
//! - `detections.jsonl`: one line per face: frame, time, box, score, `raw_track` (the id while
//!   the walk ran) and, after the walk, `track` (the exported id, or null for a dropped track).
//! - `tracks.jsonl`: one line per kept track: id, raw id, first/last frame and time,
//!   detections, crops, how it ended.
//! - `scene_cuts.json`: every detected cut, with whether it reset the tracker.
//! - `summary.json`: counts, tracker metrics, time per stage, the outcome (and error).
//! - `checkpoint.json`: where an interrupted walk stands (rewritten atomically).
//! - `frames/` and `crops/`: JPEGs, when asked for.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::decode::Signature;
use crate::scene::{SceneCut, SceneState};
use crate::select::Reason;
use crate::track::{BBox, Track, Tracker};
use crate::AnalyzeError;

pub const ANALYSED: &str = "analysed.jsonl";
pub const DETECTIONS: &str = "detections.jsonl";
pub const TRACKS: &str = "tracks.jsonl";
pub const SCENE_CUTS: &str = "scene_cuts.json";
pub const SUMMARY: &str = "summary.json";
pub const CHECKPOINT: &str = "checkpoint.json";
pub const FRAMES_DIR: &str = "frames";
pub const CROPS_DIR: &str = "crops";

/// Version of the checkpoint layout; a different one is not resumed from.
const CHECKPOINT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnalysedLine {
    pub frame: u64,
    pub time: f64,
    pub reason: Reason,
    pub faces: u32,
    /// The saved frame, relative to the output folder.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub file: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DetectionLine {
    pub frame: u64,
    pub time: f64,
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    pub score: f32,
    pub raw_track: u64,
    /// The exported track id; absent while the walk runs, null for a dropped track.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<Option<u64>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub crop: Option<String>,
}

impl DetectionLine {
    pub fn new(
        frame: u64,
        time: f64,
        b: &BBox,
        score: f32,
        raw_track: u64,
        crop: Option<String>,
    ) -> Self {
        Self {
            frame,
            time,
            bbox: [b.x, b.y, b.w, b.h],
            score,
            raw_track,
            track: None,
            crop,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrackLine {
    pub track: u64,
    pub raw_track: u64,
    pub first_frame: u64,
    pub last_frame: u64,
    pub first_time: f64,
    pub last_time: f64,
    pub detections: u32,
    pub crops: Vec<String>,
    pub ended: String,
}

/// Where an interrupted walk stands; everything needed to go on as if it never stopped.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    pub version: u32,
    pub ep_id: String,
    pub video: PathBuf,
    pub video_bytes: u64,
    pub fingerprint: String,
    /// First frame not yet looked at.
    pub next_frame: u64,
    pub analysed_bytes: u64,
    pub detections_bytes: u64,
    pub scene: SceneState,
    pub previous_signature: Option<(Vec<u32>, Vec<u32>, Vec<u32>)>,
    pub last_cut: Option<u64>,
    pub cuts: Vec<SceneCut>,
    pub tracker: Tracker,
    pub counters: Counters,
}

/// Running totals kept across a resume.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Counters {
    pub analysed: u64,
    pub by_cut: u64,
    pub by_warmup: u64,
    pub by_stride: u64,
    pub detections: u64,
    pub frames_saved: u64,
    pub crops_saved: u64,
}

impl Checkpoint {
    pub fn signature(&self) -> Option<Signature> {
        let (l, b, r) = self.previous_signature.as_ref()?;
        let mut s = Signature::default();
        if l.len() != s.luma.len() || b.len() != s.cb.len() || r.len() != s.cr.len() {
            return None;
        }
        s.luma.copy_from_slice(l);
        s.cb.copy_from_slice(b);
        s.cr.copy_from_slice(r);
        Some(s)
    }

    pub fn pack_signature(s: Option<&Signature>) -> Option<(Vec<u32>, Vec<u32>, Vec<u32>)> {
        s.map(|s| (s.luma.to_vec(), s.cb.to_vec(), s.cr.to_vec()))
    }

    pub fn version() -> u32 {
        CHECKPOINT_VERSION
    }

    /// Reads `dir/checkpoint.json`; None when there is none.
    pub fn load(dir: &Path) -> Result<Option<Self>, AnalyzeError> {
        let path = dir.join(CHECKPOINT);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(AnalyzeError::Resume {
                    path,
                    reason: e.to_string(),
                })
            }
        };
        let checkpoint: Self = serde_json::from_str(&text).map_err(|e| AnalyzeError::Resume {
            path: path.clone(),
            reason: format!("not a checkpoint: {e} (--restart starts over)"),
        })?;
        if checkpoint.version != CHECKPOINT_VERSION {
            return Err(AnalyzeError::Resume {
                path,
                reason: format!(
                    "written by layout {}, this is {CHECKPOINT_VERSION} (--restart starts over)",
                    checkpoint.version
                ),
            });
        }
        Ok(Some(checkpoint))
    }
}

/// Writes `value` as JSON to `path` through a temporary file and a rename: a reader (or a
/// resume after kill -9) sees the old file or the new one, never half of one.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<(), AnalyzeError> {
    let mut part = path.as_os_str().to_owned();
    part.push(".part");
    let part = PathBuf::from(part);
    let result = (|| -> std::io::Result<()> {
        let mut file = BufWriter::new(File::create(&part)?);
        serde_json::to_writer_pretty(&mut file, value).map_err(std::io::Error::other)?;
        file.write_all(b"\n")?;
        file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&part, path)
    })();
    result.map_err(|e| AnalyzeError::output(path, e))
}

/// An append-only JSON-lines file that knows its length (for checkpoints).
pub struct JsonLines {
    path: PathBuf,
    writer: BufWriter<File>,
    bytes: u64,
}

impl JsonLines {
    /// Opens `path` for appending after truncating it to `keep` bytes (0: a new file).
    pub fn open(path: PathBuf, keep: u64) -> Result<Self, AnalyzeError> {
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(keep == 0)
            .open(&path)
            .map_err(|e| AnalyzeError::output(&path, e))?;
        let len = file
            .metadata()
            .map_err(|e| AnalyzeError::output(&path, e))?
            .len();
        if len < keep {
            return Err(AnalyzeError::Resume {
                path,
                reason: format!(
                    "holds {len} bytes, the checkpoint expects {keep} (--restart starts over)"
                ),
            });
        }
        file.set_len(keep)
            .map_err(|e| AnalyzeError::output(&path, e))?;
        let mut writer = BufWriter::new(file);
        std::io::Seek::seek(&mut writer, std::io::SeekFrom::Start(keep))
            .map_err(|e| AnalyzeError::output(&path, e))?;
        Ok(Self {
            path,
            writer,
            bytes: keep,
        })
    }

    pub fn push<T: Serialize>(&mut self, line: &T) -> Result<(), AnalyzeError> {
        let mut counter = CountingWriter {
            inner: &mut self.writer,
            bytes: 0,
        };
        serde_json::to_writer(&mut counter, line)
            .map_err(|e| AnalyzeError::output(&self.path, e))?;
        counter
            .write_all(b"\n")
            .map_err(|e| AnalyzeError::output(&self.path, e))?;
        self.bytes += counter.bytes;
        Ok(())
    }

    /// Flushes to the file and returns its length.
    pub fn flush(&mut self) -> Result<u64, AnalyzeError> {
        self.writer
            .flush()
            .map_err(|e| AnalyzeError::output(&self.path, e))?;
        self.writer
            .get_ref()
            .sync_data()
            .map_err(|e| AnalyzeError::output(&self.path, e))?;
        Ok(self.bytes)
    }
}

struct CountingWriter<'a, W: Write> {
    inner: &'a mut W,
    bytes: u64,
}

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Rewrites `detections.jsonl` with each line's exported track id (`map`: raw id to id,
/// sorted by raw id); lines of dropped tracks get null. Returns the number of lines.
pub fn stamp_track_ids(dir: &Path, map: &[(u64, u64)]) -> Result<u64, AnalyzeError> {
    let path = dir.join(DETECTIONS);
    let file = File::open(&path).map_err(|e| AnalyzeError::output(&path, e))?;
    let part = dir.join(format!("{DETECTIONS}.part"));
    let mut out = BufWriter::new(File::create(&part).map_err(|e| AnalyzeError::output(&part, e))?);
    let mut lines = 0;
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| AnalyzeError::output(&path, e))?;
        let mut d: DetectionLine = serde_json::from_str(&line)
            .map_err(|e| AnalyzeError::output(&path, format!("line {}: {e}", i + 1)))?;
        let id = map
            .binary_search_by_key(&d.raw_track, |&(raw, _)| raw)
            .ok()
            .map(|at| map[at].1);
        d.track = Some(id);
        serde_json::to_writer(&mut out, &d).map_err(|e| AnalyzeError::output(&part, e))?;
        out.write_all(b"\n")
            .map_err(|e| AnalyzeError::output(&part, e))?;
        lines += 1;
    }
    out.into_inner()
        .map_err(|e| AnalyzeError::output(&part, e.into_error()))?
        .sync_all()
        .map_err(|e| AnalyzeError::output(&part, e))?;
    std::fs::rename(&part, &path).map_err(|e| AnalyzeError::output(&path, e))?;
    Ok(lines)
}

/// Writes `tracks.jsonl`: the kept tracks with their exported ids; deletes the crops of
/// dropped tracks. Returns (kept, dropped).
pub fn write_tracks(
    dir: &Path,
    tracks: &[Track],
    map: &[(u64, u64)],
) -> Result<(u64, u64), AnalyzeError> {
    let path = dir.join(TRACKS);
    let part = dir.join(format!("{TRACKS}.part"));
    let mut out = BufWriter::new(File::create(&part).map_err(|e| AnalyzeError::output(&part, e))?);
    let mut lines: Vec<TrackLine> = Vec::new();
    let mut dropped = 0;
    for t in tracks {
        match map.binary_search_by_key(&t.raw_id, |&(raw, _)| raw) {
            Ok(at) => lines.push(TrackLine {
                track: map[at].1,
                raw_track: t.raw_id,
                first_frame: t.first_frame,
                last_frame: t.last_frame,
                first_time: t.first_time,
                last_time: t.last_time,
                detections: t.detections,
                crops: t.crops.clone(),
                ended: t.ended.clone().unwrap_or_else(|| "end".into()),
            }),
            Err(_) => {
                dropped += 1;
                for crop in &t.crops {
                    let _ = std::fs::remove_file(dir.join(crop));
                }
            }
        }
    }
    lines.sort_by_key(|l| l.track);
    for line in &lines {
        serde_json::to_writer(&mut out, line).map_err(|e| AnalyzeError::output(&part, e))?;
        out.write_all(b"\n")
            .map_err(|e| AnalyzeError::output(&part, e))?;
    }
    out.into_inner()
        .map_err(|e| AnalyzeError::output(&part, e.into_error()))?
        .sync_all()
        .map_err(|e| AnalyzeError::output(&part, e))?;
    std::fs::rename(&part, &path).map_err(|e| AnalyzeError::output(&path, e))?;
    Ok((lines.len() as u64, dropped))
}
