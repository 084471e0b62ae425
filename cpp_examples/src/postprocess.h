// Output side, as rd_edge/runtime/postprocess.py and rd-infer --out do it: the map resized to
// the frame, the binary mask (map > threshold), and the JET heat-map overlay blended 50/50.
#pragma once

#include <optional>

#include <opencv2/core.hpp>

namespace rd {

// [h,w] float32 map -> [H,W] at the frame's size (bilinear); the same Mat when sizes match.
cv::Mat resize_map(const cv::Mat& map, cv::Size frame_size);

// uint8 mask, 255 where map > threshold.
cv::Mat anomaly_mask(const cv::Mat& frame_map, double threshold);

// Colour range of the overlay: the normalized-score scale, threshold in the middle
// (rd_edge.runtime.Detector.display_range): threshold -/+ (max_normal - min_normal) / 2,
// with a span of 1 when the statistics are missing or degenerate.
struct DisplayRange {
  double vmin;
  double vmax;
};
DisplayRange display_range(double threshold, std::optional<double> min_normal, std::optional<double> max_normal);

// JET colouring of the map over the frame (vmin..vmax clipped), alpha-blended; the mask's
// outline drawn in white when it has any pixel set.
cv::Mat heatmap_overlay(const cv::Mat& frame_bgr, const cv::Mat& frame_map, DisplayRange range,
                        const cv::Mat& mask, double alpha = 0.5);

}  // namespace rd
