//! Benchmarks that print figures and can write them as JSON (`framelane bench ...`). Figures,
//! not pass/fail: docs/benchmarks.md records them with the command and the machine.

mod analyze_bench;
mod crash_bench;
mod encode_bench;
mod fastlane_bench;
mod ingest_bench;
mod memory_bench;
pub mod pattern;
mod replay_bench;
mod rig_bench;

pub use analyze_bench::{run_analyze_bench, AnalyzeBenchArgs};
pub use crash_bench::{run_crash_bench, CrashBenchArgs};
pub use encode_bench::{run_encode_bench, EncodeBenchArgs};
pub use fastlane_bench::{run_fastlane_bench, FastlaneBenchArgs};
pub use ingest_bench::{run_ingest_bench, IngestBenchArgs};
pub use memory_bench::{run_memory_bench, MemoryBenchArgs};
pub use replay_bench::{run_replay_bench, ReplayBenchArgs};
pub use rig_bench::{run_rig_bench, RigBenchArgs};

/// Percentile summary of a set of samples, in the unit they were given in.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Summary {
    pub count: usize,
    pub p50: f64,
    pub p99: f64,
    pub mean: f64,
    pub max: f64,
}

impl Summary {
    /// Summarises samples (sorted in place). None when there are none.
    pub fn of(samples: &mut [f64]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_by(f64::total_cmp);
        let at = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
        Some(Self {
            count: samples.len(),
            p50: at(0.5),
            p99: at(0.99),
            mean: samples.iter().sum::<f64>() / samples.len() as f64,
            max: samples[samples.len() - 1],
        })
    }
}

/// Resident memory of process `pid` in MiB (0 when it cannot be read).
pub(crate) fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Starts `framelane serve` on a free loopback port over `data` with `extra` flags, in a child
/// process; returns it and the address it printed.
pub(crate) fn spawn_serve(
    data: &std::path::Path,
    extra: &[&str],
) -> anyhow::Result<(std::process::Child, std::net::SocketAddr)> {
    use anyhow::Context;
    let exe = std::env::current_exe().context("finding this program")?;
    let mut child = std::process::Command::new(exe)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting framelane serve")?;
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().context("serve's stdout")?),
        &mut line,
    )
    .context("reading serve's first line")?;
    let addr = line
        .split_whitespace()
        .find_map(|word| word.parse().ok())
        .with_context(|| format!("no address in {line:?}"))?;
    Ok((child, addr))
}

/// User + system CPU seconds this process has used so far.
pub(crate) use framelane_analyze::reference::cpu_seconds;

/// One line describing the machine, for the figures' context.
/// Prints which benchmark runs, on which machine and by which command; returns the machine and
/// the command for the JSON.
pub fn announce(kind: &str) -> (String, String) {
    let machine = machine_description();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    println!("framelane bench {kind} on {machine}");
    println!("command: {command}");
    (machine, command)
}

fn machine_description() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1_048_576.0)
        .unwrap_or(0.0);
    format!("{cpu}, {cores} cores, {mem_gib:.0} GiB")
}

/// A scratch folder under the temporary directory, removed when dropped.
pub(crate) struct Scratch(pub(crate) std::path::PathBuf);

impl Scratch {
    pub(crate) fn new(tag: &str) -> anyhow::Result<Self> {
        use anyhow::Context;
        let dir = std::env::temp_dir().join(format!(
            "framelane-bench-{tag}-{}-{}",
            std::process::id(),
            framelane_core::fastlane::shm::monotonic_ns()
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
