// Command line of rd_infer:
//   rd_infer MODEL IMAGE_OR_DIR... [--backend opencv|trt] [--threshold T] [--pixel-threshold P] [--out DIR]
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace rd {

struct Options {
  std::string model;
  std::vector<std::string> inputs;
  std::string backend;  // "" = by model suffix
  std::optional<double> threshold;
  std::optional<double> pixel_threshold;  // masks and outlines; default: the metadata's, else threshold
  std::string out_dir;  // "" = no overlays
  bool help = false;
};

// Throws rd::UsageError (exit 2) for a command line that does not parse, rd::Error (exit 1) for a
// threshold that parses but is not finite; each with a one-line reason.
Options parse_options(int argc, char** argv);

std::string usage();

}  // namespace rd
