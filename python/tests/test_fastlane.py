"""The Python writer against the Rust reader and the Rust writer against the Python reader,
through real segments in /dev/shm and the real `framelane` binary."""

import json
import os
import struct
import subprocess

import numpy as np
import pytest

from conftest import wait_for
from framelane.fastlane import FastLaneError, FastLaneReader, FastLaneWriter, Hud, segment_path


def inspect(binary, run_id, dump_path):
    out = subprocess.run(
        [binary, "fastlane", "inspect", run_id, "--json", "--dump-frame", str(dump_path)],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    return json.loads(out)


def bits(value: float) -> str:
    return str(struct.unpack("<Q", struct.pack("<d", value))[0])


@pytest.mark.parametrize("pixel_format,channels", [("rgb", 3), ("rgba", 4), ("bgra", 4)])
def test_the_rust_reader_reads_a_python_frame_bit_exact(framelane_bin, run_id, tmp_path, pixel_format, channels):
    height, width = 48, 64
    rng = np.random.default_rng(7)
    with FastLaneWriter(run_id, width, height, pixel_format) as writer:
        for n in range(1, 4):
            frame = rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)
            hud = Hud(episode=n, step=100 + n, reward=0.1 * n, episodic_return=-1.0 / 3 * n, steps_per_second=59.9)
            assert writer.publish(frame, hud) == n
        report = inspect(framelane_bin, run_id, tmp_path / "frame.raw")
        assert report["kind"] == "framelane"
        assert (report["width"], report["height"], report["format"].lower()) == (width, height, pixel_format)
        assert report["woken_by_writer"] is True
        newest = report["newest"]
        assert newest["frame_number"] == 3
        assert (newest["episode"], newest["step"]) == (3, 103)
        assert newest["reward_bits"] == bits(0.1 * 3)
        assert newest["episodic_return_bits"] == bits(-1.0 / 3 * 3)
        assert (tmp_path / "frame.raw").read_bytes() == frame.tobytes()
    assert not os.path.exists(segment_path(run_id)), "closing removes the segment"


def test_bytes_and_numpy_frames_are_the_same_frame(framelane_bin, run_id, tmp_path):
    with FastLaneWriter(run_id, 4, 2, "rgb") as writer:
        data = bytes(range(24))
        writer.publish(data)
        inspect(framelane_bin, run_id, tmp_path / "a.raw")
        writer.publish(np.frombuffer(data, dtype=np.uint8).reshape(2, 4, 3))
        inspect(framelane_bin, run_id, tmp_path / "b.raw")
    assert (tmp_path / "a.raw").read_bytes() == (tmp_path / "b.raw").read_bytes() == data


def test_the_python_reader_reads_what_the_rust_writer_wrote(framelane_bin, run_id, tmp_path):
    # A slow producer, so the newest frame stays newest while both readers look at it.
    producer = subprocess.Popen(
        [framelane_bin, "demo", "--run", run_id, "--size", "96x64", "--format", "rgba", "--rate", "2"],
        stdout=subprocess.DEVNULL,
    )
    try:
        reader = wait_for(lambda: _attach(run_id))
        assert reader is not None, "the demo's segment appeared"
        with reader:
            assert (reader.width, reader.height, reader.pixel_format) == (96, 64, "rgba")

            def same_frame():
                ours = reader.read_newest()
                if ours is None:
                    return None
                report = inspect(framelane_bin, run_id, tmp_path / "rust.raw")
                if report["newest"] and report["newest"]["frame_number"] == ours.frame_number:
                    return ours, report
                return None

            found = wait_for(same_frame)
            assert found is not None, "both readers saw the same frame"
            ours, report = found
            assert ours.pixels == (tmp_path / "rust.raw").read_bytes()
            assert (ours.hud.episode, ours.hud.step) == (report["newest"]["episode"], report["newest"]["step"])
            assert bits(ours.hud.reward) == report["newest"]["reward_bits"]
    finally:
        producer.terminate()
        producer.wait(timeout=30)


def _attach(run_id):
    try:
        return FastLaneReader(run_id)
    except FastLaneError:
        return None


def test_bad_frames_and_names_are_refused_with_what_was_wrong(run_id):
    with FastLaneWriter(run_id, 8, 8, "rgb") as writer:
        with pytest.raises(FastLaneError, match=r"frame has 10 bytes; 8x8 rgb needs 192"):
            writer.publish(b"\0" * 10)
        strided = np.zeros((8, 16, 3), dtype=np.uint8)[:, ::2]
        with pytest.raises(FastLaneError, match="not contiguous"):
            writer.publish(strided)
        assert writer.published == 0, "refused frames are not published"
    for bad, reason in [("", "empty"), ("x" * 200, "longer than 127"), ("a\nb", "control"), ("..", "relative")]:
        with pytest.raises(FastLaneError, match=reason):
            FastLaneWriter(bad, 8, 8)
    with pytest.raises(FastLaneError, match="pixel format"):
        FastLaneWriter(run_id, 8, 8, "yuv")
    with pytest.raises(FastLaneError, match="width 0"):
        FastLaneWriter(run_id, 0, 8)


def test_a_killed_writers_segment_is_replaced_by_the_next_writer(run_id):
    script = (
        "import signal, sys; sys.path.insert(0, sys.argv[2]);"
        "from framelane.fastlane import FastLaneWriter;"
        "w = FastLaneWriter(sys.argv[1], 4, 4); w.publish(bytes(48)); print('ready', flush=True); signal.pause()"
    )
    package_root = os.path.dirname(os.path.dirname(__import__("framelane").__file__))
    child = subprocess.Popen(["python3", "-c", script, run_id, package_root], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        with pytest.raises(FastLaneError, match="live writer"):
            FastLaneWriter(run_id, 4, 4)
        child.kill()
        child.wait(timeout=30)
        with FastLaneWriter(run_id, 4, 4) as writer:
            assert writer.publish(bytes(48)) == 1
    finally:
        if child.poll() is None:
            child.kill()
