//! MOSAIC's JSONL worker lines (../shared/specs/mosaic-jsonl-worker.md) turned into trainer-API
//! messages, a frame for the fast lane and its HUD values. Every line is either forwarded,
//! ignored on purpose (blank, another `type`) or refused with a reason that is counted.

use framelane_core::fastlane::{HudValues, PixelFormat};
use framelane_core::ingest::proto::gymgui;
use serde_json::{Map, Value};

/// Largest frame a line may carry, in pixels (a nested JSON list is about 4 bytes a channel).
pub const MAX_FRAME_PIXELS: usize = 4096 * 4096;

/// The proxy's own identity, filled in where a line says nothing.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub run_id: String,
    pub agent_id: String,
    /// `--worker-id`: when given it wins over the line's.
    pub worker_id: Option<String>,
}

/// A frame from `render_payload.rgb`: tightly packed, RGB8 or RGBA8.
#[derive(Debug, Clone, PartialEq)]
pub struct LineFrame {
    pub width: u32,
    pub height: u32,
    pub format: PixelFormat,
    pub pixels: Vec<u8>,
}

/// What one line is.
#[derive(Debug)]
pub enum Line {
    Step {
        step: Box<gymgui::RunStep>,
        /// The frame, or why the line's frame could not be used (the step still goes).
        frame: Option<Result<LineFrame, String>>,
        /// `total_reward`, else `episode_return`.
        episodic_return: Option<f64>,
        ts_unix_ns: Option<u64>,
    },
    Episode(Box<gymgui::RunEpisode>),
    /// Blank, or a `type` other than step and episode: skipped, as MOSAIC does.
    Ignored(&'static str),
}

/// Why a line was not forwarded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("not valid JSON")]
    NotJson,
    #[error("not a JSON object")]
    NotObject,
    #[error("no \"type\"")]
    NoType,
    #[error("{field}: {problem}")]
    Field {
        field: &'static str,
        problem: &'static str,
    },
}

impl LineError {
    /// A short label to count refusals by.
    pub fn label(&self) -> String {
        match self {
            LineError::NotJson => "not JSON".into(),
            LineError::NotObject => "not an object".into(),
            LineError::NoType => "no type".into(),
            LineError::Field { field, problem } => format!("{field} {problem}"),
        }
    }
}

pub fn parse(line: &str, defaults: &Defaults) -> Result<Line, LineError> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(Line::Ignored("blank"));
    }
    let value: Value = serde_json::from_str(line).map_err(|_| LineError::NotJson)?;
    let Value::Object(object) = value else {
        return Err(LineError::NotObject);
    };
    let kind = object
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("type"))
        .map(|(_, v)| v)
        .ok_or(LineError::NoType)?;
    let kind = kind.as_str().ok_or(LineError::Field {
        field: "type",
        problem: "is not a string",
    })?;
    match kind.to_ascii_lowercase().as_str() {
        "step" => parse_step(&object, defaults),
        "episode" => parse_episode(&object, defaults).map(|e| Line::Episode(Box::new(e))),
        _ => Ok(Line::Ignored("other type")),
    }
}

fn parse_step(o: &Map<String, Value>, d: &Defaults) -> Result<Line, LineError> {
    let render_payload = o.get("render_payload");
    let step = gymgui::RunStep {
        run_id: d.run_id.clone(),
        episode_index: episode_index(o)?,
        step_index: unsigned(first(o, &["step_index", "step"]), "step_index")?.unwrap_or(0),
        action_json: encoded(first(o, &["action_json", "action"])),
        observation_json: encoded(first(o, &["observation_json", "observation"])),
        reward: number(o.get("reward"), "reward")?.unwrap_or(0.0),
        terminated: boolean(o.get("terminated"), "terminated")?,
        truncated: boolean(o.get("truncated"), "truncated")?,
        timestamp: timestamp(o)?,
        policy_label: text(o.get("policy_label")),
        backend: text(o.get("backend")),
        seq_id: 0,
        agent_id: agent(o, d),
        render_hint_json: encoded(first(o, &["render_hint_json", "render"])),
        frame_ref: text(o.get("frame_ref")),
        payload_version: unsigned(o.get("payload_version"), "payload_version")?
            .map_or(0, |v| v.min(u64::from(u32::MAX)) as u32),
        render_payload_json: render_payload.map(encode).unwrap_or_default(),
        episode_seed: unsigned(o.get("episode_seed"), "episode_seed")?.unwrap_or(0),
        worker_id: worker(o, d),
    };
    let frame = render_payload
        .and_then(|p| p.get("rgb").or_else(|| p.get("RGB")))
        .map(frame_of);
    let episodic_return = number(
        first(o, &["total_reward", "episode_return"]),
        "total_reward",
    )?;
    Ok(Line::Step {
        step: Box::new(step),
        frame,
        episodic_return,
        ts_unix_ns: unsigned(o.get("ts_unix_ns"), "ts_unix_ns")?,
    })
}

fn parse_episode(o: &Map<String, Value>, d: &Defaults) -> Result<gymgui::RunEpisode, LineError> {
    Ok(gymgui::RunEpisode {
        run_id: d.run_id.clone(),
        episode_index: episode_index(o)?,
        total_reward: number(first(o, &["total_reward", "reward"]), "total_reward")?.unwrap_or(0.0),
        steps: unsigned(o.get("steps"), "steps")?.unwrap_or(0),
        terminated: boolean(o.get("terminated"), "terminated")?,
        truncated: boolean(o.get("truncated"), "truncated")?,
        metadata_json: first(o, &["metadata_json", "metadata"])
            .map(encode)
            .unwrap_or_else(|| "{}".into()),
        timestamp: timestamp(o)?,
        seq_id: 0,
        agent_id: agent(o, d),
        worker_id: worker(o, d),
    })
}

fn first<'a>(o: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().find_map(|k| o.get(*k).filter(|v| !v.is_null()))
}

/// `metadata(_json).episode_index` (the metadata an object or a JSON string), else `episode`.
fn episode_index(o: &Map<String, Value>) -> Result<u64, LineError> {
    let from_metadata = first(o, &["metadata_json", "metadata"]).and_then(|m| match m {
        Value::String(s) => serde_json::from_str::<Value>(s)
            .ok()
            .and_then(|v| v.get("episode_index").cloned()),
        other => other.get("episode_index").cloned(),
    });
    match from_metadata {
        Some(v) => unsigned(Some(&v), "episode_index"),
        None => unsigned(o.get("episode"), "episode"),
    }
    .map(|v| v.unwrap_or(0))
}

fn unsigned(v: Option<&Value>, field: &'static str) -> Result<Option<u64>, LineError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or(LineError::Field {
            field,
            problem: "is not a whole number of 0 or more",
        }),
    }
}

fn number(v: Option<&Value>, field: &'static str) -> Result<Option<f64>, LineError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or(LineError::Field {
            field,
            problem: "is not a number",
        }),
    }
}

fn boolean(v: Option<&Value>, field: &'static str) -> Result<bool, LineError> {
    match v {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(LineError::Field {
            field,
            problem: "is not true or false",
        }),
    }
}

fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// Strings as they are; anything else as its JSON text.
fn encoded(v: Option<&Value>) -> String {
    v.map(encode).unwrap_or_default()
}

fn encode(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn agent(o: &Map<String, Value>, d: &Defaults) -> String {
    match o.get("agent_id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => d.agent_id.clone(),
    }
}

fn worker(o: &Map<String, Value>, d: &Defaults) -> String {
    d.worker_id
        .clone()
        .unwrap_or_else(|| text(o.get("worker_id")))
}

fn timestamp(o: &Map<String, Value>) -> Result<Option<prost_types::Timestamp>, LineError> {
    Ok(
        unsigned(o.get("ts_unix_ns"), "ts_unix_ns")?.map(|ns| prost_types::Timestamp {
            seconds: (ns / 1_000_000_000) as i64,
            nanos: (ns % 1_000_000_000) as i32,
        }),
    )
}

/// A height x width x channels nested list of 0..=255 into packed pixels (1 channel becomes
/// RGB).
fn frame_of(v: &Value) -> Result<LineFrame, String> {
    let rows = v
        .as_array()
        .ok_or("render_payload.rgb is not a list of rows")?;
    let height = rows.len();
    let width = rows.first().and_then(Value::as_array).map_or(0, Vec::len);
    if height == 0 || width == 0 {
        return Err("render_payload.rgb has no pixels".into());
    }
    if height.saturating_mul(width) > MAX_FRAME_PIXELS {
        return Err(format!(
            "render_payload.rgb is {width}x{height}, more than {MAX_FRAME_PIXELS} pixels"
        ));
    }
    let channels = rows[0][0].as_array().map_or(1, Vec::len);
    let format = match channels {
        1 | 3 => PixelFormat::Rgb8,
        4 => PixelFormat::Rgba8,
        n => return Err(format!("render_payload.rgb has {n} channels (1, 3 or 4)")),
    };
    let mut pixels = Vec::with_capacity(width * height * format.bytes_per_pixel());
    for (y, row) in rows.iter().enumerate() {
        let row = row
            .as_array()
            .filter(|r| r.len() == width)
            .ok_or_else(|| format!("render_payload.rgb row {y} is not {width} pixels long"))?;
        for (x, pixel) in row.iter().enumerate() {
            let bad =
                || format!("render_payload.rgb pixel ({x}, {y}) is not {channels} values 0..255");
            let values: Vec<u8> = match pixel {
                Value::Array(c) if c.len() == channels => c
                    .iter()
                    .map(|v| v.as_u64().filter(|v| *v <= 255).map(|v| v as u8))
                    .collect::<Option<_>>()
                    .ok_or_else(bad)?,
                Value::Number(n) if channels == 1 => {
                    vec![n.as_u64().filter(|v| *v <= 255).ok_or_else(bad)? as u8]
                }
                _ => return Err(bad()),
            };
            if channels == 1 {
                pixels.extend_from_slice(&[values[0]; 3]);
            } else {
                pixels.extend_from_slice(&values);
            }
        }
    }
    Ok(LineFrame {
        width: width as u32,
        height: height as u32,
        format,
        pixels,
    })
}

/// HUD values of a step line.
pub fn hud_of(
    step: &gymgui::RunStep,
    episodic_return: Option<f64>,
    steps_per_second: f64,
) -> HudValues {
    HudValues {
        episode: step.episode_index,
        step: step.step_index,
        reward: step.reward,
        episodic_return: episodic_return.unwrap_or(0.0),
        steps_per_second,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Defaults {
        Defaults {
            run_id: "r".into(),
            agent_id: "agent_1".into(),
            worker_id: None,
        }
    }

    #[test]
    fn a_step_line_maps_field_by_field_with_the_first_key_found_winning() {
        let line = r#"{"type":"Step","metadata":"{\"episode_index\":4}","episode":9,"step":7,"action":[1,2],"observation_json":"obs","reward":0.5,"terminated":true,"render":{"mode":"rgb"},"ts_unix_ns":1500000000123,"total_reward":3.25,"worker_id":"w9","episode_seed":11}"#;
        let Line::Step {
            step,
            frame,
            episodic_return,
            ts_unix_ns,
        } = parse(line, &defaults()).expect("parses")
        else {
            panic!("a step");
        };
        assert_eq!((step.episode_index, step.step_index), (4, 7));
        assert_eq!(step.action_json, "[1,2]");
        assert_eq!(step.observation_json, "obs");
        assert_eq!(
            (step.reward, step.terminated, step.truncated),
            (0.5, true, false)
        );
        assert_eq!(step.render_hint_json, r#"{"mode":"rgb"}"#);
        assert_eq!(step.agent_id, "agent_1");
        assert_eq!(step.worker_id, "w9");
        assert_eq!(step.episode_seed, 11);
        let ts = step.timestamp.expect("timestamp");
        assert_eq!((ts.seconds, ts.nanos), (1500, 123));
        assert_eq!(episodic_return, Some(3.25));
        assert_eq!(ts_unix_ns, Some(1_500_000_000_123));
        assert!(frame.is_none());
    }

    #[test]
    fn the_proxys_worker_id_wins_and_an_episode_defaults_its_metadata() {
        let mut d = defaults();
        d.worker_id = Some("proxy-w".into());
        let Line::Episode(e) = parse(
            r#"{"type":"episode","reward":2.0,"steps":30,"worker_id":"x"}"#,
            &d,
        )
        .expect("parses") else {
            panic!("an episode");
        };
        assert_eq!((e.total_reward, e.steps), (2.0, 30));
        assert_eq!(e.metadata_json, "{}");
        assert_eq!(e.worker_id, "proxy-w");
    }

    #[test]
    fn a_frame_is_read_from_render_payload_rgb_and_gray_becomes_rgb() {
        let line = r#"{"type":"step","render_payload":{"rgb":[[[1,2,3],[4,5,6]]]}}"#;
        let Line::Step { frame, step, .. } = parse(line, &defaults()).expect("parses") else {
            panic!("a step");
        };
        let frame = frame.expect("a frame").expect("valid");
        assert_eq!(
            (frame.width, frame.height, frame.format),
            (2, 1, PixelFormat::Rgb8)
        );
        assert_eq!(frame.pixels, vec![1, 2, 3, 4, 5, 6]);
        assert!(step.render_payload_json.contains("rgb"));
        let gray = r#"{"type":"step","render_payload":{"RGB":[[7,8]]}}"#;
        let Line::Step { frame, .. } = parse(gray, &defaults()).expect("parses") else {
            panic!("a step");
        };
        assert_eq!(
            frame.expect("frame").expect("valid").pixels,
            vec![7, 7, 7, 8, 8, 8]
        );
    }

    #[test]
    fn bad_lines_are_refused_with_a_reason_and_bad_frames_leave_the_step() {
        let d = defaults();
        assert_eq!(parse("not json", &d).unwrap_err(), LineError::NotJson);
        assert_eq!(parse("[1]", &d).unwrap_err(), LineError::NotObject);
        assert_eq!(parse(r#"{"step":1}"#, &d).unwrap_err(), LineError::NoType);
        assert!(matches!(
            parse(r#"{"type":"step","reward":"high"}"#, &d),
            Err(LineError::Field {
                field: "reward",
                ..
            })
        ));
        assert!(matches!(
            parse(r#"{"type":"step","step":-1}"#, &d),
            Err(LineError::Field {
                field: "step_index",
                ..
            })
        ));
        assert!(matches!(parse("   ", &d), Ok(Line::Ignored("blank"))));
        assert!(matches!(
            parse(r#"{"type":"log","msg":"hi"}"#, &d),
            Ok(Line::Ignored(_))
        ));
        let ragged = r#"{"type":"step","render_payload":{"rgb":[[[1,2,3]],[[1,2,3],[4,5,6]]]}}"#;
        let Line::Step { frame, .. } = parse(ragged, &d).expect("the step is fine") else {
            panic!("a step");
        };
        assert!(frame.expect("a frame").unwrap_err().contains("row 1"));
        let big = r#"{"type":"step","render_payload":{"rgb":[[[1,2,3,4,5]]]}}"#;
        let Line::Step { frame, .. } = parse(big, &d).expect("the step is fine") else {
            panic!("a step");
        };
        assert!(frame.expect("a frame").unwrap_err().contains("5 channels"));
    }
}
