//! Encoder queues: background FFmpeg encoders that turn frames in memory into video files,
//! never stalling the producer longer than the queue policy allows.
//!
//! - `settings`: codec family, quality, preset, GOP, pixel format, threads, container.
//! - `probe`: encoder choice in order (hardware first) with automatic fallback.
//! - `convert`: swscale from caller memory into the encoder's frame (reused, banded threads).
//! - `video_file`: one crash-safe file (fragmented MP4 or Matroska), fast-start finalize.
//! - `queue`: the bounded per-worker queue (wait, then shed the oldest frame; counted).
//! - `service`: named worker threads, episode jobs, segments, progress events, frame index,
//!   failed jobs that keep their input.
//! - `dataset`: `framelane encode` (a folder of PNG/JPEG frames, or raw frames on stdin).

pub mod convert;
pub mod dataset;
pub mod packets;
pub mod probe;
pub mod queue;
pub mod service;
pub mod settings;
pub mod video_file;

use std::path::PathBuf;

pub use probe::{probe, ProbeReport};
pub use service::{
    EncodeEvent, EncodeTotals, EncoderService, IndexSink, JobSpec, JobStats, SegmentInfo,
    SegmentOutcome, ServiceConfig, SubmitOutcome, DEFAULT_STALL_LIMIT,
};
pub use settings::{CodecFamily, Container, EncoderSettings, Quality};
pub use video_file::{finalize_faststart, FinishedFile, VideoFileWriter};

/// Errors of the encoder part.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("encoder settings: {0}")]
    Settings(String),
    #[error("no {family} encoder is usable: {reasons}")]
    NoEncoder {
        family: &'static str,
        reasons: String,
    },
    #[error("encoder: {0}")]
    Codec(String),
    #[error("frame size: expected {expected}, got {got}")]
    FrameSize { expected: String, got: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Input { path: PathBuf, reason: String },
    #[error("unknown encode job {0}")]
    UnknownJob(u64),
    #[error("the encoder service has stopped")]
    Stopped,
    #[error("encoder worker encode-{worker} has been stuck on one item for {seconds} s")]
    Stalled { worker: usize, seconds: u64 },
    #[error("could not start an encoder thread: {0}")]
    Thread(std::io::Error),
}

/// Initialises FFmpeg once per process and keeps its own logging to errors.
pub fn init_ffmpeg() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SVT-AV1 logs its configuration on every open unless told otherwise.
        if std::env::var_os("SVT_LOG").is_none() {
            std::env::set_var("SVT_LOG", "1");
        }
        if let Err(err) = ffmpeg_next::init() {
            tracing::error!(error = %err, "FFmpeg initialisation failed");
        }
        // FFmpeg's own messages (decoder complaints after seeks, hardware probes) stay quiet;
        // every failure reaches the caller as an error. FRAMELANE_FFMPEG_LOG=1 shows them.
        let level = if std::env::var_os("FRAMELANE_FFMPEG_LOG").is_some() {
            ffmpeg_next::util::log::Level::Info
        } else {
            ffmpeg_next::util::log::Level::Fatal
        };
        ffmpeg_next::util::log::set_level(level);
    });
}
