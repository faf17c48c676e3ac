//! `framelane.v1.Telemetry`: our own API.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::proto::framelane_v1 as v1;
use super::stream::{
    forward_control, subscribe_episodes, subscribe_steps, BoxStream, Item, PublishOutcome,
};
use super::wire::{
    self, control_to_v1, episode_from_v1, rgba_frame_to_v1, step_from_v1, stored_episode_to_v1,
    stored_step_to_v1,
};
use super::{ControlEvent, IngestCore};
use crate::bus::FrameOwner;
use crate::replay::StepFrame;

/// The service; cheap to clone.
#[derive(Clone)]
pub struct TelemetryService {
    pub(crate) core: Arc<IngestCore>,
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
        Ok(Response::new(publish_reply_to_v1(outcome)))
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
        Ok(Response::new(publish_reply_to_v1(outcome)))
    }

    type SubscribeStepsStream = ReceiverStream<Result<v1::StoredStep, Status>>;

    async fn subscribe_steps(
        &self,
        request: Request<v1::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStepsStream>, Status> {
        self.core.authorize(&request)?;
        let r = request.into_inner();
        let stream = subscribe_steps(&self.core, r.run_id, r.since_seq, stored_step_to_v1).await?;
        Ok(Response::new(stream))
    }

    type SubscribeEpisodesStream = ReceiverStream<Result<v1::StoredEpisode, Status>>;

    async fn subscribe_episodes(
        &self,
        request: Request<v1::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeEpisodesStream>, Status> {
        self.core.authorize(&request)?;
        let r = request.into_inner();
        let stream =
            subscribe_episodes(&self.core, r.run_id, r.since_seq, stored_episode_to_v1).await?;
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
            control_to_v1,
        );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn send_control(
        &self,
        request: Request<v1::ControlMessage>,
    ) -> Result<Response<v1::SendControlReply>, Status> {
        use v1::control_message::Event;
        self.core.authorize(&request)?;
        let message = request.into_inner();
        wire::check_run_id(&message.run_id).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let event = match message.event {
            Some(Event::MaxRateHz(hz)) => ControlEvent::MaxRateHz(hz),
            Some(Event::Pause(true)) => ControlEvent::Pause,
            Some(Event::Resume(true)) => ControlEvent::Resume,
            Some(Event::GrantSteps(_)) => {
                return Err(Status::invalid_argument(
                    "grant_steps is the daemon's own flow control; a viewer may send max_rate_hz, pause or resume",
                ))
            }
            Some(Event::Pause(false)) | Some(Event::Resume(false)) | None => {
                return Err(Status::invalid_argument(
                    "a control message needs an event: max_rate_hz, pause or resume",
                ))
            }
        };
        let listeners = self.core.control_listeners(&message.run_id);
        self.core.send_control(&message.run_id, event);
        Ok(Response::new(v1::SendControlReply {
            listeners: listeners.min(u32::MAX as usize) as u32,
        }))
    }

    async fn get_frame(
        &self,
        request: Request<v1::FrameRequest>,
    ) -> Result<Response<v1::Frame>, Status> {
        self.core.authorize(&request)?;
        let r = request.into_inner();
        let core = Arc::clone(&self.core);
        let found = tokio::task::spawn_blocking(move || {
            let owner = FrameOwner::new(&r.worker_id, &r.agent_id);
            core.resolve_frame(&r.run_id, owner, r.episode, r.step)
        })
        .await
        .map_err(|_| Status::internal("frame lookup failed"))??;
        match found {
            StepFrame::Found { frame, .. } => Ok(Response::new(rgba_frame_to_v1(&frame))),
            StepFrame::Missing(why) => Err(Status::not_found(why)),
        }
    }

    async fn register_clip(
        &self,
        request: Request<v1::ClipRecord>,
    ) -> Result<Response<v1::RegisterClipReply>, Status> {
        self.core.authorize(&request)?;
        let clip = wire::clip_from_v1(request.into_inner())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let created = self.core.register_clip(clip).await?;
        Ok(Response::new(v1::RegisterClipReply { created }))
    }

    async fn list_clips(
        &self,
        request: Request<v1::ListClipsRequest>,
    ) -> Result<Response<v1::ListClipsReply>, Status> {
        self.core.authorize(&request)?;
        let limit = match request.get_ref().limit {
            0 => 100,
            n => n.min(10_000) as usize,
        };
        let reader = self.core.reader().await?;
        let clips = tokio::task::spawn_blocking(move || reader.clips(limit))
            .await
            .map_err(|_| Status::internal("clip listing failed"))?
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(v1::ListClipsReply {
            clips: clips.into_iter().map(wire::clip_to_v1).collect(),
        }))
    }

    async fn health(
        &self,
        request: Request<v1::HealthRequest>,
    ) -> Result<Response<v1::HealthReply>, Status> {
        self.core.authorize(&request)?;
        let problems = self.core.problems();
        Ok(Response::new(v1::HealthReply {
            pid: u64::from(std::process::id()),
            started_unix_ns: self.core.started_unix_ns(),
            listen_address: self.core.listen_address(),
            healthy: problems.is_empty(),
            problems,
            queue_depth: self.core.queue_depth() as u64,
            queue_capacity: self.core.queue_capacity() as u64,
            metrics: {
                let mut families = Vec::new();
                crate::metrics::MetricSource::collect(self.core.as_ref(), &mut families);
                crate::metrics::flatten(&families).into_iter().collect()
            },
        }))
    }
}

async fn list_runs(core: &Arc<IngestCore>) -> Result<v1::ListRunsReply, Status> {
    let reader = core.reader().await?;
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

/// Our reply to a publish stream.
fn publish_reply_to_v1(outcome: PublishOutcome) -> v1::PublishReply {
    v1::PublishReply {
        accepted: outcome.accepted,
        dropped: outcome.dropped,
        first_error: outcome.first_error,
        frames_shed: outcome.frames_shed,
        duplicates: outcome.duplicates,
    }
}
