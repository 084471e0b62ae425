#include "image_io.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <system_error>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "errors.h"

namespace fs = std::filesystem;

namespace rd {
namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::string joined_extensions() {
  std::string text;
  for (const auto& ext : image_extensions()) text += (text.empty() ? "" : ", ") + ext;
  return text;
}

bool is_image_name(const fs::path& p) {
  const auto& exts = image_extensions();
  return std::find(exts.begin(), exts.end(), lower(p.extension().string())) != exts.end();
}

bool is_hidden(const fs::path& p) {
  const std::string name = p.filename().string();
  return !name.empty() && name[0] == '.';
}

// Sorted image files under `folder`; hidden files and folders are skipped.
std::vector<fs::path> list_images(const fs::path& folder, std::string& error) {
  std::vector<fs::path> files;
  std::error_code ec;
  fs::recursive_directory_iterator it(folder, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    const fs::path& p = it->path();
    if (is_hidden(p)) {
      if (it->is_directory(ec)) it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file(ec) && is_image_name(p)) files.push_back(p);
  }
  if (ec) error = "cannot list folder " + folder.string() + ": " + ec.message();
  std::sort(files.begin(), files.end());  // path::operator< compares element by element, as Python's Path
  return files;
}

// rd_edge.runtime.sources._unique_keys: relative path without suffix; the suffix is kept when
// two files differ only by it (a.png, a.jpg -> a_png, a_jpg).
std::vector<std::string> unique_keys(const std::vector<fs::path>& relative) {
  std::map<std::string, int> count;
  std::vector<std::string> stems;
  for (const auto& rel : relative) {
    fs::path stem = rel;
    stems.push_back(stem.replace_extension().generic_string());
    ++count[stems.back()];
  }
  std::vector<std::string> keys;
  for (size_t i = 0; i < relative.size(); ++i) {
    std::string suffix = lower(relative[i].extension().string());
    if (!suffix.empty()) suffix.erase(0, 1);
    keys.push_back(count[stems[i]] > 1 ? stems[i] + "_" + suffix : stems[i]);
  }
  return keys;
}

cv::Mat to_uint8(const cv::Mat& image, const std::string& path) {
  switch (image.depth()) {
    case CV_8U: return image;
    case CV_16U: {  // exact rounding of x / 257 (257 is odd: no ties)
      cv::Mat out(image.size(), CV_MAKETYPE(CV_8U, image.channels()));
      cv::Mat src = image.reshape(1), dst = out.reshape(1);
      for (int y = 0; y < src.rows; ++y) {
        const uint16_t* s = src.ptr<uint16_t>(y);
        uint8_t* d = dst.ptr<uint8_t>(y);
        for (int x = 0; x < src.cols; ++x) d[x] = static_cast<uint8_t>((static_cast<uint32_t>(s[x]) + 128) / 257);
      }
      return out;
    }
    case CV_32F:
    case CV_64F: {
      cv::Mat f64;
      image.convertTo(f64, CV_MAKETYPE(CV_64F, image.channels()));
      if (!cv::checkRange(f64, true, nullptr, 0.0, std::nextafter(1.0, 2.0))) {  // also rejects NaN and infinities
        double lo, hi;
        cv::minMaxLoc(f64.reshape(1), &lo, &hi);
        throw ImageError("cannot use image " + path + ": float image values must lie in [0, 1], found range [" +
                         std::to_string(lo) + ", " + std::to_string(hi) + "]");
      }
      cv::Mat out(image.size(), CV_MAKETYPE(CV_8U, image.channels()));
      cv::Mat src = f64.reshape(1), dst = out.reshape(1);
      for (int y = 0; y < src.rows; ++y) {
        const double* s = src.ptr<double>(y);
        uint8_t* d = dst.ptr<uint8_t>(y);
        for (int x = 0; x < src.cols; ++x) d[x] = static_cast<uint8_t>(std::nearbyint(s[x] * 255.0));  // half to even
      }
      return out;
    }
    default:
      throw ImageError("cannot use image " + path + ": unsupported pixel depth (supported: uint8, uint16, float in [0, 1])");
  }
}

}  // namespace

const std::vector<std::string>& image_extensions() {
  static const std::vector<std::string> exts = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"};
  return exts;
}

std::vector<InputItem> collect_inputs(const std::vector<std::string>& args) {
  std::vector<InputItem> items;
  for (const auto& arg : args) {
    const fs::path path(arg);
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
      std::string error;
      const std::vector<fs::path> files = list_images(path, error);
      if (files.empty()) {
        items.push_back({arg, "", error.empty() ? "no images in folder " + arg + " (looked recursively for " +
                                                      joined_extensions() + ")" : error});
        continue;
      }
      std::vector<fs::path> relative;
      for (const auto& f : files) relative.push_back(f.lexically_relative(path));
      const std::vector<std::string> keys = unique_keys(relative);
      for (size_t i = 0; i < files.size(); ++i) items.push_back({files[i].string(), keys[i], ""});
      if (!error.empty()) items.push_back({arg, "", error});
    } else if (fs::exists(path, ec)) {
      items.push_back({arg, unique_keys({path.filename()})[0], ""});
    } else {  // as Python's rd-infer: a SOURCE that does not exist is an error before any scoring (exit 1)
      throw Error("SOURCE '" + arg + "' not found: expected an image file or a folder");
    }
  }
  // Keys from different arguments may still collide (two a.png from different folders).
  std::map<std::string, int> seen;
  for (auto& item : items) {
    if (!item.error.empty()) continue;
    const int n = ++seen[item.key];
    if (n > 1) item.key += "_" + std::to_string(n);
  }
  return items;
}

cv::Mat read_image(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) throw ImageError("cannot read image " + path + ": it is a folder, expected an image file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ImageError("cannot read image " + path + ": cannot open the file");
  const std::vector<uchar> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (data.empty()) throw ImageError("cannot read image " + path + ": the file is empty (0 bytes)");

  cv::Mat image;
  try {
    image = cv::imdecode(data, cv::IMREAD_UNCHANGED);
  } catch (const cv::Exception&) {
    image.release();
  }
  if (image.empty()) {
    throw ImageError("cannot decode image " + path + " (" + std::to_string(data.size()) +
                     " bytes): the file is corrupt or not in a format OpenCV reads (expected one of " +
                     joined_extensions() + ")");
  }
  const int channels = image.channels();
  if (channels != 1 && channels != 3 && channels != 4) {
    throw ImageError("cannot use image " + path + ": " + std::to_string(channels) +
                     " channels (supported: grayscale, BGR, BGRA)");
  }
  image = to_uint8(image, path);
  if (channels == 1) {
    cv::cvtColor(image, image, cv::COLOR_GRAY2BGR);
  } else if (channels == 4) {
    cv::cvtColor(image, image, cv::COLOR_BGRA2BGR);
  }
  return image;
}

}  // namespace rd
