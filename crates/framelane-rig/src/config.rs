//! `rig.yaml`: the cameras and how clips are recorded. Every error names the file, the line
//! (when the YAML parser or a key search can tell) and the key.
//!
//! ```yaml
//! cameras:
//!   - name: left
//!     source: synthetic          # synthetic | device:N | fastlane:RUN | a file | rtsp://... | http(s)://...
//!     size: 1280x720
//!     fps: 30
//! recording:
//!   pre_roll_ms: 3000
//!   post_roll_ms: 2000
//!   codec: h264                  # h264 | av1 (hardware encoder first, then software)
//!   crf: 23                      # or bitrate_kbps
//!   gop_ms: 500                  # keyframe spacing: the pre-roll's precision
//!   output_dir: clips
//!   disk_reserve_mb: 256         # recording stops (with an error) below this much free space
//!   ring_mb: 64                  # most encoded bytes kept per camera
//!   overlap: extend              # a trigger during a clip's post-roll: extend | next
//!   telemetry_data_dir: /data/rl # optional: the daemon's data dir; clips get telemetry.jsonl
//!   trigger_on_episode_end: true # optional: an episode's end (recorded by the daemon) triggers
//!   trigger_runs: [arm-3]        # optional: only these runs' episodes
//!   preset: veryfast             # optional: x264 preset, or SVT-AV1's 0..13
//!   grpc_listen: 127.0.0.1:50070 # optional: the rig's gRPC API (framelane.v1.Rig)
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::RigError;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    pub name: String,
    pub source: String,
    pub size: String,
    pub fps: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OverlapPolicy {
    /// A trigger during a clip's post-roll moves its end to the new trigger's post-roll.
    Extend,
    /// It starts the next clip (whose pre-roll overlaps the running one); both are complete.
    Next,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingConfig {
    #[serde(default = "default_pre")]
    pub pre_roll_ms: u64,
    #[serde(default = "default_post")]
    pub post_roll_ms: u64,
    #[serde(default = "default_codec")]
    pub codec: String,
    #[serde(default)]
    pub crf: Option<u32>,
    #[serde(default)]
    pub bitrate_kbps: Option<u32>,
    #[serde(default = "default_gop")]
    pub gop_ms: u64,
    pub output_dir: PathBuf,
    #[serde(default = "default_reserve")]
    pub disk_reserve_mb: u64,
    #[serde(default = "default_ring")]
    pub ring_mb: u64,
    #[serde(default = "default_overlap")]
    pub overlap: OverlapPolicy,
    /// Data directory of the telemetry daemon whose steps and episodes go beside each clip
    /// (`telemetry.jsonl`: what it received during the clip's interval). None: no slice.
    #[serde(default)]
    pub telemetry_data_dir: Option<PathBuf>,
    /// Trigger a clip whenever the daemon records an episode's end (needs
    /// `telemetry_data_dir`); `trigger_runs` limits it to these runs (empty: every run).
    #[serde(default)]
    pub trigger_on_episode_end: bool,
    #[serde(default)]
    pub trigger_runs: Vec<String>,
    /// Encoder speed preset: x264's names (ultrafast ... veryslow; default veryfast) or
    /// SVT-AV1's 0..13 (default 10). Faster presets cost bitrate, not frames.
    #[serde(default)]
    pub preset: Option<String>,
    /// Where the rig serves its gRPC API (`framelane.v1.Rig`: Trigger, GetRigStatus). An
    /// address beyond loopback needs a token (`--token` or FRAMELANE_TOKEN).
    #[serde(default)]
    pub grpc_listen: Option<String>,
}

/// x264's speed presets, fastest first.
pub const X264_PRESETS: &[&str] = &[
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
];

fn default_pre() -> u64 {
    3000
}
fn default_post() -> u64 {
    2000
}
fn default_codec() -> String {
    "h264".into()
}
fn default_gop() -> u64 {
    500
}
fn default_reserve() -> u64 {
    256
}
fn default_ring() -> u64 {
    64
}
fn default_overlap() -> OverlapPolicy {
    OverlapPolicy::Extend
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RigConfig {
    pub cameras: Vec<CameraConfig>,
    pub recording: RecordingConfig,
    /// Where the file came from (for errors), not part of the YAML.
    #[serde(skip)]
    pub path: PathBuf,
    /// Bearer token of the rig's gRPC API and of the daemon it lists clips with (from
    /// `--token` or FRAMELANE_TOKEN, never from the file).
    #[serde(skip)]
    pub token: Option<String>,
}

/// Where a camera's frames come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// Frames that carry the camera's id and their frame number in their pixels.
    Synthetic,
    /// A V4L2 device by index.
    Device(i32),
    /// The newest frames of a fast-lane run (a robot process already publishing).
    FastLane(String),
    /// A video file, or a network stream URL.
    Open(String),
}

impl SourceSpec {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text == "synthetic" {
            return Ok(Self::Synthetic);
        }
        if let Some(index) = text.strip_prefix("device:") {
            return index
                .parse::<i32>()
                .ok()
                .filter(|i| (0..=63).contains(i))
                .map(Self::Device)
                .ok_or_else(|| format!("{text:?}: device: takes an index from 0 to 63"));
        }
        if let Some(run) = text.strip_prefix("fastlane:") {
            if run.is_empty() || run.len() > 200 || run.contains('/') {
                return Err(format!(
                    "{text:?}: fastlane: takes a run id (no '/', at most 200 bytes)"
                ));
            }
            return Ok(Self::FastLane(run.to_owned()));
        }
        if text.is_empty() {
            return Err("is empty (synthetic, device:N, fastlane:RUN, a file or a URL)".into());
        }
        Ok(Self::Open(text.to_owned()))
    }
}

/// Parses `WIDTHxHEIGHT` (even, 16 to 8192).
pub fn parse_size(text: &str) -> Result<(u32, u32), String> {
    let (w, h) = text
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("{text:?} is not WIDTHxHEIGHT"))?;
    let side = |v: &str| {
        v.trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (16..=8192).contains(n) && n % 2 == 0)
            .ok_or_else(|| format!("{text:?}: sides must be even numbers from 16 to 8192"))
    };
    Ok((side(w)?, side(h)?))
}

fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

impl RigConfig {
    pub fn load(path: &Path) -> Result<Self, RigError> {
        let text = std::fs::read_to_string(path).map_err(|e| RigError::Config {
            path: path.to_owned(),
            line: None,
            reason: e.to_string(),
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, RigError> {
        let mut config: RigConfig = serde_norway::from_str(text).map_err(|e| RigError::Config {
            path: path.to_owned(),
            line: e.location().map(|l| l.line()),
            reason: e.to_string(),
        })?;
        config.path = path.to_owned();
        config.token = std::env::var("FRAMELANE_TOKEN")
            .ok()
            .filter(|t| !t.is_empty());
        config.validate(text)?;
        Ok(config)
    }

    fn validate(&self, text: &str) -> Result<(), RigError> {
        let fail = |needle: &str, reason: String| RigError::Config {
            path: self.path.clone(),
            line: line_of(text, needle),
            reason,
        };
        if self.cameras.is_empty() {
            return Err(fail(
                "cameras:",
                "cameras: at least one camera is needed".into(),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for cam in &self.cameras {
            let at = format!("name: {}", cam.name);
            let ok_name = !cam.name.is_empty()
                && cam.name.len() <= 64
                && cam
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok_name {
                return Err(fail(
                    &at,
                    format!(
                        "name {:?}: 1 to 64 letters, digits, '-' or '_' (it names files)",
                        cam.name
                    ),
                ));
            }
            if !names.insert(cam.name.to_ascii_lowercase()) {
                return Err(fail(
                    &at,
                    format!("name {:?}: two cameras share it", cam.name),
                ));
            }
            SourceSpec::parse(&cam.source).map_err(|r| {
                fail(
                    &format!("source: {}", cam.source),
                    format!("camera {}: source {r}", cam.name),
                )
            })?;
            parse_size(&cam.size).map_err(|r| {
                fail(
                    &format!("size: {}", cam.size),
                    format!("camera {}: size {r}", cam.name),
                )
            })?;
            if !(1..=240).contains(&cam.fps) {
                return Err(fail(
                    &format!("fps: {}", cam.fps),
                    format!("camera {}: fps {} is not within 1..=240", cam.name, cam.fps),
                ));
            }
        }
        let r = &self.recording;
        if r.pre_roll_ms > 600_000 || r.post_roll_ms > 600_000 {
            return Err(fail(
                "_roll_ms:",
                "recording: pre_roll_ms and post_roll_ms are at most 600000 (10 minutes)".into(),
            ));
        }
        if !(matches!(r.codec.as_str(), "h264" | "av1")) {
            return Err(fail(
                "codec:",
                format!("recording: codec {:?} is not h264 or av1", r.codec),
            ));
        }
        if r.crf.is_some() && r.bitrate_kbps.is_some() {
            return Err(fail(
                "bitrate_kbps:",
                "recording: give crf or bitrate_kbps, not both".into(),
            ));
        }
        if let Some(crf) = r.crf {
            if crf > 63 {
                return Err(fail("crf:", format!("recording: crf {crf} is above 63")));
            }
        }
        if !(50..=10_000).contains(&r.gop_ms) {
            return Err(fail(
                "gop_ms:",
                format!("recording: gop_ms {} is not within 50..=10000", r.gop_ms),
            ));
        }
        if r.output_dir.as_os_str().is_empty() {
            return Err(fail("output_dir:", "recording: output_dir is empty".into()));
        }
        if r.trigger_on_episode_end && r.telemetry_data_dir.is_none() {
            return Err(fail(
                "trigger_on_episode_end:",
                "recording: trigger_on_episode_end needs telemetry_data_dir (the daemon's data directory)".into(),
            ));
        }
        if r.codec == "av1" {
            // SVT-AV1 refuses sides under 64 ("Invalid argument" when the camera starts).
            for cam in &self.cameras {
                if let Ok((w, h)) = parse_size(&cam.size) {
                    if w < 64 || h < 64 {
                        return Err(fail(
                            &format!("size: {}", cam.size),
                            format!(
                                "camera {}: size {} is under AV1's smallest side (64); use codec h264 or a larger size",
                                cam.name, cam.size
                            ),
                        ));
                    }
                }
            }
        }
        if let Some(preset) = &r.preset {
            let ok = if r.codec == "av1" {
                preset.parse::<u32>().is_ok_and(|p| p <= 13)
            } else {
                X264_PRESETS.contains(&preset.as_str())
            };
            if !ok {
                return Err(fail(
                    "preset:",
                    format!(
                        "recording: preset {preset:?} is not one of {} (codec {})",
                        if r.codec == "av1" {
                            "0..13".to_owned()
                        } else {
                            X264_PRESETS.join(", ")
                        },
                        r.codec
                    ),
                ));
            }
        }
        if let Some(listen) = &r.grpc_listen {
            if listen.parse::<std::net::SocketAddr>().is_err() {
                return Err(fail(
                    "grpc_listen:",
                    format!(
                        "recording: grpc_listen {listen:?} is not an address like 127.0.0.1:50070"
                    ),
                ));
            }
        }
        if !(1..=4096).contains(&r.ring_mb) {
            return Err(fail(
                "ring_mb:",
                format!("recording: ring_mb {} is not within 1..=4096", r.ring_mb),
            ));
        }
        Ok(())
    }

    fn beside_config(&self, dir: &Path) -> PathBuf {
        if dir.is_absolute() {
            dir.to_owned()
        } else {
            self.path.parent().unwrap_or(Path::new(".")).join(dir)
        }
    }

    /// The output folder, relative paths taken from the config file's folder.
    pub fn output_dir(&self) -> PathBuf {
        self.beside_config(&self.recording.output_dir)
    }

    /// The rig's gRPC address, if it serves one (checked by `parse`).
    pub fn grpc_listen(&self) -> Option<std::net::SocketAddr> {
        self.recording.grpc_listen.as_deref()?.parse().ok()
    }

    /// The telemetry daemon's data directory, if the clips carry a telemetry slice.
    pub fn telemetry_data_dir(&self) -> Option<PathBuf> {
        self.recording
            .telemetry_data_dir
            .as_deref()
            .map(|dir| self.beside_config(dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "cameras:\n  - name: left\n    source: synthetic\n    size: 320x240\n    fps: 30\nrecording:\n  output_dir: clips\n";

    #[test]
    fn a_good_file_loads_with_defaults() {
        let c = RigConfig::parse(GOOD, Path::new("/etc/rig.yaml")).expect("valid");
        assert_eq!(c.recording.pre_roll_ms, 3000);
        assert_eq!(c.recording.overlap, OverlapPolicy::Extend);
        assert_eq!(c.output_dir(), PathBuf::from("/etc/clips"));
    }

    #[test]
    fn errors_name_the_file_line_and_key() {
        let bad_fps = GOOD.replace("fps: 30", "fps: 0");
        let err = RigConfig::parse(&bad_fps, Path::new("rig.yaml"))
            .expect_err("fps 0")
            .to_string();
        assert!(
            err.starts_with("rig.yaml:5:") && err.contains("fps"),
            "{err}"
        );
        let typo = GOOD.replace("output_dir", "output_dri");
        let err = RigConfig::parse(&typo, Path::new("rig.yaml"))
            .expect_err("unknown key")
            .to_string();
        assert!(
            err.contains("rig.yaml:7") && err.contains("output_dri"),
            "{err}"
        );
        let odd = GOOD.replace("320x240", "321x240");
        let err = RigConfig::parse(&odd, Path::new("rig.yaml"))
            .expect_err("odd size")
            .to_string();
        assert!(
            err.starts_with("rig.yaml:4:") && err.contains("size"),
            "{err}"
        );
        let twins = GOOD.replace(
            "recording:",
            "  - name: LEFT\n    source: synthetic\n    size: 320x240\n    fps: 30\nrecording:",
        );
        let err = RigConfig::parse(&twins, Path::new("rig.yaml"))
            .expect_err("same name")
            .to_string();
        assert!(err.contains("share"), "{err}");
        let path = GOOD.replace("name: left", "name: ../left");
        assert!(RigConfig::parse(&path, Path::new("rig.yaml")).is_err());
        let preset = format!("{GOOD}  preset: warp\n");
        let err = RigConfig::parse(&preset, Path::new("rig.yaml"))
            .expect_err("unknown preset")
            .to_string();
        assert!(
            err.starts_with("rig.yaml:8:") && err.contains("veryfast"),
            "{err}"
        );
        let tiny_av1 = format!("{GOOD}  codec: av1\n").replace("320x240", "48x48");
        let err = RigConfig::parse(&tiny_av1, Path::new("rig.yaml"))
            .expect_err("av1 under 64")
            .to_string();
        assert!(
            err.starts_with("rig.yaml:4:") && err.contains("smallest side"),
            "{err}"
        );
        let listen = format!("{GOOD}  grpc_listen: localhost\n");
        let err = RigConfig::parse(&listen, Path::new("rig.yaml"))
            .expect_err("not an address")
            .to_string();
        assert!(
            err.starts_with("rig.yaml:8:") && err.contains("grpc_listen"),
            "{err}"
        );
    }
}
