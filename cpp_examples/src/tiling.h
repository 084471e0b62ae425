// Tiling of high-resolution frames, the same rules as rd_edge/core/tiling.py (the reference):
// an exact-cover grid of overlapping tiles (the last row/column aligned to the border, no
// padding), a strictly positive cosine/linear blending window per tile, and stitching by
// weighted average in float32; the score is the stitched map's maximum.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

namespace rd {

class Backend;
class Preprocessor;

struct Tiling {
  int tile_h = 0;
  int tile_w = 0;
  double overlap = 0.25;
  std::optional<cv::Size> frame;  // the frame size the model was trained for; none: any
  std::string window = "cosine";  // "cosine" | "linear"
};

// Start offsets along one axis: first 0, last length - tile, evenly spread. Throws rd::Error
// when length < tile.
std::vector<int> tile_starts(int length, int tile, double overlap);

// The tile grid of one frame size, with its blending weights (cached per frame size).
class TileGrid {
 public:
  TileGrid(const Tiling& tiling, cv::Size frame);
  const std::vector<cv::Rect>& boxes() const { return boxes_; }  // row-major
  cv::Size frame() const { return frame_; }
  // Tile maps (float32, tile size, boxes() order) -> float32 frame map.
  cv::Mat stitch(const std::vector<cv::Mat>& tile_maps) const;

 private:
  cv::Size frame_;
  std::vector<cv::Rect> boxes_;
  cv::Mat weight_;         // [tile_h, tile_w] float32
  cv::Mat inverse_total_;  // [H, W] float32: 1 / sum of the weights over the tiles
};

struct TiledInference {
  cv::Mat map;  // float32 at the frame's own size
  float score;  // max of the stitched map
  int tiles;
};

// All tiles of `frame` through `backend`, at most `max_batch` per call (0: all in one call),
// stitched. `preprocess` converts each tile at the model size.
TiledInference infer_tiled(Backend& backend, Preprocessor& preprocess, const Tiling& tiling, const cv::Mat& frame,
                           int max_batch = 0);

}  // namespace rd
