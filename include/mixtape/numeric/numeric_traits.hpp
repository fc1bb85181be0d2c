/// @file numeric_traits.hpp
/// @brief `numeric_traits<T>`: the parameters and limits of mixtape's six scalar formats (f16,
///        bf16, e4m3, e5m2, f32, f64), the `ScalarFormat` concept that names them, and
///        `std::numeric_limits` for the four narrow formats (for generic code written against it).
///
/// Why `numeric_traits` besides `std::numeric_limits`: the standard one is not callable on the
/// device for float and double, it has no field widths, and its `max_exponent` convention (one more
/// than the largest binade's exponent) invites off-by-one errors in tolerance code. The
/// `std::numeric_limits` specialisations at the end of this file exist for generic code (and
/// test frameworks) that only know the standard interface; they follow its conventions. Every limit here is derived
/// from the format's field widths (the encodings come from numeric/detail/bit_convert.hpp), and tests/numeric checks
/// each against a reference decoder written from the format definitions.
///
/// Tolerances in tests derive from `epsilon_value`: the distance from 1 to the next value, so
/// nearest-even has a relative error of at most epsilon/2 for results in the normal range.
#pragma once

#include <concepts>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "mixtape/config.hpp"
#include "mixtape/numeric/bfloat16.hpp"
#include "mixtape/numeric/detail/bit_convert.hpp"
#include "mixtape/numeric/float16.hpp"
#include "mixtape/numeric/float8.hpp"

namespace mixtape {

/// `ScalarFormat<T>`
///
/// Represents: one of mixtape's six scalar element formats, f16, bf16, e4m3, e5m2, f32 (`float`)
/// and f64 (`double`); exactly the types `convert` and `numeric_traits` accept.
/// Requires: T is one of those six types (cv-qualified types are not formats).
/// Ensures: `numeric_traits<T>` is complete, `sizeof(T) * 8 == numeric_traits<T>::bits`, T is
/// trivially copyable, and `convert<U>(T)` is defined for every ScalarFormat U.
template <class T>
concept ScalarFormat = std::same_as<T, f16> || std::same_as<T, bf16> || std::same_as<T, e4m3> ||
    std::same_as<T, e5m2> || std::same_as<T, float> || std::same_as<T, double>;

namespace detail {

/// The BinaryFormat describing T's encoding.
/// @tparam T  a ScalarFormat
template <class T>
struct format_of;
template <>
struct format_of<f16> {
  using type = F16Format;
};
template <>
struct format_of<bf16> {
  using type = BF16Format;
};
template <>
struct format_of<e4m3> {
  using type = E4M3Format;
};
template <>
struct format_of<e5m2> {
  using type = E5M2Format;
};
template <>
struct format_of<float> {
  using type = F32Format;
};
template <>
struct format_of<double> {
  using type = F64Format;
};
template <class T>
using format_of_t = typename format_of<T>::type;

/// T's encoding as an unsigned integer.
/// @tparam T  a ScalarFormat
template <ScalarFormat T>
MIXTAPE_HOST_DEVICE constexpr typename format_of_t<T>::storage_type to_storage(T x) noexcept {
  if constexpr (std::is_floating_point_v<T>) {
    return bit_cast<typename format_of_t<T>::storage_type>(x);
  } else {
    return x.bits();
  }
}

/// The T with encoding `bits`.
/// @tparam T  a ScalarFormat
template <ScalarFormat T>
MIXTAPE_HOST_DEVICE constexpr T from_storage(typename format_of_t<T>::storage_type bits) noexcept {
  if constexpr (std::is_floating_point_v<T>) {
    return bit_cast<T>(bits);
  } else {
    return T::from_bits(bits);
  }
}

/// The exact value of an encoding of format F, as a double (every format here widens exactly).
/// @tparam F  a BinaryFormat
template <class F>
MIXTAPE_HOST_DEVICE constexpr double decode_to_double(std::uint64_t bits) noexcept {
  return bit_cast<double>(
      convert_bits_portable<F64Format, F, Rounding::nearest_even>(static_cast<typename F::storage_type>(bits), 0));
}

/// The members every numeric_traits specialisation shares, derived from T's format.
/// @tparam T  the scalar type (a ScalarFormat)
template <class T>
struct format_traits {
  using format = format_of_t<T>;
  using storage_type = typename format::storage_type;

  /// Total bits of the encoding.
  static constexpr int bits = format::kBits;
  /// Width of the exponent field.
  static constexpr int exponent_bits = format::kExponentBits;
  /// Width of the stored fraction (the significand has one more, implicit, bit).
  static constexpr int mantissa_bits = format::kMantissaBits;
  /// Exponent bias: value = 2^(field - bias) * 1.fraction for normal numbers.
  static constexpr int exponent_bias = format::kBias;
  /// Unbiased exponent of the largest binade (15 for f16, 8 for E4M3, 127 for bf16 and f32).
  static constexpr int max_exponent = format::kEmax;
  /// Unbiased exponent of the smallest normal binade (-14 for f16, -6 for E4M3).
  static constexpr int min_exponent = format::kEmin;
  /// Whether an encoding for +-inf exists (false only for E4M3).
  static constexpr bool has_inf = format::kIeee;
  /// Whether NaN encodings exist (true for all six).
  static constexpr bool has_nan = true;
  /// Whether subnormal numbers exist (true for all six).
  static constexpr bool has_subnormals = true;

  /// Largest finite value.
  MIXTAPE_HOST_DEVICE static constexpr T max() noexcept { return from_storage<T>(format::kMax); }
  /// Most negative finite value (-max).
  MIXTAPE_HOST_DEVICE static constexpr T lowest() noexcept {
    return from_storage<T>(static_cast<storage_type>(format::kSignBit | format::kMax));
  }
  /// Smallest positive normal value, 2^min_exponent.
  MIXTAPE_HOST_DEVICE static constexpr T min_normal() noexcept {
    return from_storage<T>(static_cast<storage_type>(std::uint64_t{1} << format::kMantissaBits));
  }
  /// Smallest positive subnormal value, 2^(min_exponent - mantissa_bits).
  MIXTAPE_HOST_DEVICE static constexpr T min_subnormal() noexcept { return from_storage<T>(1); }
  /// Distance from 1 to the next larger value, 2^-mantissa_bits.
  MIXTAPE_HOST_DEVICE static constexpr T epsilon() noexcept {
    return from_storage<T>(static_cast<storage_type>(static_cast<std::uint64_t>(format::kBias - format::kMantissaBits)
                                                     << format::kMantissaBits));
  }
  /// +inf where it exists; E4M3 has none and returns NaN, as `std::numeric_limits` does for types
  /// without infinity (check `has_inf`).
  MIXTAPE_HOST_DEVICE static constexpr T infinity() noexcept {
    return from_storage<T>(static_cast<storage_type>(format::kIeee ? format::kInf : format::kNaN));
  }
  /// The NaN this library produces (all exponent and fraction bits set, positive).
  MIXTAPE_HOST_DEVICE static constexpr T quiet_nan() noexcept { return from_storage<T>(format::kNaN); }

  /// The limits as doubles (exact), for tolerances and messages.
  static constexpr double max_value = decode_to_double<format>(format::kMax);
  static constexpr double lowest_value = -max_value;
  static constexpr double min_normal_value = decode_to_double<format>(std::uint64_t{1} << format::kMantissaBits);
  static constexpr double min_subnormal_value = decode_to_double<format>(1);
  static constexpr double epsilon_value = decode_to_double<format>(
      static_cast<std::uint64_t>(format::kBias - format::kMantissaBits) << format::kMantissaBits);
};

}  // namespace detail

/// Parameters and limits of a scalar format.
///
/// Members (all `static constexpr`): `bits`, `exponent_bits`, `mantissa_bits`, `exponent_bias`,
/// `max_exponent`, `min_exponent`, `has_inf`, `has_nan`, `has_subnormals`, `name` ("f16", "bf16",
/// "e4m3", "e5m2", "f32", "f64"); functions returning T: `max()`, `lowest()`, `min_normal()`,
/// `min_subnormal()`, `epsilon()`, `infinity()`, `quiet_nan()`; the same limits as doubles:
/// `max_value`, `lowest_value`, `min_normal_value`, `min_subnormal_value`, `epsilon_value`;
/// `storage_type`, the unsigned integer of the encoding's width.
/// ```
/// static_assert(mixtape::numeric_traits<mixtape::e4m3>::max_value == 448.0);
/// ```
/// @tparam T  a ScalarFormat; undefined for other types
template <class T>
struct numeric_traits;

template <>
struct numeric_traits<f16> : detail::format_traits<f16> {
  static constexpr const char* name = "f16";
};
template <>
struct numeric_traits<bf16> : detail::format_traits<bf16> {
  static constexpr const char* name = "bf16";
};
template <>
struct numeric_traits<e4m3> : detail::format_traits<e4m3> {
  static constexpr const char* name = "e4m3";
};
template <>
struct numeric_traits<e5m2> : detail::format_traits<e5m2> {
  static constexpr const char* name = "e5m2";
};
template <>
struct numeric_traits<float> : detail::format_traits<float> {
  static constexpr const char* name = "f32";
};
template <>
struct numeric_traits<double> : detail::format_traits<double> {
  static constexpr const char* name = "f64";
};

// The numbers the rest of the library quotes (TransformerEngine's FP8 maxima, f16's loss-scaling
// ceiling) follow from the field widths.
static_assert(numeric_traits<e4m3>::max_value == 448.0 && numeric_traits<e5m2>::max_value == 57344.0);
static_assert(numeric_traits<f16>::max_value == 65504.0 && numeric_traits<f16>::epsilon_value == 0x1p-10);
static_assert(numeric_traits<bf16>::min_normal_value == 0x1p-126 && numeric_traits<bf16>::epsilon_value == 0x1p-7);
static_assert(numeric_traits<float>::max_value == 0x1.fffffep127 && numeric_traits<double>::epsilon_value == 0x1p-52);

namespace detail {

/// floor(log10(v)) for v >= 1, by repeated multiplication (exact for the small results needed).
constexpr int floor_log10(double v) noexcept {
  int e = 0;
  for (double p = 10; p <= v; p *= 10) ++e;
  return e;
}
/// ceil(log10(v)) for 0 < v < 1 (v not a power of ten).
constexpr int ceil_log10(double v) noexcept {
  int e = 0;
  for (double p = 0.1; p > v; p /= 10) --e;
  return e;
}

/// `std::numeric_limits` members of a narrow scalar format, from its traits.
/// @tparam T  f16, bf16, e4m3 or e5m2
template <class T>
struct scalar_numeric_limits {
 private:
  using traits = numeric_traits<T>;
  using format = format_of_t<T>;
  using storage = typename format::storage_type;

 public:
  static constexpr bool is_specialized = true;
  static constexpr bool is_signed = true;
  static constexpr bool is_integer = false;
  static constexpr bool is_exact = false;
  static constexpr bool has_infinity = format::kIeee;
  static constexpr bool has_quiet_NaN = true;
  static constexpr bool has_signaling_NaN = format::kIeee;  // E4M3's one NaN per sign is quiet
  static constexpr std::float_denorm_style has_denorm = std::denorm_present;
  static constexpr bool has_denorm_loss = false;
  static constexpr std::float_round_style round_style = std::round_to_nearest;
  /// binary16 is an IEEE 754 (IEC 559) format; bfloat16 and the OCP FP8 formats are not.
  static constexpr bool is_iec559 = std::is_same_v<format, F16Format>;
  static constexpr bool is_bounded = true;
  static constexpr bool is_modulo = false;
  static constexpr int digits = format::kMantissaBits + 1;
  /// floor((digits - 1) log10 2) and floor(digits log10 2) + 2, with log10 2 ~ 0.30103.
  static constexpr int digits10 = (digits - 1) * 30103 / 100000;
  static constexpr int max_digits10 = 2 + digits * 30103 / 100000;
  static constexpr int radix = 2;
  /// std's convention: one more than the exponent of the smallest and largest binade.
  static constexpr int min_exponent = format::kEmin + 1;
  static constexpr int max_exponent = format::kEmax + 1;
  static constexpr int min_exponent10 = ceil_log10(traits::min_normal_value);
  static constexpr int max_exponent10 = floor_log10(traits::max_value);
  static constexpr bool traps = false;
  static constexpr bool tinyness_before = false;

  MIXTAPE_HOST_DEVICE static constexpr T min() noexcept { return traits::min_normal(); }
  MIXTAPE_HOST_DEVICE static constexpr T lowest() noexcept { return traits::lowest(); }
  MIXTAPE_HOST_DEVICE static constexpr T max() noexcept { return traits::max(); }
  MIXTAPE_HOST_DEVICE static constexpr T epsilon() noexcept { return traits::epsilon(); }
  /// Nearest-even's largest error in ulps.
  MIXTAPE_HOST_DEVICE static constexpr T round_error() noexcept {
    return T::from_bits(static_cast<storage>(static_cast<std::uint64_t>(format::kBias - 1) << format::kMantissaBits));
  }
  /// +inf; NaN for E4M3, which has none (check has_infinity).
  MIXTAPE_HOST_DEVICE static constexpr T infinity() noexcept { return traits::infinity(); }
  MIXTAPE_HOST_DEVICE static constexpr T quiet_NaN() noexcept { return traits::quiet_nan(); }
  /// The signalling NaN with payload 1 (quiet bit clear); E4M3 has none and returns its NaN.
  MIXTAPE_HOST_DEVICE static constexpr T signaling_NaN() noexcept {
    return T::from_bits(static_cast<storage>(format::kIeee ? format::kExponentMask | 1 : format::kNaN));
  }
  MIXTAPE_HOST_DEVICE static constexpr T denorm_min() noexcept { return traits::min_subnormal(); }
};

}  // namespace detail
}  // namespace mixtape

/// `std::numeric_limits` for the narrow formats, so that generic code written against the standard
/// interface (`std::numeric_limits<T>::max()`, test frameworks' tolerance code) works with them.
namespace std {
template <>
struct numeric_limits<mixtape::f16> : mixtape::detail::scalar_numeric_limits<mixtape::f16> {};
template <>
struct numeric_limits<mixtape::bf16> : mixtape::detail::scalar_numeric_limits<mixtape::bf16> {};
template <>
struct numeric_limits<mixtape::e4m3> : mixtape::detail::scalar_numeric_limits<mixtape::e4m3> {};
template <>
struct numeric_limits<mixtape::e5m2> : mixtape::detail::scalar_numeric_limits<mixtape::e5m2> {};
}  // namespace std
