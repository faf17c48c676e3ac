//! `framelane fastlane`: list, inspect and tidy fast-lane segments.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;

use framelane_core::fastlane;

#[derive(Subcommand, Debug)]
pub enum FastlaneCommand {
    /// List fast-lane segments (framelane and MOSAIC) with size, age and writer state.
    Ls {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one run's segment header, writer state and newest frame.
    Inspect {
        /// Run id (or a segment path under /dev/shm).
        run: String,
        /// Print the header, writer state and newest frame's HUD as one JSON object (HUD floats
        /// also as their bit patterns, for exact comparisons).
        #[arg(long)]
        json: bool,
        /// Write the newest frame's pixels, rows tightly packed, to this file.
        #[arg(long, value_name = "FILE")]
        dump_frame: Option<PathBuf>,
    },
    /// Remove segments whose writer is gone.
    Clean,
}

pub fn run_fastlane(cmd: FastlaneCommand) -> anyhow::Result<()> {
    match cmd {
        FastlaneCommand::Ls { json } => {
            let runs = fastlane::list_segments()?;
            if json {
                println!("{}", fastlane::segments_json(&runs));
                return Ok(());
            }
            if runs.is_empty() {
                println!(
                    "no fast-lane segments in {}",
                    fastlane::shm::segment_dir().display()
                );
                return Ok(());
            }
            println!(
                "{:<32} {:<9} {:>14} {:>10} {:>8} {:>10}  state",
                "run", "kind", "frame", "size", "age", "frames"
            );
            for run in &runs {
                let frame = run
                    .geometry
                    .map(|g| format!("{}x{} {}", g.width, g.height, g.format))
                    .unwrap_or_else(|| "-".into());
                println!(
                    "{:<32} {:<9} {:>14} {:>10} {:>7.0}s {:>10}  {}",
                    run.run_id,
                    run.kind.label(),
                    frame,
                    format!("{:.1} MiB", run.bytes as f64 / 1_048_576.0),
                    run.age.as_secs_f64(),
                    run.frames_published,
                    run.state_label()
                );
            }
            Ok(())
        }
        FastlaneCommand::Inspect {
            run,
            json,
            dump_frame,
        } => inspect(&run, json, dump_frame.as_deref()),
        FastlaneCommand::Clean => {
            let removed = fastlane::clean_stale_segments()?;
            if removed.is_empty() {
                println!("no stale segments");
            }
            for path in removed {
                println!("removed {}", path.display());
            }
            Ok(())
        }
    }
}

fn inspect(run: &str, json: bool, dump_frame: Option<&std::path::Path>) -> anyhow::Result<()> {
    let mut reader = if run.starts_with('/') {
        fastlane::FastLaneReader::open(std::path::Path::new(run))?
    } else {
        fastlane::FastLaneReader::attach(run)?
    };
    let g = reader.geometry();
    let mut buf = vec![0u8; g.frame_bytes()];
    let newest = reader.read_newest(&mut buf, g.width as usize * g.format.bytes_per_pixel())?;
    if let (Some(path), fastlane::ReadOutcome::Frame(_)) = (dump_frame, &newest) {
        std::fs::write(path, &buf).with_context(|| format!("writing {}", path.display()))?;
    }
    if json {
        let frame = match &newest {
            fastlane::ReadOutcome::Frame(meta) => serde_json::json!({
                "frame_number": meta.frame_number,
                "episode": meta.hud.episode,
                "step": meta.hud.step,
                "reward": meta.hud.reward,
                "reward_bits": meta.hud.reward.to_bits().to_string(),
                "episodic_return": meta.hud.episodic_return,
                "episodic_return_bits": meta.hud.episodic_return.to_bits().to_string(),
                "steps_per_second": meta.hud.steps_per_second,
            }),
            _ => serde_json::Value::Null,
        };
        let report = serde_json::json!({
            "run_id": reader.run_id(),
            "segment": reader.path().display().to_string(),
            "kind": reader.kind().label(),
            "width": g.width,
            "height": g.height,
            "format": g.format.name(),
            "row_stride": g.row_stride,
            "published": reader.head(),
            "woken_by_writer": reader.woken_by_writer(),
            "writer": format!("{:?}", reader.writer_status()),
            "newest": frame,
        });
        println!("{report}");
        return Ok(());
    }
    println!("run:        {}", reader.run_id());
    println!(
        "segment:    {} ({})",
        reader.path().display(),
        reader.kind().label()
    );
    println!(
        "frame:      {}x{} {} (row stride {} bytes)",
        g.width, g.height, g.format, g.row_stride
    );
    println!("published:  {} frames", reader.head());
    println!("writer:     {:?}", reader.writer_status());
    println!(
        "wake-ups:   {}",
        if reader.woken_by_writer() {
            "the writer wakes readers"
        } else {
            "readers poll"
        }
    );
    match newest {
        fastlane::ReadOutcome::Frame(meta) => {
            println!(
                "newest:     frame {} episode {} step {}",
                meta.frame_number, meta.hud.episode, meta.hud.step
            );
            println!(
                "hud:        reward {:.4} return {:.3} producer {:.1} steps/s",
                meta.hud.reward, meta.hud.episodic_return, meta.hud.steps_per_second
            );
            if let Some(ns) = meta.producer_mono_ns {
                println!(
                    "age:        {:.2} ms",
                    fastlane::shm::monotonic_ns().saturating_sub(ns) as f64 / 1e6
                );
            }
        }
        other => println!("newest:     {other:?}"),
    }
    Ok(())
}
