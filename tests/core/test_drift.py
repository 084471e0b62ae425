"""Score drift statistic: KS against the calibration reference, stable vs drifting streams."""

import numpy as np
import pytest

from rd_edge.core.drift import (
    DriftMonitor,
    check_reference,
    ks_p_value,
    ks_statistic,
    reference_from_scores,
)
from rd_edge.core.errors import MetadataError


def test_ks_matches_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 150), np.sort(rng.normal(0.4, 1, 40))
    expected = scipy_stats.ks_2samp(a, b, method="asymp")
    assert ks_statistic(a, b) == pytest.approx(expected.statistic, abs=1e-12)
    assert ks_p_value(expected.statistic, 150, 40) == pytest.approx(expected.pvalue, rel=0.25, abs=1e-4)


def run_monitor(reference_scores, stream, window=100):
    monitor = DriftMonitor(reference_from_scores(reference_scores), window=window)
    states = [monitor.update(s, ok=True) for s in stream]
    return [s for s in states if s is not None]


def test_stable_stream_never_drifts_with_a_small_reference():
    """10 held-out scores (make demo's count) and 2000 frames of the same distribution: no alarm."""
    rng = np.random.default_rng(1)
    states = run_monitor(rng.normal(0.5, 0.05, 10), rng.normal(0.5, 0.05, 2000))
    assert not any(s.drifting for s in states) and max(s.ks for s in states) < 0.6


def test_a_ramp_drifts_once_it_has_moved_the_window():
    rng = np.random.default_rng(2)
    ramp = rng.normal(0.5, 0.05, 600) + np.linspace(0.0, 0.3, 600)
    states = run_monitor(rng.normal(0.5, 0.05, 60), ramp)
    first = next(i for i, s in enumerate(states) if s.drifting)
    assert states[-1].drifting and states[-1].ks > 0.9
    assert 50 < first < 400  # neither at once nor only at the end


def test_ng_frames_do_not_enter_the_window():
    monitor = DriftMonitor(reference_from_scores(np.linspace(0.4, 0.6, 50)), window=50)
    for _ in range(100):
        assert monitor.update(5.0, ok=False) is None  # defects are not drift


def test_large_references_are_kept_as_quantiles_and_bad_ones_refused():
    ref = reference_from_scores(np.arange(5000.0))
    assert ref["count"] == 5000 and len(ref["values"]) == 201 and ref["kind"] == "quantiles"
    assert check_reference(ref, "t.json")["values"][-1] == 4999.0
    with pytest.raises(MetadataError, match="normal_scores"):
        check_reference({"count": 3, "values": [0.1, float("nan")]}, "t.json")


def test_the_reference_is_cut_at_the_threshold_like_the_ok_window():
    """A weak model (a third of good parts NG): OK scores vs all normal scores would read as drift."""
    rng = np.random.default_rng(3)
    normal = rng.normal(0.5, 0.1, 60)
    threshold = float(np.quantile(normal, 0.65))
    line = rng.normal(0.5, 0.1, 1500)
    for cut, drifts in ((None, True), (threshold, False)):
        monitor = DriftMonitor(reference_from_scores(normal), threshold=cut)
        states = [monitor.update(s, ok=s <= threshold) for s in line]
        assert any(s is not None and s.drifting for s in states) is drifts
    assert monitor.reference_count == 39  # 65 % of 60 pass
    with pytest.raises(MetadataError, match="at or below the threshold"):
        DriftMonitor(reference_from_scores(normal), threshold=0.0)
