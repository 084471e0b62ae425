"""Score drift: recent OK scores compared with the held-out normal scores of calibration.

``rd-calibrate`` records the held-out good images' scores (``normal_scores`` in thresholds.json:
the sorted scores, or 201 quantiles when there are more than ``MAX_REFERENCE`` of them). At run
time a ``DriftMonitor`` per stream keeps the last ``window`` scores of frames judged OK and
compares them with that reference by the two-sample Kolmogorov-Smirnov statistic

    D = max_x |F_window(x) - F_reference(x)|       (0: same distribution, 1: no overlap)

with its asymptotic p-value. The stream is **drifting** when p < ``DRIFT_P`` (0.001) and
D >= ``DRIFT_D`` (0.3): the change is both real (not the chance of a small sample) and large
(three in ten scores moved past where the reference has them).

Why KS and not PSI: PSI bins the scores at the reference's deciles and is read against fixed
levels (0.1 / 0.25) that assume both samples are large. Its value on an unchanged line is about
(bins - 1) x (1/n_reference + 1/n_window): with the few dozen held-out good images a
calibration set has (10 in ``make demo``), a stable line already reads 0.3 or more. KS needs no
bins, and its p-value accounts for both sample sizes, so one documented level holds for 10 or
10000 reference scores; D itself reads as "the share of scores that moved".

Only OK scores enter the window: real defects, flagged NG, must not look like drift; a drift
that pushes scores over the threshold still shows, as the OK scores pile up below it. The
reference is cut at the same threshold (its scores <= threshold), so both sides are "normal
scores the line passes": with a false-alarm rate of a few percent the cut changes little, with a
weak model (35 % false alarms) comparing OK scores against all normal scores reads as drift on
an unchanged line.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .errors import MetadataError

DRIFT_P = 1e-3  # p-value below which the difference is not chance
DRIFT_D = 0.3  # and KS statistic from which it matters
DEFAULT_WINDOW = 200  # recent OK scores compared
MIN_WINDOW = 30  # no statistic before this many OK scores
MAX_REFERENCE = 1000  # more held-out scores are stored as quantiles
_QUANTILES = 201


def reference_from_scores(scores: Sequence[float]) -> dict[str, Any]:
    """The ``normal_scores`` entry of thresholds.json for held-out good ``scores``."""
    values = np.sort(np.asarray(scores, np.float64).ravel())
    if values.size == 0 or not np.isfinite(values).all():
        raise MetadataError(f"drift reference needs finite scores, got {values.size} values")
    count = int(values.size)
    if count > MAX_REFERENCE:
        values = np.quantile(values, np.linspace(0.0, 1.0, _QUANTILES))
    return {
        "count": count,
        "values": [float(v) for v in values],
        "kind": "quantiles" if count > MAX_REFERENCE else "scores",
    }


def check_reference(data: Any, source: str) -> dict[str, Any] | None:
    """Validate a ``normal_scores`` entry read from a file (None stays None)."""
    if data is None:
        return None
    values = data.get("values") if isinstance(data, dict) else None
    count = data.get("count") if isinstance(data, dict) else None
    if (
        not isinstance(values, list)
        or not values
        or isinstance(count, bool)
        or not isinstance(count, int)
        or count < 1
        or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
    ):
        raise MetadataError(
            f"{source}: normal_scores must be {{'count': N, 'values': [finite scores]}}; rerun rd-calibrate"
        )
    return {"count": count, "values": sorted(float(v) for v in values), "kind": data.get("kind", "scores")}


def ks_statistic(sample: np.ndarray, reference: np.ndarray) -> float:
    """Two-sample KS D between ``sample`` and sorted ``reference`` (both 1-D)."""
    sample = np.sort(sample)
    grid = np.concatenate([sample, reference])
    cdf_sample = np.searchsorted(sample, grid, side="right") / sample.size
    cdf_ref = np.searchsorted(reference, grid, side="right") / reference.size
    return float(np.max(np.abs(cdf_sample - cdf_ref)))


def ks_p_value(d: float, n: int, m: int) -> float:
    """Asymptotic two-sided p-value of D for sample sizes n and m (Numerical Recipes' Q_KS with
    Stephens' small-sample correction)."""
    en = math.sqrt(n * m / (n + m))
    lam = (en + 0.12 + 0.11 / en) * d
    if lam < 0.2:
        return 1.0
    total = sum(2.0 * (-1) ** (k - 1) * math.exp(-2.0 * k * k * lam * lam) for k in range(1, 101))
    return float(min(max(total, 0.0), 1.0))


@dataclass(frozen=True)
class DriftState:
    """The newest comparison of one stream."""

    ks: float  # KS statistic D in [0, 1]
    p_value: float
    window: int  # OK scores compared
    reference: int  # held-out scores behind the reference
    drifting: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "ks": round(self.ks, 4),
            "p_value": float(f"{self.p_value:.3g}"),
            "window": self.window,
            "reference": self.reference,
            "drifting": self.drifting,
        }


class DriftMonitor:
    """Rolling window of one stream's OK scores against the calibration reference (cut at
    ``threshold``, the image threshold, when given).

    ``update(score, ok)`` returns the newest DriftState (None until ``min_window`` OK scores);
    the statistic is recomputed every ``every`` OK scores (it costs a sort of the window).
    """

    def __init__(
        self,
        reference: dict[str, Any],
        window: int = DEFAULT_WINDOW,
        min_window: int = MIN_WINDOW,
        every: int = 5,
        p_level: float = DRIFT_P,
        d_level: float = DRIFT_D,
        threshold: float | None = None,
    ) -> None:
        if window < min_window or min_window < 2:
            raise ValueError(f"drift window must be >= {max(min_window, 2)}, got {window}")
        values = np.asarray(reference["values"], np.float64)
        passed = values[values <= threshold] if threshold is not None else values
        if passed.size < 2:
            raise MetadataError(
                f"the drift reference has {passed.size} of its {values.size} normal scores at or "
                f"below the threshold {threshold}: nothing to compare OK scores with; rerun "
                f"rd-calibrate (or turn drift off: --drift-window 0)"
            )
        self.reference = passed
        # quantiles stand for many scores: the p-value uses the real count (the share that passes)
        self.reference_count = max(2, round(int(reference["count"]) * passed.size / values.size))
        self.window: deque[float] = deque(maxlen=int(window))
        self.min_window, self.every = int(min_window), max(1, int(every))
        self.p_level, self.d_level = p_level, d_level
        self.state: DriftState | None = None
        self._since = 0

    def update(self, score: float, ok: bool) -> DriftState | None:
        if not ok or not math.isfinite(score):
            return self.state
        self.window.append(float(score))
        self._since += 1
        if len(self.window) >= self.min_window and (self.state is None or self._since >= self.every):
            self._since = 0
            sample = np.fromiter(self.window, np.float64, len(self.window))
            d = ks_statistic(sample, self.reference)
            p = ks_p_value(d, sample.size, self.reference_count)
            self.state = DriftState(
                d, p, sample.size, self.reference_count, p < self.p_level and d >= self.d_level
            )
        return self.state
