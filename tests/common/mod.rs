//! Helpers shared by the durable-lane tests: scratch data directories, a daemon in this
//! process or in a child process, and gRPC clients.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use framelane_core::ingest::proto::framelane_v1 as v1;
use framelane_core::ingest::proto::gymgui;

/// A data directory removed when dropped.
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "framelane-test-{tag}-{}-{}",
            std::process::id(),
            framelane_core::fastlane::shm::monotonic_ns()
        ));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("client runtime")
}

pub async fn telemetry_client(
    addr: SocketAddr,
) -> v1::telemetry_client::TelemetryClient<tonic::transport::Channel> {
    v1::telemetry_client::TelemetryClient::connect(format!("http://{addr}"))
        .await
        .expect("connect")
        .max_decoding_message_size(128 << 20)
        .max_encoding_message_size(128 << 20)
}

pub async fn trainer_client(
    addr: SocketAddr,
) -> gymgui::trainer_service_client::TrainerServiceClient<tonic::transport::Channel> {
    gymgui::trainer_service_client::TrainerServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect")
        .max_decoding_message_size(128 << 20)
        .max_encoding_message_size(128 << 20)
}

/// A step of run `run` whose values derive from `i`, so stored rows can be checked.
pub fn step(run: &str, i: u64) -> v1::Step {
    v1::Step {
        run_id: run.into(),
        worker_id: "w0".into(),
        agent_id: "a0".into(),
        episode: i / 100,
        step: i,
        reward: i as f64 * 0.5 - 3.0,
        terminated: i % 100 == 99,
        truncated: false,
        producer_unix_ns: 1_700_000_000_000_000_000 + i,
        action: Some(v1::Payload {
            content: Some(v1::payload::Content::Json(format!("{{\"a\":{}}}", i % 4))),
        }),
        observation: None,
        frame: None,
        session_token: String::new(),
        // Not numbered: stored as sent (delivery at least once).
        worker_seq: 0,
    }
}

/// Lines a `framelane serve` child wrote to stderr so far.
#[derive(Clone, Default)]
pub struct ServeLog(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl ServeLog {
    /// Waits (up to a generous deadline) for a line containing every one of `parts`.
    pub fn wait_for(&self, parts: &[&str]) -> Option<String> {
        wait_until(|| {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .find(|line| parts.iter().all(|part| line.contains(part)))
                .cloned()
        })
    }
}

/// Runs `command` to its end with stdout and stderr captured, or kills it after `seconds`
/// (None then): a process that should refuse at once cannot hang a test.
pub fn output_within(
    command: &mut std::process::Command,
    seconds: u64,
) -> Option<std::process::Output> {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the command");
    let pid = child.id();
    let (done, waiting) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match waiting.recv_timeout(std::time::Duration::from_secs(seconds)) {
        Ok(output) => output.ok(),
        Err(_) => {
            // SAFETY: killing our own child, which is still running.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            None
        }
    }
}

/// Polls `check` until it returns Some or a generous deadline passes.
pub fn wait_until<T>(mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(found) = check() {
            return Some(found);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The async twin of [`wait_until`]: awaits `check` until it yields Some or the same generous
/// deadline passes.
pub async fn wait_until_async<T, F>(mut check: impl FnMut() -> F) -> Option<T>
where
    F: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(found) = check().await {
            return Some(found);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// `framelane serve` in a child process; killed (SIGKILL) when dropped unless stopped first.
pub struct ServeProcess {
    pub child: Child,
    pub addr: SocketAddr,
    /// The metrics endpoint, when started with --metrics.
    pub metrics: Option<SocketAddr>,
}

impl ServeProcess {
    pub fn start(data_dir: &Path, extra: &[&str]) -> Self {
        Self::spawn(Self::command(data_dir, extra))
    }

    /// Starts it with info-level logs collected from its stderr, for tests that check what the
    /// daemon reports.
    pub fn start_logged(data_dir: &Path, extra: &[&str]) -> (Self, ServeLog) {
        let mut command = Self::command(data_dir, extra);
        command.env("FRAMELANE_LOG", "info").stderr(Stdio::piped());
        let mut serve = Self::spawn(command);
        let log = ServeLog::default();
        let stderr = serve.child.stderr.take().expect("stderr");
        let lines = log.0.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        (serve, log)
    }

    fn command(data_dir: &Path, extra: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_framelane"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .stdout(Stdio::piped());
        command
    }

    fn spawn(mut command: Command) -> Self {
        let mut child = command.spawn().expect("start framelane serve");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("read the listening line");
        let addr = line
            .split_whitespace()
            .find_map(|w| w.parse::<SocketAddr>().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        let metrics = line.split_whitespace().find_map(|w| {
            w.strip_prefix("http://")?
                .trim_end_matches(')')
                .strip_suffix("/metrics")?
                .parse()
                .ok()
        });
        Self {
            child,
            addr,
            metrics,
        }
    }

    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().expect("wait for serve")
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The daemon's run list.
pub async fn list_runs(addr: SocketAddr) -> Vec<v1::RunSummary> {
    telemetry_client(addr)
        .await
        .list_runs(v1::ListRunsRequest {})
        .await
        .expect("ListRuns")
        .into_inner()
        .runs
}

/// The daemon's Health reply.
pub async fn health(addr: SocketAddr) -> v1::HealthReply {
    telemetry_client(addr)
        .await
        .health(v1::HealthRequest {})
        .await
        .expect("Health")
        .into_inner()
}

/// Registers worker "w0" of `run` under `profile`.
pub async fn register(addr: SocketAddr, run: &str, profile: &str) {
    telemetry_client(addr)
        .await
        .register_worker(v1::RegisterWorkerRequest {
            run_id: run.into(),
            worker_id: "w0".into(),
            worker_kind: "test".into(),
            profile: profile.into(),
        })
        .await
        .expect("RegisterWorker");
}
