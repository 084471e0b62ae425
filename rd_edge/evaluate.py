"""Evaluate a checkpoint on the test split of a dataset (any layout rd_edge.data reads)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from tqdm import tqdm

from .checkpoint import load_checkpoint
from .core.cli import show_progress
from .core.files import output_keys
from .core.postprocess import render_overlay, resize_map, score_scale
from .core.scoring import ScoreRun, score_images
from .data import open_dataset, read_image, read_mask
from .data.mvtec import Sample, read_sample_masks
from .metrics import evaluate
from .tiles import predict_tiled
from .train import pick_device


def torch_run(model: torch.nn.Module, device: torch.device) -> ScoreRun:
    """The fused torch module as a batch callable: float32 [n,3,h,w] -> (maps [n,1,h,w], scores [n])."""

    @torch.no_grad()
    def run(batch: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        amap, score = model(torch.from_numpy(batch).to(device))
        return amap.cpu().numpy(), score.cpu().numpy()

    return run


def predict_samples(
    model: torch.nn.Module,
    paths: List[Path],
    device: torch.device,
    batch_size: int = 8,
    progress: bool = True,
) -> Tuple[np.ndarray, np.ndarray]:
    """Anomaly maps [N,H,W] at the model size and scores [N] for image files."""
    bar = None if not show_progress(progress) else (lambda starts: tqdm(starts, desc="eval", unit="batch"))
    return score_images(paths, model.config, torch_run(model, device), batch_size, bar)


def _predict_full_resolution(
    model: torch.nn.Module, paths: List[Path], device: torch.device, batch_size: int, progress: bool
) -> Tuple[Tuple[int, int], np.ndarray, np.ndarray]:
    """(size, maps [N,H,W], scores [N]) with maps at the first image's size (the frame size;
    a dataset of mixed sizes is compared at that one size)."""
    size = read_image(paths[0]).shape[:2] if paths else tuple(model.config.image_size)
    if model.tiling is not None:
        frames = (
            read_image(p)
            for p in tqdm(paths, desc="eval tiles", disable=not show_progress(progress), unit="frame")
        )
        maps, scores = predict_tiled(model, frames, model.tiling, device, batch_size)
    else:
        maps, scores = predict_samples(model, paths, device, batch_size, progress)
    return size, np.stack([resize_map(m, size) for m in maps]), scores


def checkpoint_thresholds(
    model_path: Union[str, Path], model: torch.nn.Module
) -> Tuple[Optional[float], Optional[float], str]:
    """(image, pixel threshold, where from) as the runtime takes them: the thresholds file beside
    the checkpoint calibrated for these weights (rd-calibrate on the .pt, ``MODEL.pt.thresholds.json``,
    else on an export of it, ``*.thresholds.json`` or an older ``thresholds.json``), else the
    checkpoint's own; so rd-eval's overlays agree with rd-infer's."""
    from .core.files import sha256_file
    from .core.thresholds import THRESHOLDS_SUFFIX, Thresholds, legacy_thresholds_path, thresholds_path

    own, sha = thresholds_path(model_path), sha256_file(model_path)
    exports = sorted(p for p in Path(model_path).parent.glob(f"*{THRESHOLDS_SUFFIX}") if p != own)
    legacy = legacy_thresholds_path(model_path)
    for path in [own, legacy, *exports]:
        if path.is_file():
            found = Thresholds.read(path)
            if found.checkpoint_sha256 == sha or (path in (own, legacy) and found.checkpoint_sha256 is None):
                return found.image_threshold, found.pixel_threshold, str(path)
    return model.threshold, getattr(model, "pixel_threshold", None), "checkpoint"


def evaluate_checkpoint(
    model_path: Union[str, Path],
    data_dir: Optional[Union[str, Path]],
    device: str = "auto",
    batch_size: int = 8,
    save_maps: Optional[Union[str, Path]] = None,
    progress: bool = True,
    full_resolution: bool = False,
    dataset=None,
    report: Optional[Union[str, Path]] = None,
) -> Dict:
    """Image AUROC, pixel AUROC, AUPRO (FPR 0.3) and image F1-max, overall and per defect type.

    ``data_dir`` is a dataset folder (any layout rd_edge.data reads); or pass ``dataset``
    (rd_edge.data.open_dataset) instead. Pixel metrics are computed at the model's input size,
    or with ``full_resolution`` (always for tiled models, which are scored per frame over all
    tiles) at the test images' own size, on the maps the runtime returns there.
    """
    dev = pick_device(device)
    model = load_checkpoint(model_path).to(dev)
    samples = (dataset or open_dataset(data_dir)).test_samples()
    paths = [s.path for s in samples]
    if model.tiling is not None or full_resolution:
        size, maps, scores = _predict_full_resolution(model, paths, dev, batch_size, progress)
    else:
        size = model.config.image_size
        maps, scores = predict_samples(model, paths, dev, batch_size, progress)
    masks = read_sample_masks(samples, size)
    labels = np.array([s.is_anomalous for s in samples], dtype=int)
    result = evaluate(labels, scores, masks, maps, [s.defect_type for s in samples])
    image_t, pixel_t, source = checkpoint_thresholds(model_path, model)
    result["n_images"] = len(samples)
    result["threshold"] = image_t
    result["pixel_threshold"] = pixel_t
    result["threshold_source"] = source
    result["tiling"] = model.tiling.to_dict() if model.tiling is not None else None
    result["map_size"] = list(size)
    if save_maps is not None:
        write_maps(Path(save_maps), samples, maps, scores, model.score_stats, image_t, pixel_t)
    if report is not None:
        from .eval_report import write_eval_report

        write_eval_report(
            Path(report),
            str(model_path),
            samples,
            maps,
            scores,
            labels,
            result,
            model.score_stats,
            _map_keys(samples),
        )
    return result


def write_maps(
    out_dir: Path,
    samples,
    maps: np.ndarray,
    scores: np.ndarray,
    stats,
    threshold,
    pixel_threshold: Optional[float] = None,
) -> None:
    """Per test image: the float map as .npy and the overlay .png (rd-infer's, plus the ground
    truth outlined in magenta). Without a threshold the overlay centres on the normal scores' max."""
    import cv2

    keys = _map_keys(samples)
    for sample, key, amap, score in zip(samples, keys, maps, scores):
        target = out_dir / sample.defect_type / key  # defect/a/x.png -> defect/a/x.npy, never a shared x.npy
        target.parent.mkdir(parents=True, exist_ok=True)
        np.save(f"{target}.npy", amap.astype(np.float32))
        cv2.imwrite(
            f"{target}.png", sample_overlay(sample, amap, float(score), stats, threshold, pixel_threshold)
        )


def sample_overlay(
    sample: Sample,
    amap: np.ndarray,
    score: float,
    stats,
    threshold: Optional[float],
    pixel_threshold: Optional[float],
) -> np.ndarray:
    """rd-infer's overlay of one test image plus its ground truth in magenta. Without a threshold
    the overlay centres on the normal scores' max."""
    if threshold is None:
        threshold = float(stats["max"]) if stats else score
    frame = read_image(sample.path)
    mask = read_mask(sample.mask_path, frame.shape[:2]) if sample.mask_path else None
    return render_overlay(frame, amap, score, threshold, score_scale(stats), pixel_threshold, mask)


def _map_keys(samples: List[Sample]) -> List[str]:
    """Per sample: its path relative to its defect type's folder, without suffix (output_keys)."""
    keys: Dict[int, str] = {}
    for kind in dict.fromkeys(s.defect_type for s in samples):
        group = [i for i, s in enumerate(samples) if s.defect_type == kind]
        keys.update(zip(group, output_keys([samples[i].path for i in group])))
    return [keys[i] for i in range(len(samples))]
