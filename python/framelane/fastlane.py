"""framelane's fast lane from Python: write the newest frame and its HUD values into a
shared-memory segment the window (and any framelane reader) shows, and read segments back.

The byte layout is docs/fastlane.md (framelane v1). One writer per run; publishing never waits
for a reader. Linux only (POSIX shared memory under /dev/shm).
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import struct
import time
from dataclasses import dataclass
from typing import Optional, Union

MAGIC = b"FRAMELN\0"
VERSION = 1
HEADER_SIZE = 256
SLOT_HEADER_SIZE = 64
SLOT_ALIGN = 64
MAX_RUN_ID_BYTES = 127
MAX_DIMENSION = 16384
MAX_CAPACITY = 1024
SEGMENT_DIR = "/dev/shm"
SEGMENT_PREFIX = "framelane."

FLAG_INVALIDATED = 1
FLAG_NOTIFIES = 2

# Header offsets.
_H_MAGIC, _H_VERSION, _H_HEADER_SIZE, _H_FLAGS = 0, 8, 12, 16
_H_PIXEL_FORMAT, _H_WIDTH, _H_HEIGHT, _H_ROW_STRIDE, _H_CAPACITY = 20, 24, 28, 32, 36
_H_SLOT_STRIDE, _H_WRITER_PID, _H_WRITER_START_TICKS = 40, 48, 56
_H_CREATED_UNIX_NS, _H_HEARTBEAT_MONO_NS, _H_HEAD = 64, 72, 80
_H_RUN_ID_LEN, _H_RUN_ID, _H_PUBLISH_SEQ, _H_SLEEPERS = 88, 96, 224, 228

# Slot offsets.
_S_SEQ, _S_FRAME_NUMBER, _S_PRODUCER_MONO_NS = 0, 8, 16
_S_EPISODE, _S_STEP, _S_REWARD, _S_RETURN, _S_RATE = 24, 32, 40, 48, 56

_FORMATS = {"rgb": (1, 3), "rgba": (2, 4), "bgra": (3, 4)}
_FORMAT_NAMES = {code: name for name, (code, _) in _FORMATS.items()}

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_F64 = struct.Struct("<d")

class FastLaneError(Exception):
    """A fast-lane operation failed; the message names the segment and what was wrong."""


@dataclass(frozen=True)
class Hud:
    """The values the window's HUD shows with a frame."""

    episode: int = 0
    step: int = 0
    reward: float = 0.0
    episodic_return: float = 0.0
    steps_per_second: float = 0.0


@dataclass(frozen=True)
class Frame:
    """A frame read back from a segment: its publication number, HUD and tightly packed pixels."""

    frame_number: int
    hud: Hud
    producer_mono_ns: int
    pixels: bytes


def segment_path(run_id: str) -> str:
    """Where the segment of `run_id` lives (every '/' in the run id becomes '_')."""
    return os.path.join(SEGMENT_DIR, SEGMENT_PREFIX + run_id.replace("/", "_"))


def _check_run_id(run_id: str) -> None:
    if not isinstance(run_id, str):
        raise FastLaneError(f"run id {run_id!r} is not a string")
    raw = run_id.encode("utf-8")
    reason = None
    if not raw:
        reason = "it is empty"
    elif len(raw) > MAX_RUN_ID_BYTES:
        reason = f"it is longer than {MAX_RUN_ID_BYTES} bytes"
    elif any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in run_id):
        reason = "it contains control characters"
    elif run_id in (".", ".."):
        reason = "it is a relative path component"
    if reason:
        raise FastLaneError(f"run id {run_id!r} cannot name a segment: {reason}")


def _monotonic_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def _start_ticks(pid: int) -> int:
    """Field 22 of /proc/<pid>/stat: tells a live writer from a process that reused its pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return 0
    rest = stat[stat.rfind(b")") + 1 :].split()
    try:
        return int(rest[19])
    except (IndexError, ValueError):
        return 0


def _writer_alive(pid: int, ticks: int) -> bool:
    if pid == 0:
        return False
    now = _start_ticks(pid)
    return now != 0 and (ticks == 0 or now == ticks)


_libc = None


def _futex_wake_all(buffer: mmap.mmap, offset: int) -> None:
    """FUTEX_WAKE every reader sleeping on the u32 at `offset` of the shared mapping."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    address = ctypes.addressof(ctypes.c_char.from_buffer(buffer, offset))
    sys_futex = {"x86_64": 202, "aarch64": 98}.get(os.uname().machine)
    if sys_futex is not None:
        _libc.syscall(sys_futex, ctypes.c_void_p(address), 1, 0x7FFFFFFF, None, None, 0)


PixelsLike = Union[bytes, bytearray, memoryview, "numpy.ndarray"]  # noqa: F821


class FastLaneWriter:
    """Publishes the newest frame of one run.

    >>> w = FastLaneWriter("my-run", 84, 84, "rgb")
    >>> w.publish(frame, Hud(episode=0, step=1, reward=0.5))

    `frame` is a bytes-like object or a C-contiguous numpy array of height x width x channels
    uint8 (anything exposing the buffer protocol with exactly width*height*channels bytes); it
    is copied once, straight into shared memory. Closing (or leaving a `with` block) marks the
    segment invalidated and removes it; a killed writer's segment is reported gone by readers
    and replaced by the next writer of the run.
    """

    def __init__(
        self,
        run_id: str,
        width: int,
        height: int,
        pixel_format: str = "rgb",
        capacity: int = 4,
    ) -> None:
        _check_run_id(run_id)
        if pixel_format not in _FORMATS:
            raise FastLaneError(
                f"pixel format {pixel_format!r} is not one of {', '.join(_FORMATS)}"
            )
        for name, value in (("width", width), ("height", height)):
            if not isinstance(value, int) or not 1 <= value <= MAX_DIMENSION:
                raise FastLaneError(f"{name} {value!r} is outside 1..={MAX_DIMENSION}")
        if not isinstance(capacity, int) or not 2 <= capacity <= MAX_CAPACITY:
            raise FastLaneError(f"capacity {capacity!r} is outside 2..={MAX_CAPACITY}")
        code, bpp = _FORMATS[pixel_format]
        self.run_id = run_id
        self.width, self.height, self.pixel_format = width, height, pixel_format
        self.row_stride = width * bpp
        self.frame_bytes = self.row_stride * height
        self.capacity = capacity
        self.slot_stride = (SLOT_HEADER_SIZE + self.frame_bytes + SLOT_ALIGN - 1) // SLOT_ALIGN * SLOT_ALIGN
        self.path = segment_path(run_id)
        self.published = 0
        self._closed = False
        length = HEADER_SIZE + capacity * self.slot_stride
        self._refuse_if_live()

        temp = os.path.join(
            SEGMENT_DIR, f".{os.path.basename(self.path)}.creating-{os.getpid()}"
        )
        fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            try:
                os.posix_fallocate(fd, 0, length)
            except OSError as err:
                raise FastLaneError(
                    f"{temp}: cannot reserve {length} bytes in {SEGMENT_DIR} ({err.strerror}); "
                    "is /dev/shm full?"
                ) from err
            self._map = mmap.mmap(fd, length, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            self._identity = os.fstat(fd)
        except BaseException:
            os.close(fd)
            try:
                os.unlink(temp)
            except OSError:
                pass
            raise
        os.close(fd)
        m = self._map
        m[_H_MAGIC : _H_MAGIC + 8] = MAGIC
        _U32.pack_into(m, _H_VERSION, VERSION)
        _U32.pack_into(m, _H_HEADER_SIZE, HEADER_SIZE)
        _U32.pack_into(m, _H_FLAGS, FLAG_NOTIFIES)
        _U32.pack_into(m, _H_PIXEL_FORMAT, code)
        _U32.pack_into(m, _H_WIDTH, width)
        _U32.pack_into(m, _H_HEIGHT, height)
        _U32.pack_into(m, _H_ROW_STRIDE, self.row_stride)
        _U32.pack_into(m, _H_CAPACITY, capacity)
        _U64.pack_into(m, _H_SLOT_STRIDE, self.slot_stride)
        _U64.pack_into(m, _H_WRITER_PID, os.getpid())
        _U64.pack_into(m, _H_WRITER_START_TICKS, _start_ticks(os.getpid()))
        _U64.pack_into(m, _H_CREATED_UNIX_NS, time.time_ns())
        _U64.pack_into(m, _H_HEARTBEAT_MONO_NS, _monotonic_ns())
        _U64.pack_into(m, _H_HEAD, 0)
        raw_id = run_id.encode("utf-8")
        _U64.pack_into(m, _H_RUN_ID_LEN, len(raw_id))
        m[_H_RUN_ID : _H_RUN_ID + len(raw_id)] = raw_id
        os.rename(temp, self.path)
        # One view of the whole mapping, sliced per slot without copying.
        self._view = memoryview(m)

    def _refuse_if_live(self) -> None:
        try:
            with open(self.path, "rb") as f:
                head = f.read(HEADER_SIZE)
        except OSError:
            return
        if len(head) < HEADER_SIZE or head[:8] != MAGIC:
            return
        pid = _U64.unpack_from(head, _H_WRITER_PID)[0]
        ticks = _U64.unpack_from(head, _H_WRITER_START_TICKS)[0]
        flags = _U32.unpack_from(head, _H_FLAGS)[0]
        if not flags & FLAG_INVALIDATED and pid != os.getpid() and _writer_alive(pid, ticks):
            raise FastLaneError(
                f"{self.path}: run {self.run_id!r} already has a live writer (pid {pid})"
            )

    def publish(self, pixels: PixelsLike, hud: Optional[Hud] = None) -> int:
        """Publishes one frame with its HUD values; returns its frame number (1-based)."""
        if self._closed:
            raise FastLaneError(f"{self.path}: the writer is closed")
        view = memoryview(pixels)
        if not view.c_contiguous:
            raise FastLaneError("the frame's memory is not contiguous (use numpy.ascontiguousarray)")
        if view.nbytes != self.frame_bytes:
            raise FastLaneError(
                f"frame has {view.nbytes} bytes; {self.width}x{self.height} "
                f"{self.pixel_format} needs {self.frame_bytes}"
            )
        hud = hud or Hud()
        number = self.published + 1
        start = HEADER_SIZE + ((number - 1) % self.capacity) * self.slot_stride
        m = self._map
        now = _monotonic_ns()
        # The seqlock: odd while the slot is written, then 2n+2. x86 keeps stores in order and
        # each pack_into is one store of aligned bytes, so a reader that sees the final sequence
        # sees everything before it.
        _U64.pack_into(m, start + _S_SEQ, 2 * number + 1)
        _U64.pack_into(m, start + _S_FRAME_NUMBER, number)
        _U64.pack_into(m, start + _S_PRODUCER_MONO_NS, now)
        _U64.pack_into(m, start + _S_EPISODE, int(hud.episode) & 0xFFFFFFFFFFFFFFFF)
        _U64.pack_into(m, start + _S_STEP, int(hud.step) & 0xFFFFFFFFFFFFFFFF)
        _F64.pack_into(m, start + _S_REWARD, float(hud.reward))
        _F64.pack_into(m, start + _S_RETURN, float(hud.episodic_return))
        _F64.pack_into(m, start + _S_RATE, float(hud.steps_per_second))
        pixels_at = start + SLOT_HEADER_SIZE
        self._view[pixels_at : pixels_at + self.frame_bytes] = view.cast("B")
        _U64.pack_into(m, start + _S_SEQ, 2 * number + 2)
        _U64.pack_into(m, _H_HEAD, number)
        _U64.pack_into(m, _H_HEARTBEAT_MONO_NS, now)
        self.published = number
        self._wake()
        return number

    def _wake(self, always: bool = False) -> None:
        """Bumps the publish word and wakes sleeping readers (the wake call only when one
        sleeps, or `always`, as when the writer goes)."""
        m = self._map
        seq = _U32.unpack_from(m, _H_PUBLISH_SEQ)[0]
        _U32.pack_into(m, _H_PUBLISH_SEQ, (seq + 1) & 0xFFFFFFFF)
        if always or _U32.unpack_from(m, _H_SLEEPERS)[0] != 0:
            _futex_wake_all(m, _H_PUBLISH_SEQ)

    def heartbeat(self) -> None:
        """Tells readers the writer is alive while it has no new frame."""
        if not self._closed:
            _U64.pack_into(self._map, _H_HEARTBEAT_MONO_NS, _monotonic_ns())

    def close(self) -> None:
        """Marks the segment invalidated, wakes readers and removes it (if it is still ours)."""
        if self._closed:
            return
        self._closed = True
        flags = _U32.unpack_from(self._map, _H_FLAGS)[0]
        _U32.pack_into(self._map, _H_FLAGS, flags | FLAG_INVALIDATED)
        self._wake(always=True)
        self._view.release()
        self._map.close()
        try:
            now = os.stat(self.path)
            if (now.st_dev, now.st_ino) == (self._identity.st_dev, self._identity.st_ino):
                os.unlink(self.path)
        except OSError:
            pass

    def __enter__(self) -> "FastLaneWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


class FastLaneReader:
    """Reads the newest stable frame of a framelane segment (for tools and tests; the window
    has its own reader)."""

    def __init__(self, run_id: str) -> None:
        _check_run_id(run_id)
        self.path = segment_path(run_id)
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as err:
            if err.errno == errno.ENOENT:
                raise FastLaneError(f"run {run_id!r} has no segment at {self.path}") from err
            raise FastLaneError(f"{self.path}: {err.strerror}") from err
        try:
            st = os.fstat(fd)
            if st.st_size < HEADER_SIZE:
                raise FastLaneError(f"{self.path}: {st.st_size} bytes is shorter than a header")
            self._map = mmap.mmap(fd, st.st_size, mmap.MAP_SHARED, mmap.PROT_READ)
        finally:
            os.close(fd)
        m = self._map
        if m[:8] != MAGIC:
            raise FastLaneError(f"{self.path}: not a framelane segment (magic {m[:8]!r})")
        version = _U32.unpack_from(m, _H_VERSION)[0]
        if version != VERSION:
            raise FastLaneError(f"{self.path}: version {version}, this reader reads {VERSION}")
        code = _U32.unpack_from(m, _H_PIXEL_FORMAT)[0]
        if code not in _FORMAT_NAMES:
            raise FastLaneError(f"{self.path}: pixel_format {code} is unknown")
        self.pixel_format = _FORMAT_NAMES[code]
        self.width = _U32.unpack_from(m, _H_WIDTH)[0]
        self.height = _U32.unpack_from(m, _H_HEIGHT)[0]
        self.row_stride = _U32.unpack_from(m, _H_ROW_STRIDE)[0]
        self.capacity = _U32.unpack_from(m, _H_CAPACITY)[0]
        self.slot_stride = _U64.unpack_from(m, _H_SLOT_STRIDE)[0]
        bpp = _FORMATS[self.pixel_format][1]
        if not (1 <= self.width <= MAX_DIMENSION and 1 <= self.height <= MAX_DIMENSION):
            raise FastLaneError(f"{self.path}: size {self.width}x{self.height} is out of range")
        if not 1 <= self.capacity <= MAX_CAPACITY:
            raise FastLaneError(f"{self.path}: capacity {self.capacity} is out of range")
        if self.row_stride < self.width * bpp:
            raise FastLaneError(f"{self.path}: row_stride {self.row_stride} is shorter than a row")
        if self.slot_stride % SLOT_ALIGN or self.slot_stride < SLOT_HEADER_SIZE + self.row_stride * self.height:
            raise FastLaneError(f"{self.path}: slot_stride {self.slot_stride} is wrong")
        if HEADER_SIZE + self.capacity * self.slot_stride > len(m):
            raise FastLaneError(f"{self.path}: the slots do not fit the file")
        length = _U64.unpack_from(m, _H_RUN_ID_LEN)[0]
        self.run_id = bytes(m[_H_RUN_ID : _H_RUN_ID + min(length, MAX_RUN_ID_BYTES)]).decode("utf-8", "replace")

    @property
    def head(self) -> int:
        return _U64.unpack_from(self._map, _H_HEAD)[0]

    @property
    def invalidated(self) -> bool:
        return bool(_U32.unpack_from(self._map, _H_FLAGS)[0] & FLAG_INVALIDATED)

    def read_newest(self) -> Optional[Frame]:
        """The newest frame that could be read whole (None before the first publish)."""
        m = self._map
        row = self.width * _FORMATS[self.pixel_format][1]
        for _ in range(64):
            head = self.head
            if head == 0:
                return None
            for number in range(head, max(0, head - self.capacity), -1):
                start = HEADER_SIZE + ((number - 1) % self.capacity) * self.slot_stride
                seq = _U64.unpack_from(m, start + _S_SEQ)[0]
                if seq != 2 * number + 2:
                    continue
                frame_number, produced, episode, step = struct.unpack_from("<QQQQ", m, start + _S_FRAME_NUMBER)
                reward, ret, rate = struct.unpack_from("<ddd", m, start + _S_REWARD)
                at = start + SLOT_HEADER_SIZE
                if self.row_stride == row:
                    pixels = bytes(m[at : at + row * self.height])
                else:
                    pixels = b"".join(
                        m[at + y * self.row_stride : at + y * self.row_stride + row]
                        for y in range(self.height)
                    )
                if _U64.unpack_from(m, start + _S_SEQ)[0] != seq or frame_number != number:
                    continue
                return Frame(frame_number, Hud(episode, step, reward, ret, rate), produced, pixels)
        return None

    def close(self) -> None:
        self._map.close()

    def __enter__(self) -> "FastLaneReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["FastLaneWriter", "FastLaneReader", "FastLaneError", "Hud", "Frame", "segment_path"]
