// OpenCV DNN backend: the fused ONNX graph on the CPU (DNN_BACKEND_OPENCV, DNN_TARGET_CPU).
#include <vector>

#include <opencv2/dnn.hpp>

#include "backend.h"
#include "errors.h"

namespace rd {
namespace {

class OpenCvBackend final : public Backend {
 public:
  OpenCvBackend(const std::string& onnx_path, const ModelMetadata& meta)
      : path_(onnx_path), height_(meta.height), width_(meta.width) {
    net_ = cv::dnn::readNetFromONNX(onnx_path);
    if (net_.empty()) throw Error("OpenCV DNN could not load " + onnx_path);
    net_.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
    net_.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
  }

  std::string name() const override { return "opencv"; }

  std::string description() const override { return "OpenCV " CV_VERSION " DNN, CPU"; }

  Inference infer(const cv::Mat& blob) override {
    net_.setInput(blob, "image");
    net_.forward(outputs_, output_names_);
    const cv::Mat& map = outputs_[0];
    const cv::Mat& score = outputs_[1];
    const size_t pixels = static_cast<size_t>(height_) * static_cast<size_t>(width_);
    // anomaly_map is [1,1,H,W]; OpenCV 4.6 returns score [1] as shape (1, 1).
    if (map.type() != CV_32F || map.total() != pixels || !map.isContinuous() || score.type() != CV_32F ||
        score.total() != 1) {
      throw Error(path_ + ": OpenCV DNN returned anomaly_map with " + std::to_string(map.total()) +
                  " values and score with " + std::to_string(score.total()) + " for one image; expected " +
                  std::to_string(pixels) + " and 1 (is this an rd-export graph?)");
    }
    return {cv::Mat(height_, width_, CV_32F, const_cast<float*>(map.ptr<float>())), score.ptr<float>()[0]};
  }

 private:
  std::string path_;
  int height_;
  int width_;
  cv::dnn::Net net_;
  std::vector<cv::String> output_names_{"anomaly_map", "score"};
  std::vector<cv::Mat> outputs_;  // reused; the returned map points into outputs_[0]
};

}  // namespace

std::unique_ptr<Backend> make_opencv_backend(const std::string& onnx_path, const ModelMetadata& meta) {
  return std::make_unique<OpenCvBackend>(onnx_path, meta);
}

}  // namespace rd
