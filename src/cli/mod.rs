//! The `framelane` command's subcommands, one module each; `main.rs` parses and dispatches.

pub mod analyze;
pub mod demo;
pub mod encode;
pub mod fastlane;
pub mod gui;
pub mod proxy;
pub mod rig;
pub mod serve;
pub mod tuning;

use anyhow::Context;

use framelane_core::fastlane::PixelFormat;

pub fn parse_size(text: &str) -> Result<(u32, u32), String> {
    let (w, h) = text
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("{text:?} is not WIDTHxHEIGHT (for example 640x480)"))?;
    let parse = |v: &str, what: &str| {
        v.trim()
            .parse::<u32>()
            .ok()
            .filter(|n| *n > 0 && *n <= 16_384)
            .ok_or_else(|| {
                format!("{what} {v:?} in {text:?} must be a whole number from 1 to 16384")
            })
    };
    Ok((parse(w, "width")?, parse(h, "height")?))
}

pub fn parse_format(text: &str) -> Result<PixelFormat, String> {
    PixelFormat::parse(text)
        .ok_or_else(|| format!("{text:?} is not a pixel format (rgb, rgba or bgra)"))
}

type Signal = tokio::signal::unix::Signal;

/// A small runtime listening for SIGTERM and SIGINT (installed before anything starts, so
/// either means a clean stop from then on).
pub fn stop_signals() -> anyhow::Result<(tokio::runtime::Runtime, Signal, Signal)> {
    let signals = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal listener")?;
    let (term, int) = signals.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        Ok::<_, std::io::Error>((
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        ))
    })?;
    Ok((signals, term, int))
}

/// How the user started this program (for hints that name a command they can run).
pub fn program_name() -> String {
    std::env::args()
        .next()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "framelane".into())
}
