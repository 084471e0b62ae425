"""CUDA preprocessing: one kernel from a uint8 BGR frame to the model's float32 NCHW input.

Same arithmetic as the CPU reference (preprocess.preprocess_bgr): bilinear resize with
cv2.INTER_LINEAR's convention (source = (dst + 0.5) * scale - 0.5, a coordinate below 0 or at
the last pixel is clamped with zero weight, no antialiasing), BGR -> RGB, / 255, HWC -> CHW.
cv2 interpolates uint8 in 11-bit fixed point and rounds to uint8; the kernel interpolates in
float and does not round, so the two differ by under one grey level (< 1/255).

The frame goes host -> page-locked staging buffer -> device on the caller's stream, and the
kernel writes straight into the destination (e.g. the TensorRT input buffer) at a batch index.
pycuda is imported when a CudaPreprocessor is built; the kernel is compiled (nvcc, through
pycuda's SourceModule and its on-disk cache) on first use, once per preprocessor.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from rd_edge.core.errors import BackendError, ImageReadError

KERNEL_NAME = "bgr_to_rgb_nchw_resize"
KERNEL_SOURCE = r"""
extern "C" __global__ void bgr_to_rgb_nchw_resize(
    const unsigned char* __restrict__ src, const int src_h, const int src_w,
    float* __restrict__ dst, const int dst_h, const int dst_w,
    const float scale_y, const float scale_x)
{
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= dst_w || y >= dst_h) return;

    // cv2.INTER_LINEAR: half-pixel centres; outside [0, size-1] the weight of the far pixel is 0.
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
    const size_t plane = (size_t)dst_h * dst_w;
    const size_t at = (size_t)y * dst_w + x;
    #pragma unroll
    for (int c = 0; c < 3; ++c) {
        const float top = (1.f - fx) * row0[x0 * 3 + c] + fx * row0[x1 * 3 + c];
        const float bottom = (1.f - fx) * row1[x0 * 3 + c] + fx * row1[x1 * 3 + c];
        const float value = (1.f - fy) * top + fy * bottom;
        dst[(2 - c) * plane + at] = value * (1.f / 255.f);  // BGR channel c -> RGB plane 2 - c
    }
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

    def __init__(self, size_hw: Tuple[int, int], stream: Any) -> None:
        from .backends.trt.util import import_pycuda_driver

        self._cuda = import_pycuda_driver()
        self.height, self.width = int(size_hw[0]), int(size_hw[1])
        self.stream = stream
        self._function: Optional[Any] = None
        self._module: Optional[Any] = None
        self._staging: Optional[np.ndarray] = None  # flat uint8, page-locked
        self._frame_dev: Optional[Any] = None
        try:
            # Recorded after each upload: the staging buffer may be refilled only once it is done.
            self._uploaded = self._cuda.Event()
        except Exception as exc:  # pycuda.driver.Error and its subclasses
            raise _cuda_error("creating an event", exc) from exc

    def compile(self) -> None:
        """Compile the kernel now (BackendError if nvcc is missing); later calls are free."""
        if self._function is not None:
            return
        try:
            from pycuda.compiler import SourceModule

            self._module = SourceModule(KERNEL_SOURCE, no_extern_c=True)
        except Exception as exc:  # pycuda.driver.CompileError, or nvcc not found (OSError)
            raise BackendError("cannot compile the CUDA preprocessing kernel (pycuda needs nvcc; on "
                               "JetPack add /usr/local/cuda/bin to PATH): "
                               f"{str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}") from exc
        try:
            self._function = self._module.get_function(KERNEL_NAME)
        except Exception as exc:
            raise _cuda_error(f"loading kernel {KERNEL_NAME}", exc) from exc

    def enqueue(self, frame: np.ndarray, dst_ptr: int, batch_index: int = 0) -> None:
        """Upload ``frame`` (uint8 HxWx3 BGR) and write its tensor at ``dst[batch_index]``.

        Asynchronous on ``self.stream``; synchronize the stream before reading ``dst``.
        """
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ImageReadError(f"CUDA preprocessing expects a uint8 HxWx3 BGR frame, found "
                                 f"{frame.dtype} {frame.shape}; convert it with to_bgr_uint8")
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
        self._uploaded.synchronize()
        staging = self._staging[: frame.nbytes]
        staging[...] = frame.reshape(-1)  # [H*W*3] contiguous HWC bytes
        self._cuda.memcpy_htod_async(self._frame_dev, staging, self.stream)
        self._uploaded.record(self.stream)
        plane_bytes = 3 * self.height * self.width * 4  # one float32 [3,H,W] image
        grid = ((self.width + _BLOCK[0] - 1) // _BLOCK[0], (self.height + _BLOCK[1] - 1) // _BLOCK[1], 1)
        # cv2 computes scale = src / dst in double before using it in float.
        self._function(self._frame_dev, np.int32(src_h), np.int32(src_w),
                       np.uintp(int(dst_ptr) + batch_index * plane_bytes),
                       np.int32(self.height), np.int32(self.width),
                       np.float32(src_h / self.height), np.float32(src_w / self.width),
                       block=_BLOCK, grid=grid, stream=self.stream)

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
        """Free the frame buffers (call with the context current). Idempotent."""
        if self._frame_dev is not None:
            self.stream.synchronize()
            self._frame_dev.free()
        self._frame_dev, self._staging, self._function, self._module = None, None, None, None
