//! `framelane serve` (the headless daemon) and `framelane health` (ask a running one).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

use framelane_core::daemon;

use super::stop_signals;

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
    /// Storage profile file overriding the built-ins (default: ~/.config/framelane/profiles.yaml if present).
    #[arg(long, value_name = "FILE")]
    profiles: Option<PathBuf>,
    /// Commit after this many rows ...
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    batch_rows: u32,
    /// ... or after this many milliseconds, whichever comes first.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(0..=60_000))]
    flush_ms: u32,
    /// Most steps waiting for the store writer; publishers wait beyond it.
    #[arg(long, default_value_t = 16_384, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    queue: u32,
    /// The daemon's memory ceiling: queued steps and frames and open video encoders draw from
    /// it; past it frames are shed or their workers wait, by profile (e.g. 512MiB, 2GiB; at
    /// least 16MiB).
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = parse_memory_limit)]
    memory_limit: u64,
    /// Seconds one frame (or a file's finish) may keep a video encoder worker busy before the
    /// worker counts as stalled: producers stop waiting for it, its runs move to other workers
    /// and Health lists it. Raise it for very large frames on slow machines.
    #[arg(long, value_name = "SECONDS", default_value_t = framelane_core::encode::DEFAULT_STALL_LIMIT.as_secs() as u32, value_parser = clap::value_parser!(u32).range(1..=86_400))]
    encoder_stall_limit: u32,
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
    config.profiles_file = args.profiles.clone().or_else(daemon::default_profiles_file);
    config.batch = framelane_core::store::BatchPolicy {
        max_rows: args.batch_rows as usize,
        max_delay: Duration::from_millis(u64::from(args.flush_ms)),
    };
    config.store_queue = args.queue as usize;
    config.memory_limit = args.memory_limit;
    config.encode.stall_limit = Duration::from_secs(u64::from(args.encoder_stall_limit));
    config.metrics = args.metrics;
    Ok(config)
}

/// `--memory-limit`: a size with a binary unit, at least the budget's minimum.
fn parse_memory_limit(text: &str) -> Result<u64, String> {
    let bytes = framelane_core::budget::parse_size(text)?;
    let min = framelane_core::budget::MIN_LIMIT;
    if bytes < min {
        return Err(format!(
            "{text:?} is below the smallest ceiling, {} MiB",
            min >> 20
        ));
    }
    Ok(bytes)
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn config(flags: &[&str]) -> Result<daemon::DaemonConfig, String> {
        let parsed = Serve::try_parse_from(std::iter::once("serve").chain(flags.iter().copied()))
            .map_err(|e| e.to_string())?;
        daemon_config(&parsed.args).map_err(|e| e.to_string())
    }

    #[test]
    fn the_encoder_stall_limit_reaches_the_encoders_and_bad_values_name_the_flag() {
        let default = config(&[]).expect("defaults");
        assert_eq!(
            default.encode.stall_limit,
            framelane_core::encode::DEFAULT_STALL_LIMIT
        );
        let raised = config(&["--encoder-stall-limit", "45"]).expect("45 s");
        assert_eq!(raised.encode.stall_limit, Duration::from_secs(45));
        for bad in ["0", "-3", "ten", "86401"] {
            let flag = format!("--encoder-stall-limit={bad}");
            let err = config(&[flag.as_str()]).expect_err(bad);
            assert!(err.contains("--encoder-stall-limit"), "{bad}: {err}");
        }
    }
}
