"""A model is scored with the resize rule it was saved with, on every path.

Frames of random noise at four times the model size: area averaging flattens them towards grey,
bilinear sampling keeps the noise, so the two rules give far apart maps and scores. Each path
(Detector, tiled Detector, rd-calibrate, rd-eval, the exporter's graph evaluation, int8
calibration data, export verification, torch tiles) must agree with the saved rule's reference
and not with the other rule's. Models saved before the rule existed (no ``resize`` key) read
"linear" from their metadata or checkpoint. Tiny fixtures only: nothing is trained or exported.
"""

import json

import numpy as np
import pytest

from rd_edge.core.images import read_image
from rd_edge.core.metadata import (
    RESIZE_AREA_LINEAR,
    RESIZE_DEFAULT,
    RESIZE_LINEAR,
    ModelMetadata,
)
from rd_edge.core.postprocess import resize_map
from rd_edge.core.preprocess import preprocess_bgr
from rd_edge.core.tiling import Stitcher, Tiling, fit_frame
from rd_edge.runtime import Detector

TINY_SIZE = (24, 32)  # the stand-in graph's input (tests/runtime/conftest.py)
RULES = (RESIZE_LINEAR, RESIZE_AREA_LINEAR)
OTHER = {RESIZE_LINEAR: RESIZE_AREA_LINEAR, RESIZE_AREA_LINEAR: RESIZE_LINEAR}
FRAME_HW = (4 * TINY_SIZE[0], 4 * TINY_SIZE[1])  # shrunk 4x to the model: the rules differ most
TILING = Tiling((48, 64), 0.25, frame=(72, 96))  # frames fitted (shrunk) and tiles shrunk 2x


def noise_frames(n: int = 3, hw=FRAME_HW) -> list:
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, (*hw, 3), dtype=np.uint8) for _ in range(n)]


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory):
    """The noise frames as PNG files, in an MVTec-like good-images folder."""
    import cv2

    folder = tmp_path_factory.mktemp("noise") / "train" / "good"
    folder.mkdir(parents=True)
    for i, frame in enumerate(noise_frames()):
        cv2.imwrite(str(folder / f"{i:03d}.png"), frame)
    return folder.parent.parent


def frame_paths(frames_dir):
    return sorted((frames_dir / "train" / "good").glob("*.png"))


@pytest.fixture
def tiny_with_rule(make_model, metadata_factory):
    """tiny_with_rule(name, rule, tiling=None) -> the stand-in graph saved with that rule."""

    def make(name, rule, tiling=None):
        meta = metadata_factory()
        meta.resize = rule
        meta.tiling = None if tiling is None else tiling.to_dict()
        return make_model(name, metadata=meta)

    return make


def graph(path):
    """(batch [N,3,h,w] -> maps [N,h,w], scores [N]) of the ONNX file, nothing of rd_edge between."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(batch):
        amap, score = session.run(["anomaly_map", "score"], {"image": np.ascontiguousarray(batch)})
        return amap[:, 0], score

    return run


def whole_frame_reference(run, frames, rule):
    return run(np.stack([preprocess_bgr(f, TINY_SIZE, resize=rule) for f in frames]))


def tiled_reference(run, frames, rule, tiling=TILING, model_hw=TINY_SIZE):
    """Fit, crop, preprocess, run, stitch, max: written out with the rule given explicitly."""
    maps, scores = [], []
    for frame in frames:
        fitted = fit_frame(frame, tiling.frame, rule)
        grid = tiling.grid(fitted.shape[:2])
        tiles = run(np.stack([preprocess_bgr(c, model_hw, resize=rule) for c in grid.crops(fitted)]))[0]
        stitched = Stitcher(grid, tiling.window).stitch([resize_map(m, grid.tile) for m in tiles])
        maps.append(resize_map(stitched, frame.shape[:2]))
        scores.append(float(stitched.max()))
    return maps, np.array(scores)


def assert_scored_with(got, references, rule, atol=1e-5):
    """``got`` scores equal the ``rule`` reference and differ clearly from the other rule's."""
    got = np.asarray(got, np.float64).reshape(-1)
    want, other = (np.asarray(references[r], np.float64).reshape(-1) for r in (rule, OTHER[rule]))
    np.testing.assert_allclose(got, want, atol=atol, err_msg=f"not scored with {rule}")
    assert np.abs(other - want).min() > 10 * atol, "the two rules must differ on these frames"


@pytest.mark.parametrize("rule", RULES)
def test_detector_and_graph_evaluation_use_the_models_rule(tiny_with_rule, frames_dir, rule):
    from rd_export.accuracy import predict_paths

    model = tiny_with_rule("model.onnx", rule)
    frames = [read_image(p) for p in frame_paths(frames_dir)]
    refs = {r: whole_frame_reference(graph(model), frames, r)[1] for r in RULES}
    with Detector(model, backend="onnxruntime") as det:
        assert_scored_with([p.score for p in det.predict(frames)], refs, rule)
    assert_scored_with(predict_paths(model, frame_paths(frames_dir))[1], refs, rule)


@pytest.mark.parametrize("rule", RULES)
def test_tiled_detector_fits_frames_and_tiles_by_the_models_rule(tiny_with_rule, rule):
    model = tiny_with_rule("tiled.onnx", rule, TILING)
    frames = noise_frames()
    refs = {r: tiled_reference(graph(model), frames, r)[1] for r in RULES}
    with Detector(model, backend="onnxruntime") as det:
        assert_scored_with([p.score for p in det.predict(frames)], refs, rule)


@pytest.mark.parametrize("rule", RULES)
def test_threshold_calibration_scores_with_the_models_rule(tiny_with_rule, frames_dir, rule):
    from rd_edge.data import open_dataset
    from rd_edge.threshold_calibration import _Scorer, calibration_samples, score_samples

    frames = [read_image(p) for p in frame_paths(frames_dir)]
    samples = calibration_samples(open_dataset(None, good=frames_dir / "train" / "good"))
    for model, refs_of in (
        (tiny_with_rule("m.onnx", rule), lambda run, r: whole_frame_reference(run, frames, r)[1]),
        (tiny_with_rule("tiled.onnx", rule, TILING), lambda run, r: tiled_reference(run, frames, r)[1]),
    ):
        scorer = _Scorer(model)
        try:
            scored = score_samples(scorer, samples, batch_size=2)
        finally:
            scorer.close()
        assert_scored_with(scored.scores, {r: refs_of(graph(model), r) for r in RULES}, rule)


@pytest.mark.parametrize("rule", RULES)
def test_int8_calibration_data_is_preprocessed_by_the_models_rule(tiny_with_rule, frames_dir, rule):
    from rd_edge.core.onnx_props import read_onnx_metadata
    from rd_export.quantize import make_reader

    meta = read_onnx_metadata(tiny_with_rule("m.onnx", rule))
    paths = frame_paths(frames_dir)
    feed = make_reader(paths, meta, batch=len(paths)).get_next()["image"]
    frames = [read_image(p) for p in paths]
    want = {r: np.stack([preprocess_bgr(f, TINY_SIZE, resize=r) for f in frames]) for r in RULES}
    np.testing.assert_array_equal(feed, want[rule])
    assert not np.array_equal(feed, want[OTHER[rule]])


@pytest.fixture(scope="module")
def torch_models(tmp_path_factory, frames_dir):
    """{"linear" | "area": checkpoint path} of one random resnet18 at 64 px saved with each rule."""
    pytest.importorskip("torch")
    from helpers import make_checkpoint

    from rd_edge.checkpoint import read_checkpoint, save_checkpoint

    folder = tmp_path_factory.mktemp("ckpt")
    base = make_checkpoint(folder / "base.pt", "resnet18", 64, data_dir=str(frames_dir))
    data = read_checkpoint(base)
    paths = {}
    for name, rule in (("linear", RESIZE_LINEAR), ("area", RESIZE_AREA_LINEAR)):
        config = {**data["config"]["model"], "resize": rule}
        save_checkpoint(folder / f"{name}.pt", {**data, "config": {**data["config"], "model": config}})
        paths[name] = folder / f"{name}.pt"
    return paths


def torch_references(model, frames):
    import torch

    refs = {}
    for rule in RULES:
        batch = np.stack([preprocess_bgr(f, (64, 64), resize=rule) for f in frames])
        with torch.no_grad():
            refs[rule] = model(torch.from_numpy(batch))[1].numpy()
    return refs


@pytest.mark.parametrize("rule", RULES)
def test_torch_paths_use_the_checkpoints_rule(torch_models, frames_dir, rule):
    """rd-eval, rd-calibrate on a .pt, rd-export's verification images, tiled torch scores."""
    import torch

    from rd_edge.checkpoint import load_checkpoint
    from rd_edge.data import open_dataset
    from rd_edge.evaluate import predict_samples
    from rd_edge.threshold_calibration import _Scorer, calibration_samples, score_samples
    from rd_edge.tiles import predict_tiled
    from rd_export.verify import check_images

    path = torch_models["linear" if rule == RESIZE_LINEAR else "area"]
    model = load_checkpoint(path)
    paths = frame_paths(frames_dir)[:2]
    frames = [read_image(p) for p in paths]
    refs = torch_references(model, frames)
    evaluated = predict_samples(model, paths, torch.device("cpu"), progress=False)[1]
    assert_scored_with(evaluated, refs, rule, 2e-5)
    scorer = _Scorer(path)
    samples = calibration_samples(open_dataset(None, good=frames_dir / "train" / "good"))[:2]
    assert_scored_with(score_samples(scorer, samples).scores, refs, rule, 2e-5)
    images, source = check_images(model.config, str(frames_dir), n=len(paths))
    assert source.startswith("training images")
    want = np.stack([preprocess_bgr(f, (64, 64), resize=rule) for f in frames])
    np.testing.assert_array_equal(images, want)

    def run(batch):
        with torch.no_grad():
            amap, score = model(torch.from_numpy(batch))
        return amap[:, 0].numpy(), score.numpy()

    tiling = Tiling((80, 100), 0.0, frame=(80, 100))  # one tile: the frame fitted, then shrunk
    refs = {r: tiled_reference(run, frames[:1], r, tiling, (64, 64))[1] for r in RULES}
    assert_scored_with(predict_tiled(model, frames[:1], tiling, torch.device("cpu"))[1], refs, rule, 2e-5)


def test_checkpoints_from_before_the_rule_read_linear():
    pytest.importorskip("torch")
    from rd_edge.checkpoint import model_config
    from rd_edge.model import ModelConfig

    saved = ModelConfig("resnet18", (64, 64)).to_dict()
    assert saved["resize"] == RESIZE_DEFAULT
    del saved["resize"]  # as rd-train wrote checkpoints before the rule was recorded
    assert model_config({"config": {"model": saved}}).resize == RESIZE_LINEAR


def test_models_from_before_the_rule_read_linear_and_new_ones_get_the_default(make_model, metadata_factory):
    data = json.loads(metadata_factory().to_json())
    assert data["resize"] == RESIZE_DEFAULT == RESIZE_AREA_LINEAR
    del data["resize"], data["pixel_threshold"]  # as rd-export wrote version 1 before the rule existed
    data["format_version"] = 1
    assert ModelMetadata.from_json(json.dumps(data)).resize == RESIZE_LINEAR
    with Detector(make_model("old.onnx", metadata=json.dumps(data)), backend="onnxruntime") as det:
        assert det.metadata.resize == RESIZE_LINEAR


@pytest.mark.parametrize(
    "src_hw,dst_hw,area",
    [
        ((100, 40), (64, 64), False),  # taller, narrower: one side enlarges -> linear
        ((40, 100), (64, 64), False),
        ((100, 80), (64, 64), True),  # both sides shrink -> area
        ((64, 65), (64, 64), True),  # equal counts as not enlarging
    ],
)
def test_area_only_when_no_side_enlarges(src_hw, dst_hw, area):
    """Non-square frames (issue 28): INTER_AREA only when both sides shrink (or stay)."""
    import cv2

    from rd_edge.core.preprocess import RESIZE_AREA_LINEAR, preprocess_bgr, resize_interpolation

    want = cv2.INTER_AREA if area else cv2.INTER_LINEAR
    assert resize_interpolation(src_hw, dst_hw, RESIZE_AREA_LINEAR) == want
    frame = np.random.default_rng(3).integers(0, 256, (*src_hw, 3), dtype=np.uint8)
    by_hand = cv2.resize(frame, dst_hw[::-1], interpolation=want)[:, :, ::-1].transpose(2, 0, 1) / 255.0
    np.testing.assert_allclose(preprocess_bgr(frame, dst_hw, resize=RESIZE_AREA_LINEAR), by_hand, atol=1e-6)
