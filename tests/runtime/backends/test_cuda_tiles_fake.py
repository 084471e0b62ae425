"""Tiled models on the CUDA path: the crop kernel (real source, compiled for the CPU by
tests/kernel_harness.py) writes the tiles straight into the (fake) TensorRT input."""

import numpy as np
import pytest
from fake_cuda import FakeCuda, install
from kernel_harness import compiler_missing
from test_trt_runner_fake import MAX_BATCH, FakeTensorRT, H, W, frames, nothing_current

from rd_edge.core.preprocess import RESIZE_DEFAULT, preprocess_bgr
from rd_edge.core.sidecar import EngineSidecar
from rd_edge.core.tiling import Tiling
from rd_edge.runtime import Detector

TILING = Tiling((H, W), 0.25).to_dict()  # tiles of the model's size


@pytest.fixture
def cuda(monkeypatch):
    if compiler_missing():
        pytest.skip(compiler_missing())
    fake = FakeCuda()
    install(monkeypatch, fake)
    return fake


def test_tile_kernel_equals_preprocess_bgr_on_the_crops(cuda):
    from rd_edge.runtime.cuda_tiles import CudaTilePreprocessor

    ctx = cuda.module.Device(0).retain_primary_context()
    ctx.push()
    try:
        stream = cuda.module.Stream()
        pre = CudaTilePreprocessor((H, W), stream)
        big, small = frames([(70, 90), (H, W + 5)], seed=3)
        origins = [(0, 0), (46, 58), (13, 7)]
        dst = cuda.module.mem_alloc(5 * 3 * H * W * 4)
        pre.enqueue_tiles(big, origins, int(dst), 0)
        pre.enqueue_tiles(small, [(0, 5), (0, 0)], int(dst), 3)  # reuses (and grows) nothing wrongly
        stream.synchronize()
        got = cuda.view(int(dst), np.float32, 5 * 3 * H * W).reshape(5, 3, H, W)
        want = [preprocess_bgr(big[y : y + H, x : x + W], (H, W), resize=RESIZE_DEFAULT) for y, x in origins]
        want += [
            preprocess_bgr(small[:, 5:], (H, W), resize=RESIZE_DEFAULT),
            preprocess_bgr(small[:, :W], (H, W), resize=RESIZE_DEFAULT),
        ]
        np.testing.assert_array_equal(got, np.stack(want))  # a crop needs no resize: bit-identical
        with pytest.raises(ValueError, match="outside the 90x70 frame"):
            pre.enqueue_tiles(big, [(47, 0)], int(dst), 0)
        pre.close()
        dst.free()
    finally:
        cuda.module.Context.pop()


@pytest.fixture
def tiled_plan(cuda, monkeypatch, tmp_path, metadata_factory):
    trt = FakeTensorRT(cuda)
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", trt.module)
    meta = metadata_factory()
    meta.tiling = TILING
    plan = tmp_path / "tiled.engine"
    plan.write_bytes(b"fake plan")
    EngineSidecar(
        "10.3.0", "Fake GPU", "8.7", "fp32", 1, MAX_BATCH, "0" * 64, meta, sm_count=16, total_memory_mb=8192
    ).write(plan)
    return plan, meta


def test_tiled_detector_crops_tiles_on_the_gpu_and_matches_the_cpu(cuda, tiled_plan, make_model):
    plan, meta = tiled_plan
    onnx = make_model("tiled.onnx", metadata=meta)
    batch = frames([(60, 90), (H, W), (50, 40)], seed=1)  # 12 + 1 + 4 tiles, in chunks of 4
    with Detector(onnx) as cpu:
        want = cpu.predict(batch)
    with Detector(plan) as gpu:
        assert gpu.preprocess_device == "cuda" and gpu.preprocess_fallback_reason is None
        got = gpu.predict(batch)
        base = gpu.runner.device_input_pointer()
    tiles = [c for c in cuda.kernel_calls if "origins" in c]
    assert tiles and len(tiles) == len(cuda.kernel_calls)  # only the crop kernel ran
    plane = 3 * H * W * 4
    assert {c["dst"] for c in tiles} <= {base + j * plane for j in range(MAX_BATCH)}
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.anomaly_map, w.anomaly_map, atol=1e-6)
        assert g.score == pytest.approx(w.score, abs=1e-6)
    assert cuda.memory == {} and nothing_current(cuda)


def test_cuda_error_on_tiles_falls_back_to_cpu_crops(cuda, tiled_plan, make_model):
    plan, meta = tiled_plan
    f = frames([(60, 90)])[0]
    with Detector(make_model("tiled.onnx", metadata=meta)) as cpu, Detector(plan) as gpu:
        cuda.fail_launch = "cuLaunchKernel failed: unspecified launch failure"
        with pytest.warns(RuntimeWarning, match="launch failure.*CPU from now on"):
            got = gpu.predict(f)
        assert gpu.preprocess_device == "cpu"
        np.testing.assert_allclose(got.anomaly_map, cpu.predict(f).anomaly_map, atol=1e-6)
