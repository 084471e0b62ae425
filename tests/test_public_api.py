"""The packages' public names (issue 28: identities): every name in ``__all__`` is the object of
the module that defines it, lazily imported ones included; a misspelt name is an AttributeError."""

import importlib

import pytest

LAZY = {
    "rd_edge": {"load_checkpoint": "rd_edge.checkpoint", "save_checkpoint": "rd_edge.checkpoint"},
    "rd_edge.data": {
        "write_demo_dataset": "rd_edge.data.synthetic",
        "render_demo_image": "rd_edge.data.synthetic",
    },
    "rd_edge.runtime": {"Station": "rd_edge.runtime.station", "StationServer": "rd_edge.runtime.station"},
}


@pytest.mark.parametrize("package", sorted(LAZY))
def test_public_names_resolve_to_their_defining_modules_and_typos_fail(package):
    module = importlib.import_module(package)
    for name in module.__all__:
        assert getattr(module, name) is not None, name
    for name, home in LAZY[package].items():
        assert getattr(module, name) is getattr(importlib.import_module(home), name)
    with pytest.raises(AttributeError, match="load_chekpoint"):
        getattr(module, "load_chekpoint")
