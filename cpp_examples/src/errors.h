// The one exception type rd_infer throws for problems the user can fix (bad model, bad
// metadata, missing backend, bad arguments). main() prints its message and exits with 1.
#pragma once

#include <stdexcept>
#include <string>

namespace rd {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// A single image that could not be used; the run reports it and goes on (exit code 2).
class ImageError : public Error {
 public:
  using Error::Error;
};

}  // namespace rd
