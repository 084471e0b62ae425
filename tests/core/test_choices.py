"""The one list of each choice: str Enums whose members are their plain strings."""

import json

from rd_edge.core.choices import BackendName, CalibrationMethod, Precision, values


def test_members_are_their_strings_everywhere():
    assert Precision.FP16 == "fp16" and str(Precision.FP16) == "fp16" and f"{BackendName.TRT}" == "trt"
    assert (
        json.dumps({"precision": Precision.INT8}) == '{"precision": "int8"}'
    )  # metadata keeps plain strings


def test_values_are_argparse_choices_in_declaration_order():
    assert values(Precision) == ["fp32", "fp16", "int8"]
    assert values(BackendName)[:2] == ["ort", "trt"]
    assert all(isinstance(v, str) for v in values(CalibrationMethod))
