"""Score drift per stream (rd_edge.core.drift): adds ``drift`` to every record, warns once.

    record["drift"] = {"ks": 0.41, "p_value": 2e-07, "window": 200, "reference": 48,
                       "drifting": true}          # null until MIN_WINDOW OK scores were seen

Placed before the sinks that publish records (JSON Lines, MQTT, metrics, station), so each of
them carries the newest statistic. The first time a stream drifts, one warning goes to stderr;
it is not repeated while the stream stays (or comes back) over the level.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

from rd_edge.core.drift import DEFAULT_WINDOW, DRIFT_D, DRIFT_P, DriftMonitor
from rd_edge.core.files import PathLike
from rd_edge.core.metadata import ModelMetadata

from ..threshold_precedence import read_beside
from .base import Result, Sink


def drift_reference(model: PathLike | None, meta: ModelMetadata) -> dict[str, Any] | None:
    """The held-out normal scores recorded by rd-calibrate in thresholds.json beside ``model``."""
    found = read_beside(model, meta)
    return None if found is None else found.normal_scores


class DriftSink(Sink):
    """One DriftMonitor per stream against ``reference`` (see the module docstring); ``threshold``:
    the image threshold, where the reference is cut (OK scores are compared with OK scores)."""

    name = "drift"

    def __init__(
        self,
        reference: dict[str, Any],
        window: int = DEFAULT_WINDOW,
        warn: Callable[[str], None] | None = None,
        threshold: float | None = None,
    ) -> None:
        self.reference, self.window_size, self.threshold = reference, int(window), threshold
        DriftMonitor(reference, window, threshold=threshold)  # a reference that cannot work fails now
        self.monitors: dict[str, DriftMonitor] = {}
        self.warned: dict[str, dict[str, Any]] = {}  # stream -> state when it first drifted
        self._warn = warn or (lambda text: print(text, file=sys.stderr, flush=True))

    def write(self, result: Result) -> None:
        monitor = self.monitors.get(result.stream)
        if monitor is None:
            monitor = self.monitors[result.stream] = DriftMonitor(
                self.reference, self.window_size, threshold=self.threshold
            )
        p = result.prediction
        state = monitor.state if p is None else monitor.update(float(p.score), not p.is_anomalous)
        result.extra["drift"] = None if state is None else state.to_dict()
        if state is not None and state.drifting and result.stream not in self.warned:
            self.warned[result.stream] = {"frame": result.index, **state.to_dict()}
            self._warn(
                f"warning: score drift on {result.stream} at frame {result.index}: the last "
                f"{state.window} OK scores differ from the {state.reference} held-out normal "
                f"scores of calibration (KS D={state.ks:.2f}, p={state.p_value:.2g}; level D>="
                f"{DRIFT_D:g} and p<{DRIFT_P:g}). Lighting, camera or product changed? Check the "
                f"line, then review frames and rerun rd-calibrate"
            )

    def summary(self) -> str | None:
        if not self.warned:
            return None
        return "drift: " + "; ".join(
            f"{stream} from frame {s['frame']} (KS D={s['ks']:.2f})" for stream, s in self.warned.items()
        )
