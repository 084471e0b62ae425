"""The ``rd_edge`` metadata of an .onnx file, read without the onnx package (a Jetson lacks it).

ONNX files are protobuf; the metadata is ModelProto field 14. This reader skips every other
field by its length, so it neither needs onnx nor reads hundreds of MB of weights into memory.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO, Dict, Iterator, List, Optional, Sequence, Tuple

from .errors import MetadataError
from .files import PathLike, not_a_file
from .metadata import METADATA_KEY, ModelMetadata


def read_onnx_metadata(onnx_path: PathLike) -> ModelMetadata:
    """The validated rd_edge metadata of an ONNX file; MetadataError when missing or unreadable."""
    path = Path(onnx_path)
    if not path.is_file():
        found = not_a_file(path)
        raise MetadataError(
            f"cannot read model metadata from {path}: {found}; expected an ONNX model written by rd-export"
        )
    try:
        entries = onnx_metadata_entries(path)
    except (OSError, ValueError) as exc:
        raise MetadataError(
            f"{path} is not a readable ONNX model ({exc}); re-export it with rd-export"
        ) from exc
    return metadata_from_entries(entries, str(path))


def metadata_from_entries(entries: Sequence[Tuple[str, str]], source: str) -> ModelMetadata:
    """ModelMetadata from metadata_props (key, value) pairs; exactly one ``rd_edge`` entry allowed
    (two could be read differently by different tools)."""
    values = [value for key, value in entries if key == METADATA_KEY]
    if len(values) > 1:
        raise MetadataError(
            f"{source} has {len(values)} '{METADATA_KEY}' metadata entries, expected one; "
            f"the file was edited after export: re-export it with rd-export"
        )
    return ModelMetadata.from_json(values[0] if values else None, source)


def onnx_metadata_props(path: PathLike) -> Dict[str, str]:
    """ModelProto.metadata_props as a dict (the last entry wins for a repeated key)."""
    return dict(onnx_metadata_entries(path))


# ModelProto.metadata_props is field 14, a repeated StringStringEntryProto {key = 1, value = 2}.
_METADATA_PROPS_FIELD = 14
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


def onnx_metadata_entries(path: PathLike) -> List[Tuple[str, str]]:
    """ModelProto.metadata_props (key, value) pairs in file order, straight from the protobuf wire format.

    Skips every other top-level field (the graph and its weights) by length, so it neither
    needs onnx nor reads hundreds of MB into memory. ValueError for a malformed file.
    """
    with open(path, "rb") as f:
        return [_string_entry(data) for data in _length_fields(f, _METADATA_PROPS_FIELD)]


# ModelProto.graph = 7 -> GraphProto.initializer = 5 -> TensorProto.external_data = 13 (key "location").
_GRAPH_FIELD, _INITIALIZER_FIELD, _EXTERNAL_DATA_FIELD = 7, 5, 13


def onnx_external_data(path: PathLike) -> List[str]:
    """The external data files the graph's initializers name (``location``), in first-use order,
    as written in the file (relative to the model's folder). ValueError for a malformed file."""
    locations: Dict[str, None] = {}
    with open(path, "rb") as f:
        for graph in _length_fields(f, _GRAPH_FIELD):
            for tensor in _length_fields(io.BytesIO(graph), _INITIALIZER_FIELD):
                for entry in _length_fields(io.BytesIO(tensor), _EXTERNAL_DATA_FIELD):
                    key, value = _string_entry(entry)
                    if key == "location":
                        locations[value] = None
    return list(locations)


# GraphProto.input = 11 -> ValueInfoProto {name = 1, type = 2} -> TypeProto.tensor_type = 1 ->
# Tensor.shape = 2 -> TensorShapeProto.dim = 1 -> Dimension {dim_value = 1 (varint), dim_param = 2}.
_INPUT_FIELD, _NAME_FIELD, _TYPE_FIELD, _TENSOR_TYPE_FIELD, _SHAPE_FIELD, _DIM_FIELD = 11, 1, 2, 1, 2, 1


def onnx_input_batch(path: PathLike, input_name: str) -> Optional[int]:
    """The fixed first dimension (batch) of graph input ``input_name``, None when it is symbolic
    or unknown (``rd-export --batch N`` writes N, the default a named dimension). Read from the
    protobuf wire format without onnx; ValueError for a malformed file."""
    with open(path, "rb") as f:
        for graph in _length_fields(f, _GRAPH_FIELD):
            for value_info in _length_fields(io.BytesIO(graph), _INPUT_FIELD):
                names = [
                    n.decode("utf-8", "replace") for n in _length_fields(io.BytesIO(value_info), _NAME_FIELD)
                ]
                if names != [input_name]:
                    continue
                for dim in _nested(value_info, _TYPE_FIELD, _TENSOR_TYPE_FIELD, _SHAPE_FIELD, _DIM_FIELD):
                    return _varint_field(dim, 1)  # the first dimension only
    return None


def _nested(data: bytes, *path: int) -> Iterator[bytes]:
    """The payloads at a path of length-delimited fields (each level: every occurrence)."""
    if not path:
        yield data
        return
    for inner in _length_fields(io.BytesIO(data), path[0]):
        yield from _nested(inner, *path[1:])


def _varint_field(data: bytes, wanted: int) -> Optional[int]:
    """The value of varint field ``wanted`` of a message, None when absent."""
    buf = io.BytesIO(data)
    value = None
    while True:
        tag = _read_varint(buf, allow_eof=True)
        if tag is None:
            return value
        field_number, wire_type = tag >> 3, tag & 7
        if wire_type == _VARINT:
            number = _read_length(buf)
            value = number if field_number == wanted else value
        elif wire_type == _LENGTH:
            buf.seek(_read_length(buf), io.SEEK_CUR)
        elif wire_type in (_FIXED64, _FIXED32):
            buf.seek(8 if wire_type == _FIXED64 else 4, io.SEEK_CUR)
        else:
            raise ValueError(f"unexpected protobuf wire type {wire_type}")


def _length_fields(f: BinaryIO, wanted: int) -> Iterator[bytes]:
    """The payloads of one length-delimited field of a message; every other field skipped."""
    while True:
        tag = _read_varint(f, allow_eof=True)
        if tag is None:
            return
        field_number, wire_type = tag >> 3, tag & 7
        if wire_type == _LENGTH:
            size = _read_length(f)
            if field_number == wanted:
                yield f.read(size)
            else:
                f.seek(size, io.SEEK_CUR)
        elif wire_type == _VARINT:
            _read_varint(f)
        elif wire_type in (_FIXED64, _FIXED32):
            f.seek(8 if wire_type == _FIXED64 else 4, io.SEEK_CUR)
        else:
            raise ValueError(f"unexpected protobuf wire type {wire_type} at byte {f.tell()}")


def _read_length(f: BinaryIO) -> int:
    """A varint that must be there (a length or a value), never end of file."""
    value = _read_varint(f)
    if value is None:  # only with allow_eof; kept for the type checker
        raise ValueError("truncated protobuf varint")
    return value


def _read_varint(f: BinaryIO, allow_eof: bool = False) -> Optional[int]:
    result = shift = 0
    while True:
        byte = f.read(1)
        if not byte:
            if allow_eof and shift == 0:
                return None
            raise ValueError("truncated protobuf varint")
        result |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return result
        shift += 7
        if shift > 63:
            raise ValueError("protobuf varint longer than 10 bytes")


def _string_entry(data: bytes) -> Tuple[str, str]:
    """(key, value) of a StringStringEntryProto."""
    fields = {1: "", 2: ""}
    buf = io.BytesIO(data)
    while True:
        tag = _read_varint(buf, allow_eof=True)
        if tag is None:
            return fields[1], fields[2]
        if tag & 7 != _LENGTH:
            raise ValueError("malformed metadata_props entry")
        size = _read_varint(buf)
        fields[tag >> 3] = buf.read(size).decode("utf-8", errors="replace")
