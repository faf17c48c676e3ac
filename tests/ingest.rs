//! Durable lane end to end: real gRPC server on a socket, real SQLite files, both APIs.

mod common;

use std::time::Duration;

use common::{
    output_within, runtime, step, telemetry_client, trainer_client, wait_until, wait_until_async,
    ScratchDir, ServeProcess,
};
use framelane_core::daemon::{Daemon, DaemonConfig};
use framelane_core::ingest::proto::framelane_v1 as v1;
use framelane_core::ingest::proto::gymgui;
use framelane_core::store::StoreReader;
use tokio_stream::StreamExt;

fn daemon(dir: &ScratchDir) -> Daemon {
    let mut config = DaemonConfig::new(dir.path().to_owned());
    config.listen = "127.0.0.1:0".parse().expect("addr");
    Daemon::start(config).expect("start daemon")
}

#[test]
fn two_runs_stream_at_once_and_the_store_matches_exactly_and_subscribers_resume() {
    const N: u64 = 4000;
    const M: u64 = 40;
    let dir = ScratchDir::new("e2e");
    let daemon = daemon(&dir);
    let addr = daemon.local_addr();
    let rt = runtime();
    rt.block_on(async {
        let publish = |run: &'static str| async move {
            let mut client = telemetry_client(addr).await;
            let steps = tokio_stream::iter((0..N).map(move |i| step(run, i)));
            let reply = client
                .publish_steps(steps)
                .await
                .expect("publish steps")
                .into_inner();
            let episodes = tokio_stream::iter((0..M).map(move |e| v1::Episode {
                run_id: run.into(),
                episode: e,
                total_reward: e as f64 * 2.0,
                steps: 100,
                terminated: true,
                metadata_json: format!("{{\"seed\":{e}}}"),
                ..Default::default()
            }));
            let ep_reply = client
                .publish_episodes(episodes)
                .await
                .expect("publish episodes")
                .into_inner();
            (reply, ep_reply)
        };
        let ((a, ae), (b, be)) = tokio::join!(publish("run-a"), publish("run-b"));
        for (reply, ep) in [(a, ae), (b, be)] {
            assert_eq!((reply.accepted, reply.dropped), (N, 0), "{reply:?}");
            assert_eq!((ep.accepted, ep.dropped), (M, 0));
        }
    });

    let reader = StoreReader::open(daemon.database_path()).expect("reader");
    for run in ["run-a", "run-b"] {
        let rows = reader.steps_since(run, 1, 1_000_000).expect("steps");
        assert_eq!(rows.len() as u64, N, "{run}: step count");
        for (i, row) in rows.iter().enumerate() {
            let expected = step(run, i as u64);
            assert_eq!(row.seq, i as u64 + 1);
            assert_eq!(row.record.step, expected.step, "{run}: order");
            assert_eq!(row.record.reward, expected.reward);
            assert_eq!(row.record.episode, expected.episode);
            assert_eq!(row.record.terminated, expected.terminated);
            assert_eq!(row.record.producer_unix_ns, expected.producer_unix_ns);
            assert_eq!(
                row.record.action,
                Some(framelane_core::bus::Payload::Json(format!(
                    "{{\"a\":{}}}",
                    i % 4
                )))
            );
        }
        let episodes = reader.episodes_since(run, 1, 1000).expect("episodes");
        assert_eq!(episodes.len() as u64, M);
        assert!(episodes
            .iter()
            .enumerate()
            .all(|(e, row)| row.record.episode == e as u64
                && row.record.total_reward == e as f64 * 2.0));
    }
    let runs = reader.list_runs().expect("runs");
    assert_eq!(runs.len(), 2);
    assert!(runs
        .iter()
        .all(|r| r.steps == N && r.episodes == M && r.profile == "telemetry_only"));

    rt.block_on(async {
        let mut client = telemetry_client(addr).await;
        let k = 1234;
        let mut stream = client
            .subscribe_steps(v1::SubscribeRequest {
                run_id: "run-a".into(),
                since_seq: k,
            })
            .await
            .expect("subscribe")
            .into_inner();
        for seq in k..=N {
            let item = stream.next().await.expect("item").expect("ok");
            assert_eq!(item.seq, seq);
            assert_eq!(item.step.expect("step").step, seq - 1);
        }
        assert!(
            tokio::time::timeout(Duration::from_millis(300), stream.next())
                .await
                .is_err(),
            "nothing beyond the committed rows"
        );
        // Live tail: new commits arrive on the open subscription.
        let reply = client
            .publish_steps(tokio_stream::iter((N..N + 5).map(|i| step("run-a", i))))
            .await
            .expect("more")
            .into_inner();
        assert_eq!(reply.accepted, 5);
        for seq in N + 1..=N + 5 {
            let item = tokio::time::timeout(Duration::from_secs(5), stream.next())
                .await
                .expect("live item in time")
                .expect("item")
                .expect("ok");
            assert_eq!(item.seq, seq);
        }
        let missing = client
            .subscribe_steps(v1::SubscribeRequest {
                run_id: "nope".into(),
                since_seq: 1,
            })
            .await;
        assert_eq!(missing.err().map(|s| s.code()), Some(tonic::Code::NotFound));
    });
    daemon.shutdown();
    let reader =
        StoreReader::open(&dir.path().join(framelane_core::store::DATABASE_FILE)).expect("reopen");
    assert_eq!(reader.integrity_check().expect("check"), "ok");
}

#[test]
fn bad_input_gets_a_clear_status_and_the_daemon_keeps_serving() {
    let dir = ScratchDir::new("bad");
    let daemon = daemon(&dir);
    let addr = daemon.local_addr();
    runtime().block_on(async {
        let mut client = telemetry_client(addr).await;
        // Over the 64 MiB message limit.
        let mut huge = step("big", 0);
        huge.frame = Some(v1::Frame {
            content: Some(v1::frame::Content::Encoded(v1::EncodedImage {
                codec: "png".into(),
                data: vec![0; 70 << 20],
            })),
        });
        let status = client
            .publish_steps(tokio_stream::iter(vec![huge]))
            .await
            .expect_err("over the limit");
        assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
        assert!(status.message().contains("too large"), "{status:?}");

        // Malformed JSON and a frame of the wrong size: refused one by one, the rest kept.
        let mut bad_json = step("mixed", 1);
        bad_json.action = Some(v1::Payload {
            content: Some(v1::payload::Content::Json("{oops".into())),
        });
        let mut bad_frame = step("mixed", 2);
        bad_frame.frame = Some(v1::Frame {
            content: Some(v1::frame::Content::Raw(v1::RawFrame {
                width: 4,
                height: 4,
                format: v1::PixelFormat::Rgb8 as i32,
                pixels: vec![0; 7],
            })),
        });
        let reply = client
            .publish_steps(tokio_stream::iter(vec![
                step("mixed", 0),
                bad_json,
                bad_frame,
                step("mixed", 3),
            ]))
            .await
            .expect("publish")
            .into_inner();
        assert_eq!((reply.accepted, reply.dropped), (2, 2));
        assert!(
            reply.first_error.contains("item 2")
                && reply.first_error.contains("action.json is not valid JSON"),
            "{}",
            reply.first_error
        );

        // The daemon still serves.
        let reply = client
            .publish_steps(tokio_stream::iter((0..10).map(|i| step("after", i))))
            .await
            .expect("still serving")
            .into_inner();
        assert_eq!(reply.accepted, 10);
        let health = client
            .health(v1::HealthRequest {})
            .await
            .expect("health")
            .into_inner();
        assert!(health.healthy);

        let unknown_profile = client
            .register_worker(v1::RegisterWorkerRequest {
                run_id: "r".into(),
                worker_id: "w".into(),
                worker_kind: "t".into(),
                profile: "nonsense".into(),
            })
            .await
            .expect_err("unknown profile");
        assert_eq!(unknown_profile.code(), tonic::Code::InvalidArgument);
        assert!(
            unknown_profile.message().contains("nonsense")
                && unknown_profile.message().contains("box2d")
        );
    });
    let runs = StoreReader::open(daemon.database_path())
        .expect("reader")
        .list_runs()
        .expect("runs");
    let mixed = runs
        .iter()
        .find(|r| r.run_id == "mixed")
        .expect("mixed run");
    assert_eq!(mixed.shed.get("invalid_step"), Some(&2));
}

#[test]
fn non_loopback_listening_requires_a_token() {
    let dir = ScratchDir::new("token");
    let mut config = DaemonConfig::new(dir.path().to_owned());
    config.listen = "0.0.0.0:0".parse().expect("addr");
    let refused = Daemon::start(config.clone())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(refused.contains("needs a token"), "{refused}");

    config.token = Some("s3cret".into());
    let refused = Daemon::start(config.clone())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        refused.contains("needs TLS") && refused.contains("--tls-cert"),
        "the token must not travel in clear text: {refused}"
    );
    config.allow_plaintext = true;
    let daemon = Daemon::start(config).expect("start with token");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], daemon.local_addr().port()));
    runtime().block_on(async {
        let mut client = telemetry_client(addr).await;
        let status = client
            .list_runs(v1::ListRunsRequest {})
            .await
            .expect_err("no token");
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        let mut request = tonic::Request::new(v1::ListRunsRequest {});
        request
            .metadata_mut()
            .insert("authorization", "Bearer s3cret".parse().expect("header"));
        client.list_runs(request).await.expect("with token");
        let mut trainer = trainer_client(addr).await;
        let status = trainer
            .get_health(gymgui::HealthCheckRequest {})
            .await
            .expect_err("MOSAIC API needs it too");
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
    });
}

#[test]
fn broken_profile_files_are_refused_with_file_line_and_key_and_the_last_good_set_stays() {
    let dir = ScratchDir::new("profiles");
    let file = dir.path().join("profiles.yaml");
    std::fs::write(&file, "profiles:\n  box2d:\n    keep_every_n_frame: 3\n").expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_framelane"))
        .args(["serve", "--listen", "127.0.0.1:0", "--profiles"])
        .arg(&file)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .expect("serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!(
            "{}:3: profiles.box2d.keep_every_n_frame: unknown field",
            file.display()
        )),
        "{stderr}"
    );

    std::fs::write(
        &file,
        "profiles:\n  mine:\n    capture_frames: true\n    frame_compression: png\n",
    )
    .expect("write");
    let (serve, log) =
        ServeProcess::start_logged(dir.path(), &["--profiles", &file.display().to_string()]);
    let register = |profile: &str| {
        runtime().block_on(async {
            let mut client = telemetry_client(serve.addr).await;
            client
                .register_worker(v1::RegisterWorkerRequest {
                    run_id: format!("run-{profile}"),
                    worker_id: "w".into(),
                    worker_kind: "t".into(),
                    profile: profile.into(),
                })
                .await
                .map(|r| r.into_inner().profile)
        })
    };
    assert_eq!(register("mine").expect("profile from the file"), "mine");
    assert!(register("second").is_err(), "not defined yet");

    // A good change is picked up while the daemon runs.
    std::fs::write(
        &file,
        "profiles:\n  mine:\n    capture_frames: true\n  second:\n    keep_every_n_frames: 2\n",
    )
    .expect("extend the file");
    let reloaded = wait_until(|| register("second").ok());
    assert_eq!(
        reloaded.as_deref(),
        Some("second"),
        "the changed file was reloaded"
    );
    assert!(
        log.wait_for(&["storage profiles reloaded"]).is_some(),
        "the reload is logged"
    );

    // A broken change is refused with the file and line, and the last good set stays.
    std::fs::write(&file, "profiles:\n  mine: [broken\n").expect("break the file");
    let named = file.display().to_string();
    let refusal = log.wait_for(&["not reloaded", &named]);
    assert!(refusal.is_some(), "the refusal names the file");
    let line_number = refusal.as_deref().and_then(|line| {
        let after = &line[line.find(&format!("{named}:"))? + named.len() + 1..];
        after.chars().next().filter(char::is_ascii_digit)
    });
    assert!(line_number.is_some(), "and the line: {refusal:?}");
    assert_eq!(register("second").expect("still in force"), "second");
    assert_eq!(register("mine").expect("still in force"), "mine");
    let status = serve.terminate();
    assert!(status.success(), "clean shutdown on SIGTERM: {status}");
}

/// A render payload JSON with an RGB frame whose pixel (x, y) is (x, y, step).
fn render_payload(width: usize, height: usize, step: u64) -> String {
    let rows: Vec<String> = (0..height)
        .map(|y| {
            format!(
                "[{}]",
                (0..width)
                    .map(|x| format!("[{x},{y},{}]", step % 256))
                    .collect::<Vec<_>>()
                    .join(",")
            )
        })
        .collect();
    format!("{{\"mode\":\"rgb_array\",\"rgb\":[{}]}}", rows.join(","))
}

#[test]
fn mosaic_workers_stream_through_the_trainer_api_into_the_store_and_the_gate() {
    let dir = ScratchDir::new("mosaic");
    let daemon = daemon(&dir);
    let addr = daemon.local_addr();
    runtime().block_on(async {
        let mut client = telemetry_client(addr).await;
        // "debug" keeps every frame as PNG.
        client
            .register_worker(v1::RegisterWorkerRequest {
                run_id: "mosaic-run".into(),
                worker_id: "w".into(),
                worker_kind: "mosaic".into(),
                profile: "debug".into(),
            })
            .await
            .expect("pick a profile");
        let mut trainer = trainer_client(addr).await;
        let registered = trainer
            .register_worker(gymgui::RegisterWorkerRequest {
                run_id: "mosaic-run".into(),
                worker_id: "w1".into(),
                worker_kind: "cleanrl".into(),
                proto_version: "1".into(),
                ..Default::default()
            })
            .await
            .expect("register")
            .into_inner();
        assert!(!registered.session_token.is_empty());
        let steps = (0..6u64).map(|i| gymgui::RunStep {
            run_id: "mosaic-run".into(),
            episode_index: 0,
            step_index: i,
            action_json: "1".into(),
            observation_json: "[0.1, 0.2]".into(),
            reward: 1.0,
            render_payload_json: render_payload(16, 12, i),
            policy_label: "ppo".into(),
            seq_id: i + 1,
            worker_id: "w1".into(),
            timestamp: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 5,
            }),
            ..Default::default()
        });
        let reply = trainer
            .publish_run_steps(tokio_stream::iter(steps))
            .await
            .expect("publish")
            .into_inner();
        assert_eq!((reply.accepted, reply.dropped), (6, 0));
        let episode = gymgui::RunEpisode {
            run_id: "mosaic-run".into(),
            episode_index: 0,
            total_reward: 6.0,
            steps: 6,
            terminated: true,
            ..Default::default()
        };
        let reply = trainer
            .publish_run_episodes(tokio_stream::iter(vec![episode]))
            .await
            .expect("episodes")
            .into_inner();
        assert_eq!(reply.accepted, 1);

        let mut stream = trainer
            .stream_run_steps(gymgui::StreamStepsRequest {
                run_id: "mosaic-run".into(),
                since_seq: 4,
            })
            .await
            .expect("stream")
            .into_inner();
        let item = stream.next().await.expect("item").expect("ok");
        assert_eq!(
            (item.seq_id, item.step_index, item.policy_label.as_str()),
            (4, 3, "ppo")
        );
        assert_eq!(item.timestamp.map(|t| t.seconds), Some(1_700_000_000));
        let unimplemented = trainer
            .submit_run(gymgui::SubmitRunRequest {})
            .await
            .expect_err("run management");
        assert_eq!(unimplemented.code(), tonic::Code::Unimplemented);
    });
    daemon.shutdown();

    let reader =
        StoreReader::open(&dir.path().join(framelane_core::store::DATABASE_FILE)).expect("reader");
    assert_eq!(
        reader
            .steps_since("mosaic-run", 1, 100)
            .expect("steps")
            .len(),
        6
    );
    for step in 0..6u64 {
        let frame = reader
            .frame("mosaic-run", 0, step)
            .expect("query")
            .expect("the gate kept every frame");
        assert_eq!(
            (frame.kind, frame.width, frame.height),
            (
                framelane_core::bus::FrameKind::Image(framelane_core::media::ImageCodec::Png),
                16,
                12
            )
        );
        let decoder = png::Decoder::new(std::io::BufReader::new(
            std::fs::File::open(&frame.location).expect("png file"),
        ));
        let mut png = decoder.read_info().expect("png header");
        let mut pixels = vec![0; png.output_buffer_size().expect("size")];
        png.next_frame(&mut pixels).expect("png pixels");
        assert_eq!(
            &pixels[..6],
            &[0, 0, step as u8, 1, 0, step as u8],
            "pixels of step {step}"
        );
    }
}

#[test]
fn a_non_finite_reward_costs_only_its_own_step_and_no_other_run_loses_a_row() {
    const N: u64 = 300;
    let dir = ScratchDir::new("nan");
    let mut config = DaemonConfig::new(dir.path().to_owned());
    config.listen = "127.0.0.1:0".parse().expect("addr");
    // One shared batch window for both streams: before non-finite values were refused at the
    // edge, the NaN step failed the whole batch, the other run's rows with it.
    config.batch = framelane_core::store::BatchPolicy {
        max_rows: 10_000,
        max_delay: Duration::from_millis(200),
    };
    let daemon = Daemon::start(config).expect("start daemon");
    let addr = daemon.local_addr();
    let bad = [10u64, 150, 151];
    runtime().block_on(async {
        let clean = async {
            let mut client = telemetry_client(addr).await;
            client
                .publish_steps(tokio_stream::iter((0..N).map(|i| step("clean", i))))
                .await
                .expect("clean run publishes")
                .into_inner()
        };
        let poisoned = async {
            let mut client = telemetry_client(addr).await;
            let steps = (0..N).map(|i| {
                let mut s = step("poisoned", i);
                s.reward = match i {
                    10 => f64::NAN,
                    150 => f64::INFINITY,
                    151 => f64::NEG_INFINITY,
                    _ => s.reward,
                };
                s
            });
            client
                .publish_steps(tokio_stream::iter(steps))
                .await
                .expect("the stream with bad steps is still served")
                .into_inner()
        };
        let (clean, poisoned) = tokio::join!(clean, poisoned);
        assert_eq!((clean.accepted, clean.dropped), (N, 0), "{clean:?}");
        assert_eq!(
            (poisoned.accepted, poisoned.dropped),
            (N - 3, 3),
            "{poisoned:?}"
        );
        assert!(
            poisoned.first_error.contains("item 11")
                && poisoned.first_error.contains("reward is NaN"),
            "the refusal names the item and the field: {}",
            poisoned.first_error
        );
    });
    let reader = StoreReader::open(daemon.database_path()).expect("reader");
    let clean = reader.steps_since("clean", 1, 10_000).expect("clean rows");
    assert_eq!(clean.len() as u64, N);
    let poisoned: Vec<u64> = reader
        .steps_since("poisoned", 1, 10_000)
        .expect("poisoned rows")
        .iter()
        .map(|r| r.record.step)
        .collect();
    let expected: Vec<u64> = (0..N).filter(|i| !bad.contains(i)).collect();
    assert_eq!(poisoned, expected, "every finite step stored, in order");
}

#[test]
fn a_step_the_database_refuses_fails_only_its_own_stream_and_the_shared_batch_commits() {
    const N: u64 = 300;
    let dir = ScratchDir::new("savepoint");
    let mut config = DaemonConfig::new(dir.path().to_owned());
    config.listen = "127.0.0.1:0".parse().expect("addr");
    // One shared batch window for both streams, as in a busy daemon.
    config.batch = framelane_core::store::BatchPolicy {
        max_rows: 10_000,
        max_delay: Duration::from_millis(300),
    };
    let daemon = Daemon::start(config).expect("start daemon");
    // A fault the database raises for one row, as a constraint or a full page would: before
    // each command had its savepoint, it rolled back the whole batch, the other run with it.
    rusqlite::Connection::open(daemon.database_path())
        .and_then(|c| {
            c.execute_batch(
                "CREATE TRIGGER refuse_one BEFORE INSERT ON steps WHEN NEW.step = 13 AND NEW.worker_id = 'w0' BEGIN SELECT RAISE(ABORT, 'step 13 refused by the database'); END",
            )
        })
        .expect("install the fault");
    let addr = daemon.local_addr();
    runtime().block_on(async {
        let bystander = async {
            let mut client = telemetry_client(addr).await;
            let steps = (0..N).map(|i| {
                let mut s = step("bystander", i);
                s.worker_id = "w1".into();
                s
            });
            client.publish_steps(tokio_stream::iter(steps)).await
        };
        let victim = async {
            let mut client = telemetry_client(addr).await;
            client
                .publish_steps(tokio_stream::iter((0..N).map(|i| step("victim", i))))
                .await
        };
        let (bystander, victim) = tokio::join!(bystander, victim);
        let bystander = bystander.expect("the other stream commits").into_inner();
        assert_eq!((bystander.accepted, bystander.dropped), (N, 0));
        let refused = victim.expect_err("the refused stream is told");
        assert!(
            refused
                .message()
                .contains("step 13 refused by the database"),
            "the error says why: {}",
            refused.message()
        );
    });
    let reader = StoreReader::open(daemon.database_path()).expect("reader");
    let bystander = reader.steps_since("bystander", 1, 10_000).expect("rows");
    assert_eq!(bystander.len() as u64, N, "no row of the other run is lost");
    // The refused chunk is gone as a whole, and the run's sequence numbers have no gap.
    let victim = reader.steps_since("victim", 1, 10_000).expect("rows");
    assert!(
        victim.iter().all(|r| r.record.step != 13) && (victim.len() as u64) < N,
        "the chunk holding step 13 was rolled back ({} rows)",
        victim.len()
    );
    let seqs: Vec<u64> = victim.iter().map(|r| r.seq).collect();
    let expected: Vec<u64> = (1..=victim.len() as u64).collect();
    assert_eq!(seqs, expected, "sequence numbers without a gap");
    let failed = daemon.core().map(|c| {
        c.writer_stats()
            .failed_commands
            .load(std::sync::atomic::Ordering::Relaxed)
    });
    assert_eq!(failed, Some(1));
}

/// A test CA and a server certificate it signed for 127.0.0.1 and localhost, made with the
/// openssl tool: (CA certificate, server certificate, server key).
fn test_pki(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    std::fs::create_dir_all(dir).expect("pki dir");
    let p = |name: &str| dir.join(name);
    let run = |args: &[&str]| {
        let out = output_within(
            std::process::Command::new("openssl")
                .current_dir(dir)
                .args(args),
            60,
        )
        .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=framelane-test-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "key.pem",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        p("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext.cnf");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "cert.pem",
    ]);
    (p("ca.pem"), p("cert.pem"), p("key.pem"))
}

#[test]
fn a_tls_daemon_serves_clients_that_trust_its_certificate_and_only_them() {
    let dir = ScratchDir::new("tls");
    let (ca, cert, key) = test_pki(&dir.path().join("pki"));
    let data = dir.path().join("data");
    let serve = ServeProcess::start(
        &data,
        &[
            "--token",
            "s3cret",
            "--tls-cert",
            cert.to_str().expect("utf-8"),
            "--tls-key",
            key.to_str().expect("utf-8"),
        ],
    );
    let addr = serve.addr.to_string();
    let health = |extra: &[&str]| {
        output_within(
            std::process::Command::new(env!("CARGO_BIN_EXE_framelane"))
                .args(["health", "--target", &addr, "--token", "s3cret"])
                .args(extra),
            30,
        )
        .expect("health returns")
    };
    // With the CA: TLS, the token accepted, Health answered.
    let out = health(&["--tls-ca", ca.to_str().expect("utf-8")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(reply["healthy"], true, "{reply}");
    // Plain HTTP/2 to a TLS listener gets nothing.
    let out = health(&[]);
    assert!(!out.status.success(), "a plaintext client was served");
    // A client that does not trust the certificate refuses the connection, saying why.
    let (other, _, _) = test_pki(&dir.path().join("other"));
    let out = health(&["--tls-ca", other.to_str().expect("utf-8")]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.to_lowercase().contains("certificate"),
        "an untrusted certificate is refused with a reason: {said}"
    );
    // A file that is not a certificate is refused before connecting, naming the flag.
    let out = health(&["--tls-ca", key.to_str().expect("utf-8")]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("--tls-ca") && said.contains("CERTIFICATE"),
        "{said}"
    );
    serve.kill9();
}

#[test]
fn numbered_steps_resent_after_a_kill_are_acknowledged_and_never_stored_twice() {
    let dir = ScratchDir::new("exactly-once");
    let numbered = |i: u64| {
        let mut s = step("once", i);
        s.worker_seq = i + 1;
        s
    };
    let publish = |addr: std::net::SocketAddr, range: std::ops::Range<u64>| {
        runtime().block_on(async {
            telemetry_client(addr)
                .await
                .publish_steps(tokio_stream::iter(range.map(numbered)))
                .await
                .expect("publish")
                .into_inner()
        })
    };
    let serve = ServeProcess::start(dir.path(), &[]);
    let reply = publish(serve.addr, 0..100);
    assert_eq!((reply.accepted, reply.duplicates), (100, 0));
    // A worker that lost its acknowledgement sends the last 50 again with 50 new ones.
    let reply = publish(serve.addr, 50..150);
    assert_eq!(
        (reply.accepted, reply.duplicates),
        (100, 50),
        "re-sends are acknowledged and counted"
    );
    // The daemon is killed; the worker re-sends from an older position after the restart: the
    // highest committed number survived with the rows.
    serve.kill9();
    let serve = ServeProcess::start(dir.path(), &[]);
    let reply = publish(serve.addr, 120..160);
    assert_eq!((reply.accepted, reply.duplicates), (40, 30));
    let reader =
        StoreReader::open(&dir.path().join(framelane_core::store::DATABASE_FILE)).expect("reader");
    let steps: Vec<u64> = reader
        .steps_since("once", 1, 10_000)
        .expect("rows")
        .iter()
        .map(|r| r.record.step)
        .collect();
    assert_eq!(
        steps,
        (0..160).collect::<Vec<_>>(),
        "each step exactly once"
    );
    serve.kill9();
}

#[test]
fn failing_batches_show_in_health_with_their_cause_and_clear_when_the_store_recovers() {
    let dir = ScratchDir::new("health-failing");
    let daemon = daemon(&dir);
    let addr = daemon.local_addr();
    let rt = runtime();
    let health = || rt.block_on(common::health(addr));
    let publish = |run: &'static str| {
        rt.block_on(async {
            telemetry_client(addr)
                .await
                .publish_steps(tokio_stream::iter((0..5).map(|i| step(run, i))))
                .await
        })
    };
    assert!(publish("before").is_ok());
    let h = health();
    assert!(h.healthy && h.problems.is_empty(), "{:?}", h.problems);
    // Every batch now fails at its end (as on a full or failing disk).
    let conn = rusqlite::Connection::open(daemon.database_path()).expect("open");
    conn.execute_batch(
        "CREATE TRIGGER fail_batches BEFORE UPDATE ON runs BEGIN SELECT RAISE(ABORT, 'disk says no'); END",
    )
    .expect("install the fault");
    let refused = publish("during").expect_err("nothing of a failed batch is acknowledged");
    assert!(
        refused.message().contains("disk says no"),
        "{}",
        refused.message()
    );
    let h = health();
    assert!(!h.healthy, "a failing store is not healthy");
    assert!(
        h.problems
            .iter()
            .any(|p| p.starts_with("store:") && p.contains("disk says no")),
        "the problem names the store and the cause: {:?}",
        h.problems
    );
    // The fault goes; the next batch commits and the daemon is healthy again.
    conn.execute_batch("DROP TRIGGER fail_batches")
        .expect("remove the fault");
    assert!(publish("after").is_ok());
    let h = health();
    assert!(h.healthy && h.problems.is_empty(), "{:?}", h.problems);
}

#[test]
fn a_second_daemon_on_the_same_data_directory_is_refused_with_the_holders_pid() {
    let dir = ScratchDir::new("one-daemon");
    let first = ServeProcess::start(dir.path(), &[]);
    let out = output_within(
        std::process::Command::new(env!("CARGO_BIN_EXE_framelane"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path()),
        60,
    )
    .expect("the second daemon refuses at once instead of serving");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("in use by another framelane daemon")
            && stderr.contains(&format!("process {}", first.child.id()))
            && stderr.contains(&first.addr.to_string()),
        "the error names the holder and its address: {stderr}"
    );
    // The first daemon was not disturbed: it still serves, and nothing marked its data.
    runtime().block_on(async {
        let mut client = telemetry_client(first.addr).await;
        let reply = client
            .publish_steps(tokio_stream::iter((0..10).map(|i| step("still-mine", i))))
            .await
            .expect("the first daemon serves")
            .into_inner();
        assert_eq!(reply.accepted, 10);
    });
    // A daemon that cannot bind its address touches nothing in its data directory.
    let other = ScratchDir::new("unbound");
    let out = output_within(
        std::process::Command::new(env!("CARGO_BIN_EXE_framelane"))
            .args(["serve", "--listen", &first.addr.to_string(), "--data-dir"])
            .arg(other.path()),
        60,
    )
    .expect("a daemon that cannot bind stops at once");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen on"));
    assert!(
        !other
            .path()
            .join(framelane_core::store::DATABASE_FILE)
            .exists(),
        "no database was created before the address was bound"
    );
    let status = first.terminate();
    assert!(status.success());
    // Released with its holder: a new daemon takes the directory.
    let next = ServeProcess::start(dir.path(), &[]);
    assert!(next.terminate().success());
}

#[test]
fn a_runs_profile_is_fixed_by_its_first_registration() {
    let dir = ScratchDir::new("fixed-profile");
    let daemon = daemon(&dir);
    let addr = daemon.local_addr();
    runtime().block_on(async {
        let mut client = telemetry_client(addr).await;
        let registrar = client.clone();
        let register = |run: &str, profile: &str| {
            let request = v1::RegisterWorkerRequest {
                run_id: run.into(),
                worker_id: "w".into(),
                worker_kind: "t".into(),
                profile: profile.into(),
            };
            let mut client = registrar.clone();
            async move { client.register_worker(request).await }
        };
        let first = register("fixed", "box2d")
            .await
            .expect("first")
            .into_inner();
        assert_eq!(first.profile, "box2d");
        let same = register("fixed", "box2d").await.expect("same again");
        assert_eq!(same.into_inner().profile, "box2d");
        let unnamed = register("fixed", "").await.expect("no profile named");
        assert_eq!(unnamed.into_inner().profile, "box2d", "keeps its profile");
        let refused = register("fixed", "atari")
            .await
            .expect_err("another profile");
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
        assert!(
            refused.message().contains("box2d") && refused.message().contains("atari"),
            "{}",
            refused.message()
        );
        // A run that published before registering got the default profile without choosing
        // it: its first registration still chooses.
        client
            .publish_steps(tokio_stream::iter((0..3).map(|i| step("early", i))))
            .await
            .expect("publish first");
        let chosen = register("early", "box2d")
            .await
            .expect("registration chooses");
        assert_eq!(chosen.into_inner().profile, "box2d");
    });
}

#[test]
fn a_huge_or_hostile_run_id_is_refused_at_registration_and_never_listed() {
    let dir = ScratchDir::new("register-id");
    let daemon = daemon(&dir);
    let addr = daemon.local_addr();
    runtime().block_on(async {
        let mut client = telemetry_client(addr).await;
        let huge = "r".repeat(5 << 20);
        for (run, worker) in [
            (huge.as_str(), "w"),
            ("tab\trun", "w"),
            ("fine", "bell\u{7}"),
        ] {
            let refused = client
                .register_worker(v1::RegisterWorkerRequest {
                    run_id: run.into(),
                    worker_id: worker.into(),
                    worker_kind: "t".into(),
                    profile: String::new(),
                })
                .await
                .expect_err("refused");
            assert_eq!(refused.code(), tonic::Code::InvalidArgument);
            let field = if worker == "w" { "run_id" } else { "worker_id" };
            assert!(refused.message().contains(field), "{}", refused.message());
            assert!(
                refused.message().len() < 1024,
                "the error does not echo the whole id"
            );
        }
        let runs = client
            .list_runs(v1::ListRunsRequest {})
            .await
            .expect("list runs")
            .into_inner();
        assert!(
            runs.runs.is_empty(),
            "no run was created: {:?}",
            runs.runs.len()
        );
    });
}

#[test]
fn a_new_data_directory_and_its_database_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = ScratchDir::new("private");
    let data = dir.path().join("fresh");
    let mut config = DaemonConfig::new(data.clone());
    config.listen = "127.0.0.1:0".parse().expect("addr");
    let daemon = Daemon::start(config).expect("start daemon");
    runtime().block_on(async {
        let mut client = telemetry_client(daemon.local_addr()).await;
        client
            .publish_steps(tokio_stream::iter((0..5).map(|i| step("private", i))))
            .await
            .expect("publish");
    });
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode()
            & 0o777
    };
    for path in [
        data.clone(),
        data.join(framelane_core::store::DATABASE_FILE),
        data.join("videos"),
        data.join("frames"),
        data.join(framelane_core::daemon::LOCK_FILE),
    ] {
        assert_eq!(
            mode(&path) & 0o077,
            0,
            "{} is {:o}",
            path.display(),
            mode(&path)
        );
    }
    daemon.shutdown();
}

#[test]
fn a_stalled_publish_stream_is_ended_and_what_it_sent_is_kept() {
    let dir = ScratchDir::new("stalled");
    let mut config = DaemonConfig::new(dir.path().to_owned());
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.limits.idle_stream_timeout = Duration::from_millis(800);
    let daemon = Daemon::start(config).expect("start daemon");
    let addr = daemon.local_addr();
    runtime().block_on(async {
        let mut client = telemetry_client(addr).await;
        let (sender, receiver) = tokio::sync::mpsc::channel(16);
        for i in 0..5 {
            sender.send(step("stalled", i)).await.expect("queue step");
        }
        // The sender stays alive and silent: the stream neither ends nor delivers.
        let started = std::time::Instant::now();
        let outcome = tokio::time::timeout(
            Duration::from_secs(60),
            client.publish_steps(tokio_stream::wrappers::ReceiverStream::new(receiver)),
        )
        .await
        .expect("the daemon ends a stalled stream on its own");
        let status = outcome.expect_err("a stalled stream is refused");
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
        assert!(status.message().contains("after item 5"), "{status:?}");
        assert!(started.elapsed() >= Duration::from_millis(800));
        drop(sender);
        // The daemon still serves others.
        let reply = client
            .publish_steps(tokio_stream::iter((0..3).map(|i| step("after", i))))
            .await
            .expect("still serving")
            .into_inner();
        assert_eq!(reply.accepted, 3);
    });
    let kept = wait_until(|| {
        let rows = StoreReader::open(daemon.database_path())
            .ok()?
            .steps_since("stalled", 1, 100)
            .ok()?;
        (rows.len() == 5).then_some(rows.len())
    });
    assert_eq!(
        kept,
        Some(5),
        "the five steps received before the stall are stored"
    );
}

#[test]
fn the_gui_client_sends_its_token_and_takes_full_hd_frames() {
    use framelane_core::ingest::client;
    let dir = ScratchDir::new("token-client");
    let mut config = DaemonConfig::new(dir.path().to_owned());
    config.listen = "0.0.0.0:0".parse().expect("addr");
    config.token = Some("s3cret".into());
    // The token path on its own (TLS has its own test).
    config.allow_plaintext = true;
    let daemon = Daemon::start(config).expect("start daemon");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", daemon.local_addr().port())
        .parse()
        .expect("addr");
    let rt = runtime();

    // Without the token the client reports the refusal instead of silently seeing nothing.
    client::set_client_token(None);
    let refusal = rt.block_on(async {
        let mut refusal = None;
        let _ = tokio::time::timeout(
            Duration::from_secs(30),
            client::watch_runs(addr, |_| false, |message| refusal = Some(message)),
        )
        .await;
        refusal
    });
    assert!(
        refusal.as_deref().is_some_and(|m| m.contains("token")),
        "{refusal:?}"
    );

    // With it: a 1920x1080 frame kept by the daemon reaches the client (8 MiB of RGBA, over
    // tonic's 4 MiB default message size).
    client::set_client_token(Some("s3cret".into()));
    let frame = rt.block_on(async {
        let mut publisher = client::connect(addr).await.expect("connect with the token");
        publisher
            .register_worker(v1::RegisterWorkerRequest {
                run_id: "big".into(),
                worker_id: "w".into(),
                worker_kind: "t".into(),
                profile: "debug".into(),
            })
            .await
            .expect("register");
        let (w, h) = (1920u32, 1080u32);
        let mut s = step("big", 0);
        s.frame = Some(v1::Frame {
            content: Some(v1::frame::Content::Raw(v1::RawFrame {
                width: w,
                height: h,
                format: v1::PixelFormat::Rgb8 as i32,
                pixels: vec![77u8; (w * h * 3) as usize],
            })),
        });
        let reply = publisher
            .publish_steps(tokio_stream::iter([s]))
            .await
            .expect("publish a full-HD frame")
            .into_inner();
        assert_eq!(reply.accepted, 1);
        // The PNG is written off the ingest path; the frame is followed once it is indexed.
        let database = daemon.database_path().to_owned();
        let indexed = wait_until(|| {
            StoreReader::open(&database)
                .ok()?
                .frame("big", 0, 0)
                .ok()
                .flatten()
        });
        assert!(indexed.is_some(), "the snapshot of the frame is written");
        let mut got = None;
        let mut errors = Vec::new();
        let _ = tokio::time::timeout(
            Duration::from_secs(60),
            client::follow_frames(
                addr,
                "big".into(),
                |frame| match frame {
                    Some(frame) => {
                        got = Some(frame);
                        false
                    }
                    None => true,
                },
                |message| errors.push(message),
            ),
        )
        .await;
        got.ok_or(errors)
    });
    client::set_client_token(None);
    let frame = frame.expect("the kept frame arrives");
    assert_eq!((frame.width, frame.height), (1920, 1080));
    assert_eq!(frame.rgba.len(), 1920 * 1080 * 4);
    assert_eq!(&frame.rgba[..4], &[77, 77, 77, 255]);
}

#[test]
fn a_viewers_rate_ask_reaches_that_runs_workers_only_and_the_reply_counts_them() {
    let dir = ScratchDir::new("send-control");
    let daemon = daemon(&dir);
    let addr = daemon.local_addr();
    let rt = runtime();
    rt.block_on(async {
        // A worker's control stream: its first message names its run; it stays open.
        let listen = |run: &'static str| async move {
            let mut client = telemetry_client(addr).await;
            let hello = v1::ControlMessage {
                run_id: run.into(),
                event: None,
            };
            // The request side stays open until the sender drops (the worker ends its stream).
            let (sender, receiver) = tokio::sync::mpsc::channel(1);
            sender.send(hello).await.expect("queue hello");
            let requests = tokio_stream::wrappers::ReceiverStream::new(receiver);
            let replies = client
                .control(requests)
                .await
                .expect("control")
                .into_inner();
            (replies, sender)
        };
        let (mut slow, slow_requests) = listen("slowed-run").await;
        let (mut other, _other_requests) = listen("other-run").await;
        let mut viewer = telemetry_client(addr).await;
        let ask = |hz| v1::ControlMessage {
            run_id: "slowed-run".into(),
            event: Some(v1::control_message::Event::MaxRateHz(hz)),
        };
        // The daemon counts a stream once its first message arrived: ask until it does.
        let asker = viewer.clone();
        let listeners_of = |hz: u32, wanted: u32| {
            let mut viewer = asker.clone();
            async move {
                let n = viewer
                    .send_control(ask(hz))
                    .await
                    .expect("send control")
                    .into_inner()
                    .listeners;
                (n == wanted).then_some(n)
            }
        };
        let listeners = wait_until_async(|| listeners_of(12, 1)).await.unwrap_or(0);
        assert_eq!(listeners, 1, "one worker of the run listens");
        // Workers also get the daemon's own credit grants; only rate asks matter here.
        async fn next_rate(
            stream: &mut tonic::Streaming<v1::ControlMessage>,
            within: Duration,
        ) -> Option<(String, u32)> {
            let deadline = tokio::time::Instant::now() + within;
            loop {
                let message = tokio::time::timeout_at(deadline, stream.next())
                    .await
                    .ok()??
                    .ok()?;
                if let Some(v1::control_message::Event::MaxRateHz(hz)) = message.event {
                    return Some((message.run_id, hz));
                }
            }
        }
        assert_eq!(
            next_rate(&mut slow, Duration::from_secs(10)).await,
            Some(("slowed-run".to_owned(), 12)),
            "the worker hears the ask"
        );
        assert_eq!(
            next_rate(&mut other, Duration::from_millis(300)).await,
            None,
            "another run's worker hears no ask"
        );

        // A worker that starts listening after the ask (a restart) is told the cap in force.
        let (mut late, late_requests) = listen("slowed-run").await;
        assert_eq!(
            next_rate(&mut late, Duration::from_secs(10)).await,
            Some(("slowed-run".to_owned(), 12)),
            "a late worker hears the cap in force"
        );
        drop((late, late_requests));

        // A message without an event, or with the daemon's own credits, is refused and named.
        for event in [None, Some(v1::control_message::Event::GrantSteps(5))] {
            let status = viewer
                .send_control(v1::ControlMessage {
                    run_id: "slowed-run".into(),
                    event,
                })
                .await
                .expect_err("refused");
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        }
        let status = viewer
            .send_control(v1::ControlMessage {
                run_id: String::new(),
                event: Some(v1::control_message::Event::MaxRateHz(5)),
            })
            .await
            .expect_err("no run");
        assert!(status.message().contains("run_id"), "{status:?}");

        // A worker that goes is no longer counted.
        drop((slow, slow_requests));
        let counted = wait_until_async(|| listeners_of(0, 0)).await.unwrap_or(1);
        assert_eq!(counted, 0, "closed control streams stop being counted");
    });
    daemon.shutdown();
}

#[test]
fn connections_past_the_cap_are_refused_and_counted_and_a_freed_place_is_taken_again() {
    let dir = ScratchDir::new("connection-cap");
    let mut config = DaemonConfig::new(dir.path().to_owned());
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.limits.max_connections = 2;
    let daemon = Daemon::start(config).expect("start daemon");
    let addr = daemon.local_addr();
    let rt = runtime();
    rt.block_on(async {
        // Two clients hold the two places (each channel is one connection).
        let mut first = telemetry_client(addr).await;
        let mut second = telemetry_client(addr).await;
        first
            .health(v1::HealthRequest {})
            .await
            .expect("first is served");
        second
            .health(v1::HealthRequest {})
            .await
            .expect("second is served");
        // A third is closed at once: its call fails instead of waiting.
        let third = tokio::time::timeout(Duration::from_secs(20), async {
            let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
                .expect("uri")
                .connect()
                .await?;
            v1::telemetry_client::TelemetryClient::new(channel)
                .health(v1::HealthRequest {})
                .await
                .map_err(|s| -> Box<dyn std::error::Error> { s.into() })?;
            Ok::<_, Box<dyn std::error::Error>>(())
        })
        .await
        .expect("the third connection is answered at once, not left waiting");
        assert!(
            third.is_err(),
            "a third connection past the cap of 2 is refused"
        );
        let health = first
            .health(v1::HealthRequest {})
            .await
            .expect("health")
            .into_inner();
        assert!(
            health.metrics["framelane_ingest_connections_refused_total"] >= 1.0,
            "{:?}",
            health.metrics
        );
        assert_eq!(health.metrics["framelane_ingest_connections_open"], 2.0);
        // One client leaves; a new one gets its place.
        drop(second);
        let served = wait_until_async(|| async move {
            let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
                .expect("uri")
                .connect()
                .await
                .ok()?;
            let mut client = v1::telemetry_client::TelemetryClient::new(channel);
            client.health(v1::HealthRequest {}).await.ok().map(|_| ())
        })
        .await
        .is_some();
        assert!(
            served,
            "a place freed by a client that left is given to the next"
        );
    });
    daemon.shutdown();
}

#[test]
fn a_stalled_store_holds_queued_frames_under_the_memory_ceiling_and_loses_no_step() {
    const LIMIT: u64 = 16 << 20;
    const W: u32 = 320;
    const H: u32 = 240;
    const FRAME: u64 = (W * H * 3) as u64;
    const N: u64 = 400;
    let dir = ScratchDir::new("memory-ceiling");
    let profiles = dir.path().join("profiles.yaml");
    // Every frame kept inline in the store's queue, shed when there is no room (a live view).
    std::fs::write(
        &profiles,
        "profiles:\n  inline:\n    capture_frames: true\n    keep_every_n_frames: 1\n    frame_compression: none\n    jpeg_quality: 85\n    drop_render_payload: true\n    drop_observation: false\n    batch_rows: 50\n    flush_interval_ms: 10\n",
    )
    .expect("profiles");
    let mut config = DaemonConfig::new(dir.path().to_owned());
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.profiles_file = Some(profiles);
    config.memory_limit = LIMIT;
    let daemon = Daemon::start(config).expect("start daemon");
    let addr = daemon.local_addr();
    let rt = runtime();
    let figures = || {
        rt.block_on(async {
            telemetry_client(addr)
                .await
                .health(v1::HealthRequest {})
                .await
                .expect("health")
                .into_inner()
                .metrics
        })
    };
    rt.block_on(async {
        common::register(addr, "framed", "inline").await;
    });

    // Another process's write transaction stalls the store writer (within its busy timeout).
    let blocker = rusqlite::Connection::open(daemon.database_path()).expect("open");
    blocker
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    let publisher = std::thread::spawn(move || {
        runtime().block_on(async move {
            let steps = (0..N).map(|i| {
                let mut s = step("framed", i);
                s.frame = Some(v1::Frame {
                    content: Some(v1::frame::Content::Raw(v1::RawFrame {
                        width: W,
                        height: H,
                        format: v1::PixelFormat::Rgb8 as i32,
                        pixels: vec![(i % 251) as u8; FRAME as usize],
                    })),
                });
                s
            });
            telemetry_client(addr)
                .await
                .publish_steps(tokio_stream::iter(steps))
                .await
                .map(|r| r.into_inner())
        })
    });
    let refused = wait_until(|| {
        let f = figures();
        (f.get("framelane_memory_refused_total")
            .copied()
            .unwrap_or(0.0)
            > 0.0)
            .then_some(f)
    })
    .expect("frames refused at the ceiling while the store is stalled");
    let used = refused["framelane_memory_used_bytes"] as u64;
    assert!(
        used <= LIMIT,
        "held {used} bytes past the {LIMIT}-byte ceiling"
    );
    blocker
        .execute_batch("ROLLBACK")
        .expect("release the store");

    let reply = publisher
        .join()
        .expect("publisher")
        .expect("acknowledged once the store moves again");
    assert_eq!(reply.accepted, N, "no step lost to the ceiling: {reply:?}");
    assert!(reply.frames_shed > 0, "{reply:?}");
    let after = figures();
    assert!(
        after["framelane_memory_peak_bytes"] as u64 <= LIMIT,
        "peak {} past the ceiling",
        after["framelane_memory_peak_bytes"]
    );
    assert_eq!(
        after["framelane_memory_used_bytes"], 0.0,
        "every charge given back"
    );
    let runs = rt.block_on(common::list_runs(addr));
    let run = runs.iter().find(|r| r.run_id == "framed").expect("run");
    assert_eq!(run.steps, N);
    assert_eq!(
        run.shed.get("frame_memory_limit").copied(),
        Some(reply.frames_shed),
        "every shed frame counted by its cause: {:?}",
        run.shed
    );
    let stored: i64 = rusqlite::Connection::open(daemon.database_path())
        .expect("open")
        .query_row(
            "SELECT count(*) FROM frames JOIN runs USING (run_key) WHERE run_id = 'framed'",
            [],
            |row| row.get(0),
        )
        .expect("frames");
    assert_eq!(
        stored as u64 + reply.frames_shed,
        N,
        "kept and shed frames add up"
    );
}

#[test]
fn another_process_holding_the_write_lock_delays_commits_and_refuses_no_step() {
    let dir = ScratchDir::new("write-lock");
    let daemon = daemon(&dir);
    let addr = daemon.local_addr();
    // A backup tool or an sqlite3 shell holds the write lock for a moment (well within the
    // store's busy timeout).
    let blocker = rusqlite::Connection::open(daemon.database_path()).expect("open");
    blocker
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    let publishers: Vec<_> = ["new-run-a", "new-run-b"]
        .into_iter()
        .map(|run| {
            std::thread::spawn(move || {
                runtime().block_on(async move {
                    telemetry_client(addr)
                        .await
                        .publish_steps(tokio_stream::iter((0..50).map(|i| step(run, i))))
                        .await
                        .map(|r| r.into_inner())
                })
            })
        })
        .collect();
    // Held until the writer waits behind the lock with the publishers' commands queued (or a
    // publish has already ended: refused at once, which the checks below catch).
    let rt = runtime();
    wait_until(|| {
        let queued = rt.block_on(common::health(addr)).queue_depth;
        (queued > 0 || publishers.iter().any(|p| p.is_finished())).then_some(())
    })
    .expect("the writer is held behind the lock");
    blocker.execute_batch("ROLLBACK").expect("release");
    for publisher in publishers {
        let reply = publisher
            .join()
            .expect("publisher")
            .expect("acknowledged once the lock is free, not refused at once");
        assert_eq!(reply.accepted, 50, "{reply:?}");
    }
}

/// A small tmpfs of its own, unmounted when dropped (mounting needs root).
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(at: std::path::PathBuf, size: &str) -> Option<Self> {
        std::fs::create_dir_all(&at).expect("mount point");
        let mounted = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "framelane-test",
            ])
            .arg(&at)
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(Self(at))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_full_disk_fails_the_publish_acknowledges_nothing_unstored_and_recovers_when_space_is_freed() {
    let scratch = ScratchDir::new("disk-full");
    let Some(disk) = SmallDisk::mount(scratch.path().join("small"), "24m") else {
        // Every CI run is root; a developer's unprivileged run says why this one did nothing.
        eprintln!(
            "SKIPPED: mounting a tmpfs needs root (run the suite as root to test a full disk)"
        );
        return;
    };
    let data = disk.0.join("data");
    let mut config = DaemonConfig::new(data.clone());
    config.listen = "127.0.0.1:0".parse().expect("addr");
    let daemon = Daemon::start(config).expect("start daemon");
    let addr = daemon.local_addr();
    let rt = runtime();
    let publish = |run: &'static str, n: u64, observation: usize| {
        rt.block_on(async {
            let steps = (0..n).map(move |i| {
                let mut s = step(run, i);
                s.observation = Some(v1::Payload {
                    content: Some(v1::payload::Content::Raw(vec![
                        (i % 251) as u8;
                        observation
                    ])),
                });
                s
            });
            telemetry_client(addr)
                .await
                .publish_steps(tokio_stream::iter(steps))
                .await
                .map(|r| r.into_inner())
        })
    };
    let health = || rt.block_on(common::health(addr));
    let stored = |run: &str| -> i64 {
        rusqlite::Connection::open(daemon.database_path())
            .expect("open")
            .query_row(
                "SELECT count(*) FROM steps JOIN runs USING (run_key) WHERE run_id = ?1",
                [run],
                |row| row.get(0),
            )
            .expect("count")
    };
    assert_eq!(publish("before", 100, 64).expect("room").accepted, 100);

    // Fill what is left of the disk.
    let filler_path = disk.0.join("filler");
    {
        use std::io::Write;
        let mut filler = std::fs::File::create(&filler_path).expect("filler");
        let chunk = vec![0u8; 1 << 20];
        while filler.write_all(&chunk).is_ok() {}
        while filler.write_all(&chunk[..4096]).is_ok() {}
    }
    let refused = publish("during", 200, 64 << 10)
        .expect_err("a publish the disk cannot hold is not acknowledged");
    assert!(
        refused.message().contains("full"),
        "the error says the disk is full: {}",
        refused.message()
    );
    // Batches of that stream may have fitted in WAL space a failed one gave back; one step
    // larger than the whole disk cannot, and Health says so until a batch commits.
    let refused = publish("during", 1, 30 << 20).expect_err("larger than the disk");
    assert!(refused.message().contains("full"), "{}", refused.message());
    let h = health();
    assert!(
        !h.healthy && h.problems.iter().any(|p| p.contains("full")),
        "Health names the full disk: {:?}",
        h.problems
    );
    assert_eq!(stored("before"), 100, "what was acknowledged is kept");

    // Space comes back: the daemon takes steps again without a restart.
    std::fs::remove_file(&filler_path).expect("free the space");
    assert_eq!(publish("after", 50, 64).expect("space again").accepted, 50);
    assert_eq!(stored("after"), 50);
    let h = health();
    assert!(h.healthy && h.problems.is_empty(), "{:?}", h.problems);
    let db = daemon.database_path().to_owned();
    daemon.shutdown();
    let check: String = rusqlite::Connection::open(&db)
        .expect("open")
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .expect("integrity");
    assert_eq!(check, "ok");
}

/// Step `i` of `run` in episode 0 with a small raw frame.
fn small_framed_step(run: &str, i: u64) -> v1::Step {
    const W: u32 = 32;
    let mut s = step(run, i);
    s.episode = 0;
    s.frame = Some(v1::Frame {
        content: Some(v1::frame::Content::Raw(v1::RawFrame {
            width: W,
            height: W,
            format: v1::PixelFormat::Rgb8 as i32,
            pixels: vec![(i * 9) as u8; (W * W * 3) as usize],
        })),
    });
    s
}

/// Registers `run` under `profile` and publishes its steps `steps` with small frames.
fn publish_small_frames(
    rt: &tokio::runtime::Runtime,
    addr: std::net::SocketAddr,
    (run, profile): (&str, &str),
    steps: std::ops::Range<u64>,
) -> v1::PublishReply {
    rt.block_on(async {
        let mut client = telemetry_client(addr).await;
        common::register(addr, run, profile).await;
        let run = run.to_owned();
        client
            .publish_steps(tokio_stream::iter(
                steps.map(move |i| small_framed_step(&run, i)),
            ))
            .await
            .expect("steps are still stored")
            .into_inner()
    })
}

/// A daemon on a free local port whose encoder service is `encode`.
fn daemon_with_encoders(dir: &ScratchDir, encode: framelane_core::encode::ServiceConfig) -> Daemon {
    let mut config = DaemonConfig::new(dir.path().to_owned());
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.encode = encode;
    Daemon::start(config).expect("start daemon")
}

/// `workers` encoder workers with 2-frame queues, stalled after 1 s; encode-0 hangs for
/// `hang_s` seconds when it takes its fourth frame.
fn hanging_encoders(workers: usize, hang_s: u64) -> framelane_core::encode::ServiceConfig {
    framelane_core::encode::ServiceConfig {
        workers,
        queue_frames: 2,
        stall_limit: Duration::from_secs(1),
        fault_hang_after_frames: Some((3, Duration::from_secs(hang_s))),
        ..Default::default()
    }
}

/// Waits until `Health` lists a problem starting with `prefix`.
fn wait_for_problem(rt: &tokio::runtime::Runtime, addr: std::net::SocketAddr, prefix: &str) {
    wait_until(|| {
        let h = rt.block_on(common::health(addr));
        (!h.healthy && h.problems.iter().any(|p| p.starts_with(prefix))).then_some(())
    })
    .unwrap_or_else(|| panic!("Health never reported {prefix:?}"))
}

#[test]
fn a_dead_encoder_worker_is_reported_and_its_frames_refused_at_once_with_the_reason() {
    let dir = ScratchDir::new("dead-encoder");
    // One encoder worker, which panics when it takes its fourth frame.
    let daemon = daemon_with_encoders(
        &dir,
        framelane_core::encode::ServiceConfig {
            workers: 1,
            fault_panic_after_frames: Some(3),
            ..Default::default()
        },
    );
    let addr = daemon.local_addr();
    let rt = runtime();
    // "video" waits for its encoder (up to 30 s a frame) rather than shed: a dead worker must
    // not turn that into a 30 s stall per frame.
    let run = ("clips", "video");
    assert_eq!(publish_small_frames(&rt, addr, run, 0..4).accepted, 4);
    wait_for_problem(&rt, addr, "video: encoder worker encode-0 has stopped");
    // From now on its frames are refused with the reason (the only worker is gone, so no new
    // job opens either), and the steps are still stored.
    let reply = publish_small_frames(&rt, addr, run, 4..14);
    assert_eq!(reply.accepted, 10, "{reply:?}");
    assert_eq!(reply.frames_shed, 10, "{reply:?}");
    assert!(
        reply
            .first_error
            .contains("encoder worker encode-0 has stopped"),
        "the worker is told why: {reply:?}"
    );
    let runs = rt.block_on(common::list_runs(addr));
    let run = runs.iter().find(|r| r.run_id == "clips").expect("run");
    assert_eq!(run.steps, 14);
    assert!(
        run.shed.get("frame_writer_stopped").copied().unwrap_or(0) >= 10,
        "counted by their cause, not as an encoder behind: {:?}",
        run.shed
    );
    assert_eq!(
        run.shed.get("frame_encoder_behind").copied().unwrap_or(0),
        0,
        "{:?}",
        run.shed
    );
    // The dead job's file is closed in the index at once, not left `recording` until the
    // next start.
    let reader = StoreReader::open(daemon.database_path()).expect("reader");
    let video = wait_until(|| {
        reader
            .videos("clips")
            .ok()
            .and_then(|v| v.into_iter().find(|v| v.status != "recording"))
    })
    .unwrap_or_else(|| panic!("still recording: {:?}", reader.videos("clips")));
    assert_eq!(video.status, "interrupted", "{video:?}");
    assert_eq!(
        video.error.as_deref(),
        Some("encoder worker encode-0 stopped"),
        "{video:?}"
    );
}

#[test]
fn a_hung_encoder_worker_is_reported_and_its_job_moves_to_another_worker_without_waiting() {
    let dir = ScratchDir::new("hung-encoder");
    // Two workers with 2-frame queues; encode-0 hangs for 12 s on its fourth frame and counts
    // as stalled after 1 s.
    let daemon = daemon_with_encoders(&dir, hanging_encoders(2, 12));
    let addr = daemon.local_addr();
    let rt = runtime();
    // "video" waits for its encoder rather than shed: without the stall watch the queue fills
    // and each further frame waits until the hang ends.
    let run = ("hung", "video");
    assert_eq!(publish_small_frames(&rt, addr, run, 0..4).accepted, 4);
    wait_for_problem(&rt, addr, "video: encoder worker encode-0 has been stuck");
    let reply = publish_small_frames(&rt, addr, run, 4..40);
    assert_eq!(reply.accepted, 36, "{reply:?}");
    assert_eq!(reply.frames_shed, 0, "moved, not shed: {reply:?}");
    let h = rt.block_on(common::health(addr));
    assert!(
        h.problems
            .iter()
            .any(|p| p.starts_with("video: encoder worker encode-0 has been stuck")),
        "the frames were taken while encode-0 was still stuck, not after: {:?}",
        h.problems
    );
    // The hang ends: Health clears, the first file closes with what encode-0 held.
    wait_until(|| rt.block_on(common::health(addr)).healthy.then_some(()))
        .expect("Health clears once the worker moves again");
    let runs = rt.block_on(common::list_runs(addr));
    let listed = runs.iter().find(|r| r.run_id == "hung").expect("run");
    assert_eq!(listed.steps, 40);
    assert!(listed.shed.is_empty(), "no frame shed: {:?}", listed.shed);
    let db = daemon.database_path().to_owned();
    daemon.shutdown();
    let reader = StoreReader::open(&db).expect("reader");
    let videos = reader.videos("hung").expect("videos");
    let summary: Vec<(u32, &str, u64)> = videos
        .iter()
        .map(|v| (v.segment, v.status.as_str(), v.frames))
        .collect();
    assert_eq!(
        summary,
        vec![(0, "finished", 4), (1, "finished", 36)],
        "encode-0's file keeps its 4 frames, the rest went to a new segment: {videos:?}"
    );
}

#[test]
fn with_its_only_encoder_worker_hung_a_video_run_is_refused_at_once_and_told_why() {
    let dir = ScratchDir::new("hung-only-encoder");
    let daemon = daemon_with_encoders(&dir, hanging_encoders(1, 10));
    let addr = daemon.local_addr();
    let rt = runtime();
    let run = ("stuck", "video");
    assert_eq!(publish_small_frames(&rt, addr, run, 0..4).accepted, 4);
    wait_for_problem(&rt, addr, "video: encoder worker encode-0 has been stuck");
    let reply = publish_small_frames(&rt, addr, run, 4..10);
    assert_eq!(reply.accepted, 6, "steps are still stored: {reply:?}");
    assert_eq!(reply.frames_shed, 6, "{reply:?}");
    assert!(
        reply
            .first_error
            .contains("encoder worker encode-0 has been stuck for"),
        "the worker is told why: {reply:?}"
    );
    assert!(
        rt.block_on(common::health(addr))
            .problems
            .iter()
            .any(|p| p.starts_with("video: encoder worker encode-0 has been stuck")),
        "refused while the worker was still stuck, not after the hang"
    );
    let runs = rt.block_on(common::list_runs(addr));
    let listed = runs.iter().find(|r| r.run_id == "stuck").expect("run");
    assert_eq!(
        listed.shed.get("frame_encoder_stalled").copied(),
        Some(6),
        "counted by their cause: {:?}",
        listed.shed
    );
}

#[test]
fn a_daemon_whose_encoder_worker_hangs_for_good_still_stops_and_its_next_start_closes_the_file() {
    let dir = ScratchDir::new("hung-for-good");
    // encode-0 hangs for an hour on its fourth frame: without a bounded join, shutdown waits
    // for it and the daemon never stops.
    let daemon = daemon_with_encoders(&dir, hanging_encoders(1, 3600));
    let addr = daemon.local_addr();
    let rt = runtime();
    let run = ("forever", "video");
    assert_eq!(publish_small_frames(&rt, addr, run, 0..4).accepted, 4);
    wait_for_problem(&rt, addr, "video: encoder worker encode-0 has been stuck");
    let db = daemon.database_path().to_owned();
    let (stopped, when_stopped) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        daemon.shutdown();
        let _ = stopped.send(());
    });
    when_stopped
        .recv_timeout(Duration::from_secs(60))
        .expect("the daemon stops although its only encoder worker is stuck");
    // The steps were committed before the stop; the stuck file was left `recording` and the
    // next start on the directory closes it as interrupted.
    let again = daemon_with_encoders(&dir, framelane_core::encode::ServiceConfig::default());
    let reader = StoreReader::open(&db).expect("reader");
    let videos = reader.videos("forever").expect("videos");
    assert_eq!(videos.len(), 1, "{videos:?}");
    assert_eq!(videos[0].status, "interrupted", "{videos:?}");
    let runs = rt.block_on(common::list_runs(again.local_addr()));
    let listed = runs.iter().find(|r| r.run_id == "forever").expect("run");
    assert_eq!(listed.steps, 4);
}

#[test]
fn a_dead_snapshot_writer_is_reported_and_its_frames_refused_with_the_reason() {
    let dir = ScratchDir::new("dead-writer");
    let mut config = DaemonConfig::new(dir.path().to_owned());
    config.listen = "127.0.0.1:0".parse().expect("addr");
    // The snapshot writer thread panics when it takes its second frame.
    config.faults.snapshot_writer_panics_after = Some(1);
    let daemon = Daemon::start(config).expect("start daemon");
    let addr = daemon.local_addr();
    let rt = runtime();
    let run = ("pngs", "debug");
    // Two frames: the second one kills the writer thread.
    assert_eq!(publish_small_frames(&rt, addr, run, 0..2).accepted, 2);
    wait_for_problem(&rt, addr, "snapshots:");
    // From now on its frames are refused with the reason, and the steps still stored.
    let reply = publish_small_frames(&rt, addr, run, 2..12);
    assert_eq!(reply.accepted, 10, "{reply:?}");
    assert_eq!(reply.frames_shed, 10, "{reply:?}");
    assert!(
        reply.first_error.contains("snapshot writer has stopped"),
        "the worker is told why: {reply:?}"
    );
    let runs = rt.block_on(common::list_runs(addr));
    let run = runs.iter().find(|r| r.run_id == "pngs").expect("run");
    assert_eq!(run.steps, 12);
    assert_eq!(
        run.shed.get("frame_writer_stopped").copied(),
        Some(10),
        "counted by their cause, not as a full queue: {:?}",
        run.shed
    );
}
