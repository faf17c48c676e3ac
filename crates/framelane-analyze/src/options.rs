//! What a run of the analysis is asked to do, checked before a frame is decoded.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::AnalyzeError;

/// Where the DNN face detector runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// CUDA when OpenCV was built with it and a device is present, else the CPU.
    Auto,
    Cpu,
}

impl Device {
    pub fn parse(text: &str) -> Result<Self, AnalyzeError> {
        match text {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            other => Err(AnalyzeError::Option {
                option: "--device",
                reason: format!("{other:?} is not one of auto, cpu"),
            }),
        }
    }
}

/// Every setting of one analysis. Defaults follow the tool it replaces.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnalyzeOptions {
    /// Episode id written into every manifest.
    pub ep_id: String,
    pub video: PathBuf,
    pub out: PathBuf,
    /// Analyse every `stride`-th frame (frame numbers divisible by it).
    pub stride: u64,
    /// Signature distance (0..1) at or above which a frame starts a new scene.
    pub scene_threshold: f64,
    /// A cut closer than this many frames to the previous one is not a cut (minimum scene length).
    pub min_scene_len: u64,
    /// The tracker resets on a cut only when its last reset is at least this many frames ago.
    pub scene_cut_cooldown: u64,
    /// Frames after a cut analysed densely (every frame), whatever the stride.
    pub scene_warmup: u64,
    /// A track unseen for more than this many frames ends ...
    pub max_gap: u64,
    /// ... or, when given, for more than this many seconds of stream time.
    pub max_gap_sec: Option<f64>,
    /// Tracks with fewer detections are dropped on export.
    pub min_track_length: u32,
    /// Most crops saved per track.
    pub track_sample_limit: u32,
    pub save_frames: bool,
    pub save_crops: bool,
    pub jpeg_quality: u8,
    pub device: Device,
    /// A DNN face model (YuNet ONNX) instead of the Haar cascade.
    pub face_model: Option<PathBuf>,
    /// The Haar cascade (default: Debian's opencv-data frontal face cascade).
    pub cascade: Option<PathBuf>,
    /// Frames are scaled to this width for detection (0: full size); boxes are scaled back.
    pub detect_width: u32,
    /// Start over even when the output folder holds a resumable run.
    pub restart: bool,
}

impl AnalyzeOptions {
    pub fn new(
        ep_id: impl Into<String>,
        video: impl Into<PathBuf>,
        out: impl Into<PathBuf>,
    ) -> Self {
        Self {
            ep_id: ep_id.into(),
            video: video.into(),
            out: out.into(),
            stride: 6,
            scene_threshold: 0.35,
            min_scene_len: 6,
            scene_cut_cooldown: 24,
            scene_warmup: 3,
            max_gap: 30,
            max_gap_sec: None,
            min_track_length: 3,
            track_sample_limit: 8,
            save_frames: false,
            save_crops: false,
            jpeg_quality: 90,
            device: Device::Auto,
            face_model: None,
            cascade: None,
            detect_width: 640,
            restart: false,
        }
    }

    /// Checks every setting; the error names the flag.
    pub fn validate(&self) -> Result<(), AnalyzeError> {
        let bad =
            |option: &'static str, reason: String| Err(AnalyzeError::Option { option, reason });
        if self.ep_id.is_empty()
            || self.ep_id.len() > 256
            || self.ep_id.chars().any(char::is_control)
        {
            return bad(
                "--ep-id",
                "must be 1 to 256 characters without control characters".into(),
            );
        }
        if self.stride == 0 || self.stride > 100_000 {
            return bad(
                "--stride",
                format!("{} is not within 1..=100000", self.stride),
            );
        }
        if !self.scene_threshold.is_finite()
            || !(0.0..=1.0).contains(&self.scene_threshold)
            || self.scene_threshold == 0.0
        {
            return bad(
                "--scene-threshold",
                format!("{} is not within (0, 1]", self.scene_threshold),
            );
        }
        if self.scene_warmup > 10_000 {
            return bad(
                "--scene-warmup",
                format!("{} frames is more than 10000", self.scene_warmup),
            );
        }
        if let Some(sec) = self.max_gap_sec {
            if !sec.is_finite() || sec <= 0.0 {
                return bad(
                    "--max-gap-sec",
                    format!("{sec} is not a positive number of seconds"),
                );
            }
        }
        if self.max_gap == 0 {
            return bad("--max-gap", "must be at least 1 frame".into());
        }
        if !(1..=100).contains(&self.jpeg_quality) {
            return bad(
                "--jpeg-quality",
                format!("{} is not within 1..=100", self.jpeg_quality),
            );
        }
        if self.detect_width != 0 && self.detect_width < 64 {
            return bad(
                "--detect-width",
                format!("{} is under 64 pixels (0: full size)", self.detect_width),
            );
        }
        Ok(())
    }

    /// The settings that change what is analysed; a resume needs them unchanged.
    pub fn fingerprint(&self) -> String {
        format!(
            "stride={} threshold={} min_scene={} cooldown={} warmup={} gap={} gap_sec={:?} face_model={:?} cascade={:?} detect_width={} frames={} crops={} samples={}",
            self.stride,
            self.scene_threshold,
            self.min_scene_len,
            self.scene_cut_cooldown,
            self.scene_warmup,
            self.max_gap,
            self.max_gap_sec,
            self.face_model,
            self.cascade,
            self.detect_width,
            self.save_frames,
            self.save_crops,
            self.track_sample_limit,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_names_the_flag_that_is_wrong() {
        let mut o = AnalyzeOptions::new("ep", "v.mp4", "out");
        o.validate().expect("defaults are valid");
        o.stride = 0;
        let err = o.validate().expect_err("stride 0").to_string();
        assert!(err.contains("--stride"), "{err}");
        o.stride = 6;
        o.scene_threshold = f64::NAN;
        let err = o.validate().expect_err("NaN threshold").to_string();
        assert!(err.contains("--scene-threshold"), "{err}");
        o.scene_threshold = 0.3;
        o.max_gap_sec = Some(f64::INFINITY);
        let err = o.validate().expect_err("infinite gap").to_string();
        assert!(err.contains("--max-gap-sec"), "{err}");
        o.max_gap_sec = None;
        o.jpeg_quality = 0;
        assert!(o
            .validate()
            .expect_err("quality 0")
            .to_string()
            .contains("--jpeg-quality"));
    }
}
