/// @file scalar_ops.hpp
/// @brief The operators and classification functions shared by f16, bf16, e4m3 and e5m2, as
///        hidden friends of an empty CRTP base (found by argument-dependent lookup only).
///
/// Arithmetic follows CUTLASS's `half_t`: widen both operands to float exactly, compute in float,
/// round the result back with nearest-even. For +, -, * and / this is the correctly rounded result
/// of the exact operation, not an approximation: float's 24-bit significand is at least 2p + 2 bits
/// for every format here (p = 11, 8, 4, 3), and then rounding the float result a second time cannot
/// differ from rounding the exact value once (Figueroa, "When is double rounding innocuous?", 1995).
/// A NaN result is the positive all-ones NaN (0x7FFF, 0x7F) on every backend: x86 and CUDA produce
/// NaNs of different signs and payloads for the same operation (x86's default NaN is negative, CUDA's
/// canonical NaN positive, and x86 propagates an operand's NaN), and host and device results must be
/// bitwise equal. Comparisons compare the widened floats, so -0 == +0 and a NaN compares unequal to
/// everything.
#pragma once

#include <cstdint>

#include "mixtape/config.hpp"
#include "mixtape/numeric/detail/bit_convert.hpp"

namespace mixtape::detail {

/// The float result of an operation, rounded to T (nearest-even); a NaN becomes the positive
/// all-ones NaN.
/// @tparam T       the scalar type
/// @tparam Format  its BinaryFormat
template <class T, class Format>
MIXTAPE_HOST_DEVICE constexpr T round_result(float r) noexcept {
  if ((bit_cast<std::uint32_t>(r) & 0x7FFFFFFFu) > 0x7F800000u) {
    return T::from_bits(static_cast<typename Format::storage_type>(Format::kNaN));
  }
  return T(r);
}

/// Operators for a scalar type `T`; `T` derives from `ScalarOps<T, Format>`.
/// @tparam T       the scalar type; it must provide `explicit T(float)`, `explicit operator float()`,
///                 `bits()` and `static T from_bits(storage)`
/// @tparam Format  T's BinaryFormat (for the sign bit and the special encodings)
template <class T, class Format>
struct ScalarOps {
  // Arithmetic: computed in float, rounded back once (exactly rounded, see the file comment).
  friend MIXTAPE_HOST_DEVICE constexpr T operator+(T a, T b) noexcept {
    return round_result<T, Format>(static_cast<float>(a) + static_cast<float>(b));
  }
  friend MIXTAPE_HOST_DEVICE constexpr T operator-(T a, T b) noexcept {
    return round_result<T, Format>(static_cast<float>(a) - static_cast<float>(b));
  }
  friend MIXTAPE_HOST_DEVICE constexpr T operator*(T a, T b) noexcept {
    return round_result<T, Format>(static_cast<float>(a) * static_cast<float>(b));
  }
  friend MIXTAPE_HOST_DEVICE constexpr T operator/(T a, T b) noexcept {
    return round_result<T, Format>(static_cast<float>(a) / static_cast<float>(b));
  }
  friend MIXTAPE_HOST_DEVICE constexpr T& operator+=(T& a, T b) noexcept { return a = a + b; }
  friend MIXTAPE_HOST_DEVICE constexpr T& operator-=(T& a, T b) noexcept { return a = a - b; }
  friend MIXTAPE_HOST_DEVICE constexpr T& operator*=(T& a, T b) noexcept { return a = a * b; }
  friend MIXTAPE_HOST_DEVICE constexpr T& operator/=(T& a, T b) noexcept { return a = a / b; }

  /// Negation flips the sign bit: exact for every value, NaN included (no round trip through float,
  /// which would replace a NaN's payload).
  friend MIXTAPE_HOST_DEVICE constexpr T operator-(T a) noexcept {
    return T::from_bits(static_cast<typename Format::storage_type>(a.bits() ^ Format::kSignBit));
  }
  friend MIXTAPE_HOST_DEVICE constexpr T operator+(T a) noexcept { return a; }

  // Comparisons: IEEE semantics of the widened values.
  friend MIXTAPE_HOST_DEVICE constexpr bool operator==(T a, T b) noexcept {
    return static_cast<float>(a) == static_cast<float>(b);
  }
  friend MIXTAPE_HOST_DEVICE constexpr bool operator!=(T a, T b) noexcept {
    return static_cast<float>(a) != static_cast<float>(b);
  }
  friend MIXTAPE_HOST_DEVICE constexpr bool operator<(T a, T b) noexcept {
    return static_cast<float>(a) < static_cast<float>(b);
  }
  friend MIXTAPE_HOST_DEVICE constexpr bool operator<=(T a, T b) noexcept {
    return static_cast<float>(a) <= static_cast<float>(b);
  }
  friend MIXTAPE_HOST_DEVICE constexpr bool operator>(T a, T b) noexcept {
    return static_cast<float>(a) > static_cast<float>(b);
  }
  friend MIXTAPE_HOST_DEVICE constexpr bool operator>=(T a, T b) noexcept {
    return static_cast<float>(a) >= static_cast<float>(b);
  }

  // Classification from the bits (no widening needed).
  friend MIXTAPE_HOST_DEVICE constexpr bool isnan(T a) noexcept {
    return Format::is_nan(a.bits() & Format::kMagnitudeMask);
  }
  friend MIXTAPE_HOST_DEVICE constexpr bool isinf(T a) noexcept {
    return Format::is_inf(a.bits() & Format::kMagnitudeMask);
  }
  friend MIXTAPE_HOST_DEVICE constexpr bool isfinite(T a) noexcept {
    const std::uint64_t magnitude = a.bits() & Format::kMagnitudeMask;
    return !Format::is_nan(magnitude) && !Format::is_inf(magnitude);
  }
  friend MIXTAPE_HOST_DEVICE constexpr bool signbit(T a) noexcept { return (a.bits() & Format::kSignBit) != 0; }
  /// |a|: clears the sign bit (exact; the amax of a tensor is a max over these).
  friend MIXTAPE_HOST_DEVICE constexpr T abs(T a) noexcept {
    return T::from_bits(static_cast<typename Format::storage_type>(a.bits() & Format::kMagnitudeMask));
  }
  /// True when the bit patterns are equal (unlike ==, tells -0 from +0 and matches equal NaNs).
  friend MIXTAPE_HOST_DEVICE constexpr bool bitwise_equal(T a, T b) noexcept { return a.bits() == b.bits(); }
};

}  // namespace mixtape::detail
