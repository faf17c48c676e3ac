//! The client side of `framelane.v1`, for the GUI and tools: follow the run list and a run's
//! rewards and episode returns from a daemon, reconnecting when it goes away.

use std::net::SocketAddr;
use std::time::Duration;

use tokio_stream::StreamExt;

use super::proto::framelane_v1 as v1;
use super::IngestError;

type Client = v1::telemetry_client::TelemetryClient<tonic::transport::Channel>;

/// How long to wait before reconnecting to a daemon that is not there.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

async fn connect(address: SocketAddr) -> Result<Client, tonic::transport::Error> {
    Client::connect(format!("http://{address}")).await
}

/// Calls `on_runs` with the run list whenever it changes (and with None about once a second
/// meanwhile, to ask whether to go on), and `on_error` with a message while the daemon
/// cannot be reached; returns when `on_runs` returns false.
pub async fn watch_runs(
    address: SocketAddr,
    mut on_runs: impl FnMut(Option<Vec<v1::RunSummary>>) -> bool,
    mut on_error: impl FnMut(String),
) {
    loop {
        match connect(address).await {
            Ok(mut client) => match client.watch_runs(v1::ListRunsRequest {}).await {
                Ok(response) => {
                    let mut stream = response.into_inner();
                    loop {
                        // Wake up now and then so a caller that lost interest is noticed.
                        let item = match tokio::time::timeout(RECONNECT_AFTER, stream.next()).await
                        {
                            Ok(Some(item)) => item,
                            Ok(None) => break,
                            Err(_) => {
                                if !on_runs(None) {
                                    return;
                                }
                                continue;
                            }
                        };
                        match item {
                            Ok(reply) => {
                                if !on_runs(Some(reply.runs)) {
                                    return;
                                }
                            }
                            Err(status) => {
                                on_error(format!("run list: {}", status.message()));
                                break;
                            }
                        }
                    }
                }
                Err(status) => on_error(format!("run list: {}", status.message())),
            },
            Err(err) => on_error(format!("daemon at {address} not reachable: {err}")),
        }
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}

/// New points of a run's series: rewards by step sequence and returns by episode.
#[derive(Debug, Default)]
pub struct SeriesUpdate {
    pub rewards: Vec<(u64, f64)>,
    pub returns: Vec<(u64, f64)>,
}

/// Follows a run's committed steps (from `since_step_seq`) and episodes (from the start),
/// handing batches of new points to `on_points` at most every `interval`; returns when
/// `on_points` returns false.
pub async fn follow_series(
    address: SocketAddr,
    run_id: String,
    since_step_seq: u64,
    interval: Duration,
    mut on_points: impl FnMut(SeriesUpdate) -> bool,
    mut on_error: impl FnMut(String),
) {
    let mut next_step = since_step_seq.max(1);
    let mut next_episode = 1;
    loop {
        let mut client = match connect(address).await {
            Ok(c) => c,
            Err(err) => {
                on_error(format!("daemon at {address} not reachable: {err}"));
                tokio::time::sleep(RECONNECT_AFTER).await;
                continue;
            }
        };
        let steps = client
            .subscribe_steps(v1::SubscribeRequest {
                run_id: run_id.clone(),
                since_seq: next_step,
            })
            .await;
        let episodes = client
            .subscribe_episodes(v1::SubscribeRequest {
                run_id: run_id.clone(),
                since_seq: next_episode,
            })
            .await;
        let (mut steps, mut episodes) = match (steps, episodes) {
            (Ok(s), Ok(e)) => (s.into_inner(), e.into_inner()),
            (Err(status), _) | (_, Err(status)) => {
                on_error(format!("run {run_id}: {}", status.message()));
                tokio::time::sleep(RECONNECT_AFTER).await;
                continue;
            }
        };
        let mut pending = SeriesUpdate::default();
        let mut tick = tokio::time::interval(interval);
        loop {
            tokio::select! {
                item = steps.next() => match item {
                    Some(Ok(s)) => {
                        next_step = s.seq + 1;
                        pending.rewards.push((s.seq, s.step.map_or(0.0, |st| st.reward)));
                    }
                    _ => break,
                },
                item = episodes.next() => match item {
                    Some(Ok(e)) => {
                        next_episode = e.seq + 1;
                        pending.returns.push((e.seq, e.episode.map_or(0.0, |ep| ep.total_reward)));
                    }
                    _ => break,
                },
                _ = tick.tick() => {
                    // Called every tick, empty or not, so a caller that lost interest is noticed.
                    if !on_points(std::mem::take(&mut pending)) {
                        return;
                    }
                }
            }
        }
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}

/// A frame fetched from the daemon, as RGBA pixels, with the step it belongs to.
#[derive(Debug, Clone)]
pub struct DaemonFrame {
    pub seq: u64,
    pub episode: u64,
    pub step: u64,
    pub reward: f64,
    pub width: u32,
    pub height: u32,
    pub rgba: Vec<u8>,
}

/// Decodes a stored frame (raw pixels, PNG or JPEG) into RGBA.
pub fn frame_to_rgba(frame: v1::Frame) -> Result<(u32, u32, Vec<u8>), IngestError> {
    use crate::media::{decode_image, raw_to_rgba, ImageCodec};
    match frame.content {
        Some(v1::frame::Content::Raw(raw)) => {
            let format = v1::PixelFormat::try_from(raw.format)
                .ok()
                .and_then(super::wire::raw_format)
                .ok_or_else(|| {
                    IngestError::Frame(format!("unknown pixel format {}", raw.format))
                })?;
            Ok((raw.width, raw.height, raw_to_rgba(format, &raw.pixels)))
        }
        Some(v1::frame::Content::Encoded(image)) => {
            let codec = ImageCodec::from_name(&image.codec).ok_or_else(|| {
                IngestError::Frame(format!("unknown image codec {:?}", image.codec))
            })?;
            let decoded =
                decode_image(codec, &image.data).map_err(|e| IngestError::Frame(e.to_string()))?;
            Ok((decoded.width, decoded.height, decoded.into_rgba()))
        }
        Some(v1::frame::Content::Reference(reference)) => Err(IngestError::Frame(format!(
            "the worker keeps this frame itself ({reference})"
        ))),
        None => Err(IngestError::Frame("empty frame".into())),
    }
}

/// Follows a run's newest kept frames over gRPC (for a run without a fast-lane segment):
/// subscribes to its steps from near the end, fetches each kept frame and hands it to
/// `on_frame`; returns when `on_frame` (also called with None about once a second) returns false.
pub async fn follow_frames(
    address: SocketAddr,
    run_id: String,
    mut on_frame: impl FnMut(Option<DaemonFrame>) -> bool,
    mut on_error: impl FnMut(String),
) {
    loop {
        let mut client = match connect(address).await {
            Ok(c) => c,
            Err(err) => {
                on_error(format!("daemon at {address} not reachable: {err}"));
                if !on_frame(None) {
                    return;
                }
                tokio::time::sleep(RECONNECT_AFTER).await;
                continue;
            }
        };
        let since = match client.list_runs(v1::ListRunsRequest {}).await {
            Ok(reply) => reply
                .into_inner()
                .runs
                .iter()
                .find(|r| r.run_id == run_id)
                .map_or(1, |r| r.steps.saturating_sub(16).max(1)),
            Err(_) => 1,
        };
        let mut steps = match client
            .subscribe_steps(v1::SubscribeRequest {
                run_id: run_id.clone(),
                since_seq: since,
            })
            .await
        {
            Ok(s) => s.into_inner(),
            Err(status) => {
                on_error(format!("run {run_id}: {}", status.message()));
                if !on_frame(None) {
                    return;
                }
                tokio::time::sleep(RECONNECT_AFTER).await;
                continue;
            }
        };
        loop {
            let item = match tokio::time::timeout(RECONNECT_AFTER, steps.next()).await {
                Ok(Some(Ok(item))) => item,
                Ok(_) => break,
                Err(_) => {
                    if !on_frame(None) {
                        return;
                    }
                    continue;
                }
            };
            let Some(step) = item.step.filter(|_| !item.frame_kind.is_empty()) else {
                continue;
            };
            let request = v1::FrameRequest {
                run_id: run_id.clone(),
                episode: step.episode,
                step: step.step,
            };
            let fetched = client
                .get_frame(request)
                .await
                .map_err(|s| IngestError::Frame(s.message().to_owned()))
                .and_then(|f| frame_to_rgba(f.into_inner()));
            match fetched {
                Ok((width, height, rgba)) => {
                    let frame = DaemonFrame {
                        seq: item.seq,
                        episode: step.episode,
                        step: step.step,
                        reward: step.reward,
                        width,
                        height,
                        rgba,
                    };
                    if !on_frame(Some(frame)) {
                        return;
                    }
                }
                Err(message) => on_error(format!("frame of step {}: {message}", step.step)),
            }
        }
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}
