#include "metadata.h"

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <iterator>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <utility>
#include <vector>

#include <opencv2/core.hpp>

#include "errors.h"
#include "onnx_props.h"

namespace rd {
namespace {

bool is_number(const cv::FileNode& node) { return node.isInt() || node.isReal(); }

std::string describe(const cv::FileNode& node) {
  if (node.empty() || node.isNone()) return "nothing";
  if (node.isString()) return "the string \"" + node.string() + "\"";
  if (node.isSeq()) return "a list";
  if (node.isMap()) return "an object";
  return "a number";
}

// `json` (already made OpenCV-compatible) -> a FileStorage whose root is a map.
cv::FileStorage open_json(const std::string& json, const std::string& source) {
  cv::FileStorage fs;
  try {
    fs.open(json, cv::FileStorage::READ | cv::FileStorage::MEMORY | cv::FileStorage::FORMAT_JSON);
  } catch (const cv::Exception& e) {
    // OpenCV's JSON parse errors carry the reason at the end of `func` ("<text>(1): Unexpected character").
    const size_t at = e.func.rfind("): ");
    const std::string reason = at != std::string::npos ? e.func.substr(at + 3) : e.err;
    throw Error(source + ": metadata is not valid JSON (" + reason + ")");
  }
  if (!fs.isOpened() || !fs.root().isMap()) {
    throw Error(source + ": metadata must be a JSON object");
  }
  return fs;
}

std::optional<double> optional_number(const cv::FileNode& node, const std::string& what,
                                      const std::string& source) {
  if (node.empty() || node.isNone()) return std::nullopt;
  if (node.isString() && node.string() == "null") return std::nullopt;  // see opencv_compatible_json
  if (node.isString() && (node.string() == "NaN" || node.string().find("Infinity") != std::string::npos)) {
    return std::nullopt;  // not a usable number: treated as absent
  }
  if (!is_number(node)) throw Error(source + ": metadata " + what + " must be a number or null, found " + describe(node));
  return node.real();
}

std::string optional_string(const cv::FileNode& node) {
  return node.isString() ? node.string() : std::string();
}

// [a, b] of positive integers, or nullopt.
std::optional<std::pair<int, int>> int_pair(const cv::FileNode& node) {
  if (!node.isSeq() || node.size() != 2 || !node[0].isInt() || !node[1].isInt()) return std::nullopt;
  const int a = static_cast<int>(node[0]), b = static_cast<int>(node[1]);
  if (a <= 0 || b <= 0) return std::nullopt;
  return std::make_pair(a, b);
}

// The optional `tiling` object (rd_edge/core/tiling.py Tiling.to_dict()); absent or null: none.
std::optional<Tiling> parse_tiling(const cv::FileNode& node, const std::string& source) {
  if (node.empty() || node.isNone() || (node.isString() && node.string() == "null")) return std::nullopt;
  const std::string where = source + ": metadata tiling ";
  if (!node.isMap()) throw Error(where + "must be an object, found " + describe(node));
  Tiling tiling;
  const auto tile = int_pair(node["tile"]);
  if (!tile) throw Error(where + "tile must be [h, w] positive integers, found " + describe(node["tile"]));
  tiling.tile_h = tile->first;
  tiling.tile_w = tile->second;
  const cv::FileNode overlap = node["overlap"];
  if (!overlap.empty()) {
    if (!is_number(overlap) || overlap.real() < 0.0 || overlap.real() >= 1.0) {
      throw Error(where + "overlap must be a fraction in [0, 1), found " + describe(overlap));
    }
    tiling.overlap = overlap.real();
  }
  const cv::FileNode frame = node["frame"];
  if (!(frame.empty() || (frame.isString() && frame.string() == "any"))) {
    const auto size = int_pair(frame);
    if (!size) throw Error(where + "frame must be [H, W] or \"any\", found " + describe(frame));
    tiling.frame = cv::Size(size->second, size->first);
  }
  if (node["window"].isString()) tiling.window = node["window"].string();
  if (tiling.window != "cosine" && tiling.window != "linear") {
    throw Error(where + "window must be cosine or linear, found \"" + tiling.window + "\"");
  }
  return tiling;
}

ModelMetadata parse_metadata_node(const cv::FileNode& root, const std::string& source) {
  if (!root.isMap()) throw Error(source + ": '" + std::string(kMetadataKey) + "' metadata must be a JSON object");
  const cv::FileNode version = root["format_version"];
  if (!version.isInt() || static_cast<int>(version) < 1) {
    throw Error(source + ": metadata format version " + describe(version) + ", this rd_infer reads 1 to " +
                std::to_string(kMetadataFormatVersion) + "; re-export the model with a matching rd-edge");
  }
  if (static_cast<int>(version) > kMetadataFormatVersion) {
    throw Error(source + ": metadata format version " + std::to_string(static_cast<int>(version)) +
                " is newer than this rd_infer reads (1 to " + std::to_string(kMetadataFormatVersion) +
                "); rebuild rd_infer from the rd-edge that exported the model");
  }
  const cv::FileNode size = root["image_size"];
  ModelMetadata meta;
  if (size.isSeq() && size.size() == 2 && size[0].isInt() && size[1].isInt()) {
    meta.height = static_cast<int>(size[0]);
    meta.width = static_cast<int>(size[1]);
  }
  // As rd_edge.core.metadata.MAX_INPUT_SIDE: a larger input is a damaged or hostile file, not a model.
  if (meta.height <= 0 || meta.width <= 0 || meta.height > 8192 || meta.width > 8192) {
    throw Error(source + ": metadata image_size must be [H, W] integers in 1..8192, found " + describe(size));
  }
  meta.threshold = optional_number(root["threshold"], "threshold", source);
  meta.pixel_threshold = optional_number(root["pixel_threshold"], "pixel_threshold", source);
  const cv::FileNode stats = root["score_stats"];
  if (stats.isMap()) {
    meta.min_normal = optional_number(stats["min"], "score_stats.min", source);
    meta.max_normal = optional_number(stats["max"], "score_stats.max", source);
    meta.std_normal = optional_number(stats["std"], "score_stats.std", source);
  }
  meta.backbone = optional_string(root["backbone"]);
  meta.precision = optional_string(root["precision"]);
  meta.tiling = parse_tiling(root["tiling"], source);
  if (root["resize"].isString()) meta.resize = root["resize"].string();
  if (meta.resize != "linear" && meta.resize != "area-shrink/linear-enlarge") {
    throw Error(source + ": metadata resize rule '" + meta.resize + "' is unknown to this rd_infer; rebuild it "
                "with a matching rd-edge");
  }
  return meta;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read " + path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

void emit_string(const std::string& in, size_t& i, std::string& out) {
  // in[i] is the opening quote; leaves i after the closing quote.
  const size_t start = out.size();
  out += '"';
  for (++i; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '"') {
      ++i;
      break;
    }
    if (c == '\\' && i + 1 < in.size()) {
      const char e = in[i + 1];
      if (e == 'u' && i + 5 < in.size()) {  // \uXXXX: OpenCV 4.x cannot read it
        out += '?';
        i += 5;
      } else if (e == '/') {
        out += '/';
        ++i;
      } else {
        out += c;
        out += e;
        ++i;
      }
      continue;
    }
    out += c;
  }
  if (out.size() == start + 1) {  // empty string: OpenCV refuses it as a key
    size_t j = i;
    while (j < in.size() && std::isspace(static_cast<unsigned char>(in[j]))) ++j;
    if (j < in.size() && in[j] == ':') out += '_';
  }
  out += '"';
}

}  // namespace

std::string opencv_compatible_json(const std::string& in) {
  std::string out;
  out.reserve(in.size() + 16);
  size_t i = 0;
  while (i < in.size()) {
    const char c = in[i];
    if (c == '"') {
      emit_string(in, i, out);
    } else if (std::isalpha(static_cast<unsigned char>(c)) || (c == '-' && i + 1 < in.size() && in[i + 1] == 'I')) {
      size_t j = i + 1;
      while (j < in.size() && std::isalpha(static_cast<unsigned char>(in[j]))) ++j;
      const std::string word = in.substr(i, j - i);
      if (word == "true") {
        out += '1';
      } else if (word == "false") {
        out += '0';
      } else {
        out += '"' + word + '"';  // null, NaN, Infinity, -Infinity (or garbage: OpenCV reports it)
      }
      i = j;
    } else if (c == '-' || std::isdigit(static_cast<unsigned char>(c))) {
      while (i < in.size() && (std::isdigit(static_cast<unsigned char>(in[i])) || std::strchr("+-.eE", in[i]) != nullptr)) {
        out += static_cast<char>(std::tolower(static_cast<unsigned char>(in[i])));
        ++i;
      }
    } else {
      out += c;
      ++i;
    }
  }
  return out;
}

ModelMetadata parse_metadata_json(const std::string& json, const std::string& source) {
  cv::FileStorage fs = open_json(opencv_compatible_json(json), source);
  return parse_metadata_node(fs.root(), source);
}

ModelMetadata read_onnx_metadata(const std::string& onnx_path) {
  const auto props = read_onnx_metadata_props(onnx_path);
  const auto entry = props.find(kMetadataKey);
  if (entry == props.end() || entry->second.empty()) {
    throw Error(onnx_path + " has no '" + std::string(kMetadataKey) +
                "' metadata; it was not exported by rd-export. Export it with "
                "`rd-export model.pt -o model.onnx`.");
  }
  return parse_metadata_json(entry->second, onnx_path);
}

std::string sidecar_path(const std::string& plan_path) { return plan_path + ".json"; }

EngineSidecar read_engine_sidecar(const std::string& plan_path) {
  EngineSidecar car;
  car.path = sidecar_path(plan_path);
  std::ifstream probe(car.path);
  if (!probe) {
    throw Error(plan_path + " has no sidecar " + car.path + " (it carries the TensorRT version, GPU and " +
                kMetadataKey + " metadata); build the engine with rd-export, which writes both: " +
                kEngineRebuildHint);
  }
  cv::FileStorage fs = open_json(opencv_compatible_json(read_text(car.path)), car.path);
  const cv::FileNode root = fs.root();
  const std::vector<std::string> required = {"tensorrt_version", "gpu_name", "compute_capability", "precision",
                                             "min_batch", "max_batch", "onnx_sha256", kMetadataKey};
  std::string missing;
  for (const auto& key : required) {
    if (root[key].empty()) missing += (missing.empty() ? "" : ", ") + key;
  }
  if (!missing.empty()) {
    throw Error(car.path + ": sidecar lacks [" + missing + "]; rebuild the engine: " + kEngineRebuildHint);
  }
  car.tensorrt_version = optional_string(root["tensorrt_version"]);
  car.gpu_name = optional_string(root["gpu_name"]);
  car.precision = optional_string(root["precision"]);
  const cv::FileNode cc = root["compute_capability"];
  if (cc.isString()) {
    car.compute_capability = cc.string();
  } else if (cc.isSeq() && cc.size() == 2 && cc[0].isInt() && cc[1].isInt()) {
    car.compute_capability = std::to_string(static_cast<int>(cc[0])) + "." + std::to_string(static_cast<int>(cc[1]));
  } else {
    throw Error(car.path + ": compute_capability must be \"major.minor\" or [major, minor], found " + describe(cc));
  }
  const cv::FileNode min_batch = root["min_batch"], max_batch = root["max_batch"];
  // 4096: rd_edge.core.sidecar.MAX_ENGINE_BATCH, far above any real profile.
  if (!min_batch.isInt() || !max_batch.isInt() || static_cast<int>(min_batch) < 1 ||
      static_cast<int>(min_batch) > static_cast<int>(max_batch) || static_cast<int>(max_batch) > 4096) {
    throw Error(car.path + ": min_batch/max_batch must be integers with 1 <= min <= max <= 4096");
  }
  car.min_batch = static_cast<int>(min_batch);
  car.max_batch = static_cast<int>(max_batch);
  // The device identity (written since the SM count and board are recorded): absent = unknown.
  for (const char* key : {"sm_count", "total_memory_mb"}) {
    const cv::FileNode node = root[key];
    if (!node.empty() && !node.isNone() && (!node.isInt() || static_cast<int>(node) < 1)) {
      throw Error(car.path + ": " + key + " must be a positive integer, found " + describe(node));
    }
  }
  if (!root["sm_count"].empty()) car.sm_count = static_cast<int>(root["sm_count"]);
  if (!root["total_memory_mb"].empty()) car.total_memory_mb = static_cast<int>(root["total_memory_mb"]);
  const cv::FileNode board = root["device_model"];
  if (!board.empty() && !board.isNone() && !board.isString()) {
    throw Error(car.path + ": device_model must be a string, found " + describe(board));
  }
  car.device_model = optional_string(board);
  car.metadata = parse_metadata_node(root[kMetadataKey], car.path);
  return car;
}

std::string describe_gpu(const GpuIdentity& gpu) {
  std::string details;
  auto add = [&details](const std::string& part) { details += (details.empty() ? "" : ", ") + part; };
  if (gpu.sm_count > 0) add(std::to_string(gpu.sm_count) + " SMs");
  if (gpu.total_memory_mb > 0) add(std::to_string(gpu.total_memory_mb) + " MiB");
  if (!gpu.device_model.empty()) add(gpu.device_model);
  return gpu.name + " compute " + gpu.compute_capability + (details.empty() ? "" : " (" + details + ")");
}

GpuIdentity built_for(const EngineSidecar& sidecar) {
  return {sidecar.gpu_name, sidecar.compute_capability, sidecar.sm_count, sidecar.total_memory_mb,
          sidecar.device_model};
}

std::string gpu_mismatch(const EngineSidecar& sidecar, const GpuIdentity& running) {
  const GpuIdentity built = built_for(sidecar);
  const bool differs = built.name != running.name || built.compute_capability != running.compute_capability ||
                       (built.sm_count > 0 && running.sm_count > 0 && built.sm_count != running.sm_count) ||
                       ((!built.device_model.empty() || !running.device_model.empty()) &&
                        built.device_model != running.device_model);
  if (!differs) return "";
  const std::string unrecorded = !running.device_model.empty() && built.device_model.empty()
                                     ? " (a sidecar from before boards were recorded)" : "";
  return "GPU " + describe_gpu(built) + unrecorded + " (running " + describe_gpu(running) + ")";
}

std::string jetson_board() {
  const char* release = std::getenv("RD_EDGE_TEGRA_RELEASE");
  if (!std::ifstream(release ? release : "/etc/nv_tegra_release")) return "";
  const char* model = std::getenv("RD_EDGE_DEVICE_TREE_MODEL");
  std::ifstream in(model ? model : "/proc/device-tree/model", std::ios::binary);
  if (!in) return "";
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  text = text.substr(0, text.find('\0'));  // the device tree ends the string with NUL
  const size_t first = text.find_first_not_of(" \t\r\n"), last = text.find_last_not_of(" \t\r\n");
  return first == std::string::npos ? "" : text.substr(first, last - first + 1);
}

std::optional<ThresholdsFile> read_thresholds_file(const std::string& model_path) {
  const size_t slash = model_path.find_last_of('/');
  const std::string folder = slash == std::string::npos ? std::string() : model_path.substr(0, slash + 1);
  const std::string name = model_path.substr(folder.size());
  ThresholdsFile t;
  // The model's own <name>.thresholds.json; else the folder's older thresholds.json, which belongs
  // to the model its "model" field names (any, when it names none), as the Python runtime reads it.
  t.path = model_path + ".thresholds.json";
  const bool legacy = !std::ifstream(t.path);
  if (legacy) t.path = folder + "thresholds.json";
  if (!std::ifstream(t.path)) return std::nullopt;
  cv::FileStorage fs = open_json(opencv_compatible_json(read_text(t.path)), t.path);
  const cv::FileNode root = fs.root();
  if (optional_string(root["format"]) != "rd_edge.thresholds") {
    throw Error(t.path + " is not an rd-edge thresholds file (expected a JSON object with format "
                "\"rd_edge.thresholds\"); write it with rd-calibrate or delete it");
  }
  const std::string owner = optional_string(root["model"]);
  if (legacy && !owner.empty() && owner != "null" && owner != name) {
    std::cerr << "warning: " << t.path << " belongs to " << owner << ", not to " << name
              << ": not used for it (thresholds belong to one model)\n";
    return std::nullopt;
  }
  if (!root["format_version"].isInt() || static_cast<int>(root["format_version"]) != 1) {
    throw Error(t.path + ": thresholds format version " + describe(root["format_version"]) +
                ", this rd_infer reads 1; rerun rd-calibrate");
  }
  // NaN/Infinity would silently pass or flag every part: refused, as the Python runtime does.
  const cv::FileNode image = root["image_threshold"];
  if (!is_number(image) || !std::isfinite(image.real())) {
    throw Error(t.path + ": image_threshold must be a finite number, found " + describe(image) + "; rerun rd-calibrate");
  }
  t.image_threshold = image.real();
  const cv::FileNode pixel = root["pixel_threshold"];
  if (is_number(pixel) && std::isfinite(pixel.real())) {
    t.pixel_threshold = pixel.real();
  } else if (!(pixel.empty() || pixel.isNone() || (pixel.isString() && pixel.string() == "null"))) {
    throw Error(t.path + ": pixel_threshold must be a finite number or null, found " + describe(pixel));
  }
  t.method = optional_string(root["method"]);
  return t;
}

}  // namespace rd
