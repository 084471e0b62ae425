// Frame -> network input, the same arithmetic as rd_edge/runtime/preprocess.py (the reference
// for every path): resize to the model size with cv::resize INTER_LINEAR (half-pixel centres,
// edge-clamped, no antialiasing), BGR -> RGB, x * float(1/255), HWC -> CHW, float32.
#pragma once

#include <opencv2/core.hpp>

namespace rd {

class Preprocessor {
 public:
  Preprocessor(int height, int width);

  // uint8 BGR HxWx3 frame -> float32 blob [1, 3, height, width] (RGB in [0, 1]). The blob is
  // owned by this object and overwritten by the next call.
  const cv::Mat& operator()(const cv::Mat& frame_bgr);

  int height() const { return height_; }
  int width() const { return width_; }

 private:
  int height_;
  int width_;
  cv::Mat resized_;  // reused resize buffer
  cv::Mat blob_;     // reused [1,3,H,W] float32
};

}  // namespace rd
