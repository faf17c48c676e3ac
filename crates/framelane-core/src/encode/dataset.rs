//! `framelane encode`: a folder of PNG/JPEG frames, or raw frames on stdin (or in a file), into
//! one video through the encoder service, with a progress line (rate, ETA). Dataset mode never
//! sheds: the producer waits for the encoder as long as it takes.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::bus::RawPixelFormat;
use crate::media::{decode_image, DecodedImage, ImageCodec};

use super::service::{EncodeEvent, EncoderService, JobSpec, ServiceConfig};
use super::settings::EncoderSettings;
use super::EncodeError;

/// Where the frames come from.
#[derive(Debug, Clone)]
pub enum DatasetInput {
    /// PNG/JPEG files of a folder, in file-name order.
    ImageDir(PathBuf),
    /// Raw frames of one size and layout from a file, or stdin for `None`.
    Raw {
        path: Option<PathBuf>,
        width: u32,
        height: u32,
        format: RawPixelFormat,
    },
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressStyle {
    /// A line redrawn on stderr (when stderr is a terminal, else a line every few seconds).
    Bar,
    /// One JSON object per line on stdout for every frame handed over and at the end.
    Json,
    Quiet,
}

/// What an encode run achieved.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetOutcome {
    pub frames: u64,
    pub encoder: String,
    pub bytes: u64,
    pub seconds: f64,
}

/// Parses "WIDTHxHEIGHT".
pub fn parse_size(text: &str) -> Result<(u32, u32), EncodeError> {
    let bad = || {
        EncodeError::Settings(format!(
            "size {text:?}: expected WIDTHxHEIGHT, e.g. 1280x720"
        ))
    };
    let (w, h) = text.split_once(['x', 'X']).ok_or_else(bad)?;
    let w: u32 = w.trim().parse().map_err(|_| bad())?;
    let h: u32 = h.trim().parse().map_err(|_| bad())?;
    if w == 0 || h == 0 || w > 16384 || h > 16384 {
        return Err(bad());
    }
    Ok((w, h))
}

/// Parses a raw pixel layout by FFmpeg-style or framelane name.
pub fn parse_pixel_format(text: &str) -> Result<RawPixelFormat, EncodeError> {
    match text {
        "rgb24" | "rgb8" => Ok(RawPixelFormat::Rgb8),
        "rgba" | "rgba8" => Ok(RawPixelFormat::Rgba8),
        "bgra" | "bgra8" => Ok(RawPixelFormat::Bgra8),
        "gray" | "gray8" => Ok(RawPixelFormat::Gray8),
        other => Err(EncodeError::Settings(format!(
            "pixel format {other:?}: expected rgb24, rgba, bgra or gray"
        ))),
    }
}

/// The image files of a folder in name order (PNG and JPEG by extension).
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>, EncodeError> {
    let entries = std::fs::read_dir(dir).map_err(|source| EncodeError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|source| EncodeError::Io {
                path: dir.to_owned(),
                source,
            })?
            .path();
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if ImageCodec::from_name(&ext).is_some() {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(EncodeError::Input {
            path: dir.to_owned(),
            reason: "no .png, .jpg or .jpeg files".into(),
        });
    }
    Ok(files)
}

fn read_image(path: &Path) -> Result<DecodedImage, EncodeError> {
    let bytes = std::fs::read(path).map_err(|source| EncodeError::Io {
        path: path.to_owned(),
        source,
    })?;
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let codec = ImageCodec::from_name(&ext).unwrap_or(ImageCodec::Jpeg);
    decode_image(codec, &bytes).map_err(|reason| EncodeError::Input {
        path: path.to_owned(),
        reason: format!("unreadable frame: {reason}"),
    })
}

struct Progress {
    style: ProgressStyle,
    total: Option<u64>,
    started: Instant,
    last_draw: Instant,
    tty: bool,
}

impl Progress {
    fn new(style: ProgressStyle, total: Option<u64>) -> Self {
        let now = Instant::now();
        Self {
            style,
            total,
            started: now,
            last_draw: now - Duration::from_secs(10),
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn update(&mut self, submitted: u64, encoded: u64, done: bool) {
        match self.style {
            ProgressStyle::Quiet => {}
            ProgressStyle::Json => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(
                    out,
                    "{{\"submitted\":{submitted},\"encoded\":{encoded},\"done\":{done}}}"
                );
                let _ = out.flush();
            }
            ProgressStyle::Bar => {
                let every = if self.tty {
                    Duration::from_millis(100)
                } else {
                    Duration::from_secs(5)
                };
                if !done && self.last_draw.elapsed() < every {
                    return;
                }
                self.last_draw = Instant::now();
                let seconds = self.started.elapsed().as_secs_f64().max(1e-6);
                let rate = encoded as f64 / seconds;
                let line = match self.total {
                    Some(total) if total > 0 => {
                        let filled = (encoded * 30 / total) as usize;
                        let eta = if rate > 0.0 {
                            format!("{:.0} s", (total.saturating_sub(encoded)) as f64 / rate)
                        } else {
                            "?".into()
                        };
                        format!(
                            "[{}{}] {encoded}/{total} frames  {rate:.1} frames/s  ETA {eta}",
                            "#".repeat(filled.min(30)),
                            "-".repeat(30 - filled.min(30))
                        )
                    }
                    _ => format!("{encoded} frames  {rate:.1} frames/s"),
                };
                let mut err = std::io::stderr().lock();
                if self.tty {
                    let _ = write!(err, "\r{line}\x1b[K");
                    if done {
                        let _ = writeln!(err);
                    }
                } else {
                    let _ = writeln!(err, "{line}");
                }
            }
        }
    }
}

/// Encodes the input into `output`.
pub fn encode_dataset(
    input: &DatasetInput,
    output: &Path,
    settings: &EncoderSettings,
    style: ProgressStyle,
) -> Result<DatasetOutcome, EncodeError> {
    settings.validate()?;
    let started = Instant::now();
    let service = EncoderService::start(ServiceConfig::never_shed(1), None)?;
    let mut events = service.events();
    let job = service.open_job(JobSpec {
        run_id: String::new(),
        worker_id: String::new(),
        agent_id: String::new(),
        episode: 0,
        path: output.to_owned(),
        settings: settings.clone(),
    })?;
    let fed = match input {
        DatasetInput::ImageDir(dir) => feed_images(&service, job, dir, style),
        DatasetInput::Raw {
            path,
            width,
            height,
            format,
        } => feed_raw(
            &service,
            job,
            path.as_deref(),
            *width,
            *height,
            *format,
            style,
        ),
    };
    // Whatever was accepted is finished into a playable file, even after a bad frame.
    service.finish_job(job)?;
    let stats = service.wait_job(job, Duration::from_secs(365 * 24 * 3600));
    let mut encoder = String::new();
    let mut failure = None;
    while let Ok(event) = events.try_recv() {
        match event {
            EncodeEvent::Started { encoder: name, .. } => encoder = name,
            EncodeEvent::Failed {
                error, kept_input, ..
            } => {
                failure = Some(match kept_input {
                    Some(kept) => format!("{error} (frames kept in {})", kept.display()),
                    None => error,
                })
            }
            _ => {}
        }
    }
    service.shutdown();
    let frames = fed?;
    if let Some(error) = failure {
        return Err(EncodeError::Codec(error));
    }
    let encoded = stats.map(|s| s.encoded).unwrap_or(0);
    Ok(DatasetOutcome {
        frames: encoded.min(frames),
        encoder,
        bytes: std::fs::metadata(output).map(|m| m.len()).unwrap_or(0),
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn feed_images(
    service: &EncoderService,
    job: u64,
    dir: &Path,
    style: ProgressStyle,
) -> Result<u64, EncodeError> {
    let files = list_images(dir)?;
    let mut progress = Progress::new(style, Some(files.len() as u64));
    let mut first: Option<(u32, u32, RawPixelFormat, PathBuf)> = None;
    for (n, path) in files.iter().enumerate() {
        let image = read_image(path)?;
        match &first {
            None => first = Some((image.width, image.height, image.format, path.clone())),
            Some((w, h, format, first_path)) => {
                if (image.width, image.height) != (*w, *h) {
                    return Err(EncodeError::Input {
                        path: path.clone(),
                        reason: format!(
                            "frame is {}x{}, but {} is {w}x{h}; every frame must have the same size",
                            image.width,
                            image.height,
                            first_path.display()
                        ),
                    });
                }
                if image.format != *format {
                    return Err(EncodeError::Input {
                        path: path.clone(),
                        reason: format!(
                            "frame is {}, but {} is {}; every frame must have the same pixel layout",
                            image.format.label(),
                            first_path.display(),
                            format.label()
                        ),
                    });
                }
            }
        }
        service.submit(
            job,
            n as u64,
            image.width,
            image.height,
            image.format,
            image.pixels,
        )?;
        let encoded = service.job_stats(job).map(|s| s.encoded).unwrap_or(0);
        progress.update(n as u64 + 1, encoded, false);
    }
    let total = files.len() as u64;
    progress.update(total, total, true);
    Ok(total)
}

fn feed_raw(
    service: &EncoderService,
    job: u64,
    path: Option<&Path>,
    width: u32,
    height: u32,
    format: RawPixelFormat,
    style: ProgressStyle,
) -> Result<u64, EncodeError> {
    let frame_bytes = width as usize * height as usize * format.bytes_per_pixel();
    let source_name = path
        .map(|p| p.to_owned())
        .unwrap_or_else(|| PathBuf::from("<stdin>"));
    let mut reader: Box<dyn Read> = match path {
        Some(p) => Box::new(std::io::BufReader::with_capacity(
            1 << 20,
            std::fs::File::open(p).map_err(|source| EncodeError::Io {
                path: p.to_owned(),
                source,
            })?,
        )),
        None => Box::new(std::io::stdin().lock()),
    };
    let total = path
        .and_then(|p| std::fs::metadata(p).ok())
        .map(|m| m.len() / frame_bytes as u64);
    let mut progress = Progress::new(style, total);
    let mut n = 0u64;
    loop {
        let mut buffer = service.buffer_for(job, frame_bytes);
        let got = read_full(&mut reader, &mut buffer).map_err(|source| EncodeError::Io {
            path: source_name.clone(),
            source,
        })?;
        if got == 0 {
            break;
        }
        if got < frame_bytes {
            progress.update(n, n, true);
            return Err(EncodeError::Input {
                path: source_name,
                reason: format!(
                    "input ended inside frame {n}: {got} of {frame_bytes} bytes ({width}x{height} {}); the {n} whole frames before it were encoded",
                    format.label()
                ),
            });
        }
        service.submit(job, n, width, height, format, buffer)?;
        n += 1;
        let encoded = service.job_stats(job).map(|s| s.encoded).unwrap_or(0);
        progress.update(n, encoded, false);
    }
    progress.update(n, n, true);
    Ok(n)
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
