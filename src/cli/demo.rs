//! `framelane demo`: a test-pattern producer on the fast lane.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

use framelane::demo::{self, DemoConfig};
use framelane_core::fastlane::PixelFormat;

use super::{parse_format, parse_size};

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Run id to publish under.
    #[arg(long, default_value = "demo")]
    run: String,
    /// Frame size, WIDTHxHEIGHT.
    #[arg(long, default_value = "640x480", value_parser = parse_size)]
    size: (u32, u32),
    /// Pixel format: rgb, rgba or bgra.
    #[arg(long, default_value = "rgb", value_parser = parse_format)]
    format: PixelFormat,
    /// Frames per second (0: as fast as possible).
    #[arg(long, default_value_t = 60.0)]
    rate: f64,
    /// Stop after this many frames.
    #[arg(long)]
    frames: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    seconds: Option<f64>,
    /// Slots in the ring.
    #[arg(long, default_value_t = 4)]
    capacity: u32,
    /// Print the achieved rate as JSON when done.
    #[arg(long)]
    report_json: bool,
}

pub fn run_demo(args: DemoArgs) -> anyhow::Result<()> {
    if !(args.rate >= 0.0 && args.rate.is_finite()) {
        bail!(
            "--rate {} must be a number of frames per second, 0 or more",
            args.rate
        );
    }
    let duration = match args.seconds {
        Some(s) if !(s > 0.0 && s.is_finite()) => bail!("--seconds {s} must be a positive number"),
        Some(s) => Some(Duration::from_secs_f64(s)),
        None => None,
    };
    let config = DemoConfig {
        run_id: args.run.clone(),
        width: args.size.0,
        height: args.size.1,
        format: args.format,
        rate_hz: args.rate,
        frames: args.frames,
        duration,
        capacity: args.capacity,
        published: None,
        rate_cap_hz: None,
    };
    let stop = AtomicBool::new(false);
    if !args.report_json {
        eprintln!(
            "framelane demo: publishing run {:?} at {}x{} {} ({}); Ctrl-C to stop",
            args.run,
            args.size.0,
            args.size.1,
            args.format,
            if args.rate > 0.0 {
                format!("{} Hz", args.rate)
            } else {
                "unthrottled".into()
            }
        );
    }
    let report =
        demo::run_demo(&config, &stop).with_context(|| format!("demo run {:?}", args.run))?;
    if args.report_json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}
