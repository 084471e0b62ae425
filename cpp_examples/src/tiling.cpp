#include "tiling.h"

#include <algorithm>
#include <cmath>

#include <opencv2/imgproc.hpp>

#include "backend.h"
#include "errors.h"
#include "postprocess.h"
#include "preprocess.h"

namespace rd {
namespace {

// float32 [length]; computed in double and rounded once, as numpy does it.
std::vector<float> window_1d(int length, const std::string& kind) {
  const double pi = std::acos(-1.0);
  std::vector<float> w(static_cast<size_t>(length));
  for (int i = 0; i < length; ++i) {
    const double c = (i + 0.5) / length;
    const double v = kind == "linear" ? 1.0 - std::abs(2.0 * c - 1.0) : 0.5 - 0.5 * std::cos(2.0 * pi * c);
    w[static_cast<size_t>(i)] = static_cast<float>(v);
  }
  return w;
}

// The frame as the model was trained to see it (rd_edge.core.tiling.fit_frame), by the model's
// resize rule: area_shrink ("area-shrink/linear-enlarge") or INTER_LINEAR always ("linear").
cv::Mat fit_frame(const cv::Mat& frame, const Tiling& tiling, bool area_shrink) {
  if (!tiling.frame || frame.size() == *tiling.frame) return frame;
  const cv::Size size = *tiling.frame;
  const bool shrink = size.height <= frame.rows && size.width <= frame.cols;
  cv::Mat out;
  cv::resize(frame, out, size, 0.0, 0.0, area_shrink && shrink ? cv::INTER_AREA : cv::INTER_LINEAR);
  return out;
}

}  // namespace

std::vector<int> tile_starts(int length, int tile, double overlap) {
  if (length < tile) {
    throw Error("a frame side of " + std::to_string(length) + " px is smaller than the model's tile of " +
                std::to_string(tile) + " px; expected frames of at least the tile size");
  }
  const int stride = std::max(1, tile - static_cast<int>(std::floor(overlap * tile + 0.5)));
  const int n = (length - tile + stride - 1) / stride + 1;
  std::vector<int> starts;
  for (int i = 0; i < n; ++i) starts.push_back(n == 1 ? 0 : static_cast<int>(static_cast<long long>(i) * (length - tile) / (n - 1)));
  return starts;
}

TileGrid::TileGrid(const Tiling& tiling, cv::Size frame) : frame_(frame) {
  for (int y : tile_starts(frame.height, tiling.tile_h, tiling.overlap)) {
    for (int x : tile_starts(frame.width, tiling.tile_w, tiling.overlap)) {
      boxes_.emplace_back(x, y, tiling.tile_w, tiling.tile_h);
    }
  }
  const std::vector<float> wy = window_1d(tiling.tile_h, tiling.window);
  const std::vector<float> wx = window_1d(tiling.tile_w, tiling.window);
  weight_.create(tiling.tile_h, tiling.tile_w, CV_32F);
  for (int i = 0; i < tiling.tile_h; ++i) {
    float* row = weight_.ptr<float>(i);
    for (int j = 0; j < tiling.tile_w; ++j) row[j] = wy[static_cast<size_t>(i)] * wx[static_cast<size_t>(j)];
  }
  cv::Mat total = cv::Mat::zeros(frame, CV_32F);
  for (const cv::Rect& box : boxes_) {
    cv::Mat roi = total(box);
    roi += weight_;
  }
  cv::divide(1.0, total, inverse_total_, CV_32F);
}

cv::Mat TileGrid::stitch(const std::vector<cv::Mat>& tile_maps) const {
  if (tile_maps.size() != boxes_.size()) {
    throw Error("expected " + std::to_string(boxes_.size()) + " tile maps, found " + std::to_string(tile_maps.size()));
  }
  cv::Mat out = cv::Mat::zeros(frame_, CV_32F);
  for (size_t k = 0; k < boxes_.size(); ++k) {
    cv::Mat roi = out(boxes_[k]);
    cv::Mat weighted = weight_.mul(tile_maps[k]);
    roi += weighted;
  }
  out = out.mul(inverse_total_);
  return out;
}

TiledInference infer_tiled(Backend& backend, Preprocessor& preprocess, const Tiling& tiling, const cv::Mat& frame,
                           int max_batch) {
  const cv::Mat fitted = fit_frame(frame, tiling, preprocess.area_shrink());
  const TileGrid grid(tiling, fitted.size());  // cheap next to the model; not cached here
  const std::vector<cv::Rect>& boxes = grid.boxes();
  const int total = static_cast<int>(boxes.size());
  const int step = max_batch > 0 ? std::min(max_batch, total) : total;
  const int h = preprocess.height(), w = preprocess.width();
  const size_t image = static_cast<size_t>(3) * static_cast<size_t>(h) * static_cast<size_t>(w);
  std::vector<cv::Mat> maps;
  maps.reserve(boxes.size());
  for (int start = 0; start < total; start += step) {
    const int n = std::min(step, total - start);
    const int shape[] = {n, 3, h, w};
    cv::Mat blob(4, shape, CV_32F);  // [n,3,h,w]
    for (int j = 0; j < n; ++j) {
      const cv::Mat& one = preprocess(fitted(boxes[static_cast<size_t>(start + j)]));  // [1,3,h,w]
      std::copy(one.ptr<float>(), one.ptr<float>() + image, blob.ptr<float>() + static_cast<size_t>(j) * image);
    }
    for (cv::Mat& m : backend.infer_batch(blob)) {
      maps.push_back(m.size() == boxes[0].size() ? m : resize_map(m, boxes[0].size()));
    }
  }
  const cv::Mat stitched = grid.stitch(maps);
  double max_value = 0.0;
  cv::minMaxLoc(stitched, nullptr, &max_value);
  return {resize_map(stitched, frame.size()), static_cast<float>(max_value), total};
}

}  // namespace rd
