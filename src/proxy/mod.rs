//! `framelane proxy -- CMD ARGS`: runs a worker that prints one JSON object per step or episode
//! on stdout (MOSAIC's JSONL format, unchanged), forwards them to the daemon over the trainer
//! API and publishes their frames to the fast lane; passes the worker's exit status through.
//!
//! Threads: `proxy-read` reads and parses the worker's stdout and publishes frames (the newest
//! frame, never waiting); parsed steps and episodes go through a bounded queue (1024 items,
//! the reader waits when it is full, so a worker faster than the daemon is slowed through its
//! stdout pipe, never dropped) to the sender on the calling thread, which publishes batches
//! (256 items or 100 ms) and counts what the daemon accepted. Nothing is dropped silently:
//! every line not forwarded is counted by reason and reported at the end.

pub mod lines;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use framelane_core::fastlane::{FastLaneWriter, WriterConfig};
use framelane_core::ingest::client::connect_trainer;
use framelane_core::ingest::proto::gymgui;
use tokio::sync::mpsc;

use lines::{Defaults, Line, LineFrame};

/// Longest line read; a longer one is skipped and counted.
const MAX_LINE_BYTES: u64 = 256 << 20;
/// Parsed items waiting for the sender.
const QUEUE_ITEMS: usize = 1024;
const BATCH_ITEMS: usize = 256;
const BATCH_WAIT: Duration = Duration::from_millis(100);

/// How the proxy runs.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub target: SocketAddr,
    pub run_id: String,
    pub agent_id: String,
    pub worker_id: Option<String>,
    pub fast_lane: bool,
    pub command: Vec<std::ffi::OsString>,
}

/// What happened to the worker's lines.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ProxyReport {
    pub lines: u64,
    pub steps_sent: u64,
    pub episodes_sent: u64,
    pub steps_committed: u64,
    pub episodes_committed: u64,
    /// Items the daemon refused (its replies' `dropped`).
    pub refused_by_daemon: u64,
    /// Items in batches whose publish failed (the daemon went away).
    pub lost_in_failed_publishes: u64,
    /// Lines not forwarded, by reason.
    pub not_forwarded: BTreeMap<String, u64>,
    /// Lines skipped on purpose (other `type`s); blank lines are not counted.
    pub other_types: u64,
    pub frames_published: u64,
    /// Frames that could not be shown, by reason (their steps were forwarded).
    pub frames_unusable: BTreeMap<String, u64>,
    pub exit_code: Option<i32>,
}

impl ProxyReport {
    pub fn summary(&self) -> String {
        let mut out = format!(
            "{} steps and {} episodes forwarded ({} and {} committed",
            self.steps_sent, self.episodes_sent, self.steps_committed, self.episodes_committed
        );
        if self.refused_by_daemon > 0 {
            out += &format!(", {} refused by the daemon", self.refused_by_daemon);
        }
        if self.lost_in_failed_publishes > 0 {
            out += &format!(
                ", {} lost in failed publishes",
                self.lost_in_failed_publishes
            );
        }
        out += ")";
        let not_forwarded: u64 = self.not_forwarded.values().sum();
        if not_forwarded > 0 {
            let reasons: Vec<String> = self
                .not_forwarded
                .iter()
                .map(|(why, n)| format!("{n} {why}"))
                .collect();
            out += &format!(
                "; {not_forwarded} lines not forwarded: {}",
                reasons.join(", ")
            );
        }
        if self.other_types > 0 {
            out += &format!("; {} lines of other types skipped", self.other_types);
        }
        out += &format!("; {} frames to the fast lane", self.frames_published);
        let unusable: u64 = self.frames_unusable.values().sum();
        if unusable > 0 {
            out += &format!(" ({unusable} unusable)");
        }
        out
    }
}

enum Item {
    Step(Box<gymgui::RunStep>),
    Episode(Box<gymgui::RunEpisode>),
}

/// Runs the worker to its end; returns its exit status and what was forwarded.
pub fn run(config: &ProxyConfig) -> anyhow::Result<(ExitStatus, ProxyReport)> {
    if config.command.is_empty() {
        bail!("no worker command: give it after --, e.g. framelane proxy --run-id r -- python3 worker.py");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the proxy's runtime")?;
    let worker_id = config
        .worker_id
        .clone()
        .unwrap_or_else(|| format!("proxy-{}", std::process::id()));
    let mut client = runtime.block_on(async {
        let mut client =
            tokio::time::timeout(Duration::from_secs(10), connect_trainer(config.target))
                .await
                .map_err(|_| {
                    anyhow::anyhow!(
                        "daemon at {} not reachable within 10 s (--target)",
                        config.target
                    )
                })?
                .with_context(|| format!("daemon at {} not reachable (--target)", config.target))?;
        client
            .register_worker(gymgui::RegisterWorkerRequest {
                run_id: config.run_id.clone(),
                worker_id: worker_id.clone(),
                worker_kind: "telemetry_proxy".into(),
                proto_version: "MOSAIC/1.0".into(),
                schema_id: "jsonl.telemetry".into(),
                schema_version: 1,
                ..Default::default()
            })
            .await
            .map_err(|s| anyhow::anyhow!("registering run {:?}: {}", config.run_id, s.message()))?;
        Ok::<_, anyhow::Error>(client)
    })?;

    let mut child = Command::new(&config.command[0])
        .args(&config.command[1..])
        .stdout(Stdio::piped())
        .stdin(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting the worker {:?}", config.command[0]))?;
    let stdout = child.stdout.take().context("the worker's stdout")?;
    let (sender, mut receiver) = mpsc::channel::<Item>(QUEUE_ITEMS);
    let defaults = Defaults {
        run_id: config.run_id.clone(),
        agent_id: config.agent_id.clone(),
        worker_id: config.worker_id.clone(),
    };
    let (run_id, fast_lane) = (config.run_id.clone(), config.fast_lane);
    let reader = std::thread::Builder::new()
        .name("proxy-read".into())
        .spawn(move || read_lines(stdout, &defaults, &run_id, fast_lane, &sender))
        .context("starting the proxy's reader thread")?;

    let mut sent = ProxyReport::default();
    runtime.block_on(forward(&mut client, &mut receiver, &mut sent));
    let mut report = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the proxy's reader thread panicked"))?;
    let status = child.wait().context("waiting for the worker")?;
    report.steps_sent = sent.steps_sent;
    report.episodes_sent = sent.episodes_sent;
    report.steps_committed = sent.steps_committed;
    report.episodes_committed = sent.episodes_committed;
    report.refused_by_daemon = sent.refused_by_daemon;
    report.lost_in_failed_publishes = sent.lost_in_failed_publishes;
    report.exit_code = exit_code(status);
    Ok((status, report))
}

/// The exit code the proxy passes on: the worker's, or 128 + the signal that ended it.
pub fn exit_code(status: ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.code().or_else(|| status.signal().map(|s| 128 + s))
}

/// Reader thread: lines to items (queue) and frames (fast lane).
fn read_lines(
    stdout: impl Read,
    defaults: &Defaults,
    run_id: &str,
    fast_lane: bool,
    items: &mpsc::Sender<Item>,
) -> ProxyReport {
    let mut report = ProxyReport::default();
    let mut reader = BufReader::with_capacity(1 << 20, stdout);
    let mut buf = Vec::new();
    let mut lane: Option<FastLaneWriter> = None;
    let mut rate = StepRate::default();
    loop {
        buf.clear();
        let read = match (&mut reader)
            .take(MAX_LINE_BYTES)
            .read_until(b'\n', &mut buf)
        {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) => {
                *report
                    .not_forwarded
                    .entry(format!("unreadable ({err})"))
                    .or_insert(0) += 1;
                break;
            }
        };
        report.lines += 1;
        if read as u64 >= MAX_LINE_BYTES && buf.last() != Some(&b'\n') {
            *report
                .not_forwarded
                .entry("longer than 256 MiB".into())
                .or_insert(0) += 1;
            // Skip the rest of the line.
            let _ = reader.skip_until(b'\n');
            continue;
        }
        let Ok(text) = std::str::from_utf8(&buf) else {
            *report.not_forwarded.entry("not UTF-8".into()).or_insert(0) += 1;
            continue;
        };
        let item = match lines::parse(text, defaults) {
            Ok(Line::Ignored("blank")) => {
                report.lines -= 1;
                continue;
            }
            Ok(Line::Ignored(_)) => {
                report.other_types += 1;
                continue;
            }
            Err(err) => {
                *report.not_forwarded.entry(err.label()).or_insert(0) += 1;
                continue;
            }
            Ok(Line::Episode(episode)) => Item::Episode(episode),
            Ok(Line::Step {
                step,
                frame,
                episodic_return,
                ts_unix_ns,
            }) => {
                let per_second = rate.update(ts_unix_ns);
                match frame {
                    Some(Ok(frame)) if fast_lane => {
                        let hud = lines::hud_of(&step, episodic_return, per_second);
                        match publish(&mut lane, run_id, &frame, &hud) {
                            Ok(()) => report.frames_published += 1,
                            Err(why) => *report.frames_unusable.entry(why).or_insert(0) += 1,
                        }
                    }
                    Some(Err(why)) => {
                        *report.frames_unusable.entry(why_label(&why)).or_insert(0) += 1
                    }
                    _ => {}
                }
                Item::Step(step)
            }
        };
        if items.blocking_send(item).is_err() {
            *report
                .not_forwarded
                .entry("the sender stopped".into())
                .or_insert(0) += 1;
        }
    }
    report
}

/// The reason of an unusable frame without its coordinates, so reasons group.
fn why_label(why: &str) -> String {
    why.split(" (")
        .next()
        .unwrap_or(why)
        .split(" row ")
        .next()
        .unwrap_or(why)
        .to_owned()
}

/// Publishes a frame, (re)creating the segment when the frame's size or format changes.
fn publish(
    lane: &mut Option<FastLaneWriter>,
    run_id: &str,
    frame: &LineFrame,
    hud: &framelane_core::fastlane::HudValues,
) -> Result<(), String> {
    let fits = lane.as_ref().is_some_and(|w| {
        let g = w.geometry();
        (g.width, g.height, g.format) == (frame.width, frame.height, frame.format)
    });
    if !fits {
        *lane = None;
        let config = WriterConfig::new(frame.width, frame.height, frame.format);
        *lane = Some(FastLaneWriter::create(run_id, config).map_err(|e| e.to_string())?);
    }
    let writer = lane.as_mut().ok_or("no fast-lane segment")?;
    writer
        .publish(&frame.pixels, hud)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Steps per second from the spacing of `ts_unix_ns` (smoothed).
#[derive(Default)]
struct StepRate {
    last_ns: Option<u64>,
    per_second: f64,
}

impl StepRate {
    fn update(&mut self, ts: Option<u64>) -> f64 {
        if let (Some(now), Some(last)) = (ts, self.last_ns) {
            if now > last {
                let instant = 1e9 / (now - last) as f64;
                self.per_second = if self.per_second == 0.0 {
                    instant
                } else {
                    0.9 * self.per_second + 0.1 * instant
                };
            }
        }
        if ts.is_some() {
            self.last_ns = ts;
        }
        self.per_second
    }
}

/// Sender: batches of steps and episodes (in order) to the trainer API.
async fn forward(
    client: &mut framelane_core::ingest::client::TrainerClient,
    items: &mut mpsc::Receiver<Item>,
    report: &mut ProxyReport,
) {
    let mut steps = Vec::new();
    let mut episodes = Vec::new();
    let mut open = true;
    while open {
        let first = items.recv().await;
        let Some(first) = first else { break };
        let deadline = Instant::now() + BATCH_WAIT;
        let mut next = Some(first);
        while let Some(item) = next.take() {
            match item {
                Item::Step(step) => {
                    // Episodes after the steps that precede them.
                    if !episodes.is_empty() {
                        send_episodes(client, &mut episodes, report).await;
                    }
                    steps.push(*step);
                }
                Item::Episode(episode) => {
                    send_steps(client, &mut steps, report).await;
                    episodes.push(*episode);
                }
            }
            if steps.len() + episodes.len() >= BATCH_ITEMS {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, items.recv()).await {
                Ok(Some(item)) => next = Some(item),
                Ok(None) => open = false,
                Err(_) => {}
            }
        }
        send_steps(client, &mut steps, report).await;
        send_episodes(client, &mut episodes, report).await;
    }
}

async fn send_steps(
    client: &mut framelane_core::ingest::client::TrainerClient,
    steps: &mut Vec<gymgui::RunStep>,
    report: &mut ProxyReport,
) {
    if steps.is_empty() {
        return;
    }
    let batch = std::mem::take(steps);
    let n = batch.len() as u64;
    report.steps_sent += n;
    let reply = client.publish_run_steps(tokio_stream::iter(batch)).await;
    report.steps_committed += tally(reply, n, "steps", report);
}

async fn send_episodes(
    client: &mut framelane_core::ingest::client::TrainerClient,
    episodes: &mut Vec<gymgui::RunEpisode>,
    report: &mut ProxyReport,
) {
    if episodes.is_empty() {
        return;
    }
    let batch = std::mem::take(episodes);
    let n = batch.len() as u64;
    report.episodes_sent += n;
    let reply = client.publish_run_episodes(tokio_stream::iter(batch)).await;
    report.episodes_committed += tally(reply, n, "episodes", report);
}

/// Counts a publish's reply (refused items, or the whole batch lost when the call failed);
/// returns how many items the daemon committed.
fn tally(
    reply: Result<tonic::Response<gymgui::PublishTelemetryResponse>, tonic::Status>,
    sent: u64,
    what: &'static str,
    report: &mut ProxyReport,
) -> u64 {
    match reply {
        Ok(reply) => {
            let reply = reply.into_inner();
            report.refused_by_daemon += reply.dropped;
            reply.accepted
        }
        Err(status) => {
            tracing::error!(error = %status.message(), items = sent, what, "publishing failed");
            report.lost_in_failed_publishes += sent;
            0
        }
    }
}
