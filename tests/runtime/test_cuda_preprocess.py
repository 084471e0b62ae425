"""CUDA preprocessing against the CPU reference (preprocess_bgr): within 1/255 on every value.

The GPU test runs the kernel itself. The CPU test checks the kernel's arithmetic, transcribed
to numpy, against cv2 so the sampling convention is verified on machines without a GPU.
"""
import importlib.util

import numpy as np
import pytest

from rd_edge.runtime.cuda_preprocess import KERNEL_SOURCE
from rd_edge.core.preprocess import preprocess_bgr

MODEL_SIZE = (24, 32)
# Downscale (several ratios, including cv2's exact-2x special case), upscale, same size, mixed.
FRAME_SIZES = [(480, 640), (48, 64), (37, 101), (24, 32), (10, 14), (5, 200), (1, 1)]
TOLERANCE = 1 / 255 + 1e-6


def frame(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def kernel_in_numpy(src: np.ndarray, size) -> np.ndarray:
    """The kernel's per-pixel formula, vectorized: float bilinear, cv2's half-pixel clamping."""
    dst_h, dst_w = size
    src_h, src_w = src.shape[:2]

    def axis(n_dst, n_src):
        f = (np.arange(n_dst, dtype=np.float32) + 0.5) * np.float32(n_src / n_dst) - 0.5
        i0 = np.floor(f).astype(np.int64)
        f = f - i0
        low, high = i0 < 0, i0 >= n_src - 1
        i0[low], f[low] = 0, 0
        i0[high], f[high] = n_src - 1, 0
        return i0, np.minimum(i0 + 1, n_src - 1), f.astype(np.float32)

    y0, y1, fy = axis(dst_h, src_h)
    x0, x1, fx = axis(dst_w, src_w)
    s = src.astype(np.float32)
    fx3 = fx[None, :, None]
    top = (1 - fx3) * s[y0][:, x0] + fx3 * s[y0][:, x1]
    bottom = (1 - fx3) * s[y1][:, x0] + fx3 * s[y1][:, x1]
    out = (1 - fy[:, None, None]) * top + fy[:, None, None] * bottom  # [H,W,3] BGR
    return out[:, :, ::-1].transpose(2, 0, 1) * np.float32(1 / 255)  # [3,H,W] RGB


def test_kernel_source_names_the_entry_point():
    assert 'extern "C" __global__ void bgr_to_rgb_nchw_resize' in KERNEL_SOURCE
    assert "(y + 0.5f) * scale_y - 0.5f" in KERNEL_SOURCE and "(x + 0.5f) * scale_x - 0.5f" in KERNEL_SOURCE


@pytest.mark.parametrize("size", FRAME_SIZES)
def test_kernel_arithmetic_matches_cv2_within_one_grey_level(size):
    src = frame(*size, seed=size[0])
    want = preprocess_bgr(src, MODEL_SIZE)
    got = kernel_in_numpy(src, MODEL_SIZE)
    assert got.shape == want.shape == (3, *MODEL_SIZE)
    assert np.abs(got - want).max() <= TOLERANCE


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
