// The `rd_edge` metadata every exported model carries (see rd_edge/metadata.py): read from the
// ONNX metadata_props entry `rd_edge`, or from a TensorRT plan's sidecar `<plan>.json`.
// JSON is parsed with cv::FileStorage, so there is no dependency beyond OpenCV.
#pragma once

#include <optional>
#include <string>

#include "tiling.h"

namespace rd {

// The newest metadata format this reader knows; older ones (from 1) are read as well: version 2
// only writes out what version 1 left implicit (rd_edge/core/metadata.py, upgrade_metadata).
constexpr int kMetadataFormatVersion = 2;
constexpr const char* kMetadataKey = "rd_edge";
constexpr const char* kEngineRebuildHint = "rd-export model.onnx --engine model.engine";

struct ModelMetadata {
  int height = 0;  // image_size[0]
  int width = 0;   // image_size[1]
  std::optional<double> threshold;  // null when the checkpoint had no normal-score statistics
  std::optional<double> pixel_threshold;  // null: masks use the image threshold
  std::optional<double> min_normal;  // score_stats.min
  std::optional<double> max_normal;  // score_stats.max
  std::optional<double> std_normal;  // score_stats.std
  std::string backbone;
  std::string precision;
  std::optional<Tiling> tiling;  // models trained with rd-train --tile; none: whole frames
  // How frames are resized to the model size: "area-shrink/linear-enlarge" or (older models,
  // the default when the entry is absent) "linear".
  std::string resize = "linear";
};

// What a TensorRT plan was built with (the sidecar's own fields) plus the model's metadata.
struct EngineSidecar {
  std::string path;  // the sidecar file
  std::string tensorrt_version;
  std::string gpu_name;
  std::string compute_capability;  // "major.minor"
  std::string precision;
  int min_batch = 1;
  int max_batch = 1;
  int sm_count = 0;             // 0: not recorded (a sidecar from before the device identity)
  long long total_memory_mb = 0;
  std::string device_model;     // the Jetson board that built the plan, "" when not recorded
  ModelMetadata metadata;
};

// The device a plan is built for or runs on (rd_edge/core/sidecar.py GpuInfo); 0 / "" = unknown.
struct GpuIdentity {
  std::string name;
  std::string compute_capability;  // "major.minor"
  int sm_count = 0;
  long long total_memory_mb = 0;
  std::string device_model;  // Jetson board (/proc/device-tree/model), "" elsewhere
};

// "Orin compute 8.7 (16 SMs, 62841 MiB, NVIDIA Jetson AGX Orin Developer Kit)", as GpuInfo.describe().
std::string describe_gpu(const GpuIdentity& gpu);

// The GPU a sidecar records.
GpuIdentity built_for(const EngineSidecar& sidecar);

// Why a plan built for `sidecar`'s GPU cannot run on `running` ("" when it can), by the rule of
// rd_edge.core.sidecar.check_compatible: name and compute capability must match, and the SM
// count and the board wherever both sides recorded them (Jetson Orin Nano, NX and AGX share name
// and capability); a sidecar without a board is refused on a Jetson.
std::string gpu_mismatch(const EngineSidecar& sidecar, const GpuIdentity& running);

// This machine's Jetson board: /proc/device-tree/model when /etc/nv_tegra_release exists (both
// overridable, as in the Python runtime, by RD_EDGE_TEGRA_RELEASE / RD_EDGE_DEVICE_TREE_MODEL), else "".
std::string jetson_board();

// Parses the `rd_edge` JSON object; `source` names the file in error messages (rd::Error).
ModelMetadata parse_metadata_json(const std::string& json, const std::string& source);

// The `rd_edge` metadata_props entry of an ONNX model; rd::Error when missing or invalid.
ModelMetadata read_onnx_metadata(const std::string& onnx_path);

// "<plan>.json", e.g. model.engine.json.
std::string sidecar_path(const std::string& plan_path);

// Reads and validates the sidecar of `plan_path`; rd::Error when missing or invalid.
EngineSidecar read_engine_sidecar(const std::string& plan_path);

// `thresholds.json` beside a model (rd_edge/core/thresholds.py, written by rd-calibrate): thresholds
// changed without re-exporting. Between the command line and the metadata in precedence.
struct ThresholdsFile {
  std::string path;
  double image_threshold = 0.0;
  std::optional<double> pixel_threshold;  // null in the file: use the metadata's, else the image threshold
  std::string method;  // f1, zero-escape, normal-quantile:q, manual
};

// The thresholds of `model_path` (MODEL.thresholds.json, else a thresholds.json of this model in its
// folder); nullopt when there is none, rd::Error when it is
// not a valid version-1 rd-edge thresholds file or its numbers are not finite.
std::optional<ThresholdsFile> read_thresholds_file(const std::string& model_path);

// Rewrites the parts of valid JSON that OpenCV's JSON reader (4.x) rejects into forms it reads:
// null/NaN/Infinity become strings, true/false become 1/0, "\uXXXX" escapes become '?', "\/"
// becomes '/', empty keys become "_", and exponents are lower-cased.
std::string opencv_compatible_json(const std::string& json);

}  // namespace rd
