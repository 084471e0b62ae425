"""Run a CUDA kernel's real source on the CPU: compile it as plain C++ (g++) and loop over the grid.

    kernel = compile_kernel(KERNEL_SOURCE, "bgr_to_rgb_nchw_resize")
    kernel(grid, block, src_array, np.int32(h), ..., dst_array, ...)

The source is compiled unchanged, after a prelude of shims: ``__global__``/``__device__``
vanish, ``__restrict__`` becomes GCC's ``__restrict``, and ``blockIdx``/``threadIdx``/
``blockDim``/``gridDim`` are globals that a generated launcher sets before calling the kernel
once per thread of the grid (threads run one after another, so the kernel must not rely on
``__syncthreads``). The launcher's signature is the kernel's own, read from the source, so
any ``extern "C" __global__`` kernel works (the preprocessing kernel, a tiling crop kernel...).
Pointer parameters take numpy arrays (or raw addresses); scalars take numpy scalars.
"""

from __future__ import annotations

import ctypes
import hashlib
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

PRELUDE = r"""
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <algorithm>
using std::min;
using std::max;
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __ldg(p) (*(p))
static inline float __saturatef(float x) { return x < 0.f ? 0.f : (x > 1.f ? 1.f : x); }
struct rd_dim3 { unsigned int x, y, z; };
static rd_dim3 blockIdx, threadIdx, blockDim, gridDim;
"""

# C parameter type -> ctypes type (after dropping const/__restrict__ qualifiers).
_SCALARS = {
    "int": ctypes.c_int32,
    "unsigned int": ctypes.c_uint32,
    "float": ctypes.c_float,
    "double": ctypes.c_double,
    "size_t": ctypes.c_size_t,
    "int64_t": ctypes.c_int64,
    "unsigned char": ctypes.c_uint8,
    "bool": ctypes.c_bool,
}
_CACHE: Dict[Tuple[str, str, str], "Kernel"] = {}


def compiler_missing() -> str:
    """Why kernels cannot be compiled here ("" when g++ exists)."""
    return "" if shutil.which("g++") else "g++ is not installed (apt-get install g++)"


def kernel_params(source: str, name: str) -> List[Tuple[str, str]]:
    """[(C type, parameter name)] of ``extern "C" __global__ void name(...)`` in ``source``."""
    match = re.search(r"__global__\s+void\s+" + re.escape(name) + r"\s*\(([^)]*)\)", source)
    if match is None:
        raise ValueError(f"no __global__ kernel {name!r} in the source")
    params = []
    for part in match.group(1).split(","):
        decl = " ".join(part.split())
        pname = re.findall(r"[A-Za-z_]\w*", decl)[-1]
        ctype = decl[: decl.rindex(pname)].replace("__restrict__", "").replace("const", "")
        params.append((" ".join(ctype.split()), pname))
    return params


class Kernel:
    """A kernel compiled for the CPU; call it like a CUDA launch: kernel(grid, block, *args)."""

    def __init__(self, lib: ctypes.CDLL, name: str, params: List[Tuple[str, str]], lib_path: Path) -> None:
        self.name, self.params, self.lib_path = name, params, lib_path
        self.pointer = [ctype.endswith("*") for ctype, _ in params]
        self._launch = getattr(lib, f"rd_launch_{name}")
        self._launch.restype = None
        self._launch.argtypes = [ctypes.c_uint32] * 6 + [
            ctypes.c_void_p if ptr else _SCALARS[ctype] for (ctype, _), ptr in zip(params, self.pointer)
        ]

    def __call__(self, grid: Sequence[int], block: Sequence[int], *args: object) -> None:
        if len(args) != len(self.params):
            raise TypeError(f"{self.name} takes {len(self.params)} arguments, got {len(args)}")
        values = []
        for arg, ptr in zip(args, self.pointer):
            if ptr and isinstance(arg, np.ndarray):
                if not arg.flags.c_contiguous:
                    raise ValueError("pointer arguments must be C-contiguous arrays")
                values.append(arg.ctypes.data)
            elif ptr:
                values.append(int(arg))  # a raw host address
            else:
                values.append(arg.item() if isinstance(arg, np.generic) else arg)
        g = tuple(grid) + (1,) * (3 - len(grid))
        b = tuple(block) + (1,) * (3 - len(block))
        self._launch(*g, *b, *values)


def fma_missing() -> str:
    """Why the CPU cannot run fused multiply-adds ("" when it can): x86 needs the FMA extension
    (Haswell/Zen and later); aarch64 always has them."""
    import platform

    if platform.machine() in ("aarch64", "arm64"):
        return ""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "cannot read /proc/cpuinfo to see whether the CPU has FMA"
    return "" if re.search(r"^flags\s*:.*\bfma\b", flags, re.M) else "this CPU has no FMA instructions"


# g++ options per floating-point contraction. "off": every a*b+c rounded twice, the plain C++
# rounding. "fast": a*b+c fused into one FMA wherever the compiler sees it, which is what nvcc
# does by default (-fmad=true) on the GPU; -mfma lets x86 emit them, and GCC forms FMAs only
# from -O2 (its widening_mul pass; -O1 emitted none, checked with objdump).
FP_CONTRACT = {"off": ["-ffp-contract=off"], "fast": ["-ffp-contract=fast", "-mfma"]}


def compile_kernel(source: str, name: str, workdir: Path = None, fp_contract: str = "off") -> Kernel:
    """Compile ``source`` (CUDA C) with g++ and return kernel ``name`` as a CPU-callable launcher.

    ``fp_contract``: "off" (plain C++ rounding) or "fast" (FMA contraction as nvcc does it)."""
    key = (source, name, fp_contract)
    if key in _CACHE:
        return _CACHE[key]
    params = kernel_params(source, name)
    decls = ", ".join(f"{ctype} {pname}" for ctype, pname in params)
    launcher = f"""
extern "C" void rd_launch_{name}(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                                  {decls}) {{
    gridDim = rd_dim3{{gx, gy, gz}};
    blockDim = rd_dim3{{bx, by, bz}};
    for (unsigned z = 0; z < gz; ++z) for (unsigned y = 0; y < gy; ++y) for (unsigned x = 0; x < gx; ++x) {{
        blockIdx = rd_dim3{{x, y, z}};
        for (unsigned tz = 0; tz < bz; ++tz) for (unsigned ty = 0; ty < by; ++ty) for (unsigned tx = 0; tx < bx; ++tx) {{
            threadIdx = rd_dim3{{tx, ty, tz}};
            {name}({", ".join(p for _, p in params)});
        }}
    }}
}}
"""
    text = PRELUDE + source + launcher
    flags = ["-std=c++14", "-O2", "-fPIC", "-shared", *FP_CONTRACT[fp_contract], "-Wno-unknown-pragmas"]
    digest = hashlib.sha256((text + " ".join(flags)).encode()).hexdigest()[:16]  # a new flag, a new build
    workdir = Path(workdir or tempfile.gettempdir()) / "rd_kernel_harness"
    workdir.mkdir(parents=True, exist_ok=True)
    lib_path = workdir / f"{name}_{digest}.so"
    if not lib_path.exists():
        src = workdir / f"{name}_{digest}.cpp"
        src.write_text(text)
        tmp = lib_path.with_suffix(f".{id(text)}.tmp")
        proc = subprocess.run(
            ["g++", *flags, "-o", str(tmp), str(src)], capture_output=True, text=True, timeout=120
        )
        if proc.returncode != 0:
            raise RuntimeError(f"g++ could not compile kernel {name}:\n{proc.stderr}")
        tmp.replace(lib_path)
    kernel = Kernel(ctypes.CDLL(str(lib_path)), name, params, lib_path)
    _CACHE[key] = kernel
    return kernel


def launch_2d(
    kernel: Callable[..., None], width: int, height: int, block: Tuple[int, int, int], *args: object
) -> None:
    """Launch over a width x height output with the grid rounded up, as the runtime does."""
    grid = ((width + block[0] - 1) // block[0], (height + block[1] - 1) // block[1], 1)
    kernel(grid, block, *args)
