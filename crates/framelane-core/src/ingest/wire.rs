//! The edge, both ways: messages of both wire APIs become [`StepRecord`] / [`EpisodeRecord`]
//! here, with every field checked (an error names the field), and stored rows, replies and
//! control events become wire messages here.

use serde::de::IgnoredAny;

use super::proto::{framelane_v1 as v1, gymgui};
use super::{ControlEvent, IngestError};
use crate::bus::{
    ClipEntry, ClipFileEntry, EpisodeRecord, FrameImage, ImageCodec, Payload, RawPixelFormat,
    StepRecord,
};
use crate::replay::RgbaFrame;
use crate::store::{EpisodeRow, StepRow};

/// Largest frame side accepted.
const MAX_FRAME_SIDE: u32 = 16_384;

/// Where a step's frame is, before the gate decides whether to look at it.
#[derive(Debug)]
pub enum FrameSource {
    None,
    Image(FrameImage),
    /// A MOSAIC render payload (JSON) that may hold an "rgb" frame; parsed only if kept.
    MosaicRenderPayload(String),
}

impl FrameSource {
    pub fn is_some(&self) -> bool {
        !matches!(self, FrameSource::None)
    }
}

fn check_json(field: &'static str, text: &str) -> Result<(), IngestError> {
    if text.is_empty() {
        return Ok(());
    }
    serde_json::from_str::<IgnoredAny>(text)
        .map(|_| ())
        .map_err(|err| IngestError::field(field, format!("is not valid JSON: {err}")))
}

/// SQLite stores NaN as NULL and a batch holding it would fail as a whole: a non-finite value
/// is refused with its item, never stored.
fn check_finite(field: &'static str, value: f64) -> Result<(), IngestError> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(IngestError::field(
            field,
            format!("is {value}: only finite numbers are stored"),
        ))
    }
}

pub(crate) fn check_run_id(run_id: &str) -> Result<(), IngestError> {
    if run_id.is_empty() {
        return Err(IngestError::field("run_id", "is empty"));
    }
    check_label("run_id", run_id)
}

/// Checks an id or label: at most 256 bytes, no control characters (empty is allowed here).
/// The error shows at most the first 64 characters, never the whole value.
pub(crate) fn check_label(field: &'static str, value: &str) -> Result<(), IngestError> {
    if value.len() > 256 || value.chars().any(char::is_control) {
        let shown: String = value.chars().take(64).collect();
        Err(IngestError::field(
            field,
            format!(
                "{shown:?} ({} bytes) is longer than 256 bytes or has control characters",
                value.len()
            ),
        ))
    } else {
        Ok(())
    }
}

fn check_raw(
    field: &'static str,
    width: u32,
    height: u32,
    format: RawPixelFormat,
    len: usize,
) -> Result<(), IngestError> {
    if width == 0 || height == 0 || width > MAX_FRAME_SIDE || height > MAX_FRAME_SIDE {
        return Err(IngestError::field(
            field,
            format!("size {width}x{height} is outside 1..={MAX_FRAME_SIDE}"),
        ));
    }
    let expected = width as usize * height as usize * format.bytes_per_pixel();
    if len != expected {
        return Err(IngestError::field(
            field,
            format!(
                "has {len} bytes, {width}x{height} {} needs {expected}",
                format.label()
            ),
        ));
    }
    Ok(())
}

/// Our wire code for a pixel format (the reverse of the mapping in [`step_from_v1`]).
pub fn pixel_format_to_v1(format: RawPixelFormat) -> v1::PixelFormat {
    match format {
        RawPixelFormat::Rgb8 => v1::PixelFormat::Rgb8,
        RawPixelFormat::Rgba8 => v1::PixelFormat::Rgba8,
        RawPixelFormat::Bgra8 => v1::PixelFormat::Bgra8,
        RawPixelFormat::Gray8 => v1::PixelFormat::Gray8,
    }
}

/// The pixel format of a wire code (None for "unspecified").
pub fn raw_format(format: v1::PixelFormat) -> Option<RawPixelFormat> {
    match format {
        v1::PixelFormat::Rgb8 => Some(RawPixelFormat::Rgb8),
        v1::PixelFormat::Rgba8 => Some(RawPixelFormat::Rgba8),
        v1::PixelFormat::Bgra8 => Some(RawPixelFormat::Bgra8),
        v1::PixelFormat::Gray8 => Some(RawPixelFormat::Gray8),
        v1::PixelFormat::Unspecified => None,
    }
}

fn payload(
    field: &'static str,
    value: Option<v1::Payload>,
) -> Result<Option<Payload>, IngestError> {
    match value.and_then(|p| p.content) {
        None => Ok(None),
        Some(v1::payload::Content::Raw(bytes)) => Ok(Some(Payload::Raw(bytes))),
        Some(v1::payload::Content::Json(text)) => {
            check_json(field, &text)?;
            Ok(Some(Payload::Json(text)))
        }
    }
}

/// Our API's step, checked.
pub fn step_from_v1(step: v1::Step) -> Result<(StepRecord, FrameSource), IngestError> {
    check_run_id(&step.run_id)?;
    check_finite("reward", step.reward)?;
    let frame = match step.frame.and_then(|f| f.content) {
        None => FrameSource::None,
        Some(v1::frame::Content::Raw(raw)) => {
            let format = v1::PixelFormat::try_from(raw.format)
                .ok()
                .and_then(raw_format)
                .ok_or_else(|| {
                    IngestError::field(
                        "frame.raw.format",
                        format!("{} is not a known pixel format", raw.format),
                    )
                })?;
            check_raw("frame.raw", raw.width, raw.height, format, raw.pixels.len())?;
            FrameSource::Image(FrameImage::Raw {
                width: raw.width,
                height: raw.height,
                format,
                pixels: raw.pixels,
            })
        }
        Some(v1::frame::Content::Encoded(image)) => {
            let Some(codec) = ImageCodec::from_name(&image.codec) else {
                return Err(IngestError::field(
                    "frame.encoded.codec",
                    format!("{:?} is not png or jpeg", image.codec),
                ));
            };
            if image.data.is_empty() {
                return Err(IngestError::field("frame.encoded.data", "is empty"));
            }
            FrameSource::Image(FrameImage::Encoded {
                codec,
                data: image.data,
            })
        }
        Some(v1::frame::Content::Reference(reference)) => {
            FrameSource::Image(FrameImage::Reference(reference))
        }
    };
    let record = StepRecord {
        action: payload("action.json", step.action)?,
        observation: payload("observation.json", step.observation)?,
        run_id: step.run_id,
        worker_id: step.worker_id,
        agent_id: step.agent_id,
        episode: step.episode,
        step: step.step,
        reward: step.reward,
        terminated: step.terminated,
        truncated: step.truncated,
        producer_unix_ns: step.producer_unix_ns,
        extra_json: None,
        worker_seq: step.worker_seq,
    };
    Ok((record, frame))
}

/// Our API's episode, checked.
pub fn episode_from_v1(episode: v1::Episode) -> Result<EpisodeRecord, IngestError> {
    check_run_id(&episode.run_id)?;
    check_finite("total_reward", episode.total_reward)?;
    check_json("metadata_json", &episode.metadata_json)?;
    Ok(EpisodeRecord {
        run_id: episode.run_id,
        worker_id: episode.worker_id,
        agent_id: episode.agent_id,
        episode: episode.episode,
        total_reward: episode.total_reward,
        steps: episode.steps,
        terminated: episode.terminated,
        truncated: episode.truncated,
        metadata_json: episode.metadata_json,
        producer_unix_ns: episode.producer_unix_ns,
    })
}

fn timestamp_ns(ts: Option<prost_types::Timestamp>) -> u64 {
    ts.map(|t| {
        (t.seconds.max(0) as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(t.nanos.max(0) as u64)
    })
    .unwrap_or(0)
}

/// A protobuf timestamp for Unix nanoseconds.
/// Longest path a clip record may name.
const MAX_CLIP_PATH: usize = 4096;
/// Most camera files in one clip.
const MAX_CLIP_FILES: usize = 64;

fn check_absolute_path(field: &'static str, path: &str) -> Result<(), IngestError> {
    if path.len() > MAX_CLIP_PATH || path.contains('\0') {
        return Err(IngestError::field(
            field,
            format!("is longer than {MAX_CLIP_PATH} bytes or holds a NUL"),
        ));
    }
    if !path.starts_with('/') || path.split('/').any(|part| part == "..") {
        let shown: String = path.chars().take(64).collect();
        return Err(IngestError::field(
            field,
            format!("{shown:?} is not an absolute path without '..'"),
        ));
    }
    Ok(())
}

/// A rig's clip record, checked: an id that names its folder, absolute paths of files inside
/// that folder, finite offsets.
pub fn clip_from_v1(clip: v1::ClipRecord) -> Result<ClipEntry, IngestError> {
    let id_ok = !clip.clip_id.is_empty()
        && clip.clip_id.len() <= 128
        && clip
            .clip_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !id_ok {
        let shown: String = clip.clip_id.chars().take(64).collect();
        return Err(IngestError::field(
            "clip_id",
            format!("{shown:?}: 1 to 128 letters, digits, '-' or '_'"),
        ));
    }
    check_absolute_path("folder", &clip.folder)?;
    let folder = clip.folder.trim_end_matches('/');
    if folder.rsplit('/').next() != Some(clip.clip_id.as_str()) {
        return Err(IngestError::field(
            "folder",
            format!("does not end in the clip id {:?}", clip.clip_id),
        ));
    }
    check_label("codec", &clip.codec)?;
    if clip.files.is_empty() || clip.files.len() > MAX_CLIP_FILES {
        return Err(IngestError::field(
            "files",
            format!(
                "has {} entries: a clip has 1 to {MAX_CLIP_FILES} camera files",
                clip.files.len()
            ),
        ));
    }
    let mut files = Vec::with_capacity(clip.files.len());
    for (i, file) in clip.files.into_iter().enumerate() {
        let at = |e: IngestError| match e {
            IngestError::Field { field, problem } => {
                IngestError::field(field, format!("(file {i}) {problem}"))
            }
            other => other,
        };
        check_label("files.camera", &file.camera).map_err(at)?;
        check_label("files.encoder", &file.encoder).map_err(at)?;
        check_absolute_path("files.path", &file.path).map_err(at)?;
        if !file.path.starts_with(&format!("{folder}/")) {
            return Err(at(IngestError::field(
                "files.path",
                "is not inside the clip's folder",
            )));
        }
        check_finite("files.start_offset_ms", file.start_offset_ms).map_err(at)?;
        check_finite("files.end_offset_ms", file.end_offset_ms).map_err(at)?;
        files.push(ClipFileEntry {
            camera: file.camera,
            path: file.path,
            frames: file.frames,
            encoder: file.encoder,
            start_offset_ms: file.start_offset_ms,
            end_offset_ms: file.end_offset_ms,
        });
    }
    Ok(ClipEntry {
        folder: folder.to_owned(),
        clip_id: clip.clip_id,
        triggered_unix_ms: clip.triggered_unix_ms,
        pre_roll_ms: clip.pre_roll_ms,
        post_roll_ms: clip.post_roll_ms,
        codec: clip.codec,
        telemetry_items: clip.telemetry_items,
        files,
    })
}

pub fn clip_to_v1(clip: ClipEntry) -> v1::ClipRecord {
    v1::ClipRecord {
        clip_id: clip.clip_id,
        folder: clip.folder,
        triggered_unix_ms: clip.triggered_unix_ms,
        pre_roll_ms: clip.pre_roll_ms,
        post_roll_ms: clip.post_roll_ms,
        files: clip
            .files
            .into_iter()
            .map(|f| v1::ClipFile {
                camera: f.camera,
                path: f.path,
                frames: f.frames,
                encoder: f.encoder,
                start_offset_ms: f.start_offset_ms,
                end_offset_ms: f.end_offset_ms,
            })
            .collect(),
        telemetry_items: clip.telemetry_items,
        codec: clip.codec,
    }
}

pub fn timestamp(ns: u64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: (ns / 1_000_000_000) as i64,
        nanos: (ns % 1_000_000_000) as i32,
    }
}

/// MOSAIC's step, checked; its render payload stays unparsed until the gate wants its frame.
/// `keep_render_payload` keeps the payload JSON in the step's extra fields.
pub fn step_from_mosaic(
    step: gymgui::RunStep,
    keep_render_payload: bool,
) -> Result<(StepRecord, FrameSource), IngestError> {
    check_run_id(&step.run_id)?;
    check_finite("reward", step.reward)?;
    check_json("action_json", &step.action_json)?;
    check_json("observation_json", &step.observation_json)?;
    check_json("render_hint_json", &step.render_hint_json)?;
    let has_rgb = step.render_payload_json.contains("\"rgb\"");
    if !step.render_payload_json.is_empty() {
        check_json("render_payload_json", &step.render_payload_json)?;
    }
    let mut extra = serde_json::Map::new();
    let mut put = |key: &str, value: serde_json::Value| {
        extra.insert(key.to_owned(), value);
    };
    if !step.policy_label.is_empty() {
        put("policy_label", step.policy_label.clone().into());
    }
    if !step.backend.is_empty() {
        put("backend", step.backend.clone().into());
    }
    if !step.render_hint_json.is_empty() {
        put("render_hint_json", step.render_hint_json.clone().into());
    }
    if step.seq_id != 0 {
        put("seq_id", step.seq_id.into());
    }
    if step.payload_version != 0 {
        put("payload_version", step.payload_version.into());
    }
    if step.episode_seed != 0 {
        put("episode_seed", step.episode_seed.into());
    }
    if keep_render_payload && !step.render_payload_json.is_empty() {
        put(
            "render_payload_json",
            step.render_payload_json.clone().into(),
        );
    }
    let frame = if has_rgb {
        FrameSource::MosaicRenderPayload(step.render_payload_json)
    } else if !step.frame_ref.is_empty() {
        FrameSource::Image(FrameImage::Reference(step.frame_ref))
    } else {
        FrameSource::None
    };
    let json = |text: String| (!text.is_empty()).then_some(Payload::Json(text));
    let record = StepRecord {
        run_id: step.run_id,
        worker_id: step.worker_id,
        agent_id: step.agent_id,
        episode: step.episode_index,
        step: step.step_index,
        reward: step.reward,
        terminated: step.terminated,
        truncated: step.truncated,
        producer_unix_ns: timestamp_ns(step.timestamp),
        action: json(step.action_json),
        observation: json(step.observation_json),
        extra_json: (!extra.is_empty()).then(|| serde_json::Value::Object(extra).to_string()),
        // MOSAIC's seq_id has no stated meaning for publishers: never used to drop a step.
        worker_seq: 0,
    };
    Ok((record, frame))
}

/// MOSAIC's episode, checked.
pub fn episode_from_mosaic(episode: gymgui::RunEpisode) -> Result<EpisodeRecord, IngestError> {
    check_run_id(&episode.run_id)?;
    check_finite("total_reward", episode.total_reward)?;
    check_json("metadata_json", &episode.metadata_json)?;
    Ok(EpisodeRecord {
        run_id: episode.run_id,
        worker_id: episode.worker_id,
        agent_id: episode.agent_id,
        episode: episode.episode_index,
        total_reward: episode.total_reward,
        steps: episode.steps,
        terminated: episode.terminated,
        truncated: episode.truncated,
        metadata_json: episode.metadata_json,
        producer_unix_ns: timestamp_ns(episode.timestamp),
    })
}

#[derive(serde::Deserialize)]
struct RenderPayload {
    rgb: PackedRgb,
}

/// The "rgb" array of a MOSAIC render payload (rows of pixels of 3 or 4 values), parsed
/// straight into packed pixels: a nested `Vec<Vec<Vec<u8>>>` would take several times the
/// frame's bytes while parsing. Sizes are checked as it goes.
#[derive(Default)]
struct PackedRgb {
    width: usize,
    height: usize,
    channels: usize,
    pixels: Vec<u8>,
}

impl<'de> serde::Deserialize<'de> for PackedRgb {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(RowsVisitor)
    }
}

struct RowsVisitor;

impl<'de> serde::de::Visitor<'de> for RowsVisitor {
    type Value = PackedRgb;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("rows of pixels")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut rows: A) -> Result<PackedRgb, A::Error> {
        let mut out = PackedRgb::default();
        while rows.next_element_seed(RowSeed(&mut out))?.is_some() {
            out.height += 1;
            if out.height > MAX_FRAME_SIDE as usize {
                return Err(serde::de::Error::custom(format!(
                    "more than {MAX_FRAME_SIDE} rows"
                )));
            }
        }
        Ok(out)
    }
}

/// One row, appended to the packed pixels.
struct RowSeed<'a>(&'a mut PackedRgb);

impl<'de> serde::de::DeserializeSeed<'de> for RowSeed<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for RowSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a row of pixels")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut pixels: A) -> Result<(), A::Error> {
        let out = self.0;
        let y = out.height;
        let mut x = 0;
        while pixels.next_element_seed(PixelSeed { out, x, y })?.is_some() {
            x += 1;
            if x > MAX_FRAME_SIDE as usize {
                return Err(serde::de::Error::custom(format!(
                    "row {y} has more than {MAX_FRAME_SIDE} pixels"
                )));
            }
        }
        if y == 0 {
            out.width = x;
        } else if x != out.width {
            return Err(serde::de::Error::custom(format!(
                "row {y} has {x} pixels, row 0 has {}",
                out.width
            )));
        }
        Ok(())
    }
}

/// One pixel's values, appended to the packed pixels.
struct PixelSeed<'a> {
    out: &'a mut PackedRgb,
    x: usize,
    y: usize,
}

impl<'de> serde::de::DeserializeSeed<'de> for PixelSeed<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for PixelSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a pixel of 3 or 4 values from 0 to 255")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut values: A) -> Result<(), A::Error> {
        let (x, y) = (self.x, self.y);
        let mut n = 0;
        while let Some(value) = values.next_element::<u8>()? {
            n += 1;
            if n > 4 {
                return Err(serde::de::Error::custom(format!(
                    "pixel ({x}, {y}) has more than 4 values"
                )));
            }
            self.out.pixels.push(value);
        }
        if x == 0 && y == 0 {
            self.out.channels = n;
        } else if n != self.out.channels {
            return Err(serde::de::Error::custom(format!(
                "pixel ({x}, {y}) has {n} values, expected {}",
                self.out.channels
            )));
        }
        Ok(())
    }
}

/// The "rgb" frame of a MOSAIC render payload: rows of pixels of 3 (RGB) or 4 (RGBA) values.
pub fn frame_from_render_payload(json: &str) -> Result<FrameImage, IngestError> {
    const FIELD: &str = "render_payload_json.rgb";
    let payload: RenderPayload = serde_json::from_str(json)
        .map_err(|err| IngestError::field(FIELD, format!("is not valid: {err}")))?;
    let PackedRgb {
        width,
        height,
        channels,
        pixels,
    } = payload.rgb;
    let format = match channels {
        3 => RawPixelFormat::Rgb8,
        4 => RawPixelFormat::Rgba8,
        n => {
            return Err(IngestError::field(
                FIELD,
                format!("has pixels of {n} values, expected 3 or 4"),
            ))
        }
    };
    // Both sides were capped at MAX_FRAME_SIDE while parsing.
    let (width, height) = (width as u32, height as u32);
    check_raw(FIELD, width, height, format, pixels.len())?;
    Ok(FrameImage::Raw {
        width,
        height,
        format,
        pixels,
    })
}

// ---- to the wire ----

fn to_payload(payload: Option<Payload>) -> Option<v1::Payload> {
    payload.map(|p| v1::Payload {
        content: Some(match p {
            Payload::Json(text) => v1::payload::Content::Json(text),
            Payload::Raw(bytes) => v1::payload::Content::Raw(bytes),
        }),
    })
}

/// A step in our wire form.
pub fn step_to_v1(step: StepRecord) -> v1::Step {
    v1::Step {
        run_id: step.run_id,
        worker_id: step.worker_id,
        agent_id: step.agent_id,
        episode: step.episode,
        step: step.step,
        reward: step.reward,
        terminated: step.terminated,
        truncated: step.truncated,
        producer_unix_ns: step.producer_unix_ns,
        action: to_payload(step.action),
        observation: to_payload(step.observation),
        frame: None,
        session_token: String::new(),
        worker_seq: step.worker_seq,
    }
}

/// A committed step for our subscribers.
pub fn stored_step_to_v1(row: StepRow) -> v1::StoredStep {
    v1::StoredStep {
        seq: row.seq,
        frame_kind: row.frame_kind.unwrap_or_default(),
        step: Some(step_to_v1(row.record)),
    }
}

/// A committed episode for our subscribers.
pub fn stored_episode_to_v1(row: EpisodeRow) -> v1::StoredEpisode {
    let episode = row.record;
    v1::StoredEpisode {
        seq: row.seq,
        episode: Some(v1::Episode {
            run_id: episode.run_id,
            worker_id: episode.worker_id,
            agent_id: episode.agent_id,
            episode: episode.episode,
            total_reward: episode.total_reward,
            steps: episode.steps,
            terminated: episode.terminated,
            truncated: episode.truncated,
            metadata_json: episode.metadata_json,
            producer_unix_ns: episode.producer_unix_ns,
            session_token: String::new(),
        }),
    }
}

/// A control event on our control stream.
pub fn control_to_v1(run_id: String, event: ControlEvent) -> v1::ControlMessage {
    use v1::control_message::Event;
    v1::ControlMessage {
        run_id,
        event: Some(match event {
            ControlEvent::GrantSteps(n) => Event::GrantSteps(n),
            ControlEvent::Pause => Event::Pause(true),
            ControlEvent::Resume => Event::Resume(true),
            ControlEvent::MaxRateHz(hz) => Event::MaxRateHz(hz),
        }),
    }
}

/// A resolved frame (RGBA) as our wire's raw frame.
pub fn rgba_frame_to_v1(frame: &RgbaFrame) -> v1::Frame {
    v1::Frame {
        content: Some(v1::frame::Content::Raw(v1::RawFrame {
            width: frame.width,
            height: frame.height,
            format: v1::PixelFormat::Rgba8 as i32,
            pixels: frame.rgba.clone(),
        })),
    }
}

fn json_of(payload: Option<Payload>) -> String {
    match payload {
        Some(Payload::Json(text)) => text,
        _ => String::new(),
    }
}

/// A committed step for MOSAIC subscribers: the fields without a column of their own come back
/// from the step's extra JSON.
pub fn stored_step_to_mosaic(row: StepRow) -> gymgui::RunStep {
    let extra: serde_json::Value = row
        .record
        .extra_json
        .as_deref()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default();
    let text = |key: &str| {
        extra
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let number = |key: &str| extra.get(key).and_then(|v| v.as_u64()).unwrap_or_default();
    let step = row.record;
    gymgui::RunStep {
        run_id: step.run_id,
        episode_index: step.episode,
        step_index: step.step,
        action_json: json_of(step.action),
        observation_json: json_of(step.observation),
        reward: step.reward,
        terminated: step.terminated,
        truncated: step.truncated,
        timestamp: (step.producer_unix_ns != 0).then(|| timestamp(step.producer_unix_ns)),
        policy_label: text("policy_label"),
        backend: text("backend"),
        seq_id: row.seq,
        agent_id: step.agent_id,
        render_hint_json: text("render_hint_json"),
        frame_ref: String::new(),
        payload_version: number("payload_version") as u32,
        render_payload_json: text("render_payload_json"),
        episode_seed: number("episode_seed"),
        worker_id: step.worker_id,
    }
}

/// A committed episode for MOSAIC subscribers.
pub fn stored_episode_to_mosaic(row: EpisodeRow) -> gymgui::RunEpisode {
    let episode = row.record;
    gymgui::RunEpisode {
        run_id: episode.run_id,
        episode_index: episode.episode,
        total_reward: episode.total_reward,
        steps: episode.steps,
        terminated: episode.terminated,
        truncated: episode.truncated,
        metadata_json: episode.metadata_json,
        timestamp: (episode.producer_unix_ns != 0).then(|| timestamp(episode.producer_unix_ns)),
        seq_id: row.seq,
        agent_id: episode.agent_id,
        worker_id: episode.worker_id,
    }
}

/// A control event on MOSAIC's control stream.
pub fn control_to_mosaic(run_id: String, event: ControlEvent) -> gymgui::ControlEvent {
    use gymgui::control_event::Event;
    gymgui::ControlEvent {
        run_id,
        event: Some(match event {
            ControlEvent::GrantSteps(n) => Event::GrantSteps(n),
            ControlEvent::Pause => Event::Pause(true),
            ControlEvent::Resume => Event::Resume(true),
            ControlEvent::MaxRateHz(hz) => Event::MaxRateHz(hz),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: repeatable random messages without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }

        fn text(&mut self) -> String {
            match self.below(7) {
                0 => String::new(),
                1 => "x".repeat(self.below(600) as usize),
                2 => "run\u{0}\n\u{7f}".into(),
                3 => "{\"a\": [1, 2".into(),
                4 => "é/ü ✓".repeat(1 + self.below(100) as usize),
                5 => r#"{"rgb": [[[1,2,3]],[[4,5]]]}"#.into(),
                _ => format!("r{}", self.below(1000)),
            }
        }

        fn float(&mut self) -> f64 {
            [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, 1e308, 0.5][self.below(6) as usize]
        }

        fn bytes(&mut self) -> Vec<u8> {
            let n = [0, 1, 3, 12, 4096][self.below(5) as usize];
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    /// Fields an edge error may name (what a worker can put right).
    const FIELDS: &[&str] = &[
        "run_id",
        "worker_id",
        "agent_id",
        "reward",
        "total_reward",
        "action",
        "observation",
        "action_json",
        "observation_json",
        "metadata_json",
        "frame",
        "render_payload_json",
        "policy_label",
        "backend",
        "frame_ref",
        "render_hint_json",
        "extra",
        "timestamp",
        "producer",
        "pixels",
        "width",
        "height",
        "format",
        "codec",
        "steps",
        "episode",
    ];

    fn names_a_field(err: &IngestError) -> bool {
        match err {
            IngestError::Field { field, problem } => {
                !problem.is_empty()
                    && FIELDS
                        .iter()
                        .any(|f| field.contains(f) || f.contains(field))
            }
            _ => false,
        }
    }

    #[test]
    fn random_and_malformed_messages_never_panic_and_errors_name_a_field() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut refused = 0;
        for round in 0..4000 {
            let frame = match rng.below(5) {
                0 => None,
                1 => Some(v1::frame::Content::Raw(v1::RawFrame {
                    width: [0, 1, 3, 16_385, u32::MAX][rng.below(5) as usize],
                    height: [0, 1, 2, 16_384, u32::MAX][rng.below(5) as usize],
                    format: rng.below(7) as i32 - 1,
                    pixels: rng.bytes(),
                })),
                2 => Some(v1::frame::Content::Encoded(v1::EncodedImage {
                    codec: rng.text(),
                    data: rng.bytes(),
                })),
                3 => Some(v1::frame::Content::Reference(rng.text())),
                _ => Some(v1::frame::Content::Raw(v1::RawFrame {
                    width: 2,
                    height: 2,
                    format: 1,
                    pixels: vec![0; 12],
                })),
            };
            let payload = |rng: &mut Rng| match rng.below(3) {
                0 => None,
                1 => Some(v1::Payload {
                    content: Some(v1::payload::Content::Json(rng.text())),
                }),
                _ => Some(v1::Payload {
                    content: Some(v1::payload::Content::Raw(rng.bytes())),
                }),
            };
            let step = v1::Step {
                run_id: rng.text(),
                worker_id: rng.text(),
                agent_id: rng.text(),
                episode: rng.next(),
                step: rng.next(),
                reward: if rng.below(2) == 0 { rng.float() } else { 1.0 },
                action: payload(&mut rng),
                observation: payload(&mut rng),
                frame: frame.map(|content| v1::Frame {
                    content: Some(content),
                }),
                ..Default::default()
            };
            let mosaic = gymgui::RunStep {
                run_id: rng.text(),
                action_json: rng.text(),
                observation_json: rng.text(),
                reward: rng.float(),
                render_payload_json: rng.text(),
                render_hint_json: rng.text(),
                agent_id: rng.text(),
                worker_id: rng.text(),
                ..Default::default()
            };
            let episode = v1::Episode {
                run_id: rng.text(),
                worker_id: rng.text(),
                total_reward: rng.float(),
                metadata_json: rng.text(),
                ..Default::default()
            };
            let payload_text = rng.text();
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut errors = Vec::new();
                if let Err(e) = step_from_v1(step) {
                    errors.push(e);
                }
                if let Err(e) = step_from_mosaic(mosaic, true) {
                    errors.push(e);
                }
                if let Err(e) = episode_from_v1(episode) {
                    errors.push(e);
                }
                if let Err(e) = frame_from_render_payload(&payload_text) {
                    errors.push(e);
                }
                errors
            }));
            let errors = outcome.unwrap_or_else(|_| panic!("round {round}: the edge panicked"));
            for err in &errors {
                assert!(
                    names_a_field(err),
                    "round {round}: the error does not name a field: {err:?}"
                );
                // Errors quote at most a short excerpt of what was sent, never all of it.
                assert!(err.to_string().len() < 1000, "round {round}: {err}");
            }
            refused += errors.len();
        }
        assert!(
            refused > 1000,
            "the messages reached the checks ({refused} refused)"
        );
    }

    #[test]
    fn render_payload_rgb_becomes_a_raw_frame() {
        let json = r#"{"rgb": [[[1,2,3],[4,5,6]],[[7,8,9],[10,11,12]]], "mode": "rgb_array"}"#;
        match frame_from_render_payload(json).expect("frame") {
            FrameImage::Raw {
                width,
                height,
                format,
                pixels,
            } => {
                assert_eq!((width, height, format), (2, 2, RawPixelFormat::Rgb8));
                assert_eq!(pixels, (1..=12).collect::<Vec<u8>>());
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(frame_from_render_payload(r#"{"rgb": [[[1,2,3]],[[1,2]]]}"#)
            .unwrap_err()
            .to_string()
            .contains("pixel (0, 1)"));
        assert!(frame_from_render_payload(r#"{"rgb": [[[1,2,300]]]}"#)
            .unwrap_err()
            .to_string()
            .contains("rgb"));
    }

    #[test]
    fn non_finite_rewards_are_refused_by_name() {
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let step = v1::Step {
                run_id: "r".into(),
                reward: bad,
                ..Default::default()
            };
            let err = step_from_v1(step).unwrap_err().to_string();
            assert!(err.starts_with("reward is"), "{err}");
            let episode = gymgui::RunEpisode {
                run_id: "r".into(),
                total_reward: bad,
                ..Default::default()
            };
            let err = episode_from_mosaic(episode).unwrap_err().to_string();
            assert!(err.starts_with("total_reward is"), "{err}");
        }
        let fine = v1::Step {
            run_id: "r".into(),
            reward: -0.0,
            ..Default::default()
        };
        assert!(step_from_v1(fine).is_ok());
    }

    #[test]
    fn render_payloads_parse_into_packed_pixels_and_bad_shapes_are_named() {
        // A 64x48 RGBA frame whose pixel (x, y) is (x, y, x ^ y, 255).
        let rows: Vec<String> = (0..48)
            .map(|y| {
                let pixels: Vec<String> = (0..64)
                    .map(|x| format!("[{x},{y},{},255]", x ^ y))
                    .collect();
                format!("[{}]", pixels.join(","))
            })
            .collect();
        let json = format!("{{\"rgb\": [{}]}}", rows.join(","));
        match frame_from_render_payload(&json).expect("frame") {
            FrameImage::Raw {
                width,
                height,
                format,
                pixels,
            } => {
                assert_eq!((width, height, format), (64, 48, RawPixelFormat::Rgba8));
                let at = (47 * 64 + 63) * 4;
                assert_eq!(&pixels[at..at + 4], &[63, 47, 63 ^ 47, 255]);
            }
            other => panic!("unexpected {other:?}"),
        }
        for (json, expected) in [
            (
                r#"{"rgb": [[[1,2,3],[4,5,6]],[[7,8,9]]]}"#,
                "row 1 has 1 pixels, row 0 has 2",
            ),
            (r#"{"rgb": [[[1,2,3,4,5]]]}"#, "more than 4 values"),
            (r#"{"rgb": [[[1,2]]]}"#, "pixels of 2 values"),
            (r#"{"rgb": []}"#, "pixels of 0 values"),
            (r#"{"rgb": "not an array"}"#, "rows of pixels"),
        ] {
            let err = frame_from_render_payload(json).unwrap_err().to_string();
            assert!(
                err.starts_with("render_payload_json.rgb") && err.contains(expected),
                "{json}: {err}"
            );
        }
    }

    #[test]
    fn malformed_json_fields_are_named() {
        let step = gymgui::RunStep {
            run_id: "r".into(),
            action_json: "{not json".into(),
            ..Default::default()
        };
        let err = step_from_mosaic(step, false).unwrap_err().to_string();
        assert!(err.starts_with("action_json is not valid JSON"), "{err}");
        let empty = step_from_v1(v1::Step::default()).unwrap_err();
        assert_eq!(empty.to_string(), "run_id is empty");
    }
}
