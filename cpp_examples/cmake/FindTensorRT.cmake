# FindTensorRT: the TensorRT runtime library (nvinfer) and headers.
#
# Hints: TensorRT_ROOT (CMake or environment variable) pointing at a TensorRT tarball or install
# prefix (include/NvInfer.h, lib/libnvinfer.so). Debian/Ubuntu/JetPack packages
# (/usr/include/<arch>, /usr/lib/<arch>) are found without hints.
#
# Defines TensorRT_FOUND, TensorRT_VERSION, TensorRT_INCLUDE_DIR, TensorRT_LIBRARY and the
# imported target TensorRT::nvinfer.

find_path(TensorRT_INCLUDE_DIR NvInfer.h
  HINTS ${TensorRT_ROOT} $ENV{TensorRT_ROOT}
  PATHS /usr/local/tensorrt /opt/tensorrt
  PATH_SUFFIXES include)
find_library(TensorRT_LIBRARY
  NAMES nvinfer nvinfer_10 nvinfer_11
  HINTS ${TensorRT_ROOT} $ENV{TensorRT_ROOT}
  PATHS /usr/local/tensorrt /opt/tensorrt
  PATH_SUFFIXES lib lib64 lib/x64)

# NV_TENSORRT_MAJOR is a number up to TensorRT 10.x, or an alias of TRT_MAJOR_ENTERPRISE
# (which holds the number) in later releases.
function(_tensorrt_version_part header name out)
  file(STRINGS "${header}" line REGEX "^#define ${name} ")
  string(REGEX REPLACE "^#define ${name} +([A-Za-z0-9_]+).*$" "\\1" value "${line}")
  if(value AND NOT value MATCHES "^[0-9]+$")
    file(STRINGS "${header}" line REGEX "^#define ${value} ")
    string(REGEX REPLACE "^#define ${value} +([0-9]+).*$" "\\1" value "${line}")
  endif()
  set(${out} "${value}" PARENT_SCOPE)
endfunction()

if(TensorRT_INCLUDE_DIR)
  foreach(header NvInferVersion.h NvInfer.h)
    if(EXISTS "${TensorRT_INCLUDE_DIR}/${header}" AND NOT TensorRT_VERSION)
      _tensorrt_version_part("${TensorRT_INCLUDE_DIR}/${header}" NV_TENSORRT_MAJOR _major)
      _tensorrt_version_part("${TensorRT_INCLUDE_DIR}/${header}" NV_TENSORRT_MINOR _minor)
      _tensorrt_version_part("${TensorRT_INCLUDE_DIR}/${header}" NV_TENSORRT_PATCH _patch)
      if(_major MATCHES "^[0-9]+$" AND _minor MATCHES "^[0-9]+$" AND _patch MATCHES "^[0-9]+$")
        set(TensorRT_VERSION "${_major}.${_minor}.${_patch}")
      endif()
    endif()
  endforeach()
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(TensorRT
  REQUIRED_VARS TensorRT_LIBRARY TensorRT_INCLUDE_DIR
  VERSION_VAR TensorRT_VERSION)
mark_as_advanced(TensorRT_INCLUDE_DIR TensorRT_LIBRARY)

if(TensorRT_FOUND AND NOT TARGET TensorRT::nvinfer)
  add_library(TensorRT::nvinfer UNKNOWN IMPORTED)
  set_target_properties(TensorRT::nvinfer PROPERTIES
    IMPORTED_LOCATION "${TensorRT_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${TensorRT_INCLUDE_DIR}")
endif()
