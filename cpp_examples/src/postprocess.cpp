#include "postprocess.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include <opencv2/imgproc.hpp>

namespace rd {

cv::Mat resize_map(const cv::Mat& map, cv::Size frame_size) {
  if (map.size() == frame_size) return map;
  cv::Mat out;
  cv::resize(map, out, frame_size, 0.0, 0.0, cv::INTER_LINEAR);
  return out;
}

cv::Mat anomaly_mask(const cv::Mat& frame_map, double threshold) {
  cv::Mat mask;
  cv::compare(frame_map, cv::Scalar(threshold), mask, cv::CMP_GT);
  return mask;
}

DisplayRange display_range(double threshold, std::optional<double> min_normal, std::optional<double> max_normal) {
  double span = 1.0;
  if (min_normal && max_normal) {
    const double s = *max_normal - *min_normal;
    if (std::isfinite(s) && s > 0) span = s;
  }
  return {threshold - span / 2, threshold + span / 2};
}

cv::Mat heatmap_overlay(const cv::Mat& frame_bgr, const cv::Mat& frame_map, DisplayRange range,
                        const cv::Mat& mask, double alpha) {
  // Same float32 arithmetic as postprocess.heatmap_overlay: clip((m - vmin) / span, 0, 1) * 255,
  // truncated to uint8 (numpy's astype).
  const float vmin = static_cast<float>(range.vmin);
  const float span = static_cast<float>(std::max(range.vmax - range.vmin, 1e-12));
  cv::Mat scaled(frame_map.size(), CV_8U);
  for (int y = 0; y < frame_map.rows; ++y) {
    const float* m = frame_map.ptr<float>(y);
    uchar* s = scaled.ptr<uchar>(y);
    for (int x = 0; x < frame_map.cols; ++x) {
      const float v = std::min(std::max((m[x] - vmin) / span, 0.0f), 1.0f);
      s[x] = static_cast<uchar>(v * 255.0f);
    }
  }
  cv::Mat heat, out;
  cv::applyColorMap(scaled, heat, cv::COLORMAP_JET);
  cv::addWeighted(frame_bgr, 1.0 - alpha, heat, alpha, 0.0, out);
  if (!mask.empty() && cv::countNonZero(mask) > 0) {
    std::vector<std::vector<cv::Point>> contours;
    cv::findContours(mask, contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_SIMPLE);
    cv::drawContours(out, contours, -1, cv::Scalar(255, 255, 255), 1);
  }
  return out;
}

}  // namespace rd
