//! The client side of `framelane.v1`, for the GUI and tools: follow the run list and a run's
//! rewards and episode returns from a daemon, reconnecting when it goes away.

use std::net::SocketAddr;
use std::time::Duration;

use tokio_stream::StreamExt;

use super::proto::framelane_v1 as v1;
use super::IngestError;

/// A `framelane.v1` client that sends this process's token and takes large frames.
pub type Client = v1::telemetry_client::TelemetryClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, BearerToken>,
>;

/// A client of MOSAIC's trainer API (`gymgui.trainer.TrainerService`), with the same token and
/// limits: what `framelane proxy` speaks, so it works against a framelane or a MOSAIC daemon.
pub type TrainerClient = super::proto::gymgui::trainer_service_client::TrainerServiceClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, BearerToken>,
>;

/// How long to wait before reconnecting to a daemon that is not there.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);
/// How often (and how late) a step whose frame may sit in a video being recorded is tried.
const VIDEO_PROBE: Duration = Duration::from_millis(500);
/// Largest message the client accepts: as large as the daemon sends (a 1920x1080 RGBA frame
/// is 8 MiB, over tonic's 4 MiB default).
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// The bearer token this process's clients send (a daemon beyond loopback needs one).
static TOKEN: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// The CA certificate (PEM) this process's clients verify the daemon's TLS certificate with;
/// None: plain HTTP/2.
static TLS_CA: std::sync::Mutex<Option<Vec<u8>>> = std::sync::Mutex::new(None);

/// Sets (or clears) the CA every client of this process verifies the daemon with: from its next
/// connection on, clients speak TLS (`framelane gui --connect ADDR --tls-ca ca.pem`).
pub fn set_client_tls_ca(ca_pem: Option<Vec<u8>>) {
    *TLS_CA.lock().unwrap_or_else(|p| p.into_inner()) = ca_pem;
}

/// Sets (or clears) the bearer token every client of this process sends from its next
/// connection on (`framelane gui --connect ADDR --token T`).
pub fn set_client_token(token: Option<String>) {
    *TOKEN.lock().unwrap_or_else(|p| p.into_inner()) = token.filter(|t| !t.is_empty());
}

/// Adds `authorization: Bearer <token>` to every call when a token is set.
#[derive(Clone)]
pub struct BearerToken(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for BearerToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// Connects to the daemon at `address` (plain HTTP/2), with this process's token.
pub async fn connect(address: SocketAddr) -> Result<Client, IngestError> {
    let (channel, token) = open_channel(address).await?;
    Ok(
        v1::telemetry_client::TelemetryClient::with_interceptor(channel, token)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
    )
}

/// A client of a recording rig's API (`framelane.v1.Rig`), with this process's token.
pub type RigClient = v1::rig_client::RigClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, BearerToken>,
>;

/// Connects to the rig listening at `address`.
pub async fn connect_rig(address: SocketAddr) -> Result<RigClient, IngestError> {
    let (channel, token) = open_channel(address).await?;
    Ok(v1::rig_client::RigClient::with_interceptor(channel, token))
}

/// Lists a rig's finished clip in the daemon's store; true when it was not listed before.
pub async fn register_clip(address: SocketAddr, clip: v1::ClipRecord) -> Result<bool, IngestError> {
    let mut client = connect(address).await?;
    let reply = client
        .register_clip(clip)
        .await
        .map_err(|s| IngestError::Connection(s.message().to_owned()))?;
    Ok(reply.into_inner().created)
}

/// The clips the daemon's store lists, newest first.
pub async fn list_clips(
    address: SocketAddr,
    limit: u32,
) -> Result<Vec<v1::ClipRecord>, IngestError> {
    let mut client = connect(address).await?;
    let reply = client
        .list_clips(v1::ListClipsRequest { limit })
        .await
        .map_err(|s| IngestError::Connection(s.message().to_owned()))?;
    Ok(reply.into_inner().clips)
}

/// Connects to the trainer API of the daemon at `address`.
pub async fn connect_trainer(address: SocketAddr) -> Result<TrainerClient, IngestError> {
    let (channel, token) = open_channel(address).await?;
    Ok(
        super::proto::gymgui::trainer_service_client::TrainerServiceClient::with_interceptor(
            channel, token,
        )
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES),
    )
}

async fn open_channel(
    address: SocketAddr,
) -> Result<(tonic::transport::Channel, BearerToken), IngestError> {
    let token = TOKEN.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let header = token
        .map(|t| format!("Bearer {t}").parse())
        .transpose()
        .map_err(|_| {
            IngestError::Connection("the token has characters a header cannot carry".into())
        })?;
    let ca = TLS_CA.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let scheme = if ca.is_some() { "https" } else { "http" };
    let mut endpoint = tonic::transport::Channel::from_shared(format!("{scheme}://{address}"))
        .map_err(|e| IngestError::Connection(e.to_string()))?;
    if let Some(ca) = ca {
        endpoint = endpoint
            .tls_config(
                tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(ca)),
            )
            .map_err(|e| IngestError::Connection(format!("TLS: {e}")))?;
    }
    let channel = endpoint.connect().await.map_err(|e| {
        use std::error::Error;
        // The transport error's own text is "transport error"; its sources say why.
        let mut why = e.to_string();
        let mut source = e.source();
        while let Some(inner) = source {
            why.push_str(&format!(": {inner}"));
            source = inner.source();
        }
        IngestError::Connection(why)
    })?;
    Ok((channel, BearerToken(header)))
}

/// Asks the workers of `run_id` to cap their rate at `max_rate_hz` (0: no cap); returns how
/// many of the run's control streams were listening.
pub async fn ask_max_rate(
    address: SocketAddr,
    run_id: &str,
    max_rate_hz: u32,
) -> Result<u32, IngestError> {
    let mut client = connect(address).await?;
    let reply = client
        .send_control(v1::ControlMessage {
            run_id: run_id.to_owned(),
            event: Some(v1::control_message::Event::MaxRateHz(max_rate_hz)),
        })
        .await
        .map_err(|s| IngestError::Connection(s.message().to_owned()))?;
    Ok(reply.into_inner().listeners)
}

/// Listens on the daemon's control stream as a worker of `run_id` (the daemon sends the rate
/// cap in force first, then every event for the run or for all runs), calling `on_event` until
/// it returns false or the stream ends. The request side stays open meanwhile.
pub async fn follow_control(
    client: &mut Client,
    run_id: &str,
    mut on_event: impl FnMut(v1::control_message::Event) -> bool,
) -> Result<(), IngestError> {
    let hello = v1::ControlMessage {
        run_id: run_id.to_owned(),
        event: None,
    };
    let requests = tokio_stream::iter([hello]).chain(tokio_stream::pending());
    let reply = client
        .control(requests)
        .await
        .map_err(|s| IngestError::Connection(s.message().to_owned()))?;
    let mut events = reply.into_inner();
    while let Some(message) = events.next().await {
        let message = message.map_err(|s| IngestError::Connection(s.message().to_owned()))?;
        if let Some(event) = message.event {
            if !on_event(event) {
                break;
            }
        }
    }
    Ok(())
}

/// The daemon's figures, as its `Health` reply carries them (names as Prometheus shows them).
pub async fn daemon_metrics(
    client: &mut Client,
) -> Result<std::collections::HashMap<String, f64>, IngestError> {
    let reply = client
        .health(v1::HealthRequest {})
        .await
        .map_err(|s| IngestError::Connection(s.message().to_owned()))?;
    Ok(reply.into_inner().metrics)
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
        // Between attempts too: a caller that lost interest ends the loop.
        if !on_runs(None) {
            return;
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
                // Between attempts too: a caller that lost interest ends the loop.
                if !on_points(SeriesUpdate::default()) {
                    return;
                }
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
                if !on_points(SeriesUpdate::default()) {
                    return;
                }
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
        // Frames a video profile keeps are indexed only once the encoder has written them
        // (a fragment later), so their steps arrive without a frame kind: one such step is tried
        // every VIDEO_PROBE, once it is that old, and a miss is not an error.
        let mut unindexed: Option<(v1::StoredStep, tokio::time::Instant)> = None;
        loop {
            let item = match tokio::time::timeout(VIDEO_PROBE, steps.next()).await {
                Ok(Some(Ok(item))) => Some(item),
                Ok(_) => break,
                Err(_) => None,
            };
            if !on_frame(None) {
                return;
            }
            let probe = match item {
                Some(item) if !item.frame_kind.is_empty() => Some((item, false)),
                Some(item) => {
                    // The first such step after the last try is tried once it is old enough.
                    if unindexed.is_none() {
                        unindexed = Some((item, tokio::time::Instant::now()));
                    }
                    None
                }
                None => None,
            };
            let probe = probe.or_else(|| {
                let due = unindexed
                    .as_ref()
                    .is_some_and(|(_, since)| since.elapsed() >= VIDEO_PROBE);
                if due {
                    unindexed.take().map(|(item, _)| (item, true))
                } else {
                    None
                }
            });
            let Some((item, guess)) = probe else {
                continue;
            };
            let Some(step) = item.step else {
                continue;
            };
            let request = v1::FrameRequest {
                run_id: run_id.clone(),
                worker_id: step.worker_id.clone(),
                agent_id: step.agent_id.clone(),
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
                // A step tried on the chance that its video frame is indexed may have none.
                Err(_) if guess => {}
                Err(message) => on_error(format!("frame of step {}: {message}", step.step)),
            }
        }
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}
