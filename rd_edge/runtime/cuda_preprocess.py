"""CUDA preprocessing: one kernel from a uint8 BGR frame to the model's float32 NCHW input.

Same arithmetic as the CPU reference (preprocess.preprocess_bgr), chosen by the model's resize
rule: ``bgr_to_rgb_nchw_resize_area`` shrinks by area averaging as cv2.INTER_AREA does (weights
from cv2's computeResizeAreaTab, non-integer factors included) and enlarges like
cv2.INTER_LINEAR; ``bgr_to_rgb_nchw_resize`` (older "linear" models) is cv2.INTER_LINEAR always
(source = (dst + 0.5) * scale - 0.5, a coordinate below 0 or at the last pixel is clamped with
zero weight, no antialiasing). Then BGR -> RGB, / 255, HWC -> CHW. cv2 rounds its uint8 result;
the bilinear path works in float and does not round, the area path rounds as cv2 does; either
differs from cv2 by under one grey level (< 1/255).

The frame goes host -> page-locked staging buffer -> device on the caller's stream, and the
kernel writes straight into the destination (e.g. the TensorRT input buffer) at a batch index.
pycuda is imported when a CudaPreprocessor is built; the kernel is compiled (nvcc, through
pycuda's SourceModule and its on-disk cache) on first use, once per preprocessor.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from rd_edge.core.errors import BackendError, ImageReadError
from rd_edge.core.metadata import RESIZE_AREA_LINEAR, RESIZE_LINEAR

KERNEL_NAME = "bgr_to_rgb_nchw_resize"  # rule "linear": cv2.INTER_LINEAR in every direction
AREA_KERNEL_NAME = "bgr_to_rgb_nchw_resize_area"  # rule "area-shrink/linear-enlarge"
KERNEL_NAMES = {RESIZE_LINEAR: KERNEL_NAME, RESIZE_AREA_LINEAR: AREA_KERNEL_NAME}
KERNEL_SOURCE = r"""
#ifndef __CUDACC__
#define __device__
#endif

// cv2.INTER_LINEAR at one destination pixel: half-pixel centres; outside [0, size-1] the weight
// of the far pixel is 0. Writes the three channels (BGR order) to v.
__device__ void sample_linear(const unsigned char* src, const int src_h, const int src_w,
                              const int x, const int y, const float scale_y, const float scale_x,
                              float* v)
{
    float fy = (y + 0.5f) * scale_y - 0.5f;
    int y0 = (int)floorf(fy);
    fy -= (float)y0;
    if (y0 < 0) { y0 = 0; fy = 0.f; }
    if (y0 >= src_h - 1) { y0 = src_h - 1; fy = 0.f; }
    const int y1 = min(y0 + 1, src_h - 1);

    float fx = (x + 0.5f) * scale_x - 0.5f;
    int x0 = (int)floorf(fx);
    fx -= (float)x0;
    if (x0 < 0) { x0 = 0; fx = 0.f; }
    if (x0 >= src_w - 1) { x0 = src_w - 1; fx = 0.f; }
    const int x1 = min(x0 + 1, src_w - 1);

    const unsigned char* row0 = src + (size_t)y0 * src_w * 3;
    const unsigned char* row1 = src + (size_t)y1 * src_w * 3;
    for (int c = 0; c < 3; ++c) {
        const float top = (1.f - fx) * row0[x0 * 3 + c] + fx * row0[x1 * 3 + c];
        const float bottom = (1.f - fx) * row1[x0 * 3 + c] + fx * row1[x1 * 3 + c];
        v[c] = (1.f - fy) * top + fy * bottom;
    }
}

// cv2.INTER_AREA's source span of destination index d along one axis (computeResizeAreaTab):
// the cell [d * src / dst, (d + 1) * src / dst) clipped to the image; a source pixel's weight
// is its overlap with the cell over the cell's width; overlaps under 1e-3 are skipped as cv2 does.
__device__ void area_span(const int d, const int n_src, const int n_dst,
                          float* f1, float* f2, float* cell, int* s1, int* s2)
{
    const float scale = (float)n_src / (float)n_dst;
    *f1 = (float)d * (float)n_src / (float)n_dst;
    *f2 = *f1 + scale;
    *cell = fminf(scale, (float)n_src - *f1);
    *s2 = min((int)floorf(*f2), n_src - 1);
    *s1 = min((int)ceilf(*f1), *s2);
}

__device__ float area_weight(const int s, const float f1, const float f2, const float cell,
                             const int s1, const int s2)
{
    if (s < s1) return (s1 - f1 > 1e-3f) ? ((float)s1 - f1) / cell : 0.f;
    if (s < s2) return 1.f / cell;
    return (f2 - (float)s2 > 1e-3f) ? fminf(fminf(f2 - (float)s2, 1.f), cell) / cell : 0.f;
}

// BGR -> RGB, / 255, HWC -> CHW: channel c of the frame goes to plane 2 - c.
__device__ void store_rgb(float* dst, const int dst_h, const int dst_w, const int x, const int y,
                          const float* v)
{
    const size_t plane = (size_t)dst_h * dst_w;
    const size_t at = (size_t)y * dst_w + x;
    for (int c = 0; c < 3; ++c) dst[(2 - c) * plane + at] = v[c] * (1.f / 255.f);
}

extern "C" __global__ void bgr_to_rgb_nchw_resize(
    const unsigned char* __restrict__ src, const int src_h, const int src_w,
    float* __restrict__ dst, const int dst_h, const int dst_w,
    const float scale_y, const float scale_x)
{
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= dst_w || y >= dst_h) return;
    float v[3];
    sample_linear(src, src_h, src_w, x, y, scale_y, scale_x, v);
    store_rgb(dst, dst_h, dst_w, x, y, v);
}

// Shrinking in both axes (src >= dst): cv2.INTER_AREA; anything else: cv2.INTER_LINEAR.
extern "C" __global__ void bgr_to_rgb_nchw_resize_area(
    const unsigned char* __restrict__ src, const int src_h, const int src_w,
    float* __restrict__ dst, const int dst_h, const int dst_w,
    const float scale_y, const float scale_x)
{
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= dst_w || y >= dst_h) return;
    float v[3] = {0.f, 0.f, 0.f};
    if (src_h < dst_h || src_w < dst_w) {
        sample_linear(src, src_h, src_w, x, y, scale_y, scale_x, v);
        store_rgb(dst, dst_h, dst_w, x, y, v);
        return;
    }
    float fy1, fy2, cell_y, fx1, fx2, cell_x;
    int sy1, sy2, sx1, sx2;
    area_span(y, src_h, dst_h, &fy1, &fy2, &cell_y, &sy1, &sy2);
    area_span(x, src_w, dst_w, &fx1, &fx2, &cell_x, &sx1, &sx2);
    for (int sy = sy1 - 1; sy <= sy2; ++sy) {
        if (sy < 0) continue;
        const float wy = area_weight(sy, fy1, fy2, cell_y, sy1, sy2);
        if (wy == 0.f) continue;
        const unsigned char* row = src + (size_t)sy * src_w * 3;
        for (int sx = sx1 - 1; sx <= sx2; ++sx) {
            if (sx < 0) continue;
            const float w = wy * area_weight(sx, fx1, fx2, cell_x, sx1, sx2);
            v[0] += w * row[sx * 3];
            v[1] += w * row[sx * 3 + 1];
            v[2] += w * row[sx * 3 + 2];
        }
    }
    // cv2 rounds the average to uint8 (half to even); so does this, so a flat area stays exact.
    for (int c = 0; c < 3; ++c) v[c] = rintf(v[c]);
    store_rgb(dst, dst_h, dst_w, x, y, v);
}
"""
_BLOCK = (32, 8, 1)


class CudaPreprocessError(BackendError):
    """A CUDA call of the preprocessing path failed (the Detector then preprocesses on the CPU)."""


def _cuda_error(what: str, exc: BaseException) -> CudaPreprocessError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
    return CudaPreprocessError(f"CUDA preprocessing failed while {what}: {first}")


class CudaPreprocessor:
    """Writes preprocessed frames into a float32 [N,3,H,W] device tensor on one stream.

    Must be used with the stream's CUDA context current (e.g. inside ``runner.activate()``).
    Buffers for the frame (page-locked host staging and device copy) grow to the largest frame
    seen and are reused.
    """

    kernel_source = KERNEL_SOURCE  # a subclass may bring its own kernel source (and kernel_name)

    def __init__(self, size_hw: Tuple[int, int], stream: Any, resize: str) -> None:
        from .backends.trt.util import import_pycuda_driver

        if resize not in KERNEL_NAMES:
            raise BackendError(
                f"no CUDA kernel for the resize rule {resize!r}; expected one of {', '.join(KERNEL_NAMES)}"
            )
        self.kernel_name = KERNEL_NAMES[resize]

        self._cuda = import_pycuda_driver()
        self.height, self.width = int(size_hw[0]), int(size_hw[1])
        self.stream = stream
        self._function: Optional[Any] = None
        self._module: Optional[Any] = None
        self._staging: Optional[np.ndarray] = None  # flat uint8, page-locked
        self._frame_dev: Optional[Any] = None
        try:
            # Recorded after each upload: the staging buffer may be refilled only once it is done.
            self._uploaded: Optional[Any] = self._cuda.Event()
        except Exception as exc:  # pycuda.driver.Error and its subclasses
            raise _cuda_error("creating an event", exc) from exc

    def compile(self) -> None:
        """Compile the kernel now (BackendError if nvcc is missing); later calls are free."""
        if self._function is not None:
            return
        try:
            from pycuda.compiler import SourceModule

            self._module = SourceModule(self.kernel_source, no_extern_c=True)
        except Exception as exc:  # pycuda.driver.CompileError, or nvcc not found (OSError)
            raise BackendError(
                "cannot compile the CUDA preprocessing kernel (pycuda needs nvcc; on "
                "JetPack add /usr/local/cuda/bin to PATH): "
                f"{str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}"
            ) from exc
        try:
            self._function = self._module.get_function(self.kernel_name)
        except Exception as exc:
            raise _cuda_error(f"loading kernel {self.kernel_name}", exc) from exc

    def enqueue(self, frame: np.ndarray, dst_ptr: int, batch_index: int = 0) -> None:
        """Upload ``frame`` (uint8 HxWx3 BGR) and write its tensor at ``dst[batch_index]``.

        Asynchronous on ``self.stream``; synchronize the stream before reading ``dst``.
        """
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ImageReadError(
                f"CUDA preprocessing expects a uint8 HxWx3 BGR frame, found "
                f"{frame.dtype} {frame.shape}; convert it with to_bgr_uint8"
            )
        self.compile()
        try:
            self._enqueue(frame, dst_ptr, batch_index)
        except CudaPreprocessError:
            raise
        except Exception as exc:  # pycuda.driver.Error (launch failure, out of memory...), MemoryError
            raise _cuda_error(f"preprocessing a {frame.shape[1]}x{frame.shape[0]} frame", exc) from exc

    def _enqueue(self, frame: np.ndarray, dst_ptr: int, batch_index: int) -> None:
        src_h, src_w = frame.shape[:2]
        self._reserve(frame.nbytes)
        uploaded, staging_all, function = self._live()
        uploaded.synchronize()
        staging = staging_all[: frame.nbytes]
        staging[...] = frame.reshape(-1)  # [H*W*3] contiguous HWC bytes
        self._cuda.memcpy_htod_async(self._frame_dev, staging, self.stream)
        uploaded.record(self.stream)
        plane_bytes = 3 * self.height * self.width * 4  # one float32 [3,H,W] image
        grid = ((self.width + _BLOCK[0] - 1) // _BLOCK[0], (self.height + _BLOCK[1] - 1) // _BLOCK[1], 1)
        # cv2 computes scale = src / dst in double before using it in float.
        function(
            self._frame_dev,
            np.int32(src_h),
            np.int32(src_w),
            np.uintp(int(dst_ptr) + batch_index * plane_bytes),
            np.int32(self.height),
            np.int32(self.width),
            np.float32(src_h / self.height),
            np.float32(src_w / self.width),
            block=_BLOCK,
            grid=grid,
            stream=self.stream,
        )

    def _live(self) -> Tuple[Any, np.ndarray, Any]:
        """(upload event, staging buffer, kernel) once compiled and reserved; an error once closed."""
        if self._uploaded is None or self._staging is None or self._function is None:
            raise CudaPreprocessError("the CUDA preprocessor is closed (or its kernel was never compiled)")
        return self._uploaded, self._staging, self._function

    def _reserve(self, nbytes: int) -> None:
        """Grow the staging and device frame buffers to ``nbytes`` (never shrinks)."""
        if self._staging is not None and self._staging.nbytes >= nbytes:
            return
        self.stream.synchronize()  # pending copies/kernels may still read the old buffers
        if self._frame_dev is not None:
            self._frame_dev.free()
        self._staging = self._cuda.pagelocked_empty(nbytes, np.uint8)
        self._frame_dev = self._cuda.mem_alloc(nbytes)

    def close(self) -> None:
        """Free the frame buffers, the event and the kernel module (call with the context
        current, e.g. through ``runner.call_in_context_owner``). Idempotent."""
        if self._frame_dev is not None:
            self.stream.synchronize()
            self._frame_dev.free()
        # Every CUDA object is dropped here, while the context is current: pycuda frees one
        # dropped later in a thread that does not own the context with a warning, and leaks it.
        self._frame_dev, self._staging, self._function, self._module = None, None, None, None
        self._uploaded = None
