"""One threshold concept: one validator for every source, typed errors, thresholds.json round trip."""

import json

import numpy as np
import pytest

from rd_edge.core.errors import ConfigError, MetadataError
from rd_edge.core.metadata import ModelMetadata
from rd_edge.core.thresholds import (
    Thresholds,
    ThresholdValueError,
    check_threshold,
    thresholds_path,
)


@pytest.mark.parametrize("value", [0, 1, 0.25, -3.5, np.float32(0.5), np.int64(2), 1e300])
def test_finite_numbers_pass_as_floats(value):
    got = check_threshold(value)
    assert type(got) is float and got == float(value)


@pytest.mark.parametrize(
    "value, found",
    [
        ("0.5", "'0.5'"),
        (True, "True"),
        (None, "None"),
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        (10**400, "1000"),
        ([0.5], r"\[0.5\]"),
    ],
)
def test_everything_else_is_one_typed_error_that_names_source_and_value(value, found):
    with pytest.raises(
        ThresholdValueError, match=rf"^model.onnx: metadata: threshold must be a finite number, found {found}"
    ):
        check_threshold(value, "threshold", "model.onnx: metadata")
    with pytest.raises(ConfigError):  # an argument's error ...
        check_threshold(value)
    with pytest.raises(MetadataError):  # ... and a file's: the same class
        check_threshold(value)


def test_every_reader_uses_the_validator(tmp_path):
    meta = json.loads(ModelMetadata("r18", [64, 64], 0.5, None, "0" * 64, "t").to_json())
    for key in ("threshold", "pixel_threshold"):
        with pytest.raises(ThresholdValueError, match=f"{key} must be a finite number or null, found 'x'"):
            ModelMetadata.from_json(json.dumps({**meta, key: "x"}))
    path = Thresholds(0.5, 0.4).write(thresholds_path(tmp_path / "m.onnx"))
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "pixel_threshold": float("inf")}).replace("Infinity", "1e999"))
    with pytest.raises(ThresholdValueError, match="pixel_threshold must be a finite number"):
        Thresholds.read(path)
    assert Thresholds.from_dict(data, "x").image_threshold == 0.5  # the one name in the file
