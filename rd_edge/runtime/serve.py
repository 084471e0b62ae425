"""rd-serve: the Detector behind NVIDIA Triton Inference Server (HTTP, gRPC, metrics).

    rd-serve model.onnx [--host H] [--http-port P] [--grpc-port Q] [--metrics-port M]
             [--max-batch N] [--instances K] [--threshold T] [--repository DIR [--no-serve]]

Writes a Python-backend model repository (model ``rd_edge``: IMAGE/FRAME in, SCORE,
IS_ANOMALOUS, NORMALIZED_SCORE, ANOMALY_MAP out; see rd_edge.runtime.triton_python) into a
work folder and runs the ``tritonserver`` binary on it: the one nvidia-pytriton ships (``make
serve-env``: the ``serve`` extra in its own venv) or, with ``--tritonserver DIR``, an installed server such as the
official container's ``/opt/tritonserver``. Triton starts one Python-backend stub process per
instance; each loads the Detector in this Python environment. Ctrl-C or SIGTERM stops the server.

Why the bare binary and not PyTriton's Python API: the same repository runs unchanged on the
official Triton container, every instance is its own process (no GIL, no proxy), and nothing is
copied per start. Measurements in docs/serving.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import secrets
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from rd_edge.core.cli import DefaultsHelpFormatter, int_at_least, port_number, run_cli
from rd_edge.core.errors import BackendError

from .triton_repo import (
    DEFAULT_MAX_BATCH,
    DEFAULT_QUEUE_DELAY_US,
    DETECTOR_MODEL_NAME,
    write_detector_repository,
)

MODEL_PY = (
    '"""Triton Python backend entry point written by rd-serve: the rd-edge Detector."""\n'
    "from rd_edge.runtime.triton_python import TritonPythonModel  # noqa: F401\n"
)
SERVE_HINT = (
    "run it from its own environment: `make serve-env` in the rd-edge checkout, then "
    ".venv-serve/bin/rd-serve (nvidia-pytriton ships tritonserver; numpy<2), or pass --tritonserver DIR"
)


@dataclass
class TritonInstall:
    """Where a tritonserver binary and its backends live."""

    binary: Path
    backends: Path  # holds python/libtriton_python.so
    stub: Optional[Path] = None  # a stub for this Python version, when the install keeps several
    libraries: Sequence[Path] = ()  # extra LD_LIBRARY_PATH entries

    @classmethod
    def find(cls, root: Optional[str] = None) -> "TritonInstall":
        """``root`` (bin/tritonserver, backends/), else nvidia-pytriton's bundled server."""
        if root is not None:
            base = Path(root)
            install = cls(base / "bin" / "tritonserver", base / "backends")
        else:
            spec = importlib.util.find_spec("pytriton")
            if spec is None or not spec.submodule_search_locations:
                raise BackendError(
                    f"rd-serve needs a tritonserver binary with the Python backend: {SERVE_HINT}"
                )
            base = Path(list(spec.submodule_search_locations)[0]) / "tritonserver"
            version = f"{sys.version_info[0]}.{sys.version_info[1]}"
            stub = base / "python_backend_stubs" / version / "triton_python_backend_stub"
            install = cls(base / "bin" / "tritonserver", base / "backends", stub=stub)
            if not stub.is_file():
                raise BackendError(
                    f"nvidia-pytriton has no Python-backend stub for Python {version} "
                    f"({stub}); use Python 3.8-3.13"
                )
        for needed in (install.binary, install.backends / "python" / "libtriton_python.so"):
            if not needed.is_file():
                raise BackendError(f"no {needed}: not a Triton install with the Python backend; {SERVE_HINT}")
        return install

    def backend_dir(self, work: Path) -> Path:
        """The --backend-directory: the install's own, or (bundled stubs) links with our stub."""
        if self.stub is None:
            return self.backends
        python = work / "backends" / "python"
        python.mkdir(parents=True, exist_ok=True)
        for source in [*sorted((self.backends / "python").iterdir()), self.stub]:
            if source.is_file():
                (python / source.name).symlink_to(source)
        return work / "backends"


def check_numpy_abi(install: TritonInstall) -> None:
    """nvidia-pytriton's Python-backend stub is built against numpy 1.x: under numpy 2 every
    tensor that reaches the model is garbage (measured: BYTES inputs crash the stub)."""
    import numpy as np

    if install.stub is not None and int(np.__version__.split(".")[0]) >= 2:
        raise BackendError(
            f"this environment has numpy {np.__version__}, but the Triton Python-backend stub "
            f"shipped by nvidia-pytriton is built for numpy 1.x and corrupts tensors under "
            f"numpy 2; run rd-serve from its own environment: `make serve-env` in the rd-edge "
            f"checkout, then .venv-serve/bin/rd-serve (it pins numpy<2)"
        )


def stub_environment(extra_libraries: Sequence[Path] = ()) -> Dict[str, str]:
    """Environment for tritonserver so its Python stub runs *this* interpreter's environment.

    The stub embeds libpython and takes its prefix from the first ``python3`` on PATH: this
    environment's bin comes first, and this interpreter's libpython (LIBDIR) is found before a
    system one of the same minor version but another patch release (their stdlibs differ).
    """
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    libdir = sysconfig.get_config_var("LIBDIR")
    libs = [str(p) for p in extra_libraries] + ([libdir] if libdir else [])
    if env.get("LD_LIBRARY_PATH"):
        libs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(libs)
    return env


# Triton APIs that change the server or read/write its memory: closed unless a request carries the
# admin key (--admin-key; by default a random one nobody is told, i.e. closed).
RESTRICTED_APIS = "shared-memory,model-repository,trace,logging"
ADMIN_HEADER = "rd-admin-key"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    startup_timeout: float = 120.0
    exit_timeout: int = 5
    admin_key: str = field(default_factory=lambda: secrets.token_hex(16))

    def exposure(self) -> str:
        """The start line's words on who can reach the server."""
        if self.host in LOOPBACK:
            return f"listening on {self.host} only (this machine; --host 0.0.0.0 to accept other machines)"
        return (
            f"listening on {self.host}: other machines can reach it, without authentication; "
            f"put it behind a firewall or an authenticating proxy"
        )


class TritonServer:
    """A tritonserver process on a model repository; context manager that stops it."""

    def __init__(
        self, install: TritonInstall, repository: Path, work: Path, config: ServerConfig, log_path: Path
    ) -> None:
        self.install, self.repository, self.work, self.config = install, repository, work, config
        self.log_path = log_path
        self.process: Optional[subprocess.Popen] = None

    @property
    def http_url(self) -> str:
        host = "127.0.0.1" if self.config.host in ("0.0.0.0", "") else self.config.host
        return f"http://{host}:{self.config.http_port}"

    def command(self) -> List[str]:
        c = self.config
        return [
            str(self.install.binary),
            "--model-repository",
            str(self.repository),
            "--backend-directory",
            str(self.install.backend_dir(self.work)),
            "--http-address",
            c.host,
            "--http-port",
            str(c.http_port),
            "--grpc-address",
            c.host,
            "--grpc-port",
            str(c.grpc_port),
            "--metrics-address",
            c.host,
            "--metrics-port",
            str(c.metrics_port),
            "--allow-metrics",
            "true",
            "--allow-gpu-metrics",
            "false",
            f"--http-restricted-api={RESTRICTED_APIS}:{ADMIN_HEADER}={c.admin_key}",
            f"--grpc-restricted-protocol={RESTRICTED_APIS}:{ADMIN_HEADER}={c.admin_key}",
            "--strict-readiness",
            "true",
            "--exit-timeout-secs",
            str(c.exit_timeout),
        ]

    def start(self) -> "TritonServer":
        log = open(self.log_path, "ab")
        try:
            self.process = subprocess.Popen(
                self.command(),
                env=stub_environment(self.install.libraries),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        except OSError as exc:
            raise BackendError(f"cannot start {self.install.binary}: {exc.strerror or exc}") from exc
        finally:
            log.close()
        self.wait_ready()
        return self

    def started(self) -> subprocess.Popen:
        """The running tritonserver process; BackendError before ``start()``."""
        if self.process is None:
            raise BackendError("tritonserver has not been started (use the server as a context manager)")
        return self.process

    def wait_ready(self) -> None:
        """Until the rd_edge model answers ready; BackendError with the log's tail when it cannot."""
        deadline = time.monotonic() + self.config.startup_timeout
        url = f"{self.http_url}/v2/models/{DETECTOR_MODEL_NAME}/ready"
        while time.monotonic() < deadline:
            process = self.started()
            if process.poll() is not None:
                raise BackendError(
                    f"tritonserver exited with code {process.returncode} while starting:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise BackendError(
            f"tritonserver did not get ready within {self.config.startup_timeout:g} s:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        # Triton's startup tables are long; the lines that say what failed are E/W-prefixed.
        return "\n".join(text.strip().splitlines()[-lines:])

    def stop(self) -> Optional[int]:
        """SIGTERM, wait for Triton's own exit timeout, then SIGKILL; returns the exit code."""
        process = self.process
        if process is None or process.poll() is not None:
            return None if process is None else process.returncode
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=self.config.exit_timeout + 10)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rd-serve",
        formatter_class=DefaultsHelpFormatter,
        description="Serve an exported RD model with NVIDIA Triton Inference Server "
        "(KServe v2 HTTP/gRPC, dynamic batching, Prometheus metrics) as model 'rd_edge'.",
    )
    p.add_argument("model", help="model.onnx or model.engine written by rd-export")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address for HTTP, gRPC and metrics; 0.0.0.0 accepts other machines (no authentication)",
    )
    p.add_argument(
        "--http-port", type=port_number(), default=8000, metavar="P", help="HTTP port (default 8000)"
    )
    p.add_argument(
        "--grpc-port", type=port_number(), default=8001, metavar="Q", help="gRPC port (default 8001)"
    )
    p.add_argument(
        "--metrics-port",
        type=port_number(),
        default=8002,
        metavar="M",
        help="Prometheus metrics port (default 8002): GET /metrics",
    )
    p.add_argument(
        "--max-batch",
        type=int_at_least(1),
        default=DEFAULT_MAX_BATCH,
        metavar="N",
        help=f"largest batch dynamic batching forms (default {DEFAULT_MAX_BATCH})",
    )
    p.add_argument(
        "--max-queue-delay-us",
        type=int_at_least(0),
        default=DEFAULT_QUEUE_DELAY_US,
        metavar="US",
        help=f"how long a request may wait for a fuller batch (default {DEFAULT_QUEUE_DELAY_US})",
    )
    p.add_argument(
        "--instances",
        type=int_at_least(1),
        default=1,
        metavar="K",
        help="model instances = stub processes, each with its own Detector (default 1)",
    )
    p.add_argument(
        "--threads",
        type=int_at_least(1),
        default=None,
        metavar="N",
        help="ONNX Runtime threads per instance (default: one per core)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        help="image threshold on the score (default: thresholds.json beside the model, else the model's)",
    )
    p.add_argument(
        "--pixel-threshold",
        type=float,
        help="pixel threshold, sent to clients for masks (default: thresholds.json, the model's, the image one)",
    )
    p.add_argument(
        "--repository",
        type=Path,
        metavar="DIR",
        help="write the model repository here and keep it (default: a temporary folder)",
    )
    p.add_argument(
        "--no-serve",
        action="store_true",
        help="only write the model repository (--repository DIR) and exit, e.g. for a Triton container",
    )
    p.add_argument(
        "--tritonserver",
        metavar="DIR",
        help="a Triton install with bin/tritonserver and backends/ (default: nvidia-pytriton's)",
    )
    p.add_argument(
        "--admin-key",
        metavar="KEY",
        help=f"open Triton's shared-memory, model-repository, trace and logging APIs to requests with "
        f"the header '{ADMIN_HEADER}: KEY' (default: closed to every client)",
    )
    p.add_argument(
        "--startup-timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="seconds to wait for the model to load (default 120)",
    )
    return p


def write_repository(args: argparse.Namespace, repo: Path) -> None:
    """The rd_edge model repository; loads the model once here so a bad model fails before Triton."""
    from .detector import Detector

    model = Path(args.model).resolve()
    with Detector(
        model, threshold=args.threshold, pixel_threshold=args.pixel_threshold, batch_size=args.max_batch
    ) as detector:
        meta, thresholds = detector.metadata, detector.thresholds
    extra = {"threads": str(args.threads)} if args.threads else {}
    write_detector_repository(
        repo,
        meta,
        thresholds,
        str(model),
        MODEL_PY,
        max_batch=args.max_batch,
        instances=args.instances,
        queue_delay_us=args.max_queue_delay_us,
        extra=extra,
    )


def serve(args: argparse.Namespace) -> int:
    if args.no_serve:
        if args.repository is None:
            raise BackendError("--no-serve writes the model repository to --repository DIR; add it")
        write_repository(args, args.repository)
        print(f"rd-serve: wrote the '{DETECTOR_MODEL_NAME}' model repository to {args.repository}")
        return 0
    install = TritonInstall.find(args.tritonserver)
    check_numpy_abi(install)
    with tempfile.TemporaryDirectory(prefix="rd_serve_") as tmp:
        work = Path(tmp)
        repo = args.repository or work / "models"
        write_repository(args, repo)
        config = ServerConfig(
            args.host, args.http_port, args.grpc_port, args.metrics_port, args.startup_timeout
        )
        if args.admin_key:
            config.admin_key = args.admin_key
        server = TritonServer(install, repo, work, config, work / "tritonserver.log")
        stop = _stop_on_signals()
        with server:
            print(
                f"rd-serve: model '{DETECTOR_MODEL_NAME}' ready: HTTP {config.host}:{config.http_port}, "
                f"gRPC {config.host}:{config.grpc_port}, metrics http://{config.host}:{config.metrics_port}"
                f"/metrics; {config.exposure()}; log {server.log_path}",
                flush=True,
            )
            process = server.started()
            while not stop and process.poll() is None:
                time.sleep(0.2)
            if process.poll() is not None and not stop:
                raise BackendError(
                    f"tritonserver exited with code {process.returncode}:\n{server.log_tail()}"
                )
    return 0


def _stop_on_signals() -> List[int]:
    """A list that gets the signal number on SIGINT/SIGTERM (truthy = stop)."""
    received: List[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda number, _frame: received.append(number))
    return received


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: serve(args))


if __name__ == "__main__":
    sys.exit(main())
