//! `gymgui.trainer.TrainerService`: MOSAIC's trainer API, served on the same port and mapped
//! into the same store and gate. Run management stays MOSAIC's job (UNIMPLEMENTED here).

use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::convert::{episode_from_mosaic, step_from_mosaic, timestamp};
use super::framelane_api::{forward_control, subscribe, Feed, Rows};
use super::proto::gymgui;
use super::{ControlEvent, IngestCore, Item};
use crate::bus::Payload;

/// The service; cheap to clone.
#[derive(Clone)]
pub struct TrainerService {
    pub(crate) core: Arc<IngestCore>,
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn json_of(payload: Option<Payload>) -> String {
    match payload {
        Some(Payload::Json(text)) => text,
        _ => String::new(),
    }
}

fn extra_field<'a>(extra: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    extra.get(key)
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
        let stream = subscribe(
            &self.core,
            r.run_id,
            r.since_seq,
            Feed::Steps,
            |rows| match rows {
                Rows::Steps(rows) => rows
                    .into_iter()
                    .map(|row| {
                        let extra: serde_json::Value = row
                            .record
                            .extra_json
                            .as_deref()
                            .and_then(|t| serde_json::from_str(t).ok())
                            .unwrap_or_default();
                        let text = |key: &str| {
                            extra_field(&extra, key)
                                .and_then(|v| v.as_str())
                                .unwrap_or_default()
                                .to_owned()
                        };
                        let number = |key: &str| {
                            extra_field(&extra, key)
                                .and_then(|v| v.as_u64())
                                .unwrap_or_default()
                        };
                        let step = row.record;
                        gymgui::RunStep {
                            run_id: step.run_id,
                            episode_index: step.episode,
                            step_index: step.step,
                            action_json: json_of(step.action),
                            observation_json: json_of(step.observation),
                            reward: step.reward,
                            terminated: step.terminated,
                            truncated: step.truncated,
                            timestamp: (step.producer_unix_ns != 0)
                                .then(|| timestamp(step.producer_unix_ns)),
                            policy_label: text("policy_label"),
                            backend: text("backend"),
                            seq_id: row.seq,
                            agent_id: step.agent_id,
                            render_hint_json: text("render_hint_json"),
                            frame_ref: String::new(),
                            payload_version: number("payload_version") as u32,
                            render_payload_json: text("render_payload_json"),
                            episode_seed: number("episode_seed"),
                            worker_id: step.worker_id,
                        }
                    })
                    .collect(),
                Rows::Episodes(_) => Vec::new(),
            },
        )?;
        Ok(Response::new(stream))
    }

    type StreamRunEpisodesStream = ReceiverStream<Result<gymgui::RunEpisode, Status>>;

    async fn stream_run_episodes(
        &self,
        request: Request<gymgui::StreamEpisodesRequest>,
    ) -> Result<Response<Self::StreamRunEpisodesStream>, Status> {
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
                    .map(|row| gymgui::RunEpisode {
                        run_id: row.record.run_id,
                        episode_index: row.record.episode,
                        total_reward: row.record.total_reward,
                        steps: row.record.steps,
                        terminated: row.record.terminated,
                        truncated: row.record.truncated,
                        metadata_json: row.record.metadata_json,
                        timestamp: (row.record.producer_unix_ns != 0)
                            .then(|| timestamp(row.record.producer_unix_ns)),
                        seq_id: row.seq,
                        agent_id: row.record.agent_id,
                        worker_id: row.record.worker_id,
                    })
                    .collect(),
                Rows::Steps(_) => Vec::new(),
            },
        )?;
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
            |run_id, event| gymgui::ControlEvent {
                run_id,
                event: Some(match event {
                    ControlEvent::GrantSteps(n) => gymgui::control_event::Event::GrantSteps(n),
                    ControlEvent::Pause => gymgui::control_event::Event::Pause(true),
                    ControlEvent::Resume => gymgui::control_event::Event::Resume(true),
                    ControlEvent::MaxRateHz(hz) => gymgui::control_event::Event::MaxRateHz(hz),
                }),
            },
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
