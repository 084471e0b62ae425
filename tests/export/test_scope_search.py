"""Accuracy-aware int8: widest scope first, the fastest one within the fidelity bound is kept."""

import shutil

import numpy as np
import onnx
import pytest

from rd_edge.core.errors import ExportError
from rd_edge.core.onnx_props import read_onnx_metadata
from rd_export.cli import main as export_main
from rd_export.graph import read_metadata
from rd_export.quantize import annotate_onnx, quantize_int8
from rd_export.scope_search import (
    OPENVINO_SEARCH_ORDER,
    FidelityBound,
    FidelityImages,
    base_scope,
    fidelity_images,
    openvino_search_order,
    search_scopes,
)


@pytest.fixture(scope="module")
def built(r18_onnx, demo_category, tmp_path_factory):
    """Each scope quantized once (cpu flavour); the searches below copy them (a build callback)."""
    folder = tmp_path_factory.mktemp("scopes")
    paths = {
        s: quantize_int8(
            r18_onnx, folder / f"{s}.onnx", demo_category, target="cpu", scope=s, max_images=8
        ).onnx_path
        for s in ("full", "student")
    }
    return paths, fidelity_images(demo_category, 8, demo_category / "test", read_onnx_metadata(r18_onnx))


def _search(r18_onnx, built, out, bound, scopes=("full", "student"), calls=None):
    paths, fidelity = built

    def build(scope, path):
        (calls if calls is not None else []).append(scope)
        if scope != base_scope(scope):  # a variant is made from its scope's model, built before it
            assert path.with_name(base_scope(scope) + path.suffix).is_file()
        stand_in = "full" if base_scope(scope) == "mixed" else base_scope(scope)  # mixed: full here
        shutil.copy(paths[stand_in], path)

    return search_scopes(
        r18_onnx,
        build,
        out,
        fidelity,
        read_onnx_metadata(r18_onnx).threshold,
        bound,
        annotate=annotate_onnx,
        scopes=scopes,
    )


def test_narrower_scope_kept_when_the_wider_breaks_the_bound(r18_onnx, built, tmp_path):
    loose = _search(r18_onnx, built, tmp_path / "loose.onnx", FidelityBound(min_spearman=-1.0))
    full, student = loose.trials
    assert (full.scope, student.scope) == ("full", "student") and full.ok and student.ok
    assert loose.chosen == max(loose.trials, key=lambda t: t.speedup).scope  # the fastest within
    assert student.spearman > full.spearman  # more of the model in int8: further from fp32
    bound = FidelityBound(min_spearman=(full.spearman + student.spearman) / 2)
    out = tmp_path / "m_int8.onnx"
    search = _search(r18_onnx, built, out, bound)
    assert search.chosen == "student" and [t.ok for t in search.trials] == [False, True]
    meta = read_metadata(onnx.load(str(out)))
    assert meta.extra["int8_scope"] == "student"
    assert meta.extra["int8_scope_search"]["chosen"] == "student"
    assert meta.extra["int8_scope_search"]["bound"]["min_spearman"] == bound.min_spearman
    assert "<- kept" in search.format().splitlines()[-1]
    with pytest.raises(ExportError, match="no int8 scope keeps the fidelity bound"):
        _search(r18_onnx, built, tmp_path / "none.onnx", FidelityBound(min_spearman=1.01))
    assert not (tmp_path / "none.onnx").exists()


def test_auto_flags_belong_to_auto(r18_onnx, demo_category, capsys):
    assert (
        export_main(
            [str(r18_onnx), "--precision", "int8", "--calib-dir", str(demo_category), "--min-spearman", "0.9"]
        )
        == 1
    )
    assert "sets the fidelity bound of --int8-scope auto" in capsys.readouterr().err


def test_mixed_is_built_only_when_full_breaks_the_bound(r18_onnx, built, tmp_path):
    calls = []
    loose = _search(r18_onnx, built, tmp_path / "a.onnx", FidelityBound(-1.0), OPENVINO_SEARCH_ORDER, calls)
    assert calls == ["full", "student"] and [t.scope for t in loose.trials] == ["full", "student"]
    full_rho = loose.trials[0].spearman
    calls.clear()
    tight = FidelityBound(min_spearman=(full_rho + loose.trials[1].spearman) / 2)
    _search(r18_onnx, built, tmp_path / "b.onnx", tight, OPENVINO_SEARCH_ORDER, calls)
    assert calls == ["full", "mixed", "student"]


def test_bf16_float_variants_follow_their_scope(r18_onnx, built, tmp_path):
    order = openvino_search_order(bf16=True)
    assert order == ("full", "full+bf16", "mixed", "mixed+bf16", "student", "student+bf16")
    assert openvino_search_order(bf16=False) == OPENVINO_SEARCH_ORDER
    calls = []
    loose = _search(r18_onnx, built, tmp_path / "a.onnx", FidelityBound(-1.0), order, calls)
    # full within the bound: no mixed, so no mixed+bf16 either
    assert calls == ["full", "full+bf16", "student", "student+bf16"] == [t.scope for t in loose.trials]
    assert "full+bf16" in loose.format()


def test_fidelity_metric_is_spearman_less_one_per_verdict_past_the_bound():
    reference = np.array([0.1, 0.2, 0.3, 0.4, 0.9])
    swapped = np.array([0.2, 0.1, 0.3, 0.4, 0.9])  # one adjacent pair swapped, no verdict changed
    assert FidelityBound(0.9, 0).metric(reference, swapped, threshold=0.5) == pytest.approx(0.9)
    flipped = np.array([0.1, 0.2, 0.3, 0.6, 0.9])  # same order, one image over 0.5
    assert FidelityBound(0.9, 0).metric(reference, flipped, threshold=0.5) == pytest.approx(0.0)
    assert FidelityBound(0.9, 1).metric(reference, flipped, threshold=0.5) == pytest.approx(1.0)
    assert FidelityBound(0.9, 0).metric(reference, flipped, threshold=None) == pytest.approx(1.0)


def test_mixed_is_for_openvino(r18_onnx, demo_category, capsys):
    args = [str(r18_onnx), "--precision", "int8", "--calib-dir", str(demo_category), "--int8-scope", "mixed"]
    assert export_main(args) == 1
    err = capsys.readouterr().err
    assert "--int8-scope mixed is NNCF's accuracy control, for --format openvino" in err


@pytest.mark.slow
def test_openvino_int8_searches_scopes_by_default(r18_onnx, demo_category, tmp_path, capsys):
    from rd_edge.core.ir_props import read_ir_metadata

    out = tmp_path / "m.xml"
    assert (
        export_main(
            [
                str(r18_onnx),
                "--format",
                "openvino",
                "--precision",
                "int8",
                "--calib-dir",
                str(demo_category),
                "--calib-images",
                "8",
                "--min-spearman",
                "-1",
                "--fidelity-dir",
                str(demo_category / "test"),
                "-o",
                str(out),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "int8 scope search (score Spearman >= -1" in text and "<- kept" in text
    meta = read_ir_metadata(out)
    chosen = meta.extra["int8_scope_search"]["chosen"]
    assert meta.extra["int8_scope"] == base_scope(chosen) in ("full", "student")
    # on a CPU with bf16, each scope is also tried with its float layers in bf16
    from rd_edge.runtime import cpu_capabilities

    tried = [t["scope"] for t in meta.extra["int8_scope_search"]["trials"]]
    assert ("full+bf16" in tried) == ("BF16" in cpu_capabilities())
    assert meta.extra.get("inference_precision", "fp32") == ("bf16" if chosen.endswith("+bf16") else "fp32")


@pytest.mark.slow
def test_mixed_reverts_quantizers_until_the_bound_holds(r18_onnx, demo_category, tmp_path):
    """NNCF's accuracy control, for real: from a full int8 IR that breaks the bound, quantizers
    go back to float until the fidelity images' Spearman reaches it."""
    from rd_export.openvino_int8 import AccuracyTarget, quantize_ir
    from rd_export.scope_search import scores_of, trial

    meta = read_onnx_metadata(r18_onnx)
    images = fidelity_images(demo_category, 8, demo_category / "test", meta).images
    # the defect images: spread-out scores, so a rank swap means something
    defects = FidelityImages(images[-8:], "8 defect images", np.ones(8, dtype=bool))
    reference = scores_of(r18_onnx, defects.images)
    # ranges as calibrated (headroom x1): the full IR then breaks the bound, the restorer has work
    full = quantize_ir(
        r18_onnx, tmp_path / "full.xml", demo_category, max_images=8, scope="full", headroom=1.0
    )
    full_trial = trial("full", reference, full.xml_path, defects, meta.threshold, FidelityBound(), None)
    bound = FidelityBound(min_spearman=0.99)
    assert not bound.holds(full_trial.spearman, full_trial.verdicts_changed)  # else nothing to revert
    target = AccuracyTarget(defects, reference, meta.threshold, bound)
    said = []
    mixed = quantize_ir(
        r18_onnx,
        tmp_path / "m.xml",
        demo_category,
        max_images=8,
        scope="mixed",
        accuracy=target,
        headroom=1.0,
        progress=said.append,
    )
    mixed_trial = trial("mixed", reference, mixed.xml_path, defects, meta.threshold, bound, None)
    assert mixed_trial.ok, mixed_trial
    assert 0 < mixed.fake_quantize < full.fake_quantize  # some reverted, not all
    # before the restorer ran, what it would cost: one group a full int8 activation quantizer
    (estimate,) = said
    assert f"ranks about {full.fake_quantize} groups of quantizers" in estimate
    assert "a pass over 8 fidelity images" in estimate and "--int8-scope full or student" in estimate
    assert mixed.parity.ok


def test_restorer_estimate_is_groups_times_a_build_and_a_pass():
    from rd_export.openvino_int8 import restorer_estimate

    line = restorer_estimate(97, build_s=10.0, pass_s=5.0, images=42)
    assert "about 97 groups" in line and "42 fidelity images (15.0 s here)" in line
    assert "about 24 min 15 s a ranking" in line


def test_fidelity_is_not_judged_on_the_calibration_images_when_others_exist(demo_category, r18_onnx):
    """Ranges were fitted to the calibration images: with every good image calibrating, fidelity
    is judged on --fidelity-dir's images alone; with nothing else, on the calibration images."""
    from rd_edge.core.images import list_images

    meta = read_onnx_metadata(r18_onnx)
    test_images = list_images(demo_category / "test")
    tests = fidelity_images(demo_category, 10**6, demo_category / "test", meta)
    assert len(tests.images) == len(test_images) and tests.source.startswith("no held-out good image (all ")
    assert tests.ranked.all()
    alone = fidelity_images(demo_category, 10**6, None, meta)
    assert len(alone.images) > 0 and "calibration images (no held-out good image left" in alone.source
    assert alone.ranked.all()
    held = fidelity_images(demo_category, 4, demo_category / "test", meta)
    n_held = len(held.images) - len(test_images)
    assert n_held > 0 and held.source.startswith(f"{n_held} held-out good")


def test_the_spearman_ranks_the_fidelity_dir_images_and_verdicts_count_on_all(demo_category, r18_onnx):
    """Held-out good images add an easy block of low scores that lifts the Spearman: with
    --fidelity-dir given, the Spearman is taken on its images; a verdict changed anywhere counts."""
    from rd_edge.core.images import list_images

    held = fidelity_images(demo_category, 4, demo_category / "test", read_onnx_metadata(r18_onnx))
    n_held = len(held.images) - len(list_images(demo_category / "test"))
    assert not held.ranked[:n_held].any() and held.ranked[n_held:].all()
    assert "(Spearman on these)" in held.source

    reference = np.array([0.10, 0.11, 0.12, 0.3, 0.5, 0.7, 0.9])
    ranked = np.array([False, False, False, True, True, True, True])
    goods_shuffled = np.array([0.12, 0.10, 0.11, 0.3, 0.5, 0.7, 0.9])
    assert FidelityBound(0.99).metric(reference, goods_shuffled, 0.6, ranked) == pytest.approx(1.0)
    assert FidelityBound(0.99).metric(reference, goods_shuffled, 0.6) < 0.99
    # pooled, the easy goods block hides a swap among the ranked images
    ranked_swapped = np.array([0.10, 0.11, 0.12, 0.5, 0.3, 0.7, 0.9])
    assert FidelityBound(0.9).metric(reference, ranked_swapped, 0.6, ranked) == pytest.approx(0.8)
    assert FidelityBound(0.9).metric(reference, ranked_swapped, 0.6) > 0.9
    good_flipped = np.array([0.10, 0.11, 0.65, 0.3, 0.5, 0.7, 0.9])  # an unranked image over 0.6
    assert FidelityBound(0.9, 0).metric(reference, good_flipped, 0.6, ranked) == pytest.approx(0.0)
