//! The stream machinery both gRPC APIs share: reading a publish stream (convert, gate, queue,
//! then wait for the commit), following a run's committed rows for subscribers, and forwarding
//! control events to a worker's control stream. The API files only map their messages.

use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Status, Streaming};

use super::wire::FrameSource;
use super::{ControlEvent, IngestCore, IngestError, STEP_CHUNK};
use crate::budget::{Charge, WhenFull};
use crate::bus::{shed_kind, EpisodeRecord, StepRecord};
use crate::store::{EpisodeRow, StepRow, StoreCommand, StoreReader};

/// Rows fetched per query while a subscriber catches up.
const SUBSCRIBE_PAGE: usize = 512;
/// Items buffered per subscriber before its stream waits for it.
const SUBSCRIBE_BUFFER: usize = 256;

/// A boxed server stream, as both APIs return them.
pub(crate) type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Reads a client stream until it ends or the daemon shuts down (then it stops reading: what
/// was received is committed and acknowledged).
pub(crate) struct ClientStream<M> {
    stream: Streaming<M>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    index: u64,
    idle_timeout: std::time::Duration,
}

impl<M> ClientStream<M> {
    pub(crate) fn new(core: &IngestCore, stream: Streaming<M>) -> Self {
        Self {
            stream,
            shutdown: core.shutdown_signal(),
            index: 0,
            idle_timeout: core.idle_stream_timeout,
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
            message = tokio::time::timeout(self.idle_timeout, self.stream.message()) => match message {
                Ok(message) => message?,
                Err(_) => {
                    return Err(Status::deadline_exceeded(format!(
                        "no complete message for {} s after item {}: the stream is ended (what was received before is kept)",
                        self.idle_timeout.as_secs_f64(),
                        self.index
                    )))
                }
            },
            _ = self.shutdown.changed() => None,
        };
        Ok(message.map(|m| {
            self.index += 1;
            (self.index, m)
        }))
    }
}

/// A converted message of a publish stream; Err carries (run id, reason).
pub(crate) enum Item {
    Step(Result<(StepRecord, FrameSource), (String, IngestError)>),
    Episode(Result<EpisodeRecord, (String, IngestError)>),
}

/// What a publish stream achieved, for its reply.
pub(crate) struct PublishOutcome {
    /// Steps and episodes committed, re-sends included (they were committed before).
    pub accepted: u64,
    /// Of those, steps recognised as re-sends by their worker_seq (not stored again).
    pub duplicates: u64,
    pub dropped: u64,
    pub frames_shed: u64,
    pub first_error: String,
}

/// What one publish stream has done so far.
#[derive(Debug)]
pub struct PublishTally {
    /// Sent to the writer, not yet known committed.
    pending: u64,
    /// Steps accepted but not yet handed to the writer.
    chunk: Vec<StepRecord>,
    /// The chunk's bytes held against the memory ceiling (they go to the writer with it).
    chunk_charge: Charge,
    /// The writer's failed-batch count when the stream started.
    failed_batches_at_start: u64,
    /// This stream's tag on its store commands: a command the store refuses fails this
    /// stream's publish, no other.
    origin: crate::store::Origin,
    pub dropped: u64,
    pub frames_shed: u64,
    pub first_error: Option<String>,
}

impl PublishTally {
    /// A tally for a stream starting now.
    pub(crate) fn new(core: &IngestCore) -> Self {
        Self {
            pending: 0,
            chunk: Vec::with_capacity(STEP_CHUNK),
            chunk_charge: Charge::none(),
            failed_batches_at_start: core
                .writer_stats
                .failed_batches
                .load(std::sync::atomic::Ordering::Relaxed),
            origin: core.next_origin(),
            dropped: 0,
            frames_shed: 0,
            first_error: None,
        }
    }

    /// Keeps the first thing worth telling the worker (the step itself was accepted).
    pub(crate) fn note(&mut self, message: String) {
        if self.first_error.is_none() {
            self.first_error = Some(message);
        }
    }

    fn refuse(&mut self, index: u64, reason: String) {
        self.dropped += 1;
        if self.first_error.is_none() {
            self.first_error = Some(format!("item {index} of the stream: {reason}"));
        }
    }
}

/// Bytes a step holds while it waits for the writer: its payloads and strings, and a fixed
/// part for the record itself.
fn step_bytes(step: &StepRecord) -> u64 {
    let payload = |p: &Option<crate::bus::Payload>| match p {
        Some(crate::bus::Payload::Json(text)) => text.len(),
        Some(crate::bus::Payload::Raw(bytes)) => bytes.len(),
        None => 0,
    };
    let strings = step.run_id.len()
        + step.worker_id.len()
        + step.agent_id.len()
        + step.extra_json.as_ref().map_or(0, String::len);
    (std::mem::size_of::<StepRecord>()
        + strings
        + payload(&step.action)
        + payload(&step.observation)) as u64
}

/// A deadline that never comes in practice: steps always wait for room (they are never shed).
fn far_deadline() -> std::time::Instant {
    std::time::Instant::now() + std::time::Duration::from_secs(24 * 3600)
}

impl IngestCore {
    /// Reads a publish stream to its end: converts each message, gates and queues it, then
    /// waits for the commit and reports what was accepted.
    pub(crate) async fn publish<M>(
        &self,
        stream: tonic::Streaming<M>,
        convert: impl Fn(M) -> Item,
    ) -> Result<PublishOutcome, Status> {
        use tracing::Instrument;
        let mut tally = PublishTally::new(self);
        let mut stream = ClientStream::new(self, stream);
        let drained: Result<(), Status> = async {
            while let Some((index, message)) = stream.next_or_flush(self, &mut tally).await? {
                match convert(message) {
                    Item::Step(converted) => self.accept_step(index, converted, &mut tally).await?,
                    Item::Episode(converted) => {
                        self.accept_episode(index, converted, &mut tally).await?
                    }
                }
            }
            Ok(())
        }
        .instrument(tracing::info_span!("ingest_publish"))
        .await;
        let (accepted, dropped, duplicates) = self.finish_publish(&mut tally).await?;
        drained?;
        Ok(PublishOutcome {
            accepted,
            duplicates,
            dropped,
            frames_shed: tally.frames_shed,
            first_error: tally.first_error.unwrap_or_default(),
        })
    }

    /// Counts and reports an item refused as malformed; the stream goes on.
    fn refuse(
        &self,
        run_id: &str,
        index: u64,
        reason: &IngestError,
        kind: &'static str,
        tally: &mut PublishTally,
    ) {
        tracing::warn!(run = %run_id, index, %reason, kind, "item refused");
        let run = if run_id.is_empty() {
            "(no run id)"
        } else {
            run_id
        };
        self.shed.add(run, kind, 1);
        tally.refuse(index, reason.to_string());
    }

    /// Gates, converts and queues one step; scalars wait for room in the store queue.
    pub(crate) async fn accept_step(
        &self,
        index: u64,
        converted: Result<(StepRecord, FrameSource), (String, IngestError)>,
        tally: &mut PublishTally,
    ) -> Result<(), Status> {
        let (mut step, frame) = match converted {
            Ok(ok) => ok,
            Err((run_id, reason)) => {
                self.refuse(&run_id, index, &reason, shed_kind::INVALID_STEP, tally);
                return Ok(());
            }
        };
        let profile = self.ensure_run(&step.run_id).await?;
        if profile.drop_observation {
            step.observation = None;
        }
        self.gate_frame(&step, frame, &profile, tally).await;
        let bytes = step_bytes(&step);
        let charge = match self.budget.try_charge(bytes) {
            Some(charge) => charge,
            None => {
                // Hand over what this stream holds first: waiting while holding it could wait
                // for ever if every stream did the same.
                self.hand_over_steps(tally).await?;
                self.budget
                    .charge(bytes, WhenFull::Wait(far_deadline()))
                    .await
                    .ok_or_else(|| {
                        Status::resource_exhausted(
                            "the daemon's memory ceiling had no room for a step for a day",
                        )
                    })?
            }
        };
        tally.chunk_charge.absorb(charge);
        tally.chunk.push(step);
        if tally.chunk.len() >= STEP_CHUNK {
            self.hand_over_steps(tally).await?;
        }
        Ok(())
    }

    /// Hands the stream's accepted steps to the writer, waiting for room in its queue.
    pub(crate) async fn hand_over_steps(&self, tally: &mut PublishTally) -> Result<(), Status> {
        if tally.chunk.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut tally.chunk, Vec::with_capacity(STEP_CHUNK));
        let charge = std::mem::replace(&mut tally.chunk_charge, Charge::none());
        let n = chunk.len() as u64;
        self.store
            .send(StoreCommand::Steps {
                origin: tally.origin,
                steps: chunk,
                charge,
            })
            .await
            .map_err(|_| Status::unavailable("the store writer has stopped"))?;
        tally.pending += n;
        Ok(())
    }

    /// Queues one episode.
    pub(crate) async fn accept_episode(
        &self,
        index: u64,
        converted: Result<EpisodeRecord, (String, IngestError)>,
        tally: &mut PublishTally,
    ) -> Result<(), Status> {
        match converted {
            Ok(episode) => {
                self.ensure_run(&episode.run_id).await?;
                if let Some(video) = &self.video {
                    video.episode_ended(&episode.run_id, &episode.worker_id, episode.episode);
                }
                self.store
                    .send(StoreCommand::Episode {
                        origin: tally.origin,
                        episode,
                    })
                    .await
                    .map_err(|_| Status::unavailable("the store writer has stopped"))?;
                tally.pending += 1;
            }
            Err((run_id, reason)) => {
                self.refuse(&run_id, index, &reason, shed_kind::INVALID_EPISODE, tally)
            }
        }
        Ok(())
    }

    /// Waits for the commit of everything the stream sent; returns (accepted, dropped,
    /// re-sent duplicates among the accepted).
    pub(crate) async fn finish_publish(
        &self,
        tally: &mut PublishTally,
    ) -> Result<(u64, u64, u64), Status> {
        self.hand_over_steps(tally).await?;
        let duplicates =
            crate::store::writer_barrier(&self.store, tally.failed_batches_at_start, tally.origin)
                .await
                .map_err(|err| Status::internal(format!("the store could not commit: {err}")))?;
        Ok((tally.pending, tally.dropped, duplicates))
    }
}

/// Which committed rows a subscription follows.
#[derive(Clone, Copy)]
enum Feed {
    Steps,
    Episodes,
}

/// Streams a run's committed rows from `since_seq` on, then new ones as commits announce them.
/// The page query runs on the blocking pool; the stream waits for a slow subscriber.
async fn subscribe<T, F>(
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
    let reader = core.reader().await?;
    let asked = run_id.clone();
    let (reader, exists) = tokio::task::spawn_blocking(move || {
        let exists = reader.run_exists(&asked);
        (reader, exists)
    })
    .await
    .map_err(|_| Status::internal("run lookup failed"))?;
    if !exists.map_err(|e| Status::internal(e.to_string()))? {
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
enum Rows {
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

/// Streams a run's committed steps from `since_seq` on, then new ones, each mapped by `map`.
pub(crate) async fn subscribe_steps<T: Send + 'static>(
    core: &Arc<IngestCore>,
    run_id: String,
    since_seq: u64,
    map: fn(StepRow) -> T,
) -> Result<ReceiverStream<Result<T, Status>>, Status> {
    subscribe(
        core,
        run_id,
        since_seq,
        Feed::Steps,
        move |rows| match rows {
            Rows::Steps(rows) => rows.into_iter().map(map).collect(),
            Rows::Episodes(_) => Vec::new(),
        },
    )
    .await
}

/// Streams a run's committed episodes from `since_seq` on, then new ones, each mapped by `map`.
pub(crate) async fn subscribe_episodes<T: Send + 'static>(
    core: &Arc<IngestCore>,
    run_id: String,
    since_seq: u64,
    map: fn(EpisodeRow) -> T,
) -> Result<ReceiverStream<Result<T, Status>>, Status> {
    subscribe(
        core,
        run_id,
        since_seq,
        Feed::Episodes,
        move |rows| match rows {
            Rows::Episodes(rows) => rows.into_iter().map(map).collect(),
            Rows::Steps(_) => Vec::new(),
        },
    )
    .await
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
    let listeners = core.control_listener_counts();
    let mut shutdown = core.shutdown_signal();
    tokio::spawn(async move {
        let mut run_filter = String::new();
        // Held while the stream lives: counts it for its run.
        let mut listening: Option<super::ControlListener> = None;
        loop {
            tokio::select! {
                message = incoming.next() => match message {
                    Some(Ok(m)) => {
                        let run = run_of(&m);
                        if run != run_filter || listening.is_none() {
                            let (guard, cap) = listeners.listen(&run);
                            listening = Some(guard);
                            // A worker that starts listening late keeps to the cap in force.
                            if let Some(hz) = cap {
                                let event = make(run.clone(), ControlEvent::MaxRateHz(hz));
                                if sender.send(Ok(event)).await.is_err() {
                                    return;
                                }
                            }
                        }
                        run_filter = run;
                    }
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
                // Control streams never end by themselves: the daemon ends them when it stops,
                // so a clean shutdown does not wait for its workers to hang up.
                () = async {
                    let _ = shutdown.wait_for(|stopping| *stopping).await;
                } => return,
            }
        }
    });
    ReceiverStream::new(receiver)
}
