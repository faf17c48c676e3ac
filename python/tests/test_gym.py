"""A real Gymnasium environment (CartPole, rendered with pygame) recorded through the wrapper:
its steps and episodes land in the store, its frames in the fast lane and in the window."""

import json
import os
import subprocess

import gymnasium as gym

from conftest import wait_for
from framelane.client import Client
from framelane.fastlane import FastLaneError, FastLaneReader
from framelane.gym import record


def test_cartpole_steps_episodes_and_frames_are_recorded(daemon, run_id, framelane_bin, tmp_path):
    env = record(gym.make("CartPole-v1", render_mode="rgb_array"), run_id=run_id, profile="debug", address=daemon.address)
    total_steps = 0
    frames_seen = []
    try:
        for episode in range(3):
            env.reset(seed=episode)
            done = False
            while not done:
                _, _, terminated, truncated, _ = env.step(env.action_space.sample())
                total_steps += 1
                done = terminated or truncated
            with FastLaneReader(run_id) as reader:
                frame = reader.read_newest()
                assert (reader.width, reader.height) == (600, 400)
                frames_seen.append(frame)
    finally:
        env.close()
    assert all(f is not None and f.hud.episode == i for i, f in enumerate(frames_seen))
    assert frames_seen[-1].hud.step > 0 and len(frames_seen[-1].pixels) == 600 * 400 * 3
    with Client(daemon.address) as client:
        run = next(r for r in client.list_runs() if r.run_id == run_id)
        assert (run.steps, run.episodes) == (total_steps, 3)
    assert env.publisher.dropped == 0 and env.publisher.accepted == total_steps + 3


def test_the_window_shows_a_recorded_environment(daemon, run_id, framelane_bin, tmp_path):
    env = record(gym.make("CartPole-v1", render_mode="rgb_array"), run_id=run_id, address=daemon.address)
    stats = tmp_path / "stats.json"
    quit_file = tmp_path / "quit"
    window = subprocess.Popen(
        [framelane_bin, "gui", "--no-daemon", "--run", run_id, "--stats-json", str(stats),
         "--stats-interval-ms", "100", "--quit-file", str(quit_file)],
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
        stdout=subprocess.DEVNULL,
    )
    try:
        env.reset(seed=1)

        def shown():
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                env.reset()
            try:
                data = json.loads(stats.read_text())
            except (OSError, ValueError):
                return None
            return data if data.get("state") == "live" and (data.get("shown_step") or 0) > 0 else None

        data = wait_for(shown, timeout=60, interval=0.02)
        assert data is not None, "the window showed the environment's frame"
        assert data["hud"]["hudRun"].endswith(run_id)
    finally:
        quit_file.write_text("quit")
        window.wait(timeout=60)
        env.close()
    try:
        FastLaneReader(run_id)
        assert False, "closing the wrapper removes its segment"
    except FastLaneError:
        pass
