// Image inputs: which files to read (folders walked recursively, as rd_edge.data.list_images)
// and how to decode them (as rd_edge.data.read_image: always HxWx3 uint8 BGR).
#pragma once

#include <string>
#include <vector>

#include <opencv2/core.hpp>

namespace rd {

// One image to score, or an input that failed before decoding (error set).
struct InputItem {
  std::string path;   // as printed: the argument, or folder/relative/path
  std::string key;    // relative path without suffix under which --out writes its images
  std::string error;  // non-empty: no such path, empty folder, unreadable folder
};

// Extensions looked for in folders (any case).
const std::vector<std::string>& image_extensions();

// Expands the IMAGE_OR_DIR arguments in order: a folder becomes its images (recursive, sorted,
// hidden names skipped), anything else is one item. Keys are unique across all items.
std::vector<InputItem> collect_inputs(const std::vector<std::string>& args);

// Decodes an image file as HxWx3 uint8 BGR: grayscale is replicated, alpha dropped, 16-bit
// scaled by 1/257 (rounded), float in [0, 1] scaled by 255 (rounded). Throws rd::ImageError.
cv::Mat read_image(const std::string& path);

}  // namespace rd
