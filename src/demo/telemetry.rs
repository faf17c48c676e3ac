//! The built-in demo's durable lane: every second step of the demo run, with a small copy of its
//! frame, streamed over gRPC to a daemon under the `demo` profile (H.264 video), and an episode record at the
//! end of each episode. The first run of the window thereby shows every lane at once: the live
//! frame, the run in the recorded-runs panel, its returns in the plot, and finished episodes to
//! scrub in the Replay tab.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use framelane_core::fastlane::{FrameGeometry, PixelFormat};
use framelane_core::ingest::client::{connect, follow_control};
use framelane_core::ingest::proto::framelane_v1 as v1;

use super::{demo_hud, DemoPattern, EPISODE_LENGTH};

/// Size of the frames recorded to video (a quarter of the default demo size each way).
const RECORDED_WIDTH: u32 = 160;
const RECORDED_HEIGHT: u32 = 120;
/// How often new steps are sent (each publish is acknowledged after its commit).
const SEND_INTERVAL: Duration = Duration::from_millis(200);
/// The storage profile the demo run records with.
pub const DEMO_PROFILE: &str = "demo";

/// Streams the demo's steps to the daemon at `address` as the fast-lane producer publishes
/// them (`published` is its frame counter), until `stop` is set. Returns a message when the
/// daemon cannot be used; the fast lane goes on either way.
/// It also listens on the run's control stream: a `max_rate_hz` asked for (by the window's
/// producer-rate control) is stored in `rate_cap_hz`, which the producer applies.
pub fn stream_demo_telemetry(
    address: SocketAddr,
    run_id: String,
    published: Arc<AtomicU64>,
    rate_cap_hz: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("no async runtime: {e}"))?;
    runtime.block_on(stream(address, run_id, published, rate_cap_hz, stop))
}

/// Follows the run's control stream, keeping the newest rate cap, until the stream ends.
async fn follow_rate_cap(
    mut client: framelane_core::ingest::client::Client,
    run_id: String,
    rate_cap_hz: Arc<AtomicU32>,
) {
    let followed = follow_control(&mut client, &run_id, |event| {
        if let v1::control_message::Event::MaxRateHz(hz) = event {
            tracing::info!(hz, "demo producer: rate cap asked for");
            rate_cap_hz.store(hz, Ordering::Relaxed);
        }
        true
    })
    .await;
    if let Err(err) = followed {
        tracing::warn!(error = %err, "demo producer: control stream ended");
    }
}

async fn stream(
    address: SocketAddr,
    run_id: String,
    published: Arc<AtomicU64>,
    rate_cap_hz: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
) -> Result<(), String> {
    let mut client = connect(address)
        .await
        .map_err(|e| format!("daemon at {address} not reachable: {e}"))?;
    client
        .register_worker(v1::RegisterWorkerRequest {
            run_id: run_id.clone(),
            worker_id: "demo".into(),
            worker_kind: "framelane demo".into(),
            profile: DEMO_PROFILE.into(),
        })
        .await
        .map_err(|s| format!("registering the demo run: {}", s.message()))?;
    let control = tokio::spawn(follow_rate_cap(client.clone(), run_id.clone(), rate_cap_hz));
    let pattern = DemoPattern::new(FrameGeometry::packed(
        RECORDED_WIDTH,
        RECORDED_HEIGHT,
        PixelFormat::Rgb8,
    ));
    let mut next = 1u64;
    let mut episodic_return = 0.0;
    while !stop.load(Ordering::Relaxed) {
        let latest = published.load(Ordering::Acquire);
        let mut steps = Vec::new();
        let mut episodes = Vec::new();
        while next <= latest {
            let hud = demo_hud(next, &mut episodic_return, 0.0);
            // Every second step is recorded: 30 steps/s of telemetry for a 60 Hz demo.
            if next % 2 == 0 {
                let mut pixels = vec![0u8; (RECORDED_WIDTH * RECORDED_HEIGHT * 3) as usize];
                pattern.render(next, &mut pixels);
                steps.push(v1::Step {
                    run_id: run_id.clone(),
                    worker_id: "demo".into(),
                    agent_id: "agent-0".into(),
                    episode: hud.episode,
                    step: next,
                    reward: hud.reward,
                    terminated: false,
                    truncated: next % EPISODE_LENGTH == EPISODE_LENGTH - 2,
                    frame: Some(v1::Frame {
                        content: Some(v1::frame::Content::Raw(v1::RawFrame {
                            width: RECORDED_WIDTH,
                            height: RECORDED_HEIGHT,
                            format: v1::PixelFormat::Rgb8 as i32,
                            pixels,
                        })),
                    }),
                    ..Default::default()
                });
            }
            if next % EPISODE_LENGTH == EPISODE_LENGTH - 1 {
                episodes.push(v1::Episode {
                    run_id: run_id.clone(),
                    worker_id: "demo".into(),
                    agent_id: "agent-0".into(),
                    episode: hud.episode,
                    total_reward: hud.episodic_return,
                    steps: EPISODE_LENGTH,
                    truncated: true,
                    metadata_json: "{\"source\":\"framelane demo\"}".into(),
                    ..Default::default()
                });
            }
            next += 1;
        }
        if !steps.is_empty() {
            client
                .publish_steps(tokio_stream::iter(steps))
                .await
                .map_err(|s| format!("publishing demo steps: {}", s.message()))?;
        }
        if !episodes.is_empty() {
            client
                .publish_episodes(tokio_stream::iter(episodes))
                .await
                .map_err(|s| format!("publishing demo episodes: {}", s.message()))?;
        }
        tokio::time::sleep(SEND_INTERVAL).await;
    }
    control.abort();
    Ok(())
}
