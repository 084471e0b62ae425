"""`import rd_edge.runtime` and a whole rd-infer run on ONNX Runtime never import torch.

Runs in a fresh interpreter (this test process has torch loaded by other tests), with torch,
tensorrt and pycuda made unimportable so even a guarded `try: import torch` would show.
"""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import importlib.abc, json, sys

FORBIDDEN = ("torch", "tensorrt", "pycuda", "onnx")
attempts = []

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in FORBIDDEN:
            attempts.append(name)
            raise ImportError(f"{name} is blocked in the torch-free check")
        return None

sys.meta_path.insert(0, Block())
import rd_edge.runtime
after_import = sorted(m for m in sys.modules if m.split(".")[0] in FORBIDDEN)
# The runtime stands on rd_edge.core alone: no data loaders, no synthetic generator, no training CLI.
upstairs = sorted(m for m in sys.modules if m.startswith(("rd_edge.data", "rd_edge.cli", "rd_edge.model",
                                                         "rd_edge.train", "rd_edge.checkpoint")))
from rd_edge.runtime.cli import main
rc = main(sys.argv[1:])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in FORBIDDEN)
print(json.dumps({"rc": rc, "after_import": after_import, "upstairs": upstairs, "loaded": loaded,
                  "attempts": attempts}))
"""


def test_runtime_and_rd_infer_never_import_torch(tiny_onnx, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((20, 30, 3), 40 * i, np.uint8))
    records = tmp_path / "r.jsonl"
    args = [str(tiny_onnx), str(folder), "--json", str(records), "--out", str(tmp_path / "out"), "--quiet"]
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"rc": 0, "after_import": [], "upstairs": [], "loaded": [], "attempts": []}, result
    assert len(records.read_text().splitlines()) == 3
