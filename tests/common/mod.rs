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
    }
}

/// `framelane serve` in a child process; killed (SIGKILL) when dropped unless stopped first.
pub struct ServeProcess {
    pub child: Child,
    pub addr: SocketAddr,
}

impl ServeProcess {
    pub fn start(data_dir: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_framelane"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start framelane serve");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("read the listening line");
        let addr = line
            .split_whitespace()
            .find_map(|w| w.parse::<SocketAddr>().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        Self { child, addr }
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
