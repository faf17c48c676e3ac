//! `framelane serve` (the headless daemon) and `framelane health` (ask a running one).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

use framelane_core::daemon;

use super::stop_signals;
use super::tuning::DaemonTuning;

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Where the database and kept frames live (default: the platform's data directory).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on; anything but loopback needs --token and TLS (or
    /// --allow-plaintext).
    #[arg(long, default_value = "127.0.0.1:50551")]
    listen: std::net::SocketAddr,
    /// Bearer token clients must send (also FRAMELANE_TOKEN).
    #[arg(long, env = "FRAMELANE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Serve TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Listen beyond loopback without TLS (a trusted network only: the token travels in clear).
    #[arg(long, conflicts_with = "tls_cert")]
    allow_plaintext: bool,
    #[command(flatten)]
    tuning: DaemonTuning,
    /// Serve the pipeline figures for Prometheus at http://ADDR/metrics (e.g. 127.0.0.1:9551).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
}

fn daemon_config(args: &ServeArgs) -> anyhow::Result<daemon::DaemonConfig> {
    let mut config = daemon::DaemonConfig::new(
        args.data_dir
            .clone()
            .unwrap_or_else(daemon::default_data_dir),
    );
    config.listen = args.listen;
    config.token = args.token.clone().filter(|t| !t.is_empty());
    config.tls = args.tls_cert.clone().zip(args.tls_key.clone());
    config.allow_plaintext = args.allow_plaintext;
    args.tuning.apply(&mut config);
    config.metrics = args.metrics;
    Ok(config)
}

pub fn run_serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = daemon_config(&args)?;
    let data_dir = config.data_dir.clone();
    // Signal handlers first: once the address is printed, SIGTERM must mean a clean stop.
    let (signals, mut term, mut int) = stop_signals()?;
    let daemon = daemon::Daemon::start(config)?;
    // One line, so scripts that read the address read everything they need at once.
    let metrics = daemon
        .metrics_addr()
        .map(|m| format!("; metrics at http://{m}/metrics"))
        .unwrap_or_default();
    println!(
        "framelane serve: listening on {} (data in {}{metrics})",
        daemon.local_addr(),
        data_dir.display()
    );
    signals.block_on(async {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    });
    eprintln!("framelane serve: stopping; committing what is in flight");
    daemon.shutdown();
    Ok(())
}

#[derive(Args, Debug)]
pub struct HealthArgs {
    /// The daemon.
    #[arg(long, default_value = "127.0.0.1:50551", value_name = "HOST:PORT")]
    target: std::net::SocketAddr,
    /// Bearer token for the daemon (also FRAMELANE_TOKEN).
    #[arg(long, env = "FRAMELANE_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

pub fn run_health(args: HealthArgs) -> anyhow::Result<()> {
    framelane_core::ingest::client::set_client_token(args.token.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a runtime")?;
    let reply = runtime.block_on(async {
        let mut client = tokio::time::timeout(
            Duration::from_secs(10),
            framelane_core::ingest::client::connect(args.target),
        )
        .await
        .map_err(|_| anyhow::anyhow!("daemon at {} not reachable within 10 s", args.target))?
        .with_context(|| format!("daemon at {} not reachable", args.target))?;
        client
            .health(framelane_core::ingest::proto::framelane_v1::HealthRequest {})
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| anyhow::anyhow!("Health at {}: {}", args.target, s.message()))
    })?;
    let metrics: std::collections::BTreeMap<_, _> = reply.metrics.iter().collect();
    println!(
        "{}",
        serde_json::json!({
            "healthy": reply.healthy,
            "problems": reply.problems,
            "pid": reply.pid,
            "listen_address": reply.listen_address,
            "started_unix_ns": reply.started_unix_ns,
            "queue_depth": reply.queue_depth,
            "queue_capacity": reply.queue_capacity,
            "metrics": metrics,
        })
    );
    if !reply.healthy {
        bail!(
            "the daemon at {} says it is not healthy: {}",
            args.target,
            reply.problems.join("; ")
        );
    }
    Ok(())
}
