/// @file float8.hpp
/// @brief `e4m3` and `e5m2`: mixtape's OCP 8-bit floating-point scalars (trivially copyable,
///        explicit conversions, constexpr bit-level host code, CUDA instructions on the device).
///
/// Why own types and not CUDA's `__nv_fp8_e4m3`/`__nv_fp8_e5m2` (design.md, "Own scalar
/// types"): besides needing the toolkit's headers and converting implicitly, CUDA's FP8 types
/// *saturate* on construction, where PyTorch's casts overflow to NaN (E4M3) or inf (E5M2). The two
/// behaviours are both needed, and named:
/// ```
/// mixtape::e4m3(500.0f)                                                  // NaN    (PyTorch)
/// mixtape::convert<mixtape::e4m3>(500.0f)                                // NaN    (same)
/// mixtape::convert<mixtape::e4m3, mixtape::Rounding::nearest_even_saturate>(500.0f)  // 448 (TE)
/// ```
/// The constructors follow PyTorch (non-saturating nearest-even); TransformerEngine's quantizer,
/// which scales by `max / amax` first, uses the saturating mode, so rounding past max (and an inf
/// input) clamps instead of poisoning the tensor with NaN. The exact rules, including where the
/// overflow threshold lies (464 for E4M3, 61440 for E5M2), are in rounding.hpp.
///
/// Both formats are the OCP 8-bit floating point specification's (OFP8, 2023), which Hopper's FP8
/// tensor cores, PyTorch and TransformerEngine implement. On sm_89+ the device converts with
/// `cvt.rn.satfinite.{e4m3,e5m2}x2.f32` where it gives the same bits as the host code
/// (numeric/detail/cuda_intrinsics.hpp). Arithmetic computes in float and rounds back once, which is
/// exactly rounded for these formats (numeric/detail/scalar_ops.hpp); it exists for tests and
/// reference code, kernels compute in f32.
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

/// OCP FP8 E4M3 (PyTorch `torch.float8_e4m3fn`, CUDA `__nv_fp8_e4m3`): 1 sign, 4 exponent
/// (bias 7), 3 fraction bits, no infinity.
///
/// Values: max 448 (0x7E), min normal 2^-6 (0x08), min subnormal 2^-9 (0x01), epsilon 2^-3; the
/// all-ones exponent is an ordinary binade (256..448) except S.1111.111 (0x7F, 0xFF), the only NaNs.
/// The forward-pass format of FP8 training (activations, weights): more precision, less range.
struct e4m3 : detail::ScalarOps<e4m3, detail::E4M3Format> {
  /// The unsigned integer type of the encoding.
  using storage_type = std::uint8_t;

  /// Trivial: `e4m3 x;` is uninitialized like a float, `e4m3 x{};` is +0.
  e4m3() = default;

  /// Nearest-even from float (Rounding::nearest_even); |x| > 464 gives NaN (E4M3 has no inf;
  /// PyTorch's float8_e4m3fn cast).
  /// Other roundings: `convert<e4m3, R>(x, random)`.
  MIXTAPE_HOST_DEVICE explicit constexpr e4m3(float x) noexcept
      : bits_(detail::convert_bits<detail::E4M3Format, detail::F32Format, Rounding::nearest_even>(
            detail::bit_cast<std::uint32_t>(x), 0)) {}

  /// Nearest-even from double, rounded once from the exact value (never through float).
  MIXTAPE_HOST_DEVICE explicit constexpr e4m3(double x) noexcept
      : bits_(detail::convert_bits<detail::E4M3Format, detail::F64Format, Rounding::nearest_even>(
            detail::bit_cast<std::uint64_t>(x), 0)) {}

  /// Nearest-even from an integer, rounded once from the exact value.
  /// @tparam I  any integer type up to 64 bits
  template <std::integral I>
  MIXTAPE_HOST_DEVICE explicit constexpr e4m3(I x) noexcept
      : bits_(detail::convert_integer_bits<detail::E4M3Format, Rounding::nearest_even>(x, 0)) {}

  /// The value with encoding `bits` (every pattern is valid: NaNs included).
  MIXTAPE_HOST_DEVICE static constexpr e4m3 from_bits(storage_type bits) noexcept { return {FromBits{}, bits}; }

  /// The encoding.
  MIXTAPE_HOST_DEVICE constexpr storage_type bits() const noexcept { return bits_; }

  /// Exact widening (NaNs keep sign and payload and become quiet).
  MIXTAPE_HOST_DEVICE explicit constexpr operator float() const noexcept {
    return detail::bit_cast<float>(detail::widen_to_f32_bits<detail::E4M3Format>(bits_));
  }
  /// Exact widening to double.
  MIXTAPE_HOST_DEVICE explicit constexpr operator double() const noexcept {
    return detail::bit_cast<double>(
        detail::convert_bits<detail::F64Format, detail::E4M3Format, Rounding::nearest_even>(bits_, 0));
  }

 private:
  struct FromBits {};
  MIXTAPE_HOST_DEVICE constexpr e4m3(FromBits, storage_type bits) noexcept : bits_(bits) {}

  storage_type bits_;
};

static_assert(sizeof(e4m3) == sizeof(std::uint8_t), "e4m3 is exactly its encoding");
static_assert(std::is_trivially_copyable_v<e4m3>, "e4m3 can be memcpy'd and bit-cast");
static_assert(std::is_trivially_default_constructible_v<e4m3>, "e4m3 arrays need no initialization");
static_assert(std::is_standard_layout_v<e4m3>, "e4m3 has the layout of its encoding");

/// OCP FP8 E5M2 (PyTorch `torch.float8_e5m2`, CUDA `__nv_fp8_e5m2`): 1 sign, 5 exponent
/// (bias 15), 2 fraction bits: f16 with the low 8 bits dropped, IEEE special values included.
///
/// Values: max 57344 (0x7B), min normal 2^-14 (0x04), min subnormal 2^-16 (0x01), epsilon 2^-2;
/// 0x7C is inf, 0x7D..0x7F (either sign) are NaN. The gradient format of FP8 training: f16's range,
/// 3 bits of precision.
struct e5m2 : detail::ScalarOps<e5m2, detail::E5M2Format> {
  /// The unsigned integer type of the encoding.
  using storage_type = std::uint8_t;

  /// Trivial: `e5m2 x;` is uninitialized like a float, `e5m2 x{};` is +0.
  e5m2() = default;

  /// Nearest-even from float (Rounding::nearest_even); |x| >= 61440 (max + ulp/2) gives +-inf.
  /// Other roundings: `convert<e5m2, R>(x, random)`.
  MIXTAPE_HOST_DEVICE explicit constexpr e5m2(float x) noexcept
      : bits_(detail::convert_bits<detail::E5M2Format, detail::F32Format, Rounding::nearest_even>(
            detail::bit_cast<std::uint32_t>(x), 0)) {}

  /// Nearest-even from double, rounded once from the exact value (never through float).
  MIXTAPE_HOST_DEVICE explicit constexpr e5m2(double x) noexcept
      : bits_(detail::convert_bits<detail::E5M2Format, detail::F64Format, Rounding::nearest_even>(
            detail::bit_cast<std::uint64_t>(x), 0)) {}

  /// Nearest-even from an integer, rounded once from the exact value.
  /// @tparam I  any integer type up to 64 bits
  template <std::integral I>
  MIXTAPE_HOST_DEVICE explicit constexpr e5m2(I x) noexcept
      : bits_(detail::convert_integer_bits<detail::E5M2Format, Rounding::nearest_even>(x, 0)) {}

  /// The value with encoding `bits` (every pattern is valid: NaNs included).
  MIXTAPE_HOST_DEVICE static constexpr e5m2 from_bits(storage_type bits) noexcept { return {FromBits{}, bits}; }

  /// The encoding.
  MIXTAPE_HOST_DEVICE constexpr storage_type bits() const noexcept { return bits_; }

  /// Exact widening (NaNs keep sign and payload and become quiet).
  MIXTAPE_HOST_DEVICE explicit constexpr operator float() const noexcept {
    return detail::bit_cast<float>(detail::widen_to_f32_bits<detail::E5M2Format>(bits_));
  }
  /// Exact widening to double.
  MIXTAPE_HOST_DEVICE explicit constexpr operator double() const noexcept {
    return detail::bit_cast<double>(
        detail::convert_bits<detail::F64Format, detail::E5M2Format, Rounding::nearest_even>(bits_, 0));
  }

 private:
  struct FromBits {};
  MIXTAPE_HOST_DEVICE constexpr e5m2(FromBits, storage_type bits) noexcept : bits_(bits) {}

  storage_type bits_;
};

static_assert(sizeof(e5m2) == sizeof(std::uint8_t), "e5m2 is exactly its encoding");
static_assert(std::is_trivially_copyable_v<e5m2>, "e5m2 can be memcpy'd and bit-cast");
static_assert(std::is_trivially_default_constructible_v<e5m2>, "e5m2 arrays need no initialization");
static_assert(std::is_standard_layout_v<e5m2>, "e5m2 has the layout of its encoding");

}  // namespace mixtape
