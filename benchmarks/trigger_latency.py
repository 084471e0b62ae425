#!/usr/bin/env python
"""Trigger -> result latency over OPC UA, triggered vs free-running, with Aravis' fake GigE camera.

    python benchmarks/trigger_latency.py MODEL [--triggers 200] [--rounds 5] [--json OUT.json]

Each round starts the fake camera (arv-fake-gv-camera-0.8 on 127.0.0.1) and ``rd-infer MODEL
aravis://127.0.0.1 --opcua ...`` as its own process, once with ``--trigger`` (TriggerMode On,
TriggerSource Software: one frame per request) and once free-running at the camera's frame rate
(a request is answered by the next frame read), alternating A B A B so a shared host's drift hits
both alike. An asyncua client calls ``Streams.cam.Trigger`` ``triggers / rounds`` times per round
and measures each call from request to reply (what a PLC sees: OPC UA round trip, camera, model,
publication). Prints p50/p90/p99/max per mode.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

FAKE = "arv-fake-gv-camera-0.8"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def call_triggers(url: str, n: int) -> List[float]:
    from asyncua import Client

    deadline = time.monotonic() + 60
    while True:
        client = Client(url, timeout=10)
        try:
            await client.connect()
            break
        except (OSError, asyncio.TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
    try:
        ns = await client.get_namespace_index("urn:rd-edge:vision")
        stream = client.get_node(f"ns={ns};s=RdEdge.Streams.cam")
        await stream.call_method(f"{ns}:Trigger")  # warm-up, not counted
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            answer = await stream.call_method(f"{ns}:Trigger")
            times.append((time.perf_counter() - t0) * 1000.0)
            if answer[5]:
                raise RuntimeError(f"inspection failed: {answer[5]}")
            await asyncio.sleep(0.02)  # a PLC's cycle between parts
        return times
    finally:
        await client.disconnect()


def run_round(model: Path, triggered: bool, n: int, camera: str) -> List[float]:
    fake = subprocess.Popen(
        [FAKE, "-i", "127.0.0.1", "-s", "BENCH"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"opc.tcp://127.0.0.1:{free_port()}"
    command = [
        str(Path(sys.executable).with_name("rd-infer")),
        str(model),
        f"cam=aravis://127.0.0.1?{camera}",
        "--opcua",
        url,
        "--quiet",
    ] + (["--trigger"] if triggered else [])
    time.sleep(0.5)
    infer = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        return asyncio.run(call_triggers(url, n))
    finally:
        infer.send_signal(signal.SIGTERM)
        try:
            infer.wait(timeout=20)
        except subprocess.TimeoutExpired:
            infer.kill()
        fake.kill()
        fake.wait()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", type=Path)
    parser.add_argument("--triggers", type=int, default=200, help="triggers per mode, over all rounds")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--camera",
        default="Width=640&Height=480&PixelFormat=BayerGR8&AcquisitionFrameRate=30",
        help="the fake camera's features (URL query)",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    per_round = args.triggers // args.rounds
    times: Dict[str, List[float]] = {"triggered": [], "free-running": []}
    for r in range(args.rounds):
        for mode in ("triggered", "free-running"):
            got = run_round(args.model, mode == "triggered", per_round, args.camera)
            times[mode] += got
            print(f"round {r + 1} {mode}: p50 {np.percentile(got, 50):.1f} ms", file=sys.stderr, flush=True)
    report = {"model": str(args.model), "camera": args.camera, "cpu": _cpu(), "rounds": args.rounds}
    for mode, values in times.items():
        v = np.asarray(values)
        report[mode] = {
            "n": int(v.size),
            **{f"p{q}": round(float(np.percentile(v, q)), 2) for q in (50, 90, 99)},
            "max": round(float(v.max()), 2),
        }
        print(
            f"{mode}: n={v.size} p50 {report[mode]['p50']} ms, p90 {report[mode]['p90']} ms, "
            f"p99 {report[mode]['p99']} ms, max {report[mode]['max']} ms"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores visible)"
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    sys.exit(main())
