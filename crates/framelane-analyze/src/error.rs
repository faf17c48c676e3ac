//! The one error type of episode analysis. Every variant says what failed and where: the file,
//! the frame, the flag.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    /// A flag or option is out of range or contradicts another.
    #[error("invalid option {option}: {reason}")]
    Option {
        option: &'static str,
        reason: String,
    },
    /// The video cannot be opened or holds nothing to analyse.
    #[error("{}: {reason}", path.display())]
    Open { path: PathBuf, reason: String },
    /// The video is damaged at a known frame; frames before it were analysed and kept.
    #[error("{}: damaged at frame {frame} ({time:.3} s): {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        frame: u64,
        time: f64,
        reason: String,
    },
    /// The video ends before the frames its header declares.
    #[error("{}: truncated: {decoded} of {declared} declared frames could be decoded", path.display())]
    Truncated {
        path: PathBuf,
        decoded: u64,
        declared: u64,
    },
    /// The face detector could not be loaded or failed on a frame.
    #[error("face detector: {0}")]
    Detector(String),
    /// Writing an output (manifest, frame, crop) failed.
    #[error("{}: {reason}", path.display())]
    Output { path: PathBuf, reason: String },
    /// A manifest left by an earlier run cannot be resumed from.
    #[error("{}: cannot resume: {reason}", path.display())]
    Resume { path: PathBuf, reason: String },
}

impl AnalyzeError {
    pub(crate) fn output(path: impl Into<PathBuf>, err: impl std::fmt::Display) -> Self {
        Self::Output {
            path: path.into(),
            reason: err.to_string(),
        }
    }
}

impl From<opencv::Error> for AnalyzeError {
    fn from(err: opencv::Error) -> Self {
        Self::Detector(err.message)
    }
}
