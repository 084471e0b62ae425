# CUDA::cudart for the TensorRT backend (no CUDA compiler needed: rd_infer has no kernels).
# FindCUDAToolkit where CMake has it (3.17+); on CMake 3.16 (Ubuntu 20.04, JetPack 5) the
# runtime library and headers are found by hand under CUDAToolkit_ROOT, CUDA_HOME or
# /usr/local/cuda. Sets CUDAToolkit_FOUND and CUDAToolkit_VERSION.
if(NOT CMAKE_VERSION VERSION_LESS 3.17 AND NOT RD_CUDART_BY_HAND)
  find_package(CUDAToolkit)
  return()
endif()

find_path(RD_CUDART_INCLUDE_DIR cuda_runtime_api.h
  HINTS ${CUDAToolkit_ROOT} $ENV{CUDAToolkit_ROOT} $ENV{CUDA_HOME} /usr/local/cuda
  PATH_SUFFIXES include targets/aarch64-linux/include targets/x86_64-linux/include)
find_library(RD_CUDART_LIBRARY cudart
  HINTS ${CUDAToolkit_ROOT} $ENV{CUDAToolkit_ROOT} $ENV{CUDA_HOME} /usr/local/cuda
  PATH_SUFFIXES lib64 lib targets/aarch64-linux/lib targets/x86_64-linux/lib)
mark_as_advanced(RD_CUDART_INCLUDE_DIR RD_CUDART_LIBRARY)
set(CUDAToolkit_FOUND FALSE)
if(RD_CUDART_INCLUDE_DIR AND RD_CUDART_LIBRARY)
  set(CUDAToolkit_FOUND TRUE)
  set(CUDAToolkit_VERSION "runtime ${RD_CUDART_LIBRARY}")
  file(STRINGS "${RD_CUDART_INCLUDE_DIR}/cuda_runtime_api.h" _rd_cudart_version REGEX "^#define CUDART_VERSION +[0-9]+")
  if(_rd_cudart_version MATCHES "([0-9]+)$")
    math(EXPR _rd_major "${CMAKE_MATCH_1} / 1000")
    math(EXPR _rd_minor "(${CMAKE_MATCH_1} % 1000) / 10")
    set(CUDAToolkit_VERSION "${_rd_major}.${_rd_minor}")
  endif()
  if(NOT TARGET CUDA::cudart)
    add_library(CUDA::cudart UNKNOWN IMPORTED)
    set_target_properties(CUDA::cudart PROPERTIES
      IMPORTED_LOCATION "${RD_CUDART_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${RD_CUDART_INCLUDE_DIR}")
  endif()
  message(STATUS "Found CUDA runtime: ${RD_CUDART_LIBRARY} (CUDA ${CUDAToolkit_VERSION})")
endif()
