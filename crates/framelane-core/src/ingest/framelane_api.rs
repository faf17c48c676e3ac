//! `framelane.v1.Telemetry`: our own API.

use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::convert::{episode_from_v1, step_from_v1};
use super::proto::framelane_v1 as v1;
use super::{ControlEvent, IngestCore, Item, PublishOutcome, PublishTally};
use crate::bus::{FrameKind, Payload, StepRecord};
use crate::store::{EpisodeRow, StepRow, StoreReader};

/// Rows fetched per query while a subscriber catches up.
const SUBSCRIBE_PAGE: usize = 512;
/// Items buffered per subscriber before its stream waits for it.
const SUBSCRIBE_BUFFER: usize = 256;

/// The service; cheap to clone.
#[derive(Clone)]
pub struct TelemetryService {
    pub(crate) core: Arc<IngestCore>,
}

/// Which committed rows a subscription follows.
#[derive(Clone, Copy)]
pub(crate) enum Feed {
    Steps,
    Episodes,
}

/// Streams a run's committed rows from `since_seq` on, then new ones as commits announce them.
/// The page query runs on the blocking pool; the stream waits for a slow subscriber.
pub(crate) fn subscribe<T, F>(
    core: &Arc<IngestCore>,
    run_id: String,
    since_seq: u64,
    feed: Feed,
    map: F,
) -> Result<ReceiverStream<Result<T, Status>>, Status>
where
    T: Send + 'static,
    F: Fn(Rows) -> Vec<T> + Send + Sync + 'static,
{
    let reader = core.reader()?;
    if !reader
        .run_exists(&run_id)
        .map_err(|e| Status::internal(e.to_string()))?
    {
        return Err(Status::not_found(format!("unknown run {run_id:?}")));
    }
    let reader = Arc::new(std::sync::Mutex::new(reader));
    let mut commits = core.commits();
    let mut shutdown = core.shutdown_signal();
    let (sender, receiver) = mpsc::channel(SUBSCRIBE_BUFFER);
    tokio::spawn(async move {
        let mut next = since_seq.max(1);
        loop {
            let page_reader = Arc::clone(&reader);
            let page_run = run_id.clone();
            let page = tokio::task::spawn_blocking(move || {
                let reader = page_reader.lock().unwrap_or_else(|p| p.into_inner());
                fetch(&reader, &page_run, next, feed)
            })
            .await;
            let rows = match page {
                Ok(Ok(rows)) => rows,
                Ok(Err(err)) => {
                    let _ = sender.send(Err(Status::internal(err.to_string()))).await;
                    return;
                }
                Err(_) => return,
            };
            let fetched = rows.len();
            if let Some(last) = rows.last_seq() {
                next = last + 1;
            }
            for item in map(rows) {
                if sender.send(Ok(item)).await.is_err() {
                    return;
                }
            }
            if fetched == SUBSCRIBE_PAGE {
                continue;
            }
            // Caught up: wait for a commit of this run that goes past what we sent.
            loop {
                tokio::select! {
                    notice = commits.recv() => match notice {
                        Ok(n) if &*n.run_id == run_id.as_str() => {
                            let committed = match feed { Feed::Steps => n.steps, Feed::Episodes => n.episodes };
                            if committed >= next { break; }
                        }
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = sender.closed() => return,
                    _ = shutdown.changed() => return,
                }
            }
        }
    });
    Ok(ReceiverStream::new(receiver))
}

/// A page of committed rows.
pub(crate) enum Rows {
    Steps(Vec<StepRow>),
    Episodes(Vec<EpisodeRow>),
}

impl Rows {
    fn len(&self) -> usize {
        match self {
            Rows::Steps(v) => v.len(),
            Rows::Episodes(v) => v.len(),
        }
    }

    fn last_seq(&self) -> Option<u64> {
        match self {
            Rows::Steps(v) => v.last().map(|r| r.seq),
            Rows::Episodes(v) => v.last().map(|r| r.seq),
        }
    }
}

fn fetch(
    reader: &StoreReader,
    run_id: &str,
    next: u64,
    feed: Feed,
) -> Result<Rows, crate::store::StoreError> {
    Ok(match feed {
        Feed::Steps => Rows::Steps(reader.steps_since(run_id, next, SUBSCRIBE_PAGE)?),
        Feed::Episodes => Rows::Episodes(reader.episodes_since(run_id, next, SUBSCRIBE_PAGE)?),
    })
}

fn to_payload(payload: Option<Payload>) -> Option<v1::Payload> {
    payload.map(|p| v1::Payload {
        content: Some(match p {
            Payload::Json(text) => v1::payload::Content::Json(text),
            Payload::Raw(bytes) => v1::payload::Content::Raw(bytes),
        }),
    })
}

/// A stored step in our wire form.
pub fn step_to_v1(step: StepRecord) -> v1::Step {
    v1::Step {
        run_id: step.run_id,
        worker_id: step.worker_id,
        agent_id: step.agent_id,
        episode: step.episode,
        step: step.step,
        reward: step.reward,
        terminated: step.terminated,
        truncated: step.truncated,
        producer_unix_ns: step.producer_unix_ns,
        action: to_payload(step.action),
        observation: to_payload(step.observation),
        frame: None,
        session_token: String::new(),
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Reads a client stream until it ends or the daemon shuts down (then it stops reading: what
/// was received is committed and acknowledged).
pub(crate) struct ClientStream<M> {
    stream: Streaming<M>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    index: u64,
}

impl<M> ClientStream<M> {
    pub(crate) fn new(core: &IngestCore, stream: Streaming<M>) -> Self {
        Self {
            stream,
            shutdown: core.shutdown_signal(),
            index: 0,
        }
    }

    /// Like [`Self::next`], but when no message is ready yet, first hands the steps gathered so
    /// far to the writer, so a slow stream's steps never wait for company.
    pub(crate) async fn next_or_flush(
        &mut self,
        core: &IngestCore,
        tally: &mut PublishTally,
    ) -> Result<Option<(u64, M)>, Status> {
        // A zero timeout polls once: Ok when a message (or the end) is already there.
        if let Ok(ready) = tokio::time::timeout(std::time::Duration::ZERO, self.next()).await {
            return ready;
        }
        core.hand_over_steps(tally).await?;
        self.next().await
    }

    /// The next message with its 1-based position in the stream.
    pub(crate) async fn next(&mut self) -> Result<Option<(u64, M)>, Status> {
        if *self.shutdown.borrow() {
            return Ok(None);
        }
        let message = tokio::select! {
            message = self.stream.message() => message?,
            _ = self.shutdown.changed() => None,
        };
        Ok(message.map(|m| {
            self.index += 1;
            (self.index, m)
        }))
    }
}

#[tonic::async_trait]
impl v1::telemetry_server::Telemetry for TelemetryService {
    async fn register_worker(
        &self,
        request: Request<v1::RegisterWorkerRequest>,
    ) -> Result<Response<v1::RegisterWorkerReply>, Status> {
        self.core.authorize(&request)?;
        let r = request.into_inner();
        let (session_token, profile) = self
            .core
            .register_worker(&r.run_id, &r.worker_id, &r.worker_kind, &r.profile)
            .await?;
        Ok(Response::new(v1::RegisterWorkerReply {
            session_token,
            profile,
            accepted_version: "framelane.v1".into(),
        }))
    }

    async fn publish_steps(
        &self,
        request: Request<Streaming<v1::Step>>,
    ) -> Result<Response<v1::PublishReply>, Status> {
        self.core.authorize(&request)?;
        let outcome = self
            .core
            .publish(request.into_inner(), |step: v1::Step| {
                let run_id = step.run_id.clone();
                Item::Step(step_from_v1(step).map_err(|reason| (run_id, reason)))
            })
            .await?;
        Ok(Response::new(reply(outcome)))
    }

    async fn publish_episodes(
        &self,
        request: Request<Streaming<v1::Episode>>,
    ) -> Result<Response<v1::PublishReply>, Status> {
        self.core.authorize(&request)?;
        let outcome = self
            .core
            .publish(request.into_inner(), |episode: v1::Episode| {
                let run_id = episode.run_id.clone();
                Item::Episode(episode_from_v1(episode).map_err(|reason| (run_id, reason)))
            })
            .await?;
        Ok(Response::new(reply(outcome)))
    }

    type SubscribeStepsStream = ReceiverStream<Result<v1::StoredStep, Status>>;

    async fn subscribe_steps(
        &self,
        request: Request<v1::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStepsStream>, Status> {
        self.core.authorize(&request)?;
        let r = request.into_inner();
        let stream = subscribe(
            &self.core,
            r.run_id,
            r.since_seq,
            Feed::Steps,
            |rows| match rows {
                Rows::Steps(rows) => rows
                    .into_iter()
                    .map(|row| v1::StoredStep {
                        seq: row.seq,
                        frame_kind: row.frame_kind.unwrap_or_default(),
                        step: Some(step_to_v1(row.record)),
                    })
                    .collect(),
                Rows::Episodes(_) => Vec::new(),
            },
        )?;
        Ok(Response::new(stream))
    }

    type SubscribeEpisodesStream = ReceiverStream<Result<v1::StoredEpisode, Status>>;

    async fn subscribe_episodes(
        &self,
        request: Request<v1::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeEpisodesStream>, Status> {
        self.core.authorize(&request)?;
        let r = request.into_inner();
        let stream = subscribe(
            &self.core,
            r.run_id,
            r.since_seq,
            Feed::Episodes,
            |rows| match rows {
                Rows::Episodes(rows) => rows
                    .into_iter()
                    .map(|row| v1::StoredEpisode {
                        seq: row.seq,
                        episode: Some(v1::Episode {
                            run_id: row.record.run_id,
                            worker_id: row.record.worker_id,
                            agent_id: row.record.agent_id,
                            episode: row.record.episode,
                            total_reward: row.record.total_reward,
                            steps: row.record.steps,
                            terminated: row.record.terminated,
                            truncated: row.record.truncated,
                            metadata_json: row.record.metadata_json,
                            producer_unix_ns: row.record.producer_unix_ns,
                            session_token: String::new(),
                        }),
                    })
                    .collect(),
                Rows::Steps(_) => Vec::new(),
            },
        )?;
        Ok(Response::new(stream))
    }

    async fn list_runs(
        &self,
        request: Request<v1::ListRunsRequest>,
    ) -> Result<Response<v1::ListRunsReply>, Status> {
        self.core.authorize(&request)?;
        Ok(Response::new(list_runs(&self.core).await?))
    }

    type WatchRunsStream = BoxStream<v1::ListRunsReply>;

    async fn watch_runs(
        &self,
        request: Request<v1::ListRunsRequest>,
    ) -> Result<Response<Self::WatchRunsStream>, Status> {
        self.core.authorize(&request)?;
        let core = Arc::clone(&self.core);
        let (sender, receiver) = mpsc::channel(4);
        tokio::spawn(async move {
            let mut last = None;
            loop {
                let reply = match list_runs(&core).await {
                    Ok(reply) => reply,
                    Err(status) => {
                        let _ = sender.send(Err(status)).await;
                        return;
                    }
                };
                if last.as_ref() != Some(&reply) {
                    last = Some(reply.clone());
                    if sender.send(Ok(reply)).await.is_err() {
                        return;
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                    _ = sender.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    type ControlStream = BoxStream<v1::ControlMessage>;

    async fn control(
        &self,
        request: Request<Streaming<v1::ControlMessage>>,
    ) -> Result<Response<Self::ControlStream>, Status> {
        self.core.authorize(&request)?;
        let stream = forward_control(
            &self.core,
            request.into_inner(),
            |m: &v1::ControlMessage| m.run_id.clone(),
            |run_id, event| v1::ControlMessage {
                run_id,
                event: Some(to_v1_event(event)),
            },
        );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_frame(
        &self,
        request: Request<v1::FrameRequest>,
    ) -> Result<Response<v1::Frame>, Status> {
        self.core.authorize(&request)?;
        let r = request.into_inner();
        let reader = self.core.reader()?;
        let found = tokio::task::spawn_blocking(move || -> Result<Option<v1::Frame>, Status> {
            let Some(entry) = reader
                .frame(&r.run_id, r.episode, r.step)
                .map_err(|e| match e {
                    crate::store::StoreError::UnknownRun(run) => {
                        Status::not_found(format!("unknown run {run:?}"))
                    }
                    other => Status::internal(other.to_string()),
                })?
            else {
                return video_frame(&reader, &r.run_id, r.episode, r.step);
            };
            let content = match entry.kind {
                FrameKind::Inline => match (
                    crate::bus::RawPixelFormat::from_label(&entry.format),
                    entry.data,
                ) {
                    (Some(format), Some(pixels)) => v1::frame::Content::Raw(v1::RawFrame {
                        width: entry.width,
                        height: entry.height,
                        format: super::convert::pixel_format_to_v1(format) as i32,
                        pixels,
                    }),
                    (None, Some(data)) => v1::frame::Content::Encoded(v1::EncodedImage {
                        codec: entry.format,
                        data,
                    }),
                    _ => return Err(Status::data_loss("the stored frame has no pixels")),
                },
                FrameKind::Image(codec) => {
                    let data = std::fs::read(&entry.location)
                        .map_err(|e| Status::data_loss(format!("{}: {e}", entry.location)))?;
                    v1::frame::Content::Encoded(v1::EncodedImage {
                        codec: codec.name().into(),
                        data,
                    })
                }
                FrameKind::Reference | FrameKind::Video => {
                    v1::frame::Content::Reference(entry.location)
                }
            };
            Ok(Some(v1::Frame {
                content: Some(content),
            }))
        })
        .await
        .map_err(|_| Status::internal("frame lookup failed"))??;
        found
            .map(Response::new)
            .ok_or_else(|| Status::not_found("no frame was kept for this step"))
    }

    async fn health(
        &self,
        request: Request<v1::HealthRequest>,
    ) -> Result<Response<v1::HealthReply>, Status> {
        self.core.authorize(&request)?;
        Ok(Response::new(v1::HealthReply {
            pid: u64::from(std::process::id()),
            started_unix_ns: self.core.started_unix_ns(),
            listen_address: self.core.listen_address(),
            healthy: self.core.healthy(),
            queue_depth: self.core.queue_depth() as u64,
            queue_capacity: self.core.queue_capacity() as u64,
        }))
    }
}

fn reply(outcome: PublishOutcome) -> v1::PublishReply {
    v1::PublishReply {
        accepted: outcome.accepted,
        dropped: outcome.dropped,
        first_error: outcome.first_error,
        frames_shed: outcome.frames_shed,
    }
}

/// Forwards control events for the worker's run (named in its first message) to its stream,
/// for either API's message types.
pub(crate) fn forward_control<I, O>(
    core: &IngestCore,
    mut incoming: Streaming<I>,
    run_of: impl Fn(&I) -> String + Send + 'static,
    make: impl Fn(String, ControlEvent) -> O + Send + 'static,
) -> ReceiverStream<Result<O, Status>>
where
    I: Send + 'static,
    O: Send + 'static,
{
    let mut events = core.control_events();
    let (sender, receiver) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut run_filter = String::new();
        loop {
            tokio::select! {
                message = incoming.next() => match message {
                    Some(Ok(m)) => run_filter = run_of(&m),
                    _ => return,
                },
                event = events.recv() => match event {
                    Ok((run_id, event)) if run_id.is_empty() || run_id == run_filter => {
                        if sender.send(Ok(make(run_filter.clone(), event))).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    });
    ReceiverStream::new(receiver)
}

fn to_v1_event(event: ControlEvent) -> v1::control_message::Event {
    match event {
        ControlEvent::GrantSteps(n) => v1::control_message::Event::GrantSteps(n),
        ControlEvent::Pause => v1::control_message::Event::Pause(true),
        ControlEvent::Resume => v1::control_message::Event::Resume(true),
        ControlEvent::MaxRateHz(hz) => v1::control_message::Event::MaxRateHz(hz),
    }
}

async fn list_runs(core: &Arc<IngestCore>) -> Result<v1::ListRunsReply, Status> {
    let reader = core.reader()?;
    let runs = tokio::task::spawn_blocking(move || reader.list_runs())
        .await
        .map_err(|_| Status::internal("run listing failed"))?
        .map_err(|e| Status::internal(e.to_string()))?;
    Ok(v1::ListRunsReply {
        runs: runs
            .into_iter()
            .map(|run| v1::RunSummary {
                steps_per_second: core.rate_of(&run.run_id),
                status: if core.rate_of(&run.run_id) > 0.0 {
                    "active".into()
                } else {
                    "idle".into()
                },
                run_id: run.run_id,
                profile: run.profile,
                steps: run.steps,
                episodes: run.episodes,
                last_seen_unix_ns: run.last_seen_unix_ns,
                shed: run.shed.into_iter().collect(),
            })
            .collect(),
    })
}

/// The frame of a step recorded to video, decoded (RGBA), for runs whose profile asks for video.
fn video_frame(
    reader: &crate::store::StoreReader,
    run_id: &str,
    episode: u64,
    step: u64,
) -> Result<Option<v1::Frame>, Status> {
    let Some(location) = reader
        .video_frame(run_id, episode, step)
        .map_err(|e| Status::internal(e.to_string()))?
    else {
        return Ok(None);
    };
    let mut video = crate::replay::VideoReader::open(
        std::path::Path::new(&location.path),
        location.fps,
        location.gop,
    )
    .map_err(|e| Status::data_loss(e.to_string()))?;
    let picture = video
        .frame(location.frame_no)
        .map_err(|e| Status::data_loss(e.to_string()))?;
    Ok(picture.map(|p| v1::Frame {
        content: Some(v1::frame::Content::Raw(v1::RawFrame {
            width: p.width,
            height: p.height,
            format: v1::PixelFormat::Rgba8 as i32,
            pixels: p.rgba,
        })),
    }))
}
