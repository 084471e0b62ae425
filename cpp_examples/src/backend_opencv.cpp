// OpenCV DNN backend: the fused ONNX graph on the CPU (DNN_BACKEND_OPENCV, DNN_TARGET_CPU).
#include <cstdio>
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

  // The whole [N,3,H,W] batch in one forward pass where OpenCV DNN can run the graph batched;
  // OpenCV 4.6 cannot (its shape inference fixes the batch of rd-export's graph at 1), so the
  // first failure switches to one image per call for good.
  std::vector<cv::Mat> infer_batch(const cv::Mat& blob) override {
    const int n = blob.size[0];
    if (n > 1 && batched_) {
      try {
        return forward_batch(blob, n);
      } catch (const cv::Exception& e) {
        batched_ = false;
        std::fprintf(stderr, "rd_infer: OpenCV DNN cannot run this graph with a batch of %d (%s); running "
                     "tiles one by one\n", n, e.err.c_str());
      }
    }
    return Backend::infer_batch(blob);
  }

 private:
  std::vector<cv::Mat> forward_batch(const cv::Mat& blob, int n) {
    net_.setInput(blob, "image");
    net_.forward(outputs_, output_names_);
    const cv::Mat& map = outputs_[0];
    const size_t pixels = static_cast<size_t>(height_) * static_cast<size_t>(width_);
    if (map.type() != CV_32F || map.total() != pixels * static_cast<size_t>(n) || !map.isContinuous()) {
      throw Error(path_ + ": OpenCV DNN returned anomaly_map with " + std::to_string(map.total()) + " values for " +
                  std::to_string(n) + " images; expected " + std::to_string(pixels * static_cast<size_t>(n)) +
                  " (a graph exported with a fixed batch? re-export with rd-export --batch dynamic)");
    }
    std::vector<cv::Mat> maps;
    for (int i = 0; i < n; ++i) {
      const float* at = map.ptr<float>() + static_cast<size_t>(i) * pixels;
      maps.push_back(cv::Mat(height_, width_, CV_32F, const_cast<float*>(at)).clone());
    }
    return maps;
  }

  std::string path_;
  int height_;
  int width_;
  cv::dnn::Net net_;
  std::vector<cv::String> output_names_{"anomaly_map", "score"};
  std::vector<cv::Mat> outputs_;  // reused; the returned map points into outputs_[0]
  bool batched_ = true;           // false once OpenCV DNN failed on a batch > 1
};

}  // namespace

std::unique_ptr<Backend> make_opencv_backend(const std::string& onnx_path, const ModelMetadata& meta) {
  return std::make_unique<OpenCvBackend>(onnx_path, meta);
}

}  // namespace rd
