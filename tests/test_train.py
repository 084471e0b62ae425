"""rd-train on the demo data: learning happens, checkpoints resume, seeds reproduce."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from rd_edge.checkpoint import read_checkpoint
from rd_edge.cli.train import main as train_main
from rd_edge.evaluate import evaluate_checkpoint
from rd_edge.train import (
    TrainConfig,
    Trainer,
    closing_lines,
    format_summary,
    next_commands,
    split_holdout,
    train,
)


def config(data, out, steps, **kw):
    return TrainConfig(
        data=str(data),
        out=str(out),
        backbone="resnet18",
        image_size=64,
        steps=steps,
        batch_size=4,
        teacher_weights="none",
        device="cpu",
        seed=0,
        **kw,
    )


@pytest.fixture(scope="module")
def trained(demo_category, tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "model.pt"
    with pytest.warns(UserWarning, match="random teacher"):
        summary = train(config(demo_category, out, 30), progress=False)
    return out, summary


def test_loss_decreases_on_demo_data(trained):
    out, summary = trained
    losses = read_checkpoint(out)["training"]["loss_history"]
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])


def test_final_checkpoint_has_statistics_and_threshold(trained):
    out, summary = trained
    data = read_checkpoint(out)
    stats = data["score_stats"]
    assert stats["count"] >= 2 and stats["min"] <= stats["mean"] <= stats["max"]
    assert data["threshold"] == pytest.approx(stats["mean"] + 3 * stats["std"])
    assert data["training"]["completed"] and data["resume"] is None
    assert summary["threshold"] == data["threshold"]


def test_trainer_optimizes_only_the_student_and_leaves_the_teacher_bit_identical(
    trained, demo_category, tmp_path
):
    out, _ = trained
    with pytest.warns(UserWarning, match="random teacher"):
        fresh = Trainer(config(demo_category, tmp_path / "fresh.pt", 30), progress=False)  # before training
    (group,) = fresh.optimizer.param_groups
    assert type(fresh.optimizer) is torch.optim.Adam
    assert group["lr"] == 0.005 and group["betas"] == (0.5, 0.999)  # RD4AD's settings
    teacher_ids = {id(p) for p in fresh.model.teacher.parameters()}
    assert not {id(p) for p in group["params"]} & teacher_ids
    assert {id(p) for p in group["params"]} == {id(p) for p in fresh.model.trainable_parameters()}
    # After 30 steps the teacher's weights and BatchNorm statistics are exactly the initial ones.
    trained_state = read_checkpoint(out)["state_dict"]
    teacher_keys = [k for k in trained_state if k.startswith("teacher.")]
    assert any(k.endswith("running_mean") for k in teacher_keys)
    initial = fresh.model.state_dict()
    for key in teacher_keys:
        assert torch.equal(trained_state[key], initial[key]), f"{key} changed during training"
    assert not all(torch.equal(trained_state[k], initial[k]) for k in trained_state if k not in teacher_keys)


def test_resume_continues_the_step_count(demo_category, tmp_path):
    out = tmp_path / "m.pt"
    trainer = Trainer(config(demo_category, out, 6), progress=False)
    trainer.total_steps = 3  # stop half-way, as if interrupted, and keep a resumable checkpoint
    trainer.fit()
    trainer.save(completed=False)
    assert read_checkpoint(out)["training"]["step"] == 3
    resumed = Trainer(config(demo_category, out, 6), resume=True, progress=False)
    assert resumed.step == 3
    summary = resumed.fit()
    data = read_checkpoint(out)
    assert data["training"]["step"] == 6 and len(data["training"]["loss_history"]) == 6
    # "seconds" adds up the runs; the person reading the summary is told so.
    assert 0 < summary["seconds_this_run"] < summary["seconds"] == round(data["training"]["seconds"], 1)
    assert "the rest before --resume" in format_summary(summary)


@pytest.mark.parametrize("n_good, n_hold", [(4, 2), (16, 8), (39, 19), (40, 20), (100, 20), (300, 60)])
def test_holdout_is_a_fifth_and_at_least_20_when_there_are_enough(n_good, n_hold):
    from pathlib import Path

    paths = [Path(f"{i:03d}.png") for i in range(n_good)]
    keep, hold = split_holdout(paths, seed=0)
    assert len(hold) == n_hold and sorted(keep + hold) == paths


def test_summary_for_a_person_says_how_much_to_trust_the_threshold(trained):
    out, summary = trained
    text = format_summary(summary)
    n_hold = summary["n_holdout"]
    assert f"of {n_hold} held-out good images" in text and "mean + 3 std" in text
    assert "rough threshold" in text  # the demo fixture has 16 good images: 8 held out
    onnx = out.with_suffix(".onnx")
    data = summary["data"]["data"]
    assert (
        f"next: rd-eval {out} --data {data}, rd-export {out} -o {onnx}, rd-calibrate {onnx} --data {data}"
        in text
    )
    assert "before --resume" not in text  # one run: no cumulative time to explain


def test_next_commands_fit_the_data_it_was_trained_on():
    # good images only: no rd-eval (it needs defects); calibration on the good images works
    text = next_commands("m.pt", {"good": "photos/ok"})
    assert text == "rd-export m.pt -o m.onnx, rd-calibrate m.onnx --good photos/ok, rd-infer m.onnx IMAGES"
    text = next_commands("m.best.pt", {"good": "ok", "defect": "ng", "masks": "masks"})
    assert text.startswith(
        "rd-eval m.best.pt --good ok --defect ng --masks masks, rd-export m.best.pt -o m.best.onnx"
    )
    # the best epoch is named as the model to carry on with
    summary = {
        "out": "m.pt",
        "best": {"out": "m.best.pt", "epoch": 4, "image_auroc": 0.779, "pixel_auroc": 0.9},
        "data": {"data": "d"},
    }
    text = "\n".join(closing_lines(summary))
    assert "best: epoch 4 (image AUROC 77.9" in text and "next: rd-eval m.best.pt --data d" in text


def test_resumed_run_equals_uninterrupted_run(demo_category, tmp_path):
    straight = tmp_path / "straight.pt"
    train(config(demo_category, straight, 4), progress=False)
    split = tmp_path / "split.pt"
    first = Trainer(config(demo_category, split, 4), progress=False)
    first.total_steps = 2
    first.fit()
    first.save(completed=False)
    Trainer(config(demo_category, split, 4), resume=True, progress=False).fit()
    a, b = read_checkpoint(straight), read_checkpoint(split)
    assert a["training"]["loss_history"] == b["training"]["loss_history"]
    for k in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][k], b["state_dict"][k], rtol=0, atol=1e-6)


def test_same_seed_same_result_another_seed_another(demo_category, tmp_path):
    runs = []
    for name, seed in (("a.pt", 0), ("b.pt", 0), ("c.pt", 1)):
        train(replace(config(demo_category, tmp_path / name, 3), seed=seed), progress=False)
        runs.append(read_checkpoint(tmp_path / name))
    assert runs[0]["training"]["loss_history"] == runs[1]["training"]["loss_history"]
    assert runs[0]["threshold"] == runs[1]["threshold"]
    # The seed reaches the run (batch order, initialisation): otherwise the equality above is vacuous.
    assert runs[2]["training"]["loss_history"] != runs[0]["training"]["loss_history"]


def test_evaluation_equals_sklearn_on_frame_by_frame_scores(trained, demo_category):
    # An independent recomputation: each test image alone through the model, scikit-learn's ROC.
    import cv2
    from sklearn.metrics import roc_auc_score

    from rd_edge import load_checkpoint
    from rd_edge.core.images import read_image
    from rd_edge.core.preprocess import preprocess_bgr
    from rd_edge.data import MVTecCategory

    out, _ = trained
    result = evaluate_checkpoint(out, demo_category, device="cpu", progress=False)
    model = load_checkpoint(out).eval()
    samples = MVTecCategory(demo_category).test_samples()
    scores, maps, masks = [], [], []
    with torch.no_grad():
        for s in samples:
            amap, score = model(
                torch.from_numpy(
                    preprocess_bgr(read_image(s.path), (64, 64), resize=model.config.resize)[None]
                )
            )
            scores.append(float(score[0]))
            maps.append(amap[0, 0].numpy())
            mask = cv2.imread(str(s.mask_path), cv2.IMREAD_GRAYSCALE) if s.mask_path else np.zeros((64, 64))
            masks.append(cv2.resize(mask, (64, 64), interpolation=cv2.INTER_NEAREST) > 127)
    labels = np.array([s.defect_type != "good" for s in samples])
    scores = np.array(scores)
    assert result["image_auroc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-6)
    assert result["pixel_auroc"] == pytest.approx(roc_auc_score(np.ravel(masks), np.ravel(maps)), abs=1e-4)
    types = sorted({s.defect_type for s in samples} - {"good"})
    assert sorted(result["per_type"]) == types == ["hole", "misprint", "scratch", "stain"]
    for t in types:
        keep = np.array([s.defect_type in ("good", t) for s in samples])
        assert result["per_type"][t]["image_auroc"] == pytest.approx(
            roc_auc_score(labels[keep], scores[keep]), abs=1e-6
        )
    assert 0.0 < result["aupro"] <= 1.0 and 0.0 < result["image_f1_max"] <= 1.0


def test_cli_reports_bad_data_folder_without_traceback(tmp_path, capsys):
    code = train_main(
        [
            "--data",
            str(tmp_path / "missing"),
            "--backbone",
            "resnet18",
            "--image-size",
            "64",
            "--steps",
            "1",
            "--out",
            str(tmp_path / "m.pt"),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error:") and "Traceback" not in err


def test_eval_cli_writes_json_and_maps(trained, demo_category, tmp_path, capsys):
    from rd_edge.cli.evaluate import main as eval_main

    out, _ = trained
    code = eval_main(
        [
            str(out),
            "--data",
            str(demo_category),
            "--json",
            str(tmp_path / "m.json"),
            "--save-maps",
            str(tmp_path / "maps"),
            "--device",
            "cpu",
            "--quiet",
        ]
    )
    assert code == 0
    result = json.loads((tmp_path / "m.json").read_text())
    assert {"image_auroc", "pixel_auroc", "aupro", "image_f1_max", "per_type"} <= set(result)
    assert "image AUROC" in capsys.readouterr().out
    n_test = len(list((demo_category / "test").rglob("*.png")))
    assert len(list((tmp_path / "maps").rglob("*.npy"))) == n_test
    assert len(list((tmp_path / "maps").rglob("*.png"))) == n_test
    # rd-eval's overlays are rd-infer's plus the ground truth in magenta, where there is one.
    import cv2

    defect = next(p for p in sorted((tmp_path / "maps").rglob("*.png")) if p.parent.name != "good")
    good = next(p for p in sorted((tmp_path / "maps").rglob("*.png")) if p.parent.name == "good")
    magenta = lambda image: (image[32:] == (255, 0, 255)).all(axis=2).any()  # noqa: E731  below the band
    assert magenta(cv2.imread(str(defect))) and not magenta(cv2.imread(str(good)))


def test_the_papers_recipe_is_the_default():
    from rd_edge.cli.train import build_parser

    cfg = TrainConfig(data="x")
    args = build_parser().parse_args(["--data", "x"])
    for got in (
        (cfg.image_size, cfg.batch_size, cfg.lr, cfg.teacher_weights, cfg.backbone),
        (args.image_size, args.batch_size, args.lr, args.teacher_weights, args.backbone),
    ):
        assert got == (256, 16, 0.005, "imagenet", "wide_resnet50_2")
    assert cfg.total_steps(n_train=100) == 200 * 6  # 200 epochs of 6 full batches of 16 (tail dropped)


def test_eval_every_prints_test_aurocs_and_keeps_the_best(demo_category, tmp_path, capsys):
    cfg = replace(config(demo_category, tmp_path / "m.pt", None), epochs=2, eval_every=1)
    with pytest.warns(UserWarning, match="random teacher"):
        summary = train(cfg, progress=False)
    out = capsys.readouterr().out
    n_train = read_checkpoint(tmp_path / "m.pt")["training"]["n_train"]  # good images not held out
    per_epoch = n_train // 4  # full batches of 4 a pass
    assert summary["steps"] == 2 * per_epoch
    for epoch in (1, 2):
        assert f"epoch {epoch} (step {epoch * per_epoch}): image AUROC " in out and "pixel AUROC" in out
    best = summary["best"]
    assert best["epoch"] in (1, 2) and 0.0 <= best["image_auroc"] <= 1.0
    saved = read_checkpoint(best["out"])
    assert best["out"].endswith("m.best.pt") and saved["training"]["completed"]
    assert saved["threshold"] is not None and saved["best"]["step"] == best["step"]
