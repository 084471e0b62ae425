// TensorRT backend (TensorRT 8.5 .. 10.x and later): a serialized plan built by rd-export, run
// with the name-based I/O API (getNbIOTensors / getIOTensorName / getTensorIOMode,
// setInputShape, setTensorAddress, enqueueV3) on one CUDA stream. Page-locked host buffers and
// device buffers are allocated once, for every I/O tensor, and reused by every call.
// Compiled only when CMake finds TensorRT and the CUDA toolkit (RD_HAVE_TENSORRT).
#include <NvInfer.h>
#include <NvInferVersion.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "backend.h"
#include "errors.h"

#if NV_TENSORRT_MAJOR < 8 || (NV_TENSORRT_MAJOR == 8 && NV_TENSORRT_MINOR < 5)
#error "rd_infer's TensorRT backend needs TensorRT 8.5 or newer (name-based I/O and enqueueV3)"
#endif

namespace rd {
namespace {

constexpr const char* kInput = "image";
constexpr const char* kMapOutput = "anomaly_map";
constexpr const char* kScoreOutput = "score";

void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    throw Error(std::string("CUDA error in ") + what + ": " + cudaGetErrorName(status) + " (" +
                cudaGetErrorString(status) + ")");
  }
}

class Logger final : public nvinfer1::ILogger {
 public:
  void log(Severity severity, const char* msg) noexcept override {
    if (severity <= Severity::kWARNING) std::fprintf(stderr, "TensorRT: %s\n", msg);
  }
};

struct HostFree {
  void operator()(void* p) const noexcept { cudaFreeHost(p); }
};
struct DeviceFree {
  void operator()(void* p) const noexcept { cudaFree(p); }
};
struct StreamDestroy {
  void operator()(cudaStream_t s) const noexcept { cudaStreamDestroy(s); }
};
using HostBuffer = std::unique_ptr<void, HostFree>;
using DeviceBuffer = std::unique_ptr<void, DeviceFree>;
using Stream = std::unique_ptr<std::remove_pointer_t<cudaStream_t>, StreamDestroy>;

// Bytes per element; 8 (an upper bound) for the types this backend never reads (int64, bf16,
// fp8, int4, ...), so an unexpected extra output still gets a large enough buffer.
size_t element_size(nvinfer1::DataType type) {
  switch (type) {
    case nvinfer1::DataType::kFLOAT:
    case nvinfer1::DataType::kINT32: return 4;
    case nvinfer1::DataType::kHALF: return 2;
    case nvinfer1::DataType::kINT8:
    case nvinfer1::DataType::kBOOL: return 1;
    default: return 8;
  }
}

bool is_float_type(nvinfer1::DataType type) {
  return type == nvinfer1::DataType::kFLOAT || type == nvinfer1::DataType::kHALF;
}

struct Version {
  int major, minor, patch;
  std::string str() const { return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch); }
};

// getInferLibVersion(): major*1000 + minor*100 + patch up to TensorRT 8,
// (major*100 + minor)*100 + patch from TensorRT 10 on.
Version library_version() {
  const int v = getInferLibVersion();
  if (v >= 10000) return {v / 10000, (v / 100) % 100, v % 100};
  return {v / 1000, (v / 100) % 10, v % 100};
}

// "10.3.0" or "8.5.2.2" (the Python package's __version__) against the running library:
// the components the sidecar has, up to major.minor.patch, must match.
bool same_version(const std::string& recorded, const Version& running) {
  const int parts[] = {running.major, running.minor, running.patch};
  size_t pos = 0;
  for (int i = 0; i < 3 && pos < recorded.size(); ++i) {
    size_t end = recorded.find('.', pos);
    if (end == std::string::npos) end = recorded.size();
    try {
      if (std::stoi(recorded.substr(pos, end - pos)) != parts[i]) return false;
    } catch (const std::exception&) {
      return false;
    }
    pos = end + 1;
  }
  return !recorded.empty();
}

std::string dims_str(const nvinfer1::Dims& dims) {
  std::string s = "[";
  for (int i = 0; i < dims.nbDims; ++i) s += (i ? ", " : "") + std::to_string(static_cast<long long>(dims.d[i]));
  return s + "]";
}

struct IoTensor {
  std::string name;
  bool is_input = false;
  nvinfer1::DataType type = nvinfer1::DataType::kFLOAT;
  size_t count = 0;  // elements at the run batch
  size_t bytes = 0;
  HostBuffer host;
  DeviceBuffer device;
};

class TensorRtBackend final : public Backend {
 public:
  TensorRtBackend(const std::string& plan_path, const EngineSidecar& sidecar, int device)
      : path_(plan_path), height_(sidecar.metadata.height), width_(sidecar.metadata.width) {
    select_device(device, sidecar);
    check_cuda(cudaStreamCreateWithFlags(&raw_stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    stream_.reset(raw_stream_);
    load();
    check_io();
    batch_ = run_batch();
    allocate();
  }

  ~TensorRtBackend() override {
    if (stream_) cudaStreamSynchronize(stream_.get());  // nothing in flight when buffers are freed
  }

  std::string name() const override { return "trt"; }

  std::string description() const override {
    return "TensorRT " + library_version().str() + " on " + gpu_ + ", batch " + std::to_string(batch_);
  }

  Inference infer(const cv::Mat& blob) override {
    const size_t n = 3 * static_cast<size_t>(height_) * static_cast<size_t>(width_);
    if (blob.type() != CV_32F || blob.total() != n || !blob.isContinuous()) {
      throw Error("TensorRT backend: expected a float32 [1,3," + std::to_string(height_) + "," +
                  std::to_string(width_) + "] blob");
    }
    // Image 0 of the batch; the other slots (a static or minimum batch > 1) stay zero.
    write_floats(blob.ptr<float>(), n, *input_);
    cudaStream_t stream = stream_.get();
    check_cuda(cudaMemcpyAsync(input_->device.get(), input_->host.get(), input_->bytes, cudaMemcpyHostToDevice, stream),
               "copying the input to the GPU");
    if (!context_->enqueueV3(stream)) throw Error(path_ + ": TensorRT execution failed (see its log above)");
    for (IoTensor* t : {map_, score_}) {
      check_cuda(cudaMemcpyAsync(t->host.get(), t->device.get(), t->bytes, cudaMemcpyDeviceToHost, stream),
                 "copying an output from the GPU");
    }
    check_cuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize");

    Inference result;
    result.map = read_floats(*map_, static_cast<size_t>(height_) * static_cast<size_t>(width_), map_f32_)
                     .reshape(1, height_);
    cv::Mat score_f32;
    result.score = read_floats(*score_, 1, score_f32).at<float>(0);
    return result;
  }

 private:
  void select_device(int device, const EngineSidecar& sidecar) {
    int count = 0;
    const cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess || count == 0) {
      throw Error("the TensorRT backend needs an NVIDIA GPU: " +
                  std::string(status != cudaSuccess ? cudaGetErrorString(status) : "no CUDA device found"));
    }
    if (device < 0 || device >= count) {
      throw Error("CUDA device " + std::to_string(device) + " does not exist; found " + std::to_string(count));
    }
    check_cuda(cudaSetDevice(device), "cudaSetDevice");
    cudaDeviceProp prop{};
    check_cuda(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
    gpu_ = prop.name;
    const std::string cc = std::to_string(prop.major) + "." + std::to_string(prop.minor);
    const GpuIdentity this_gpu{gpu_, cc, prop.multiProcessorCount,
                               static_cast<long long>(prop.totalGlobalMem >> 20), jetson_board()};

    // A plan only runs with the TensorRT version and GPU that built it: say so before TensorRT does.
    std::vector<std::string> found;
    const Version running = library_version();
    if (!same_version(sidecar.tensorrt_version, running)) {
      found.push_back("TensorRT " + sidecar.tensorrt_version + " (running " + running.str() + ")");
    }
    const std::string gpu = gpu_mismatch(sidecar, this_gpu);  // the Python runtime's rule, SMs and board too
    if (!gpu.empty()) found.push_back(gpu);
    if (!found.empty()) {
      std::string what = found[0] + (found.size() > 1 ? " and " + found[1] : "");
      throw Error(path_ + " was built for " + what + "; a TensorRT plan only runs with the TensorRT version and GPU "
                  "that built it. Rebuild it on this machine from the ONNX model: " + kEngineRebuildHint);
    }
    gpu_ += " (compute " + cc + ")";
  }

  void load() {
    std::ifstream in(path_, std::ios::binary);
    if (!in) throw Error("cannot read engine " + path_);
    const std::vector<char> plan((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    runtime_.reset(nvinfer1::createInferRuntime(logger_));
    if (!runtime_) throw Error("TensorRT could not create a runtime (see its log above)");
    engine_.reset(runtime_->deserializeCudaEngine(plan.data(), plan.size()));
    if (!engine_) {
      throw Error("TensorRT could not deserialize " + path_ + " (see its log above); the plan is corrupt or from "
                  "another build; rebuild it: " + std::string(kEngineRebuildHint));
    }
    context_.reset(engine_->createExecutionContext());
    if (!context_) throw Error("TensorRT could not create an execution context for " + path_ + " (out of GPU memory?)");
  }

  // The contract: one input `image` [N,3,H,W] and the outputs `anomaly_map` and `score`.
  void check_io() const {
    std::vector<std::string> inputs, outputs;
    for (int i = 0; i < engine_->getNbIOTensors(); ++i) {
      const char* name = engine_->getIOTensorName(i);
      (engine_->getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT ? inputs : outputs).push_back(name);
    }
    const bool has_outputs = std::count(outputs.begin(), outputs.end(), kMapOutput) == 1 &&
                             std::count(outputs.begin(), outputs.end(), kScoreOutput) == 1;
    if (inputs.size() != 1 || inputs[0] != kInput || !has_outputs) {
      throw Error(path_ + ": engine I/O does not match the rd-export contract (input 'image', outputs "
                  "'anomaly_map' and 'score'); rebuild it from an rd-export ONNX: " + std::string(kEngineRebuildHint));
    }
    for (const char* name : {kInput, kMapOutput, kScoreOutput}) {
      if (!is_float_type(engine_->getTensorDataType(name))) {
        throw Error(path_ + ": tensor '" + name + "' is neither float32 nor float16");
      }
    }
    const nvinfer1::Dims in = engine_->getTensorShape(kInput);
    const bool spatial_ok = in.nbDims == 4 && in.d[1] == 3 && (in.d[2] == height_ || in.d[2] == -1) &&
                            (in.d[3] == width_ || in.d[3] == -1);
    if (!spatial_ok) {
      throw Error(path_ + ": engine input shape " + dims_str(in) + " does not match the metadata's [N, 3, " +
                  std::to_string(height_) + ", " + std::to_string(width_) + "]; rebuild it: " + kEngineRebuildHint);
    }
  }

  // Static batch: that batch. Dynamic: the smallest batch of optimization profile 0.
  int run_batch() const {
    const nvinfer1::Dims in = engine_->getTensorShape(kInput);
    if (in.d[0] > 0) return static_cast<int>(in.d[0]);
    const nvinfer1::Dims smallest = engine_->getProfileShape(kInput, 0, nvinfer1::OptProfileSelector::kMIN);
    return smallest.nbDims == 4 && smallest.d[0] > 0 ? static_cast<int>(smallest.d[0]) : 1;
  }

  void allocate() {
    if (!context_->setInputShape(kInput, nvinfer1::Dims4(batch_, 3, height_, width_))) {
      throw Error("TensorRT refused input shape [" + std::to_string(batch_) + ", 3, " + std::to_string(height_) +
                  ", " + std::to_string(width_) + "] for " + path_);
    }
    const int n = engine_->getNbIOTensors();
    tensors_.resize(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
      IoTensor& t = tensors_[static_cast<size_t>(i)];
      t.name = engine_->getIOTensorName(i);
      t.is_input = engine_->getTensorIOMode(t.name.c_str()) == nvinfer1::TensorIOMode::kINPUT;
      t.type = engine_->getTensorDataType(t.name.c_str());
      const nvinfer1::Dims dims = context_->getTensorShape(t.name.c_str());
      t.count = 1;
      for (int d = 0; d < dims.nbDims; ++d) {
        if (dims.d[d] < 0) {
          throw Error(path_ + ": tensor '" + t.name + "' has unresolved shape " + dims_str(dims) +
                      "; data-dependent output shapes are not supported");
        }
        t.count *= static_cast<size_t>(dims.d[d]);
      }
      t.bytes = std::max<size_t>(t.count * element_size(t.type), 1);
      void* host = nullptr;
      void* device = nullptr;
      check_cuda(cudaMallocHost(&host, t.bytes), "cudaMallocHost");  // page-locked: fast async copies
      t.host.reset(host);
      check_cuda(cudaMalloc(&device, t.bytes), "cudaMalloc");
      t.device.reset(device);
      std::memset(host, 0, t.bytes);
      check_cuda(cudaMemset(device, 0, t.bytes), "cudaMemset");
      if (!context_->setTensorAddress(t.name.c_str(), device)) {
        throw Error("TensorRT refused the buffer of tensor '" + t.name + "' in " + path_);
      }
    }
    input_ = &find(kInput);
    map_ = &find(kMapOutput);
    score_ = &find(kScoreOutput);
    const size_t pixels = static_cast<size_t>(height_) * static_cast<size_t>(width_);
    if (map_->count != static_cast<size_t>(batch_) * pixels || score_->count != static_cast<size_t>(batch_)) {
      throw Error(path_ + ": outputs anomaly_map " + dims_str(context_->getTensorShape(kMapOutput)) + " and score " +
                  dims_str(context_->getTensorShape(kScoreOutput)) + " do not fit a batch of " +
                  std::to_string(batch_) + " at " + std::to_string(height_) + "x" + std::to_string(width_));
    }
  }

  IoTensor& find(const char* name) {
    for (auto& t : tensors_) {
      if (t.name == name) return t;
    }
    throw Error(path_ + ": no tensor '" + name + "'");
  }

  // n float32 values -> the first n elements of t's host buffer, in t's type.
  static void write_floats(const float* src, size_t n, IoTensor& t) {
    if (t.type == nvinfer1::DataType::kFLOAT) {
      std::memcpy(t.host.get(), src, n * sizeof(float));
    } else {
      const cv::Mat from(1, static_cast<int>(n), CV_32F, const_cast<float*>(src));
      cv::Mat to(1, static_cast<int>(n), CV_16F, t.host.get());
      from.convertTo(to, CV_16F);  // `to` has the right size and type: written in place
    }
  }

  // The first n elements of t's host buffer as a float32 row (a view when t is float32).
  static cv::Mat read_floats(const IoTensor& t, size_t n, cv::Mat& scratch) {
    if (t.type == nvinfer1::DataType::kFLOAT) return cv::Mat(1, static_cast<int>(n), CV_32F, t.host.get());
    cv::Mat(1, static_cast<int>(n), CV_16F, t.host.get()).convertTo(scratch, CV_32F);
    return scratch;
  }

  std::string path_;
  int height_;
  int width_;
  int batch_ = 1;
  std::string gpu_;
  // Destroyed in reverse order: context, engine, runtime, logger, then the buffers and stream.
  cudaStream_t raw_stream_ = nullptr;
  Stream stream_;
  std::vector<IoTensor> tensors_;
  Logger logger_;
  std::unique_ptr<nvinfer1::IRuntime> runtime_;
  std::unique_ptr<nvinfer1::ICudaEngine> engine_;
  std::unique_ptr<nvinfer1::IExecutionContext> context_;
  IoTensor* input_ = nullptr;
  IoTensor* map_ = nullptr;
  IoTensor* score_ = nullptr;
  cv::Mat map_f32_;  // the map converted to float32 when the engine outputs float16
};

}  // namespace

std::unique_ptr<Backend> make_tensorrt_backend(const std::string& plan_path, const EngineSidecar& sidecar,
                                               int device) {
  return std::make_unique<TensorRtBackend>(plan_path, sidecar, device);
}

}  // namespace rd
