"""``--backends`` -> the jobs to run and the backends skipped here, each with its reason.

``ort`` gives the CPU execution provider row plus ``ort-cuda`` / ``ort-tensorrt`` rows where
ONNX Runtime has those providers; ``trt`` gives one row per engine precision (the ``--engine``
given, else fp32/fp16/int8 plans built here when TensorRT runs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from rd_edge.core.errors import RdEdgeError

from . import artifacts
from .errors import BackendUnavailable, BenchmarkError
from .results import Job, Skipped

BACKENDS = ("reference", "torch", "ort", "ort-int8", "trt")
EXTRA_ORT_ROWS = {
    "ort-cuda": ("CUDAExecutionProvider", ["cuda"]),
    "ort-tensorrt": ("TensorrtExecutionProvider", ["tensorrt", "cuda"]),
}
# OpenVINO rows (opt-in: --backends ...,openvino): fp32, bf16 (where the CPU has it) and NNCF int8 IRs
OPENVINO = "openvino"
ACCEPTED = BACKENDS + tuple(EXTRA_ORT_ROWS) + (OPENVINO,)


@dataclass
class Settings:
    """What the command line asked for."""

    checkpoint: Path
    onnx: Optional[Path] = None
    onnx_int8: Optional[Path] = None
    engine: Optional[Path] = None
    backends: Sequence[str] = BACKENDS
    batch_sizes: Sequence[int] = (1, 4, 8)
    iters: int = 30
    warmup: int = 3
    threads: int = 1
    frame_size: Tuple[int, int] = (640, 480)
    seed: int = 0

    def job(self, row: str, precision: str, model: Path, **options: object) -> Job:
        """A Job for row ``row``; ``options`` go to its pipeline (e.g. backend, providers)."""
        return Job(
            row,
            precision,
            str(model),
            list(self.batch_sizes),
            self.iters,
            self.warmup,
            self.threads,
            tuple(self.frame_size),
            self.seed,
            dict(options),
        )


@dataclass
class Plan:
    jobs: List[Job] = field(default_factory=list)
    skipped: List[Skipped] = field(default_factory=list)
    artifacts: Dict[str, str] = field(default_factory=dict)  # what was used or made, for the report

    def skip(self, backend: str, reason: str) -> None:
        self.skipped.append(Skipped(backend, reason))


def parse_backends(text: str) -> List[str]:
    """ "reference,ort" -> ["reference", "ort"]; BenchmarkError naming the accepted ones."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in ACCEPTED]
    if unknown or not names:
        raise BenchmarkError(
            f"--backends {text!r}: unknown {unknown or 'empty list'}; accepted: {', '.join(ACCEPTED)}"
        )
    return list(dict.fromkeys(names))


def _ort_providers() -> Tuple[Optional[List[str]], Optional[str]]:
    """(ONNX Runtime's available providers, None) or (None, why ORT is unusable)."""
    from rd_edge.runtime import why_unavailable

    reason = why_unavailable("ort")
    if reason is not None:
        return None, reason
    import onnxruntime

    return list(onnxruntime.get_available_providers()), None


def make_plan(settings: Settings, workdir: Path, frames: Sequence[np.ndarray]) -> Plan:
    """Prepare what the requested backends need and list the jobs (or skip reasons)."""
    plan = Plan()
    plan.artifacts["checkpoint"] = str(settings.checkpoint)
    requested = list(settings.backends)
    for name in ("reference", "torch"):
        if name in requested:
            plan.jobs.append(settings.job(name, "fp32", settings.checkpoint))
    if not any(n.startswith("ort") or n in ("trt", OPENVINO) for n in requested):
        return plan
    onnx = _step(
        plan, requested, "onnx", lambda: artifacts.ensure_onnx(settings.checkpoint, settings.onnx, workdir)
    )
    if onnx is None:
        return plan
    _plan_ort(plan, settings, requested, onnx, workdir, frames)
    if "trt" in requested:
        _plan_trt(plan, settings, onnx, workdir, frames)
    if OPENVINO in requested:
        _plan_openvino(plan, settings, onnx, workdir, frames)
    return plan


def _step(plan: Plan, requested: Sequence[str], key: str, make: Callable[[], Path]) -> Optional[Path]:
    """Run one preparation step; when the backend cannot have it, skip every row needing it."""
    try:
        path = make()
    except (BackendUnavailable, RdEdgeError) as exc:  # e.g. an ExportError: reported, not fatal
        for name in requested:
            if name.startswith("ort") or name == "trt":
                plan.skip(name, str(exc))
        return None
    plan.artifacts[key] = str(path)
    return path


def _plan_ort(
    plan: Plan,
    settings: Settings,
    requested: Sequence[str],
    onnx: Path,
    workdir: Path,
    frames: Sequence[np.ndarray],
) -> None:
    ort_rows = [n for n in requested if n.startswith("ort")]
    available, reason = _ort_providers()
    if available is None:
        for name in ort_rows:
            plan.skip(name, str(reason))
        return
    if "ort" in requested:
        plan.jobs.append(settings.job("ort", "fp32", onnx, backend="ort", providers=["cpu"]))
    for name, (provider, shorthands) in EXTRA_ORT_ROWS.items():
        if name not in requested and "ort" not in requested:
            continue
        if provider in available:
            plan.jobs.append(settings.job(name, "fp32", onnx, backend="ort", providers=shorthands))
        else:
            plan.skip(
                name,
                f"{provider} is not among ONNX Runtime's providers here {available} "
                f"(needs onnxruntime-gpu and a GPU: `pip install '.[gpu]'`)",
            )
    if "ort-int8" in requested:
        try:
            int8 = artifacts.ensure_int8(settings.onnx_int8, onnx, frames, workdir, target="cpu")
        except BackendUnavailable as exc:
            plan.skip("ort-int8", str(exc))
            return
        plan.artifacts["onnx_int8"] = str(int8)
        plan.jobs.append(settings.job("ort-int8", "int8", int8, backend="ort", providers=["cpu"]))


def _plan_openvino(
    plan: Plan, settings: Settings, onnx: Path, workdir: Path, frames: Sequence[np.ndarray]
) -> None:
    """One row per OpenVINO precision: the fp32 IR in f32 and in bf16, the NNCF int8 IR."""
    from rd_edge.runtime import why_unavailable

    reason = why_unavailable(OPENVINO)
    if reason is not None:
        plan.skip(OPENVINO, f"OpenVINO cannot run here: {reason}")
        return
    try:
        ir, int8, bf16 = artifacts.ensure_openvino(onnx, frames, workdir)
    except BackendUnavailable as exc:
        plan.skip(OPENVINO, str(exc))
        return
    plan.artifacts.update(openvino_fp32=str(ir), openvino_int8=str(int8))
    plan.jobs.append(settings.job(OPENVINO, "fp32", ir, backend=OPENVINO, inference_precision="fp32"))
    if bf16:
        plan.jobs.append(settings.job(OPENVINO, "bf16", ir, backend=OPENVINO, inference_precision="bf16"))
    else:
        plan.skip(f"{OPENVINO} bf16", "this CPU has no bf16 (OpenVINO's OPTIMIZATION_CAPABILITIES)")
    plan.jobs.append(settings.job(OPENVINO, "int8", int8, backend=OPENVINO, inference_precision="fp32"))


def _plan_trt(
    plan: Plan, settings: Settings, onnx: Path, workdir: Path, frames: Sequence[np.ndarray]
) -> None:
    from rd_edge.runtime import why_unavailable

    reason = why_unavailable("trt")
    if reason is not None:
        plan.skip("trt", f"TensorRT cannot run here: {reason}")
        return
    if settings.engine is not None:
        if not settings.engine.is_file():
            raise BenchmarkError(f"--engine {settings.engine}: no such file")
        precision = artifacts.engine_precision(settings.engine)
        plan.jobs.append(settings.job("trt", precision, settings.engine, backend="trt"))
        plan.artifacts[f"engine_{precision}"] = str(settings.engine)
        return
    built, failed = artifacts.build_engines(onnx, frames, workdir, max(settings.batch_sizes))
    for precision, plan_path in built:
        plan.jobs.append(settings.job("trt", precision, plan_path, backend="trt"))
        plan.artifacts[f"engine_{precision}"] = str(plan_path)
    for precision, why in failed:
        plan.skip(f"trt {precision}", f"engine build failed: {why}")
