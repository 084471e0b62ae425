"""Threshold calibration: image and pixel thresholds from labelled images, without re-export
(what ``rd-calibrate`` does). Not INT8 calibration, which sets activation ranges of a quantized
graph (``rd_export.quantize``).

Methods (image threshold; an image is anomalous when score > threshold):

- ``false-alarms`` (default): the lowest threshold whose false-alarm rate on the good images is
  at most the target (``max_false_alarms``, 1 %): what a line sets (how many good parts it may
  reject); the escape rate it costs is reported. Works on good images alone.
- ``f1``: the threshold with the best F1 over the labelled images. On defect-heavy data F1
  favours flagging everything (32 defects, 10 good: flag-all F1 = 0.86).
- ``zero-escape``: the highest threshold that still flags every defective image (no escapes);
  the false-alarm rate is what it costs.
- ``normal-quantile[:q]``: the q-quantile (default 0.99) of the good images' scores.

Every method is checked against stated levels: false alarms above ``max_false_alarms`` or
escapes above ``max_escapes`` (10 %) give a warning naming the method that bounds them.

Pixel threshold: the best F1 over all pixels when the defects have masks; else (and for
``normal-quantile``) the q-quantile of the good images' pixels; never above the image threshold:
the score is the map's maximum, so every image flagged NG then has pixels above the pixel
threshold (a region to show). Thresholds are placed halfway between the last score they pass and
the first they flag, so the same images are flagged by any backend whose scores agree to within
that margin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from rd_edge.core.cli import show_progress
from rd_edge.core.drift import reference_from_scores
from rd_edge.core.errors import CalibrationError, DatasetError, RdEdgeError
from rd_edge.core.files import PathLike, sha256_file
from rd_edge.core.images import read_image
from rd_edge.core.preprocess import ModelInput
from rd_edge.core.scoring import score_images
from rd_edge.core.thresholds import Thresholds, legacy_thresholds_path, thresholds_path
from rd_edge.data.mvtec import GOOD, Sample, read_sample_masks

METHODS = ("false-alarms", "f1", "zero-escape", "normal-quantile")
DEFAULT_METHOD = "false-alarms"
DEFAULT_QUANTILE = 0.99
MAX_FALSE_ALARMS = 0.01  # the default target: at most 1 % of good parts rejected...
MAX_ESCAPES = 0.10  # ...and a warning when more than 10 % of the defective ones pass


def parse_method(text: str) -> Tuple[str, float]:
    """'false-alarms' | 'f1' | 'zero-escape' | 'normal-quantile[:q]' -> (name, q); ValueError otherwise."""
    name, _, q_text = text.partition(":")
    if name not in METHODS or (q_text and name != "normal-quantile"):
        raise ValueError(f"expected false-alarms, f1, zero-escape or normal-quantile[:q], got {text!r}")
    q = DEFAULT_QUANTILE
    if q_text:
        try:
            q = float(q_text)
        except ValueError:
            raise ValueError(f"normal-quantile:q needs a number q in (0, 1], got {q_text!r}") from None
        if not 0.0 < q <= 1.0:
            raise ValueError(f"normal-quantile:q needs q in (0, 1], got {q}")
    return name, q


@dataclass
class Scored:
    """Model outputs on labelled images at the model size (tiled models: the frames' size)."""

    labels: np.ndarray  # [N] bool, True = defective
    scores: np.ndarray  # [N] float
    maps: np.ndarray  # [N,H,W] float32
    masks: np.ndarray  # [N,H,W] bool


# --- threshold choice -------------------------------------------------------------------------


def cut_below(values: np.ndarray, lowest_flagged: float) -> float:
    """A threshold t with every value >= ``lowest_flagged`` above t and every other value <= t:
    halfway to the largest value below it (or the next float down when there is none)."""
    below = values[values < lowest_flagged]
    if below.size == 0:
        return float(np.nextafter(np.float64(lowest_flagged), -np.inf))
    return float((float(below.max()) + float(lowest_flagged)) / 2.0)


def f1_cut(labels: np.ndarray, values: np.ndarray) -> Tuple[float, float]:
    """(threshold, F1) maximizing F1 of ``values > threshold`` against ``labels``."""
    from rd_edge.metrics import best_f1

    lowest_flagged, f1 = best_f1(labels, values)
    return cut_below(values, lowest_flagged), f1


def false_alarm_cut(labels: np.ndarray, scores: np.ndarray, max_rate: float) -> float:
    """The lowest threshold that flags at most ``max_rate`` of the good images: above the
    (k+1)-th highest good score, k = floor(max_rate * good images), halfway to the next score up."""
    good = np.sort(scores[~labels])[::-1]
    allowed = math.floor(max_rate * good.size + 1e-9)
    if allowed >= good.size:  # every good image may be flagged: flag everything
        return float(np.nextafter(np.float64(scores.min()), -np.inf))
    passed = float(good[allowed])  # the highest score that must pass
    above = scores[scores > passed]
    if above.size == 0:
        return float(np.nextafter(np.float64(passed), np.inf))
    return float((passed + float(above.min())) / 2.0)


def zero_escape_cut(labels: np.ndarray, scores: np.ndarray) -> float:
    """The highest threshold that flags every defective image."""
    return cut_below(scores, float(scores[labels].min()))


def image_rates(labels: np.ndarray, scores: np.ndarray, threshold: float) -> Dict[str, Any]:
    flagged = scores > threshold
    n_good, n_defect = int((~labels).sum()), int(labels.sum())
    false_alarms, escapes = int((flagged & ~labels).sum()), int((~flagged & labels).sum())
    return {
        "n_good": n_good,
        "n_defective": n_defect,
        "false_alarms": false_alarms,
        "escapes": escapes,
        "false_alarm_rate": false_alarms / n_good if n_good else None,
        "escape_rate": escapes / n_defect if n_defect else None,
    }


def pixel_rates(masks: np.ndarray, maps: np.ndarray, threshold: float) -> Dict[str, Any]:
    flagged = maps > threshold
    n_normal, n_defect = int((~masks).sum()), int(masks.sum())
    return {
        "normal_pixels_flagged_rate": float((flagged & ~masks).sum() / n_normal) if n_normal else None,
        "defect_pixels_missed_rate": float((~flagged & masks).sum() / n_defect) if n_defect else None,
    }


def image_cut(labels: np.ndarray, scores: np.ndarray, method: str, q: float, report: Dict[str, Any]) -> float:
    """The image threshold ``method`` chooses on ``labels``/``scores``; notes go into ``report``
    (which holds the false-alarm target, ``max_false_alarms``)."""
    if method == "false-alarms":
        return false_alarm_cut(labels, scores, report["max_false_alarms"])
    if method == "f1":
        image, report["image_f1"] = f1_cut(labels, scores)
        return image
    if method == "zero-escape":
        return zero_escape_cut(labels, scores)
    report["quantile"] = q
    return float(np.quantile(scores[~labels], q))


def with_review(
    chosen: Dict[str, Any], data: Scored, reviewed: Scored, method: str, q: float, folder: PathLike
) -> Dict[str, Any]:
    """The image threshold chosen again on the data plus the reviewed frames (false alarms as
    good, confirmed and missed defects as defective); the report says how the false-alarm and
    escape rates change on all of them. The pixel threshold stays the data's: reviewed frames
    have no defect masks."""
    labels = np.concatenate([data.labels, reviewed.labels])
    scores = np.concatenate([data.scores, reviewed.scores])
    before = chosen["image_threshold"]
    report = chosen["report"]
    after = image_cut(labels, scores, method, q, report)
    report["review"] = {
        "folder": str(folder),
        "false_alarms_marked": int((~reviewed.labels).sum()),
        "defects_marked": int(reviewed.labels.sum()),
        "threshold_before": before,
        "before": image_rates(labels, scores, before),
        "after": image_rates(labels, scores, after),
        "reviewed_before": image_rates(reviewed.labels, reviewed.scores, before),
        "reviewed_after": image_rates(reviewed.labels, reviewed.scores, after),
    }
    report.update(image_rates(labels, scores, after))
    report["warnings"] = rate_warnings(report, method)
    return {**chosen, "image_threshold": after}


def choose_thresholds(
    data: Scored,
    method: str,
    q: float = DEFAULT_QUANTILE,
    max_false_alarms: float = MAX_FALSE_ALARMS,
    max_escapes: float = MAX_ESCAPES,
) -> Dict[str, Any]:
    """Image and pixel thresholds by ``method`` with their rates on ``data`` and the warnings
    (rates above ``max_false_alarms`` / ``max_escapes``); CalibrationError when the data cannot
    support the method (it says which one applies)."""
    labels, scores = data.labels, data.scores
    good_maps = data.maps[~labels]
    if good_maps.size == 0:
        raise CalibrationError(
            f"the data holds no good images ({labels.size} defective); every method "
            "needs good images to measure false alarms: add some"
        )
    if method in ("f1", "zero-escape") and not labels.any():
        raise CalibrationError(
            f"the data holds only good images ({labels.size}); {method} sets the threshold "
            f"from defective images. Use the method false-alarms (the default: at most "
            f"--max-false-alarms of the good images flagged) or normal-quantile[:q], or "
            f"add defective images"
        )
    report: Dict[str, Any] = {
        "method": method,
        "max_false_alarms": max_false_alarms,
        "max_escapes": max_escapes,
    }
    image = image_cut(labels, scores, method, q, report)
    has_masks = bool(data.masks.any())
    if method in ("f1", "zero-escape", "false-alarms") and has_masks:
        pixel, report["pixel_f1"] = f1_cut(data.masks.ravel(), data.maps.ravel())
        report["pixel_method"] = "f1"
    else:
        pixel = float(np.quantile(good_maps, q))
        report["pixel_method"] = f"normal-quantile:{q:g}"
        if method != "normal-quantile":
            report["pixel_note"] = "no defect masks: the pixel threshold is a quantile of good pixels"
    capped = region_cap(data.maps, scores > image, pixel)
    if capped < pixel:
        report["pixel_capped_from"], pixel = pixel, capped
    report.update(image_rates(labels, scores, image))
    report.update(pixel_rates(data.masks, data.maps, pixel))
    report["warnings"] = rate_warnings(report, method)
    return {"image_threshold": image, "pixel_threshold": pixel, "report": report}


def region_cap(maps: np.ndarray, flagged: np.ndarray, pixel: float) -> float:
    """``pixel``, lowered where needed so that every flagged image has a pixel above it (an NG
    verdict with no region to show is no use to whoever checks the part): below the lowest map
    maximum of the flagged images, halfway to the next lower image maximum."""
    if not flagged.any():
        return pixel
    peaks = maps.reshape(len(maps), -1).max(axis=1).astype(np.float64)  # [N]; a model's score
    lowest = float(peaks[flagged].min())
    return pixel if pixel < lowest else cut_below(peaks, lowest)


def rate_warnings(report: Dict[str, Any], method: str) -> List[str]:
    """What a line would not accept at these thresholds: false alarms above max_false_alarms,
    escapes above max_escapes, and a target the number of good images cannot resolve."""
    out = []
    n_good, fa_rate, esc_rate = report["n_good"], report["false_alarm_rate"], report["escape_rate"]
    if fa_rate is not None and fa_rate > report["max_false_alarms"] + 1e-12:
        out.append(
            f"false alarms {report['false_alarms']}/{n_good} ({100 * fa_rate:.1f} %) exceed "
            f"{100 * report['max_false_alarms']:g} %: {method} flags good parts a line would reject; "
            f"--method false-alarms bounds them (--max-false-alarms sets the level)"
        )
    if esc_rate is not None and esc_rate > report["max_escapes"] + 1e-12:
        out.append(
            f"escapes {report['escapes']}/{report['n_defective']} ({100 * esc_rate:.1f} %) exceed "
            f"{100 * report['max_escapes']:g} %: the model does not separate these defects from good "
            f"parts at this false-alarm level (train longer, a larger size or an ImageNet teacher; "
            f"or accept more false alarms: --max-false-alarms, --method zero-escape)"
        )
    if method == "false-alarms" and n_good and report["max_false_alarms"] * n_good < 1:
        out.append(
            f"{n_good} good images cannot measure a false-alarm rate of "
            f"{100 * report['max_false_alarms']:g} % (one image is {100 / n_good:.3g} %): the threshold "
            f"is above every good score; calibrate on {math.ceil(1 / report['max_false_alarms'])}+ "
            f"good images for a measured rate"
        )
    return out


# --- running the model ------------------------------------------------------------------------


def review_samples(folder: PathLike) -> List[Sample]:
    """A review folder's marked frames: false alarms as good, confirmed and missed defects as
    defective (no masks)."""
    from rd_edge.core.review import reviewed_images

    good, defective = reviewed_images(folder)
    return [Sample(p, GOOD, None) for p in good] + [Sample(p, "reviewed", None) for p in defective]


def calibration_samples(dataset: Any) -> List[Sample]:
    """The labelled images to calibrate on: the test split; plain good-only folders: their images."""
    if getattr(dataset, "layout", None) == "folders" and not dataset.defect:
        return [Sample(p, GOOD, None) for p in dataset.good]
    return dataset.test_samples()


class _Scorer:
    """Image -> (map at the model size, score) through the model file: the exported graph via the
    runtime's public API (.onnx, .engine), or the torch module (.pt)."""

    def __init__(self, model: Path) -> None:
        self.path = model
        self._detector: Any = None  # tiled models through the runtime: a Detector on the runner
        if model.suffix.lower() == ".pt":
            from rd_edge.checkpoint import load_checkpoint

            self._torch = load_checkpoint(model)
            self.model: ModelInput = self._torch.config
            self.checkpoint_sha256: Optional[str] = None  # set after the checkpoint is rewritten
            self._runner = None
            self.tiling = self._torch.tiling
        else:
            from rd_edge.runtime import load_runner

            self._runner = load_runner(model)
            meta = self._runner.metadata
            self.model = meta
            self.checkpoint_sha256 = meta.checkpoint_sha256
            self.tiling = meta.tile_spec()

    def __call__(self, batch: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """[N,3,H,W] float32 -> maps [N,H,W], scores [N]."""
        if self._runner is not None:
            out = self._runner.infer({"image": batch})
            return out["anomaly_map"][:, 0], out["score"]
        import torch

        with torch.no_grad():
            amap, score = self._torch(torch.from_numpy(batch))
        return amap[:, 0].numpy(), score.numpy()

    def tiled(self, frames: List[np.ndarray]) -> Tuple[List[np.ndarray], np.ndarray]:
        """Tiled models: uint8 BGR frames -> stitched maps at each frame's size, scores (max)."""
        if self._runner is not None:
            from rd_edge.runtime import Detector

            if self._detector is None:  # scores only (threshold unused); close() closes the runner
                self._detector = Detector(self._runner, threshold=0.0, cuda_preprocess=False)
            preds = self._detector.predict(frames)
            return [p.anomaly_map for p in preds], np.array([p.score for p in preds])
        import torch

        from rd_edge.tiles import predict_tiled

        return predict_tiled(self._torch, frames, self.tiling, torch.device("cpu"))

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()


def score_samples(
    scorer: _Scorer, samples: List[Sample], batch_size: int = 8, progress: bool = False
) -> Scored:
    from tqdm import tqdm

    if scorer.tiling is not None:  # per frame over all its tiles, at the frames' resolution
        return _score_tiled(scorer, samples, batch_size, progress)
    size = (int(scorer.model.image_size[0]), int(scorer.model.image_size[1]))
    bar = (lambda starts: tqdm(starts, desc="calibrate", unit="batch")) if show_progress(progress) else None
    maps, scores = score_images([s.path for s in samples], scorer.model, scorer, batch_size, bar)
    labels = np.array([s.is_anomalous for s in samples], dtype=bool)
    return Scored(labels, scores, maps, read_sample_masks(samples, size))


def _score_tiled(scorer: _Scorer, samples: List[Sample], batch_size: int, progress: bool) -> Scored:
    """score_samples for tiled models; maps and masks at the first image's size."""
    from tqdm import tqdm

    from rd_edge.core.postprocess import resize_map

    size = read_image(samples[0].path).shape[:2] if samples else tuple(scorer.model.image_size)
    maps, scores = [], []
    for i in tqdm(
        range(0, len(samples), batch_size),
        desc="calibrate",
        unit="batch",
        disable=not show_progress(progress),
    ):
        m, s = _tiled_naming_the_image(scorer, samples[i : i + batch_size])
        maps.extend(resize_map(np.asarray(a, np.float32), size) for a in m)
        scores.append(np.asarray(s, np.float64).reshape(-1))
    masks = read_sample_masks(samples, size)
    labels = np.array([s.is_anomalous for s in samples], dtype=bool)
    return Scored(labels, np.concatenate(scores), np.stack(maps), masks)


def _tiled_naming_the_image(scorer: _Scorer, chunk: List[Sample]) -> Tuple[Any, Any]:
    """scorer.tiled over the chunk's images; an image it cannot take (e.g. smaller than a tile)
    is named in the DatasetError instead of failing the batch anonymously."""
    frames = [read_image(x.path) for x in chunk]
    try:
        return scorer.tiled(frames)
    except RdEdgeError as exc:
        for sample, frame in zip(chunk, frames):
            try:
                scorer.tiled([frame])
            except RdEdgeError as single:
                raise DatasetError(
                    f"cannot calibrate on {sample.path} ({frame.shape[1]}x{frame.shape[0]}): "
                    f"{single}; remove or replace it"
                ) from single
        raise exc


def calibrate_thresholds(
    model: PathLike,
    dataset: Any,
    method: str = DEFAULT_METHOD,
    batch_size: int = 8,
    progress: bool = False,
    review: Optional[PathLike] = None,
    max_false_alarms: float = MAX_FALSE_ALARMS,
    max_escapes: float = MAX_ESCAPES,
) -> Thresholds:
    """Score ``dataset``'s labelled images with ``model``, choose the thresholds, and write them to
    thresholds.json beside the model (and into the checkpoint when ``model`` is a .pt).
    ``review``: a station's review folder whose marked frames join the image threshold's choice."""
    name, q = parse_method(method)
    model = Path(model)
    samples = calibration_samples(dataset)
    reviewed_samples = review_samples(review) if review is not None else []
    scorer = _Scorer(model)
    try:
        data = score_samples(scorer, samples, batch_size, progress)
        reviewed = score_samples(scorer, reviewed_samples, batch_size, progress) if reviewed_samples else None
    finally:
        scorer.close()
    chosen = choose_thresholds(data, name, q, max_false_alarms, max_escapes)
    if reviewed is not None and review is not None:
        chosen = with_review(chosen, data, reviewed, name, q, review)
    chosen["report"]["method"] = method if ":" in method or name != "normal-quantile" else f"{name}:{q:g}"
    chosen["report"]["data"] = str(getattr(dataset, "root", ""))
    chosen["report"]["layout"] = getattr(dataset, "layout", None)
    sha = scorer.checkpoint_sha256
    if model.suffix.lower() == ".pt":
        sha = _write_into_checkpoint(model, chosen)
    result = Thresholds(
        image_threshold=chosen["image_threshold"],
        pixel_threshold=chosen["pixel_threshold"],
        method=chosen["report"]["method"],
        model=model.name,
        checkpoint_sha256=sha,
        report=chosen["report"],
        normal_scores=reference_from_scores(data.scores[~data.labels]),
    )
    result.write(thresholds_path(model))
    _retire_legacy_file(model)
    return result


def _retire_legacy_file(model: Path) -> None:
    """The folder's legacy thresholds.json of this model is replaced by ``<model>.thresholds.json``
    (migration): removed, so no reader takes the old values; one of another model stays its own."""
    legacy = legacy_thresholds_path(model)
    try:
        owner = Thresholds.read(legacy).model if legacy.is_file() else ""
    except RdEdgeError:
        return  # a damaged or foreign file: not ours to remove
    if owner == model.name:
        legacy.unlink()


def _write_into_checkpoint(path: Path, chosen: Dict[str, Any]) -> str:
    """Store the thresholds in the checkpoint (later exports carry them); returns its new sha256."""
    from rd_edge.checkpoint import read_checkpoint, save_checkpoint

    data = read_checkpoint(path)
    data.update(
        threshold=chosen["image_threshold"],
        pixel_threshold=chosen["pixel_threshold"],
        calibration=chosen["report"],
    )
    save_checkpoint(path, data)
    return sha256_file(path)


def format_report(t: Thresholds) -> str:
    """What rd-calibrate prints on stdout (its warnings, ``t.report["warnings"]``, go to stderr)."""
    r = t.report

    def pct(count: Optional[int], total: Optional[int]) -> str:
        return "n/a" if not total else f"{count}/{total} ({100.0 * count / total:.1f} %)"

    def rate(value: Optional[float]) -> str:
        return "n/a" if value is None or not math.isfinite(value) else f"{100.0 * value:.2f} %"

    lines = [
        f"method {t.method} on {r.get('n_good')} good and {r.get('n_defective')} defective images",
        f"image threshold {t.image_threshold:.6g}: false alarms {pct(r['false_alarms'], r['n_good'])}, "
        f"escapes {pct(r['escapes'], r['n_defective'])}",
        f"pixel threshold {t.pixel_threshold:.6g} ({r['pixel_method']}): normal pixels flagged "
        f"{rate(r['normal_pixels_flagged_rate'])}, defect pixels missed {rate(r['defect_pixels_missed_rate'])}",
    ]
    if "pixel_note" in r:
        lines.append(f"note: {r['pixel_note']}")
    if "pixel_capped_from" in r:
        lines.append(
            f"note: pixel threshold lowered from {r['pixel_capped_from']:.6g}, so every NG image "
            f"shows a region (its highest pixel passes)"
        )
    if "review" in r:
        lines += _review_lines(r["review"], t.image_threshold, pct)
    return "\n".join(lines)


def _review_lines(v: Dict[str, Any], after: float, pct: Any) -> List[str]:
    """How the reviewed frames changed the image threshold and its rates."""

    def rates(x: Dict[str, Any]) -> str:
        return (
            f"false alarms {pct(x['false_alarms'], x['n_good'])}, "
            f"escapes {pct(x['escapes'], x['n_defective'])}"
        )

    return [
        f"review {v['folder']}: {v['false_alarms_marked']} false alarms (as good) and "
        f"{v['defects_marked']} defects marked",
        f"  before, threshold {v['threshold_before']:.6g} (the data alone): {rates(v['before'])} on data + review; "
        f"on the reviewed frames: {rates(v['reviewed_before'])}",
        f"  after,  threshold {after:.6g} (data + review): {rates(v['after'])} on data + review; "
        f"on the reviewed frames: {rates(v['reviewed_after'])}",
    ]
