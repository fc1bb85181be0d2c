/// @file numeric_exhaustive_cuda.hpp
/// @brief Plain C++ interface between the exhaustive GPU conversion test (numeric_exhaustive_cuda.cpp,
///        compiled by the host compiler) and its kernels (numeric_exhaustive_cuda.cu, nvcc): the
///        test compares what the device computes with what the host compiler's build of the same
///        headers computes, so the two sides must live in different translation units.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "mixtape/config.hpp"
#include "mixtape/numeric/rounding.hpp"

namespace mixtape::test::cuda_numeric {

/// The narrow formats (the device results are their encodings).
enum class Format : int { f16, bf16, e4m3, e5m2 };
inline constexpr Format kFormats[] = {Format::f16, Format::bf16, Format::e4m3, Format::e5m2};

/// All formats a conversion can target, for the code-by-code and double tests.
enum class Target : int { f16, bf16, e4m3, e5m2, f32, f64 };
inline constexpr Target kTargets[] = {Target::f16, Target::bf16, Target::e4m3, Target::e5m2, Target::f32, Target::f64};

/// splitmix64's finalizer: a well-mixed 64-bit function of a counter.
MIXTAPE_HOST_DEVICE constexpr std::uint64_t mix64(std::uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/// The stochastic-rounding word of input number `index` (the same on both sides).
MIXTAPE_HOST_DEVICE constexpr std::uint32_t random_word(std::uint64_t index) {
  return static_cast<std::uint32_t>(mix64(index) >> 32);
}

/// Random double number `index`: odd indices any bit pattern, even ones a random mantissa with an
/// exponent in [-160, 40) (every format's range, subnormals and overflow included).
MIXTAPE_HOST_DEVICE constexpr std::uint64_t random_double_bits(std::uint64_t index) {
  const std::uint64_t r = mix64(index ^ 0x5DEECE66Dull);
  if (index & 1) return r;
  const std::uint64_t exponent = 1023 - 160 + (mix64(r) % 200);
  return (r & 0x800FFFFFFFFFFFFFull) | (exponent << 52);
}

/// Owns the device buffers and a pinned host buffer of `capacity` elements of up to 8 bytes.
class DeviceConverter {
 public:
  explicit DeviceConverter(std::uint64_t capacity);
  ~DeviceConverter();
  DeviceConverter(const DeviceConverter&) = delete;
  DeviceConverter& operator=(const DeviceConverter&) = delete;

  /// Converts the float bit patterns begin .. begin + count - 1 to `format` with `rounding` on the
  /// device, with convert<>() (the random word of input b is random_word(b)). The encodings (1 or 2
  /// bytes each) land in host_output(). Returns how many of them differ from the device's own
  /// portable code path (convert_bits_portable), which isolates a CUDA instruction that disagrees.
  std::uint64_t narrow_floats(Format format, Rounding rounding, std::uint64_t begin, std::uint64_t count);

  /// Converts every encoding of `from` (2^8 or 2^16) to `to` with `rounding` (random word of code c:
  /// random_word(c)); the results, widened to 64-bit integers, land in host_output().
  void convert_codes(Format from, Target to, Rounding rounding);

  /// Converts random_double_bits(i), i < count, to `to` with `rounding` (random word
  /// random_word(i)); results as 64-bit integers in host_output().
  void convert_doubles(Target to, Rounding rounding, std::uint64_t count);

  const void* host_output() const { return host_; }
  std::string device_name() const;

 private:
  std::uint64_t capacity_;
  void* device_ = nullptr;
  void* host_ = nullptr;
  unsigned long long* d_count_ = nullptr;
};

}  // namespace mixtape::test::cuda_numeric
