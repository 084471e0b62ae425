"""TensorRT in one place, Polygraphy-style: build (builder), load (loader), run (runner), util.

Building an engine is a runtime capability: plans must be built on the machine that runs them
(a Jetson has no torch), so ``rd-export --engine`` and the on-device ``rd-build-engine`` both
call :func:`builder.build_engine`. Importing this package registers the "trt" backend and
imports neither tensorrt nor pycuda.
"""

from rd_edge.core.sidecar import EngineSidecar, check_compatible, sidecar_path

from .loader import load_tensorrt
from .runner import TensorRTRunner
from .util import gpu_identity, import_pycuda_driver, import_tensorrt, probe, tensorrt_version

__all__ = [
    "EngineSidecar",
    "TensorRTRunner",
    "check_compatible",
    "gpu_identity",
    "import_pycuda_driver",
    "import_tensorrt",
    "load_tensorrt",
    "probe",
    "sidecar_path",
    "tensorrt_version",
]
