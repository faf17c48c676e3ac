"""framelane's Python SDK: the fast lane (shared-memory frames for the window), the durable
lane (gRPC client for the daemon) and a Gymnasium wrapper (`framelane.gym.record`)."""

from framelane.fastlane import FastLaneError, FastLaneReader, FastLaneWriter, Frame, Hud

__all__ = ["FastLaneWriter", "FastLaneReader", "FastLaneError", "Frame", "Hud", "Client"]


def __getattr__(name):
    # The gRPC client needs grpcio; the fast lane does not, so it is imported on first use.
    if name in ("Client", "StepPublisher", "ClientError"):
        from framelane import client

        return getattr(client, name)
    raise AttributeError(f"module 'framelane' has no attribute {name!r}")
