//! `framelane encode`: frames from a folder or stdin into a video file.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct EncodeArgs {
    /// Folder of PNG/JPEG frames, encoded in file-name order.
    #[arg(long, value_name = "DIR", conflicts_with = "raw")]
    input_dir: Option<PathBuf>,
    /// Raw frames of this size (WIDTHxHEIGHT), read from --raw-file or stdin.
    #[arg(long, value_name = "WxH")]
    raw: Option<String>,
    /// Layout of raw frames: rgb24, rgba, bgra or gray.
    #[arg(long, default_value = "rgb24", requires = "raw")]
    raw_format: String,
    /// File of raw frames (default: stdin).
    #[arg(long, value_name = "FILE", requires = "raw")]
    raw_file: Option<PathBuf>,
    /// Video file to write.
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// Codec family: h264 or av1 (the encoder is probed: hardware first).
    #[arg(long, default_value = "h264")]
    codec: String,
    /// Constant rate factor (default 23 for h264, 35 for av1).
    #[arg(long, conflicts_with = "bitrate_kbps")]
    crf: Option<u32>,
    /// Target bitrate in kbit/s instead of a CRF.
    #[arg(long)]
    bitrate_kbps: Option<u32>,
    /// Encoder preset (default: veryfast for x264, 10 for SVT-AV1, p4 for NVENC).
    #[arg(long)]
    preset: Option<String>,
    /// Encoder tuning (x264: zerolatency, film, animation, ...).
    #[arg(long)]
    tune: Option<String>,
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// Frames between keyframes (default: one second).
    #[arg(long)]
    gop: Option<u32>,
    /// Encoder pixel format.
    #[arg(long, default_value = "yuv420p")]
    pixel_format: String,
    /// Encoder threads (0: the encoder decides).
    #[arg(long, default_value_t = 0)]
    threads: u32,
    /// Threads for the RGB to YUV conversion.
    #[arg(long, default_value_t = 1)]
    convert_threads: u32,
    /// Container while writing: mp4 (fragmented) or mkv.
    #[arg(long, default_value = "mp4")]
    container: String,
    /// Keep the fragmented MP4 instead of rewriting it as a fast-start MP4 at the end.
    #[arg(long)]
    no_faststart: bool,
    /// Never use this encoder (FFmpeg name); may be given several times.
    #[arg(long = "disable-encoder", value_name = "NAME")]
    disable_encoder: Vec<String>,
    /// Progress as one JSON object per line on stdout instead of a bar on stderr.
    #[arg(long, conflicts_with = "quiet")]
    progress_json: bool,
    #[arg(long)]
    quiet: bool,
}

pub fn run_encode(args: EncodeArgs) -> anyhow::Result<()> {
    use framelane_core::encode::dataset::{self, DatasetInput, ProgressStyle};
    use framelane_core::encode::{CodecFamily, Container, EncoderSettings, Quality};
    let family = CodecFamily::parse(&args.codec)?;
    let mut settings = EncoderSettings::for_family(family);
    if let Some(crf) = args.crf {
        settings.quality = Quality::Crf(crf);
    }
    if let Some(kbps) = args.bitrate_kbps {
        settings.quality = Quality::BitrateKbps(kbps);
    }
    settings.preset = args.preset;
    settings.tune = args.tune;
    settings.fps = args.fps;
    settings.gop = args.gop;
    settings.pixel_format = args.pixel_format;
    settings.threads = args.threads;
    settings.convert_threads = args.convert_threads;
    settings.container = Container::parse(&args.container)?;
    settings.faststart_on_finish = !args.no_faststart;
    settings.disabled_encoders = args.disable_encoder;
    let input = match (args.input_dir, args.raw) {
        (Some(dir), None) => DatasetInput::ImageDir(dir),
        (None, Some(size)) => {
            let (width, height) = dataset::parse_size(&size)?;
            DatasetInput::Raw {
                path: args.raw_file,
                width,
                height,
                format: dataset::parse_pixel_format(&args.raw_format)?,
            }
        }
        _ => bail!("give the frames with --input-dir DIR or --raw WIDTHxHEIGHT"),
    };
    let style = if args.progress_json {
        ProgressStyle::Json
    } else if args.quiet {
        ProgressStyle::Quiet
    } else {
        ProgressStyle::Bar
    };
    let outcome = dataset::encode_dataset(&input, &args.output, &settings, style)?;
    if style != ProgressStyle::Json {
        eprintln!(
            "{}: {} frames with {} in {:.1} s ({:.1} frames/s), {} bytes",
            args.output.display(),
            outcome.frames,
            outcome.encoder,
            outcome.seconds,
            outcome.frames as f64 / outcome.seconds.max(1e-9),
            outcome.bytes
        );
    }
    Ok(())
}
