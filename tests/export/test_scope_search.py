"""Accuracy-aware int8: widest scope first, the fastest one within the fidelity bound is kept."""

import shutil

import onnx
import pytest

from rd_edge.core.errors import ExportError
from rd_edge.core.onnx_props import read_onnx_metadata
from rd_export.cli import main as export_main
from rd_export.graph import read_metadata
from rd_export.quantize import annotate_onnx, quantize_int8
from rd_export.scope_search import FidelityBound, fidelity_images, search_scopes


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
    images, source = fidelity_images(demo_category, 8, demo_category / "test", read_onnx_metadata(r18_onnx))
    return paths, images, source


def _search(r18_onnx, built, out, bound):
    paths, images, source = built
    return search_scopes(
        r18_onnx,
        lambda scope, p: shutil.copy(paths[scope], p),
        out,
        images,
        source,
        read_onnx_metadata(r18_onnx).threshold,
        bound,
        annotate=annotate_onnx,
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
    assert meta.extra["int8_scope"] == meta.extra["int8_scope_search"]["chosen"] in ("full", "student")
