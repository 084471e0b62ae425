"""CUDA preprocessing of tiles: crop + convert in one kernel, straight into the engine's input.

A tiled model's tile has the model's input size, so a tile needs no resize: the kernel reads
the tile's pixels from the uploaded frame (uint8 BGR HWC) and writes float32 RGB CHW / 255 at
its batch slot, the same arithmetic as ``preprocess_bgr`` on a crop (bit-identical values).
One launch covers all tiles of one frame in a batch: ``blockIdx.z`` is the tile, its top-left
corner comes from a small (y, x) array uploaded with the frame. The frame goes to the device
once, however many tiles it has; nothing comes back to the host.
"""

from __future__ import annotations

from typing import Any, List, Sequence, Tuple

import numpy as np

from rd_edge.core.errors import ImageReadError
from rd_edge.core.metadata import RESIZE_LINEAR

from .cuda_preprocess import CudaPreprocessError, CudaPreprocessor, _cuda_error

TILE_KERNEL_NAME = "crop_tiles_bgr_to_rgb_nchw"
TILE_KERNEL_SOURCE = r"""
extern "C" __global__ void crop_tiles_bgr_to_rgb_nchw(
    const unsigned char* __restrict__ src, const int src_w,
    const int* __restrict__ origins, float* __restrict__ dst, const int tile_h, const int tile_w)
{
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    const int t = blockIdx.z;  // the tile: its (y, x) corner is origins[2t], origins[2t + 1]
    if (x >= tile_w || y >= tile_h) return;

    const unsigned char* px = src + ((size_t)(origins[2 * t] + y) * src_w + (origins[2 * t + 1] + x)) * 3;
    const size_t plane = (size_t)tile_h * tile_w;
    float* out = dst + (size_t)t * 3 * plane + (size_t)y * tile_w + x;
    out[0] = px[2] * (1.f / 255.f);          // R
    out[plane] = px[1] * (1.f / 255.f);      // G
    out[2 * plane] = px[0] * (1.f / 255.f);  // B
}
"""
_BLOCK = (32, 8, 1)


class CudaTilePreprocessor(CudaPreprocessor):
    """Writes the tiles of a frame into consecutive slots of a float32 [N,3,h,w] device tensor.

    Same contract as CudaPreprocessor (its context current, asynchronous on ``stream``); the
    tile size is the model's input size.
    """

    kernel_source = TILE_KERNEL_SOURCE

    def __init__(self, size_hw: Tuple[int, int], stream: Any) -> None:
        super().__init__(size_hw, stream, RESIZE_LINEAR)  # the rule's kernel is replaced:
        self.kernel_name = TILE_KERNEL_NAME  # a crop of a fitted frame needs no resize
        self._origins_host: Any = None  # int32 [2 * tiles], page-locked
        self._origins_dev: Any = None

    def enqueue_tiles(
        self, frame: np.ndarray, origins: Sequence[Tuple[int, int]], dst_ptr: int, batch_index: int = 0
    ) -> None:
        """Upload ``frame`` once and write its tiles at (y, x) ``origins`` into
        ``dst[batch_index:batch_index + len(origins)]``."""
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3 or not frame.flags.c_contiguous:
            raise ImageReadError(
                f"CUDA tile preprocessing expects a contiguous uint8 HxWx3 BGR frame, "
                f"found {frame.dtype} {frame.shape}"
            )
        bad = [
            (y, x)
            for y, x in origins
            if not (0 <= y <= frame.shape[0] - self.height and 0 <= x <= frame.shape[1] - self.width)
        ]
        if bad:  # the kernel does not clamp: a tile outside the frame would read foreign memory
            raise ValueError(
                f"tile origins {bad[:3]} put a {self.width}x{self.height} tile outside the "
                f"{frame.shape[1]}x{frame.shape[0]} frame"
            )
        self.compile()
        try:
            self._enqueue_tiles(frame, np.asarray(origins, dtype=np.int32).reshape(-1), dst_ptr, batch_index)
        except CudaPreprocessError:
            raise
        except Exception as exc:  # pycuda.driver.Error, MemoryError
            raise _cuda_error(
                f"cropping {len(origins)} tiles of a {frame.shape[1]}x{frame.shape[0]} frame", exc
            ) from exc

    def _enqueue_tiles(self, frame: np.ndarray, origins: np.ndarray, dst_ptr: int, batch_index: int) -> None:
        self._reserve(frame.nbytes)
        self._reserve_origins(origins.nbytes)
        uploaded, staging_all, function = self._live()
        uploaded.synchronize()  # the staging buffers may be refilled once the last upload ran
        staging = staging_all[: frame.nbytes]
        staging[...] = frame.reshape(-1)  # [H*W*3] HWC bytes
        corners = self._origins_host[: origins.size]
        corners[...] = origins
        self._cuda.memcpy_htod_async(self._frame_dev, staging, self.stream)
        self._cuda.memcpy_htod_async(self._origins_dev, corners, self.stream)
        uploaded.record(self.stream)
        plane_bytes = 3 * self.height * self.width * 4  # one float32 [3,h,w] tile
        grid = (
            (self.width + _BLOCK[0] - 1) // _BLOCK[0],
            (self.height + _BLOCK[1] - 1) // _BLOCK[1],
            origins.size // 2,
        )
        function(
            self._frame_dev,
            np.int32(frame.shape[1]),
            self._origins_dev,
            np.uintp(int(dst_ptr) + batch_index * plane_bytes),
            np.int32(self.height),
            np.int32(self.width),
            block=_BLOCK,
            grid=grid,
            stream=self.stream,
        )

    def _reserve_origins(self, nbytes: int) -> None:
        if self._origins_host is not None and self._origins_host.nbytes >= nbytes:
            return
        self.stream.synchronize()
        if self._origins_dev is not None:
            self._origins_dev.free()
        self._origins_host = self._cuda.pagelocked_empty(nbytes // 4, np.int32)
        self._origins_dev = self._cuda.mem_alloc(nbytes)

    def close(self) -> None:
        if self._origins_dev is not None:
            self.stream.synchronize()
            self._origins_dev.free()
        self._origins_dev = self._origins_host = None
        super().close()


def frame_runs(chunk: Sequence[Tuple[int, int]]) -> List[Tuple[int, int, List[int]]]:
    """Slots [(frame, tile)] in batch order -> [(frame, first batch index, [tile indices])],
    one entry per run of consecutive slots of the same frame (one kernel launch each)."""
    runs: List[Tuple[int, int, List[int]]] = []
    for j, (i, k) in enumerate(chunk):
        if runs and runs[-1][0] == i:
            runs[-1][2].append(k)
        else:
            runs.append((i, j, [k]))
    return runs
