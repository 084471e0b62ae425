"""Typed errors of the benchmark; the CLI prints their message without a traceback."""

from __future__ import annotations


class BenchmarkError(Exception):
    """Bad arguments or a failed preparation step (export, quantization, engine build)."""


class BackendUnavailable(BenchmarkError):
    """A backend cannot run on this machine; the message is the reason listed under skipped."""


class WorkerError(BenchmarkError):
    """A worker process died or broke the line protocol (the message carries its stderr tail)."""
