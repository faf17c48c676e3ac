"""Fixtures: the framelane binary of this checkout and a real daemon (`framelane serve`) on a
free loopback port with its own data directory."""

import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def framelane_bin() -> str:
    path = os.environ.get("FRAMELANE_BIN") or str(REPO / "target" / "release" / "framelane")
    if not os.access(path, os.X_OK):
        pytest.fail(f"framelane binary not found at {path} (build it, or set FRAMELANE_BIN)")
    return path


@pytest.fixture
def run_id() -> str:
    return f"py-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class Daemon:
    def __init__(self, binary: str, data_dir: Path) -> None:
        self.process = subprocess.Popen(
            [binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir)],
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline()
        match = re.search(r"listening on (\S+)", line)
        if not match:
            self.process.kill()
            raise RuntimeError(f"framelane serve did not say where it listens: {line!r}")
        self.address = match.group(1)
        self.data_dir = data_dir

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


@pytest.fixture
def daemon(framelane_bin, tmp_path):
    d = Daemon(framelane_bin, tmp_path / "data")
    yield d
    d.stop()


def wait_for(check, timeout: float = 30.0, interval: float = 0.05):
    """Polls `check` until it returns something truthy or `timeout` passes (then returns None)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    return None
