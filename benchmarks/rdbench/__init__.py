"""Building blocks of ``benchmarks/latency.py``.

- :mod:`.frames`: the deterministic uint8 BGR input frames every backend sees.
- :mod:`.pipelines`: one small class per backend behind the :class:`~.pipelines.Pipeline`
  interface (frames in, score and map on the host out, per-stage times).
- :mod:`.worker`: runs one backend in its own process (so its peak RSS is its own);
  :mod:`.runner` starts the workers and drives the progress bar.
- :mod:`.memory`: current and peak RSS; :mod:`.cpuload`: CPU time other processes took.
- :mod:`.results`: the measurement and result dataclasses and the statistics.
- :mod:`.plan`: ``--backends`` -> jobs to run and backends skipped with a reason.
- :mod:`.artifacts`: the ONNX / int8 / engine files a run needs, made through the public APIs.
- :mod:`.system`: machine description, model GFLOP count, fp32 peak GFLOP/s.
- :mod:`.writers`: JSON, Markdown and PNG outputs.

Modules that run in a backend's worker import torch only for the torch backends, so the
ONNX Runtime and TensorRT workers measure a torch-free process, as deployed.
"""
