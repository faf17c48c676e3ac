//! Encoding to packets in memory instead of a file, and writing a chosen run of those packets
//! into a file later by packet copy (no re-encode): what a recording rig's pre-roll ring needs.
//! The encoder is chosen by the same probe as every other (hardware first, then software).

use std::path::{Path, PathBuf};

use ffmpeg_next as ff;

use crate::bus::RawPixelFormat;

use super::convert::Converter;
use super::video_file::open_encoder;
use super::{probe, EncodeError, EncoderSettings};

/// One encoded packet, timestamps in frames (the encoder's time base is 1/fps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPacket {
    pub pts: i64,
    pub dts: i64,
    pub key: bool,
    pub data: Vec<u8>,
}

/// What a clip file needs to know of the stream its packets came from.
#[derive(Clone)]
pub struct StreamFormat {
    parameters: ff::codec::Parameters,
    pub encoder: String,
    pub fps: u32,
    pub width: u32,
    pub height: u32,
}

/// An encoder that hands its packets to the caller.
pub struct PacketEncoder {
    encoder: ff::encoder::video::Encoder,
    converter: Converter,
    frame: ff::frame::Video,
    packet: ff::Packet,
    format: StreamFormat,
}

// SAFETY: the FFmpeg contexts are owned by this value and used through `&mut self` only.
unsafe impl Send for PacketEncoder {}

impl PacketEncoder {
    /// Probes the settings' family (hardware first) and opens the first usable encoder for
    /// `width` x `height` frames of `input` layout.
    pub fn open(
        settings: &EncoderSettings,
        input: RawPixelFormat,
        width: u32,
        height: u32,
    ) -> Result<Self, EncodeError> {
        settings.validate()?;
        if width == 0 || height == 0 || width % 2 != 0 || height % 2 != 0 {
            return Err(EncodeError::FrameSize {
                expected: "even, non-zero width and height (4:2:0 video)".into(),
                got: format!("{width}x{height}"),
            });
        }
        let chosen = probe(settings)?.chosen;
        // MP4 keeps the codec headers out of band: the clip files need them as extradata.
        let encoder = open_encoder(&chosen, width, height, settings, true)?;
        let converter = Converter::new(
            input,
            width,
            height,
            encoder.format(),
            settings.convert_threads,
        )?;
        let frame = ff::frame::Video::new(encoder.format(), width, height);
        let parameters = ff::codec::Parameters::from(&encoder);
        Ok(Self {
            encoder,
            converter,
            frame,
            packet: ff::Packet::empty(),
            format: StreamFormat {
                parameters,
                encoder: chosen,
                fps: settings.fps,
                width,
                height,
            },
        })
    }

    pub fn format(&self) -> &StreamFormat {
        &self.format
    }

    /// Encodes one frame with presentation time `pts` (in frames; increasing, gaps allowed);
    /// `keyframe` forces a keyframe here. Every packet the encoder has ready goes to `out`.
    pub fn encode(
        &mut self,
        pixels: &[u8],
        stride: usize,
        pts: i64,
        keyframe: bool,
        out: &mut impl FnMut(EncodedPacket),
    ) -> Result<(), EncodeError> {
        self.converter.run(pixels, stride, &mut self.frame)?;
        self.frame.set_pts(Some(pts));
        self.frame.set_kind(if keyframe {
            ff::picture::Type::I
        } else {
            ff::picture::Type::None
        });
        self.encoder
            .send_frame(&self.frame)
            .map_err(|e| EncodeError::Codec(format!("{}: {e}", self.format.encoder)))?;
        self.drain(out)
    }

    /// Drains the encoder at the end of the stream.
    pub fn finish(&mut self, out: &mut impl FnMut(EncodedPacket)) -> Result<(), EncodeError> {
        self.encoder
            .send_eof()
            .map_err(|e| EncodeError::Codec(format!("{}: {e}", self.format.encoder)))?;
        self.drain(out)
    }

    fn drain(&mut self, out: &mut impl FnMut(EncodedPacket)) -> Result<(), EncodeError> {
        loop {
            match self.encoder.receive_packet(&mut self.packet) {
                Ok(()) => {
                    let pts = self.packet.pts().unwrap_or(0);
                    out(EncodedPacket {
                        pts,
                        dts: self.packet.dts().unwrap_or(pts),
                        key: self.packet.is_key(),
                        data: self.packet.data().map(<[u8]>::to_vec).unwrap_or_default(),
                    });
                }
                Err(ff::Error::Other { errno }) if errno == libc::EAGAIN => return Ok(()),
                Err(ff::Error::Eof) => return Ok(()),
                Err(e) => {
                    return Err(EncodeError::Codec(format!(
                        "{}: receiving a packet: {e}",
                        self.format.encoder
                    )))
                }
            }
        }
    }
}

/// Writes `packets` (in decode order, the first a keyframe) into a fast-start MP4 at `path` by
/// packet copy, timestamps shifted so the file starts at 0. The file is written under a
/// `.part` name and renamed when complete, so a killed writer never leaves a half clip under
/// the final name.
pub fn write_clip<'a>(
    path: &Path,
    format: &StreamFormat,
    packets: impl IntoIterator<Item = &'a EncodedPacket>,
) -> Result<u64, EncodeError> {
    super::init_ffmpeg();
    let io = |source: std::io::Error| EncodeError::Io {
        path: path.to_owned(),
        source,
    };
    let mut part = path.as_os_str().to_owned();
    part.push(".part");
    let part = PathBuf::from(part);
    let mut output = ff::format::output_as(&part, "mp4")
        .map_err(|e| io(std::io::Error::other(e.to_string())))?;
    let time_base = ff::Rational::new(1, format.fps as i32);
    {
        let mut stream = output
            .add_stream(ff::encoder::find(format.parameters.id()))
            .map_err(|e| EncodeError::Codec(format!("adding the clip stream: {e}")))?;
        stream.set_parameters(format.parameters.clone());
        stream.set_time_base(time_base);
        stream.set_avg_frame_rate(ff::Rational::new(format.fps as i32, 1));
        // SAFETY: the stream was just added to this output and its parameters copied in; the
        // codec tag must be left for the muxer to choose (the encoder's may not suit MP4).
        unsafe {
            (*(*stream.as_mut_ptr()).codecpar).codec_tag = 0;
        }
    }
    // The muxer moves the index to the front itself when the trailer is written.
    let mut options = ff::Dictionary::new();
    options.set("movflags", "faststart");
    output
        .write_header_with(options)
        .map_err(|e| io(std::io::Error::other(format!("writing the header: {e}"))))?;
    let stream_time_base = output.stream(0).map(|s| s.time_base()).unwrap_or(time_base);
    let mut origin: Option<i64> = None;
    let mut written = 0u64;
    for p in packets {
        let shift = *origin.get_or_insert(p.dts.min(p.pts));
        let mut packet = ff::Packet::copy(&p.data);
        packet.set_pts(Some(p.pts - shift));
        packet.set_dts(Some(p.dts - shift));
        packet.set_duration(1);
        if p.key {
            packet.set_flags(ff::packet::Flags::KEY);
        }
        packet.set_stream(0);
        packet.rescale_ts(time_base, stream_time_base);
        packet
            .write_interleaved(&mut output)
            .map_err(|e| io(std::io::Error::other(format!("writing a packet: {e}"))))?;
        written += 1;
    }
    output
        .write_trailer()
        .map_err(|e| io(std::io::Error::other(format!("writing the trailer: {e}"))))?;
    drop(output);
    std::fs::rename(&part, path).map_err(io)?;
    Ok(written)
}
