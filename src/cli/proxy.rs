//! `framelane proxy`: a MOSAIC JSONL worker's steps, episodes and frames forwarded to a
//! daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use framelane_core::fastlane;

#[derive(Args, Debug)]
pub struct ProxyArgs {
    /// The daemon (MOSAIC's flag).
    #[arg(long, default_value = "127.0.0.1:50551", value_name = "HOST:PORT")]
    target: std::net::SocketAddr,
    /// Run the worker's lines belong to.
    #[arg(long, value_name = "RUN")]
    run_id: String,
    /// Agent of lines that name none.
    #[arg(long, default_value = "agent_1", value_name = "ID")]
    agent_id: String,
    /// Worker id sent with every line (default: the line's; registers as proxy-<pid>).
    #[arg(long, value_name = "ID")]
    worker_id: Option<String>,
    /// Bearer token for the daemon (also FRAMELANE_TOKEN).
    #[arg(long, env = "FRAMELANE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Do not publish the lines' frames to the fast lane.
    #[arg(long)]
    no_fast_lane: bool,
    /// Also write the final report (what was forwarded, what was not and why) as JSON here.
    #[arg(long, value_name = "FILE")]
    report_json: Option<PathBuf>,
    /// The worker's command and its arguments, after --.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<std::ffi::OsString>,
}

/// Runs the proxy; the exit code is the worker's (1 when the proxy itself could not run it).
pub fn run_proxy(args: ProxyArgs) -> ExitCode {
    let outcome =
        (|| -> anyhow::Result<(std::process::ExitStatus, framelane::proxy::ProxyReport)> {
            fastlane::validate_run_id(&args.run_id).context("--run-id")?;
            framelane_core::ingest::client::set_client_token(args.token.clone());
            let config = framelane::proxy::ProxyConfig {
                target: args.target,
                run_id: args.run_id.clone(),
                agent_id: args.agent_id.clone(),
                worker_id: args.worker_id.clone(),
                fast_lane: !args.no_fast_lane,
                command: args.command.clone(),
            };
            let (status, report) = framelane::proxy::run(&config)?;
            if let Some(path) = &args.report_json {
                std::fs::write(path, serde_json::to_string_pretty(&report)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok((status, report))
        })();
    match outcome {
        Ok((status, report)) => {
            eprintln!("framelane proxy: worker {status}; {}", report.summary());
            let code = framelane::proxy::exit_code(status).unwrap_or(1);
            ExitCode::from(code.clamp(0, 255) as u8)
        }
        Err(err) => {
            eprintln!("framelane proxy: {err:#}");
            ExitCode::FAILURE
        }
    }
}
