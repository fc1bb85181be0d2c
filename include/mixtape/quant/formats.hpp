/// @file formats.hpp
/// @brief Quantized storage formats (bitsandbytes 4-bit and int8, 8-bit dynamic optimizer state,
///        MS-AMP per-tensor scaled tensors) and `quant_traits<F>`: block size, bytes per block and
///        the byte counts the memory model and the allocators use.
///
/// A format is an empty tag type; the data lives in tensors whose byte size comes from these traits
/// (design.md, "Tensors": "storage size from the format's traits, so packed 4-bit blocks fit").
/// The plain scalar formats (`f16`, `bf16`, `e4m3`, `e5m2`, `f32`, `f64`) have traits too, with
/// `is_quantized == false`, so every storage role of a policy can be measured the same way.
///
/// @code
///   static_assert(quant_traits<quant::nf4>::block_size == 64);
///   auto bytes = quant_traits<quant::nf4_dq>::storage_bytes(n) + quant_traits<quant::nf4_dq>::statistics_bytes(n);
/// @endcode
///
/// Sources: precision-reference.md section 5 (bitsandbytes 0.50) and section 4 (MS-AMP).
#pragma once

#include <cstdint>
#include <type_traits>

#include "mixtape/core/error.hpp"
#include "mixtape/numeric/numeric.hpp"

namespace mixtape::quant {

/// Which elements share one scale.
enum class Granularity {
  none,        ///< no scale: a plain scalar format
  per_tensor,  ///< one scale per tensor (MS-AMP ScalingTensor)
  per_row,     ///< one scale per row (LLM.int8 `SCB`, row-wise absmax)
  per_block,   ///< one absmax per block of `block_size` consecutive elements (bitsandbytes)
};

/// The code table of a 4-bit format (precision-reference.md 5.1).
enum class FourBitCode {
  nf4,  ///< NormalFloat4: 16 normal quantiles normalized to [-1, 1]
  fp4,  ///< bitsandbytes FP4: 1 sign, 2 exponent, 1 mantissa bit (bias 2), divided by 12
};

/// bitsandbytes 4-bit blockwise format: blocks of 64 elements packed two per byte (first element in
/// the high nibble), an f32 absmax per block, or with double quantization an 8-bit absmax per block
/// plus an f32 absmax per 256 absmaxes and one f32 offset per tensor.
/// @tparam C            code table
/// @tparam DoubleQuant  `compress_statistics` (the "-dq" modes)
template <FourBitCode C, bool DoubleQuant>
struct block4 {
  static constexpr FourBitCode code = C;
  static constexpr bool double_quant = DoubleQuant;
};

using nf4 = block4<FourBitCode::nf4, false>;    ///< Lightning "nf4"
using nf4_dq = block4<FourBitCode::nf4, true>;  ///< Lightning "nf4-dq"
using fp4 = block4<FourBitCode::fp4, false>;    ///< Lightning "fp4"
using fp4_dq = block4<FourBitCode::fp4, true>;  ///< Lightning "fp4-dq"

/// LLM.int8 weights: int8 rows with an f32 absmax per row (`CB`, `SCB`); outlier columns (threshold,
/// a runtime value, 6.0 in Lightning) run in f16. As a GEMM compute format: int8 x int8 -> int32.
struct int8_rowwise {};

/// bitsandbytes 8-bit optimizer state: the dynamic map (signed for the first moment, unsigned for the
/// second), blocks of 256 with an f32 absmax per block.
/// @tparam Signed  signed map (`state1`, m) or unsigned map (`state2`, v)
template <bool Signed>
struct dynamic8 {
  static constexpr bool is_signed = Signed;
};
using dynamic8_signed = dynamic8<true>;     ///< bnb Adam8bit first moment
using dynamic8_unsigned = dynamic8<false>;  ///< bnb Adam8bit second moment

/// A scalar format with one scale per tensor (MS-AMP `ScalingTensor`: power-of-two scale, amax window).
/// The scale, its inverse and the amax history are per-tensor runtime state (not per parameter).
/// @tparam T  the element format, e.g. `e4m3` (MS-AMP weight gradients) or `f16` (O1/O2 weights)
template <class T>
struct scaled {
  using element_type = T;
};

namespace detail {

/// The scalar formats mixtape defines (numeric/); other types are not storage formats.
template <class T>
inline constexpr bool is_scalar_format_v = ScalarFormat<T>;

template <class T>
inline constexpr bool is_float8_v = std::is_same_v<T, e4m3> || std::is_same_v<T, e5m2>;

constexpr std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

/// One packed 4-bit block: 64 nibbles.
struct Packed4Block {
  std::uint8_t data[32];
};
static_assert(sizeof(Packed4Block) == 32, "a 4-bit block of 64 elements is 32 bytes");

/// One 8-bit dynamic-map block: 256 codes.
struct Dynamic8Block {
  std::uint8_t data[256];
};
static_assert(sizeof(Dynamic8Block) == 256, "an 8-bit block of 256 elements is 256 bytes");

inline constexpr std::int64_t kFourBitBlock = 64;    ///< bnb 4-bit default blocksize
inline constexpr std::int64_t kNestedBlock = 256;    ///< double-quant level-2 blocksize
inline constexpr std::int64_t kDynamic8Block = 256;  ///< bnb 8-bit optimizer blocksize (>= 0.44)
inline constexpr std::int64_t kAbsmaxBytes = 4;      ///< an f32 absmax or scale

}  // namespace detail

/// Storage traits of a format.
///
/// Every specialization provides: `is_quantized`, `bits` (stored bits per element, without
/// statistics), `granularity`, `block_size` (elements per block; 1 for scalars, 0 for per-row
/// formats whose rows depend on the shape), `bytes_per_block` (data bytes of one block; 0 where
/// `block_size` is 0), `bytes_per_element` (asymptotic data + statistics bytes per element, the
/// memory model's number: per-tensor constants such as a double-quant offset or an MS-AMP scale
/// are left out), `storage_bytes(numel)` (data bytes, rounded up to whole blocks),
/// `statistics_bytes(numel, row_length)` (scales / absmax bytes; `row_length` is read only by
/// per-row formats), `name`, `element_type` (stored element) and `math_type` (the type the
/// dequantized arithmetic runs in: f32 for every quantized format).
/// @tparam F  a format: a scalar (`f16`, ...), `quant::nf4`, `quant::int8_rowwise`, `quant::scaled<T>`, ...
template <class F>
struct quant_traits;

/// Plain scalar formats: not quantized, `bits` from `numeric_traits`.
/// @tparam T  f16, bf16, e4m3, e5m2, f32 or f64
template <class T>
requires detail::is_scalar_format_v<T>
struct quant_traits<T> {
  using element_type = T;
  using math_type = T;
  static constexpr bool is_quantized = false;
  static constexpr int bits = numeric_traits<T>::bits;
  static constexpr Granularity granularity = Granularity::none;
  static constexpr std::int64_t block_size = 1;
  static constexpr std::int64_t bytes_per_block = bits / 8;
  static constexpr double bytes_per_element = bits / 8.0;
  static constexpr const char* name = numeric_traits<T>::name;
  static constexpr std::int64_t storage_bytes(std::int64_t numel) { return numel * bytes_per_block; }
  static constexpr std::int64_t statistics_bytes(std::int64_t /*numel*/, std::int64_t /*row_length*/ = 0) { return 0; }
};

/// bitsandbytes 4-bit (nf4, fp4, with or without double quantization).
/// @tparam C   code table
/// @tparam DQ  double quantization of the absmax
template <FourBitCode C, bool DQ>
struct quant_traits<block4<C, DQ>> {
  using element_type = std::uint8_t;  // two codes per byte
  using math_type = f32;
  static constexpr bool is_quantized = true;
  static constexpr int bits = 4;
  static constexpr Granularity granularity = Granularity::per_block;
  static constexpr std::int64_t block_size = detail::kFourBitBlock;
  static constexpr std::int64_t bytes_per_block = sizeof(detail::Packed4Block);
  /// 0.5 data + 4/64 (f32 absmax), or 0.5 + 1/64 + 4/(64*256) with double quantization.
  static constexpr double bytes_per_element =
      DQ ? 0.5 + 1.0 / block_size + double(detail::kAbsmaxBytes) / double(block_size * detail::kNestedBlock)
         : 0.5 + double(detail::kAbsmaxBytes) / double(block_size);
  static constexpr const char* name = C == FourBitCode::nf4 ? (DQ ? "nf4-dq" : "nf4") : (DQ ? "fp4-dq" : "fp4");
  static constexpr std::int64_t storage_bytes(std::int64_t numel) {
    return detail::ceil_div(numel, block_size) * bytes_per_block;
  }
  /// f32 absmax per block; with double quantization a u8 absmax per block, an f32 absmax per 256
  /// blocks and one f32 offset.
  static constexpr std::int64_t statistics_bytes(std::int64_t numel, std::int64_t /*row_length*/ = 0) {
    const std::int64_t blocks = detail::ceil_div(numel, block_size);
    if constexpr (DQ) {
      return blocks + detail::ceil_div(blocks, detail::kNestedBlock) * detail::kAbsmaxBytes + detail::kAbsmaxBytes;
    } else {
      return blocks * detail::kAbsmaxBytes;
    }
  }
};

/// LLM.int8 row-wise int8 with an f32 absmax per row.
template <>
struct quant_traits<int8_rowwise> {
  using element_type = std::int8_t;
  using math_type = f32;
  static constexpr bool is_quantized = true;
  static constexpr int bits = 8;
  static constexpr Granularity granularity = Granularity::per_row;
  static constexpr std::int64_t block_size = 0;       // a row: depends on the shape
  static constexpr std::int64_t bytes_per_block = 0;  // idem
  /// 1 byte; the 4 bytes per row of statistics depend on the row length and are left out.
  static constexpr double bytes_per_element = 1.0;
  static constexpr const char* name = "int8-rowwise";
  static constexpr std::int64_t storage_bytes(std::int64_t numel) { return numel; }
  /// 4 bytes per row of `row_length` elements.
  /// @throws ValueError when `row_length` is not positive
  static constexpr std::int64_t statistics_bytes(std::int64_t numel, std::int64_t row_length = 0) {
    if (row_length <= 0) {
      MIXTAPE_THROW(ValueError, "int8-rowwise statistics need the row length, got ", row_length);
    }
    return detail::ceil_div(numel, row_length) * detail::kAbsmaxBytes;
  }
};

/// bitsandbytes 8-bit dynamic-map optimizer state.
/// @tparam Signed  signed (m) or unsigned (v) map
template <bool Signed>
struct quant_traits<dynamic8<Signed>> {
  using element_type = std::uint8_t;
  using math_type = f32;
  static constexpr bool is_quantized = true;
  static constexpr int bits = 8;
  static constexpr Granularity granularity = Granularity::per_block;
  static constexpr std::int64_t block_size = detail::kDynamic8Block;
  static constexpr std::int64_t bytes_per_block = sizeof(detail::Dynamic8Block);
  static constexpr double bytes_per_element = 1.0 + double(detail::kAbsmaxBytes) / double(block_size);
  static constexpr const char* name = Signed ? "dynamic8-signed" : "dynamic8-unsigned";
  static constexpr std::int64_t storage_bytes(std::int64_t numel) {
    return detail::ceil_div(numel, block_size) * bytes_per_block;
  }
  static constexpr std::int64_t statistics_bytes(std::int64_t numel, std::int64_t /*row_length*/ = 0) {
    return detail::ceil_div(numel, block_size) * detail::kAbsmaxBytes;
  }
};

/// A per-tensor scaled scalar (MS-AMP): the element's bytes, plus one f32 scale per tensor.
/// @tparam T  the element format
template <class T>
requires detail::is_scalar_format_v<T>
struct quant_traits<scaled<T>> {
  using element_type = T;
  using math_type = f32;  // MS-AMP dequantizes (x * scale_inv) in fp32
  static constexpr bool is_quantized = true;
  static constexpr int bits = numeric_traits<T>::bits;
  static constexpr Granularity granularity = Granularity::per_tensor;
  static constexpr std::int64_t block_size = 1;
  static constexpr std::int64_t bytes_per_block = bits / 8;
  static constexpr double bytes_per_element = bits / 8.0;
  static constexpr const char* name = "scaled";
  static constexpr std::int64_t storage_bytes(std::int64_t numel) { return numel * bytes_per_block; }
  static constexpr std::int64_t statistics_bytes(std::int64_t /*numel*/, std::int64_t /*row_length*/ = 0) {
    return detail::kAbsmaxBytes;
  }
};

namespace detail {
template <class F>
concept HasQuantTraits = requires {
  { quant_traits<F>::is_quantized } -> std::convertible_to<bool>;
  { quant_traits<F>::bytes_per_element } -> std::convertible_to<double>;
};
}  // namespace detail

/// True for every type with `quant_traits` (scalars and quantized formats).
/// @tparam F  any type
template <class F>
inline constexpr bool is_format_v = detail::HasQuantTraits<F>;

/// True for a quantized format whose scale covers a block or a row (nf4, fp4, int8 row-wise, the
/// 8-bit dynamic map): these cannot hold a trained parameter directly.
/// @tparam F  any type
template <class F>
inline constexpr bool is_block_quantized_v = [] {
  if constexpr (detail::HasQuantTraits<F>) {
    return quant_traits<F>::granularity == Granularity::per_block ||
           quant_traits<F>::granularity == Granularity::per_row;
  } else {
    return false;
  }
}();

/// True for `quant::scaled<T>`.
/// @tparam F  any type
template <class F>
inline constexpr bool is_scaled_v = false;
template <class T>
inline constexpr bool is_scaled_v<scaled<T>> = true;

// Numbers the rest of the library relies on (precision-reference.md 5.1, 5.3).
static_assert(quant_traits<nf4>::block_size == 64 && quant_traits<nf4>::bytes_per_block == 32);
static_assert(quant_traits<nf4>::storage_bytes(65) == 64 && quant_traits<nf4>::statistics_bytes(65) == 8);
static_assert(quant_traits<nf4_dq>::statistics_bytes(64 * 256) == 256 + 4 + 4);
static_assert(quant_traits<dynamic8_signed>::block_size == 256);
static_assert(!quant_traits<f16>::is_quantized && quant_traits<f16>::bits == 16 && quant_traits<e4m3>::bits == 8);

}  // namespace mixtape::quant
