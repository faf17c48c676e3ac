//! `framelane rig`: the recording rig headless, and its triggers and status from outside.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

use super::gui::run_gui;
use super::{program_name, stop_signals};
use crate::Cli;

#[derive(Args, Debug, Clone)]
pub struct RigArgs {
    /// The rig's configuration (cameras, recording).
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Print the rig's status this often while it runs (0: never).
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    status_interval_s: u64,
    /// Open the full-screen kiosk (previews, trigger button, clips) instead of running headless.
    #[arg(long)]
    kiosk: bool,
    /// Bearer token of the rig's gRPC API and of the daemon it lists clips with (also
    /// FRAMELANE_TOKEN).
    #[arg(long, env = "FRAMELANE_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    #[command(subcommand)]
    action: Option<RigAction>,
}

#[derive(Subcommand, Debug, Clone)]
enum RigAction {
    /// Trigger a clip on the rig running with this configuration (its control socket), or on
    /// the rig whose gRPC API listens at --addr.
    Trigger {
        /// The rig's gRPC address (recording.grpc_listen), on this or another machine.
        #[arg(long, value_name = "HOST:PORT")]
        addr: Option<std::net::SocketAddr>,
        /// Who triggers, for the rig's log.
        #[arg(long, default_value = "cli")]
        source: String,
    },
    /// Print the running rig's status as JSON (from its control socket, or its gRPC API at
    /// --addr).
    Status {
        #[arg(long, value_name = "HOST:PORT")]
        addr: Option<std::net::SocketAddr>,
    },
}

pub fn run_rig(args: RigArgs) -> anyhow::Result<()> {
    use framelane_rig::{rig, Rig, RigConfig};
    framelane_core::ingest::client::set_client_token(args.token.clone());
    let remote = match &args.action {
        Some(RigAction::Trigger {
            addr: Some(addr),
            source,
        }) => Some((*addr, Some(source.clone()))),
        Some(RigAction::Status { addr: Some(addr) }) => Some((*addr, None)),
        _ => None,
    };
    if let Some((addr, trigger)) = remote {
        return rig_over_grpc(addr, trigger);
    }
    let Some(path) = args.config else {
        bail!("give the rig's configuration with --config FILE (see docs/rig.md), or the rig's gRPC address with --addr");
    };
    let mut config = RigConfig::load(&path)?;
    if let Some(token) = args.token.clone().filter(|t| !t.is_empty()) {
        config.token = Some(token);
    }
    if args.kiosk && args.action.is_none() {
        let mut gui =
            Cli::try_parse_from(["framelane", "--no-demo", "--no-daemon", "--fullscreen"])?.gui;
        gui.rig_config = Some(path);
        return run_gui(gui);
    }
    match args.action {
        Some(RigAction::Trigger { .. }) => {
            println!("{}", rig::send_command(&config.output_dir(), "trigger")?);
            return Ok(());
        }
        Some(RigAction::Status { .. }) => {
            println!("{}", rig::send_command(&config.output_dir(), "status")?);
            return Ok(());
        }
        None => {}
    }
    let (signals, mut term, mut int) = stop_signals()?;
    let output = config.output_dir();
    let rig = Rig::start(config)?;
    println!(
        "framelane rig: {} camera(s) recording into {}; trigger with `{} rig trigger --config {}` or a line on stdin",
        rig.status().cameras.len(),
        output.display(),
        program_name(),
        path.display()
    );
    if let Some(addr) = rig.grpc_addr() {
        println!("framelane rig: gRPC API (framelane.v1.Rig) on {addr}");
    }
    {
        let rig = rig.trigger_handle();
        std::thread::Builder::new()
            .name("rig-stdin".into())
            .spawn(move || {
                use std::io::BufRead;
                for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                    if matches!(line.trim(), "" | "t" | "trigger") && !rig.trigger() {
                        eprintln!("framelane rig: trigger refused: the trigger queue is full");
                    }
                }
            })
            .context("starting the stdin reader")?;
    }
    let interval = args.status_interval_s;
    signals.block_on(async {
        let mut tick = tokio::time::interval(Duration::from_secs(interval.max(1)));
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = tick.tick() => {
                    if interval > 0 {
                        let s = rig.status();
                        let cams: Vec<String> = s.cameras.iter().map(|c| {
                            format!("{} {} ({} captured, {} dropped, {:.1} s ring)", c.name, c.state, c.captured, c.dropped, c.ring_seconds)
                        }).collect();
                        println!("framelane rig: {}; {} clips, {} failed, {} MB free", cams.join("; "), s.clips_written, s.clips_failed, s.disk_free_mb);
                    }
                }
            }
        }
    });
    eprintln!("framelane rig: stopping; writing pending clips");
    rig.stop();
    Ok(())
}

/// `framelane rig trigger|status --addr`: the rig's gRPC API.
fn rig_over_grpc(addr: std::net::SocketAddr, trigger: Option<String>) -> anyhow::Result<()> {
    use framelane_core::ingest::proto::framelane_v1 as v1;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a runtime")?;
    runtime.block_on(async {
        let mut client = framelane_core::ingest::client::connect_rig(addr)
            .await
            .with_context(|| format!("no rig API at {addr}"))?;
        match trigger {
            Some(source) => {
                let reply = client
                    .trigger(v1::TriggerRequest { source })
                    .await
                    .map_err(|s| anyhow::anyhow!("{addr}: trigger refused: {}", s.message()))?;
                println!("ok trigger {}", reply.into_inner().triggers);
            }
            None => {
                let reply = client
                    .get_rig_status(v1::RigStatusRequest {})
                    .await
                    .map_err(|s| anyhow::anyhow!("{addr}: status refused: {}", s.message()))?;
                println!("{}", reply.into_inner().json);
            }
        }
        Ok(())
    })
}
