"""Metadata that can evolve: every older format version is upgraded step by step on read; a newer
one is refused with what to do. The version-1 fixture is what rd-export wrote before the pixel
threshold, tiling, teacher and resize fields existed."""

import copy
import json
from pathlib import Path

import pytest

from rd_edge.core.errors import MetadataError
from rd_edge.core.metadata import (
    METADATA_FORMAT_VERSION,
    RESIZE_DEFAULT,
    RESIZE_LINEAR,
    UPGRADES,
    ModelMetadata,
    upgrade_metadata,
)

V1 = Path(__file__).parent / "fixtures" / "metadata_v1.json"


def test_a_version_1_file_loads_with_what_those_models_did():
    meta = ModelMetadata.from_json(V1.read_text(), source=str(V1))
    assert meta.format_version == METADATA_FORMAT_VERSION == 2
    assert (meta.threshold, meta.pixel_threshold, meta.tiling, meta.teacher) == (0.57, None, None, None)
    assert meta.resize == RESIZE_LINEAR != RESIZE_DEFAULT  # read from the file's version, not a default
    assert meta.image_size == [256, 256] and meta.score_stats["count"] == 20


def test_written_metadata_is_current_and_explicit():
    written = json.loads(ModelMetadata.from_json(V1.read_text()).to_json())
    assert written["format_version"] == METADATA_FORMAT_VERSION and written["resize"] == RESIZE_LINEAR
    assert ModelMetadata.from_json(json.dumps(written)).resize == RESIZE_LINEAR  # round trip keeps the rule
    del written["resize"]
    with pytest.raises(MetadataError, match=r"lacks \['resize'\]"):  # version 2 always records it
        ModelMetadata.from_json(json.dumps(written))


def test_upgrade_steps_are_pure_and_chain_to_the_current_version():
    data = json.loads(V1.read_text())
    before = copy.deepcopy(data)
    assert upgrade_metadata(data)["format_version"] == METADATA_FORMAT_VERSION
    assert data == before  # the reader's dict is not changed behind its back
    assert sorted(UPGRADES) == list(range(1, METADATA_FORMAT_VERSION))  # a step from every older version
    kept = upgrade_metadata(dict(data, resize="area-shrink/linear-enlarge", pixel_threshold=0.4))
    assert (kept["resize"], kept["pixel_threshold"]) == ("area-shrink/linear-enlarge", 0.4)  # present: kept


@pytest.mark.parametrize(
    "version, message",
    [
        (METADATA_FORMAT_VERSION + 1, r"newer than this rd-edge reads \(1 to 2\); upgrade rd-edge"),
        (0, "format version 0, this rd-edge reads 1 to 2"),
        ("2", "format version '2'"),
        (True, "format version True"),
        (None, "format version None"),
    ],
)
def test_unknown_versions_are_refused_with_what_to_do(version, message):
    data = dict(json.loads(V1.read_text()), format_version=version)
    with pytest.raises(MetadataError, match=message):
        ModelMetadata.from_json(json.dumps(data), source="m.onnx")
