// The inference backend interface: one preprocessed image in, its anomaly map and score out.
// Implementations: OpenCV DNN (backend_opencv.cpp, always built) and TensorRT
// (backend_tensorrt.cpp, built only when CMake finds TensorRT; RD_HAVE_TENSORRT is then 1).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "metadata.h"

namespace rd {

struct Inference {
  cv::Mat map;  // float32 [H, W] at the model's input size; valid until the next infer()
  float score;  // the graph's `score` output: max of the blurred map
};

class Backend {
 public:
  virtual ~Backend() = default;
  // Short name as given to --backend ("opencv", "trt").
  virtual std::string name() const = 0;
  // What runs the model, for the header line (e.g. "OpenCV 4.6.0 DNN, CPU").
  virtual std::string description() const = 0;
  // blob: float32 [1, 3, H, W], RGB in [0, 1] (Preprocessor's output).
  virtual Inference infer(const cv::Mat& blob) = 0;
  // blob: float32 [N, 3, H, W] (e.g. the tiles of a frame); one float32 [H, W] map per image,
  // owned by the caller. This default runs the images one by one through infer(); a backend
  // that runs a whole batch in one call overrides it.
  virtual std::vector<cv::Mat> infer_batch(const cv::Mat& blob) {
    const int n = blob.size[0];
    const int one[] = {1, blob.size[1], blob.size[2], blob.size[3]};
    const size_t image = blob.total() / static_cast<size_t>(n);
    std::vector<cv::Mat> maps;
    for (int i = 0; i < n; ++i) {
      const cv::Mat view(4, one, CV_32F, const_cast<float*>(blob.ptr<float>()) + static_cast<size_t>(i) * image);
      maps.push_back(infer(view).map.clone());
    }
    return maps;
  }
};

// Runs the fused ONNX graph with OpenCV DNN on the CPU. Throws rd::Error or cv::Exception.
std::unique_ptr<Backend> make_opencv_backend(const std::string& onnx_path, const ModelMetadata& meta);

#ifdef RD_HAVE_TENSORRT
// Deserializes a TensorRT plan built by rd-export on this machine's TensorRT and GPU
// (checked against the sidecar first). Throws rd::Error.
std::unique_ptr<Backend> make_tensorrt_backend(const std::string& plan_path, const EngineSidecar& sidecar,
                                               int device = 0);
#endif

}  // namespace rd
