"""framelane's durable lane from Python: register a worker, publish steps and episodes (each
publish is acknowledged once the daemon has committed it to SQLite), subscribe to committed
rows, list runs, and ask a run's workers to cap their rate. gRPC stubs are generated from the
repository's proto/ when the package is built."""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, List, Optional, Union

import grpc

from framelane.v1 import telemetry_pb2 as pb
from framelane.v1 import telemetry_pb2_grpc as pb_grpc

DEFAULT_ADDRESS = "127.0.0.1:50551"
# The daemon accepts messages up to this size (a 4K RGBA frame fits).
MAX_MESSAGE_BYTES = 128 << 20

_PIXEL_FORMATS = {
    "rgb": pb.PIXEL_FORMAT_RGB8,
    "rgba": pb.PIXEL_FORMAT_RGBA8,
    "bgra": pb.PIXEL_FORMAT_BGRA8,
    "gray": pb.PIXEL_FORMAT_GRAY8,
}
_CHANNELS = {"rgb": 3, "rgba": 4, "bgra": 4, "gray": 1}


class ClientError(Exception):
    """A call to the daemon failed; the message says which call and what the daemon said."""


@dataclass(frozen=True)
class PublishResult:
    """What the daemon committed of one publish: steps it accepted (stored) and dropped
    (refused or shed), why the first refused one was refused, and frames it did not keep."""

    accepted: int
    dropped: int
    first_error: str
    frames_shed: int
    # Steps the daemon recognised as re-sends by their worker_seq (counted in accepted, not
    # stored again).
    duplicates: int = 0


def raw_frame(pixels: Any, width: int, height: int, pixel_format: str = "rgb") -> pb.Frame:
    """A frame message from tightly packed pixels (bytes or a C-contiguous uint8 array)."""
    if pixel_format not in _PIXEL_FORMATS:
        raise ClientError(f"pixel format {pixel_format!r} is not one of {', '.join(_PIXEL_FORMATS)}")
    data = memoryview(pixels).cast("B").tobytes() if not isinstance(pixels, bytes) else pixels
    expected = width * height * _CHANNELS[pixel_format]
    if len(data) != expected:
        raise ClientError(
            f"frame has {len(data)} bytes; {width}x{height} {pixel_format} needs {expected}"
        )
    return pb.Frame(raw=pb.RawFrame(width=width, height=height, format=_PIXEL_FORMATS[pixel_format], pixels=data))


def _payload(value: Any) -> Optional[pb.Payload]:
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        return pb.Payload(raw=bytes(value))
    if isinstance(value, str):
        return pb.Payload(json=value)
    return pb.Payload(json=json.dumps(value, default=_jsonable))


def _jsonable(value: Any) -> Any:
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars
    if callable(tolist):
        return tolist()
    return str(value)


class Client:
    """A connection to a framelane daemon (`framelane serve`, or the window's embedded one).

    >>> client = Client("127.0.0.1:50551")
    >>> client.register("run-1", profile="box2d")
    >>> result = client.publish_steps([client.step("run-1", episode=0, step=i, reward=1.0) for i in range(100)])
    >>> assert result.accepted == 100
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        token: Optional[str] = None,
        worker_id: str = "python",
        timeout: float = 60.0,
        tls_ca: Optional[str] = None,
    ) -> None:
        """`tls_ca`: path of the CA certificate (PEM) of a daemon that serves TLS
        (`framelane serve --tls-cert`); also FRAMELANE_TLS_CA."""
        self.address = address
        self.worker_id = worker_id
        self.timeout = timeout
        options = [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ]
        tls_ca = tls_ca or os.environ.get("FRAMELANE_TLS_CA") or None
        if tls_ca:
            try:
                with open(tls_ca, "rb") as f:
                    root = f.read()
            except OSError as err:
                raise ClientError(f"tls_ca {tls_ca}: {err}") from err
            self._channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=root), options=options)
        else:
            self._channel = grpc.insecure_channel(address, options=options)
        self._metadata = [("authorization", f"Bearer {token}")] if token else []
        self._stub = pb_grpc.TelemetryStub(self._channel)
        self.session_token = ""

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, metadata=self._metadata, timeout=self.timeout, **kwargs)
        except grpc.RpcError as err:
            raise ClientError(f"{what} at {self.address}: {err.code().name}: {err.details()}") from err

    def wait_until_ready(self, timeout: float = 30.0) -> None:
        """Waits until the daemon accepts connections (for scripts that start it)."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError as err:
            raise ClientError(f"daemon at {self.address} not reachable within {timeout} s") from err

    def register(self, run_id: str, profile: str = "", worker_kind: str = "framelane-python") -> str:
        """Registers this worker for `run_id` (creating the run) and picks its storage profile;
        returns the profile in force."""
        reply = self._call(
            "RegisterWorker",
            self._stub.RegisterWorker,
            pb.RegisterWorkerRequest(run_id=run_id, worker_id=self.worker_id, worker_kind=worker_kind, profile=profile),
        )
        self.session_token = reply.session_token
        return reply.profile

    def step(
        self,
        run_id: str,
        episode: int,
        step: int,
        reward: float = 0.0,
        terminated: bool = False,
        truncated: bool = False,
        action: Any = None,
        observation: Any = None,
        frame: Optional[pb.Frame] = None,
        agent_id: str = "agent-0",
        producer_unix_ns: Optional[int] = None,
        worker_seq: int = 0,
    ) -> pb.Step:
        """A step message (actions and observations: bytes, a JSON string, or anything JSON or
        numpy can express)."""
        return pb.Step(
            run_id=run_id,
            worker_id=self.worker_id,
            agent_id=agent_id,
            episode=int(episode),
            step=int(step),
            reward=float(reward),
            terminated=bool(terminated),
            truncated=bool(truncated),
            producer_unix_ns=producer_unix_ns or time.time_ns(),
            action=_payload(action),
            observation=_payload(observation),
            frame=frame,
            session_token=self.session_token,
            worker_seq=int(worker_seq),
        )

    def episode(
        self,
        run_id: str,
        episode: int,
        total_reward: float,
        steps: int,
        terminated: bool = False,
        truncated: bool = False,
        metadata: Any = None,
        agent_id: str = "agent-0",
    ) -> pb.Episode:
        return pb.Episode(
            run_id=run_id,
            worker_id=self.worker_id,
            agent_id=agent_id,
            episode=int(episode),
            total_reward=float(total_reward),
            steps=int(steps),
            terminated=bool(terminated),
            truncated=bool(truncated),
            metadata_json=json.dumps(metadata if metadata is not None else {}, default=_jsonable),
            producer_unix_ns=time.time_ns(),
            session_token=self.session_token,
        )

    def publish_steps(self, steps: Iterable[pb.Step]) -> PublishResult:
        """Streams steps; returns once the daemon has committed them (or refused some)."""
        reply = self._call("PublishSteps", self._stub.PublishSteps, iter(steps))
        return PublishResult(reply.accepted, reply.dropped, reply.first_error, reply.frames_shed, reply.duplicates)

    def publish_episodes(self, episodes: Iterable[pb.Episode]) -> PublishResult:
        reply = self._call("PublishEpisodes", self._stub.PublishEpisodes, iter(episodes))
        return PublishResult(reply.accepted, reply.dropped, reply.first_error, reply.frames_shed)

    def list_runs(self) -> List[pb.RunSummary]:
        return list(self._call("ListRuns", self._stub.ListRuns, pb.ListRunsRequest()).runs)

    def subscribe_steps(self, run_id: str, since_seq: int = 1) -> Iterator[pb.StoredStep]:
        """Committed steps of `run_id` from `since_seq` on, then new ones as they commit (the
        iterator ends when the call is cancelled or the daemon stops)."""
        try:
            yield from self._stub.SubscribeSteps(
                pb.SubscribeRequest(run_id=run_id, since_seq=since_seq), metadata=self._metadata
            )
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.CANCELLED:
                raise ClientError(f"SubscribeSteps at {self.address}: {err.code().name}: {err.details()}") from err

    def health(self) -> pb.HealthReply:
        return self._call("Health", self._stub.Health, pb.HealthRequest())

    def ask_max_rate(self, run_id: str, hz: int) -> int:
        """Asks the workers of `run_id` to publish at most `hz` frames a second (0 lifts the
        cap); returns how many were listening."""
        reply = self._call(
            "SendControl", self._stub.SendControl, pb.ControlMessage(run_id=run_id, max_rate_hz=int(hz))
        )
        return reply.listeners

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class StepPublisher:
    """Batches steps and episodes of one run and publishes each batch as one acknowledged
    stream. Nothing is dropped silently: refused items are counted in `dropped` and the first
    reason kept in `first_error`; a failed publish counts its whole batch as dropped.

    In the foreground (the default), `add` publishes when a batch is full, so the caller waits
    for the commit once per batch. With `background=True` a thread named `framelane-publish`
    builds the messages and publishes, so the caller's loop overlaps with the network and the
    commit; `add` waits only when `max_pending` items are queued (the daemon is behind: flow
    control, never loss). Items may be messages or callables that build one (built on the
    publishing thread). `flush()` returns when everything added so far is acknowledged."""

    _FLUSH = object()
    _STOP = object()

    def __init__(
        self,
        client: Client,
        run_id: str,
        batch_size: int = 100,
        background: bool = False,
        max_pending: Optional[int] = None,
    ) -> None:
        if batch_size < 1:
            raise ClientError(f"batch size {batch_size} must be at least 1")
        self.client, self.run_id, self.batch_size = client, run_id, batch_size
        self._steps: List[pb.Step] = []
        self._episodes: List[pb.Episode] = []
        self.accepted = 0
        self.dropped = 0
        self.frames_shed = 0
        self.duplicates = 0
        self.first_error = ""
        self._seq = 0
        self._queue: Optional[queue.Queue] = None
        self._thread: Optional[threading.Thread] = None
        if background:
            self._queue = queue.Queue(maxsize=max_pending or batch_size * 8)
            self._thread = threading.Thread(target=self._drain, name="framelane-publish", daemon=True)
            self._thread.start()

    def add(self, step: Union[pb.Step, Callable[[], pb.Step]]) -> None:
        if self._queue is not None:
            self._queue.put((self._steps, step))
            return
        self._steps.append(step() if callable(step) else step)
        if len(self._steps) >= self.batch_size:
            self._send()

    def add_episode(self, episode: Union[pb.Episode, Callable[[], pb.Episode]]) -> None:
        if self._queue is not None:
            self._queue.put((self._episodes, episode))
            return
        self._episodes.append(episode() if callable(episode) else episode)

    def flush(self) -> None:
        if self._queue is not None:
            self._queue.put(self._FLUSH)
            self._queue.join()
            return
        self._send()

    def close(self) -> None:
        if self._queue is not None and self._thread is not None:
            self._queue.put(self._STOP)
            self._queue.join()
            self._thread.join()
            self._queue = None
            return
        self._send()

    def _drain(self) -> None:
        assert self._queue is not None
        while True:
            try:
                item = self._queue.get(timeout=0.2)
            except queue.Empty:
                # Idle: what is waiting goes out now rather than when the batch fills.
                self._send()
                continue
            try:
                if item is self._FLUSH or item is self._STOP:
                    self._send()
                    if item is self._STOP:
                        return
                    continue
                target, message = item
                target.append(message() if callable(message) else message)
                if len(self._steps) >= self.batch_size:
                    self._send()
            finally:
                self._queue.task_done()

    def _send(self) -> None:
        for items, publish in ((self._steps, self.client.publish_steps), (self._episodes, self.client.publish_episodes)):
            if not items:
                continue
            batch = list(items)
            items.clear()
            numbered = items is self._steps
            if numbered:
                for step in batch:
                    if not step.worker_seq:
                        self._seq += 1
                        step.worker_seq = self._seq
            try:
                result = publish(batch)
            except ClientError as err:
                # Numbered steps are safe to send again: what was committed is not stored twice.
                try:
                    if not numbered:
                        raise
                    result = publish(batch)
                except ClientError:
                    self.dropped += len(batch)
                    if not self.first_error:
                        self.first_error = str(err)
                    continue
            self.duplicates += result.duplicates
            self.accepted += result.accepted
            self.dropped += result.dropped
            self.frames_shed += result.frames_shed
            if result.first_error and not self.first_error:
                self.first_error = result.first_error


__all__ = ["Client", "ClientError", "PublishResult", "StepPublisher", "raw_frame", "DEFAULT_ADDRESS"]
