//! Fast lane: the newest frame and its HUD values, handed from a producer process to the GUI
//! through a shared-memory ring of seqlock slots. The producer never waits for a reader.
//!
//! Layers, bottom up: [`shm`] (platform: mapping, naming, process checks), [`format`] (byte
//! layout), [`writer`] / [`reader`] (our segments and MOSAIC "FLAN" v1 segments), [`discovery`]
//! (listing and cleaning segments).

pub mod discovery;
pub mod format;
pub mod mosaic;
pub mod reader;
pub mod shm;
pub mod writer;

use std::path::PathBuf;

pub use discovery::{clean_stale_segments, list_segments, segments_json, SegmentInfo};
pub use format::{FrameGeometry, FrameMeta, HudValues, PixelFormat, SegmentKind};
pub use reader::{FastLaneReader, ReadOutcome, WriterStatus, POLL_INTERVAL};
pub use writer::{FastLaneWriter, WriterConfig};

/// Everything that can go wrong in the fast lane. Segment errors name the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum FastLaneError {
    #[error("invalid run id {run_id:?}: {reason}")]
    InvalidRunId {
        run_id: String,
        reason: &'static str,
    },
    #[error("invalid frame geometry: {0}")]
    InvalidGeometry(String),
    #[error("{path}: run is already published by live process {pid}")]
    SegmentBusy { path: PathBuf, pid: u32 },
    #[error("{path}: {op} failed: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("no fast-lane segment for run {run_id:?} (looked for {looked_for})")]
    RunNotFound { run_id: String, looked_for: String },
    #[error("{path}: truncated segment: {size} bytes, the {what} needs {needed}")]
    Truncated {
        path: PathBuf,
        size: usize,
        needed: usize,
        what: &'static str,
    },
    #[error("{path}: wrong magic {found:?} (expected {expected:?})")]
    BadMagic {
        path: PathBuf,
        found: String,
        expected: &'static str,
    },
    #[error("{path}: unsupported version {version} (this build reads version {supported})")]
    UnsupportedVersion {
        path: PathBuf,
        version: u32,
        supported: u32,
    },
    #[error("{path}: header field {field} is zero")]
    ZeroField { path: PathBuf, field: &'static str },
    #[error("{path}: header field {field} = {value} is out of range ({expected})")]
    FieldOutOfRange {
        path: PathBuf,
        field: &'static str,
        value: u64,
        expected: String,
    },
    #[error("{path}: {capacity} slots of {slot_stride} bytes need {needed} bytes but the mapping has {size}")]
    ExceedsMapping {
        path: PathBuf,
        capacity: u64,
        slot_stride: u64,
        needed: u64,
        size: usize,
    },
    #[error("frame has {got} bytes, the segment expects {expected} ({geometry})")]
    FrameSizeMismatch {
        got: usize,
        expected: usize,
        geometry: String,
    },
    #[error("destination buffer holds {got} bytes with a row stride of {stride}, a frame needs {needed}")]
    DestinationTooSmall {
        got: usize,
        stride: usize,
        needed: usize,
    },
}

impl FastLaneError {
    pub(crate) fn io(path: impl Into<PathBuf>, op: &'static str, source: std::io::Error) -> Self {
        FastLaneError::Io {
            path: path.into(),
            op,
            source,
        }
    }
}

/// Checks that a run id can name a segment: non-empty, short, printable, no NUL.
pub fn validate_run_id(run_id: &str) -> Result<(), FastLaneError> {
    let reason = if run_id.is_empty() {
        Some("it is empty")
    } else if run_id.len() > format::MAX_RUN_ID_BYTES {
        Some("it is longer than 127 bytes")
    } else if run_id.chars().any(|c| c.is_control()) {
        Some("it contains control characters")
    } else if run_id == "." || run_id == ".." {
        Some("it is a relative path component")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(FastLaneError::InvalidRunId {
            run_id: run_id.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}
