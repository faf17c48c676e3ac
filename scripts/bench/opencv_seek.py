"""Random exact-frame seeks the way an OpenCV user writes them: one VideoCapture kept open,
set CAP_PROP_POS_FRAMES, read. `framelane bench replay` runs it beside its own seeks.

Usage: python3 opencv_seek.py VIDEO 17,402,99,...
Prints one line per seek: target frame, milliseconds, frame number read back from the pixels
(-1 when nothing was read).
"""

import sys
import time

import cv2


def read_number(frame):
    """The number the bench's numbered frames spell in 16 black/white bars (BGR picture)."""
    height, width = frame.shape[:2]
    band = height // 4
    bar = max(width // 16, 1)
    number = 0
    for bit in range(16):
        x0, x1 = bit * bar + bar // 4, bit * bar + bar * 3 // 4
        y0, y1 = band // 4, band * 3 // 4
        patch = frame[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)]
        number = (number << 1) | int(patch.mean() > 128)
    return number


def main():
    path, targets = sys.argv[1], [int(t) for t in sys.argv[2].split(",") if t]
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        sys.exit(f"OpenCV cannot open {path}")
    for target in targets:
        started = time.perf_counter()
        capture.set(cv2.CAP_PROP_POS_FRAMES, target)
        ok, frame = capture.read()
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        print(target, f"{elapsed_ms:.3f}", read_number(frame) if ok else -1, flush=True)


if __name__ == "__main__":
    main()
