"""`python -m framelane.bench`: the SDK's costs, each beside its reference in the same run.

- publish cost of FastLaneWriter.publish beside a plain numpy copy of the same bytes into a
  preallocated buffer (84x84x3 and 1280x720x3);
- steps/s through the gRPC client at batch sizes 1, 100 and 1000 (each batch one acknowledged
  publish), against a daemon this command starts;
- what the Gymnasium wrapper costs an environment: CartPole steps/s plain and recorded, with and
  without rendering.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid


def percentile(samples, q):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


def publish_cost(width, height, rounds):
    import numpy as np

    from framelane.fastlane import FastLaneWriter, Hud

    run = f"bench-py-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    frame = np.random.default_rng(1).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    # The reference: the same bytes copied into one of as many buffers as the writer has slots.
    targets = [np.empty_like(frame) for _ in range(4)]
    copy_us, publish_us = [], []
    hud = Hud(episode=1, step=2, reward=0.5)
    with FastLaneWriter(run, width, height, "rgb") as writer:
        for i in range(rounds):
            t0 = time.perf_counter_ns()
            np.copyto(targets[i % 4], frame)
            t1 = time.perf_counter_ns()
            writer.publish(frame, hud)
            t2 = time.perf_counter_ns()
            copy_us.append((t1 - t0) / 1e3)
            publish_us.append((t2 - t1) / 1e3)
    row = {
        "frame": f"{width}x{height}x3",
        "numpy_copy_us": {"p50": percentile(copy_us, 0.5), "p99": percentile(copy_us, 0.99)},
        "publish_us": {"p50": percentile(publish_us, 0.5), "p99": percentile(publish_us, 0.99)},
    }
    row["ratio_p50"] = row["publish_us"]["p50"] / max(row["numpy_copy_us"]["p50"], 1e-9)
    return row


def client_rate(address, batch, steps):
    from framelane.client import Client

    run = f"bench-py-{batch}-{uuid.uuid4().hex[:6]}"
    with Client(address) as client:
        client.wait_until_ready()
        client.register(run)
        started = time.perf_counter()
        sent = 0
        accepted = 0
        while sent < steps:
            n = min(batch, steps - sent)
            result = client.publish_steps(client.step(run, 0, sent + i + 1, reward=1.0) for i in range(n))
            accepted += result.accepted
            sent += n
        seconds = time.perf_counter() - started
    return {"batch": batch, "steps": steps, "accepted": accepted, "steps_per_second": steps / seconds}


def gym_rate(address, render, steps):
    import gymnasium as gym

    from framelane.gym import record

    def run(env, render_each_step):
        env.reset(seed=0)
        started = time.perf_counter()
        for _ in range(steps):
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if render_each_step:
                env.render()
            if terminated or truncated:
                env.reset()
        seconds = time.perf_counter() - started
        env.close()
        return steps / seconds

    mode = "rgb_array" if render else None
    # The plain loop renders every step itself, as the wrapper does for the fast lane.
    plain = run(gym.make("CartPole-v1", render_mode=mode), render_each_step=render)
    run_id = f"bench-gym-{uuid.uuid4().hex[:6]}"
    recorded = run(record(gym.make("CartPole-v1", render_mode=mode), run_id=run_id, address=address), render_each_step=False)
    return {
        "rendering": render,
        "plain_steps_per_second": plain,
        "recorded_steps_per_second": recorded,
        "slowdown_percent": (1 - recorded / plain) * 100,
    }


class Daemon:
    def __init__(self, binary):
        self.dir = tempfile.mkdtemp(prefix="framelane-bench-")
        self.process = subprocess.Popen(
            [binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", self.dir],
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline()
        match = re.search(r"listening on (\S+)", line)
        if not match:
            self.stop()
            raise SystemExit(f"framelane serve did not start: {line!r}")
        self.address = match.group(1)

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m framelane.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--framelane-bin", default=shutil.which("framelane") or "target/release/framelane")
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--rounds", type=int, default=2000, help="publishes per frame size")
    args = parser.parse_args(argv)
    if not os.access(args.framelane_bin, os.X_OK):
        parser.error(f"--framelane-bin {args.framelane_bin}: not an executable framelane binary")
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"python -m framelane.bench on {machine}")

    print("\n== publish cost beside a numpy copy of the same bytes ==")
    print(f"{'frame':<14} {'copy p50':>10} {'publish p50':>12} {'copy p99':>10} {'publish p99':>12} {'ratio':>7}")
    publish = []
    for width, height, rounds in ((84, 84, args.rounds), (1280, 720, max(50, args.rounds // 10))):
        row = publish_cost(width, height, rounds)
        publish.append(row)
        print(
            f"{row['frame']:<14} {row['numpy_copy_us']['p50']:>8.1f}us {row['publish_us']['p50']:>10.1f}us "
            f"{row['numpy_copy_us']['p99']:>8.1f}us {row['publish_us']['p99']:>10.1f}us {row['ratio_p50']:>6.2f}x"
        )

    daemon = Daemon(args.framelane_bin)
    try:
        print("\n== steps/s through the client (each batch one acknowledged publish) ==")
        rates = []
        for batch, steps in ((1, 500), (100, 20000), (1000, 50000)):
            row = client_rate(daemon.address, batch, steps)
            rates.append(row)
            print(f"batch {batch:>5}: {row['steps_per_second']:>10.0f} steps/s ({row['accepted']} of {steps} accepted)")

        print("\n== the Gymnasium wrapper's cost (CartPole-v1, steps/s) ==")
        gym_rows = []
        for render, steps in ((False, 20000), (True, 1500)):
            row = gym_rate(daemon.address, render, steps)
            gym_rows.append(row)
            label = "rendering rgb_array" if render else "no rendering"
            print(
                f"{label:<20} plain {row['plain_steps_per_second']:>9.0f}  recorded {row['recorded_steps_per_second']:>9.0f}"
                f"  slowdown {row['slowdown_percent']:>6.1f} %"
            )
    finally:
        daemon.stop()

    report = {
        "benchmark": "python-sdk",
        "machine": machine,
        "command": " ".join([sys.executable, "-m", "framelane.bench", *(argv or sys.argv[1:])]),
        "publish_cost": publish,
        "client_rate": rates,
        "gym_wrapper": gym_rows,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
