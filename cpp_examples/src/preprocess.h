// Frame -> network input, the same arithmetic as rd_edge/core/preprocess.py (the reference for
// every path): resize to the model size by the model's rule -- "area-shrink/linear-enlarge":
// INTER_AREA when the frame is at least the model size in both axes, else INTER_LINEAR;
// "linear" (older models): INTER_LINEAR always -- then BGR -> RGB, x * float(1/255), HWC -> CHW.
#pragma once

#include <opencv2/core.hpp>

namespace rd {

class Preprocessor {
 public:
  Preprocessor(int height, int width, bool area_shrink);

  // uint8 BGR HxWx3 frame -> float32 blob [1, 3, height, width] (RGB in [0, 1]). The blob is
  // owned by this object and overwritten by the next call.
  const cv::Mat& operator()(const cv::Mat& frame_bgr);

  int height() const { return height_; }
  int width() const { return width_; }
  bool area_shrink() const { return area_shrink_; }  // the model's rule, also for fitting tiled frames

 private:
  int height_;
  int width_;
  bool area_shrink_;
  cv::Mat resized_;  // reused resize buffer
  cv::Mat blob_;     // reused [1,3,H,W] float32
};

}  // namespace rd
