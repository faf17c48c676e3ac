//! The one error type of the rig.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RigError {
    /// rig.yaml is unreadable or wrong; line and key when known.
    #[error("{}{}: {reason}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Config {
        path: PathBuf,
        line: Option<usize>,
        reason: String,
    },
    /// A camera cannot be opened or read.
    #[error("camera {camera}: {reason}")]
    Camera { camera: String, reason: String },
    #[error("camera {camera}: encoder: {source}")]
    Encode {
        camera: String,
        #[source]
        source: framelane_core::encode::EncodeError,
    },
    #[error("{}: {reason}", path.display())]
    Output { path: PathBuf, reason: String },
    #[error("could not start thread {name}: {source}")]
    Thread {
        name: String,
        #[source]
        source: std::io::Error,
    },
}
