//! Encoder settings: codec family, quality, preset, GOP, pixel format, threads, container.
//! Defaults are stated here and in docs/encode.md.

use ff::ffi;
use ffmpeg_next as ff;

use super::EncodeError;

/// The codec family a file is written in; the concrete encoder is probed (see `probe`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodecFamily {
    H264,
    Av1,
}

impl CodecFamily {
    pub fn label(self) -> &'static str {
        match self {
            CodecFamily::H264 => "h264",
            CodecFamily::Av1 => "av1",
        }
    }

    pub fn parse(text: &str) -> Result<Self, EncodeError> {
        match text {
            "h264" | "H264" | "avc" => Ok(CodecFamily::H264),
            "av1" | "AV1" => Ok(CodecFamily::Av1),
            other => Err(EncodeError::Settings(format!(
                "codec family {other:?}: expected h264 or av1"
            ))),
        }
    }
}

/// Rate control.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Quality {
    /// Constant rate factor (x264: 0-51, SVT-AV1 and libaom: 0-63).
    Crf(u32),
    /// Target bitrate in kbit/s.
    BitrateKbps(u32),
}

/// Container of the files being written. Both keep everything up to the last complete fragment
/// (cluster) when the writing process dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// MP4 with `frag_keyframe+empty_moov+default_base_moof`: a fragment per GOP.
    FragmentedMp4,
    Matroska,
}

impl Container {
    pub fn extension(self) -> &'static str {
        match self {
            Container::FragmentedMp4 => "mp4",
            Container::Matroska => "mkv",
        }
    }

    pub fn parse(text: &str) -> Result<Self, EncodeError> {
        match text {
            "mp4" => Ok(Container::FragmentedMp4),
            "mkv" | "matroska" => Ok(Container::Matroska),
            other => Err(EncodeError::Settings(format!(
                "container {other:?}: expected mp4 or mkv"
            ))),
        }
    }
}

/// How one video file is encoded.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderSettings {
    pub family: CodecFamily,
    pub quality: Quality,
    /// Encoder preset by the encoder's own names ("veryfast" for x264, "10" for SVT-AV1, the
    /// cpu-used level for libaom, "p4" for NVENC). None: the family default (`default_preset`).
    pub preset: Option<String>,
    /// Encoder tuning by the encoder's own names (x264: "zerolatency" encodes each frame as
    /// it comes, without look-ahead; "film", "animation", ...). None: the encoder's default.
    /// Applied to x264, x265 and NVENC; other encoders have no such option.
    pub tune: Option<String>,
    /// Frames per second of the file's timeline.
    pub fps: u32,
    /// Frames between keyframes (at most). None: one second (`fps`).
    pub gop: Option<u32>,
    /// Encoder pixel format (FFmpeg name); yuv420p plays everywhere.
    pub pixel_format: String,
    /// Encoder threads; 0 lets the encoder decide (x264 and SVT use all cores).
    pub threads: u32,
    /// Threads for the RGB to YUV conversion (bands of rows, one swscale context each).
    pub convert_threads: u32,
    pub container: Container,
    /// Rewrite finished files as regular MP4 with the index in front (fast start).
    pub faststart_on_finish: bool,
    /// Encoders never to use (by FFmpeg name), e.g. to force the next in the probe order.
    pub disabled_encoders: Vec<String>,
}

impl EncoderSettings {
    /// Defaults for a family: CRF 23 (H.264) or 35 (AV1), one-second GOP at 30 fps, yuv420p,
    /// fragmented MP4, fast-start on finish.
    pub fn for_family(family: CodecFamily) -> Self {
        Self {
            family,
            quality: Quality::Crf(match family {
                CodecFamily::H264 => 23,
                CodecFamily::Av1 => 35,
            }),
            preset: None,
            tune: None,
            fps: 30,
            gop: None,
            pixel_format: "yuv420p".into(),
            threads: 0,
            convert_threads: 1,
            container: Container::FragmentedMp4,
            faststart_on_finish: true,
            disabled_encoders: Vec::new(),
        }
    }

    /// Frames between keyframes.
    pub fn gop_frames(&self) -> u32 {
        self.gop.unwrap_or(self.fps).max(1)
    }

    /// Checks ranges; the error names the setting.
    pub fn validate(&self) -> Result<(), EncodeError> {
        if self.fps == 0 || self.fps > 1000 {
            return Err(EncodeError::Settings(format!(
                "fps {}: expected 1 to 1000",
                self.fps
            )));
        }
        if let Quality::Crf(crf) = self.quality {
            let max = match self.family {
                CodecFamily::H264 => 51,
                CodecFamily::Av1 => 63,
            };
            if crf > max {
                return Err(EncodeError::Settings(format!(
                    "crf {crf}: expected 0 to {max} for {}",
                    self.family.label()
                )));
            }
        }
        if let Quality::BitrateKbps(0) = self.quality {
            return Err(EncodeError::Settings("bitrate 0: expected > 0".into()));
        }
        if self.convert_threads == 0 || self.convert_threads > 64 {
            return Err(EncodeError::Settings(format!(
                "convert threads {}: expected 1 to 64",
                self.convert_threads
            )));
        }
        pixel_format(&self.pixel_format)?;
        Ok(())
    }
}

/// The preset an encoder gets when the settings name none.
pub fn default_preset(encoder: &str) -> Option<&'static str> {
    match encoder {
        "libx264" => Some("veryfast"),
        "libsvtav1" => Some("10"),
        "h264_nvenc" | "av1_nvenc" => Some("p4"),
        _ => None,
    }
}

/// The FFmpeg pixel format of an encoder pixel-format name (`yuv420p`, ...).
pub(crate) fn pixel_format(name: &str) -> Result<ff::format::Pixel, EncodeError> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| EncodeError::Settings(format!("pixel format {name:?}")))?;
    // SAFETY: `c` is a NUL-terminated string that outlives the call; av_get_pix_fmt only reads it.
    let pixel = ff::format::Pixel::from(unsafe { ffi::av_get_pix_fmt(c.as_ptr()) });
    if pixel == ff::format::Pixel::None {
        return Err(EncodeError::Settings(format!(
            "pixel format {name:?}: not known to FFmpeg"
        )));
    }
    Ok(pixel)
}
