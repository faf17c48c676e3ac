//! Encoder choice: the candidates of a family are tried in order and the first that opens is
//! used. One log line names the choice and why each earlier candidate was passed over.

use ffmpeg_next as ff;

use super::settings::{CodecFamily, EncoderSettings};
use super::video_file::open_encoder;
use super::EncodeError;

/// Candidates in the order they are tried: hardware first, then software.
pub fn candidates(family: CodecFamily) -> &'static [&'static str] {
    match family {
        CodecFamily::H264 => &[
            "h264_nvenc",
            "h264_vaapi",
            "h264_qsv",
            "libx264",
            "libopenh264",
            "mpeg4",
        ],
        CodecFamily::Av1 => &["av1_nvenc", "libsvtav1", "libaom-av1"],
    }
}

/// Encoders that only take frames already on the GPU; framelane uploads software frames only.
fn needs_hardware_frames(name: &str) -> bool {
    name.ends_with("_vaapi") || name.ends_with("_qsv")
}

/// The outcome of probing a family.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeReport {
    pub family: CodecFamily,
    pub chosen: String,
    /// (encoder, why it was not used), in probe order.
    pub passed_over: Vec<(String, String)>,
}

impl ProbeReport {
    /// The one-line summary that is logged.
    pub fn summary(&self) -> String {
        let mut line = format!("{} encoder: {}", self.family.label(), self.chosen);
        if !self.passed_over.is_empty() {
            let reasons: Vec<String> = self
                .passed_over
                .iter()
                .map(|(name, why)| format!("{name}: {why}"))
                .collect();
            line.push_str(&format!(" (passed over {})", reasons.join("; ")));
        }
        line
    }
}

/// Tries the family's candidates with these settings (a small test open of each) and returns
/// the first that works. Errors when none does, listing every reason.
pub fn probe(settings: &EncoderSettings) -> Result<ProbeReport, EncodeError> {
    super::init_ffmpeg();
    let mut passed_over = Vec::new();
    for &name in candidates(settings.family) {
        match try_candidate(name, settings) {
            Ok(()) => {
                let report = ProbeReport {
                    family: settings.family,
                    chosen: name.to_owned(),
                    passed_over,
                };
                tracing::info!("{}", report.summary());
                return Ok(report);
            }
            Err(why) => passed_over.push((name.to_owned(), why)),
        }
    }
    let reasons: Vec<String> = passed_over
        .iter()
        .map(|(name, why)| format!("{name}: {why}"))
        .collect();
    Err(EncodeError::NoEncoder {
        family: settings.family.label(),
        reasons: reasons.join("; "),
    })
}

fn try_candidate(name: &str, settings: &EncoderSettings) -> Result<(), String> {
    if settings.disabled_encoders.iter().any(|d| d == name) {
        return Err("disabled by configuration".into());
    }
    if ff::encoder::find_by_name(name).is_none() {
        return Err("not in this FFmpeg build".into());
    }
    if needs_hardware_frames(name) {
        return Err("takes GPU frames only (hardware upload is not implemented)".into());
    }
    // A small open proves the encoder (and its hardware, for NVENC) is usable. FFmpeg's own
    // complaints while probing are kept quiet: the reason is in the summary line.
    let level = ff::util::log::get_level().ok();
    ff::util::log::set_level(ff::util::log::Level::Fatal);
    let opened = open_encoder(name, 320, 240, settings, false);
    if let Some(level) = level {
        ff::util::log::set_level(level);
    }
    let mut encoder = opened.map_err(|err| format!("does not open: {err}"))?;
    // One frame through and the end of the stream: proves encoding works, and some encoders
    // (SVT-AV1 1.4) hang when freed, or ended, before they saw a frame.
    let mut frame = ff::frame::Video::new(encoder.format(), 320, 240);
    for plane in 0..frame.planes() {
        frame.data_mut(plane).fill(128);
    }
    frame.set_pts(Some(0));
    encoder
        .send_frame(&frame)
        .map_err(|err| format!("does not encode: {err}"))?;
    encoder
        .send_eof()
        .map_err(|err| format!("does not finish: {err}"))?;
    let mut packet = ff::Packet::empty();
    let mut packets = 0;
    while encoder.receive_packet(&mut packet).is_ok() {
        packets += 1;
    }
    if packets == 0 {
        return Err("produced no packet for a test frame".into());
    }
    Ok(())
}
