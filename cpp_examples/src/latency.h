// Per-image latencies and their summary (mean, percentiles as numpy.percentile's default
// linear interpolation).
#pragma once

#include <cstddef>
#include <vector>

namespace rd {

class LatencyStats {
 public:
  void add(double ms) { values_.push_back(ms); }
  size_t count() const { return values_.size(); }
  double mean() const;
  double percentile(double p) const;  // p in [0, 100]; 0 when empty

 private:
  std::vector<double> values_;
};

}  // namespace rd
