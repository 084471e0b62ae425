"""Mutation check: do the tests catch realistic one-line bugs?

    python scripts/mutation_check.py [--only NAME ...] [--timeout 600] [--keep]

Copies the working tree (tracked and untracked, not ignored files) to a temporary folder, checks
that the tests each mutation names pass there unmutated, then for every mutation replaces one
exact line, runs those tests (bounded in time) and restores the line. A mutation is
"caught" when a test fails, "MISSED" when they all pass, "stale" when its old line no longer
exists exactly once (the code moved on: update the line), "timeout" when the tests ran past
the limit. Prints a table and the mutation score; exit 1 when any mutation is missed.
Not part of `make test` (it runs some slow tests once per mutation).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    """Replace the line ``old`` (stripped comparison, whole line) of ``path`` with ``new``."""

    name: str
    path: str
    old: str
    new: str
    tests: Tuple[str, ...]  # pytest arguments: files, node ids, "-k" expressions


MUTATIONS: List[Mutation] = [
    Mutation("blur sigma 4 -> 2", "rd_edge/model/rd.py",
             "blur_sigma: float = 4.0", "blur_sigma: float = 2.0",
             ("tests/test_pinned.py", "-k", "blur")),
    Mutation("blur border: reflect -> mirror (edge pixel not repeated)", "rd_edge/model/anomaly_map.py",
             "left = torch.matmul(x[..., 0:r], self.flip)", "left = torch.matmul(x[..., 1:r + 1], self.flip)",
             ("tests/model/test_model.py", "-k", "scipy")),
    Mutation("align_corners True -> False", "rd_edge/model/anomaly_map.py",
             'mode="bilinear", align_corners=True)', 'mode="bilinear", align_corners=False)',
             ("tests/model/test_model.py", "-k", "scipy")),
    Mutation("sum over scales -> mean", "rd_edge/model/anomaly_map.py",
             "return total", "return total / len(teacher)",
             ("tests/model/test_model.py", "-k", "scipy")),
    Mutation("score: max of the map -> mean", "rd_edge/model/anomaly_map.py",
             "score = F.adaptive_max_pool2d(amap, 1).reshape(-1)  # [N]",
             "score = F.adaptive_avg_pool2d(amap, 1).reshape(-1)  # [N]",
             ("tests/model/test_model.py", "-k", "scipy")),
    Mutation("preprocess channel order BGR -> RGB dropped", "rd_edge/core/preprocess.py",
             'np.multiply(frame.transpose(2, 0, 1)[::-1], np.float32(1.0 / 255.0), out=out, casting="unsafe")',
             'np.multiply(frame.transpose(2, 0, 1), np.float32(1.0 / 255.0), out=out, casting="unsafe")',
             ("tests/runtime/test_detector.py", "-k", "direct_onnxruntime")),
    Mutation("ImageNet mean in BGR order", "rd_edge/model/rd.py",
             "IMAGENET_MEAN = (0.485, 0.456, 0.406)", "IMAGENET_MEAN = (0.406, 0.456, 0.485)",
             ("tests/test_pinned.py", "-k", "imagenet or red")),
    Mutation("resize flag: shrink with INTER_LINEAR instead of INTER_AREA", "rd_edge/core/preprocess.py",
             "return cv2.INTER_AREA if rule == RESIZE_AREA_LINEAR and shrinks else cv2.INTER_LINEAR",
             "return cv2.INTER_LINEAR",
             ("tests/runtime/test_cuda_preprocess.py",)),
    Mutation("threshold comparison > -> >=", "rd_edge/runtime/detector.py",
             "return Prediction(score=score, normalized_score=normalized, is_anomalous=score > self.threshold,",
             "return Prediction(score=score, normalized_score=normalized, is_anomalous=score >= self.threshold,",
             ("tests/runtime/test_detector.py", "-k", "threshold")),
    Mutation("AUPRO FPR limit 0.3 -> 0.2", "rd_edge/metrics.py",
             "def aupro(masks: np.ndarray, maps: np.ndarray, fpr_limit: float = 0.3) -> float:",
             "def aupro(masks: np.ndarray, maps: np.ndarray, fpr_limit: float = 0.2) -> float:",
             ("tests/test_metrics.py", "-k", "aupro")),
    Mutation("checkpoint loading with weights_only=False", "rd_edge/checkpoint.py",
             'data = torch.load(path, map_location="cpu", weights_only=True)',
             'data = torch.load(path, map_location="cpu", weights_only=False)',
             ("tests/test_pinned.py", "-k", "pickle")),
    Mutation("BN folding: ConvTranspose folded as a Conv (shortcuts)", "export/fold.py",
             "seq[i] = fuse_conv_bn_eval(conv, bn, transpose=isinstance(conv, nn.ConvTranspose2d))",
             "seq[i] = fuse_conv_bn_eval(conv, bn, transpose=False)",
             ("tests/export/test_export.py", "-k", "parity and resnet18")),
    Mutation("metadata threshold from the score statistics' max", "export/onnx_export.py",
             'backbone=cfg.backbone, image_size=list(cfg.image_size), threshold=data.get("threshold"),',
             'backbone=cfg.backbone, image_size=list(cfg.image_size), threshold=(data.get("score_stats") or {}).get("max"),',
             ("tests/export/test_export.py", "-k", "metadata_round_trip")),
    Mutation("error records not delivered to the sinks", "rd_edge/runtime/pipeline.py",
             "sink.write(result)", "sink.write(result) if result.error is None else None",
             ("tests/runtime/test_cli.py", "-k", "broken_and_odd")),
    Mutation("exit code 0 when inputs failed", "rd_edge/runtime/cli.py",
             "return exit_code(summary.errors, anomalies, args.fail_on_anomaly)", "return 0",
             ("tests/runtime/test_cli.py", "-k", "broken_and_odd")),
    Mutation("teacher trains (BatchNorm statistics move)", "rd_edge/model/rd.py",
             "self.teacher.eval()  # the teacher's BatchNorm statistics never move", "pass",
             ("tests/model/test_model.py", "-k", "teacher_stays")),
    Mutation("Adam betas dropped (default 0.9, 0.999)", "rd_edge/train.py",
             "self.optimizer = torch.optim.Adam(self.model.trainable_parameters(), lr=cfg.lr, betas=(0.5, 0.999))",
             "self.optimizer = torch.optim.Adam(self.model.trainable_parameters(), lr=cfg.lr)",
             ("tests/test_train.py", "-k", "bit_identical")),
    Mutation("resume does not restore the batch-order RNG", "rd_edge/train.py",
             'self.generator.set_state(resume_state["generator"])', "pass",
             ("tests/test_train.py", "-k", "resumed_run_equals")),
    Mutation("CUDA kernel writes channel c instead of 2 - c", "rd_edge/runtime/cuda_preprocess.py",
             "for (int c = 0; c < 3; ++c) dst[(2 - c) * plane + at] = v[c] * (1.f / 255.f);",
             "for (int c = 0; c < 3; ++c) dst[c * plane + at] = v[c] * (1.f / 255.f);",
             ("tests/runtime/test_cuda_preprocess.py",)),
    Mutation("batch order reversed inside a batch", "rd_edge/runtime/detector.py",
             "results.extend(self._predict_batch(frames[start:start + self.batch_size]))",
             "results.extend(self._predict_batch(frames[start:start + self.batch_size])[::-1])",
             ("tests/runtime/test_detector.py", "-k", "batch_equals")),
]


def copy_tree(dest: Path) -> None:
    """Tracked and untracked (not ignored) files of the working tree, as they are now."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    for rel in filter(None, (p.decode() for p in listed)):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    # rd_export is export/ under another name (a package-dir mapping the editable install
    # resolves to the original tree): a link makes the copy's export/ the one imported.
    (dest / "rd_export").symlink_to("export", target_is_directory=True)


def test_env(tree: Path) -> Dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTEST_ADDOPTS", None)
    return env


def check_imports(tree: Path) -> None:
    code = "import rd_edge, rd_export; print(rd_edge.__file__); print(rd_export.__file__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=tree, env=test_env(tree), capture_output=True,
                         text=True, check=True).stdout.split()
    outside = [p for p in out if not Path(p).resolve().is_relative_to(tree.resolve())]
    if outside:
        raise SystemExit(f"the copy does not import its own code: {outside}")


def run_tests(tree: Path, tests: Sequence[str], timeout: float) -> Tuple[str, float, str]:
    """("pass" | "fail" | "timeout" | "error", seconds, last output line)."""
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
           "-W", "ignore", *tests]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=tree, env=test_env(tree), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - t0, ""
    seconds = time.perf_counter() - t0
    last = (proc.stdout.strip().splitlines() or [""])[-1]
    if proc.returncode == 0:
        return "pass", seconds, last
    if proc.returncode == 1:
        return "fail", seconds, last
    return "error", seconds, f"pytest exit {proc.returncode}: {last}"  # 2 interrupted, 4 usage, 5 none


def locate(text: str, old: str) -> Optional[int]:
    """Index of the one line whose stripped text is ``old``; None unless exactly one."""
    hits = [i for i, line in enumerate(text.splitlines(keepends=True)) if line.strip() == old.strip()]
    return hits[0] if len(hits) == 1 else None


def mutate(path: Path, old: str, new: str) -> Optional[str]:
    """Apply the mutation (same indentation); returns the original text, None when stale."""
    text = path.read_text() if path.is_file() else ""
    index = locate(text, old)
    if index is None:
        return None
    lines = text.splitlines(keepends=True)
    line = lines[index]
    indent = line[: len(line) - len(line.lstrip())]
    ending = "\n" if line.endswith("\n") else ""
    lines[index] = indent + new.strip() + ending
    path.write_text("".join(lines))
    return text


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="*", help="run the mutations whose name contains one of these words")
    p.add_argument("--timeout", type=float, default=600, help="seconds per test run (default 600)")
    p.add_argument("--keep", action="store_true", help="keep the temporary copy")
    args = p.parse_args(argv)
    mutations = [m for m in MUTATIONS if not args.only or any(w in m.name for w in args.only)]

    tmp = Path(tempfile.mkdtemp(prefix="rd_mutation_"))
    tree = tmp / "tree"
    tree.mkdir()
    rows = []
    try:
        copy_tree(tree)
        check_imports(tree)
        baseline: Dict[Tuple[str, ...], str] = {}
        for m in mutations:
            target = tree / m.path
            if locate(target.read_text() if target.is_file() else "", m.old) is None:
                rows.append((m, "stale", 0.0, f"line not found exactly once in {m.path}"))
                print(f"{'stale':8} {m.name}", flush=True)
                continue
            if m.tests not in baseline:  # the tests must pass before they can catch anything
                status, seconds, last = run_tests(tree, m.tests, args.timeout)
                baseline[m.tests] = status
                if status != "pass":
                    print(f"baseline {' '.join(m.tests)}: {status} {last}", flush=True)
            if baseline[m.tests] != "pass":
                rows.append((m, "broken", 0.0, "the tests do not pass unmutated"))
                continue
            original = mutate(target, m.old, m.new)
            try:
                status, seconds, last = run_tests(tree, m.tests, args.timeout)
            finally:
                target.write_text(original)
            verdict = {"fail": "caught", "pass": "MISSED"}.get(status, status)
            rows.append((m, verdict, seconds, last))
            print(f"{verdict:8} {m.name} ({seconds:.0f} s)", flush=True)
    finally:
        if args.keep:
            print(f"copy kept in {tree}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    print()
    print("| # | mutation | file | tests | result | s |")
    print("|---|---|---|---|---|---|")
    for i, (m, verdict, seconds, _) in enumerate(rows, 1):
        print(f"| {i} | {m.name} | {m.path} | `{' '.join(m.tests)}` | {verdict} | {seconds:.0f} |")
    caught = sum(1 for _, v, _, _ in rows if v == "caught")
    judged = sum(1 for _, v, _, _ in rows if v in ("caught", "MISSED"))
    print(f"\nmutation score: {caught}/{judged} caught"
          + "".join(f", {sum(1 for _, v, _, _ in rows if v == k)} {k}"
                    for k in ("stale", "broken", "timeout", "error") if any(v == k for _, v, _, _ in rows)))
    return 0 if all(v == "caught" for _, v, _, _ in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
