// Reads ModelProto.metadata_props from an ONNX file without protobuf or onnx: a hand-written
// walk over the top-level protobuf fields that skips everything else (the graph included).
#pragma once

#include <map>
#include <string>

namespace rd {

// key -> value of every StringStringEntryProto in ModelProto field 14 (metadata_props).
// Throws rd::Error when the file cannot be read or is not a protobuf message.
std::map<std::string, std::string> read_onnx_metadata_props(const std::string& path);

}  // namespace rd
