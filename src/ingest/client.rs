//! The client side of `framelane.v1`, for the GUI and tools: follow the run list and a run's
//! rewards and episode returns from a daemon, reconnecting when it goes away.

use std::net::SocketAddr;
use std::time::Duration;

use tokio_stream::StreamExt;

use super::proto::framelane_v1 as v1;

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
