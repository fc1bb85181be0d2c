/// @file float16.hpp
/// @brief `f16`: mixtape's IEEE 754 binary16 scalar (trivially copyable, explicit conversions,
///        constexpr bit-level host code, CUDA instructions on the device), and the `f32`/`f64`
///        aliases.
///
/// Why an own type and not CUDA's `__half` (design.md, "Own scalar types"): `__half` needs the
/// CUDA toolkit's headers even in host-only code, is not constexpr, and converts implicitly, so a
/// precision change can slip into an expression unnoticed. `f16` is a 16-bit struct with the same
/// layout; host code is plain C++20 (no CUDA header), usable in constant expressions:
/// ```
/// static_assert(mixtape::f16(1.0f).bits() == 0x3C00);
/// ```
/// In a `.cu` unit its conversions use the f16 instructions on the device where those give the
/// same bits as the host code (numeric/detail/cuda_intrinsics.hpp); the result is the same either
/// way.
///
/// Arithmetic computes in float and rounds back once, which is exactly rounded for this format
/// (numeric/detail/scalar_ops.hpp). Conversions other than nearest-even (saturating, stochastic) and
/// between the formats are `convert<To, R>(x)` (convert.hpp).
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

/// IEEE 754 binary32, under the name the policies use.
using f32 = float;
/// IEEE 754 binary64, under the name the policies use.
using f64 = double;

/// IEEE 754 binary16 ("half"): 1 sign, 5 exponent (bias 15), 10 fraction bits.
///
/// Values: max 65504 (0x7BFF), min normal 2^-14 (0x0400), min subnormal 2^-24 (0x0001),
/// epsilon 2^-10; 0x7C00 is inf, 0x7C01..0x7FFF (either sign) are NaN.
/// Layout-compatible with CUDA's `__half` and PyTorch's `torch.float16`: bit-cast at the kernel
/// and cuBLASLt boundary (`std::bit_cast<__half>(x)`), never converted implicitly.
///
/// Usage:
/// ```
/// mixtape::f16 h(0.1f);                          // 0x2E66, nearest-even
/// float back = static_cast<float>(h);            // 0.0999755859375, exact
/// auto s = mixtape::convert<mixtape::f16, mixtape::Rounding::stochastic>(0.1f, word);
/// ```
struct f16 : detail::ScalarOps<f16, detail::F16Format> {
  /// The unsigned integer type of the encoding.
  using storage_type = std::uint16_t;

  /// Trivial: `f16 x;` is uninitialized like a float, `f16 x{};` is +0.
  f16() = default;

  /// Nearest-even from float (Rounding::nearest_even); |x| >= 65520 (max + ulp/2) gives +-inf.
  /// Other roundings: `convert<f16, R>(x, random)`.
  MIXTAPE_HOST_DEVICE explicit constexpr f16(float x) noexcept
      : bits_(detail::convert_bits<detail::F16Format, detail::F32Format, Rounding::nearest_even>(
            detail::bit_cast<std::uint32_t>(x), 0)) {}

  /// Nearest-even from double, rounded once from the exact value (never through float).
  MIXTAPE_HOST_DEVICE explicit constexpr f16(double x) noexcept
      : bits_(detail::convert_bits<detail::F16Format, detail::F64Format, Rounding::nearest_even>(
            detail::bit_cast<std::uint64_t>(x), 0)) {}

  /// Nearest-even from an integer, rounded once from the exact value.
  /// @tparam I  any integer type up to 64 bits
  template <std::integral I>
  MIXTAPE_HOST_DEVICE explicit constexpr f16(I x) noexcept
      : bits_(detail::convert_integer_bits<detail::F16Format, Rounding::nearest_even>(x, 0)) {}

  /// The value with encoding `bits` (every pattern is valid: NaNs included).
  MIXTAPE_HOST_DEVICE static constexpr f16 from_bits(storage_type bits) noexcept { return {FromBits{}, bits}; }

  /// The encoding.
  MIXTAPE_HOST_DEVICE constexpr storage_type bits() const noexcept { return bits_; }

  /// Exact widening (NaNs keep sign and payload and become quiet).
  MIXTAPE_HOST_DEVICE explicit constexpr operator float() const noexcept {
    return detail::bit_cast<float>(detail::widen_to_f32_bits<detail::F16Format>(bits_));
  }
  /// Exact widening to double.
  MIXTAPE_HOST_DEVICE explicit constexpr operator double() const noexcept {
    return detail::bit_cast<double>(
        detail::convert_bits<detail::F64Format, detail::F16Format, Rounding::nearest_even>(bits_, 0));
  }

 private:
  struct FromBits {};
  MIXTAPE_HOST_DEVICE constexpr f16(FromBits, storage_type bits) noexcept : bits_(bits) {}

  storage_type bits_;
};

static_assert(sizeof(f16) == sizeof(std::uint16_t), "f16 is exactly its encoding");
static_assert(std::is_trivially_copyable_v<f16>, "f16 can be memcpy'd and bit-cast");
static_assert(std::is_trivially_default_constructible_v<f16>, "f16 arrays need no initialization");
static_assert(std::is_standard_layout_v<f16>, "f16 has the layout of its encoding");

}  // namespace mixtape
