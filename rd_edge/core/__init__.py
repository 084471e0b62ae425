"""The contract every part of rd-edge shares, on the ground floor: no torch, no onnx, nothing of ours.

Training, export, the runtime, the benchmarks and the C++ example all agree on what is here:

- :mod:`.errors`      the typed exceptions (one base class, RdEdgeError)
- :mod:`.metadata`    the ``rd_edge`` JSON that travels with every model, and its validation
- :mod:`.onnx_props`  reading that JSON out of an .onnx file without the onnx package
- :mod:`.sidecar`     the TensorRT engine's JSON sidecar, and the "built here?" check
- :mod:`.preprocess`  the input convention: BGR uint8 frame -> float32 RGB CHW in [0, 1]
- :mod:`.images`      image decoding and conversion to that one layout
- :mod:`.choices`     the one list of each choice (precisions, int8 targets/scopes, backends)
- :mod:`.optional`    optional heavy packages, declared once and imported on first use
- :mod:`.files`       sha256 and atomic writes
- :mod:`.cli`         what every command line shares (one-line errors, argparse types)

The layer rules (see ARCHITECTURE.md) are checked by import-linter in ``make test``.
"""
