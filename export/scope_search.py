"""Accuracy-aware int8: try quantization scopes from widest to narrowest, keep the fastest one
whose fidelity to the fp32 model stays within a bound.

Fidelity is measured on held-out good images (the calibration folder's images that did not
calibrate) and, when given, the images of ``--fidelity-dir`` (defective and good), against the
fp32 model's scores on the same images: verdicts changed at the model's threshold on all of
them, score Spearman on ``--fidelity-dir``'s images where given (:class:`FidelityImages`;
:class:`FidelityBound`). Speed is
batch-1 latency measured here, candidate and fp32 reference interleaved, as a ratio; a target
that does not run here (TensorRT on a machine without a GPU) is not timed, and the widest scope
within the bound is kept. The table of every trial is printed and the choice goes in the
model's metadata (``int8_scope``, ``int8_scope_search``).

Every model is run through the runtime's :func:`rd_edge.runtime.load_runner`, by suffix.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from rd_edge.core.errors import ExportError
from rd_edge.core.metadata import INPUT_NAME
from rd_edge.core.preprocess import ModelInput
from rd_edge.runtime import load_runner

# Widest first: more of the model in int8 is faster and less faithful.
SEARCH_ORDER = ("full", "student")
OPENVINO_SEARCH_ORDER = ("full", "mixed", "student")
# mixed is full with layers reverted to float until the bound holds: built only when full breaks it
REFINES = {"mixed": "full"}
# "SCOPE+bf16": SCOPE's model with its float layers (head, layers kept float) in bf16 (OpenVINO on
# a CPU with bf16: its float layers cost as much as the int8 ones; the bound judges the fidelity)
BF16_FLOAT = "+bf16"
TIMED_CALLS = 15  # batch-1 calls per candidate and per reference, alternated
MIN_RANKED = 3  # fewer --fidelity-dir images than this: the Spearman ranks every fidelity image


def openvino_search_order(bf16: bool) -> Tuple[str, ...]:
    """OpenVINO's scopes, each also with bf16 float layers where the CPU has bf16."""
    if not bf16:
        return OPENVINO_SEARCH_ORDER
    return tuple(name for scope in OPENVINO_SEARCH_ORDER for name in (scope, scope + BF16_FLOAT))


def base_scope(name: str) -> str:
    """The quantization scope of a search candidate ("mixed+bf16" -> "mixed")."""
    return name.split("+", 1)[0]


@dataclass(frozen=True)
class FidelityBound:
    """What an int8 model must keep of the fp32 one."""

    min_spearman: float = 0.99  # rank correlation of image scores
    max_verdict_changes: int = 0  # images on the other side of the threshold

    def holds(self, spearman: float, verdicts_changed: int) -> bool:
        return spearman >= self.min_spearman and verdicts_changed <= self.max_verdict_changes

    def metric(
        self,
        reference: np.ndarray,
        scores: np.ndarray,
        threshold: Optional[float],
        ranked: Optional[np.ndarray] = None,
    ) -> float:
        """One number for an accuracy-control loop (NNCF's): the score Spearman over the
        ``ranked`` images (bool [N]; None: all), minus 1 for each verdict changed beyond the bound
        (on all images), so that ``1 - metric <= 1 - min_spearman`` iff it holds."""
        excess = max(0, count_verdict_changes(reference, scores, threshold) - self.max_verdict_changes)
        return ranked_spearman(reference, scores, ranked) - excess

    def format(self) -> str:
        return f"score Spearman >= {self.min_spearman:g}, verdicts changed <= {self.max_verdict_changes}"


@dataclass
class ScopeTrial:
    scope: str
    spearman: float
    pearson: float
    verdicts_changed: int
    max_abs_score: float
    speedup: Optional[float]  # batch-1 speed relative to fp32 (median of alternated calls); None: not timed
    ok: bool = False


@dataclass
class ScopeSearch:
    bound: FidelityBound
    images: str  # what the fidelity was measured on
    trials: List[ScopeTrial] = field(default_factory=list)
    chosen: Optional[str] = None

    def format(self) -> str:
        lines = [
            f"int8 scope search ({self.bound.format()}; {self.images}):",
            "  scope        Spearman  Pearson  verdicts changed  max|d score|  speed vs fp32  within bound",
        ]
        for t in self.trials:
            speed = f"{t.speedup:.2f}x" if t.speedup is not None else "not timed"
            mark = "yes" if t.ok else "no"
            lines.append(
                f"  {t.scope:<12} {t.spearman:8.4f}  {t.pearson:7.4f}  {t.verdicts_changed:16d}  "
                f"{t.max_abs_score:12.3g}  {speed:>13}  {mark}{'  <- kept' if t.scope == self.chosen else ''}"
            )
        return "\n".join(lines)

    def as_metadata(self) -> Dict[str, object]:
        return {
            "bound": asdict(self.bound),
            "images": self.images,
            "chosen": self.chosen,
            "trials": [asdict(t) for t in self.trials],
        }


@dataclass(frozen=True)
class FidelityImages:
    """The images int8 fidelity is judged on: verdicts on all, score Spearman on ``ranked``."""

    images: np.ndarray  # [N,3,H,W], preprocessed
    source: str  # what they are, for the table and the metadata
    # [N] bool: the images the Spearman ranks. --fidelity-dir's where given: they span good and
    # defective parts, whose order is what a threshold acts on; the held-out good images
    # only add an easy block of low scores, which lifts the Spearman (resnet18 256 px full+bf16:
    # 0.9964 with them, 0.9888 on the test images alone), and among themselves rank noise.
    ranked: np.ndarray

    def __post_init__(self) -> None:
        if self.ranked.shape != (len(self.images),):
            raise ValueError(
                f"ranked: expected a mask of {len(self.images)}, found shape {self.ranked.shape}"
            )


def ranked_spearman(reference: np.ndarray, scores: np.ndarray, ranked: Optional[np.ndarray] = None) -> float:
    """Score Spearman over the ``ranked`` images (None: all)."""
    if ranked is None:
        return _spearman(reference, scores)
    return _spearman(reference[ranked], scores[ranked])


def scores_of(model: Path, images: np.ndarray, batch: int = 4) -> np.ndarray:
    """Image scores [N] of ``model`` (any runtime backend, chosen by suffix)."""
    with load_runner(model) as runner:
        return np.concatenate(
            [runner.infer({INPUT_NAME: images[i : i + batch]})["score"] for i in range(0, len(images), batch)]
        )


def count_verdict_changes(reference: np.ndarray, scores: np.ndarray, threshold: Optional[float]) -> int:
    """Images on the other side of ``threshold`` than with the reference scores (0 without one)."""
    return 0 if threshold is None else int(((reference > threshold) != (scores > threshold)).sum())


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation (average ranks for ties), without scipy."""

    def ranks(x: np.ndarray) -> np.ndarray:
        order = np.argsort(x, kind="mergesort")
        r = np.empty(len(x), dtype=np.float64)
        r[order] = np.arange(len(x), dtype=np.float64)
        for value in np.unique(x):  # ties share their mean rank
            tied = x == value
            r[tied] = r[tied].mean()
        return r

    return _pearson(ranks(a), ranks(b))


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    x, y = a.astype(np.float64) - a.mean(), b.astype(np.float64) - b.mean()
    denom = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / denom) if denom > 0 else float("nan")


def speedup(reference: Path, candidate: Path, image: np.ndarray, calls: int = TIMED_CALLS) -> float:
    """Median over alternated batch-1 calls of reference time / candidate time."""
    with load_runner(reference) as ref, load_runner(candidate) as cand:
        feed = {INPUT_NAME: image[:1]}
        ref.infer(feed), cand.infer(feed)  # warm-up
        ratios = []
        for _ in range(calls):
            t0 = time.perf_counter()
            ref.infer(feed)
            t1 = time.perf_counter()
            cand.infer(feed)
            ratios.append((t1 - t0) / (time.perf_counter() - t1))
    return float(np.median(ratios))


def trial(
    scope: str,
    reference_scores: np.ndarray,
    model: Path,
    fidelity: FidelityImages,
    threshold: Optional[float],
    bound: FidelityBound,
    timed_against: Optional[Path],
) -> ScopeTrial:
    """Fidelity (and, against ``timed_against``, speed) of one candidate."""
    scores = scores_of(model, fidelity.images)
    flips = count_verdict_changes(reference_scores, scores, threshold)
    rho = ranked_spearman(reference_scores, scores, fidelity.ranked)
    speed = speedup(timed_against, model, fidelity.images) if timed_against is not None else None
    return ScopeTrial(
        scope,
        rho,
        _pearson(reference_scores[fidelity.ranked], scores[fidelity.ranked]),
        flips,
        float(np.abs(reference_scores - scores).max()),
        speed,
        bound.holds(rho, flips),
    )


def choose(trials: Sequence[ScopeTrial]) -> Optional[ScopeTrial]:
    """The fastest trial within the bound; untimed: the widest (first) within it."""
    within = [t for t in trials if t.ok]
    if not within:
        return None
    if any(t.speedup is None for t in within):
        return within[0]
    return max(within, key=lambda t: t.speedup or 0.0)


def fidelity_images(
    calib_dir: Path, max_images: int, defects_dir: Optional[Path], model: ModelInput, limit: int = 32
) -> FidelityImages:
    """The images to judge fidelity on: the good images of ``calib_dir`` that did not calibrate,
    plus ``defects_dir``'s, which alone are ranked (where there are at least
    :data:`MIN_RANKED`). When every good image calibrated, only ``defects_dir``'s (the ranges
    were fitted to the calibration images: they flatter int8); the calibration images only when
    there is nothing else."""
    from rd_edge.core.images import list_images

    from .quantize import int8_calibration_paths, load_int8_calibration_batch

    used = set(int8_calibration_paths(calib_dir, max_images))
    held = [p for p in int8_calibration_paths(calib_dir, 10**9) if p not in used][:limit]
    defects = list_images(defects_dir)[: 2 * limit] if defects_dir is not None else []
    if held:
        source = f"{len(held)} held-out good images"
    elif defects:
        source = f"no held-out good image (all {len(used)} calibrated)"
    else:
        held = sorted(used)[:limit]
        source = f"{len(held)} calibration images (no held-out good image left: give more, or --fidelity-dir)"
    ranked = np.ones(len(held) + len(defects), dtype=bool)
    if len(defects) >= MIN_RANKED:
        ranked[: len(held)] = False
        source += f" + {len(defects)} images of {defects_dir} (Spearman on these)"
    elif defects:
        source += f" + {len(defects)} images of {defects_dir}"
    return FidelityImages(load_int8_calibration_batch(held + defects, model), source, ranked)


def search_scopes(
    reference: Path,
    build: Callable[[str, Path], None],
    out: Path,
    fidelity: FidelityImages,
    threshold: Optional[float],
    bound: FidelityBound = FidelityBound(),
    timed: bool = True,
    scopes: Sequence[str] = SEARCH_ORDER,
    annotate: Optional[Callable[[Path, Dict[str, object]], None]] = None,
) -> ScopeSearch:
    """Build each scope with ``build(scope, path)`` (widest first; a variant "SCOPE+..." after
    SCOPE, in the same folder), measure it, keep the chosen one at ``out``; ``annotate(path,
    search)`` records the search in its metadata first.
    ExportError with the table when no scope stays within the bound."""
    import tempfile

    search = ScopeSearch(bound, fidelity.source)
    reference_scores = scores_of(reference, fidelity.images)
    with tempfile.TemporaryDirectory(prefix="rd_scope_", dir=out.parent) as tmp:
        built: Dict[str, Path] = {}
        for scope in scopes:
            if any(t.scope == REFINES.get(base_scope(scope)) and t.ok for t in search.trials):
                continue
            if scope != base_scope(scope) and base_scope(scope) not in built:
                continue  # a variant of a scope that was not built
            candidate = Path(tmp) / f"{scope}{out.suffix}"
            build(scope, candidate)
            built[scope] = candidate
            search.trials.append(
                trial(
                    scope,
                    reference_scores,
                    candidate,
                    fidelity,
                    threshold,
                    bound,
                    reference if timed else None,
                )
            )
        best = choose(search.trials)
        if best is None:
            raise ExportError(
                f"no int8 scope keeps the fidelity bound:\n{search.format()}\nloosen it "
                f"(--min-spearman, --max-verdict-changes), pick a scope (--int8-scope), or "
                f"export fp32/bf16"
            )
        search.chosen = best.scope
        if annotate is not None:
            annotate(built[best.scope], search.as_metadata())
        move_model(built[best.scope], out)
    return search


def move_model(src: Path, dst: Path) -> None:
    """Move a model file and, for an OpenVINO IR, its .bin (the .xml last)."""
    if src.suffix.lower() == ".xml":
        os.replace(src.with_suffix(".bin"), dst.with_suffix(".bin"))
    os.replace(src, dst)
