//! Replay: frames of recorded steps, found telemetry-first. For a (run, episode, step) the
//! resolver tries, in order: the encoded video (seek to the keyframe before, decode forward to
//! the exact frame), a PNG/JPEG snapshot, a frame kept inline in the store. A step with none
//! of these says so. Decoded frames stay in a cache bounded in bytes.

pub mod cache;
pub mod video;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::bus::{FrameIndexEntry, FrameKind, FrameOwner, RawPixelFormat};
use crate::media::{decode_image, raw_to_rgba, ImageCodec};
use crate::store::{StoreError, StoreReader};

pub use cache::FrameCache;
pub use video::{RgbaFrame, VideoReader};

/// Errors of replay.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path}: {reason}")]
    Video { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Snapshot { path: PathBuf, reason: String },
}

/// Where a shown frame came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameOrigin {
    Video,
    Snapshot,
    Inline,
}

impl FrameOrigin {
    pub fn label(self) -> &'static str {
        match self {
            FrameOrigin::Video => "video",
            FrameOrigin::Snapshot => "snapshot",
            FrameOrigin::Inline => "inline",
        }
    }
}

/// The answer for one step.
#[derive(Debug, Clone)]
pub enum StepFrame {
    Found {
        origin: FrameOrigin,
        frame: Arc<RgbaFrame>,
    },
    /// No frame was kept for this step; the text says what was looked at.
    Missing(String),
}

/// Open video files kept for sequential access.
const OPEN_VIDEOS: usize = 4;

/// Finds and decodes the frames of recorded steps.
pub struct FrameResolver {
    store: StoreReader,
    videos: HashMap<String, (VideoReader, u64)>,
    cache: FrameCache,
    tick: u64,
}

impl FrameResolver {
    /// Reads the store at `database`, caching up to `cache_bytes` of decoded frames.
    pub fn open(database: &Path, cache_bytes: usize) -> Result<Self, ReplayError> {
        Ok(Self {
            store: StoreReader::open(database)?,
            videos: HashMap::new(),
            cache: FrameCache::new(cache_bytes),
            tick: 0,
        })
    }

    pub fn store(&self) -> &StoreReader {
        &self.store
    }

    pub fn cache(&self) -> &FrameCache {
        &self.cache
    }

    /// The frame of (run, episode, step) (of the first worker and agent that has one).
    pub fn frame(
        &mut self,
        run_id: &str,
        episode: u64,
        step: u64,
    ) -> Result<StepFrame, ReplayError> {
        self.owner_frame(run_id, FrameOwner::ANY, episode, step)
    }

    /// The frame of (run, episode, step) of `owner` (a field that is None: of the first worker
    /// or agent that has one).
    pub fn owner_frame(
        &mut self,
        run_id: &str,
        owner: FrameOwner<'_>,
        episode: u64,
        step: u64,
    ) -> Result<StepFrame, ReplayError> {
        if let Some((origin, frame)) = self.cache.get((run_id, owner), episode, step) {
            return Ok(StepFrame::Found { origin, frame });
        }
        let asked = (run_id, owner);
        let mut notes = Vec::new();
        if let Some(found) = self.video_frame(run_id, owner, episode, step, &mut notes)? {
            return Ok(self.remember(asked, episode, step, FrameOrigin::Video, found));
        }
        match self.store.owner_frame(run_id, owner, episode, step)? {
            Some(FrameIndexEntry {
                kind: FrameKind::Image(codec),
                location,
                ..
            }) => {
                let path = PathBuf::from(&location);
                let bytes = std::fs::read(&path).map_err(|e| ReplayError::Snapshot {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                let image = decode_image(codec, &bytes).map_err(|err| ReplayError::Snapshot {
                    path,
                    reason: err.to_string(),
                })?;
                let frame = RgbaFrame {
                    width: image.width,
                    height: image.height,
                    rgba: image.into_rgba(),
                };
                return Ok(self.remember(asked, episode, step, FrameOrigin::Snapshot, frame));
            }
            Some(entry) if entry.kind == FrameKind::Inline => {
                let data = entry.data.unwrap_or_default();
                let frame = match RawPixelFormat::from_label(&entry.format) {
                    Some(format) => RgbaFrame {
                        width: entry.width,
                        height: entry.height,
                        rgba: raw_to_rgba(format, &data),
                    },
                    None => {
                        let inline = || PathBuf::from(format!("inline frame of step {step}"));
                        let codec = ImageCodec::from_name(&entry.format).ok_or_else(|| {
                            ReplayError::Snapshot {
                                path: inline(),
                                reason: format!("unknown image codec {:?}", entry.format),
                            }
                        })?;
                        let image =
                            decode_image(codec, &data).map_err(|err| ReplayError::Snapshot {
                                path: inline(),
                                reason: err.to_string(),
                            })?;
                        RgbaFrame {
                            width: image.width,
                            height: image.height,
                            rgba: image.into_rgba(),
                        }
                    }
                };
                return Ok(self.remember(asked, episode, step, FrameOrigin::Inline, frame));
            }
            Some(entry) if entry.kind == FrameKind::Reference => {
                notes.push(format!("the worker keeps it itself ({})", entry.location));
            }
            _ => notes.push("no snapshot or inline frame".into()),
        }
        Ok(StepFrame::Missing(format!(
            "no frame for step {step} of episode {episode}: {}",
            notes.join("; ")
        )))
    }

    fn remember(
        &mut self,
        asked: (&str, FrameOwner<'_>),
        episode: u64,
        step: u64,
        origin: FrameOrigin,
        frame: RgbaFrame,
    ) -> StepFrame {
        let frame = Arc::new(frame);
        self.cache
            .insert(asked, episode, step, origin, frame.clone());
        StepFrame::Found { origin, frame }
    }

    fn video_frame(
        &mut self,
        run_id: &str,
        owner: FrameOwner<'_>,
        episode: u64,
        step: u64,
        notes: &mut Vec<String>,
    ) -> Result<Option<RgbaFrame>, ReplayError> {
        let Some(location) = self.store.owner_video_frame(run_id, owner, episode, step)? else {
            return Ok(None);
        };
        self.tick += 1;
        let tick = self.tick;
        if !self.videos.contains_key(&location.path) {
            if self.videos.len() >= OPEN_VIDEOS {
                if let Some(oldest) = self
                    .videos
                    .iter()
                    .min_by_key(|(_, (_, used))| *used)
                    .map(|(path, _)| path.clone())
                {
                    self.videos.remove(&oldest);
                }
            }
            match VideoReader::open(Path::new(&location.path), location.fps, location.gop) {
                Ok(mut reader) => {
                    reader.crop_to(location.width, location.height);
                    self.videos.insert(location.path.clone(), (reader, tick));
                }
                Err(err) => {
                    notes.push(format!("video unreadable: {err}"));
                    return Ok(None);
                }
            }
        }
        let Some((reader, used)) = self.videos.get_mut(&location.path) else {
            return Ok(None);
        };
        *used = tick;
        match reader.frame(location.frame_no) {
            Ok(Some(frame)) => Ok(Some(frame)),
            Ok(None) => {
                notes.push(format!(
                    "frame {} is not in {} ({}; a crash may have cut it short)",
                    location.frame_no, location.path, location.status
                ));
                Ok(None)
            }
            Err(err) => {
                notes.push(format!("video: {err}"));
                self.videos.remove(&location.path);
                Ok(None)
            }
        }
    }
}
