#include "model.h"

#include <algorithm>
#include <cctype>
#include <filesystem>

#include "errors.h"

namespace rd {
namespace {

bool is_plan(const std::string& path) {
  std::string ext = std::filesystem::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext == ".engine" || ext == ".plan";
}

}  // namespace

std::vector<std::string> built_backends() {
#ifdef RD_HAVE_TENSORRT
  return {"opencv", "trt"};
#else
  return {"opencv"};
#endif
}

Model open_model(const std::string& path, const std::string& backend_arg) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) throw Error("model " + path + " not found (expected a file)");
  const bool plan = is_plan(path);
  std::string backend = backend_arg.empty() ? (plan ? "trt" : "opencv") : backend_arg;
  if (backend == "tensorrt") backend = "trt";
  if (backend != "opencv" && backend != "trt") {
    throw Error("unknown backend '" + backend_arg + "' (expected opencv or trt)");
  }

  Model model;
  if (backend == "opencv") {
    if (plan) {
      throw Error(path + " is a TensorRT plan; OpenCV DNN runs the ONNX model it was built from: "
                  "rd_infer model.onnx ... --backend opencv");
    }
    model.metadata = read_onnx_metadata(path);
    model.backend = make_opencv_backend(path, model.metadata);
    return model;
  }

  if (!plan) {
    throw Error("the TensorRT backend runs a serialized plan (.engine) with its sidecar, not " + path +
                "; build one on the target machine: " + kEngineRebuildHint);
  }
  const EngineSidecar sidecar = read_engine_sidecar(path);  // metadata first: its errors say the most
  model.metadata = sidecar.metadata;
#ifdef RD_HAVE_TENSORRT
  model.backend = make_tensorrt_backend(path, sidecar);
  return model;
#else
  throw Error("this rd_infer was built without the TensorRT backend (CMake did not find TensorRT and CUDA); "
              "rebuild it where they are installed, e.g. cmake -DTensorRT_ROOT=/path/to/TensorRT, "
              "or run the ONNX model with --backend opencv");
#endif
}

}  // namespace rd
