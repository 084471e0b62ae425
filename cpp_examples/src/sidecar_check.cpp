// rd_sidecar_check: what rd_infer's TensorRT backend decides about a plan's sidecar, without
// TensorRT or a GPU: reads <plan>.json as rd_infer does and checks it against a GPU given on the
// command line by the same rule (gpu_mismatch). tests/cpp/test_sidecar_check.py runs it on the
// sidecar fixture the Python writer produces, next to rd_edge.core.sidecar.check_compatible.
//
//   rd_sidecar_check PLAN GPU_NAME COMPUTE_CAPABILITY SM_COUNT [BOARD]
//
// Prints the sidecar's GPU, then "compatible" (exit 0) or "incompatible: <why>" (exit 3);
// a missing or invalid sidecar is "error: ..." (exit 1).
#include <iostream>
#include <string>

#include "errors.h"
#include "metadata.h"

int main(int argc, char** argv) {
  if (argc < 5 || argc > 6) {
    std::cerr << "usage: rd_sidecar_check PLAN GPU_NAME COMPUTE_CAPABILITY SM_COUNT [BOARD]\n";
    return 2;
  }
  try {
    const rd::EngineSidecar sidecar = rd::read_engine_sidecar(argv[1]);
    const rd::GpuIdentity running{argv[2], argv[3], std::stoi(argv[4]), 0, argc == 6 ? argv[5] : ""};
    std::cout << "built for: " << rd::describe_gpu(rd::built_for(sidecar)) << "\n";
    const std::string why = rd::gpu_mismatch(sidecar, running);
    if (why.empty()) {
      std::cout << "compatible\n";
      return 0;
    }
    std::cout << "incompatible: " << why << "\n";
    return 3;
  } catch (const std::exception& exc) {
    std::cout << "error: " << exc.what() << "\n";
    return 1;
  }
}
