"""A Gymnasium wrapper that records an environment with framelane: every step and episode goes
to the daemon (batched, acknowledged after commit), the newest rendered frame goes to the fast
lane for the window. Frames are never kept in memory: each one is copied once into shared
memory and dropped (unlike Gymnasium's RecordVideo, which holds an episode's frames).

    import gymnasium as gym, framelane.gym
    env = framelane.gym.record(gym.make("CartPole-v1", render_mode="rgb_array"), run_id="cartpole-1")
"""

from __future__ import annotations

import functools
import time
from typing import Any, Optional

import gymnasium

from framelane.client import Client, StepPublisher, raw_frame
from framelane.fastlane import FastLaneWriter, Hud


class FramelaneRecorder(gymnasium.Wrapper):
    """Records steps, episodes and the newest frame of the wrapped environment (see `record`)."""

    def __init__(
        self,
        env: gymnasium.Env,
        run_id: str,
        profile: str = "",
        address: str = "127.0.0.1:50551",
        token: Optional[str] = None,
        batch_size: int = 100,
        fast_lane: bool = True,
        frames_to_daemon: bool = False,
        worker_id: str = "gymnasium",
    ) -> None:
        super().__init__(env)
        self.run_id = run_id
        self.client = Client(address, token=token, worker_id=worker_id)
        self.profile = self.client.register(run_id, profile=profile, worker_kind="gymnasium")
        # Messages are built and published on a background thread: the environment's loop only
        # queues a small closure per step and waits only when the daemon falls behind.
        self.publisher = StepPublisher(self.client, run_id, batch_size=batch_size, background=True)
        self.fast_lane = fast_lane and env.render_mode == "rgb_array"
        self.frames_to_daemon = frames_to_daemon and env.render_mode == "rgb_array"
        self.writer: Optional[FastLaneWriter] = None
        self.episode_index = -1
        self.step_index = 0
        self.episode_return = 0.0
        self._rate_started = time.monotonic()
        self._rate_steps = 0
        self.steps_per_second = 0.0

    def reset(self, **kwargs: Any):
        result = self.env.reset(**kwargs)
        self.episode_index += 1
        self.step_index = 0
        self.episode_return = 0.0
        self._show(0.0)
        return result

    def step(self, action: Any):
        observation, reward, terminated, truncated, info = self.env.step(action)
        self.step_index += 1
        self.episode_return += float(reward)
        self._count_rate()
        frame = self._show(float(reward))
        message_frame = None
        if self.frames_to_daemon and frame is not None:
            height, width = frame.shape[:2]
            message_frame = raw_frame(frame, width, height, "rgb")
        if hasattr(action, "dtype") and hasattr(action, "copy"):
            action = action.copy()  # encoded later, on the publishing thread
        self.publisher.add(
            functools.partial(
                self.client.step,
                self.run_id,
                episode=self.episode_index,
                step=self.step_index,
                reward=float(reward),
                terminated=bool(terminated),
                truncated=bool(truncated),
                action=action,
                frame=message_frame,
                producer_unix_ns=time.time_ns(),
            )
        )
        if terminated or truncated:
            self.publisher.add_episode(
                functools.partial(
                    self.client.episode,
                    self.run_id,
                    episode=self.episode_index,
                    total_reward=self.episode_return,
                    steps=self.step_index,
                    terminated=bool(terminated),
                    truncated=bool(truncated),
                    metadata={"env": getattr(self.env.spec, "id", None)},
                )
            )
        return observation, reward, terminated, truncated, info

    def _count_rate(self) -> None:
        self._rate_steps += 1
        elapsed = time.monotonic() - self._rate_started
        if elapsed >= 0.5:
            self.steps_per_second = self._rate_steps / elapsed
            self._rate_started = time.monotonic()
            self._rate_steps = 0

    def _show(self, reward: float):
        """Renders and publishes the newest frame to the fast lane; returns it (or None)."""
        if not (self.fast_lane or self.frames_to_daemon):
            return None
        frame = self.env.render()
        if frame is None:
            return None
        if self.fast_lane:
            if self.writer is None:
                height, width = frame.shape[:2]
                self.writer = FastLaneWriter(self.run_id, width, height, "rgb")
            self.writer.publish(
                frame,
                Hud(
                    episode=max(self.episode_index, 0),
                    step=self.step_index,
                    reward=reward,
                    episodic_return=self.episode_return,
                    steps_per_second=self.steps_per_second,
                ),
            )
        return frame

    def close(self) -> None:
        try:
            self.publisher.close()
        finally:
            if self.writer is not None:
                self.writer.close()
                self.writer = None
            self.client.close()
            super().close()


def record(env: gymnasium.Env, run_id: str, profile: str = "", **options: Any) -> FramelaneRecorder:
    """Wraps `env` so every step and episode is recorded in the daemon at `address` (default
    127.0.0.1:50551) under storage profile `profile`, and, when the environment renders
    `rgb_array`, its newest frame is shown live through the fast lane. Options: address, token,
    batch_size (steps per acknowledged publish, default 100), fast_lane (default True),
    frames_to_daemon (also send each frame for the profile to keep, default False), worker_id."""
    return FramelaneRecorder(env, run_id=run_id, profile=profile, **options)


__all__ = ["record", "FramelaneRecorder"]
