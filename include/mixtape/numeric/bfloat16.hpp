/// @file bfloat16.hpp
/// @brief `bf16`: mixtape's bfloat16 scalar (trivially copyable, explicit conversions, constexpr
///        bit-level host code, CUDA instructions on the device).
///
/// Why an own type and not CUDA's `__nv_bfloat16` (design.md, "Own scalar types"): the CUDA type
/// needs the toolkit's headers even in host-only code, is not constexpr and converts implicitly.
/// `bf16` has the same 16-bit layout, so buffers are bit-cast at the kernel and cuBLASLt boundary.
///
/// bfloat16 keeps f32's exponent range and 8 bits of precision: it rarely overflows (no loss
/// scaling needed) but rounds coarsely (epsilon 2^-7 = 0.0078125), which is why a bf16 parameter
/// updated in bf16 stalls when the update is below half an ulp, and why stochastic rounding
/// (`convert<bf16, Rounding::stochastic>(x, word)`) or an f32 master copy is used for training.
///
/// Narrowing from f32 rounds to nearest-even with overflow to inf (PyTorch's and CUDA's
/// `__float2bfloat16_rn` behaviour); the device uses `cvt.rn.bf16.f32` (sm_80+) where it gives the
/// same bits (numeric/detail/cuda_intrinsics.hpp). Arithmetic computes in float and rounds back once,
/// which is exactly rounded for this format (numeric/detail/scalar_ops.hpp).
#pragma once

#include <concepts>
#include <cstdint>
#include <type_traits>

#include "mixtape/config.hpp"
#include "mixtape/numeric/detail/bit_convert.hpp"
#include "mixtape/numeric/detail/convert_bits.hpp"
#include "mixtape/numeric/detail/scalar_ops.hpp"
#include "mixtape/numeric/rounding.hpp"

namespace mixtape {

/// bfloat16: 1 sign, 8 exponent (bias 127), 7 fraction bits: the top half of an f32.
///
/// Values: max 0x1.FEp127 ~ 3.39e38 (0x7F7F), min normal 2^-126 (0x0080), min subnormal 2^-133
/// (0x0001), epsilon 2^-7; 0x7F80 is inf, 0x7F81..0x7FFF (either sign) are NaN.
/// Layout-compatible with CUDA's `__nv_bfloat16` and PyTorch's `torch.bfloat16`. Widening to f32
/// is a 16-bit shift; narrowing rounds (nearest-even by default), it does not truncate.
///
/// Usage:
/// ```
/// mixtape::bf16 b(3.14159f);                     // 0x4049 = 3.140625
/// float back = static_cast<float>(b);            // exact
/// ```
struct bf16 : detail::ScalarOps<bf16, detail::BF16Format> {
  /// The unsigned integer type of the encoding.
  using storage_type = std::uint16_t;

  /// Trivial: `bf16 x;` is uninitialized like a float, `bf16 x{};` is +0.
  bf16() = default;

  /// Nearest-even from float (Rounding::nearest_even); |x| >= 0x1.FFp127 (max + ulp/2) gives +-inf.
  /// Other roundings: `convert<bf16, R>(x, random)`.
  MIXTAPE_HOST_DEVICE explicit constexpr bf16(float x) noexcept
      : bits_(detail::convert_bits<detail::BF16Format, detail::F32Format, Rounding::nearest_even>(
            detail::bit_cast<std::uint32_t>(x), 0)) {}

  /// Nearest-even from double, rounded once from the exact value (never through float).
  MIXTAPE_HOST_DEVICE explicit constexpr bf16(double x) noexcept
      : bits_(detail::convert_bits<detail::BF16Format, detail::F64Format, Rounding::nearest_even>(
            detail::bit_cast<std::uint64_t>(x), 0)) {}

  /// Nearest-even from an integer, rounded once from the exact value.
  /// @tparam I  any integer type up to 64 bits
  template <std::integral I>
  MIXTAPE_HOST_DEVICE explicit constexpr bf16(I x) noexcept
      : bits_(detail::convert_integer_bits<detail::BF16Format, Rounding::nearest_even>(x, 0)) {}

  /// The value with encoding `bits` (every pattern is valid: NaNs included).
  MIXTAPE_HOST_DEVICE static constexpr bf16 from_bits(storage_type bits) noexcept { return {FromBits{}, bits}; }

  /// The encoding.
  MIXTAPE_HOST_DEVICE constexpr storage_type bits() const noexcept { return bits_; }

  /// Exact widening (NaNs keep sign and payload and become quiet).
  MIXTAPE_HOST_DEVICE explicit constexpr operator float() const noexcept {
    return detail::bit_cast<float>(detail::widen_to_f32_bits<detail::BF16Format>(bits_));
  }
  /// Exact widening to double.
  MIXTAPE_HOST_DEVICE explicit constexpr operator double() const noexcept {
    return detail::bit_cast<double>(
        detail::convert_bits<detail::F64Format, detail::BF16Format, Rounding::nearest_even>(bits_, 0));
  }

 private:
  struct FromBits {};
  MIXTAPE_HOST_DEVICE constexpr bf16(FromBits, storage_type bits) noexcept : bits_(bits) {}

  storage_type bits_;
};

static_assert(sizeof(bf16) == sizeof(std::uint16_t), "bf16 is exactly its encoding");
static_assert(std::is_trivially_copyable_v<bf16>, "bf16 can be memcpy'd and bit-cast");
static_assert(std::is_trivially_default_constructible_v<bf16>, "bf16 arrays need no initialization");
static_assert(std::is_standard_layout_v<bf16>, "bf16 has the layout of its encoding");

}  // namespace mixtape
