//! `framelane analyze`: episode analysis of a video.

use std::path::PathBuf;

use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct AnalyzeArgs {
    /// Episode id written into the manifests.
    #[arg(long, value_name = "ID")]
    ep_id: String,
    /// The episode video (any container and codec FFmpeg reads).
    #[arg(long, value_name = "FILE")]
    video: PathBuf,
    /// Output folder for the manifests, frames and crops.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Analyse every STRIDE-th frame.
    #[arg(long, default_value_t = 6)]
    stride: u64,
    /// Signature distance (0..1] at which a frame starts a new scene.
    #[arg(long, default_value_t = 0.35)]
    scene_threshold: f64,
    /// Shortest scene in frames: a cut closer than this to the previous one is ignored.
    #[arg(long, default_value_t = 6)]
    min_scene_len: u64,
    /// Frames after a tracker reset before a cut may reset it again (cuts are still recorded).
    #[arg(long, default_value_t = 24)]
    scene_cut_cooldown: u64,
    /// Frames after a cut analysed densely, whatever the stride.
    #[arg(long, default_value_t = 3)]
    scene_warmup: u64,
    /// A track unseen for more than this many frames ends.
    #[arg(long, default_value_t = 30)]
    max_gap: u64,
    /// ... or for more than this many seconds (takes precedence over --max-gap).
    #[arg(long, value_name = "SECONDS")]
    max_gap_sec: Option<f64>,
    /// Tracks with fewer detections are dropped on export.
    #[arg(long, default_value_t = 3)]
    min_track_length: u32,
    /// Most crops saved per track.
    #[arg(long, default_value_t = 8)]
    track_sample_limit: u32,
    /// Save every analysed frame as JPEG under OUT/frames.
    #[arg(long)]
    save_frames: bool,
    /// Save face crops (up to --track-sample-limit per track) under OUT/crops.
    #[arg(long)]
    save_crops: bool,
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u8).range(1..=100))]
    jpeg_quality: u8,
    /// Where the DNN detector runs: auto (CUDA when OpenCV has it) or cpu.
    #[arg(long, default_value = "auto")]
    device: String,
    /// A YuNet ONNX face model: the DNN detector instead of the Haar cascade.
    #[arg(long, value_name = "FILE")]
    face_model: Option<PathBuf>,
    /// Haar cascade file (default: opencv-data's frontal face cascade).
    #[arg(long, value_name = "FILE")]
    cascade: Option<PathBuf>,
    /// Width frames are scaled to for detection (0: full size).
    #[arg(long, default_value_t = 640)]
    detect_width: u32,
    /// Start over even when OUT holds an interrupted run of the same video.
    #[arg(long)]
    restart: bool,
    /// Progress as one JSON object per line on stdout instead of a bar on stderr.
    #[arg(long, conflicts_with = "quiet")]
    progress_json: bool,
    #[arg(long)]
    quiet: bool,
}

pub fn run_analyze(args: AnalyzeArgs) -> anyhow::Result<()> {
    use framelane_analyze::progress::ProgressStyle;
    use framelane_analyze::{AnalyzeOptions, Device};
    let mut options = AnalyzeOptions::new(args.ep_id, args.video, args.out);
    options.stride = args.stride;
    options.scene_threshold = args.scene_threshold;
    options.min_scene_len = args.min_scene_len;
    options.scene_cut_cooldown = args.scene_cut_cooldown;
    options.scene_warmup = args.scene_warmup;
    options.max_gap = args.max_gap;
    options.max_gap_sec = args.max_gap_sec;
    options.min_track_length = args.min_track_length;
    options.track_sample_limit = args.track_sample_limit;
    options.save_frames = args.save_frames;
    options.save_crops = args.save_crops;
    options.jpeg_quality = args.jpeg_quality;
    options.device = Device::parse(&args.device)?;
    options.face_model = args.face_model;
    options.cascade = args.cascade;
    options.detect_width = args.detect_width;
    options.restart = args.restart;
    let style = if args.progress_json {
        ProgressStyle::Json
    } else if args.quiet {
        ProgressStyle::Quiet
    } else {
        ProgressStyle::Bar
    };
    let summary = framelane_analyze::analyze(&options, style)?;
    if style != ProgressStyle::Json {
        eprintln!(
            "{}: {} frames decoded, {} analysed, {} scene cuts ({} tracker resets), {} faces in {} tracks; {:.1} s; manifests in {}",
            summary.video,
            summary.frames_decoded,
            summary.frames.analysed,
            summary.scene_cuts,
            summary.scene.resets,
            summary.frames.detections,
            summary.tracks_kept,
            summary.stages.total_ms / 1e3,
            options.out.display()
        );
    }
    Ok(())
}
