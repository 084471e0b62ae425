// Opens a model file: reads its metadata (ONNX metadata_props or the engine sidecar) and picks
// the backend that runs it.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "backend.h"
#include "metadata.h"

namespace rd {

struct Model {
  ModelMetadata metadata;
  std::unique_ptr<Backend> backend;
};

// Backends compiled into this executable ("opencv", and "trt" when TensorRT was found).
std::vector<std::string> built_backends();

// `backend`: "" (by suffix: .engine/.plan -> trt, anything else -> opencv), "opencv", "trt"
// (or "tensorrt"). Throws rd::Error with what to do when the model or backend cannot be used.
Model open_model(const std::string& path, const std::string& backend);

}  // namespace rd
