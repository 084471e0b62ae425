// Output side, the same pixels as rd_edge/core/postprocess.py (tests/cpp checks they are identical):
// the map resized to the frame, the binary mask (map > pixel threshold), the graded normalized
// score and the overlay (heat map on the normalized-score scale, verdict band with the scores and
// a colour bar, predicted region outlined in white, ground truth in magenta). See docs/overlay.md.
#pragma once

#include <optional>

#include <opencv2/core.hpp>

#include "metadata.h"

namespace rd {

// [h,w] float32 map -> [H,W] at the frame's size (bilinear); the same Mat when sizes match.
cv::Mat resize_map(const cv::Mat& map, cv::Size frame_size);

// uint8 mask, 255 where map > threshold.
cv::Mat anomaly_mask(const cv::Mat& frame_map, double threshold);

// The raw-score distance that takes the normalized score from 0.5 to 0.9: 3 std of the held-out
// normal scores; max - min when std is missing or 0; 1.0 without statistics.
double score_scale(const ModelMetadata& meta);

// 1 / (1 + 9^(-(score - threshold) / scale)), clipped to [0, 1]: 0.5 at the threshold.
double normalize_score(double score, double threshold, double scale);

// The overlay (postprocess.render_overlay): frames narrower than 256 px enlarged by a whole factor,
// a 32u-high legend band on top (u = max(1, display width / 256)). ground_truth: optional mask.
cv::Mat render_overlay(const cv::Mat& frame_bgr, const cv::Mat& frame_map, double score, double threshold,
                       double scale, double pixel_threshold, const cv::Mat& ground_truth = cv::Mat());

}  // namespace rd
