// The one exception type rd_infer throws for problems the user can fix (bad model, bad
// metadata, missing backend, a non-finite threshold). main() prints its message and exits with 1.
#pragma once

#include <stdexcept>
#include <string>

namespace rd {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// A command line that does not parse (an unknown option, a missing value, a value that is not a
// number or not a choice, no SOURCE): main() prints it with the usage and exits with 2, as
// Python's rd-infer (argparse) does.
class UsageError : public Error {
 public:
  using Error::Error;
};

// A single image that could not be used; the run reports it and goes on (exit code 2).
class ImageError : public Error {
 public:
  using Error::Error;
};

}  // namespace rd
