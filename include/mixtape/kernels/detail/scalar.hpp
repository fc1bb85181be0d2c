/// @file scalar.hpp
/// @brief Element-type vocabulary of the kernels: which types are floating formats, the default
///        accumulate / compute types, exact widening to them, and the one conversion (`cast`) every
///        kernel uses to write a result, with the library's rounding modes.
///
/// Everything here is `MIXTAPE_HOST_DEVICE` with the same host body in `.cpp` and `.cu` units (only
/// `__CUDA_ARCH__` branches differ, which the host linker never sees), so it lives outside the
/// backend namespace.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "mixtape/config.hpp"
#include "mixtape/core/dtype.hpp"
#include "mixtape/numeric/numeric.hpp"

namespace mixtape::kernels {

/// The floating-point element types (f64, f32, f16, bf16, e4m3, e5m2).
template <class T>
concept FloatElement = std::is_same_v<T, double> || std::is_same_v<T, float> || std::is_same_v<T, f16> ||
                       std::is_same_v<T, bf16> || std::is_same_v<T, e4m3> || std::is_same_v<T, e5m2>;

/// The integer element types (i64, i32, i16, u16, i8, u8).
template <class T>
concept IntegerElement = ScalarElement<T> && std::is_integral_v<T>;

/// The accumulator a reduction over `T` uses unless overridden (CUB's `OverrideAccumT` idea):
/// double for f64 and for 32/64-bit integers (exact up to 2^53), float otherwise (every f16, bf16,
/// fp8 and 8/16-bit integer value widens to float exactly).
/// @tparam T the element type
template <class T>
using default_accum_t =
    std::conditional_t<std::is_same_v<T, double> || (std::is_integral_v<T> && sizeof(T) >= 4), double, float>;

/// The type element-wise functors compute in for operands `Ts...`: double when any operand's
/// default accumulator is double, float otherwise (so f16/bf16/fp8 maps compute in float and round
/// once at the end, as CUTLASS's `half_t` and PyTorch's kernels do).
template <class... Ts>
using compute_t = std::conditional_t<(std::is_same_v<default_accum_t<Ts>, double> || ... || false), double, float>;

namespace detail {

template <class A>
inline constexpr bool kIsAccum = std::is_same_v<A, float> || std::is_same_v<A, double>;

/// `x` widened to the arithmetic type `A` (float or double). Exact for every float format and for
/// integers up to 2^24 (float) or 2^53 (double); larger integers round to nearest-even.
template <class A, class T>
MIXTAPE_HOST_DEVICE constexpr A to_acc(T x) noexcept {
  static_assert(kIsAccum<A>, "to_acc: the accumulate type must be float or double");
  if constexpr (std::is_same_v<T, A>) {
    return x;
  } else if constexpr (std::is_arithmetic_v<T>) {
    return static_cast<A>(x);
  } else {
    return static_cast<A>(static_cast<float>(x));  // f16 / bf16 / fp8 widen to float exactly
  }
}

/// Quiet NaN, +inf and -inf of float or double, usable in device code without relaxed constexpr.
template <class A>
MIXTAPE_HOST_DEVICE constexpr A quiet_nan() noexcept {
  if constexpr (std::is_same_v<A, float>) {
    return mixtape::detail::bit_cast<float>(std::uint32_t{0x7FC00000u});
  } else {
    return mixtape::detail::bit_cast<double>(std::uint64_t{0x7FF8000000000000ull});
  }
}
template <class A>
MIXTAPE_HOST_DEVICE constexpr A infinity() noexcept {
  if constexpr (std::is_same_v<A, float>) {
    return mixtape::detail::bit_cast<float>(std::uint32_t{0x7F800000u});
  } else {
    return mixtape::detail::bit_cast<double>(std::uint64_t{0x7FF0000000000000ull});
  }
}
/// NaN test that survives -ffast-math style flags on neither side (a plain self-comparison).
template <class A>
MIXTAPE_HOST_DEVICE constexpr bool is_nan(A x) noexcept {
  return x != x;  // NOLINT(misc-redundant-expression)
}

/// |x| by clearing the sign bit (exact; -0 gives +0, a NaN stays a NaN).
template <class A>
MIXTAPE_HOST_DEVICE constexpr A abs_exact(A x) noexcept {
  if constexpr (std::is_same_v<A, float>) {
    return mixtape::detail::bit_cast<float>(mixtape::detail::bit_cast<std::uint32_t>(x) & 0x7FFFFFFFu);
  } else {
    static_assert(std::is_same_v<A, double>);
    return mixtape::detail::bit_cast<double>(mixtape::detail::bit_cast<std::uint64_t>(x) & 0x7FFFFFFFFFFFFFFFull);
  }
}

/// Float-to-integer: NaN gives 0, otherwise truncation toward zero, saturated to To's range
/// (defined for every input, unlike a C++ cast; PyTorch truncates as well).
template <class To, class A>
MIXTAPE_HOST_DEVICE constexpr To float_to_int(A x) noexcept {
  static_assert(std::is_integral_v<To>);
  const double d = static_cast<double>(x);  // float -> double is exact
  if (is_nan(d)) return To(0);
  // The bounds are exact in double: -2^(bits-1) (or 0) and 2^(bits-1) (or 2^bits).
  constexpr double lo = std::is_signed_v<To> ? -static_cast<double>(std::uint64_t{1} << (8 * sizeof(To) - 1)) : 0.0;
  constexpr double hi_excl = std::is_signed_v<To> ? static_cast<double>(std::uint64_t{1} << (8 * sizeof(To) - 1))
                                                  : 2.0 * static_cast<double>(std::uint64_t{1} << (8 * sizeof(To) - 1));
  // The limits from bit patterns: device code may not call std::numeric_limits' host functions.
  using U = std::make_unsigned_t<To>;
  constexpr U kAllOnes = static_cast<U>(~U{0});
  constexpr To kHighest = static_cast<To>(std::is_signed_v<To> ? static_cast<U>(kAllOnes >> 1) : kAllOnes);
  constexpr To kLowest = std::is_signed_v<To> ? static_cast<To>(-kHighest - 1) : To{0};
  if (d <= lo) return kLowest;
  if (d >= hi_excl) return kHighest;
  return static_cast<To>(d);  // in range: truncates toward zero
}

/// Converts `x` to `To` with rounding mode `R` (random word `random` for the stochastic modes).
///  - float format -> float format (f64, f32, f16, bf16, e4m3, e5m2): `mixtape::convert<To, R>`,
///    rounding once from the exact value (numeric/rounding.hpp);
///  - integer -> float format: rounded once from the integer's exact value, as above;
///  - float format -> integer: NaN gives 0, truncation toward zero, saturation (R is ignored);
///  - integer -> integer: C++'s modular conversion (R is ignored).
/// @tparam To the destination element type
/// @tparam R  the rounding mode for floating destinations
template <class To, Rounding R = Rounding::nearest_even, class From>
MIXTAPE_HOST_DEVICE constexpr To cast(From x, std::uint32_t random = 0) noexcept {
  if constexpr (FloatElement<To> && FloatElement<From>) {
    return mixtape::convert<To, R>(x, random);
  } else if constexpr (FloatElement<To>) {
    static_assert(std::is_integral_v<From>, "cast: unsupported source type");
    using F = mixtape::detail::format_of_t<To>;
    return mixtape::detail::from_storage<To>(mixtape::detail::convert_integer_bits<F, R>(x, random));
  } else if constexpr (std::is_integral_v<To> && FloatElement<From>) {
    return float_to_int<To>(to_acc<double>(x));
  } else {
    static_assert(std::is_integral_v<To> && std::is_integral_v<From>, "cast: unsupported element types");
    return static_cast<To>(x);
  }
}

}  // namespace detail
}  // namespace mixtape::kernels
