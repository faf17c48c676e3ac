//! `gymgui.trainer.TrainerService`: MOSAIC's trainer API, served on the same port and mapped
//! into the same store and gate. Run management stays MOSAIC's job (UNIMPLEMENTED here).

use std::sync::Arc;

use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::proto::gymgui;
use super::stream::{forward_control, subscribe_episodes, subscribe_steps, BoxStream, Item};
use super::wire::{
    control_to_mosaic, episode_from_mosaic, step_from_mosaic, stored_episode_to_mosaic,
    stored_step_to_mosaic, timestamp,
};
use super::IngestCore;

/// The service; cheap to clone.
#[derive(Clone)]
pub struct TrainerService {
    pub(crate) core: Arc<IngestCore>,
}

fn unimplemented(method: &str) -> Status {
    Status::unimplemented(format!(
        "{method}: run management belongs to MOSAIC; framelane only records telemetry"
    ))
}

#[tonic::async_trait]
impl gymgui::trainer_service_server::TrainerService for TrainerService {
    async fn register_worker(
        &self,
        request: Request<gymgui::RegisterWorkerRequest>,
    ) -> Result<Response<gymgui::RegisterWorkerResponse>, Status> {
        self.core.authorize(&request)?;
        let r = request.into_inner();
        let (session_token, _) = self
            .core
            .register_worker(&r.run_id, &r.worker_id, &r.worker_kind, "")
            .await?;
        Ok(Response::new(gymgui::RegisterWorkerResponse {
            accepted_version: if r.proto_version.is_empty() {
                "1".into()
            } else {
                r.proto_version
            },
            session_token,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<gymgui::HeartbeatRequest>,
    ) -> Result<Response<gymgui::HeartbeatResponse>, Status> {
        self.core.authorize(&request)?;
        Ok(Response::new(gymgui::HeartbeatResponse {}))
    }

    async fn get_health(
        &self,
        request: Request<gymgui::HealthCheckRequest>,
    ) -> Result<Response<gymgui::HealthCheckResponse>, Status> {
        self.core.authorize(&request)?;
        Ok(Response::new(gymgui::HealthCheckResponse {
            pid: u64::from(std::process::id()),
            started_at: Some(timestamp(self.core.started_unix_ns())),
            listen_address: self.core.listen_address(),
            healthy: self.core.healthy(),
        }))
    }

    async fn publish_run_steps(
        &self,
        request: Request<Streaming<gymgui::RunStep>>,
    ) -> Result<Response<gymgui::PublishTelemetryResponse>, Status> {
        self.core.authorize(&request)?;
        let core = &self.core;
        let outcome = core
            .publish(request.into_inner(), |step: gymgui::RunStep| {
                let run_id = step.run_id.clone();
                let keep_payload = !core.profile_hint(&run_id).drop_render_payload;
                Item::Step(step_from_mosaic(step, keep_payload).map_err(|reason| (run_id, reason)))
            })
            .await?;
        Ok(Response::new(gymgui::PublishTelemetryResponse {
            accepted: outcome.accepted,
            dropped: outcome.dropped,
        }))
    }

    async fn publish_run_episodes(
        &self,
        request: Request<Streaming<gymgui::RunEpisode>>,
    ) -> Result<Response<gymgui::PublishTelemetryResponse>, Status> {
        self.core.authorize(&request)?;
        let outcome = self
            .core
            .publish(request.into_inner(), |episode: gymgui::RunEpisode| {
                let run_id = episode.run_id.clone();
                Item::Episode(episode_from_mosaic(episode).map_err(|reason| (run_id, reason)))
            })
            .await?;
        Ok(Response::new(gymgui::PublishTelemetryResponse {
            accepted: outcome.accepted,
            dropped: outcome.dropped,
        }))
    }

    type StreamRunStepsStream = ReceiverStream<Result<gymgui::RunStep, Status>>;

    async fn stream_run_steps(
        &self,
        request: Request<gymgui::StreamStepsRequest>,
    ) -> Result<Response<Self::StreamRunStepsStream>, Status> {
        self.core.authorize(&request)?;
        let r = request.into_inner();
        let stream =
            subscribe_steps(&self.core, r.run_id, r.since_seq, stored_step_to_mosaic).await?;
        Ok(Response::new(stream))
    }

    type StreamRunEpisodesStream = ReceiverStream<Result<gymgui::RunEpisode, Status>>;

    async fn stream_run_episodes(
        &self,
        request: Request<gymgui::StreamEpisodesRequest>,
    ) -> Result<Response<Self::StreamRunEpisodesStream>, Status> {
        self.core.authorize(&request)?;
        let r = request.into_inner();
        let stream =
            subscribe_episodes(&self.core, r.run_id, r.since_seq, stored_episode_to_mosaic).await?;
        Ok(Response::new(stream))
    }

    type ControlStreamStream = BoxStream<gymgui::ControlEvent>;

    async fn control_stream(
        &self,
        request: Request<Streaming<gymgui::ControlEvent>>,
    ) -> Result<Response<Self::ControlStreamStream>, Status> {
        self.core.authorize(&request)?;
        let stream = forward_control(
            &self.core,
            request.into_inner(),
            |m: &gymgui::ControlEvent| m.run_id.clone(),
            control_to_mosaic,
        );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn submit_run(
        &self,
        _: Request<gymgui::SubmitRunRequest>,
    ) -> Result<Response<gymgui::SubmitRunResponse>, Status> {
        Err(unimplemented("SubmitRun"))
    }

    async fn cancel_run(
        &self,
        _: Request<gymgui::CancelRunRequest>,
    ) -> Result<Response<gymgui::CancelRunResponse>, Status> {
        Err(unimplemented("CancelRun"))
    }

    async fn list_runs(
        &self,
        _: Request<gymgui::ListRunsRequest>,
    ) -> Result<Response<gymgui::ListRunsResponse>, Status> {
        Err(unimplemented("ListRuns"))
    }

    type WatchRunsStream = BoxStream<gymgui::RunRecord>;

    async fn watch_runs(
        &self,
        _: Request<gymgui::WatchRunsRequest>,
    ) -> Result<Response<Self::WatchRunsStream>, Status> {
        Err(unimplemented("WatchRuns"))
    }
}
