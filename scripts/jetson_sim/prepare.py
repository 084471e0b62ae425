"""The workstation's half of `make jetson-sim`: the files a user copies to the device.

Run with the main venv (torch): a demo dataset, a tiny model trained for two steps, exported,
calibrated (its .thresholds.json beside it); a tiled model; a short video; and this machine's scores
of every input (reference.json), which the device's scores must match.

Usage: python prepare.py OUT --bin .venv/bin
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path

import cv2

# ONNX Runtime 1.11.1 is the newest aarch64 wheel that accepts Debian 11's numpy 1.19.5; it runs
# opsets up to 15 (TensorRT on a real Jetson takes rd-export's default, 17).
OPSET = 15
SIZE = 64


def run(*cmd: str) -> str:
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout


def scores(jsonl: Path, key_root: Path) -> dict[str, float]:
    """{source relative to key_root (or frame number): score} of an rd-infer --json file."""
    out = {}
    for line in jsonl.read_text().splitlines():
        rec = json.loads(line)
        source = rec["source"]
        key = str(Path(source).relative_to(key_root)) if source.startswith(str(key_root)) else source
        out[key] = rec["score"]
    return out


def model(bin_dir: Path, data: Path, out: Path, *train_args: str) -> Path:
    """Train two steps (random teacher), export at OPSET; returns the .onnx path."""
    out.mkdir(parents=True)
    run(
        str(bin_dir / "rd-train"),
        "--data",
        str(data),
        "--backbone",
        "resnet18",
        "--image-size",
        str(SIZE),
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--teacher-weights",
        "none",
        "--quiet",
        "--out",
        str(out / "model.pt"),
        *train_args,
    )
    run(
        str(bin_dir / "rd-export"),
        str(out / "model.pt"),
        "-o",
        str(out / "model.onnx"),
        "--opset",
        str(OPSET),
    )
    (out / "model.pt").unlink()  # the device gets the graph only
    return out / "model.onnx"


def video(images: list[Path], path: Path) -> None:
    """An MJPG .avi of the images (the OpenCV of every distribution decodes it)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (SIZE, SIZE))
    for image in images:
        writer.write(cv2.resize(cv2.imread(str(image)), (SIZE, SIZE)))
    writer.release()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out", type=Path)
    p.add_argument("--bin", type=Path, required=True)
    args = p.parse_args()
    out: Path = args.out
    bin_dir: Path = args.bin
    out.mkdir(parents=True)
    demo = out / "demo"
    run(
        str(bin_dir / "rd-edge"),
        "demo-data",
        str(demo),
        "--categories",
        "weave",
        "--image-size",
        str(SIZE),
        "--n-train",
        "8",
        "--n-test-good",
        "3",
        "--n-test-per-defect",
        "1",
    )
    category = demo / "weave"
    plain = model(bin_dir, category, out / "plain")
    run(str(bin_dir / "rd-calibrate"), str(plain), "--data", str(category), "--method", "f1", "--quiet")
    # Larger frames for the tiled model: tiles of SIZE from 1.5*SIZE images (2 x 2 tiles).
    big = out / "demo-big"
    run(
        str(bin_dir / "rd-edge"),
        "demo-data",
        str(big),
        "--categories",
        "weave",
        "--image-size",
        str(SIZE * 3 // 2),
        "--n-train",
        "4",
        "--n-test-good",
        "1",
        "--n-test-per-defect",
        "1",
        "--defect-scale",
        "small",
    )
    tiled = model(bin_dir, big / "weave", out / "tiled", "--tile", str(SIZE))

    test = out / "test"
    shutil.copytree(category / "test", test)
    big_test = out / "test-big"  # one good and one defective frame: emulated tiles are slow
    for kind in ("good", "scratch"):
        shutil.copytree(big / "weave" / "test" / kind, big_test / kind)
    shutil.rmtree(demo)
    shutil.rmtree(big)
    images = sorted(test.rglob("*.png"))
    video(images, out / "line.avi")

    reference = {}
    for name, onnx, source, root in (
        ("folder", plain, test, test),
        ("video", plain, out / "line.avi", out),
        ("tiled", tiled, big_test, big_test),
    ):
        jsonl = out / f"reference-{name}.jsonl"
        run(
            str(bin_dir / "rd-infer"),
            str(onnx),
            str(source),
            "--json",
            str(jsonl),
            "--quiet",
            "--drift-window",
            "0",
        )  # as checks.py: too few normal scores below the threshold
        reference[name] = scores(jsonl, root)
        jsonl.unlink()
    reference["thresholds"] = json.loads(Path(f"{plain}.thresholds.json").read_text())  # rd-calibrate's
    (out / "reference.json").write_text(json.dumps(reference, indent=1))


if __name__ == "__main__":
    main()
