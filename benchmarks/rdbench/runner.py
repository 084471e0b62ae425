"""The parent side of the worker protocol: one process per job, a shared progress bar."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from . import cpuload
from .errors import WorkerError
from .results import Job, Measurement, Skipped
from .system import cpu_count
from .worker import PREFIX

BENCH_DIR = Path(__file__).resolve().parent.parent  # benchmarks/: where `rdbench` is importable
STDERR_TAIL = 2000  # characters of a failed worker's stderr quoted in the error


def calls_of(job: Job) -> int:
    """Pipeline calls a job makes: what the progress bar counts."""
    return len(job.batch_sizes) * (job.warmup + job.iters)


def _worker_env() -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH_DIR), env.get("PYTHONPATH")]))
    return env


def _stderr_tail(stderr: Any) -> str:
    stderr.seek(0)
    text = stderr.read().decode("utf-8", "replace").strip()
    return text[-STDERR_TAIL:] or "(no stderr)"


def run_job(job: Job, bar: Optional[Any] = None) -> Tuple[List[Measurement], Optional[Skipped]]:
    """Run ``job`` in a fresh ``python -m rdbench.worker``; its measurements or a skip.

    WorkerError (with the worker's stderr tail) when the worker crashes.
    """
    ticks = 0
    measurements: List[Measurement] = []
    skipped: Optional[Skipped] = None
    before = cpuload.snapshot()
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rdbench.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=_worker_env(),
            text=True,
        )
        proc.stdin.write(json.dumps(job.to_dict()))
        proc.stdin.close()
        for line in proc.stdout:
            if not line.startswith(PREFIX):
                continue  # a library printing on stdout
            message = json.loads(line[len(PREFIX) :])
            if message["type"] == "tick":
                ticks += 1
                if bar is not None:
                    bar.update(1)
            elif message["type"] == "result":
                measurements.append(Measurement(**message["measurement"]))
            elif message["type"] == "skip":
                skipped = Skipped(job.skip_name, message["reason"])
        code = proc.wait()
        if code != 0:
            raise WorkerError(f"the {job.label} worker exited with code {code}:\n{_stderr_tail(stderr)}")
    # How busy the rest of the machine was during this job: a row measured next to other
    # work is slower than it should be, and the report must show it.
    quiet = cpuload.other_load(before, cpuload.snapshot(), cpu_count())
    for m in measurements:
        m.details.update(quiet)
    if bar is not None:
        bar.update(calls_of(job) - ticks)  # a skipped job's calls count as done
    return measurements, skipped


def run_jobs(
    jobs: Sequence[Job], progress: bool = True, rounds: int = 1
) -> Tuple[List[Measurement], List[Skipped]]:
    """Every job, one after the other (never in parallel: they would share the cores), in
    ``rounds`` interleaved rounds (A B C, A B C, ...), each job's ``iters`` split over them, so a
    shared host's drift hits every row alike. Measurements carry their round in details["round"];
    results.merge_rounds joins them. A job that skips or crashes is not tried again."""
    from tqdm import tqdm

    rounds = max(1, min(rounds, min((j.iters for j in jobs), default=1)))
    measurements: List[Measurement] = []
    skipped: List[Skipped] = []
    done_with: set = set()
    with tqdm(
        total=sum(calls_of(j) + (rounds - 1) * len(j.batch_sizes) * j.warmup for j in jobs),
        unit="call",
        disable=not progress,
        dynamic_ncols=True,
    ) as bar:
        for r in range(rounds):
            for i, job in enumerate(jobs):
                if i in done_with:
                    continue
                part = replace(job, iters=job.iters // rounds + (1 if r < job.iters % rounds else 0))
                bar.set_description(f"{job.label} (round {r + 1}/{rounds})")
                try:
                    done, skip = run_job(part, bar)
                except WorkerError as exc:
                    # A crash is a bug to see, but it must not throw away the other rows' minutes.
                    print(f"latency.py: warning: {exc}", file=sys.stderr)
                    done, skip = [], Skipped(job.skip_name, f"worker failed: {exc}")
                for m in done:
                    m.details["round"] = r
                measurements.extend(done)
                if skip is not None:
                    skipped.append(skip)
                    done_with.add(i)
    return measurements, skipped
