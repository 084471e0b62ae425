#include "preprocess.h"

#include <opencv2/imgproc.hpp>

#include "errors.h"

namespace rd {

Preprocessor::Preprocessor(int height, int width, bool area_shrink)
    : height_(height), width_(width), area_shrink_(area_shrink) {
  const int shape[] = {1, 3, height, width};
  blob_.create(4, shape, CV_32F);
}

const cv::Mat& Preprocessor::operator()(const cv::Mat& frame_bgr) {
  if (frame_bgr.type() != CV_8UC3) throw Error("preprocess expects an HxWx3 uint8 BGR frame");
  const cv::Mat* src = &frame_bgr;
  if (frame_bgr.rows != height_ || frame_bgr.cols != width_) {
    const bool shrinks = frame_bgr.rows >= height_ && frame_bgr.cols >= width_;
    const int interpolation = area_shrink_ && shrinks ? cv::INTER_AREA : cv::INTER_LINEAR;
    cv::resize(frame_bgr, resized_, cv::Size(width_, height_), 0.0, 0.0, interpolation);
    src = &resized_;
  }
  // Same float32 product as numpy's uint8 * np.float32(1.0 / 255.0): bit-identical values.
  const float scale = static_cast<float>(1.0 / 255.0);
  const size_t plane = static_cast<size_t>(height_) * static_cast<size_t>(width_);
  float* r = blob_.ptr<float>();
  float* g = r + plane;
  float* b = g + plane;
  for (int y = 0; y < height_; ++y) {
    const uchar* px = src->ptr<uchar>(y);
    for (int x = 0; x < width_; ++x, px += 3) {
      *b++ = static_cast<float>(px[0]) * scale;
      *g++ = static_cast<float>(px[1]) * scale;
      *r++ = static_cast<float>(px[2]) * scale;
    }
  }
  return blob_;
}

}  // namespace rd
