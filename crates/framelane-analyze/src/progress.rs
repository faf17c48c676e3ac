//! Progress of a walk: a bar with frames/s and ETA on stderr, or one JSON object per line on
//! stdout for tools (`--progress-json`).

use std::io::Write;
use std::time::{Duration, Instant};

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    pub frame: u64,
    /// Frames expected in all (declared by the container or estimated from its duration; 0:
    /// unknown).
    pub total: u64,
    pub analysed: u64,
    pub detections: u64,
    pub cuts: u64,
    pub fps: f64,
    pub eta_s: Option<f64>,
    pub elapsed_s: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressStyle {
    Bar,
    Json,
    Quiet,
}

/// Rate-limited reporter (every 250 ms, and once at the end).
pub struct ProgressReporter {
    style: ProgressStyle,
    started: Instant,
    last: Option<Instant>,
    /// Frame the walk started at (a resume), so the rate counts only frames decoded now.
    first_frame: u64,
}

impl ProgressReporter {
    pub fn new(style: ProgressStyle, first_frame: u64) -> Self {
        Self {
            style,
            started: Instant::now(),
            last: None,
            first_frame,
        }
    }

    pub fn due(&self) -> bool {
        self.last
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(250))
    }

    pub fn make(
        &self,
        frame: u64,
        total: u64,
        analysed: u64,
        detections: u64,
        cuts: u64,
    ) -> Progress {
        let elapsed_s = self.started.elapsed().as_secs_f64();
        let done_now = frame.saturating_sub(self.first_frame);
        let fps = if elapsed_s > 0.0 {
            done_now as f64 / elapsed_s
        } else {
            0.0
        };
        let eta_s = (total > frame && fps > 0.0).then(|| (total - frame) as f64 / fps);
        Progress {
            frame,
            total,
            analysed,
            detections,
            cuts,
            fps,
            eta_s,
            elapsed_s,
        }
    }

    pub fn report(&mut self, p: &Progress, last: bool) {
        self.last = Some(Instant::now());
        match self.style {
            ProgressStyle::Quiet => {}
            ProgressStyle::Json => {
                if let Ok(line) = serde_json::to_string(p) {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{line}");
                    let _ = out.flush();
                }
            }
            ProgressStyle::Bar => {
                let mut err = std::io::stderr().lock();
                let (bar, pct) = if p.total > 0 {
                    let pct = (p.frame as f64 / p.total as f64).min(1.0);
                    let filled = (pct * 30.0).round() as usize;
                    (
                        format!("[{}{}]", "#".repeat(filled), "-".repeat(30 - filled)),
                        format!("{:5.1}%", pct * 100.0),
                    )
                } else {
                    (String::new(), String::new())
                };
                let eta = p.eta_s.map(format_eta).unwrap_or_else(|| "--".into());
                let _ = write!(
                    err,
                    "\r{bar} {pct} frame {}/{} analysed {} faces {} cuts {} {:.0} fps ETA {eta}   ",
                    p.frame, p.total, p.analysed, p.detections, p.cuts, p.fps
                );
                if last {
                    let _ = writeln!(err);
                }
                let _ = err.flush();
            }
        }
    }
}

fn format_eta(seconds: f64) -> String {
    let s = seconds.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}
