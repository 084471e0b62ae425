"""rd-train on the demo data: learning happens, checkpoints resume, seeds reproduce."""
import json

import numpy as np
import pytest
import torch

from rd_edge.checkpoint import read_checkpoint
from rd_edge.cli.train import main as train_main
from rd_edge.evaluate import evaluate_checkpoint
from rd_edge.train import TrainConfig, Trainer, train


def config(data, out, steps, **kw):
    return TrainConfig(data=str(data), out=str(out), backbone="resnet18", image_size=64, steps=steps,
                       batch_size=4, teacher_weights="none", device="cpu", seed=0, **kw)


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


def test_resume_continues_the_step_count(demo_category, tmp_path):
    out = tmp_path / "m.pt"
    trainer = Trainer(config(demo_category, out, 6), progress=False)
    trainer.total_steps = 3  # stop half-way, as if interrupted, and keep a resumable checkpoint
    trainer.fit()
    trainer.save(completed=False)
    assert read_checkpoint(out)["training"]["step"] == 3
    resumed = Trainer(config(demo_category, out, 6), resume=True, progress=False)
    assert resumed.step == 3
    resumed.fit()
    data = read_checkpoint(out)
    assert data["training"]["step"] == 6 and len(data["training"]["loss_history"]) == 6


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


def test_same_seed_same_result(demo_category, tmp_path):
    runs = []
    for name in ("a.pt", "b.pt"):
        train(config(demo_category, tmp_path / name, 3), progress=False)
        runs.append(read_checkpoint(tmp_path / name))
    assert runs[0]["training"]["loss_history"] == runs[1]["training"]["loss_history"]
    assert runs[0]["threshold"] == runs[1]["threshold"]


def test_evaluation_reports_every_metric_per_type(trained, demo_category):
    out, _ = trained
    result = evaluate_checkpoint(out, demo_category, device="cpu", progress=False)
    for key in ("image_auroc", "pixel_auroc", "aupro", "image_f1_max"):
        assert 0.0 <= result[key] <= 1.0
    assert set(result["per_type"]) == {"hole", "misprint", "scratch", "stain"}


def test_cli_reports_bad_data_folder_without_traceback(tmp_path, capsys):
    code = train_main(["--data", str(tmp_path / "missing"), "--backbone", "resnet18", "--image-size", "64",
                       "--steps", "1", "--out", str(tmp_path / "m.pt"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error:") and "Traceback" not in err


def test_eval_cli_writes_json_and_maps(trained, demo_category, tmp_path, capsys):
    from rd_edge.cli.evaluate import main as eval_main

    out, _ = trained
    code = eval_main([str(out), "--data", str(demo_category), "--json", str(tmp_path / "m.json"),
                      "--save-maps", str(tmp_path / "maps"), "--device", "cpu", "--quiet"])
    assert code == 0
    result = json.loads((tmp_path / "m.json").read_text())
    assert {"image_auroc", "pixel_auroc", "aupro", "image_f1_max", "per_type"} <= set(result)
    assert "image AUROC" in capsys.readouterr().out
    n_test = len(list((demo_category / "test").rglob("*.png")))
    assert len(list((tmp_path / "maps").rglob("*.npy"))) == n_test
    assert len(list((tmp_path / "maps").rglob("*.png"))) == n_test
