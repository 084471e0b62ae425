#include "options.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "errors.h"
#include "model.h"

namespace rd {
namespace {

// A threshold's text as a number; a text that is not one is a usage error (exit 2, as argparse's
// "invalid float value"). A number that is not finite (nan, inf, 1e999) parses, as in Python, and
// is refused once the whole command line has parsed (rd::Error: exit 1).
double parse_threshold(const std::string& text, const std::string& flag, std::string& not_finite) {
  errno = 0;
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  const std::string message = flag + " expects a number, got '" + text + "'";
  if (text.empty() || end != text.c_str() + text.size()) throw UsageError(message);
  if ((errno == ERANGE || !std::isfinite(value)) && not_finite.empty()) not_finite = message;
  return value;
}

}  // namespace

std::string usage() {
  std::string built;
  for (const auto& b : built_backends()) built += (built.empty() ? "" : ", ") + b;
  return "usage: rd_infer MODEL IMAGE_OR_DIR... [--backend opencv|trt] [--threshold T] [--pixel-threshold P]\n"
         "                [--out DIR]\n"
         "\n"
         "Scores images with an exported RD anomaly model (model.onnx from rd-export, or\n"
         "model.engine with its model.engine.json sidecar). Folders are walked recursively for\n"
         ".png .jpg .jpeg .bmp .tif .tiff files.\n"
         "\n"
         "  --backend opencv|trt  opencv: the ONNX model on the CPU with OpenCV DNN;\n"
         "                        trt: a TensorRT engine (default: by the model's suffix)\n"
         "  --threshold T         image threshold on the score; none given: thresholds.json\n"
         "                        beside the model (rd-calibrate), else the model's metadata\n"
         "  --pixel-threshold P   pixel threshold for masks and outlines; none given:\n"
         "                        thresholds.json, the model's, else the image threshold\n"
         "  --out DIR             write overlays (DIR/overlays, as Python's rd-infer), masks\n"
         "                        (DIR/masks) and float32 maps (DIR/maps/*.tiff) under the\n"
         "                        image's path in its folder, without suffix; a.png and a.jpg in\n"
         "                        one folder -> a_png, a_jpg; the same name from two arguments\n"
         "                        -> 006, 006_2\n"
         "  -h, --help            this help\n"
         "\n"
         "stdout: one line per image: <path> score=<float> normalized=<0..1> verdict=<OK|NG>\n"
         "        latency_ms=<float>, as Python's rd-infer\n"
         "stderr: header, unreadable images, latency summary.\n"
         "Exit code: 0 all images scored, 2 some images failed or a usage error (an unknown\n"
         "           option, a value that is not a number or not a choice, no IMAGE_OR_DIR),\n"
         "           1 error (model, backend, threshold, a SOURCE not found), as Python's rd-infer.\n"
         "Backends built: " + built + "\n";
}

Options parse_options(int argc, char** argv) {
  Options opt;
  std::vector<std::string> positional;
  bool only_positional = false;
  std::string not_finite;  // the first threshold that parsed but is not a finite number
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (only_positional || arg.size() < 2 || arg[0] != '-') {
      positional.push_back(arg);
      continue;
    }
    if (arg == "--") {
      only_positional = true;
      continue;
    }
    if (arg == "-h" || arg == "--help") {
      opt.help = true;
      return opt;
    }
    std::string value;
    const size_t eq = arg.find('=');
    const bool inline_value = arg.rfind("--", 0) == 0 && eq != std::string::npos;
    const std::string flag = inline_value ? arg.substr(0, eq) : arg;
    if (flag != "--backend" && flag != "--threshold" && flag != "--pixel-threshold" && flag != "--out") {
      throw UsageError("unknown option " + flag);
    }
    if (inline_value) {
      value = arg.substr(eq + 1);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      throw UsageError(flag + " expects a value");
    }
    if (flag == "--backend") {
      if (value != "opencv" && value != "trt" && value != "tensorrt") {
        throw UsageError("--backend expects opencv or trt, got '" + value + "'");
      }
      opt.backend = value;
    } else if (flag == "--threshold") {
      opt.threshold = parse_threshold(value, flag, not_finite);
    } else if (flag == "--pixel-threshold") {
      opt.pixel_threshold = parse_threshold(value, flag, not_finite);
    } else {
      if (value.empty()) throw UsageError("--out expects a folder");
      opt.out_dir = value;
    }
  }
  if (positional.size() < 2) throw UsageError("expected MODEL and at least one IMAGE_OR_DIR");
  if (!not_finite.empty()) throw Error(not_finite);
  opt.model = positional[0];
  opt.inputs.assign(positional.begin() + 1, positional.end());
  return opt;
}

}  // namespace rd
