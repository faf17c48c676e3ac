#!/usr/bin/env python3
"""A MOSAIC "FLAN" v1 fast-lane writer, written from ../shared/specs/mosaic-fastlane-v1.md.

It behaves like MOSAIC's Python workers: multiprocessing.shared_memory, no explicit fences,
HUD values in the header written before the slot. Used by the tests to check that framelane
reads such segments bit-exact.

Frame n (1-based) has pixel byte i = (n * 7 + i * 13) % 256.
"""
import argparse
import json
import struct
import sys
import time
import zlib
from multiprocessing import shared_memory

HEADER = struct.Struct("<4sIIIIIIIIIQQddd")  # 80 bytes
SLOT_HEADER = struct.Struct("<QII")  # 16 bytes


def pixel_bytes(n, size):
    return bytes((n * 7 + i * 13) % 256 for i in range(size))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", required=True)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--height", type=int, default=48)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--capacity", type=int, default=8)
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--metadata-reserve", type=int, default=256)
    parser.add_argument("--rate", type=float, default=0.0, help="frames per second after the first batch; 0 = stop")
    args = parser.parse_args()

    frame_len = args.width * args.height * args.channels
    payload_size = frame_len + args.metadata_reserve
    slot_size = 16 + payload_size
    total = 80 + args.capacity * slot_size
    name = "mosaic.fastlane." + args.run.replace("/", "_")
    shm = shared_memory.SharedMemory(name=name, create=True, size=total)
    buf = shm.buf
    fmt = "RGB" if args.channels == 3 else "RGBA"
    head = 0

    def write_header(reward, rolling, rate):
        HEADER.pack_into(buf, 0, b"FLAN", 1, 0, args.capacity, slot_size, payload_size,
                         args.width, args.height, args.channels, zlib.crc32(fmt.encode()),
                         head, 0, reward, rolling, rate)

    def publish(n):
        nonlocal head
        reward, rolling, rate = n * 0.5, n * 1.25, 30.0 + n
        # HUD values go in the header before the slot, outside the seqlock.
        struct.pack_into("<ddd", buf, 56, reward, rolling, rate)
        meta = json.dumps({"episode_index": n // 3, "step_index": n * 10}).encode()
        idx = (n - 1) % args.capacity
        off = 80 + idx * slot_size
        SLOT_HEADER.pack_into(buf, off, 2 * n + 1, frame_len, len(meta))
        buf[off + 16: off + 16 + frame_len] = pixel_bytes(n, frame_len)
        buf[off + 16 + frame_len: off + 16 + frame_len + len(meta)] = meta
        struct.pack_into("<Q", buf, off, 2 * n + 2)
        head = n
        struct.pack_into("<Q", buf, 40, head)

    write_header(0.0, 0.0, 0.0)
    for n in range(1, args.frames + 1):
        publish(n)
    print("ready", flush=True)
    try:
        n = args.frames
        while args.rate > 0:
            time.sleep(1.0 / args.rate)
            n += 1
            publish(n)
        # Hold the segment until the test closes our stdin.
        sys.stdin.read()
    finally:
        struct.pack_into("<I", buf, 8, 1)  # invalidated
        del buf
        shm.close()
        shm.unlink()


if __name__ == "__main__":
    main()
