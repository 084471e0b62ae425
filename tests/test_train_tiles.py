"""rd-train --tile: random tiles for the steps, per-frame tiled threshold, tiled rd-eval/export."""

import numpy as np
import pytest
import torch

from rd_edge.checkpoint import load_checkpoint, read_checkpoint
from rd_edge.cli.train import main as train_main
from rd_edge.core.errors import DatasetError
from rd_edge.core.metadata import RESIZE_DEFAULT
from rd_edge.core.tiling import Tiling
from rd_edge.data import MVTecCategory, read_image, write_demo_dataset
from rd_edge.evaluate import evaluate_checkpoint
from rd_edge.tiles import predict_tiled, random_tiles
from rd_edge.train import HOLDOUT_FRACTION, split_holdout  # noqa: F401  (the split rd-train uses)


@pytest.fixture(scope="module")
def hires(tmp_path_factory):
    """96 px demo frames with small defects; tiles of 64 (a 2 x 2 grid)."""
    (folder,) = write_demo_dataset(
        tmp_path_factory.mktemp("hires"),
        categories=["dots"],
        image_size=96,
        n_train=8,
        n_test_good=2,
        n_test_per_defect=1,
        defect_scale=0.5,
    )
    return folder


@pytest.fixture(scope="module")
def tiled_ckpt(hires, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiled_train") / "tiled.pt"
    with pytest.warns(UserWarning, match="random teacher"):
        assert (
            train_main(
                [
                    "--data",
                    str(hires),
                    "--backbone",
                    "resnet18",
                    "--image-size",
                    "64",
                    "--tile",
                    "64",
                    "--tile-overlap",
                    "0.25",
                    "--steps",
                    "3",
                    "--batch-size",
                    "4",
                    "--device",
                    "cpu",
                    "--teacher-weights",
                    "none",
                    "--out",
                    str(out),
                    "--quiet",
                ]
            )
            == 0
        )
    return out


def test_tiled_checkpoint_records_the_tiling_and_the_frame_size(tiled_ckpt):
    data = read_checkpoint(tiled_ckpt)
    assert data["tiling"] == {"tile": [64, 64], "overlap": 0.25, "frame": [96, 96], "window": "cosine"}
    assert data["config"]["train"]["tile"] == 64 and data["config"]["model"]["image_size"] == [64, 64]
    assert len(data["training"]["loss_history"]) == 3


def test_threshold_comes_from_per_frame_tiled_scores_of_the_held_out_frames(tiled_ckpt, hires):
    data = read_checkpoint(tiled_ckpt)
    _, hold = split_holdout(MVTecCategory(hires).train_paths(), seed=0)
    model = load_checkpoint(tiled_ckpt)
    _, scores = predict_tiled(model, [read_image(p) for p in hold], model.tiling, torch.device("cpu"))
    assert data["score_stats"]["count"] == len(hold)  # one score per frame, not per tile
    assert data["score_stats"]["max"] == pytest.approx(float(scores.max()), abs=1e-5)
    assert data["threshold"] == pytest.approx(float(scores.mean() + 3 * scores.std()), abs=1e-5)


def test_random_training_tiles_are_crops_at_varying_positions_reaching_the_border():
    h, w = 40, 70
    frame = np.zeros((h, w, 3), np.uint8)
    frame[:, :, 0] = np.arange(w)[None, :]  # B encodes x
    frame[:, :, 1] = np.arange(h)[:, None]  # G encodes y
    tiles = random_tiles([frame], 400, 16, (16, 16), torch.Generator().manual_seed(0), RESIZE_DEFAULT).numpy()
    xs, ys = tiles[:, 2, 0, 0], tiles[:, 1, 0, 0]  # RGB planes: B is plane 2, G plane 1
    assert np.array_equal(tiles[:, 2, 0, :], xs[:, None] + np.arange(16))  # a crop, not a resize
    assert xs.min() == 0 and xs.max() == w - 16 and ys.min() == 0 and ys.max() == h - 16


def test_tiled_eval_scores_frames_at_full_resolution(tiled_ckpt, hires):
    result = evaluate_checkpoint(tiled_ckpt, hires, device="cpu", progress=False)
    assert result["map_size"] == [96, 96] and result["tiling"]["tile"] == [64, 64]
    assert 0.0 <= result["image_auroc"] <= 1.0 and result["n_images"] == 2 + 4


def test_exported_tiled_model_matches_torch_per_frame(tiled_ckpt, hires, tmp_path):
    pytest.importorskip("onnxruntime")
    from rd_edge.runtime import Detector
    from rd_export.onnx_export import export_onnx

    onnx_path = tmp_path / "tiled.onnx"
    export_onnx(tiled_ckpt, onnx_path, verify=False)
    frames = [read_image(p) for p in MVTecCategory(hires).train_paths()[:2]]
    model = load_checkpoint(tiled_ckpt)
    maps, scores = predict_tiled(model, frames, model.tiling, torch.device("cpu"))
    with Detector(onnx_path) as det:
        assert det.metadata.tile_spec() == Tiling((64, 64), 0.25, frame=(96, 96))
        preds = det.predict(frames)
    for pred, amap, score in zip(preds, maps, scores):
        np.testing.assert_allclose(pred.anomaly_map, amap, atol=1e-4)
        assert pred.score == pytest.approx(float(score), abs=1e-4)


def test_frames_smaller_than_the_tile_are_a_clear_error(hires, tmp_path):
    with pytest.raises(DatasetError, match="smaller than the tile of 128 px"):
        from rd_edge.train import TrainConfig, Trainer

        Trainer(
            TrainConfig(
                data=str(hires),
                out=str(tmp_path / "m.pt"),
                backbone="resnet18",
                image_size=64,
                tile=128,
                steps=1,
                device="cpu",
            ),
            progress=False,
        )


@pytest.mark.parametrize("suffix", [".pt", ".onnx"])
def test_calibration_scores_tiled_models_per_frame(tiled_ckpt, hires, tmp_path, suffix):
    from rd_edge.data import MVTecCategory
    from rd_edge.threshold_calibration import _Scorer, calibration_samples, score_samples

    model = tiled_ckpt
    if suffix == ".onnx":
        from rd_export.onnx_export import export_onnx

        model = tmp_path / "tiled.onnx"
        export_onnx(tiled_ckpt, model, verify=False)
    samples = calibration_samples(MVTecCategory(hires))
    scorer = _Scorer(model)
    try:
        scored = score_samples(scorer, samples, batch_size=4)
    finally:
        scorer.close()
    torch_model = load_checkpoint(tiled_ckpt)
    maps, scores = predict_tiled(
        torch_model, [read_image(s.path) for s in samples], torch_model.tiling, torch.device("cpu")
    )
    assert scored.maps.shape == (len(samples), 96, 96) and scored.masks.shape == scored.maps.shape
    np.testing.assert_allclose(scored.scores, scores, atol=1e-4)
    np.testing.assert_allclose(scored.maps, np.stack(maps), atol=1e-4)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--tile-overlap", "1"], "expected a fraction in [0, 1)"),
        (["--tile", "16"], "expected an integer >= 32"),
    ],
)
def test_bad_tile_arguments_are_usage_errors(hires, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        train_main(["--data", str(hires), "--tile", "64", *args])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
