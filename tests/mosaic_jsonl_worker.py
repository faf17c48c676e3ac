"""A worker that prints MOSAIC's JSONL telemetry on stdout, as MOSAIC's workers do: steps with
4x3 RGB frames in render_payload.rgb, episodes, and some lines a proxy must not forward.
Usage: mosaic_jsonl_worker.py EPISODES STEPS EXIT_CODE RELEASE_FILE
After its last line it stays alive (so its last frame can be checked in the fast lane) until
RELEASE_FILE exists, 60 s at most."""

import json
import os
import sys
import time

episodes, steps, code, release = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]


def frame(n):
    return [[[(n + x + y) % 256, (2 * n + x) % 256, (3 * n + y) % 256] for x in range(4)] for y in range(3)]


print("worker starting (not JSON)")
print(json.dumps({"type": "log", "message": "other types are skipped"}))
print(json.dumps({"type": "step", "reward": "high"}))  # refused: reward is not a number
print("")
ts = time.time_ns()
for e in range(episodes):
    total = 0.0
    for s in range(1, steps + 1):
        ts += 10_000_000
        total += 0.5
        line = {
            "type": "step",
            "metadata": json.dumps({"episode_index": e}),
            "step_index": s,
            "action": {"move": s % 3},
            "reward": 0.5,
            "terminated": s == steps,
            "total_reward": total,
            "ts_unix_ns": ts,
            "render_payload": {"rgb": frame(e * steps + s)},
        }
        print(json.dumps(line))
    print(json.dumps({"type": "EPISODE", "episode": e, "total_reward": total, "steps": steps, "terminated": True}))
sys.stdout.flush()
print("the last frame is published", file=sys.stderr, flush=True)
deadline = time.monotonic() + 60
while not os.path.exists(release) and time.monotonic() < deadline:
    time.sleep(0.02)
sys.exit(code)
