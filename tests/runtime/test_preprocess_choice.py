"""Where preprocessing runs, as explicit states (the CUDA states with a fake GPU are in
tests/runtime/backends/test_trt_runner_fake.py and test_cuda_tiles_fake.py)."""

import pytest

from rd_edge.core.errors import BackendError
from rd_edge.runtime import Detector, load_runner
from rd_edge.runtime.preprocess_choice import PreprocessChoice, PreprocessState


@pytest.mark.parametrize("asked", [None, False])
def test_a_backend_without_device_input_preprocesses_on_the_cpu_with_nothing_to_report(tiny_onnx, asked):
    runner = load_runner(tiny_onnx, "onnxruntime")
    try:
        choice = PreprocessChoice(runner, (24, 32), runner.metadata.resize, asked)
        assert (choice.state, choice.device, choice.reason) == (PreprocessState.CPU, "cpu", None)
        assert choice.write_frames([]) is False  # never writes anywhere
        choice.use_tiles((24, 32))  # nothing to swap
        choice.close()
        choice.close()  # idempotent
        assert choice.state is PreprocessState.CLOSED
    finally:
        runner.close()


def test_cuda_asked_for_but_impossible_is_an_error_that_says_why(tiny_onnx):
    with pytest.raises(
        BackendError, match="CUDA preprocessing was requested but is unavailable: backend 'ort'"
    ):
        Detector(tiny_onnx, backend="onnxruntime", cuda_preprocess=True)
    with Detector(tiny_onnx, backend="onnxruntime") as det:
        assert (det.preprocess_device, det.preprocess_fallback_reason) == ("cpu", None)
