// rd_infer: score images with an exported Reverse Distillation model, the same pipeline as the
// Python rd-infer: read -> preprocess -> backend (OpenCV DNN or TensorRT) -> map at the frame
// size -> score vs threshold, optional heat-map overlays, latency summary.
#include <chrono>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <opencv2/imgcodecs.hpp>

#include "errors.h"
#include "image_io.h"
#include "latency.h"
#include "model.h"
#include "options.h"
#include "postprocess.h"
#include "preprocess.h"
#include "tiling.h"

namespace fs = std::filesystem;

namespace {

constexpr int kExitOk = 0;
constexpr int kExitError = 1;
constexpr int kExitInputFailed = 2;
constexpr int kExitUsage = 2;  // as argparse (Python's rd-infer)

void write_image(const fs::path& path, const cv::Mat& image) {
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  bool ok = false;
  try {
    ok = cv::imwrite(path.string(), image);
  } catch (const cv::Exception&) {
    ok = false;
  }
  if (!ok) throw rd::ImageError("cannot write " + path.string());
}

int run(const rd::Options& opt) {
  rd::Model model = rd::open_model(opt.model, opt.backend);
  const rd::ModelMetadata& meta = model.metadata;
  // Thresholds as the Python runtime takes them: command line, then MODEL.thresholds.json beside the
  // model (rd-calibrate), then the embedded metadata; the pixel threshold falls back to the image's.
  const std::optional<rd::ThresholdsFile> file = rd::read_thresholds_file(opt.model);
  if (!opt.threshold && !file && !meta.threshold) {
    throw rd::Error("the model's rd_edge metadata has no threshold (its checkpoint had no normal-score "
                    "statistics); pass one: rd_infer ... --threshold T, or calibrate: rd-calibrate MODEL --data DIR");
  }
  const double threshold = opt.threshold ? *opt.threshold : file ? file->image_threshold : *meta.threshold;
  const double scale = rd::score_scale(meta);  // normalized score: 0.5 at the threshold
  const double pixel_threshold = opt.pixel_threshold ? *opt.pixel_threshold
                                 : file && file->pixel_threshold ? *file->pixel_threshold
                                 : meta.pixel_threshold ? *meta.pixel_threshold : threshold;
  rd::Preprocessor preprocess(meta.height, meta.width, meta.resize == "area-shrink/linear-enlarge");

  // One warm-up run, so the first image's latency does not include lazy initialization.
  model.backend->infer(cv::Mat::zeros(4, std::vector<int>{1, 3, meta.height, meta.width}.data(), CV_32F));

  std::fprintf(stderr, "rd_infer: %s on %s (%s), input %dx%d, threshold %.6g, pixel threshold %.6g\n",
               opt.model.c_str(), model.backend->name().c_str(), model.backend->description().c_str(), meta.width,
               meta.height, threshold, pixel_threshold);
  if (file && (!opt.threshold || !opt.pixel_threshold)) {
    std::fprintf(stderr, "rd_infer: thresholds from %s (%s)\n", file->path.c_str(), file->method.c_str());
  }
  if (meta.tiling) {
    std::fprintf(stderr, "rd_infer: tiled model: tiles %dx%d, overlap %.3g, frame %s\n", meta.tiling->tile_w,
                 meta.tiling->tile_h, meta.tiling->overlap,
                 meta.tiling->frame ? (std::to_string(meta.tiling->frame->width) + "x" +
                                       std::to_string(meta.tiling->frame->height)).c_str() : "any");
  }

  rd::LatencyStats latency;
  int failed = 0, anomalous_count = 0;
  for (const rd::InputItem& item : rd::collect_inputs(opt.inputs)) {
    try {
      if (!item.error.empty()) throw rd::ImageError(item.error);
      const cv::Mat frame = rd::read_image(item.path);

      // Timed as the Python Detector's total_ms: preprocess + inference + map to the frame size.
      const auto t0 = std::chrono::steady_clock::now();
      rd::Inference out;
      cv::Mat frame_map;
      if (meta.tiling) {  // every tile of the frame in one backend call, stitched at frame size
        const rd::TiledInference tiled = rd::infer_tiled(*model.backend, preprocess, *meta.tiling, frame);
        out.score = tiled.score;
        frame_map = tiled.map;
      } else {
        out = model.backend->infer(preprocess(frame));
        frame_map = rd::resize_map(out.map, frame.size());
      }
      const bool anomalous = out.score > threshold;
      const auto t1 = std::chrono::steady_clock::now();
      const double ms = std::chrono::duration<double, std::milli>(t1 - t0).count();

      latency.add(ms);
      anomalous_count += anomalous ? 1 : 0;
      // %.9g: the float32 score exactly; the same line as Python's rd-infer.
      std::printf("%s score=%.9g normalized=%.3f verdict=%s latency_ms=%.3f\n", item.path.c_str(),
                  static_cast<double>(out.score), rd::normalize_score(out.score, threshold, scale),
                  anomalous ? "NG" : "OK", ms);
      std::fflush(stdout);

      if (!opt.out_dir.empty()) {
        const cv::Mat mask = rd::anomaly_mask(frame_map, pixel_threshold);
        const fs::path out_dir(opt.out_dir);
        write_image(out_dir / "overlays" / (item.key + ".png"),
                    rd::render_overlay(frame, frame_map, out.score, threshold, scale, pixel_threshold));
        write_image(out_dir / "masks" / (item.key + ".png"), mask);
        write_image(out_dir / "maps" / (item.key + ".tiff"), frame_map);  // float32, lossless
      }
    } catch (const rd::ImageError& e) {
      ++failed;
      std::fprintf(stderr, "warning: %s\n", e.what());
    } catch (const cv::Exception& e) {
      ++failed;
      std::fprintf(stderr, "warning: %s: OpenCV error: %s\n", item.path.c_str(), e.what());
    }
  }

  std::fprintf(stderr, "rd_infer: %zu images scored, %d anomalous, %d failed", latency.count(), anomalous_count,
               failed);
  if (latency.count() > 0) {
    std::fprintf(stderr, "; latency ms: count %zu, mean %.3f, p50 %.3f, p99 %.3f", latency.count(), latency.mean(),
                 latency.percentile(50), latency.percentile(99));
  }
  std::fprintf(stderr, "\n");
  return failed > 0 ? kExitInputFailed : kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  rd::Options opt;
  try {
    opt = rd::parse_options(argc, argv);
  } catch (const rd::UsageError& e) {
    std::fprintf(stderr, "rd_infer: error: %s\n\n%s", e.what(), rd::usage().c_str());
    return kExitUsage;
  } catch (const rd::Error& e) {
    std::fprintf(stderr, "rd_infer: error: %s\n", e.what());
    return kExitError;
  }
  if (opt.help) {
    std::printf("%s", rd::usage().c_str());
    return kExitOk;
  }
  try {
    return run(opt);
  } catch (const rd::Error& e) {
    std::fprintf(stderr, "rd_infer: error: %s\n", e.what());
  } catch (const cv::Exception& e) {
    std::fprintf(stderr, "rd_infer: error: OpenCV: %s\n", e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rd_infer: error: %s\n", e.what());
  }
  return kExitError;
}
