"""Detector shared by threads: per-call batch buffers (what Detector does) vs one lock around
the whole batch path, measured interleaved (A B A B) on the same model and frames.

    python scripts/detector_threads.py model.onnx [--threads 4] [--frames 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import threading
import time

import numpy as np

from rd_edge.runtime import Detector


def run_threads(predict, frames, threads: int) -> float:
    """Wall seconds for ``threads`` threads each predicting every frame once, one at a time."""

    def work() -> None:
        for f in frames:
            predict(f)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    t0 = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("model")
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(args.frames)]
    lock = threading.Lock()
    with Detector(args.model) as det:
        det.predict(frames[0])  # warm-up

        def locked(f):
            with lock:  # the alternative: the whole batch path under one lock
                return det.predict(f)

        variants = {"per-call buffers": det.predict, "one lock": locked}
        times = {k: [] for k in variants}
        for _ in range(args.rounds):
            for name, fn in variants.items():  # interleaved: A B A B ...
                times[name].append(run_threads(fn, frames, args.threads))
    n = args.threads * args.frames
    for name, ts in times.items():
        print(
            f"{name:<17} median {np.median(ts):.3f} s for {n} frames "
            f"({n / np.median(ts):.1f} frames/s); runs {[round(t, 3) for t in ts]}"
        )
    ratio = np.median(times["one lock"]) / np.median(times["per-call buffers"])
    print(f"one lock / per-call buffers: {ratio:.2f}x")


if __name__ == "__main__":
    main()
