//! The run bus: the internal records every ingest API is turned into, and the bounded queues
//! that carry them from the gRPC handlers to the store writer and the snapshot writer.
//!
//! Policies: the store queue *waits* when full (scalars are never dropped: the handler stops
//! reading its stream and HTTP/2 flow control slows the worker); the snapshot queue *sheds the
//! newest frame* when full and counts it. Every shed item is counted per run and kind
//! ([`ShedCounters`]) and the store writer persists the counts with each commit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::gating::FrameCompression;

pub use crate::media::{ImageCodec, RawPixelFormat};

/// How a kept frame is held, as the frames index records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// Pixels or encoded bytes in the store itself.
    Inline,
    /// A PNG or JPEG file written by the snapshot writer.
    Image(ImageCodec),
    /// The worker keeps the frame itself; the location says where.
    Reference,
    /// A frame of a recorded video (indexed by the encoder service).
    Video,
}

impl FrameKind {
    /// The name stored in the frames table.
    pub fn label(self) -> &'static str {
        match self {
            FrameKind::Inline => "inline",
            FrameKind::Image(codec) => codec.name(),
            FrameKind::Reference => "reference",
            FrameKind::Video => "video",
        }
    }

    /// The kind of a stored name; unknown names are references (the worker's own storage).
    pub fn from_label(label: &str) -> Self {
        match label {
            "inline" => FrameKind::Inline,
            "video" => FrameKind::Video,
            other => ImageCodec::from_name(other).map_or(FrameKind::Reference, FrameKind::Image),
        }
    }
}

/// A frame as a worker sent it.
#[derive(Debug, Clone, PartialEq)]
pub enum FrameImage {
    Raw {
        width: u32,
        height: u32,
        format: RawPixelFormat,
        pixels: Vec<u8>,
    },
    /// Already encoded by the worker.
    Encoded { codec: ImageCodec, data: Vec<u8> },
    /// The worker keeps the frame itself; this says where.
    Reference(String),
}

impl FrameImage {
    /// Bytes the frame holds.
    pub fn byte_len(&self) -> usize {
        match self {
            FrameImage::Raw { pixels, .. } => pixels.len(),
            FrameImage::Encoded { data, .. } => data.len(),
            FrameImage::Reference(location) => location.len(),
        }
    }
}

/// Action or observation of a step.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Json(String),
    Raw(Vec<u8>),
}

/// One environment step, whichever API it came in through.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StepRecord {
    pub run_id: String,
    pub worker_id: String,
    pub agent_id: String,
    pub episode: u64,
    pub step: u64,
    pub reward: f64,
    pub terminated: bool,
    pub truncated: bool,
    /// Unix nanoseconds at the worker; 0 when unknown.
    pub producer_unix_ns: u64,
    pub action: Option<Payload>,
    pub observation: Option<Payload>,
    /// API-specific fields without a column of their own, as a JSON object.
    pub extra_json: Option<String>,
    /// The step's position in its worker's stream from 1 (0: not given): a step at or below
    /// the worker's highest committed one is a re-send and is not stored again.
    pub worker_seq: u64,
}

/// One finished episode.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EpisodeRecord {
    pub run_id: String,
    pub worker_id: String,
    pub agent_id: String,
    pub episode: u64,
    pub total_reward: f64,
    pub steps: u64,
    pub terminated: bool,
    pub truncated: bool,
    pub metadata_json: String,
    pub producer_unix_ns: u64,
}

/// One camera's file of a recording rig's clip.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct ClipFileEntry {
    pub camera: String,
    /// Absolute path of the MP4.
    pub path: String,
    pub frames: u64,
    pub encoder: String,
    /// Capture time of the first and last frame relative to the trigger, ms.
    pub start_offset_ms: f64,
    pub end_offset_ms: f64,
}

/// A recording rig's finished clip, as the store lists it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClipEntry {
    /// The clip folder's name.
    pub clip_id: String,
    /// Absolute path of the clip folder: what makes a clip unique.
    pub folder: String,
    pub triggered_unix_ms: u64,
    pub pre_roll_ms: u64,
    pub post_roll_ms: u64,
    pub codec: String,
    pub telemetry_items: u64,
    pub files: Vec<ClipFileEntry>,
}

/// A frame the gate decided to keep, on its way to the store or the snapshot writer.
#[derive(Debug, Clone, PartialEq)]
pub struct KeptFrame {
    pub run_id: String,
    /// The worker that sent it: workers of one run keep their own frames of a step.
    pub worker_id: String,
    /// The agent whose frame it is (multi-agent runs keep one frame per agent and step).
    pub agent_id: String,
    pub episode: u64,
    pub step: u64,
    pub compression: FrameCompression,
    pub image: FrameImage,
}

/// Whose kept frame a lookup asks for. A field that is None takes the first that has a frame
/// (frames stored before they were keyed by agent or by worker count for every one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FrameOwner<'a> {
    pub worker: Option<&'a str>,
    pub agent: Option<&'a str>,
}

impl<'a> FrameOwner<'a> {
    /// The first worker and agent that has a frame.
    pub const ANY: FrameOwner<'static> = FrameOwner {
        worker: None,
        agent: None,
    };

    /// From a request's fields, where '' means any.
    pub fn new(worker: &'a str, agent: &'a str) -> Self {
        Self {
            worker: (!worker.is_empty()).then_some(worker),
            agent: (!agent.is_empty()).then_some(agent),
        }
    }

    /// Exactly this worker's and agent's rows, '' included: a worker or agent that sent no id
    /// is one of its own, not "any" (what a replay picker names).
    pub fn exact(worker: &'a str, agent: &'a str) -> Self {
        Self {
            worker: Some(worker),
            agent: Some(agent),
        }
    }

    /// One agent's frame, of whichever worker has one.
    pub fn agent(agent: &'a str) -> Self {
        Self::new("", agent)
    }
}

/// Where a kept frame ended up, as the store indexes it by (run, episode, step, agent,
/// worker).
#[derive(Debug, Clone, PartialEq)]
pub struct FrameIndexEntry {
    pub run_id: String,
    pub worker_id: String,
    pub agent_id: String,
    pub episode: u64,
    pub step: u64,
    pub kind: FrameKind,
    pub width: u32,
    pub height: u32,
    pub format: String,
    /// File path (png/jpeg), or the worker's reference.
    pub location: String,
    /// Pixels or encoded bytes kept in the store itself (`FrameKind::Inline`).
    pub data: Option<Vec<u8>>,
}

/// The encoder's frame index, on its way to the store; a segment is named by (run, worker,
/// agent, episode, segment).
#[derive(Debug, Clone, PartialEq)]
pub enum VideoIndexEntry {
    /// A segment file was created.
    Opened {
        run_id: String,
        worker_id: String,
        agent_id: String,
        episode: u64,
        segment: u32,
        path: String,
        encoder: String,
        fps: u32,
        gop: u32,
        width: u32,
        height: u32,
    },
    /// (step, frame number) pairs now in the segment.
    Frames {
        run_id: String,
        worker_id: String,
        agent_id: String,
        episode: u64,
        segment: u32,
        frames: Vec<(u64, u64)>,
    },
    /// The segment ended: "finished" or "failed".
    Closed {
        run_id: String,
        worker_id: String,
        agent_id: String,
        episode: u64,
        segment: u32,
        status: &'static str,
        frames: u64,
        error: Option<String>,
    },
}

impl VideoIndexEntry {
    pub fn run_id(&self) -> &str {
        match self {
            VideoIndexEntry::Opened { run_id, .. }
            | VideoIndexEntry::Frames { run_id, .. }
            | VideoIndexEntry::Closed { run_id, .. } => run_id,
        }
    }
}

/// Items shed, per (run, kind). Shared by everything that sheds; the store writer persists it.
#[derive(Debug, Default)]
pub struct ShedCounters {
    counts: Mutex<HashMap<(String, &'static str), u64>>,
    /// Per kind since start, never taken (for the metrics).
    totals: Mutex<HashMap<&'static str, u64>>,
}

impl ShedCounters {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Counts `n` items of `kind` shed for `run_id`.
    pub fn add(&self, run_id: &str, kind: &'static str, n: u64) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *counts.entry((run_id.to_owned(), kind)).or_insert(0) += n;
        drop(counts);
        *self
            .totals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(kind)
            .or_insert(0) += n;
    }

    /// Items shed per kind since start, sorted by kind.
    pub fn totals(&self) -> Vec<(&'static str, u64)> {
        let mut totals: Vec<_> = self
            .totals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, n)| (*k, *n))
            .collect();
        totals.sort_unstable();
        totals
    }

    /// Takes the counts added since the last call.
    pub fn take(&self) -> HashMap<(String, &'static str), u64> {
        std::mem::take(&mut *self.counts.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Shed kinds, as stored and shown.
pub mod shed_kind {
    /// The profile keeps only every n-th frame (or none): an expected, configured thinning.
    pub const FRAME_THINNED: &str = "frame_thinned";
    /// The snapshot queue was full: the frame was dropped to keep ingest moving.
    pub const FRAME_QUEUE_FULL: &str = "frame_queue_full";
    /// A frame that could not be decoded or encoded.
    pub const FRAME_INVALID: &str = "frame_invalid";
    /// The profile asks for video but no encoder of its codec family could be opened.
    pub const FRAME_NO_ENCODER: &str = "frame_no_encoder";
    /// The video encoder fell behind: its queue's oldest frame was shed after the wait.
    pub const FRAME_ENCODER_BEHIND: &str = "frame_encoder_behind";
    /// A kept frame of a video profile whose episode would open an encode job past the
    /// daemon's cap on open jobs.
    pub const FRAME_JOB_CAP: &str = "frame_job_cap";
    /// A kept frame that found no room under the daemon's memory ceiling (`--memory-limit`):
    /// at once under a `shed` profile, after the wait under a `wait` profile.
    pub const FRAME_MEMORY_LIMIT: &str = "frame_memory_limit";
    /// A kept frame whose writer (the snapshot writer, its video encoder worker) has stopped:
    /// refused, the publish reply says why, `Health` lists the stopped part.
    pub const FRAME_WRITER_STOPPED: &str = "frame_writer_stopped";
    /// A kept frame of a video profile refused because every encoder worker that could take
    /// it is stalled (busy with one item past the stall limit): refused at once instead of
    /// waiting for the hang to end; `Health` lists the stalled worker.
    pub const FRAME_ENCODER_STALLED: &str = "frame_encoder_stalled";
    /// A step refused as malformed (bad JSON, bad frame geometry, missing run id).
    pub const INVALID_STEP: &str = "invalid_step";
    /// An episode refused as malformed.
    pub const INVALID_EPISODE: &str = "invalid_episode";
}

/// Shed counts worded for a user: "48 frames shed: encoder behind".
pub fn describe_shed(kind: &str, count: u64) -> String {
    let (what, why) = match kind {
        shed_kind::FRAME_THINNED => ("frames", "thinned by the profile"),
        shed_kind::FRAME_QUEUE_FULL => ("frames", "writer queue full"),
        shed_kind::FRAME_INVALID => ("frames", "could not be decoded or encoded"),
        shed_kind::FRAME_NO_ENCODER => ("frames", "no video encoder"),
        shed_kind::FRAME_ENCODER_BEHIND => ("frames", "encoder behind"),
        shed_kind::FRAME_JOB_CAP => ("frames", "video jobs at their cap"),
        shed_kind::FRAME_MEMORY_LIMIT => ("frames", "daemon memory ceiling reached"),
        shed_kind::FRAME_WRITER_STOPPED => ("frames", "their writer has stopped"),
        shed_kind::FRAME_ENCODER_STALLED => ("frames", "encoder stalled"),
        shed_kind::INVALID_STEP => ("steps", "malformed"),
        shed_kind::INVALID_EPISODE => ("episodes", "malformed"),
        other => ("items", other),
    };
    let what = if count == 1 {
        what.trim_end_matches('s')
    } else {
        what
    };
    format!("{count} {what} shed: {why}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shed_counts_read_as_sentences() {
        assert_eq!(
            describe_shed(shed_kind::FRAME_ENCODER_BEHIND, 48),
            "48 frames shed: encoder behind"
        );
        assert_eq!(
            describe_shed(shed_kind::INVALID_STEP, 1),
            "1 step shed: malformed"
        );
        assert_eq!(describe_shed("new_kind", 2), "2 items shed: new_kind");
    }
}
