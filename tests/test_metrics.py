"""Metrics against hand-computed cases and a brute-force AUPRO reference."""

import math

import numpy as np
import pytest

from rd_edge.metrics import (
    aupro,
    evaluate,
    f1_max,
    format_metrics_table,
    image_auroc,
    pixel_auroc,
)

# --- image AUROC / F1max ---------------------------------------------------------------------


def test_image_auroc_perfect_inverted_and_hand_computed():
    labels = [0, 0, 1, 1]
    assert image_auroc(labels, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert image_auroc(labels, [0.9, 0.8, 0.2, 0.1]) == 0.0
    # Pairs (pos, neg): 0.35>0.1, 0.35<0.4, 0.8>0.1, 0.8>0.4 -> 3 of 4.
    assert image_auroc(labels, [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)


def test_image_auroc_one_class_is_a_clear_error():
    with pytest.raises(ValueError, match="both normal and anomalous images.*only normal"):
        image_auroc([0, 0, 0], [0.1, 0.2, 0.3])


def test_image_auroc_rejects_mismatched_lengths_and_bad_labels():
    with pytest.raises(ValueError, match="3 labels and 2 scores"):
        image_auroc([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="0/1"):
        image_auroc([0, 2], [0.1, 0.2])


def test_f1_max_hand_computed():
    # Threshold 0.35 flags 0.35, 0.4, 0.8: TP=2, FP=1 -> P=2/3, R=1 -> F1=0.8 (the best).
    assert f1_max([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.8)
    assert f1_max([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == pytest.approx(1.0)


# --- pixel AUROC -----------------------------------------------------------------------------


def test_pixel_auroc_counts_all_pixels_of_all_images():
    masks = np.array([[[1, 0], [0, 0]], [[0, 0], [0, 0]]], bool)
    maps = np.array([[[0.5, 0.6], [0.1, 0.2]], [[0.3, 0.0], [0.0, 0.0]]])
    # The positive 0.5 beats 6 of the 7 normal pixels.
    assert pixel_auroc(masks, maps) == pytest.approx(6 / 7)


def test_pixel_auroc_shape_mismatch_is_explained():
    with pytest.raises(ValueError, match="same shape"):
        pixel_auroc(np.zeros((1, 4, 4), bool), np.zeros((1, 8, 8)))


# --- AUPRO -----------------------------------------------------------------------------------


def one_region(size: int = 8):
    masks = np.zeros((1, size, size), bool)
    masks[0, 2:4, 2:6] = True  # one region of 8 pixels
    return masks


def test_aupro_perfect_map_is_one():
    masks = one_region()
    assert aupro(masks, masks.astype(float)) == pytest.approx(1.0)


def test_aupro_constant_map_is_half_the_limit():
    # Overlap == FPR along the whole curve: area 0.3^2 / 2, normalized by 0.3.
    masks = one_region()
    assert aupro(masks, np.full(masks.shape, 0.5)) == pytest.approx(0.15)
    assert aupro(masks, np.full(masks.shape, 0.5), fpr_limit=1.0) == pytest.approx(0.5)


def test_aupro_half_of_the_region_found_at_every_fpr_is_one_half():
    masks = one_region()
    maps = np.random.default_rng(0).uniform(0.1, 0.9, masks.shape)
    region = np.argwhere(masks[0])
    for k, (y, x) in enumerate(region):
        maps[0, y, x] = 1.0 if k % 2 == 0 else 0.0  # half above, half below every normal pixel
    assert aupro(masks, maps) == pytest.approx(0.5)


def test_aupro_hand_computed_steps():
    # 10 normal pixels scored 0..9 (FPR steps of 0.1); a 2-pixel region scored 9.5 and 8.5.
    # Curve: overlap 0.5 from FPR 0 to 0.1, then 1.0: area to 0.3 = 0.05 + 0.2 = 0.25.
    masks = np.zeros((1, 3, 4), bool)
    masks[0, 2, 2:] = True
    maps = np.zeros((1, 3, 4))
    maps[0][~masks[0]] = np.arange(10)
    maps[0, 2, 2:] = [9.5, 8.5]
    assert aupro(masks, maps) == pytest.approx(0.25 / 0.3)


def test_aupro_weights_regions_equally_and_uses_8_connectivity():
    masks = np.zeros((1, 10, 10), bool)
    maps = np.full((1, 10, 10), 0.5)
    masks[0, 0, 0] = masks[0, 1, 1] = True  # diagonal neighbours: one region
    maps[0, 0, 0] = maps[0, 1, 1] = 1.0  # found
    masks[0, 8, 8] = True  # a second, single-pixel region ...
    maps[0, 8, 8] = 0.0  # ... missed: below every normal pixel
    # Two regions, one found: 0.5. With 4-connectivity it would be 2 of 3 regions.
    assert aupro(masks, maps) == pytest.approx(0.5)


def test_aupro_false_positive_rate_counts_normal_pixels_of_all_images():
    masks = np.zeros((2, 4, 4), bool)
    masks[0, 1, 1] = True
    maps = np.zeros((2, 4, 4))
    maps[0, 1, 1] = 0.5  # the best pixel of its own image ...
    maps[1] = 0.9  # ... but a good image is brighter everywhere: FPR 16/31 before it is found
    assert aupro(masks, maps) == pytest.approx(0.0)


def reference_aupro(masks, maps, limit):
    """Brute force: sweep every threshold, mean overlap over regions vs. dataset FPR."""
    import cv2

    regions = []
    for mask, amap in zip(masks, maps):
        count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
        regions += [amap[labels == k] for k in range(1, count)]
    normal = maps[~masks]
    fpr, pro = [0.0], [0.0]
    for t in np.unique(maps)[::-1]:
        fpr.append(np.mean(normal >= t))
        pro.append(np.mean([np.mean(r >= t) for r in regions]))
    fpr, pro = np.array(fpr), np.array(pro)
    keep = fpr < limit
    xs = np.append(fpr[keep], limit)
    ys = np.append(pro[keep], np.interp(limit, fpr, pro))
    return np.sum(np.diff(xs) * (ys[1:] + ys[:-1]) / 2) / limit


@pytest.mark.parametrize("seed", range(4))
def test_aupro_matches_brute_force_reference_with_ties(seed):
    rng = np.random.default_rng(seed)
    masks = rng.random((3, 12, 12)) > 0.85
    # Rounded scores create ties between region and normal pixels.
    maps = np.round(rng.random(masks.shape) * 0.6 + masks * 0.3, 1)
    for limit in (0.05, 0.3, 1.0):
        assert aupro(masks, maps, limit) == pytest.approx(reference_aupro(masks, maps, limit))


def test_aupro_without_regions_is_nan_and_checks_the_limit():
    assert math.isnan(aupro(np.zeros((2, 4, 4), bool), np.zeros((2, 4, 4))))
    with pytest.raises(ValueError, match="fpr_limit"):
        aupro(one_region(), np.zeros((1, 8, 8)), fpr_limit=0.0)


# --- evaluate / table ------------------------------------------------------------------------


def toy_test_set():
    types = ["good", "good", "a", "a", "b", "b"]
    scores = [0.4, 0.6, 0.9, 0.8, 0.1, 0.2]  # type a found, type b inverted
    labels = [t != "good" for t in types]
    masks = np.zeros((6, 8, 8), bool)
    masks[2:, 2:4, 2:4] = True
    maps = np.zeros((6, 8, 8))
    maps[2:4][masks[2:4]] = 1.0  # type a maps perfect, type b maps blind
    return labels, scores, masks, maps, types


def test_evaluate_overall_and_per_type_on_good_plus_that_type():
    result = evaluate(*toy_test_set())
    assert set(result) == {"image_auroc", "pixel_auroc", "aupro", "image_f1_max", "per_type"}
    assert result["image_auroc"] == pytest.approx(0.5)  # 4 of 8 pairs
    assert result["per_type"]["a"]["image_auroc"] == 1.0
    assert result["per_type"]["b"]["image_auroc"] == 0.0
    assert result["per_type"]["a"]["aupro"] == pytest.approx(1.0)
    assert result["per_type"]["b"]["aupro"] == pytest.approx(0.15)  # constant (zero) map
    assert result["aupro"] == pytest.approx((1.0 + 0.15) / 2, abs=1e-9)


def test_evaluate_undefined_metrics_are_nan_not_errors():
    labels, scores, masks, maps, types = toy_test_set()
    result = evaluate(labels[2:], scores[2:], masks[2:], maps[2:], types[2:])  # no good images
    assert math.isnan(result["image_auroc"])
    assert result["pixel_auroc"] == pytest.approx(0.75)


def test_evaluate_rejects_labels_that_contradict_types():
    labels, scores, masks, maps, types = toy_test_set()
    with pytest.raises(ValueError, match="contradicts its defect type 'good'"):
        evaluate([1] + labels[1:], scores, masks, maps, types)


def test_format_metrics_table():
    result = evaluate(*toy_test_set())
    result["per_type"]["a"]["pixel_auroc"] = math.nan
    lines = format_metrics_table(result).splitlines()
    assert lines[0].split() == ["type", "image", "AUROC", "pixel", "AUROC", "AUPRO", "image", "F1max"]
    assert [line.split()[0] for line in lines[1:]] == ["all", "a", "b"]
    assert lines[2].split()[1:3] == ["100.0", "-"]
    assert len({len(line) for line in lines}) == 1  # aligned
