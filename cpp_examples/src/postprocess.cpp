#include "postprocess.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include <opencv2/imgproc.hpp>

namespace rd {
namespace {

constexpr double kScaleSigmas = 3.0;
constexpr int kMinDisplayWidth = 256;
const cv::Scalar kGroundTruth(255, 0, 255);  // magenta
const cv::Scalar kPrediction(255, 255, 255);  // white
const cv::Scalar kOk(0, 150, 0);
const cv::Scalar kNg(0, 0, 210);
const cv::Scalar kBand(40, 40, 40);
const cv::Scalar kWhite(255, 255, 255);
const cv::Scalar kBlack(0, 0, 0);

double log_odds() {
  static const double value = std::log(9.0);  // the odds multiply by 9 per `scale`
  return value;
}

// The classic JET ramp written out (BGR), as postprocess.jet_lut: not cv::COLORMAP_JET, whose
// table changed across OpenCV versions.
const std::array<cv::Vec3b, 256>& jet_lut() {
  static const std::array<cv::Vec3b, 256> lut = [] {
    std::array<cv::Vec3b, 256> t{};
    for (int i = 0; i < 256; ++i) {
      const double x = i / 255.0;
      auto channel = [x](double centre) {
        const double v = std::min(std::max(1.5 - std::fabs(4.0 * x - centre), 0.0), 1.0);
        return static_cast<uchar>(std::floor(v * 255.0 + 0.5));
      };
      t[i] = cv::Vec3b(channel(1.0), channel(2.0), channel(3.0));  // B, G, R
    }
    return t;
  }();
  return lut;
}

cv::Mat enlarge(const cv::Mat& image, int factor) {
  if (factor == 1) return image.clone();
  cv::Mat out(image.rows * factor, image.cols * factor, image.type());
  const size_t pixel = image.elemSize();
  for (int y = 0; y < out.rows; ++y) {
    const uchar* src = image.ptr<uchar>(y / factor);
    uchar* dst = out.ptr<uchar>(y);
    for (int x = 0; x < out.cols; ++x) std::copy_n(src + (x / factor) * pixel, pixel, dst + x * pixel);
  }
  return out;
}

void outline(cv::Mat& canvas, const cv::Mat& mask, int factor, const cv::Scalar& colour, int thickness) {
  if (mask.empty() || cv::countNonZero(mask) == 0) return;
  cv::Mat big = enlarge(mask, factor);
  std::vector<std::vector<cv::Point>> contours;
  cv::findContours(big, contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_SIMPLE);
  cv::drawContours(canvas, contours, -1, colour, thickness, cv::LINE_8);
}

const std::map<char, std::array<const char*, 7>>& glyphs() {
  // 5x7 bitmap glyphs: the same table as rd_edge/core/postprocess.py
  static const std::map<char, std::array<const char*, 7>> table = {
      {'0', {".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."}},
      {'1', {"..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."}},
      {'2', {".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"}},
      {'3', {"#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."}},
      {'4', {"...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."}},
      {'5', {"#####", "#....", "####.", "....#", "....#", "#...#", ".###."}},
      {'6', {"..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."}},
      {'7', {"#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."}},
      {'8', {".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."}},
      {'9', {".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."}},
      {'.', {".....", ".....", ".....", ".....", ".....", ".##..", ".##.."}},
      {'-', {".....", ".....", ".....", "#####", ".....", ".....", "....."}},
      {'+', {".....", "..#..", "..#..", "#####", "..#..", "..#..", "....."}},
      {'a', {".....", ".....", ".###.", "....#", ".####", "#...#", ".####"}},
      {'c', {".....", ".....", ".###.", "#....", "#....", "#...#", ".###."}},
      {'e', {".....", ".....", ".###.", "#...#", "#####", "#....", ".###."}},
      {'f', {"..##.", ".#..#", ".#...", "###..", ".#...", ".#...", ".#..."}},
      {'i', {"..#..", ".....", ".##..", "..#..", "..#..", "..#..", ".###."}},
      {'n', {".....", ".....", "#.##.", "##..#", "#...#", "#...#", "#...#"}},
      {'o', {".....", ".....", ".###.", "#...#", "#...#", "#...#", ".###."}},
      {'r', {".....", ".....", "#.##.", "##..#", "#....", "#....", "#...."}},
      {'s', {".....", ".....", ".####", "#....", ".###.", "....#", "####."}},
      {'G', {".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"}},
      {'K', {"#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"}},
      {'N', {"#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"}},
      {'O', {".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."}},
  };
  return table;
}

// Fills rows [y0, y1) and columns [x0, x1) (clipped to the image) with one colour.
void fill(cv::Mat& image, int y0, int y1, int x0, int x1, const cv::Scalar& colour) {
  const cv::Rect box = cv::Rect(cv::Point(x0, y0), cv::Point(x1, y1)) & cv::Rect(0, 0, image.cols, image.rows);
  if (box.area() > 0) image(box).setTo(colour);
}

// The 5x7 bitmap font, each font pixel a k x k block, top-left at (x, y) (postprocess.draw_text):
// not cv::putText, whose Hershey text differs between OpenCV 4 and 5.
void draw_text(cv::Mat& image, const std::string& text, int x, int y, int k, const cv::Scalar& colour) {
  for (size_t i = 0; i < text.size(); ++i) {
    const auto glyph = glyphs().find(text[i]);
    if (glyph == glyphs().end()) continue;  // space and unknown characters: blank
    for (int row = 0; row < 7; ++row) {
      for (int col = 0; col < 5; ++col) {
        if (glyph->second[row][col] != '#') continue;
        const int x0 = x + (6 * static_cast<int>(i) + col) * k, y0 = y + row * k;
        fill(image, y0, y0 + k, x0, x0 + k, colour);
      }
    }
  }
}

int text_width(const std::string& text, int k) { return std::max(static_cast<int>(text.size()) * 6 * k - k, 0); }

cv::Mat band(int width, int u, double score, double normalized, bool anomalous) {
  cv::Mat b(32 * u, width, CV_8UC3, kBand);
  fill(b, 3 * u, 21 * u, 4 * u, 32 * u, anomalous ? kNg : kOk);  // verdict box
  draw_text(b, anomalous ? "NG" : "OK", 7 * u, 5 * u, 2 * u, kWhite);
  // Scores, in half size when they do not fit.
  char text[96];
  std::snprintf(text, sizeof(text), "%.2f  score %.4g", normalized, score);
  const int k = text_width(text, 2 * u) <= width - 40 * u ? 2 * u : u;
  draw_text(b, text, 36 * u, k == 2 * u ? 5 * u : 9 * u, k, kWhite);
  // Colour bar: columns x0..x1 sweep 0..1, rows 24u..28u; threshold tick; score marker.
  const int x0 = 4 * u, x1 = width - 4 * u - 1, n = x1 - x0 + 1;
  for (int y = 24 * u; y < 29 * u; ++y) {
    cv::Vec3b* row = b.ptr<cv::Vec3b>(y);
    for (int i = 0; i < n; ++i) row[x0 + i] = jet_lut()[(static_cast<long long>(i) * 255) / std::max(n - 1, 1)];
  }
  const int mid = x0 + (n - 1) / 2;  // the threshold: 0.5
  fill(b, 23 * u, 30 * u, mid, mid + std::max(1, u / 2), kBlack);
  const int mark = x0 + static_cast<int>(normalized * (n - 1) + 0.5);  // this image's normalized score
  fill(b, 22 * u, 31 * u, std::max(mark - u, 0), mark + u + 1, kWhite);
  return b;
}

}  // namespace

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

double score_scale(const ModelMetadata& meta) {
  if (meta.std_normal) {
    const double s = kScaleSigmas * *meta.std_normal;
    if (std::isfinite(s) && s > 0) return s;
  }
  if (meta.min_normal && meta.max_normal) {
    const double s = *meta.max_normal - *meta.min_normal;
    if (std::isfinite(s) && s > 0) return s;
  }
  return 1.0;
}

double normalize_score(double score, double threshold, double scale) {
  const double z = (score - threshold) / scale;
  const double v = 1.0 / (1.0 + std::exp(-log_odds() * z));
  return std::min(std::max(v, 0.0), 1.0);
}

cv::Mat render_overlay(const cv::Mat& frame_bgr, const cv::Mat& frame_map, double score, double threshold,
                       double scale, double pixel_threshold, const cv::Mat& ground_truth) {
  const cv::Mat map = resize_map(frame_map, frame_bgr.size());
  // Heat colour per pixel on the score's scale (centred on the pixel threshold), blended 50/50 in
  // integers: (a + b + 1) / 2.
  cv::Mat blended(frame_bgr.size(), CV_8UC3);
  for (int y = 0; y < map.rows; ++y) {
    const float* m = map.ptr<float>(y);
    const cv::Vec3b* f = frame_bgr.ptr<cv::Vec3b>(y);
    cv::Vec3b* o = blended.ptr<cv::Vec3b>(y);
    for (int x = 0; x < map.cols; ++x) {
      const double v = normalize_score(static_cast<double>(m[x]), pixel_threshold, scale);
      const cv::Vec3b& h = jet_lut()[static_cast<int>(v * 255.0)];
      for (int c = 0; c < 3; ++c) o[x][c] = static_cast<uchar>((f[x][c] + h[c] + 1) / 2);
    }
  }
  const int factor = std::max(1, (kMinDisplayWidth + frame_bgr.cols - 1) / std::max(frame_bgr.cols, 1));
  cv::Mat canvas = enlarge(blended, factor);
  const int u = std::max(1, canvas.cols / 256);
  if (!ground_truth.empty()) outline(canvas, ground_truth, factor, kGroundTruth, u);
  const cv::Mat region = anomaly_mask(map, pixel_threshold);
  outline(canvas, region, factor, kPrediction, u);
  // NG, yet no pixel above the pixel threshold: said on the image (postprocess.render_overlay)
  if (score > threshold && cv::countNonZero(region) == 0) draw_text(canvas, "no area", 4 * u, 4 * u, 2 * u, kWhite);
  const double normalized = normalize_score(score, threshold, scale);
  cv::Mat out;
  cv::vconcat(band(canvas.cols, u, score, normalized, score > threshold), canvas, out);
  return out;
}

}  // namespace rd
