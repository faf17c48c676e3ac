//! One video file being written: encoder, muxer and converter, fed frames from memory.
//!
//! Crash safety: fragmented MP4 (`frag_keyframe+empty_moov+default_base_moof`) or Matroska,
//! with a fragment cut (a cluster ended) every `fragment_frames` and written through
//! (`flush_packets`), so a killed process leaves a file that plays up to its last complete
//! fragment; `durable_frames` says which frames that is. `finish` drains the encoder and writes the trailer; `finalize_faststart` rewrites
//! a finished fragmented MP4 as a regular MP4 with the index in front.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ff::ffi;
use ffmpeg_next as ff;

use crate::bus::RawPixelFormat;

use super::convert::Converter;
use super::settings::{default_preset, pixel_format, Container, EncoderSettings, Quality};
use super::EncodeError;

/// Opens an encoder by FFmpeg name for frames of `width` x `height`.
pub(crate) fn open_encoder(
    name: &str,
    width: u32,
    height: u32,
    settings: &EncoderSettings,
    global_header: bool,
) -> Result<ff::encoder::video::Encoder, EncodeError> {
    super::init_ffmpeg();
    let codec = ff::encoder::find_by_name(name)
        .ok_or_else(|| EncodeError::Codec(format!("{name} is not in this FFmpeg build")))?;
    let mut context = ff::codec::context::Context::new_with_codec(codec);
    if global_header {
        context.set_flags(ff::codec::Flags::GLOBAL_HEADER);
    }
    let mut video = context
        .encoder()
        .video()
        .map_err(|e| EncodeError::Codec(format!("{name}: {e}")))?;
    video.set_width(width);
    video.set_height(height);
    video.set_format(pixel_format(&settings.pixel_format)?);
    video.set_time_base(ff::Rational::new(1, settings.fps as i32));
    video.set_frame_rate(Some(ff::Rational::new(settings.fps as i32, 1)));
    video.set_gop(settings.gop_frames());
    let mut options = ff::Dictionary::new();
    let preset = settings
        .preset
        .clone()
        .or_else(|| default_preset(name).map(str::to_owned));
    if let Some(preset) = preset {
        match name {
            "libaom-av1" => options.set("cpu-used", &preset),
            "mpeg4" => {}
            _ => options.set("preset", &preset),
        }
    }
    if name == "libaom-av1" {
        options.set("row-mt", "1");
        if settings.preset.is_none() {
            options.set("cpu-used", "8");
            options.set("usage", "realtime");
        }
    }
    match settings.quality {
        Quality::Crf(crf) => match name {
            "h264_nvenc" | "av1_nvenc" => {
                options.set("rc", "vbr");
                options.set("cq", &crf.to_string());
            }
            "mpeg4" => {
                // MPEG-4 part 2 has no CRF: a fixed quantiser scaled from the CRF.
                video.set_flags(ff::codec::Flags::QSCALE);
                let q = (2 + crf / 8).clamp(2, 31) as i32;
                video.set_global_quality(q * ffi::FF_QP2LAMBDA);
            }
            _ => options.set("crf", &crf.to_string()),
        },
        Quality::BitrateKbps(kbps) => video.set_bit_rate(kbps as usize * 1000),
    }
    if settings.threads > 0 {
        options.set("threads", &settings.threads.to_string());
    } else if name != "libsvtav1" {
        options.set("threads", "auto");
    }
    if let Some(tune) = &settings.tune {
        if matches!(name, "libx264" | "libx265" | "h264_nvenc" | "av1_nvenc") {
            options.set("tune", tune);
        }
    }
    if name == "libx264" {
        // Keyframes exactly every GOP so seeks land where the index expects them; a frame
        // marked as I (a rig aligning keyframes across cameras) becomes a real IDR frame.
        options.set("sc_threshold", "0");
        options.set("forced-idr", "1");
    }
    video
        .open_as_with(codec, options)
        .map_err(|e| EncodeError::Codec(format!("{name}: {e}")))
}

/// What a finished file holds.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedFile {
    pub path: PathBuf,
    pub frames: u64,
    pub bytes: u64,
    pub encoder: String,
}

/// A video file being written.
pub struct VideoFileWriter {
    output: ff::format::context::Output,
    encoder: ff::encoder::video::Encoder,
    converter: Converter,
    frame: ff::frame::Video,
    packet: ff::Packet,
    encoder_time_base: ff::Rational,
    stream_time_base: ff::Rational,
    path: PathBuf,
    encoder_name: String,
    /// Frames handed to the encoder; the next frame's number.
    submitted: u64,
    /// Packets written to the file.
    muxed: u64,
    /// Frames 0..n all have their packet written to the muxer (packets leave the encoder late,
    /// by its lookahead, and out of frame order when it uses B-frames).
    muxed_prefix: u64,
    /// Frames above `muxed_prefix` whose packet is written (a B-frame's reference first).
    muxed_ahead: std::collections::BTreeSet<u64>,
    /// Frames 0..n are in the file as of the last fragment cut: what a killed process leaves
    /// playable, and so what the frame index may name.
    durable: u64,
    fragment_frames: u64,
    frames_in_fragment: u64,
}

// SAFETY: the FFmpeg contexts are owned by this value alone and used by one thread at a time
// (`&mut self` on every method); FFmpeg contexts may move between threads under that rule.
unsafe impl Send for VideoFileWriter {}

impl VideoFileWriter {
    /// Creates `path` and writes its header.
    pub fn create(
        path: &Path,
        encoder_name: &str,
        input: RawPixelFormat,
        width: u32,
        height: u32,
        settings: &EncoderSettings,
    ) -> Result<Self, EncodeError> {
        super::init_ffmpeg();
        if width == 0 || height == 0 {
            return Err(EncodeError::FrameSize {
                expected: "a non-zero width and height".into(),
                got: format!("{width}x{height}"),
            });
        }
        // Odd sides and sides under the encoder's smallest are coded padded; the index keeps
        // the picture's own size and replay crops back to it.
        let (coded_w, coded_h) = super::convert::coded_size(encoder_name, width, height);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| EncodeError::Io {
                path: parent.to_owned(),
                source,
            })?;
        }
        let muxer = match settings.container {
            Container::FragmentedMp4 => "mp4",
            Container::Matroska => "matroska",
        };
        let mut output = ff::format::output_as(path, muxer).map_err(|e| EncodeError::Io {
            path: path.to_owned(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let global_header = output
            .format()
            .flags()
            .contains(ff::format::Flags::GLOBAL_HEADER);
        let encoder = open_encoder(encoder_name, coded_w, coded_h, settings, global_header)?;
        let encoder_time_base = ff::Rational::new(1, settings.fps as i32);
        {
            let codec = ff::encoder::find_by_name(encoder_name)
                .ok_or_else(|| EncodeError::Codec(format!("{encoder_name} vanished")))?;
            let mut stream = output
                .add_stream(codec)
                .map_err(|e| EncodeError::Codec(format!("adding the video stream: {e}")))?;
            stream.set_parameters(&encoder);
            stream.set_time_base(encoder_time_base);
            stream.set_avg_frame_rate(ff::Rational::new(settings.fps as i32, 1));
        }
        let gop = settings.gop_frames() as u64;
        // Fragments of a quarter GOP (at least one frame): a crash loses at most that plus the
        // frames inside the encoder's look-ahead.
        let fragment_frames = (gop / 4).max(1);
        let mut options = ff::Dictionary::new();
        options.set("flush_packets", "1");
        match settings.container {
            Container::FragmentedMp4 => {
                options.set(
                    "movflags",
                    "frag_keyframe+empty_moov+default_base_moof+frag_custom",
                );
            }
            Container::Matroska => {
                let ms = fragment_frames * 1000 / settings.fps as u64;
                options.set("cluster_time_limit", &ms.max(1).to_string());
            }
        }
        output
            .write_header_with(options)
            .map_err(|e| EncodeError::Io {
                path: path.to_owned(),
                source: std::io::Error::other(format!("writing the header: {e}")),
            })?;
        let stream_time_base = output
            .stream(0)
            .map(|s| s.time_base())
            .unwrap_or(encoder_time_base);
        let converter = Converter::new(
            input,
            width,
            height,
            encoder.format(),
            settings.convert_threads,
        )?;
        let frame = ff::frame::Video::new(encoder.format(), coded_w, coded_h);
        Ok(Self {
            output,
            encoder,
            converter,
            frame,
            packet: ff::Packet::empty(),
            encoder_time_base,
            stream_time_base,
            path: path.to_owned(),
            encoder_name: encoder_name.to_owned(),
            submitted: 0,
            muxed: 0,
            muxed_prefix: 0,
            muxed_ahead: std::collections::BTreeSet::new(),
            durable: 0,
            fragment_frames,
            frames_in_fragment: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn encoder_name(&self) -> &str {
        &self.encoder_name
    }

    /// Frames handed to the encoder so far (the next frame's number).
    pub fn submitted(&self) -> u64 {
        self.submitted
    }

    /// Frames 0..n are in the file as of the last fragment cut (all of them once finished):
    /// a frame index must not name a frame beyond it, or a crash leaves rows for frames the
    /// file does not hold.
    pub fn durable_frames(&self) -> u64 {
        self.durable
    }

    /// Frames written since the last fragment was cut (0 right after a cut).
    pub fn frames_in_fragment(&self) -> u64 {
        self.frames_in_fragment
    }

    /// Size and layout of the frames this file takes.
    pub fn input(&self) -> (RawPixelFormat, u32, u32) {
        self.converter.input()
    }

    /// Encodes one frame (rows `stride` bytes apart); returns its frame number in the file.
    pub fn write_frame(&mut self, pixels: &[u8], stride: usize) -> Result<u64, EncodeError> {
        self.converter.run(pixels, stride, &mut self.frame)?;
        let (_, width, height) = self.converter.input();
        super::convert::pad_edges(&mut self.frame, width, height);
        let number = self.submitted;
        self.frame.set_pts(Some(number as i64));
        self.encoder
            .send_frame(&self.frame)
            .map_err(|e| EncodeError::Codec(format!("{}: {e}", self.encoder_name)))?;
        self.submitted += 1;
        self.drain()?;
        self.frames_in_fragment += 1;
        if self.frames_in_fragment >= self.fragment_frames {
            self.cut_fragment()?;
        }
        Ok(number)
    }

    /// Writes every packet the encoder has ready.
    fn drain(&mut self) -> Result<(), EncodeError> {
        loop {
            match self.encoder.receive_packet(&mut self.packet) {
                Ok(()) => {
                    // In the encoder's time base a frame's pts is its number.
                    let frame = self.packet.pts().unwrap_or(-1);
                    self.packet.set_stream(0);
                    self.packet
                        .rescale_ts(self.encoder_time_base, self.stream_time_base);
                    self.packet
                        .write_interleaved(&mut self.output)
                        .map_err(|e| EncodeError::Io {
                            path: self.path.clone(),
                            source: std::io::Error::other(format!("writing a packet: {e}")),
                        })?;
                    self.muxed += 1;
                    self.note_muxed(frame);
                }
                Err(ff::Error::Other { errno }) if errno == libc::EAGAIN => return Ok(()),
                Err(ff::Error::Eof) => return Ok(()),
                Err(e) => {
                    return Err(EncodeError::Codec(format!(
                        "{}: receiving a packet: {e}",
                        self.encoder_name
                    )))
                }
            }
        }
    }

    /// Frame `frame` has its packet in the muxer.
    fn note_muxed(&mut self, frame: i64) {
        let Ok(frame) = u64::try_from(frame) else {
            return;
        };
        if frame == self.muxed_prefix {
            self.muxed_prefix += 1;
            while self.muxed_ahead.remove(&self.muxed_prefix) {
                self.muxed_prefix += 1;
            }
        } else if frame > self.muxed_prefix {
            self.muxed_ahead.insert(frame);
        }
    }

    /// Closes the current fragment (MP4) or cluster (Matroska) so what was written so far
    /// survives a crash.
    fn cut_fragment(&mut self) -> Result<(), EncodeError> {
        self.frames_in_fragment = 0;
        if self.muxed > 0 {
            // SAFETY: `self.output` is an open muxer whose header was written; a null packet
            // asks the muxer to flush (cut a fragment, end a cluster; both muxers allow it),
            // which the API documents as valid.
            let ret =
                unsafe { ffi::av_write_frame(self.output.as_mut_ptr(), std::ptr::null_mut()) };
            if ret < 0 {
                return Err(EncodeError::Io {
                    path: self.path.clone(),
                    source: std::io::Error::other(format!(
                        "flushing a fragment: {}",
                        ff::Error::from(ret)
                    )),
                });
            }
        }
        // The muxer writes a cut fragment or ended cluster through to the file
        // (`flush_packets`).
        self.durable = self.muxed_prefix;
        Ok(())
    }

    /// Drains the encoder and writes the trailer.
    pub fn finish(mut self) -> Result<FinishedFile, EncodeError> {
        self.encoder
            .send_eof()
            .map_err(|e| EncodeError::Codec(format!("{}: {e}", self.encoder_name)))?;
        self.drain()?;
        self.output.write_trailer().map_err(|e| EncodeError::Io {
            path: self.path.clone(),
            source: std::io::Error::other(format!("writing the trailer: {e}")),
        })?;
        let bytes = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        Ok(FinishedFile {
            path: self.path.clone(),
            frames: self.submitted,
            bytes,
            encoder: self.encoder_name.clone(),
        })
    }
}

/// Rewrites a finished MP4 as a regular (unfragmented) MP4 with the index in front, through a
/// temporary file renamed over the original, so a crash leaves one or the other intact.
pub fn finalize_faststart(path: &Path) -> Result<(), EncodeError> {
    super::init_ffmpeg();
    let started = Instant::now();
    let io = |what: &str, e: ff::Error| EncodeError::Io {
        path: path.to_owned(),
        source: std::io::Error::other(format!("{what}: {e}")),
    };
    let tmp = path.with_extension("faststart.tmp");
    {
        let mut input = ff::format::input(path).map_err(|e| io("opening for fast start", e))?;
        let mut output = ff::format::output_as(&tmp, "mp4")
            .map_err(|e| io("creating the fast-start copy", e))?;
        let mut time_bases = Vec::new();
        for stream in input.streams() {
            let mut out = output
                .add_stream(ff::encoder::find(ff::codec::Id::None))
                .map_err(|e| io("adding a stream", e))?;
            out.set_parameters(stream.parameters());
            out.set_time_base(stream.time_base());
            // SAFETY: `out` is a stream just added to `output`, whose codec parameters FFmpeg
            // allocated; clearing the tag lets the muxer choose its own for the container.
            unsafe {
                (*out.parameters().as_mut_ptr()).codec_tag = 0;
            }
            time_bases.push(stream.time_base());
        }
        let mut options = ff::Dictionary::new();
        options.set("movflags", "faststart");
        output
            .write_header_with(options)
            .map_err(|e| io("writing the fast-start header", e))?;
        let out_bases: Vec<ff::Rational> = output.streams().map(|s| s.time_base()).collect();
        for (stream, mut packet) in input.packets() {
            let index = stream.index();
            packet.rescale_ts(time_bases[index], out_bases[index]);
            packet.set_position(-1);
            packet
                .write_interleaved(&mut output)
                .map_err(|e| io("copying a packet", e))?;
        }
        output
            .write_trailer()
            .map_err(|e| io("writing the fast-start index", e))?;
    }
    std::fs::rename(&tmp, path).map_err(|source| EncodeError::Io {
        path: path.to_owned(),
        source,
    })?;
    tracing::debug!(path = %path.display(), ms = started.elapsed().as_millis() as u64, "fast-start MP4 written");
    Ok(())
}
