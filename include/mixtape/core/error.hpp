/// @file error.hpp
/// @brief Typed exceptions with file and line, and the checking macros used at every op boundary.
///
/// Bad input is reported where it enters (an op, a file, a registry lookup) by an exception that
/// names what was expected and what came, e.g.
/// `tensor.cpp:41: ShapeError: add: shapes must match, expected (4, 8), got (4, 9)`.
/// CUDA failures carry the failing expression, the error name and its text.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

#include "mixtape/config.hpp"

#if defined(MIXTAPE_WITH_CUDA)
#include <cuda_runtime_api.h>
#endif

namespace mixtape {

/// Base of every mixtape exception: the message, plus where it was raised.
class Error : public std::runtime_error {
 public:
  Error(const std::string& kind, const std::string& message, const char* file, int line)
      : std::runtime_error(std::string(file) + ":" + std::to_string(line) + ": " + kind + ": " + message),
        message_(message),
        file_(file),
        line_(line) {}

  /// The message without the location prefix.
  const std::string& message() const noexcept { return message_; }
  const char* file() const noexcept { return file_; }
  int line() const noexcept { return line_; }

 private:
  std::string message_;
  const char* file_;
  int line_;
};

#define MIXTAPE_DEFINE_ERROR(Name)                                        \
  class Name : public Error {                                             \
   public:                                                                \
    Name(const std::string& message, const char* file, int line)          \
        : Error(#Name, message, file, line) {}                            \
  }

/// Tensor shapes, strides or ranks that do not fit the operation.
MIXTAPE_DEFINE_ERROR(ShapeError);
/// An element type the operation does not take, or two that must agree and do not.
MIXTAPE_DEFINE_ERROR(DTypeError);
/// Tensors on different devices, or a device that does not exist.
MIXTAPE_DEFINE_ERROR(DeviceError);
/// An argument outside its valid range (a rounding mode, a size, an unknown name).
MIXTAPE_DEFINE_ERROR(ValueError);
/// An operation this translation unit cannot run (a CUDA kernel from a host-compiled `.cpp` unit,
/// or any CUDA work in a build without the CUDA runtime).
MIXTAPE_DEFINE_ERROR(BackendError);
/// An allocation that failed (host or device).
MIXTAPE_DEFINE_ERROR(OutOfMemoryError);

#undef MIXTAPE_DEFINE_ERROR

/// A CUDA runtime or library call that returned an error; `code()` is the library's status value.
class CudaError : public Error {
 public:
  CudaError(const std::string& message, int code, const char* file, int line)
      : Error("CudaError", message, file, line), code_(code) {}
  int code() const noexcept { return code_; }

 private:
  int code_;
};

namespace detail {

template <class... Args>
std::string concat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}

/// "(2, 3, 4)" for a shape; "()" for a scalar.
inline std::string shape_string(std::span<const std::int64_t> shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + ")";
}
inline std::string shape_string(std::initializer_list<std::int64_t> shape) {
  return shape_string(std::span<const std::int64_t>(shape.begin(), shape.size()));
}

#if defined(MIXTAPE_WITH_CUDA)
[[noreturn]] inline void throw_cuda_error(cudaError_t status, const char* expr, const char* file, int line) {
  if (status == cudaErrorMemoryAllocation) {
    throw OutOfMemoryError(concat(expr, " failed: ", cudaGetErrorName(status), " (", cudaGetErrorString(status), ")"),
                           file, line);
  }
  throw CudaError(concat(expr, " failed: ", cudaGetErrorName(status), " (", cudaGetErrorString(status), ")"),
                  static_cast<int>(status), file, line);
}
#endif

}  // namespace detail
}  // namespace mixtape

/// Throws `ErrorType` with the streamed message parts and the current file and line.
#define MIXTAPE_THROW(ErrorType, ...) \
  throw ErrorType(::mixtape::detail::concat(__VA_ARGS__), __FILE__, __LINE__)

/// Checks a precondition at an op boundary; on failure throws `ErrorType` with the message parts.
#define MIXTAPE_EXPECT(cond, ErrorType, ...)  \
  do {                                        \
    if (!(cond)) {                            \
      MIXTAPE_THROW(ErrorType, __VA_ARGS__);  \
    }                                         \
  } while (0)

#if defined(MIXTAPE_WITH_CUDA)
/// Checks a CUDA runtime call; throws CudaError (OutOfMemoryError for allocation failures).
#define MIXTAPE_CUDA_CHECK(expr)                                                       \
  do {                                                                                 \
    const cudaError_t mixtape_status_ = (expr);                                        \
    if (mixtape_status_ != cudaSuccess) {                                              \
      ::mixtape::detail::throw_cuda_error(mixtape_status_, #expr, __FILE__, __LINE__); \
    }                                                                                  \
  } while (0)
#endif
