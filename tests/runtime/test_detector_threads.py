"""One Detector shared by 4 threads gives exactly the serial results (issue 16, case 1)."""

import sys
import threading

import numpy as np
import pytest

from rd_edge.runtime import Detector


@pytest.fixture
def fast_switching():
    """Switch threads every microsecond so a shared buffer is overwritten mid-call if it exists."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


def test_four_threads_on_one_detector_equal_serial_results(make_model, fast_switching):
    model = make_model(graph_size=(128, 160))
    rng = np.random.default_rng(0)
    # Different sizes and contents, so a frame preprocessed into another call's buffer shows.
    frames = [
        rng.integers(0, 256, (int(rng.integers(64, 400)), int(rng.integers(64, 400)), 3), dtype=np.uint8)
        for _ in range(40)
    ]
    with Detector(model, batch_size=4) as det:
        serial = [det.predict(f) for f in frames]
        results = {}
        errors = []

        def work(worker: int) -> None:
            order = np.random.default_rng(worker).permutation(len(frames))
            try:
                for _ in range(3):
                    for i in order[:20]:
                        results[(worker, "one", int(i))] = det.predict(frames[i])
                    picked = [int(i) for i in order[20:]]
                    for i, p in zip(picked, det.predict([frames[i] for i in picked])):
                        results[(worker, "batch", i)] = p
            except Exception as exc:  # noqa: BLE001  reported below, with the thread's name
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
    assert len(results) == 4 * 40
    for (_, _, i), pred in results.items():
        assert pred.score == serial[i].score
        assert pred.is_anomalous == serial[i].is_anomalous
        np.testing.assert_array_equal(pred.anomaly_map, serial[i].anomaly_map)
