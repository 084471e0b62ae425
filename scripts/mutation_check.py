"""Mutation check: do the tests catch realistic one-line bugs?

    python scripts/mutation_check.py [--only WORD ...] [--skip WORD ...] [--start N] [--end N]
                                     [--timeout 600] [--keep] [--list]

Copies the working tree (tracked and untracked, not ignored files) to a temporary folder, checks
that the tests each mutation names pass there unmutated, then for every mutation replaces one
exact line, runs those tests (bounded in time) and restores the line. A mutation is
"caught" when a test fails, "MISSED" when they all pass, "stale" when its old line no longer
exists exactly once (the code moved on: update the line), "timeout" when the tests ran past
the limit. Prints a table and the mutation score; exit 1 when any mutation is missed.
Not part of `make test` (it runs some slow tests once per mutation): `make mutation`.
Each mutation names the few test files (or -k expressions) that should catch it, so a run
stays bounded; ``--list`` only checks that every old line still exists (no tests run).
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
    Mutation(
        "blur sigma 4 -> 2",
        "rd_edge/model/rd.py",
        "blur_sigma: float = 4.0",
        "blur_sigma: float = 2.0",
        ("tests/test_pinned.py", "-k", "blur"),
    ),
    Mutation(
        "blur border: reflect -> mirror (edge pixel not repeated)",
        "rd_edge/model/anomaly_map.py",
        "left = torch.matmul(x[..., 0:r], self.flip)",
        "left = torch.matmul(x[..., 1:r + 1], self.flip)",
        ("tests/model/test_model.py", "-k", "scipy"),
    ),
    Mutation(
        "align_corners True -> False",
        "rd_edge/model/anomaly_map.py",
        'self.cosine_distance(ft, fs, i), scale_factor=factor, mode="bilinear", align_corners=True',
        'self.cosine_distance(ft, fs, i), scale_factor=factor, mode="bilinear", align_corners=False',
        ("tests/model/test_model.py", "-k", "scipy"),
    ),
    Mutation(
        "sum over scales -> mean",
        "rd_edge/model/anomaly_map.py",
        "return total",
        "return total / len(teacher)",
        ("tests/model/test_model.py", "-k", "scipy"),
    ),
    Mutation(
        "score: max of the map -> mean",
        "rd_edge/model/anomaly_map.py",
        "score = F.adaptive_max_pool2d(amap, 1).reshape(-1)  # [N]",
        "score = F.adaptive_avg_pool2d(amap, 1).reshape(-1)  # [N]",
        ("tests/model/test_model.py", "-k", "scipy"),
    ),
    Mutation(
        "preprocess channel order BGR -> RGB dropped",
        "rd_edge/core/preprocess.py",
        'np.multiply(frame.transpose(2, 0, 1)[::-1], np.float32(1.0 / 255.0), out=out, casting="unsafe")',
        'np.multiply(frame.transpose(2, 0, 1), np.float32(1.0 / 255.0), out=out, casting="unsafe")',
        ("tests/runtime/test_detector.py", "-k", "direct_onnxruntime"),
    ),
    Mutation(
        "ImageNet mean in BGR order",
        "rd_edge/model/rd.py",
        "IMAGENET_MEAN = (0.485, 0.456, 0.406)",
        "IMAGENET_MEAN = (0.406, 0.456, 0.485)",
        ("tests/test_pinned.py", "-k", "imagenet or red"),
    ),
    Mutation(
        "resize flag: shrink with INTER_LINEAR instead of INTER_AREA",
        "rd_edge/core/preprocess.py",
        "return cv2.INTER_AREA if rule == RESIZE_AREA_LINEAR and shrinks else cv2.INTER_LINEAR",
        "return cv2.INTER_LINEAR",
        ("tests/runtime/test_cuda_preprocess.py",),
    ),
    Mutation(
        "threshold comparison > -> >=",
        "rd_edge/runtime/detector.py",
        "is_anomalous=score > self.threshold,",
        "is_anomalous=score >= self.threshold,",
        ("tests/runtime/test_detector.py", "-k", "threshold"),
    ),
    Mutation(
        "AUPRO FPR limit 0.3 -> 0.2",
        "rd_edge/metrics.py",
        "def aupro(masks: np.ndarray, maps: np.ndarray, fpr_limit: float = 0.3) -> float:",
        "def aupro(masks: np.ndarray, maps: np.ndarray, fpr_limit: float = 0.2) -> float:",
        ("tests/test_metrics.py", "-k", "aupro"),
    ),
    Mutation(
        "checkpoint loading with weights_only=False",
        "rd_edge/checkpoint.py",
        'data = torch.load(path, map_location="cpu", weights_only=True)',
        'data = torch.load(path, map_location="cpu", weights_only=False)',
        ("tests/test_pinned.py", "-k", "pickle"),
    ),
    Mutation(
        "BN folding: ConvTranspose folded as a Conv (shortcuts)",
        "export/fold.py",
        "seq[i] = fuse_conv_bn_eval(conv, bn, transpose=isinstance(conv, nn.ConvTranspose2d))",
        "seq[i] = fuse_conv_bn_eval(conv, bn, transpose=False)",
        ("tests/export/test_export.py", "-k", "parity and resnet18"),
    ),
    Mutation(
        "metadata threshold from the score statistics' max",
        "export/onnx_export.py",
        'threshold=data.get("threshold"),',
        'threshold=(data.get("score_stats") or {}).get("max"),',
        ("tests/export/test_export.py", "-k", "metadata_round_trip"),
    ),
    Mutation(
        "error records not delivered to the sinks",
        "rd_edge/runtime/pipeline.py",
        "sink.write(result)",
        "sink.write(result) if result.error is None else None",
        ("tests/runtime/test_cli.py", "-k", "broken_and_odd"),
    ),
    Mutation(
        "exit code 0 when inputs failed",
        "rd_edge/runtime/cli.py",
        "return exit_code(summary.errors, anomalies, args.fail_on_anomaly)",
        "return 0",
        ("tests/runtime/test_cli.py", "-k", "broken_and_odd"),
    ),
    Mutation(
        "teacher trains (BatchNorm statistics move)",
        "rd_edge/model/rd.py",
        "self.teacher.eval()  # the teacher's BatchNorm statistics never move",
        "pass",
        ("tests/model/test_model.py", "-k", "teacher_stays"),
    ),
    Mutation(
        "Adam betas dropped (default 0.9, 0.999)",
        "rd_edge/train.py",
        "self.optimizer = torch.optim.Adam(self.model.trainable_parameters(), lr=cfg.lr, betas=(0.5, 0.999))",
        "self.optimizer = torch.optim.Adam(self.model.trainable_parameters(), lr=cfg.lr)",
        ("tests/test_train.py", "-k", "bit_identical"),
    ),
    Mutation(
        "resume does not restore the batch-order RNG",
        "rd_edge/train.py",
        'self.generator.set_state(resume_state["generator"])',
        "pass",
        ("tests/test_train.py", "-k", "resumed_run_equals"),
    ),
    Mutation(
        "CUDA kernel writes channel c instead of 2 - c",
        "rd_edge/runtime/cuda_preprocess.py",
        "for (int c = 0; c < 3; ++c) dst[(2 - c) * plane + at] = v[c] * (1.f / 255.f);",
        "for (int c = 0; c < 3; ++c) dst[c * plane + at] = v[c] * (1.f / 255.f);",
        ("tests/runtime/test_cuda_preprocess.py",),
    ),
    Mutation(
        "batch order reversed inside a batch",
        "rd_edge/runtime/detector.py",
        "results.extend(self._predict_batch(items[start : start + self.batch_size]))",
        "results.extend(self._predict_batch(items[start : start + self.batch_size])[::-1])",
        ("tests/runtime/test_detector.py", "-k", "batch_equals"),
    ),
    # ---- issue 28: every module of rd_edge/, export/, cpp_examples/src/ and both CUDA kernels ----
    # rd_edge/core
    Mutation(
        "tile stride: halves of overlap * tile truncated",
        "rd_edge/core/tiling.py",
        "stride = max(1, tile - int(math.floor(overlap * tile + 0.5)))",
        "stride = max(1, tile - int(overlap * tile))",
        ("tests/core/test_tiling.py",),
    ),
    Mutation(
        "tile count: floor instead of ceil (last tile short of the border)",
        "rd_edge/core/tiling.py",
        "n = math.ceil((length - tile) / stride) + 1",
        "n = (length - tile) // stride + 1",
        ("tests/core/test_tiling.py",),
    ),
    Mutation(
        "linear window: slope 1 instead of 2",
        "rd_edge/core/tiling.py",
        "w = 1.0 - np.abs(2.0 * centres - 1.0)",
        "w = 1.0 - np.abs(centres - 0.5)",
        ("tests/core/test_tiling.py",),
    ),
    Mutation(
        "stitcher ignores the model's window (always cosine)",
        "rd_edge/core/tiling.py",
        "self.weight = window_2d(grid.tile, window)  # [th, tw]",
        "self.weight = window_2d(grid.tile)  # [th, tw]",
        ("tests/core/test_tiling.py",),
    ),
    Mutation(
        "tiled score: max of the map resized to the frame",
        "rd_edge/core/tiled_prediction.py",
        "results.append((resize_map(stitched, frame.shape[:2]), float(stitched.max())))",
        "results.append((resize_map(stitched, frame.shape[:2]), float(resize_map(stitched, frame.shape[:2]).max())))",
        ("tests/core/test_tiled_prediction.py",),
    ),
    Mutation(
        "tiled grid of the frame before fitting",
        "rd_edge/core/tiled_prediction.py",
        "grids = [self.stitcher(f.shape[:2]).grid for f in fitted]",
        "grids = [self.stitcher(f.shape[:2]).grid for f in frames]",
        ("tests/core/test_tiled_prediction.py",),
    ),
    Mutation(
        "scoring drops the last partial batch",
        "rd_edge/core/scoring.py",
        "starts: Sequence[int] = range(0, len(paths), batch_size)",
        "starts: Sequence[int] = range(0, len(paths) - len(paths) % batch_size, batch_size)",
        ("tests/core/test_scoring.py",),
    ),
    Mutation(
        "URL mask splits at the first @ (password with @ half shown)",
        "rd_edge/core/urls.py",
        'userinfo, _, hostport = parts.netloc.rpartition("@")',
        'userinfo, _, hostport = parts.netloc.partition("@")',
        ("tests/core/test_urls.py",),
    ),
    Mutation(
        "credentials stripped up to the first @ (wrong host)",
        "rd_edge/core/urls.py",
        'return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))',
        'return urlunsplit(parts._replace(netloc=parts.netloc.partition("@")[2]))',
        ("tests/core/test_urls.py",),
    ),
    Mutation(
        "infinite thresholds accepted",
        "rd_edge/core/thresholds.py",
        "if not math.isfinite(number):",
        "if math.isnan(number):",
        ("tests/core/test_thresholds.py",),
    ),
    Mutation(
        "pixel threshold of MODEL.thresholds.json ignored",
        "rd_edge/runtime/threshold_precedence.py",
        "(beside.pixel_threshold if beside else None, file_label),",
        "(None, file_label),",
        ("tests/runtime/test_threshold_precedence.py",),
    ),
    Mutation(
        "metadata pixel threshold read from the image threshold",
        "rd_edge/runtime/threshold_precedence.py",
        '(meta.pixel_threshold, "metadata"),',
        '(meta.threshold, "metadata"),',
        ("tests/runtime/test_threshold_precedence.py",),
    ),
    Mutation(
        "engine sidecar compares the TensorRT major version only",
        "rd_edge/core/sidecar.py",
        "if sidecar.tensorrt_version != tensorrt_version:",
        'if sidecar.tensorrt_version.split(".")[0] != tensorrt_version.split(".")[0]:',
        ("tests/runtime/backends/test_trt_runner_fake.py", "-k", "minor_version"),
    ),
    Mutation(
        "metadata from a newer format version accepted",
        "rd_edge/core/metadata.py",
        "if version > METADATA_FORMAT_VERSION:",
        "if version > METADATA_FORMAT_VERSION + 1:",
        ("tests/core/test_metadata.py",),
    ),
    Mutation(
        "resize rule: area when either side shrinks",
        "rd_edge/core/preprocess.py",
        "shrinks = src_hw[0] >= dst_hw[0] and src_hw[1] >= dst_hw[1]",
        "shrinks = src_hw[0] >= dst_hw[0] or src_hw[1] >= dst_hw[1]",
        ("tests/runtime/test_resize_rule.py", "-k", "no_side"),
    ),
    Mutation(
        "16-bit images truncated instead of rounded",
        "rd_edge/core/images.py",
        "return ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)",
        "return (image // 257).astype(np.uint8)",
        ("tests/data/test_images.py", "-k", "uint16"),
    ),
    Mutation(
        "JET ramp in RGB order (blue and red swapped)",
        "rd_edge/core/postprocess.py",
        "return np.floor(rgb[:, ::-1] * 255.0 + 0.5).astype(np.uint8)",
        "return np.floor(rgb * 255.0 + 0.5).astype(np.uint8)",
        ("tests/runtime/test_overlay.py",),
    ),
    Mutation(
        "ground truth outlined in white like the prediction",
        "rd_edge/core/postprocess.py",
        "GROUND_TRUTH_BGR = (255, 0, 255)  # magenta",
        "GROUND_TRUTH_BGR = (255, 255, 255)  # magenta",
        ("tests/runtime/test_overlay.py",),
    ),
    Mutation(
        "KS statistic: mean instead of max distance",
        "rd_edge/core/drift.py",
        "return float(np.max(np.abs(cdf_sample - cdf_ref)))",
        "return float(np.mean(np.abs(cdf_sample - cdf_ref)))",
        ("tests/core/test_drift.py",),
    ),
    Mutation(
        "review keeps the oldest verdict of an image",
        "rd_edge/core/review.py",
        "return max(marks, key=lambda m: (m.time, m.seq), default=None)",
        "return min(marks, key=lambda m: (m.time, m.seq), default=None)",
        ("tests/core/test_review.py",),
    ),
    Mutation(
        "review: a re-mark in the same millisecond not after the one before",
        "rd_edge/core/review.py",
        "now = max(now, datetime.strptime(previous.time, _TIME).replace(tzinfo=timezone.utc) + _MS)",
        "now = max(now, datetime.strptime(previous.time, _TIME).replace(tzinfo=timezone.utc))",
        ("tests/core/test_review.py",),
    ),
    Mutation(
        "same stem twice not seen as a clash",
        "rd_edge/core/files.py",
        "clashes = {s for s, count in Counter(stems).items() if count > 1}",
        "clashes = {s for s, count in Counter(stems).items() if count > 2}",
        ("tests/runtime/test_sources.py", "-k", "same_stem"),
    ),
    Mutation(
        "report counts errors as NG",
        "rd_edge/core/report.py",
        'n_ng = sum(r.verdict == "NG" for r in rows)',
        'n_ng = sum(r.verdict != "OK" for r in rows)',
        ("tests/core/test_report_counts.py",),
    ),
    Mutation(
        "integer options: the minimum itself refused",
        "rd_edge/core/cli.py",
        "if value < minimum:",
        "if value <= minimum:",
        ("tests/core/test_cli_shared.py", "-k", "minimum"),
    ),
    Mutation(
        "duplicate rd_edge metadata entries accepted",
        "rd_edge/core/onnx_props.py",
        "if len(values) > 1:",
        "if len(values) > 2:",
        ("tests/runtime/test_faults.py", "-k", "two_rd_edge"),
    ),
    Mutation(
        "duplicate rd_edge entries in an OpenVINO IR accepted",
        "rd_edge/core/ir_props.py",
        "if len(entries) > 1:",
        "if len(entries) > 2:",
        ("tests/runtime/backends/test_openvino_backend.py",),
    ),
    # rd_edge/runtime
    Mutation(
        "MQTT buffer full: the newest record dropped",
        "rd_edge/runtime/sinks/mqtt.py",
        "self._pending.popleft()",
        "self._pending.pop()",
        ("tests/runtime/test_mqtt.py", "-k", "buffer"),
    ),
    Mutation(
        "Prometheus counts every frame as an anomaly",
        "rd_edge/runtime/sinks/metrics.py",
        "self.anomalies.labels(source).inc(int(p.is_anomalous))",
        "self.anomalies.labels(source).inc()",
        ("tests/runtime/test_prometheus_sink.py",),
    ),
    Mutation(
        "evidence of an earlier run listed newest first (removed first)",
        "rd_edge/runtime/sinks/evidence.py",
        "return [(paths, size) for _, paths, size in sorted(entries, key=lambda e: e[0])]",
        "return [(paths, size) for _, paths, size in sorted(entries, key=lambda e: e[0], reverse=True)]",
        ("tests/runtime/test_evidence.py", "-k", "earlier_run or oldest_first"),
    ),
    Mutation(
        "Triton execute: every request gets the first request's predictions",
        "rd_edge/runtime/triton_python.py",
        "predictions[start : start + len(frames)]",
        "predictions[: len(frames)]",
        ("tests/runtime/test_triton_repo.py", "-k", "python_model or two_requests"),
    ),
    Mutation(
        "config.pbtxt: optional inputs not marked optional",
        "rd_edge/runtime/triton_repo.py",
        'parts.append("optional: true")',
        "pass",
        ("tests/runtime/test_triton_repo.py", "-k", "detector_config"),
    ),
    Mutation(
        "tile batch unbounded by DEFAULT_MAX_TILES",
        "rd_edge/runtime/tiled.py",
        "return max(1, min(DEFAULT_MAX_TILES, TILE_BATCH_BYTES // per_tile))",
        "return max(1, TILE_BATCH_BYTES // per_tile)",
        ("tests/runtime/test_tiled.py", "-k", "bounded"),
    ),
    Mutation(
        "CUDA tile kernel: R plane from the B byte",
        "rd_edge/runtime/cuda_tiles.py",
        "out[0] = px[2] * (1.f / 255.f);          // R",
        "out[0] = px[0] * (1.f / 255.f);          // R",
        ("tests/runtime/backends/test_cuda_tiles_fake.py",),
    ),
    Mutation(
        "CUDA preprocess kernel: no half-pixel centre",
        "rd_edge/runtime/cuda_preprocess.py",
        "float fx = (x + 0.5f) * scale_x - 0.5f;",
        "float fx = x * scale_x;",
        ("tests/runtime/test_cuda_preprocess.py", "-k", "real_kernel"),
    ),
    Mutation(
        "pipeline drains one source before the next",
        "rd_edge/runtime/pipeline.py",
        "self._next = (self._next + 1) % len(self._queues)",
        "self._next = self._next if q else (self._next + 1) % len(self._queues)",
        ("tests/runtime/test_pipeline.py", "-k", "share_batches or in_turn"),
    ),
    Mutation(
        "dropped frames of a stale frame not carried over",
        "rd_edge/runtime/pipeline.py",
        "frame.dropped_before += stale.dropped_before + 1",
        "frame.dropped_before += 1",
        ("tests/runtime/test_pipeline.py", "-k", "drops_stale or in_turn"),
    ),
    Mutation(
        "latency percentile rank over n instead of n - 1",
        "rd_edge/runtime/latency.py",
        'rank = q / 100.0 * (self.count - 1)  # numpy\'s "linear" rank; the bin holding it',
        'rank = q / 100.0 * self.count  # numpy\'s "linear" rank; the bin holding it',
        ("tests/runtime/test_pipeline.py", "-k", "latency_statistics or order_statistic"),
    ),
    Mutation(
        "video segments: frames per segment truncated",
        "rd_edge/runtime/sinks/console.py",
        "self.segment_frames = max(1, round(segment_seconds * self.fps)) if segment_seconds else None",
        "self.segment_frames = max(1, int(segment_seconds * self.fps)) if segment_seconds else None",
        ("tests/runtime/test_cli_endings.py", "-k", "seconds_times"),
    ),
    # rd_edge (torch side, data, calibration)
    Mutation(
        "false-alarm cut: ceil of the allowed count",
        "rd_edge/threshold_calibration.py",
        "allowed = math.floor(max_rate * good.size + 1e-9)",
        "allowed = math.ceil(max_rate * good.size - 1e-9)",
        ("tests/runtime/test_threshold_calibration.py", "-k", "false_alarms"),
    ),
    Mutation(
        "normal quantile over all scores (defects included)",
        "rd_edge/threshold_calibration.py",
        "return float(np.quantile(scores[~labels], q))",
        "return float(np.quantile(scores, q))",
        ("tests/runtime/test_threshold_calibration.py", "-k", "quantile or by_hand"),
    ),
    Mutation(
        "false-alarms method: pixel threshold not from masks",
        "rd_edge/threshold_calibration.py",
        'if method in ("f1", "zero-escape", "false-alarms") and has_masks:',
        'if method in ("f1", "zero-escape") and has_masks:',
        ("tests/runtime/test_threshold_calibration.py", "-k", "masks"),
    ),
    Mutation(
        "MVTec mask looked up with the image's extension (JPEG: none)",
        "rd_edge/data/mvtec.py",
        'Sample(path, defect_type, _mask_or_none(mask_dir / f"{path.stem}_mask.png")) for path in images',
        'Sample(path, defect_type, _mask_or_none(mask_dir / f"{path.stem}_mask{path.suffix}")) for path in images',
        ("tests/data/test_mvtec.py",),
    ),
    Mutation(
        "folder masks matched by stem only",
        "rd_edge/data/layouts.py",
        'relative = image.relative_to(self.defect_root).with_suffix("")',
        "relative = Path(image.stem)",
        ("tests/data/test_layouts.py", "-k", "relative_path"),
    ),
    Mutation(
        "training loss: 1 - cos summed over the batch",
        "rd_edge/model/rd.py",
        "loss = loss + (1.0 - cos).mean()",
        "loss = loss + (1.0 - cos).sum()",
        ("tests/model/test_model.py", "-k", "cosine_loss"),
    ),
    Mutation(
        "OCBE: 3 blocks for every backbone",
        "rd_edge/model/ocbe.py",
        "n_blocks = 3 if block.expansion == 4 else 2",
        "n_blocks = 3",
        ("tests/model/test_model.py", "-k", "parameter_count or rd4ad_blocks"),
    ),
    Mutation(
        "student: BasicBlocks for every backbone",
        "rd_edge/model/decoder.py",
        "self.block = DeBottleneck if spec.expansion == 4 else DeBasicBlock",
        "self.block = DeBasicBlock",
        ("tests/model/test_model.py", "-k", "parameter_count or rd4ad_blocks"),
    ),
    Mutation(
        "wide ResNet not widened",
        "rd_edge/model/resnet.py",
        "width = int(planes * (base_width / 64.0))  # wide ResNets widen only the 3x3 conv",
        "width = planes  # wide ResNets widen only the 3x3 conv",
        ("tests/model/test_model.py", "-k", "parameter_count or rd4ad_blocks"),
    ),
    # the packages' lazy public names
    Mutation(
        "rd_edge: unknown attributes are None instead of an error",
        "rd_edge/__init__.py",
        "raise AttributeError(f\"module 'rd_edge' has no attribute {name!r}\")",
        "return None",
        ("tests/test_public_api.py",),
    ),
    Mutation(
        "rd_edge.data: unknown attributes are None instead of an error",
        "rd_edge/data/__init__.py",
        "raise AttributeError(f\"module 'rd_edge.data' has no attribute {name!r}\")",
        "return None",
        ("tests/test_public_api.py",),
    ),
    Mutation(
        "rd_edge.runtime: Station imported from the wrong module",
        "rd_edge/runtime/__init__.py",
        '_ON_USE = {"Station": "rd_edge.runtime.station", "StationServer": "rd_edge.runtime.station"}',
        '_ON_USE = {"Station": "rd_edge.runtime.station.state", "StationServer": "rd_edge.runtime.station.state"}',
        ("tests/test_public_api.py",),
    ),
    # export
    Mutation(
        "fp16: every float->float Cast pair dropped, not only fp16 round trips",
        "export/half.py",
        "if first is None or _cast_to(first) != _FLOAT16:",
        "if first is None:",
        ("tests/export/test_graph_edits.py",),
    ),
    Mutation(
        "ConvTranspose rewrite ignores the group",
        "export/rewrite.py",
        'and int(a.get("group", 1)) == 1',
        "and True",
        ("tests/export/test_quantize.py", "-k", "only_where"),
    ),
    Mutation(
        "INT8 calibration: the first images instead of evenly spaced",
        "export/quantize.py",
        "picks = np.linspace(0, len(paths) - 1, max_images).round().astype(int)",
        "picks = np.arange(max_images)",
        ("tests/export/test_quantize.py", "-k", "spread_over or calibration"),
    ),
    Mutation(
        "metadata written twice (old entry kept)",
        "export/graph.py",
        "kept = [p for p in model.metadata_props if p.key != METADATA_KEY]",
        "kept = list(model.metadata_props)",
        ("tests/export/test_graph_edits.py", "-k", "metadata_again"),
    ),
    Mutation(
        "runtime parity passes when map OR score agree",
        "export/verify.py",
        "return RuntimeParity(name, dm, ds, dm <= tol and ds <= tol)",
        "return RuntimeParity(name, dm, ds, dm <= tol or ds <= tol)",
        ("tests/export/test_verify_images.py", "-k", "both_the_map"),
    ),
    Mutation(
        "score agreement ignores verdict flips",
        "export/accuracy.py",
        "return self.verdict_flips == 0 and self.max_abs_normalized <= self.bound",
        "return self.max_abs_normalized <= self.bound",
        ("tests/export/test_quantize.py", "-k", "agreement"),
    ),
    Mutation(
        "scope search bound: Spearman OR verdicts",
        "export/scope_search.py",
        "return spearman >= self.min_spearman and verdicts_changed <= self.max_verdict_changes",
        "return spearman >= self.min_spearman or verdicts_changed <= self.max_verdict_changes",
        ("tests/export/test_scope_search.py",),
    ),
    Mutation(
        "OpenVINO IR of every precision named model.xml",
        "export/openvino_export.py",
        'return model.with_name(f"{model.stem}.xml" if precision == "fp32" else f"{model.stem}_{precision}.xml")',
        'return model.with_name(f"{model.stem}.xml")',
        ("tests/export/test_openvino_export.py", "-k", "own_ir"),
    ),
    # cpp_examples/src
    Mutation(
        "C++ tile stride: halves truncated",
        "cpp_examples/src/tiling.cpp",
        "const int stride = std::max(1, tile - static_cast<int>(std::floor(overlap * tile + 0.5)));",
        "const int stride = std::max(1, tile - static_cast<int>(overlap * tile));",
        ("tests/cpp/test_cpp_tiled.py",),
    ),
    Mutation(
        "C++ window: centres over length + 1",
        "cpp_examples/src/tiling.cpp",
        "const double c = (i + 0.5) / length;",
        "const double c = (i + 0.5) / (length + 1);",
        ("tests/cpp/test_cpp_tiled.py",),
    ),
    Mutation(
        "C++ JET ramp: 1.0 instead of 1.5 plateau",
        "cpp_examples/src/postprocess.cpp",
        "const double v = std::min(std::max(1.5 - std::fabs(4.0 * x - centre), 0.0), 1.0);",
        "const double v = std::min(std::max(1.0 - std::fabs(4.0 * x - centre), 0.0), 1.0);",
        ("tests/cpp/test_cpp_example.py", "-k", "scores_match"),
    ),
    Mutation(
        "C++ resize rule: area when either side shrinks",
        "cpp_examples/src/preprocess.cpp",
        "const bool shrinks = frame_bgr.rows >= height_ && frame_bgr.cols >= width_;",
        "const bool shrinks = frame_bgr.rows >= height_ || frame_bgr.cols >= width_;",
        ("tests/cpp/test_cpp_example.py", "-k", "resize_rule or enlarged_on_the_other"),
    ),
    Mutation(
        "C++ 16-bit images truncated",
        "cpp_examples/src/image_io.cpp",
        "for (int x = 0; x < src.cols; ++x) d[x] = static_cast<uint8_t>((static_cast<uint32_t>(s[x]) + 128) / 257);",
        "for (int x = 0; x < src.cols; ++x) d[x] = static_cast<uint8_t>(s[x] / 257);",
        ("tests/cpp/test_cpp_example.py", "-k", "scores_match"),
    ),
    Mutation(
        "C++ verdict: score >= threshold",
        "cpp_examples/src/main.cpp",
        "const bool anomalous = out.score > threshold;",
        "const bool anomalous = out.score >= threshold;",
        ("tests/cpp/test_cpp_example.py", "-k", "threshold_from_flag or equal_to_the_threshold"),
    ),
    Mutation(
        "C++ latency percentile: lower neighbour only",
        "cpp_examples/src/latency.cpp",
        "const size_t hi = std::min(lo + 1, sorted.size() - 1);",
        "const size_t hi = lo;",
        ("tests/cpp/test_cpp_example.py", "-k", "latency_summary"),
    ),
    Mutation(
        "C++ tiling overlap 1.0 accepted",
        "cpp_examples/src/metadata.cpp",
        "if (!is_number(overlap) || overlap.real() < 0.0 || overlap.real() >= 1.0) {",
        "if (!is_number(overlap) || overlap.real() < 0.0 || overlap.real() > 1.0) {",
        ("tests/cpp/test_cpp_tiled.py", "-k", "outside_0_to_1"),
    ),
    Mutation(
        "C++ sidecar check ignores the SM count",
        "cpp_examples/src/metadata.cpp",
        "(built.sm_count > 0 && running.sm_count > 0 && built.sm_count != running.sm_count) ||",
        "false ||",
        ("tests/cpp/test_sidecar_check.py", "-k", "sms or same"),
    ),
    # rd_edge/runtime: sources, live, client, serve, cameras, sinks, station, backends
    Mutation(
        "--limit raises the frame count instead of capping it",
        "rd_edge/runtime/sources.py",
        "self.total = total if limit is None else (limit if total is None else min(total, limit))",
        "self.total = total if limit is None else (limit if total is None else max(total, limit))",
        ("tests/runtime/test_sources.py", "-k", "limit"),
    ),
    Mutation(
        "outage: frames lost counts the frame after it",
        "rd_edge/runtime/live.py",
        "self.frames_lost = max(0, int(round((end - self.start) * self.rate)) - 1)",
        "self.frames_lost = max(0, int(round((end - self.start) * self.rate)))",
        ("tests/runtime/test_live_sources.py", "-k", "frames_lost"),
    ),
    Mutation(
        "reconnection: the rate meter keeps the arrivals from before the outage",
        "rd_edge/runtime/live.py",
        "self._meter.restart()  # the next outage's rate: measured on this capture only",
        "pass",
        ("tests/runtime/test_live_sources.py", "-k", "rate_of_an_outage"),
    ),
    Mutation(
        "client groups frames of different sizes into one request",
        "rd_edge/runtime/client.py",
        "if runs and runs[-1][0].shape == frame.shape:",
        "if runs:",
        ("tests/runtime/test_triton_repo.py", "-k", "grouped"),
    ),
    Mutation(
        "rd-serve's numpy check: numpy 2 taken for 1",
        "rd_edge/runtime/serve.py",
        'if install.stub is not None and int(np.__version__.split(".")[0]) >= 2:',
        'if install.stub is not None and int(np.__version__.split(".")[0]) > 2:',
        ("tests/runtime/test_triton_repo.py", "-k", "numpy"),
    ),
    Mutation(
        "rd-build-engine: --precision fp32 by default (graph's precision lost)",
        "rd_edge/runtime/build_cli.py",
        "default=None,  # the graph's own precision",
        'default="fp32",  # the graph\'s own precision',
        ("tests/test_cli_help.py", "-k", "build_engine"),
    ),
    Mutation(
        "GigE frame ids: the gap itself counted as lost",
        "rd_edge/runtime/aravis.py",
        "return frame_id - last - 1",
        "return frame_id - last",
        ("tests/runtime/test_aravis.py", "-k", "counted_as_lost"),
    ),
    Mutation(
        "RGB8 camera frames not swapped to BGR",
        "rd_edge/runtime/pixel_formats.py",
        "flip = pixel_format == RGB8",
        "flip = pixel_format == BGR8",
        ("tests/runtime/test_aravis.py", "-k", "bayer_and_mono16"),
    ),
    Mutation(
        "records: score field holds the normalized score",
        "rd_edge/runtime/sinks/base.py",
        '"score": float(p.score),',
        '"score": float(p.normalized_score),',
        ("tests/runtime/test_cli.py", "-k", "records_match"),
    ),
    Mutation(
        "drift window takes NG frames too",
        "rd_edge/runtime/sinks/drift.py",
        "state = monitor.state if p is None else monitor.update(float(p.score), not p.is_anomalous)",
        "state = monitor.state if p is None else monitor.update(float(p.score), True)",
        ("tests/runtime/test_drift_sink.py", "-k", "own"),
    ),
    Mutation(
        "JSONL lines allow NaN (not JSON)",
        "rd_edge/runtime/sinks/jsonl.py",
        'self._file.write(json.dumps(result.record(), allow_nan=False) + "\\n")  # NaN is not JSON',
        'self._file.write(json.dumps(result.record()) + "\\n")  # NaN is not JSON',
        ("tests/runtime/test_faults.py", "-k", "not_json"),
    ),
    Mutation(
        "OPC UA: any password of the right user accepted",
        "rd_edge/runtime/sinks/opcua.py",
        "if username == self.security.user and password == self.security.password:",
        "if username == self.security.user:",
        ("tests/runtime/test_opcua.py", "-k", "credentials"),
    ),
    Mutation(
        "HTML report groups by stream only (folders lost)",
        "rd_edge/runtime/sinks/report.py",
        'return result.stream if str(parent) in ("", ".") else str(parent)',
        "return result.stream",
        ("tests/runtime/test_report.py",),
    ),
    Mutation(
        "trigger answered twice (future already done)",
        "rd_edge/runtime/sinks/trigger.py",
        "if future is not None and not future.done():",
        "if future is not None:",
        ("tests/runtime/test_opcua.py", "-k", "cancelled_trigger"),
    ),
    Mutation(
        "station fps counts frames, not intervals",
        "rd_edge/runtime/station/state.py",
        '"fps": (len(s.times) - 1) / span if span > 0 else None,',
        '"fps": len(s.times) / span if span > 0 else None,',
        ("tests/runtime/test_station.py", "-k", "counters_and_rate"),
    ),
    Mutation(
        "station serves any evidence file, not only .jpg",
        "rd_edge/runtime/station/app.py",
        'if path is None or path.suffix != ".jpg":',
        "if path is None:",
        ("tests/runtime/test_station.py", "-k", "overlays_only"),
    ),
    Mutation(
        "backend registry: re-registering a name refused",
        "rd_edge/runtime/backends/base.py",
        "if info.name != name and clash:",
        "if clash:",
        ("tests/runtime/backends/test_backend_registry.py",),
    ),
    Mutation(
        "onnxruntime: --threads 1 refused",
        "rd_edge/runtime/backends/onnxruntime.py",
        "if int(threads) < 1:",
        "if int(threads) <= 1:",
        ("tests/runtime/backends/test_ort_backend.py", "-k", "threads"),
    ),
    Mutation(
        "OpenVINO: --threads 1 refused",
        "rd_edge/runtime/backends/openvino.py",
        "if threads is not None and int(threads) < 1:",
        "if threads is not None and int(threads) <= 1:",
        ("tests/runtime/backends/test_openvino_backend.py", "-k", "knobs"),
    ),
    Mutation(
        "TensorRT: an int8 graph builds an fp16 engine",
        "rd_edge/runtime/backends/trt/builder.py",
        'if want != "int8":',
        'if want == "fp32":',
        ("tests/export/test_tensorrt.py",),
    ),
    Mutation(
        "TensorRT loader: install hint names the running version",
        "rd_edge/runtime/backends/trt/loader.py",
        "util.tensorrt_install_hint(sidecar.tensorrt_version),",
        "util.tensorrt_install_hint(util.tensorrt_version()),",
        ("tests/runtime/backends/test_trt_runner_fake.py", "-k", "minor_version"),
    ),
    Mutation(
        "TensorRT runner: a fixed-batch engine run with the partial batch",
        "rd_edge/runtime/backends/trt/runner.py",
        "run = self._profile_max if self._static_batch else n",
        "run = n",
        ("tests/runtime/backends/test_trt_runner_fake.py", "-k", "every_batch_size or batch_1"),
    ),
    Mutation(
        "TensorRT 11 plans named as the cu12 package",
        "rd_edge/runtime/backends/trt/util.py",
        'flavour = installed_tensorrt_flavour() or ("cu13" if major >= 11 else "cu12")',
        'flavour = installed_tensorrt_flavour() or ("cu13" if major > 11 else "cu12")',
        ("tests/runtime/backends/test_trt_backend.py", "-k", "version_mismatch"),
    ),
    Mutation(
        "CUDA preprocessing tried again after falling back",
        "rd_edge/runtime/preprocess_choice.py",
        "self.state, self.reason = PreprocessState.FELL_BACK, str(error)",
        "self.reason = str(error)",
        ("tests/runtime/backends/test_trt_runner_fake.py", "-k", "falls_back"),
    ),
    # rd_edge: command lines, errors, data, evaluation, tiles, weights
    Mutation(
        "rd-calibrate: a plain fraction read as a percentage",
        "rd_edge/cli/calibrate.py",
        "value = float(value_text) / (100.0 if percent else 1.0)",
        "value = float(value_text) / 100.0",
        ("tests/runtime/test_threshold_calibration.py", "-k", "max_false_alarms_reads"),
    ),
    Mutation(
        "--data with --masks accepted",
        "rd_edge/cli/_data.py",
        "if args.data is not None and (args.defect or args.masks):",
        "if args.data is not None and args.defect:",
        ("tests/test_cli_help.py", "-k", "do_not_go"),
    ),
    Mutation(
        "rd-eval writes no JSON when asked",
        "rd_edge/cli/evaluate.py",
        "if args.json_out:",
        "if False:",
        ("tests/data/test_layouts.py", "-k", "each_layout"),
    ),
    Mutation(
        "rd-edge demo-data: 8 good test images by default",
        "rd_edge/cli/main.py",
        "default=10,",
        "default=8,",
        ("tests/test_cli_help.py", "-k", "librarys_defaults"),
    ),
    Mutation(
        "rd-train: tile overlap 0.5 by default",
        "rd_edge/cli/train.py",
        "default=0.25,",
        "default=0.5,",
        ("tests/test_cli_help.py", "-k", "librarys_defaults"),
    ),
    Mutation(
        "choice lists give enum names (FP16) instead of values",
        "rd_edge/core/choices.py",
        "return [member.value for member in choice]",
        "return [member.name for member in choice]",
        ("tests/core/test_choices.py",),
    ),
    Mutation(
        "ConfigError no longer a ValueError",
        "rd_edge/core/errors.py",
        "class ConfigError(RdEdgeError, ValueError):",
        "class ConfigError(RdEdgeError):",
        ("tests/runtime/test_faults.py", "-k", "value_errors_for"),
    ),
    Mutation(
        "numpy 2 check: numpy 2.x taken for 1.x",
        "rd_edge/core/optional.py",
        'if int(numpy.__version__.split(".")[0]) >= 2:',
        'if int(numpy.__version__.split(".")[0]) > 2:',
        ("tests/runtime/test_cv2_numpy.py",),
    ),
    Mutation(
        "demo layouts overwrite a non-empty folder",
        "rd_edge/data/demo_layouts.py",
        "if any(folder.iterdir()):",
        "if False:",
        ("tests/data/test_layouts.py", "-k", "never_written_over"),
    ),
    Mutation(
        "synthetic defect drawn below the alpha cut (mask misses it)",
        "rd_edge/data/synthetic.py",
        "defective, mask = _apply_defect(surface, alpha, color)",
        "defective, mask = _apply_defect(surface, alpha * 0.5, color)",
        ("tests/data/test_synthetic.py", "-k", "mask"),
    ),
    Mutation(
        "teacher download: a hash mismatch kept in the cache",
        "rd_edge/model/weights.py",
        'if "hash" not in str(exc):',
        "if True:",
        ("tests/model/test_teacher_download.py", "-k", "hash"),
    ),
    Mutation(
        "eval report: escapes counted as flagged defects",
        "rd_edge/eval_report.py",
        'f"escapes {int((~flagged & ~good).sum())}/{int((~good).sum())}"',
        'f"escapes {int((flagged & ~good).sum())}/{int((~good).sum())}"',
        ("tests/runtime/test_report.py", "-k", "verdict_counts_by_hand"),
    ),
    Mutation(
        "rd-eval takes thresholds of other weights",
        "rd_edge/evaluate.py",
        "if found.checkpoint_sha256 == sha or (path in (own, legacy) and found.checkpoint_sha256 is None):",
        "if True:",
        ("tests/test_threshold_calibration_checkpoint.py", "-k", "only_thresholds_calibrated"),
    ),
    Mutation(
        "random training tiles never touch the bottom/right border",
        "rd_edge/tiles.py",
        "y = int(uy * (frame.shape[0] - tile + 1))  # uniform over every valid position",
        "y = int(uy * (frame.shape[0] - tile))  # uniform over every valid position",
        ("tests/test_train_tiles.py", "-k", "reaching_the_border"),
    ),
    # export
    Mutation(
        "rd-export: MODEL.ONNX not taken for an ONNX graph",
        "export/cli.py",
        'return path.suffix.lower() == ".onnx"',
        'return path.suffix == ".onnx"',
        ("tests/export/test_quantize.py", "-k", "suffix_case"),
    ),
    Mutation(
        "OpenVINO int8: scope pattern inverted (head quantized)",
        "export/openvino_int8.py",
        'return nncf.load().IgnoredScope(patterns=[f"(?!{inside}).*"], validate=False)',
        'return nncf.load().IgnoredScope(patterns=[f"({inside}).*"], validate=False)',
        ("tests/runtime/backends/test_openvino_backend.py", "-k", "int8"),
    ),
    # cpp_examples/src
    Mutation(
        "C++ --backend tensorrt alias dropped",
        "cpp_examples/src/model.cpp",
        'if (backend == "tensorrt") backend = "trt";',
        "",
        ("tests/cpp/test_cpp_example.py", "-k", "trt_alias"),
    ),
    Mutation(
        "C++ protobuf: key and value fields read alike",
        "cpp_examples/src/onnx_props.cpp",
        "src.read(field == kEntryKey ? key : value, read_length(src));",
        "src.read(field == kEntryValue ? key : value, read_length(src));",
        ("tests/cpp/test_cpp_example.py", "-k", "scores_match"),
    ),
    Mutation(
        "C++ --threshold nan accepted",
        "cpp_examples/src/options.cpp",
        "if ((errno == ERANGE || !std::isfinite(value)) && not_finite.empty()) not_finite = message;",
        "if (errno == ERANGE && not_finite.empty()) not_finite = message;",
        ("tests/cpp/test_cpp_example.py", "-k", "non_finite_threshold"),
    ),
    Mutation(
        "C++ sidecar_check: the SM count argument ignored",
        "cpp_examples/src/sidecar_check.cpp",
        'const rd::GpuIdentity running{argv[2], argv[3], std::stoi(argv[4]), 0, argc == 6 ? argv[5] : ""};',
        'const rd::GpuIdentity running{argv[2], argv[3], 0, 0, argc == 6 ? argv[5] : ""};',
        ("tests/cpp/test_sidecar_check.py",),
    ),
    Mutation(
        "C++ OpenCV DNN: the score read from the map's first pixel",
        "cpp_examples/src/backend_opencv.cpp",
        "return {cv::Mat(height_, width_, CV_32F, const_cast<float*>(map.ptr<float>())), score.ptr<float>()[0]};",
        "return {cv::Mat(height_, width_, CV_32F, const_cast<float*>(map.ptr<float>())), map.ptr<float>()[0]};",
        ("tests/cpp/test_cpp_example.py", "-k", "scores_match"),
    ),
]


AREAS = (
    ("rd_edge/runtime/cuda_", "CUDA kernel"),
    ("rd_edge/core/", "core"),
    ("rd_edge/runtime/sinks/", "sinks"),
    ("rd_edge/runtime/", "runtime"),
    ("rd_edge/model/", "model"),
    ("rd_edge/data/", "data"),
    ("rd_edge/", "torch side"),
    ("export/", "export"),
    ("cpp_examples/src/", "C++"),
)


def area(path: str) -> str:
    """The part of the code base a file belongs to (the table's area column)."""
    return next(name for prefix, name in AREAS if path.startswith(prefix))


def copy_tree(dest: Path) -> None:
    """Tracked and untracked (not ignored) files of the working tree, as they are now."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
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
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tree, env=test_env(tree), capture_output=True, text=True, check=True
    ).stdout.split()
    outside = [p for p in out if not Path(p).resolve().is_relative_to(tree.resolve())]
    if outside:
        raise SystemExit(f"the copy does not import its own code: {outside}")


def run_tests(tree: Path, tests: Sequence[str], timeout: float) -> Tuple[str, float, str]:
    """("pass" | "fail" | "timeout" | "error", seconds, last output line)."""
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-x",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
        "-W",
        "ignore",
        *tests,
    ]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, cwd=tree, env=test_env(tree), capture_output=True, text=True, timeout=timeout
        )
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
    p.add_argument("--start", type=int, default=1, help="begin with the N-th mutation of the list (1-based)")
    p.add_argument("--end", type=int, default=None, help="stop after the N-th mutation of the list")
    p.add_argument(
        "--skip", nargs="*", default=[], help="leave out the mutations whose name contains one of these"
    )
    p.add_argument("--list", action="store_true", help="list the mutations and stale lines; run no tests")
    args = p.parse_args(argv)
    mutations = [
        m
        for m in MUTATIONS[max(args.start, 1) - 1 : args.end]
        if (not args.only or any(w in m.name for w in args.only)) and not any(w in m.name for w in args.skip)
    ]
    if args.list:
        stale = 0
        for i, m in enumerate(mutations, 1):
            found = (
                locate((ROOT / m.path).read_text() if (ROOT / m.path).is_file() else "", m.old) is not None
            )
            stale += not found
            print(f"{i:3} {'ok   ' if found else 'STALE'} {area(m.path):11} {m.path:42} {m.name}")
        print(f"{len(mutations)} mutations over {len({m.path for m in mutations})} files, {stale} stale")
        return 1 if stale else 0

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
    print("| # | area | mutation | file | tests | result | s |")
    print("|---|---|---|---|---|---|---|")
    for i, (m, verdict, seconds, _) in enumerate(rows, 1):
        print(
            f"| {i} | {area(m.path)} | {m.name} | {m.path} | `{' '.join(m.tests)}` | {verdict} | {seconds:.0f} |"
        )
    caught = sum(1 for _, v, _, _ in rows if v == "caught")
    judged = sum(1 for _, v, _, _ in rows if v in ("caught", "MISSED"))
    print(
        f"\nmutation score: {caught}/{judged} caught"
        + "".join(
            f", {sum(1 for _, v, _, _ in rows if v == k)} {k}"
            for k in ("stale", "broken", "timeout", "error")
            if any(v == k for _, v, _, _ in rows)
        )
    )
    return 0 if all(v == "caught" for _, v, _, _ in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
