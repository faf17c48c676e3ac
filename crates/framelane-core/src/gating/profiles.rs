//! Loading, validating and overriding storage profiles.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::GatingError;

/// The built-in profiles, compiled in from resources/profiles.yaml.
const BUILTIN: &str = include_str!("../../../../resources/profiles.yaml");
const BUILTIN_NAME: &str = "resources/profiles.yaml (built in)";

/// How a kept frame is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FrameCompression {
    /// Raw pixels in the store's frame table.
    None,
    Png,
    Jpeg,
    /// Frames go to the run's video encoder.
    Video,
}

impl FrameCompression {
    pub fn label(self) -> &'static str {
        match self {
            FrameCompression::None => "inline",
            FrameCompression::Png => "png",
            FrameCompression::Jpeg => "jpeg",
            FrameCompression::Video => "video",
        }
    }
}

/// What happens to a kept frame when the part that stores it is behind (a video encoder's
/// queue is full, or the daemon's memory ceiling is reached).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WhenBehind {
    /// The worker's stream waits for room (HTTP/2 flow control slows the worker), up to a
    /// limit; only past it is the frame shed. For profiles that record datasets.
    Wait,
    /// The frame is shed at once and counted: training is never slowed. For live views.
    Shed,
}

impl WhenBehind {
    pub fn label(self) -> &'static str {
        match self {
            WhenBehind::Wait => "wait",
            WhenBehind::Shed => "shed",
        }
    }
}

/// One storage profile.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageProfile {
    #[serde(skip)]
    pub name: String,
    pub capture_frames: bool,
    pub keep_every_n_frames: NonZeroU32,
    pub frame_compression: FrameCompression,
    #[serde(default = "default_jpeg_quality", deserialize_with = "jpeg_quality")]
    pub jpeg_quality: u8,
    pub drop_render_payload: bool,
    pub drop_observation: bool,
    pub batch_rows: NonZeroU32,
    pub flush_interval_ms: u32,
    /// Codec family of `frame_compression: video`: av1 (the default) or h264.
    #[serde(default = "default_video_codec", deserialize_with = "video_codec")]
    pub video_codec: String,
    /// Frame rate of the video timeline.
    #[serde(default = "default_video_fps", deserialize_with = "video_fps")]
    pub video_fps: u32,
    /// CRF for the video encoder (default: 35 for av1, 23 for h264).
    #[serde(default)]
    pub video_crf: Option<u32>,
    /// Policy for kept frames when their encoder or the memory ceiling is behind (default:
    /// wait for `video`, which records datasets; shed for the others).
    #[serde(default)]
    pub when_behind: Option<WhenBehind>,
}

impl StorageProfile {
    /// The policy in force for kept frames when their encoder or the memory ceiling is behind.
    pub fn behind_policy(&self) -> WhenBehind {
        self.when_behind
            .unwrap_or(if self.frame_compression == FrameCompression::Video {
                WhenBehind::Wait
            } else {
                WhenBehind::Shed
            })
    }
}

fn default_video_codec() -> String {
    "av1".into()
}

fn video_codec<'de, D: serde::Deserializer<'de>>(de: D) -> Result<String, D::Error> {
    let value = String::deserialize(de)?;
    match value.as_str() {
        "av1" | "h264" => Ok(value),
        _ => Err(serde::de::Error::custom(format!(
            "{value:?} is not a codec family (av1 or h264)"
        ))),
    }
}

fn default_video_fps() -> u32 {
    30
}

fn video_fps<'de, D: serde::Deserializer<'de>>(de: D) -> Result<u32, D::Error> {
    let value = u32::deserialize(de)?;
    if (1..=240).contains(&value) {
        Ok(value)
    } else {
        Err(serde::de::Error::custom(format!(
            "{value} is outside 1..=240"
        )))
    }
}

fn default_jpeg_quality() -> u8 {
    85
}

fn jpeg_quality<'de, D: serde::Deserializer<'de>>(de: D) -> Result<u8, D::Error> {
    let value = u32::deserialize(de)?;
    match u8::try_from(value) {
        Ok(quality) if (1..=100).contains(&quality) => Ok(quality),
        _ => Err(serde::de::Error::custom(format!(
            "{value} is outside 1..=100"
        ))),
    }
}

/// Field names of a profile, for error messages.
const FIELDS: &[&str] = &[
    "capture_frames",
    "keep_every_n_frames",
    "frame_compression",
    "jpeg_quality",
    "drop_render_payload",
    "drop_observation",
    "batch_rows",
    "flush_interval_ms",
    "video_codec",
    "video_fps",
    "video_crf",
    "when_behind",
];

/// Checks one field of a user profile on its own, so an error can name the exact key.
fn check_field(key: &str, value: &serde_norway::Value) -> Result<(), String> {
    use serde_norway::from_value;
    let value = value.clone();
    let result = match key {
        "capture_frames" | "drop_render_payload" | "drop_observation" => {
            from_value::<bool>(value).map(drop)
        }
        "keep_every_n_frames" | "batch_rows" => from_value::<NonZeroU32>(value).map(drop),
        "flush_interval_ms" => from_value::<u32>(value).map(drop),
        "frame_compression" => from_value::<FrameCompression>(value).map(drop),
        "jpeg_quality" => jpeg_quality(value).map(drop),
        "video_codec" => video_codec(value).map(drop),
        "video_fps" => video_fps(value).map(drop),
        "video_crf" => from_value::<u32>(value).and_then(|crf| {
            if crf <= 63 {
                Ok(())
            } else {
                Err(serde::de::Error::custom(format!("{crf} is outside 0..=63")))
            }
        }),
        "when_behind" => from_value::<WhenBehind>(value).map(drop),
        _ => return Err(format!("unknown field (known: {})", FIELDS.join(", "))),
    };
    result.map_err(|err| err.to_string())
}

/// A profile file: a default and named profiles, each complete, or (in a user file) partial
/// overrides of built-in ones.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    default_profile: Option<String>,
    #[serde(default)]
    profiles: BTreeMap<String, serde_norway::Value>,
}

/// The profiles in force: built-ins, overridden by a user file when one was given.
#[derive(Debug, Clone)]
pub struct ProfileSet {
    default: String,
    profiles: BTreeMap<String, StorageProfile>,
    /// The user file these came from, if any.
    pub source: Option<PathBuf>,
}

impl ProfileSet {
    /// The built-in profiles alone.
    pub fn builtin() -> Result<Self, GatingError> {
        let mut set = ProfileSet {
            default: String::new(),
            profiles: BTreeMap::new(),
            source: None,
        };
        set.merge(Path::new(BUILTIN_NAME), BUILTIN)?;
        Ok(set)
    }

    /// Built-ins overridden by the user file at `path`.
    pub fn load(path: &Path) -> Result<Self, GatingError> {
        let text = std::fs::read_to_string(path).map_err(|source| GatingError::Read {
            file: path.to_owned(),
            source,
        })?;
        Self::with_overrides(path, &text)
    }

    /// Built-ins overridden by the YAML `text` of the file named `path`.
    pub fn with_overrides(path: &Path, text: &str) -> Result<Self, GatingError> {
        let mut set = Self::builtin()?;
        set.merge(path, text)?;
        set.source = Some(path.to_owned());
        Ok(set)
    }

    fn merge(&mut self, path: &Path, text: &str) -> Result<(), GatingError> {
        let invalid = |err: serde_norway::Error| GatingError::Invalid {
            file: path.to_owned(),
            line: err.location().map(|l| l.line()),
            message: err.to_string(),
        };
        let file: ProfileFile = serde_norway::from_str(text).map_err(invalid)?;
        for (name, value) in file.profiles {
            if let serde_norway::Value::Mapping(fields) = &value {
                for (key, field) in fields {
                    let key = key.as_str().unwrap_or_default();
                    check_field(key, field).map_err(|message| GatingError::Invalid {
                        file: path.to_owned(),
                        line: line_of_field(text, &name, key),
                        message: format!("profiles.{name}.{key}: {message}"),
                    })?;
                }
            }
            // A user profile may give only some fields: it starts from the built-in of the same
            // name, or from the default profile for a new name.
            let base = self
                .profiles
                .get(&name)
                .or_else(|| self.profiles.get(&self.default))
                .map(to_yaml_mapping)
                .unwrap_or_default();
            let merged = overlay(base, value, &name).map_err(|message| GatingError::Invalid {
                file: path.to_owned(),
                line: line_of_key(text, &name),
                message,
            })?;
            let mut profile: StorageProfile =
                serde_norway::from_value(merged).map_err(|err| GatingError::Invalid {
                    file: path.to_owned(),
                    line: line_of_key(text, &name),
                    message: format!("profiles.{name}: {err}"),
                })?;
            profile.name = name.clone();
            self.profiles.insert(name, profile);
        }
        if let Some(default) = file.default_profile {
            if !self.profiles.contains_key(&default) {
                return Err(GatingError::Invalid {
                    file: path.to_owned(),
                    line: line_of_key(text, "default_profile"),
                    message: format!("default_profile: unknown profile {default:?}"),
                });
            }
            self.default = default;
        }
        if self.default.is_empty() {
            return Err(GatingError::Invalid {
                file: path.to_owned(),
                line: None,
                message: "default_profile is missing".into(),
            });
        }
        Ok(())
    }

    /// A profile by name.
    pub fn get(&self, name: &str) -> Result<&StorageProfile, GatingError> {
        self.profiles
            .get(name)
            .ok_or_else(|| GatingError::UnknownProfile {
                name: name.to_owned(),
                known: self.names().join(", "),
            })
    }

    /// The profile a run gets when it names none.
    pub fn default_profile(&self) -> &StorageProfile {
        // The default is checked to exist whenever the set is built.
        &self.profiles[&self.default]
    }

    /// A profile by name, or the default for an empty name.
    pub fn resolve(&self, name: &str) -> Result<&StorageProfile, GatingError> {
        if name.is_empty() {
            Ok(self.default_profile())
        } else {
            self.get(name)
        }
    }

    pub fn names(&self) -> Vec<String> {
        self.profiles.keys().cloned().collect()
    }
}

fn to_yaml_mapping(profile: &StorageProfile) -> serde_norway::Mapping {
    let mut map = serde_norway::Mapping::new();
    let mut put = |k: &str, v: serde_norway::Value| {
        map.insert(serde_norway::Value::from(k), v);
    };
    put("capture_frames", profile.capture_frames.into());
    put(
        "keep_every_n_frames",
        profile.keep_every_n_frames.get().into(),
    );
    put(
        "frame_compression",
        serde_norway::Value::from(match profile.frame_compression {
            FrameCompression::None => "none",
            FrameCompression::Png => "png",
            FrameCompression::Jpeg => "jpeg",
            FrameCompression::Video => "video",
        }),
    );
    put("jpeg_quality", profile.jpeg_quality.into());
    put("drop_render_payload", profile.drop_render_payload.into());
    put("drop_observation", profile.drop_observation.into());
    put("batch_rows", profile.batch_rows.get().into());
    put("flush_interval_ms", profile.flush_interval_ms.into());
    map
}

/// Lays the user's fields over `base`; the user's value must be a mapping.
fn overlay(
    mut base: serde_norway::Mapping,
    value: serde_norway::Value,
    name: &str,
) -> Result<serde_norway::Value, String> {
    match value {
        serde_norway::Value::Mapping(fields) => {
            for (k, v) in fields {
                base.insert(k, v);
            }
            Ok(serde_norway::Value::Mapping(base))
        }
        other => Err(format!(
            "profiles.{name}: expected a mapping of fields, found {other:?}"
        )),
    }
}

/// Line (1-based) of `key:` inside the profile `name`, for errors found after parsing.
fn line_of_field(text: &str, name: &str, key: &str) -> Option<usize> {
    let start = line_of_key(text, name)?;
    text.lines()
        .enumerate()
        .skip(start)
        .find(|(_, line)| line.trim_start().starts_with(&format!("{key}:")))
        .map(|(i, _)| i + 1)
        .or(Some(start))
}

/// Line (1-based) where `key:` first appears, for errors found after parsing.
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|line| line.trim_start().starts_with(&format!("{key}:")))
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_profiles_load_with_the_documented_names() {
        let set = ProfileSet::builtin().expect("built-ins");
        for name in ["telemetry_only", "box2d", "atari", "toy_text", "debug"] {
            assert!(set.get(name).is_ok(), "{name}");
        }
        assert_eq!(set.default_profile().name, "telemetry_only");
    }

    #[test]
    fn a_user_file_overrides_fields_and_adds_profiles() {
        let text = "default_profile: mine\nprofiles:\n  box2d:\n    keep_every_n_frames: 2\n  mine:\n    capture_frames: true\n    frame_compression: jpeg\n";
        let set = ProfileSet::with_overrides(Path::new("user.yaml"), text).expect("valid");
        assert_eq!(
            set.get("box2d").expect("box2d").keep_every_n_frames.get(),
            2
        );
        assert_eq!(
            set.get("box2d").expect("box2d").frame_compression,
            FrameCompression::Png
        );
        let mine = set.default_profile();
        assert_eq!(
            (mine.name.as_str(), mine.frame_compression),
            ("mine", FrameCompression::Jpeg)
        );
    }

    fn error_of(text: &str) -> String {
        ProfileSet::with_overrides(Path::new("/etc/p.yaml"), text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn bad_files_name_the_file_line_and_key() {
        let unknown = error_of("profiles:\n  box2d:\n    keep_every_frame: 3\n");
        assert!(
            unknown.starts_with("/etc/p.yaml:3: profiles.box2d.keep_every_frame: unknown field"),
            "{unknown}"
        );

        let zero =
            error_of("profiles:\n  atari:\n    capture_frames: true\n    keep_every_n_frames: 0\n");
        assert!(
            zero.starts_with("/etc/p.yaml:4: profiles.atari.keep_every_n_frames:"),
            "{zero}"
        );

        let quality = error_of("profiles:\n  x:\n    jpeg_quality: 300\n");
        assert!(
            quality.starts_with("/etc/p.yaml:3: profiles.x.jpeg_quality: 300 is outside 1..=100"),
            "{quality}"
        );

        let compression = error_of("profiles:\n  x:\n    frame_compression: gif\n");
        assert!(
            compression.contains("gif") && compression.contains("profiles.x.frame_compression"),
            "{compression}"
        );

        let syntax = error_of("profiles:\n  x: [unclosed\n");
        assert!(syntax.starts_with("/etc/p.yaml:"), "{syntax}");

        let default = error_of("default_profile: nope\n");
        assert!(
            default.contains("/etc/p.yaml:1") && default.contains("nope"),
            "{default}"
        );
    }
}
