//! Telemetry-first replay end to end: a daemon records a run whose profile asks for video
//! (one file per episode, encoded while the run goes on), and the resolver finds the exact
//! frame of random steps in the files; other runs fall back to snapshots and inline frames.

mod common;

use std::time::{Duration, Instant};

use common::{runtime, step, telemetry_client, ScratchDir};
use framelane::bench::pattern::{numbered_frame, read_number};
use framelane_core::bus::FrameOwner;
use framelane_core::daemon::{Daemon, DaemonConfig};
use framelane_core::encode::ServiceConfig;
use framelane_core::ingest::proto::framelane_v1 as v1;
use framelane_core::replay::{FrameOrigin, FrameResolver, StepFrame};
use framelane_core::store::StoreReader;

const W: u32 = 320;
const H: u32 = 240;
const STEPS_PER_EPISODE: u64 = 60;

const PROFILES: &str = "
profiles:
  vid:
    capture_frames: true
    keep_every_n_frames: 1
    frame_compression: video
    jpeg_quality: 85
    drop_render_payload: true
    drop_observation: false
    batch_rows: 100
    flush_interval_ms: 20
    video_codec: h264
    video_fps: 30
  snap:
    capture_frames: true
    keep_every_n_frames: 1
    frame_compression: png
    jpeg_quality: 85
    drop_render_payload: true
    drop_observation: false
    batch_rows: 100
    flush_interval_ms: 20
  raw5:
    capture_frames: true
    keep_every_n_frames: 5
    frame_compression: none
    jpeg_quality: 85
    drop_render_payload: true
    drop_observation: false
    batch_rows: 100
    flush_interval_ms: 20
";

/// Step `i` of `run` carrying a frame that shows the number `i`.
fn framed_step(run: &str, i: u64) -> v1::Step {
    let mut s = step(run, i);
    s.episode = i / STEPS_PER_EPISODE;
    let mut rgb = vec![0; (W * H * 3) as usize];
    numbered_frame(i, W, H, &mut rgb);
    s.frame = Some(v1::Frame {
        content: Some(v1::frame::Content::Raw(v1::RawFrame {
            width: W,
            height: H,
            format: v1::PixelFormat::Rgb8 as i32,
            pixels: rgb,
        })),
    });
    s
}

fn episode(run: &str, e: u64) -> v1::Episode {
    v1::Episode {
        run_id: run.into(),
        worker_id: "w0".into(),
        agent_id: "a0".into(),
        episode: e,
        total_reward: e as f64,
        steps: STEPS_PER_EPISODE,
        terminated: true,
        truncated: false,
        metadata_json: "{}".into(),
        producer_unix_ns: 1,
        session_token: String::new(),
    }
}

fn publish(
    addr: std::net::SocketAddr,
    run: &'static str,
    profile: &str,
    steps: u64,
    episodes: u64,
) {
    runtime().block_on(async {
        let mut client = telemetry_client(addr).await;
        common::register(addr, run, profile).await;
        let reply = client
            .publish_steps(tokio_stream::iter(
                (0..steps).map(move |i| framed_step(run, i)),
            ))
            .await
            .expect("publish")
            .into_inner();
        assert_eq!(reply.accepted, steps, "{reply:?}");
        let reply = client
            .publish_episodes(tokio_stream::iter(
                (0..episodes).map(move |e| episode(run, e)),
            ))
            .await
            .expect("episodes")
            .into_inner();
        assert_eq!(reply.accepted, episodes);
    });
}

/// The number shown by the frame `GetFrame` returns for `request`.
fn fetch_number(addr: std::net::SocketAddr, request: v1::FrameRequest) -> u64 {
    runtime().block_on(async {
        let frame = telemetry_client(addr)
            .await
            .get_frame(request)
            .await
            .expect("GetFrame")
            .into_inner();
        match frame.content {
            Some(v1::frame::Content::Raw(raw)) => read_number(&raw.pixels, W, H),
            other => panic!("expected raw pixels, got {other:?}"),
        }
    })
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A daemon on `dir` with this file's profiles, waiting generously for the encoder so every
/// frame is encoded on a busy machine.
fn daemon_with_profiles(dir: &ScratchDir) -> Daemon {
    let profiles = dir.path().join("profiles.yaml");
    std::fs::write(&profiles, PROFILES).expect("profiles");
    let mut config = DaemonConfig::new(dir.path().to_owned());
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.profiles_file = Some(profiles);
    config.encode = ServiceConfig {
        max_wait: Duration::from_secs(2),
        ..ServiceConfig::default()
    };
    Daemon::start(config).expect("daemon")
}

#[test]
fn recorded_video_replays_the_exact_frame_of_random_steps_and_other_runs_fall_back() {
    let dir = ScratchDir::new("replay");
    let daemon = daemon_with_profiles(&dir);
    let addr = daemon.local_addr();
    let db = daemon.database_path().to_owned();

    // Three episodes; the third has no episode record yet (still running).
    let steps = STEPS_PER_EPISODE * 3;
    publish(addr, "vrun", "vid", steps, 2);
    publish(addr, "rawrun", "raw5", 20, 0);
    let reader = StoreReader::open(&db).expect("reader");
    wait_for("the two ended episodes' files", || {
        let videos = reader.videos("vrun").expect("videos");
        videos.iter().filter(|v| v.status == "finished").count() == 2
    });
    let videos = reader.videos("vrun").expect("videos");
    assert_eq!(videos.len(), 3, "{videos:?}");
    assert_eq!(videos[0].encoder, "libx264");
    assert_eq!(videos[2].status, "recording");
    for v in &videos[..2] {
        assert_eq!(v.frames, STEPS_PER_EPISODE);
        assert!(std::path::Path::new(&v.path).exists());
    }

    let mut resolver = FrameResolver::open(&db, 64 << 20).expect("resolver");
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..40 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let i = seed % (STEPS_PER_EPISODE * 2);
        match resolver
            .frame("vrun", i / STEPS_PER_EPISODE, i)
            .expect("resolve")
        {
            StepFrame::Found { origin, frame } => {
                assert_eq!(origin, FrameOrigin::Video);
                assert_eq!((frame.width, frame.height), (W, H));
                assert_eq!(read_number(&frame.rgba, W, H), i, "step {i}");
            }
            StepFrame::Missing(why) => panic!("step {i}: {why}"),
        }
    }
    // Over gRPC, GetFrame decodes a video step too (remote viewers, the live view's fallback).
    let fetched = runtime().block_on(async {
        telemetry_client(addr)
            .await
            .get_frame(v1::FrameRequest {
                run_id: "vrun".into(),
                episode: 1,
                step: 77,
                ..Default::default()
            })
            .await
            .expect("GetFrame of a video step")
            .into_inner()
    });
    match fetched.content {
        Some(v1::frame::Content::Raw(raw)) => {
            assert_eq!((raw.width, raw.height), (W, H));
            assert_eq!(read_number(&raw.pixels, W, H), 77);
        }
        other => panic!("expected raw pixels, got {other:?}"),
    }

    // The running episode's file already holds its first fragments.
    let first_running = STEPS_PER_EPISODE * 2;
    match resolver.frame("vrun", 2, first_running).expect("resolve") {
        StepFrame::Found { frame, .. } => {
            assert_eq!(read_number(&frame.rgba, W, H), first_running)
        }
        StepFrame::Missing(why) => panic!("running episode: {why}"),
    }

    // Inline frames of another profile; a thinned step says it has no frame.
    match resolver.frame("rawrun", 0, 10).expect("resolve") {
        StepFrame::Found { origin, frame } => {
            assert_eq!(origin, FrameOrigin::Inline);
            assert_eq!(read_number(&frame.rgba, W, H), 10);
        }
        StepFrame::Missing(why) => panic!("inline: {why}"),
    }
    match resolver.frame("rawrun", 0, 11).expect("resolve") {
        StepFrame::Missing(why) => assert!(why.contains("step 11"), "{why}"),
        StepFrame::Found { .. } => panic!("step 11 was thinned"),
    }
    assert!(resolver.cache().bytes() <= 64 << 20);

    // Stopping the daemon finishes the running episode's file: all of it replays.
    daemon.shutdown();
    let videos = StoreReader::open(&db)
        .expect("reader")
        .videos("vrun")
        .expect("videos");
    assert!(videos.iter().all(|v| v.status == "finished"), "{videos:?}");
    let mut resolver = FrameResolver::open(&db, 16 << 20).expect("resolver");
    for i in [steps - 1, first_running + 17, first_running + 1] {
        match resolver.frame("vrun", 2, i).expect("resolve") {
            StepFrame::Found { frame, .. } => assert_eq!(read_number(&frame.rgba, W, H), i),
            StepFrame::Missing(why) => panic!("step {i}: {why}"),
        }
    }
}

#[test]
fn an_odd_sized_frame_recorded_to_video_comes_back_at_its_own_size() {
    use framelane::bench::pattern::psnr_rgb_rgba;
    const S: u32 = 85;
    let dir = ScratchDir::new("replay-odd");
    let daemon = daemon_with_profiles(&dir);
    let addr = daemon.local_addr();
    let picture = |i: u64| -> Vec<u8> {
        let mut rgb = Vec::with_capacity((S * S * 3) as usize);
        for y in 0..S {
            for x in 0..S {
                rgb.extend_from_slice(&[(x * 3) as u8, (y * 3) as u8, (i * 8) as u8]);
            }
        }
        rgb
    };
    const N: u64 = 30;
    runtime().block_on(async {
        let mut client = telemetry_client(addr).await;
        common::register(addr, "odd", "vid").await;
        let steps = (0..N).map(move |i| {
            let mut s = step("odd", i);
            s.episode = 0;
            s.frame = Some(v1::Frame {
                content: Some(v1::frame::Content::Raw(v1::RawFrame {
                    width: S,
                    height: S,
                    format: v1::PixelFormat::Rgb8 as i32,
                    pixels: picture(i),
                })),
            });
            s
        });
        let reply = client
            .publish_steps(tokio_stream::iter(steps))
            .await
            .expect("publish")
            .into_inner();
        assert_eq!(reply.accepted, N, "{reply:?}");
        let mut end = episode("odd", 0);
        end.steps = N;
        client
            .publish_episodes(tokio_stream::iter([end]))
            .await
            .expect("episode");
    });
    let reader = StoreReader::open(daemon.database_path()).expect("reader");
    wait_for("the 85x85 episode's file", || {
        reader
            .videos("odd")
            .expect("videos")
            .iter()
            .any(|v| v.status == "finished")
    });
    let videos = reader.videos("odd").expect("videos");
    assert_eq!(videos[0].frames, N, "every frame recorded: {videos:?}");
    assert_eq!((videos[0].width, videos[0].height), (S, S));
    let mut resolver = FrameResolver::open(daemon.database_path(), 16 << 20).expect("resolver");
    for i in [0, 13, N - 1] {
        match resolver.frame("odd", 0, i).expect("resolve") {
            StepFrame::Found { frame, .. } => {
                assert_eq!((frame.width, frame.height), (S, S), "step {i}");
                let db = psnr_rgb_rgba(&picture(i), &frame.rgba);
                assert!(db > 30.0, "step {i}: PSNR {db:.1} dB");
            }
            StepFrame::Missing(why) => panic!("step {i}: {why}"),
        }
    }
}

/// Publishes `steps` framed steps of `run` in one stream, as fast as the daemon takes them,
/// and returns the reply.
fn publish_burst(
    addr: std::net::SocketAddr,
    run: &'static str,
    profile: &str,
    steps: u64,
) -> v1::PublishReply {
    runtime().block_on(async {
        let mut client = telemetry_client(addr).await;
        common::register(addr, run, profile).await;
        let all: Vec<v1::Step> = (0..steps).map(|i| framed_step(run, i)).collect();
        client
            .publish_steps(tokio_stream::iter(all))
            .await
            .expect("publish")
            .into_inner()
    })
}

#[test]
fn a_burst_keeps_every_frame_under_a_wait_profile_and_counts_what_a_shed_profile_sheds() {
    const BURST_PROFILES: &str = "
profiles:
  keep:
    capture_frames: true
    keep_every_n_frames: 1
    frame_compression: video
    jpeg_quality: 85
    drop_render_payload: true
    drop_observation: false
    batch_rows: 100
    flush_interval_ms: 20
    video_codec: av1
    when_behind: wait
  live:
    capture_frames: true
    keep_every_n_frames: 1
    frame_compression: video
    jpeg_quality: 85
    drop_render_payload: true
    drop_observation: false
    batch_rows: 100
    flush_interval_ms: 20
    video_codec: av1
    when_behind: shed
";
    let dir = ScratchDir::new("replay-burst");
    let profiles = dir.path().join("profiles.yaml");
    std::fs::write(&profiles, BURST_PROFILES).expect("profiles");
    let mut config = DaemonConfig::new(dir.path().to_owned());
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.profiles_file = Some(profiles);
    // One encoder with a four-frame queue and the default short wait: far behind a burst.
    config.encode = ServiceConfig {
        workers: 1,
        queue_frames: 4,
        ..ServiceConfig::default()
    };
    let daemon = Daemon::start(config).expect("daemon");
    let addr = daemon.local_addr();
    const BURST: u64 = 240;

    let live = publish_burst(addr, "live", "live", BURST);
    assert_eq!(live.accepted, BURST, "{live:?}");
    let kept = publish_burst(addr, "keep", "keep", BURST);
    assert_eq!(kept.accepted, BURST, "{kept:?}");
    assert_eq!(
        kept.frames_shed, 0,
        "a wait profile slows its worker instead: {kept:?}"
    );

    let runs = runtime().block_on(common::list_runs(addr));
    let shed_of = |run: &str| {
        runs.iter()
            .find(|r| r.run_id == run)
            .map(|r| r.shed.clone())
            .unwrap_or_default()
    };
    let behind = shed_of("live")
        .get("frame_encoder_behind")
        .copied()
        .unwrap_or(0);
    assert!(
        behind > 0,
        "the control: a shed profile must shed in this burst, else the test proves nothing ({live:?}, {:?})",
        shed_of("live")
    );
    assert_eq!(
        live.frames_shed, behind,
        "the reply counts the stream's shed frames"
    );
    assert!(shed_of("keep").is_empty(), "{:?}", shed_of("keep"));

    let db = daemon.database_path().to_owned();
    daemon.shutdown();
    let videos = StoreReader::open(&db)
        .expect("reader")
        .videos("keep")
        .expect("videos");
    let recorded: u64 = videos.iter().map(|v| v.frames).sum();
    assert_eq!(
        recorded, BURST,
        "every frame of the burst recorded: {videos:?}"
    );
}

#[test]
fn the_agents_of_one_run_keep_their_own_frames_of_the_same_steps() {
    const N: u64 = 30;
    let dir = ScratchDir::new("replay-agents");
    let daemon = daemon_with_profiles(&dir);
    let addr = daemon.local_addr();
    // Agent "left" shows the number of its step, agent "right" that number plus 1000, at the
    // same (episode, step): once into video, once inline.
    for (run, profile) in [("duo-video", "vid"), ("duo-inline", "raw5")] {
        runtime().block_on(async {
            let mut client = telemetry_client(addr).await;
            common::register(addr, run, profile).await;
            let steps = (0..N).flat_map(|i| {
                [("left", i), ("right", i + 1000)].map(|(agent, shown)| {
                    let mut s = framed_step(run, shown);
                    s.step = i;
                    s.episode = 0;
                    s.agent_id = agent.into();
                    s
                })
            });
            let reply = client
                .publish_steps(tokio_stream::iter(steps.collect::<Vec<_>>()))
                .await
                .expect("publish")
                .into_inner();
            assert_eq!(reply.accepted, 2 * N, "{reply:?}");
            let mut end = episode(run, 0);
            end.steps = N;
            client
                .publish_episodes(tokio_stream::iter([end]))
                .await
                .expect("episode");
        });
    }
    let fetched = |run: &str, agent: &str, step: u64| {
        fetch_number(
            addr,
            v1::FrameRequest {
                run_id: run.into(),
                agent_id: agent.into(),
                episode: 0,
                step,
                ..Default::default()
            },
        )
    };
    assert_eq!(fetched("duo-inline", "left", 10), 10);
    assert_eq!(fetched("duo-inline", "right", 10), 1010);
    let db = daemon.database_path().to_owned();
    daemon.shutdown();
    let videos = StoreReader::open(&db)
        .expect("reader")
        .videos("duo-video")
        .expect("videos");
    assert_eq!(videos.len(), 2, "one file per agent: {videos:?}");
    assert!(videos.iter().all(|v| v.frames == N), "{videos:?}");
    let mut resolver = FrameResolver::open(&db, 16 << 20).expect("resolver");
    for i in [0, 7, N - 1] {
        for (agent, shown) in [("left", i), ("right", i + 1000)] {
            match resolver
                .owner_frame("duo-video", FrameOwner::agent(agent), 0, i)
                .expect("resolve")
            {
                StepFrame::Found { origin, frame } => {
                    assert_eq!(origin, FrameOrigin::Video);
                    assert_eq!(read_number(&frame.rgba, W, H), shown, "{agent} step {i}");
                }
                StepFrame::Missing(why) => panic!("{agent} step {i}: {why}"),
            }
        }
        // Inline frames at steps divisible by 5 (the profile keeps every fifth).
        if i % 5 == 0 {
            match resolver
                .owner_frame("duo-inline", FrameOwner::agent("right"), 0, i)
                .expect("resolve")
            {
                StepFrame::Found { frame, .. } => {
                    assert_eq!(read_number(&frame.rgba, W, H), i + 1000)
                }
                StepFrame::Missing(why) => panic!("right step {i}: {why}"),
            }
        }
    }
}

#[test]
fn the_workers_of_one_run_keep_their_own_frames_and_files_of_the_same_steps() {
    const N: u64 = 30;
    let dir = ScratchDir::new("replay-workers");
    let daemon = daemon_with_profiles(&dir);
    let addr = daemon.local_addr();
    // Two workers of one run count their episodes and steps alike (same agent): w1 shows the
    // number of its step, w2 that number plus 1000. w1's episode ends halfway through w2's.
    for (run, profile) in [
        ("pair-video", "vid"),
        ("pair-png", "snap"),
        ("pair-inline", "raw5"),
    ] {
        runtime().block_on(async {
            let mut client = telemetry_client(addr).await;
            common::register(addr, run, profile).await;
            let of = |worker: &str, i: u64, shown: u64| {
                let mut s = framed_step(run, shown);
                s.worker_id = worker.into();
                s.step = i;
                s.episode = 0;
                s
            };
            let first: Vec<v1::Step> = (0..N / 2)
                .flat_map(|i| [of("w1", i, i), of("w2", i, i + 1000)])
                .chain((N / 2..N).map(|i| of("w1", i, i)))
                .collect();
            let reply = client
                .publish_steps(tokio_stream::iter(first))
                .await
                .expect("publish")
                .into_inner();
            assert_eq!(reply.accepted, N + N / 2, "{reply:?}");
            let mut end = episode(run, 0);
            end.worker_id = "w1".into();
            end.steps = N;
            client
                .publish_episodes(tokio_stream::iter([end.clone()]))
                .await
                .expect("w1's episode");
            // w2 goes on in its own episode 0 after w1's has ended.
            let rest: Vec<v1::Step> = (N / 2..N).map(|i| of("w2", i, i + 1000)).collect();
            let reply = client
                .publish_steps(tokio_stream::iter(rest))
                .await
                .expect("publish")
                .into_inner();
            assert_eq!(reply.accepted, N / 2, "{reply:?}");
            end.worker_id = "w2".into();
            client
                .publish_episodes(tokio_stream::iter([end]))
                .await
                .expect("w2's episode");
        });
    }
    let fetched = |run: &str, worker: &str, step: u64| {
        fetch_number(
            addr,
            v1::FrameRequest {
                run_id: run.into(),
                worker_id: worker.into(),
                episode: 0,
                step,
                ..Default::default()
            },
        )
    };
    assert_eq!(fetched("pair-inline", "w1", 10), 10);
    assert_eq!(fetched("pair-inline", "w2", 10), 1010);
    assert_eq!(fetched("pair-png", "w1", 3), 3);
    assert_eq!(fetched("pair-png", "w2", 3), 1003);
    let db = daemon.database_path().to_owned();
    daemon.shutdown();
    let videos = StoreReader::open(&db)
        .expect("reader")
        .videos("pair-video")
        .expect("videos");
    let owners: Vec<(&str, u32, u64)> = videos
        .iter()
        .map(|v| (v.worker_id.as_str(), v.segment, v.frames))
        .collect();
    assert_eq!(
        owners,
        vec![("w1", 0, N), ("w2", 0, N)],
        "one whole file per worker; w1's episode end did not cut w2's: {videos:?}"
    );
    assert_ne!(videos[0].path, videos[1].path);
    let mut resolver = FrameResolver::open(&db, 16 << 20).expect("resolver");
    for run in ["pair-video", "pair-png", "pair-inline"] {
        for i in [0, 5, N / 2, N - 5] {
            for (worker, shown) in [("w1", i), ("w2", i + 1000)] {
                let owner = FrameOwner::new(worker, "a0");
                match resolver.owner_frame(run, owner, 0, i).expect("resolve") {
                    StepFrame::Found { frame, .. } => {
                        assert_eq!(
                            read_number(&frame.rgba, W, H),
                            shown,
                            "{run} {worker} step {i}"
                        )
                    }
                    StepFrame::Missing(why) => panic!("{run} {worker} step {i}: {why}"),
                }
            }
        }
    }
    // The steps list each worker's own frame kind, one row per step (no join fan-out).
    let steps = StoreReader::open(&db)
        .expect("reader")
        .steps_since("pair-png", 0, 1000)
        .expect("steps");
    assert_eq!(steps.len() as u64, 2 * N);
}
