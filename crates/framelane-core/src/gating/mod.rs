//! Storage profiles and frame gating: which frames of a run are kept, and in which form, so
//! that training never pays per-step image encoding. Profiles are data (resources/profiles.yaml
//! plus an optional user file); this part loads and validates them and makes the per-step call.

mod profiles;

pub use profiles::{FrameCompression, ProfileSet, StorageProfile, WhenBehind};

use std::path::PathBuf;

/// Errors of profile files, naming the file, line and key.
#[derive(Debug, thiserror::Error)]
pub enum GatingError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        file: PathBuf,
        line: Option<usize>,
        message: String,
    },
    #[error("unknown storage profile {name:?} (known: {known})")]
    UnknownProfile { name: String, known: String },
}

/// What to do with one step's frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameDecision {
    /// The step has no frame.
    NoFrame,
    /// Not kept: the profile keeps no frames or not this step's (thinned).
    Thin,
    /// Kept in this form.
    Keep(FrameCompression),
}

/// The per-step decision: keep the frame or not, in which form.
pub fn decide(profile: &StorageProfile, step: u64, has_frame: bool) -> FrameDecision {
    if !has_frame {
        return FrameDecision::NoFrame;
    }
    if !profile.capture_frames || step % u64::from(profile.keep_every_n_frames.get()) != 0 {
        return FrameDecision::Thin;
    }
    FrameDecision::Keep(profile.frame_compression)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_keeps_every_nth_frame_in_the_profile_form() {
        let set = ProfileSet::builtin().expect("built-in profiles load");
        let box2d = set.get("box2d").expect("box2d");
        let kept: Vec<u64> = (0..30)
            .filter(|s| decide(box2d, *s, true) != FrameDecision::Thin)
            .collect();
        assert_eq!(kept, vec![0, 10, 20]);
        assert_eq!(
            decide(box2d, 10, true),
            FrameDecision::Keep(FrameCompression::Png)
        );
        assert_eq!(decide(box2d, 10, false), FrameDecision::NoFrame);
        let telemetry = set.get("telemetry_only").expect("telemetry_only");
        assert_eq!(decide(telemetry, 0, true), FrameDecision::Thin);
    }
}
