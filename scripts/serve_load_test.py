#!/usr/bin/env python3
"""Bounded load test of rd-serve: C concurrent clients on 127.0.0.1 for at most 60 s.

    python scripts/serve_load_test.py model.onnx IMAGES_DIR [--clients 8] [--seconds 30]
        [--protocol http|grpc] [--max-batch 8] [--instances 1] [--threads N] [--json out.json]

Starts rd-serve (RD_SERVE or .venv-serve/bin/rd-serve) on free ports of 127.0.0.1, sends one
encoded image per request from each client in a loop, and reports requests/s, latency p50/p99,
errors, the server's RSS (tritonserver and its Python-backend stubs) before and after, and the
batch sizes Triton's dynamic batcher formed (from its statistics endpoint). Stops the server.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import psutil

from rd_edge.core.images import list_images
from rd_edge.runtime.client import ServerError, TritonClient

ROOT = Path(__file__).resolve().parents[1]
MAX_SECONDS = 60


def free_ports(n: int) -> List[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def server_rss_mb(pid: int) -> Dict[str, float]:
    """RSS of the server's process tree in MiB: tritonserver and each stub (model instance)."""
    parent = psutil.Process(pid)
    rss = {"rd-serve": parent.memory_info().rss}
    for child in parent.children(recursive=True):
        try:
            name = "stub" if "stub" in child.name() else child.name()
            rss[name] = rss.get(name, 0) + child.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return {k: round(v / 2**20, 1) for k, v in rss.items()} | {"total": round(sum(rss.values()) / 2**20, 1)}


def batch_sizes(stats: Dict[str, Any]) -> Dict[int, int]:
    """{batch size: executions} from Triton's statistics (HTTP JSON or gRPC as_json)."""
    model = stats["model_stats"][0]
    return {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in model.get("batch_stats", [])}


def client_loop(
    url: str, images: List[bytes], stop: float, latencies: List[float], errors: List[str], offset: int
) -> None:
    with TritonClient(url) as client:
        i = offset
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            try:
                client.predict_encoded([images[i % len(images)]])
                latencies.append((time.perf_counter() - t0) * 1000.0)
            except ServerError as exc:
                errors.append(str(exc))
            i += 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("images", type=Path)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--protocol", choices=["http", "grpc"], default="http")
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--instances", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads per instance")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    seconds = min(args.seconds, MAX_SECONDS)
    images = [path.read_bytes() for path in list_images(args.images)]
    rd_serve = os.environ.get("RD_SERVE", str(ROOT / ".venv-serve" / "bin" / "rd-serve"))
    http, grpc, metrics = free_ports(3)
    command = [
        rd_serve,
        args.model,
        "--host",
        "127.0.0.1",
        "--http-port",
        str(http),
        "--grpc-port",
        str(grpc),
        "--metrics-port",
        str(metrics),
        "--max-batch",
        str(args.max_batch),
        "--instances",
        str(args.instances),
    ]
    if args.threads:
        command += ["--threads", str(args.threads)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{http}" if args.protocol == "http" else f"grpc://127.0.0.1:{grpc}"
    try:
        probe = TritonClient(url)
        deadline = time.monotonic() + 120
        while not probe.ready():
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"rd-serve did not start: {server.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)
        probe.predict_encoded(images[:1])  # warm-up: first inference allocates
        rss_before = server_rss_mb(server.pid)
        batches_before = batch_sizes(probe.statistics())
        latencies: List[float] = []
        errors: List[str] = []
        stop = time.monotonic() + seconds
        started = time.perf_counter()
        threads = [
            threading.Thread(target=client_loop, args=(url, images, stop, latencies, errors, i))
            for i in range(args.clients)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(seconds + 60)
        elapsed = time.perf_counter() - started
        rss_after = server_rss_mb(server.pid)
        batches_after = batch_sizes(probe.statistics())
        probe.close()
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    formed = {b: batches_after.get(b, 0) - batches_before.get(b, 0) for b in sorted(batches_after)}
    formed = {b: n for b, n in formed.items() if n}
    lat = np.asarray(latencies)
    report = {
        "cpu": _cpu_name(),
        "model": str(args.model),
        "protocol": args.protocol,
        "clients": args.clients,
        "seconds": round(elapsed, 1),
        "max_batch": args.max_batch,
        "instances": args.instances,
        "threads": args.threads,
        "requests": len(latencies),
        "errors": len(errors),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "latency_ms": {
            "p50": round(float(np.percentile(lat, 50)), 1),
            "p99": round(float(np.percentile(lat, 99)), 1),
        }
        if len(lat)
        else None,
        "server_rss_mb": {"before": rss_before, "after": rss_after},
        "batch_sizes_formed": formed,
        "mean_batch": round(sum(b * n for b, n in formed.items()) / max(sum(formed.values()), 1), 2),
        "first_errors": errors[:3],
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 1 if errors else 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() + f" ({os.cpu_count()} CPUs)"
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    sys.exit(main())
