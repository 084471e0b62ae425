"""How quiet the machine was while a job ran: CPU time used by everything but the benchmark.

The load average cannot tell: it counts the benchmark's own threads. Instead, the busy time of
all CPUs (/proc/stat) minus the CPU time of this process and its finished children (getrusage)
over the same wall time is what other processes took; ``steal`` is what the hypervisor gave
to other guests. Linux only; elsewhere the figures are None.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Dict, Optional


@dataclass
class CpuSnapshot:
    wall: float
    busy_s: float  # all CPUs: user + nice + system + irq + softirq
    steal_s: float
    own_s: float  # this process and its reaped children: user + system


def _proc_stat() -> Optional[Dict[str, float]]:
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:]
    except OSError:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) / tick for v in fields[:8])
    return {"busy": user + nice + system + irq + softirq, "steal": steal}


def snapshot() -> Optional[CpuSnapshot]:
    """Counters now; None where /proc/stat or resource is missing."""
    stat = _proc_stat()
    try:
        import resource
    except ImportError:
        return None
    if stat is None:
        return None
    own = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        own += usage.ru_utime + usage.ru_stime
    return CpuSnapshot(time.monotonic(), stat["busy"], stat["steal"], own)


def other_load(
    before: Optional[CpuSnapshot], after: Optional[CpuSnapshot], cpus: int
) -> Dict[str, Optional[float]]:
    """Percent of the machine's CPU capacity other processes (and other guests) used in between."""
    if before is None or after is None or after.wall <= before.wall:
        return {"other_cpu_pct": None, "steal_pct": None}
    capacity = (after.wall - before.wall) * cpus
    other = max(0.0, (after.busy_s - before.busy_s) - (after.own_s - before.own_s))
    return {
        "other_cpu_pct": round(100.0 * other / capacity, 1),
        "steal_pct": round(100.0 * (after.steal_s - before.steal_s) / capacity, 1),
    }
