//! `framelane bench encode`: frames/s from memory beside the ffmpeg command-line tool encoding
//! the same raw frames with the same settings; direct-from-memory against writing PNGs first;
//! producer enqueue latency while encoding at 30 fps.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

use crate::bench::pattern::{add_sensor_noise, numbered_frame};
use framelane_core::bus::RawPixelFormat;
use framelane_core::encode::dataset::{encode_dataset, DatasetInput, ProgressStyle};
use framelane_core::encode::{
    CodecFamily, EncoderService, EncoderSettings, JobSpec, Quality, ServiceConfig,
};

use super::{announce, Scratch, Summary};

#[derive(Args, Debug, Clone)]
pub struct EncodeBenchArgs {
    /// Write all figures as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Frames per throughput run.
    #[arg(long, default_value_t = 120)]
    pub frames: u64,
    /// Frame size.
    #[arg(long, default_value = "1280x720")]
    pub size: String,
    /// Seconds of the 30 fps enqueue-latency run.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
}

struct Case {
    label: &'static str,
    family: CodecFamily,
    encoder: &'static str,
    preset: &'static str,
    crf: u32,
}

const CASES: &[Case] = &[
    Case {
        label: "libx264 veryfast crf 23",
        family: CodecFamily::H264,
        encoder: "libx264",
        preset: "veryfast",
        crf: 23,
    },
    Case {
        label: "libx264 ultrafast crf 23",
        family: CodecFamily::H264,
        encoder: "libx264",
        preset: "ultrafast",
        crf: 23,
    },
    Case {
        label: "libsvtav1 preset 10 crf 35",
        family: CodecFamily::Av1,
        encoder: "libsvtav1",
        preset: "10",
        crf: 35,
    },
];

fn settings_for(case: &Case) -> EncoderSettings {
    let mut settings = EncoderSettings::for_family(case.family);
    settings.preset = Some(case.preset.into());
    settings.quality = Quality::Crf(case.crf);
    settings.gop = Some(30);
    settings.faststart_on_finish = false;
    settings
}

/// Encodes `frames` (RGB24) from memory through the service; returns wall seconds.
fn encode_direct(
    frames: &[Vec<u8>],
    width: u32,
    height: u32,
    settings: &EncoderSettings,
    out: &Path,
) -> anyhow::Result<f64> {
    // Starting the service (codec probe, worker thread) counts, as starting the ffmpeg process
    // counts on the other side.
    let started = Instant::now();
    let service = EncoderService::start(ServiceConfig::never_shed(1), None)?;
    let job = service.open_job(JobSpec {
        run_id: "bench".into(),
        worker_id: String::new(),
        agent_id: String::new(),
        episode: 0,
        path: out.to_owned(),
        settings: settings.clone(),
    })?;
    for (i, rgb) in frames.iter().enumerate() {
        service.submit_copy(
            job,
            i as u64,
            width,
            height,
            RawPixelFormat::Rgb8,
            rgb,
            width as usize * 3,
        )?;
    }
    service.finish_job(job)?;
    let stats = service
        .wait_job(job, Duration::from_secs(3600))
        .context("job vanished")?;
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        stats.encoded == frames.len() as u64 && !stats.failed,
        "encode incomplete: {stats:?}"
    );
    service.shutdown();
    Ok(seconds)
}

/// The ffmpeg tool on the same raw frames with the same settings; wall seconds.
fn encode_cli(raw: &Path, width: u32, height: u32, case: &Case, out: &Path) -> anyhow::Result<f64> {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-y", "-hide_banner", "-loglevel", "error", "-f", "rawvideo"])
        .args([
            "-pix_fmt",
            "rgb24",
            "-s",
            &format!("{width}x{height}"),
            "-r",
            "30",
            "-i",
        ])
        .arg(raw)
        .args(["-c:v", case.encoder, "-preset", case.preset])
        .args([
            "-crf",
            &case.crf.to_string(),
            "-g",
            "30",
            "-pix_fmt",
            "yuv420p",
        ]);
    if case.encoder == "libx264" {
        cmd.args(["-sc_threshold", "0"]);
    }
    // The same muxing as framelane's files: a fragment at every keyframe and one every quarter
    // GOP between them (framelane cuts those by hand; the tool by duration), packets flushed.
    let fragment_us = (30 / 4) * 1_000_000 / 30;
    cmd.args([
        "-flush_packets",
        "1",
        "-movflags",
        "frag_keyframe+empty_moov+default_base_moof",
        "-frag_duration",
        &fragment_us.to_string(),
    ])
    .arg(out)
    .env("SVT_LOG", "1");
    let started = Instant::now();
    let status = cmd
        .status()
        .context("running ffmpeg (is the ffmpeg package installed?)")?;
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(status.success(), "ffmpeg failed: {status}");
    Ok(seconds)
}

/// The dataset-recorder route: every frame written as a PNG, then the PNGs encoded.
fn png_first(
    frames: &[Vec<u8>],
    width: u32,
    height: u32,
    settings: &EncoderSettings,
    dir: &Path,
) -> anyhow::Result<f64> {
    let pngs = dir.join("pngs");
    std::fs::create_dir_all(&pngs)?;
    let started = Instant::now();
    for (i, rgb) in frames.iter().enumerate() {
        let file =
            std::io::BufWriter::new(std::fs::File::create(pngs.join(format!("{i:06}.png")))?);
        let mut encoder = png::Encoder::new(file, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.write_header()?.write_image_data(rgb)?;
    }
    encode_dataset(
        &DatasetInput::ImageDir(pngs),
        &dir.join("png-route.mp4"),
        settings,
        ProgressStyle::Quiet,
    )?;
    Ok(started.elapsed().as_secs_f64())
}

/// Producer-side cost while the service encodes at a steady 30 fps: the enqueue itself
/// (`submit` of a filled pooled buffer, as a capture loop that fills the buffer it was given)
/// and copy plus enqueue (`submit_copy` from the producer's own buffer).
fn enqueue_latency(
    frames: &[Vec<u8>],
    width: u32,
    height: u32,
    seconds: f64,
    dir: &Path,
) -> anyhow::Result<EnqueueFigures> {
    let service = EncoderService::start(ServiceConfig::default(), None)?;
    let mut settings = EncoderSettings::for_family(CodecFamily::H264);
    settings.faststart_on_finish = false;
    let job = service.open_job(JobSpec {
        run_id: "bench".into(),
        worker_id: String::new(),
        agent_id: String::new(),
        episode: 0,
        path: dir.join("paced.mp4"),
        settings,
    })?;
    let total = (seconds * 30.0).max(2.0) as u64;
    let period = Duration::from_secs_f64(1.0 / 30.0);
    let started = Instant::now();
    let mut enqueue = Vec::with_capacity(total as usize);
    let mut copy_enqueue = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = started + period * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let rgb = &frames[i as usize % frames.len()];
        let format = RawPixelFormat::Rgb8;
        if i % 2 == 0 {
            let mut buffer = service.buffer_for(job, rgb.len());
            buffer.copy_from_slice(rgb);
            let t = Instant::now();
            service.submit(job, i, width, height, format, buffer)?;
            enqueue.push(t.elapsed().as_secs_f64() * 1000.0);
        } else {
            let t = Instant::now();
            service.submit_copy(job, i, width, height, format, rgb, width as usize * 3)?;
            copy_enqueue.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    service.finish_job(job)?;
    let stats = service
        .wait_job(job, Duration::from_secs(600))
        .context("job vanished")?;
    service.shutdown();
    Ok(EnqueueFigures {
        enqueue: Summary::of(&mut enqueue).context("no samples")?,
        copy_enqueue: Summary::of(&mut copy_enqueue).context("no samples")?,
        encoded: stats.encoded,
        shed: stats.shed,
    })
}

struct EnqueueFigures {
    enqueue: Summary,
    copy_enqueue: Summary,
    encoded: u64,
    shed: u64,
}

pub fn run_encode_bench(args: &EncodeBenchArgs) -> anyhow::Result<()> {
    let (width, height) = framelane_core::encode::dataset::parse_size(&args.size)?;
    let (machine, command) = announce("encode");
    let scratch = Scratch::new("encode")?;
    let frames: Vec<Vec<u8>> = (0..args.frames.max(1))
        .map(|i| {
            let mut rgb = vec![0; (width * height * 3) as usize];
            numbered_frame(i, width, height, &mut rgb);
            rgb
        })
        .collect();
    let raw = scratch.0.join("frames.rgb");
    std::fs::write(&raw, frames.concat())?;

    println!(
        "\n== {} frames of {width}x{height} RGB from memory, GOP 30, yuv420p, fragmented MP4 ==",
        frames.len()
    );
    println!(
        "{:<28} {:>14} {:>14} {:>7}",
        "encoder", "framelane f/s", "ffmpeg CLI f/s", "ratio"
    );
    let mut throughput = Vec::new();
    for case in CASES {
        let settings = settings_for(case);
        let ours = encode_direct(
            &frames,
            width,
            height,
            &settings,
            &scratch.0.join("ours.mp4"),
        )?;
        let theirs = encode_cli(&raw, width, height, case, &scratch.0.join("cli.mp4"))?;
        let (a, b) = (frames.len() as f64 / ours, frames.len() as f64 / theirs);
        let sizes = (
            std::fs::metadata(scratch.0.join("ours.mp4"))?.len(),
            std::fs::metadata(scratch.0.join("cli.mp4"))?.len(),
        );
        println!("{:<28} {a:>14.1} {b:>14.1} {:>6.2}x", case.label, a / b);
        throughput.push(serde_json::json!({"encoder": case.label, "framelane_fps": a, "ffmpeg_cli_fps": b, "ratio": a / b, "framelane_bytes": sizes.0, "ffmpeg_cli_bytes": sizes.1}));
    }

    println!("\n== direct from memory vs PNG files first (libx264 veryfast), wall time ==");
    let settings = settings_for(&CASES[0]);
    let noisy: Vec<Vec<u8>> = frames
        .iter()
        .enumerate()
        .map(|(i, rgb)| {
            let mut rgb = rgb.clone();
            add_sensor_noise(&mut rgb, 8, i as u64 + 1);
            rgb
        })
        .collect();
    let mut png_route = Vec::new();
    for (content, frames) in [
        ("synthetic (flat gradients)", &frames),
        ("camera-like (sensor noise +-8)", &noisy),
    ] {
        let direct = encode_direct(
            frames,
            width,
            height,
            &settings,
            &scratch.0.join("direct.mp4"),
        )?;
        let png = png_first(frames, width, height, &settings, &scratch.0)?;
        println!(
            "{content:<32} direct {direct:>6.2} s, PNG first {png:>6.2} s: direct is {:.1}x faster",
            png / direct
        );
        png_route.push(serde_json::json!({"content": content, "direct_seconds": direct, "png_first_seconds": png, "speedup": png / direct}));
    }

    println!("\n== producer enqueue latency at 30 fps (libx264 veryfast, default queue policy, encoders at nice 10) ==");
    let figures = enqueue_latency(&frames, width, height, args.seconds, &scratch.0)?;
    for (label, s) in [
        ("enqueue (submit a filled buffer)", &figures.enqueue),
        ("copy + enqueue (submit_copy)", &figures.copy_enqueue),
    ] {
        println!(
            "{label:<34} p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms over {} frames",
            s.p50, s.p99, s.max, s.count
        );
    }
    println!("encoded {}, shed {}", figures.encoded, figures.shed);

    if let Some(path) = &args.json {
        let doc = serde_json::json!({
            "machine": machine,
            "command": command,
        "command": command,
            "frames": frames.len(),
            "size": format!("{width}x{height}"),
            "throughput": throughput,
            "direct_vs_png": png_route,
            "enqueue_latency_ms": figures.enqueue,
            "copy_enqueue_latency_ms": figures.copy_enqueue,
            "enqueue_run": {"encoded": figures.encoded, "shed": figures.shed},
        });
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("\nJSON written to {}", path.display());
    }
    Ok(())
}
