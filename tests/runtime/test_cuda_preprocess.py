"""CUDA preprocessing against the CPU reference (preprocess_bgr): within 1/255 on every value.

The GPU test runs the kernel on a GPU. The CPU tests run the same KERNEL_SOURCE compiled as
plain C++ (tests/kernel_harness.py) through CudaPreprocessor's own launch code, so a kernel
that disagrees with preprocess_bgr (a channel, a coordinate, a resize rule) fails here too;
both kernels (area-shrink/linear-enlarge, linear) are run. The area kernel's weights are also
transcribed to numpy and checked against cv2.INTER_AREA, non-integer factors included.
"""

import importlib.util
import re

import numpy as np
import pytest
from fake_cuda import FakeCuda, install
from kernel_harness import compiler_missing, fma_missing

from rd_edge.core.metadata import RESIZE_AREA_LINEAR, RESIZE_LINEAR
from rd_edge.core.preprocess import preprocess_bgr

MODEL_SIZE = (24, 32)
# Downscale (several ratios, including cv2's exact-2x special case), upscale, same size, mixed.
FRAME_SIZES = [(480, 640), (48, 64), (37, 101), (24, 32), (10, 14), (5, 200), (1, 1)]
# One grey level: the kernel and cv2 both compute in float32, in a different order of operations
# (cv2's fixed-point area tables, our float weights), and round to uint8-scale values. The
# kernel's own float error is far smaller: with FMA contraction (nvcc's default, -fmad=true)
# each a*b+c is rounded once instead of twice, a difference of at most one float32 ulp per
# operation (about 6e-8 relative for values <= 1) summed over a few dozen operations per pixel,
# some 1e-6, three orders of magnitude under 1/255. The harness runs the kernels both ways
# ("off": plain C++ rounding; "fast": FMAs as on the GPU), and the tests below check the same
# bound both ways, and that the two builds differ by no more than FMA_BOUND. Measured on the
# FRAME_SIZES frames (x86 with FMA, g++ -O2): 703 of 16128 values differ, by at most 2.4e-7;
# both builds are at most 1/255 from preprocess_bgr.
TOLERANCE = 1 / 255 + 1e-6
FMA_BOUND = 1e-5


def frame(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture(params=["off", "fast"], ids=["no-fma", "fma"])
def cpu_cuda(monkeypatch, request):
    """pycuda on the CPU (tests/fake_cuda.py): the real KERNEL_SOURCE compiled with g++, deferred
    streams; without and with FMA contraction (the GPU's arithmetic)."""
    reason = compiler_missing() or (fma_missing() if request.param == "fast" else "")
    if reason:
        pytest.skip(reason)
    cuda = FakeCuda(fp_contract=request.param)
    install(monkeypatch, cuda)
    ctx = cuda.module.Device(0).retain_primary_context()
    ctx.push()
    yield cuda
    cuda.module.Context.pop()


def run_preprocessor(cuda, frames, size=MODEL_SIZE, resize=RESIZE_AREA_LINEAR):
    """CudaPreprocessor.enqueue (the runtime's own launch arguments) into one device batch."""
    from rd_edge.runtime.cuda_preprocess import CudaPreprocessor

    stream = cuda.module.Stream()
    pre = CudaPreprocessor(size, stream, resize)
    dst = cuda.module.mem_alloc(len(frames) * 3 * size[0] * size[1] * 4)
    for i, f in enumerate(frames):  # each into its own batch slot; buffers grow and are reused
        pre.enqueue(f, int(dst), batch_index=i)
    stream.synchronize()
    out = cuda.view(int(dst), np.float32, len(frames) * 3 * size[0] * size[1]).reshape(len(frames), 3, *size)
    return out.copy()


def area_weights(n_dst: int, n_src: int) -> np.ndarray:
    """[n_dst, n_src] weights of the area kernel's area_span/area_weight (cv2 computeResizeAreaTab)."""
    weights = np.zeros((n_dst, n_src), np.float32)
    scale = np.float32(n_src) / np.float32(n_dst)
    for d in range(n_dst):
        f1 = np.float32(d) * np.float32(n_src) / np.float32(n_dst)
        f2 = f1 + scale
        cell = min(scale, np.float32(n_src) - f1)
        s2 = min(int(np.floor(f2)), n_src - 1)
        s1 = min(int(np.ceil(f1)), s2)
        if s1 - f1 > 1e-3:
            weights[d, s1 - 1] = (s1 - f1) / cell
        weights[d, s1:s2] = 1 / cell
        if f2 - s2 > 1e-3:
            weights[d, s2] = min(f2 - s2, 1, cell) / cell
    return weights


def area_kernel_in_numpy(src: np.ndarray, size) -> np.ndarray:
    """The area kernel's shrink, vectorized: separable cell weights, float, no rounding."""
    wy, wx = area_weights(size[0], src.shape[0]), area_weights(size[1], src.shape[1])
    s = src.astype(np.float32)
    out = np.rint(np.stack([wy @ s[:, :, c] @ wx.T for c in range(3)], axis=-1))  # [H,W,3] BGR, rounded
    return out[:, :, ::-1].transpose(2, 0, 1) * np.float32(1 / 255)


@pytest.mark.parametrize("size", FRAME_SIZES)
def test_real_kernel_source_matches_preprocess_bgr_within_one_grey_level(cpu_cuda, size):
    src = frame(*size, seed=size[0])
    got = run_preprocessor(cpu_cuda, [src])[0]
    want = preprocess_bgr(src, MODEL_SIZE, resize=RESIZE_AREA_LINEAR)
    assert got.shape == want.shape == (3, *MODEL_SIZE)
    assert np.abs(got - want).max() <= TOLERANCE, f"frame {size}"


def test_fma_contraction_moves_the_kernel_output_by_float_rounding_only(monkeypatch):
    """The GPU fuses a*b+c (nvcc -fmad=true); the two CPU builds bracket it: the fused build
    really has FMA instructions, and it differs from the unfused one by rounding only."""
    import shutil
    import subprocess

    from kernel_harness import compile_kernel

    from rd_edge.runtime.cuda_preprocess import KERNEL_NAMES, KERNEL_SOURCE

    reason = compiler_missing() or fma_missing()
    if reason:
        pytest.skip(reason)
    frames = [frame(*s, seed=i) for i, s in enumerate([(480, 640), (37, 101), (10, 14)])]
    outs = {}
    for contract in ("off", "fast"):
        cuda = FakeCuda(fp_contract=contract)
        install(monkeypatch, cuda)
        ctx = cuda.module.Device(0).retain_primary_context()
        ctx.push()
        outs[contract] = run_preprocessor(cuda, frames)
        cuda.module.Context.pop()
    assert np.abs(outs["fast"] - outs["off"]).max() <= FMA_BOUND
    if shutil.which("objdump"):
        lib = compile_kernel(KERNEL_SOURCE, KERNEL_NAMES[RESIZE_AREA_LINEAR], fp_contract="fast").lib_path
        code = subprocess.run(["objdump", "-d", str(lib)], capture_output=True, text=True).stdout
        assert re.search(r"\bv?fmadd|\bfmla|\bfmadd", code), "the 'fast' build has no FMA instruction"


def test_real_kernel_batch_slots_and_odd_model_sizes(cpu_cuda):
    # Odd model sizes (not multiples of the 32x8 block), shrinking and enlarging in one batch.
    size = (37, 29)
    frames = [frame(*s, seed=i) for i, s in enumerate([(101, 77), (13, 9), (37, 29), (250, 3)])]
    got = run_preprocessor(cpu_cuda, frames, size)
    for g, f in zip(got, frames):
        assert np.abs(g - preprocess_bgr(f, size, resize=RESIZE_AREA_LINEAR)).max() <= TOLERANCE, (
            f"frame {f.shape}"
        )


def test_real_kernel_writes_rgb_planes_from_bgr_pixels(cpu_cuda):
    red = np.zeros((9, 7, 3), np.uint8)
    red[..., 2] = 255  # BGR: pure red
    out = run_preprocessor(cpu_cuda, [red], (5, 3))[0]
    np.testing.assert_array_equal(out[0], 1.0)  # R plane
    np.testing.assert_array_equal(out[1:], 0.0)  # G, B planes


# Shrinks by integer, non-integer and prime factors, and with one axis unchanged.
SHRINK_SIZES = [
    (480, 640),
    (48, 64),
    (37, 101),
    (24, 32),
    (1024, 1024),
    (700, 900),
    (25, 33),
    (24, 97),
    (255, 257),
]


@pytest.mark.parametrize("size", SHRINK_SIZES)
def test_area_formula_in_numpy_matches_cv2_inter_area(size):
    src = frame(*size, seed=size[1])
    want = preprocess_bgr(src, MODEL_SIZE, resize=RESIZE_AREA_LINEAR)
    got = area_kernel_in_numpy(src, MODEL_SIZE)
    assert np.abs(got - want).max() <= TOLERANCE


@pytest.mark.parametrize("size", SHRINK_SIZES[4:] + FRAME_SIZES[4:])
@pytest.mark.parametrize("rule", [RESIZE_AREA_LINEAR, RESIZE_LINEAR])
def test_real_kernels_follow_the_models_resize_rule(cpu_cuda, size, rule):
    src = frame(*size, seed=size[1])
    got = run_preprocessor(cpu_cuda, [src], resize=rule)[0]
    assert np.abs(got - preprocess_bgr(src, MODEL_SIZE, resize=rule)).max() <= TOLERANCE, (
        f"frame {size} {rule}"
    )


def test_area_rule_differs_from_linear_when_shrinking():
    """Area averaging is not bilinear sampling: on noise shrunk 20x they differ by many grey levels."""
    src = frame(480, 640)
    area = preprocess_bgr(src, MODEL_SIZE, resize=RESIZE_AREA_LINEAR)
    linear = preprocess_bgr(src, MODEL_SIZE, resize=RESIZE_LINEAR)
    assert np.abs(area - linear).mean() > 20 / 255
    assert np.abs(area - 0.5).max() < 0.1  # the mean of 400 uniform pixels per cell


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
    from rd_edge.runtime.backends.trt.util import ContextOwner
    from rd_edge.runtime.cuda_preprocess import CudaPreprocessor

    owner = ContextOwner(0)  # what the runner does: never ctx.detach() by hand
    cuda = owner.cuda

    def check():  # in the context's owner thread; every CUDA object is freed before it returns
        stream = cuda.Stream()
        pre = CudaPreprocessor(MODEL_SIZE, stream, RESIZE_AREA_LINEAR)
        batch = len(FRAME_SIZES)
        out = np.empty((batch, 3, *MODEL_SIZE), np.float32)
        dst = cuda.mem_alloc(out.nbytes)
        frames = [frame(*size, seed=i) for i, size in enumerate(FRAME_SIZES)]
        for i, f in enumerate(frames):  # each into its own batch slot, buffers grow and shrink
            pre.enqueue(f, int(dst), batch_index=i)
        stream.synchronize()
        cuda.memcpy_dtoh(out, dst)
        pre.close()
        dst.free()
        return frames, out

    try:
        frames, out = owner.call(check)
    finally:
        owner.close()
    for i, f in enumerate(frames):
        want = preprocess_bgr(f, MODEL_SIZE, resize=RESIZE_AREA_LINEAR)
        assert np.abs(out[i] - want).max() <= TOLERANCE, f"frame {f.shape}"
