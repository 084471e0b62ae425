"""Process memory: current and peak resident set size, in MiB."""

from __future__ import annotations

import sys
from typing import Optional


def _proc_status_mb(field: str) -> Optional[float]:
    """A ``kB`` field of /proc/self/status (Linux), in MiB; None elsewhere."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def rss_mb() -> float:
    """Current RSS of this process."""
    current = _proc_status_mb("VmRSS")
    if current is not None:
        return current
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def peak_rss_mb() -> float:
    """High-water mark of this process's RSS since it started.

    Linux: VmHWM, the peak of this process image only. Not getrusage's ru_maxrss: exec keeps
    the maximum of the image it replaced, so a worker started by a 1 GB parent would report
    at least 1 GB. Elsewhere: ru_maxrss (bytes on macOS), or psutil's peak working set (Windows).
    """
    peak = _proc_status_mb("VmHWM")
    if peak is not None:
        return peak
    try:
        import resource
    except ImportError:
        import psutil

        return float(getattr(psutil.Process().memory_info(), "peak_wset", 0)) / 2**20
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / 2**20 if sys.platform == "darwin" else maxrss / 2**10
