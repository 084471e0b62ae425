"""High-resolution demo data with small defects (for tiling): sizes, CLI, marker."""

import json

import numpy as np
import pytest

from rd_edge.cli.main import main
from rd_edge.data.synthetic import DEMO_DEFECTS, render_demo_image


@pytest.mark.parametrize("defect", DEMO_DEFECTS)
def test_small_defects_keep_their_256px_size_at_high_resolution(defect):
    def area(size, defect_scale):
        rng = np.random.default_rng(7)
        return render_demo_image("weave", defect, size, rng, defect_scale).mask.sum()

    # Same random draws, defects at half the linear size: about a quarter of the pixels (thin
    # scratches keep a 1 px minimum width, so they shrink less).
    ratio = area(512, 0.5) / area(512, 1.0)
    assert 0.1 < ratio < 0.5


def test_demo_data_cli_writes_high_resolution_images_with_small_defects(tmp_path, capsys):
    import cv2

    assert (
        main(
            [
                "demo-data",
                str(tmp_path),
                "--categories",
                "dots",
                "--image-size",
                "512",
                "--defect-scale",
                "small",
                "--n-train",
                "1",
                "--n-test-good",
                "0",
                "--n-test-per-defect",
                "1",
            ]
        )
        == 0
    )
    folder = tmp_path / "dots"
    image = cv2.imread(str(folder / "test" / "hole" / "000.png"))
    mask = cv2.imread(str(folder / "ground_truth" / "hole" / "000_mask.png"), cv2.IMREAD_GRAYSCALE)
    assert image.shape == (512, 512, 3) and 0 < (mask > 0).mean() < 0.01
    assert json.loads((folder / ".rd_edge_demo.json").read_text())["defect_scale"] == 0.5
    assert main(["demo-data", str(tmp_path / "x"), "--defect-scale", "tiny"]) == 2  # a usage error
    assert "--defect-scale must be normal, small or a number" in capsys.readouterr().err
