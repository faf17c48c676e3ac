//! Episode analysis: an offline walk of a long episode video that decodes every packet but
//! converts to RGB only the frames it analyses, finds scene cuts from a cheap signal computed on
//! every frame, resets the face tracker on cuts at most once per cooldown, detects faces with
//! OpenCV, links them into tracks, and exports frames and crops on a thread of its own.
//!
//! No Qt here. The parts, in the order a frame meets them:
//! `decode` (FFmpeg demux + decode, the per-frame signature, on-demand BGR conversion),
//! `scene` (cuts with minimum scene length and reset cooldown), `select` (which frames are
//! analysed and why), `faces` (Haar or DNN detector), `track` (IoU + appearance tracker),
//! `export` (bounded queue, JPEG writer thread), `manifest` (JSONL/JSON outputs, checkpoints
//! for resuming), `progress` and `run` (the walk that ties them together). `reference` holds
//! the two read loops the benchmark compares against, `synth` writes test videos.

pub mod decode;
pub mod error;
pub mod export;
pub mod faces;
pub mod manifest;
pub mod options;
pub mod progress;
pub mod reference;
pub mod review;
pub mod run;
pub mod scene;
pub mod select;
pub mod synth;
pub mod track;

pub use error::AnalyzeError;
pub use options::{AnalyzeOptions, Device};
pub use run::{analyze, Summary};
