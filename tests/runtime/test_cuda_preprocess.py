"""CUDA preprocessing against the CPU reference (preprocess_bgr): within 1/255 on every value.

The GPU test runs the kernel on a GPU. The CPU tests run the same KERNEL_SOURCE compiled as
plain C++ (tests/kernel_harness.py) through CudaPreprocessor's own launch code, so a kernel
that disagrees with preprocess_bgr (a channel, a coordinate, a resize rule) fails here too.
"""
import importlib.util

import numpy as np
import pytest

from fake_cuda import FakeCuda, install
from kernel_harness import compiler_missing
from rd_edge.core.preprocess import preprocess_bgr

MODEL_SIZE = (24, 32)
# Downscale (several ratios, including cv2's exact-2x special case), upscale, same size, mixed.
FRAME_SIZES = [(480, 640), (48, 64), (37, 101), (24, 32), (10, 14), (5, 200), (1, 1)]
TOLERANCE = 1 / 255 + 1e-6


def frame(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def cpu_cuda(monkeypatch):
    """pycuda on the CPU (tests/fake_cuda.py): the real KERNEL_SOURCE compiled with g++, deferred streams."""
    reason = compiler_missing()
    if reason:
        pytest.skip(reason)
    cuda = FakeCuda()
    install(monkeypatch, cuda)
    ctx = cuda.module.Device(0).retain_primary_context()
    ctx.push()
    yield cuda
    cuda.module.Context.pop()


def run_preprocessor(cuda, frames, size=MODEL_SIZE):
    """CudaPreprocessor.enqueue (the runtime's own launch arguments) into one device batch."""
    from rd_edge.runtime.cuda_preprocess import CudaPreprocessor

    stream = cuda.module.Stream()
    pre = CudaPreprocessor(size, stream)
    dst = cuda.module.mem_alloc(len(frames) * 3 * size[0] * size[1] * 4)
    for i, f in enumerate(frames):  # each into its own batch slot; buffers grow and are reused
        pre.enqueue(f, int(dst), batch_index=i)
    stream.synchronize()
    out = cuda.view(int(dst), np.float32, len(frames) * 3 * size[0] * size[1]).reshape(len(frames), 3, *size)
    return out.copy()


@pytest.mark.parametrize("size", FRAME_SIZES)
def test_real_kernel_source_matches_preprocess_bgr_within_one_grey_level(cpu_cuda, size):
    src = frame(*size, seed=size[0])
    got = run_preprocessor(cpu_cuda, [src])[0]
    want = preprocess_bgr(src, MODEL_SIZE)
    assert got.shape == want.shape == (3, *MODEL_SIZE)
    assert np.abs(got - want).max() <= TOLERANCE, f"frame {size}"


def test_real_kernel_batch_slots_and_odd_model_sizes(cpu_cuda):
    # Odd model sizes (not multiples of the 32x8 block), shrinking and enlarging in one batch.
    size = (37, 29)
    frames = [frame(*s, seed=i) for i, s in enumerate([(101, 77), (13, 9), (37, 29), (250, 3)])]
    got = run_preprocessor(cpu_cuda, frames, size)
    for g, f in zip(got, frames):
        assert np.abs(g - preprocess_bgr(f, size)).max() <= TOLERANCE, f"frame {f.shape}"


def test_real_kernel_writes_rgb_planes_from_bgr_pixels(cpu_cuda):
    red = np.zeros((9, 7, 3), np.uint8)
    red[..., 2] = 255  # BGR: pure red
    out = run_preprocessor(cpu_cuda, [red], (5, 3))[0]
    np.testing.assert_array_equal(out[0], 1.0)  # R plane
    np.testing.assert_array_equal(out[1:], 0.0)  # G, B planes


def _gpu_skip_reason():
    if importlib.util.find_spec("pycuda") is None:
        return "pycuda is not installed"
    from rd_edge.core.errors import BackendError
    from rd_edge.runtime.backends.trt import import_pycuda_driver

    try:
        cuda = import_pycuda_driver()
    except BackendError as exc:
        return str(exc)
    return None if cuda.Device.count() > 0 else "no CUDA device"


@pytest.mark.gpu
def test_cuda_kernel_matches_the_cpu_path_on_every_pixel():
    reason = _gpu_skip_reason()
    if reason:
        pytest.skip(reason)
    from rd_edge.runtime.backends.trt import import_pycuda_driver
    from rd_edge.runtime.cuda_preprocess import CudaPreprocessor

    cuda = import_pycuda_driver()
    ctx = cuda.Device(0).retain_primary_context()
    ctx.push()
    try:
        stream = cuda.Stream()
        pre = CudaPreprocessor(MODEL_SIZE, stream)
        batch = len(FRAME_SIZES)
        out = np.empty((batch, 3, *MODEL_SIZE), np.float32)
        dst = cuda.mem_alloc(out.nbytes)
        frames = [frame(*size, seed=i) for i, size in enumerate(FRAME_SIZES)]
        for i, f in enumerate(frames):  # each into its own batch slot, buffers grow and shrink
            pre.enqueue(f, int(dst), batch_index=i)
        stream.synchronize()
        cuda.memcpy_dtoh(out, dst)
        for i, f in enumerate(frames):
            want = preprocess_bgr(f, MODEL_SIZE)
            assert np.abs(out[i] - want).max() <= TOLERANCE, f"frame {f.shape}"
        pre.close()
        dst.free()
    finally:
        cuda.Context.pop()
        ctx.detach()
