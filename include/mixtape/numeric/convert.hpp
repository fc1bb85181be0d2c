/// @file convert.hpp
/// @brief `convert<To, R>(x, random)`: conversion between any two of mixtape's scalar formats
///        (f16, bf16, e4m3, e5m2, f32, f64) with an explicit rounding mode, bit-identical on host
///        and device.
///
/// This is the one conversion of the library: the scalar types' constructors and `operator
/// float`, the cast kernels and the optimizers' stochastic rounding all reach the same bit-level
/// routine (numeric/detail/bit_convert.hpp), so a value converts to the same bits wherever it is
/// converted. The rules (nearest-even, IEEE vs saturating overflow, NaN, stochastic rounding from
/// the random word) are stated once, in rounding.hpp.
///
/// ```
/// using namespace mixtape;
/// e4m3 a = convert<e4m3>(x);                                  // PyTorch: x > 464 -> NaN
/// e4m3 b = convert<e4m3, Rounding::nearest_even_saturate>(x); // TransformerEngine: -> 448
/// bf16 c = convert<bf16, Rounding::stochastic>(x, philox_word);
/// f16 d = convert<f16>(x, rounding_from_config, word);        // runtime mode
/// ```
///
/// Every conversion rounds once from the exact input: a double goes to f16, bf16 or FP8 directly,
/// not through float (whose rounding could make a value just above a tie look like the tie), and
/// f16 -> e4m3 is the rounding of the exact f16 value. Widening conversions are exact.
#pragma once

#include <cstdint>

#include "mixtape/config.hpp"
#include "mixtape/numeric/bfloat16.hpp"
#include "mixtape/numeric/detail/convert_bits.hpp"
#include "mixtape/numeric/float16.hpp"
#include "mixtape/numeric/float8.hpp"
#include "mixtape/numeric/numeric_traits.hpp"
#include "mixtape/numeric/rounding.hpp"

namespace mixtape {

/// Converts `x` to `To` with rounding mode `R` (rounding.hpp gives the exact rules).
///
/// Host and device give identical bits for every input and mode; the host code is constexpr and
/// needs no CUDA header, the device uses CUDA's conversion instructions where they give the same
/// bits (numeric/detail/cuda_intrinsics.hpp).
/// @tparam To    destination format: f16, bf16, e4m3, e5m2, float or double
/// @tparam R     rounding mode; Rounding::nearest_even (PyTorch's casts) by default
/// @tparam From  source format (deduced), any of the same six
/// @param x       the value to convert
/// @param random  stochastic rounding's uniformly random word (its top min(k, 32) bits are used,
///                k = number of input bits below the destination's ulp); ignored by the
///                nearest-even modes
/// @post For nearest-even modes the result does not depend on `random`.
/// @post `convert<To, R>(x)` is one of the two representable neighbours of x (or overflows / is
///       NaN as rounding.hpp says); when x is representable in To, it is x.
template <ScalarFormat To, Rounding R = Rounding::nearest_even, ScalarFormat From>
MIXTAPE_HOST_DEVICE constexpr To convert(From x, std::uint32_t random = 0) noexcept {
  using ToFormat = detail::format_of_t<To>;
  using FromFormat = detail::format_of_t<From>;
  return detail::from_storage<To>(detail::convert_bits<ToFormat, FromFormat, R>(detail::to_storage(x), random));
}

/// Converts `x` to `To` with a rounding mode chosen at run time (a configuration value, a policy
/// read from a string); dispatches to the compile-time form, so the results are identical.
/// A value of `r` outside the enumeration rounds to nearest-even.
/// @tparam To    destination format: f16, bf16, e4m3, e5m2, float or double
/// @tparam From  source format (deduced), any of the same six
/// @param x       the value to convert
/// @param r       rounding mode
/// @param random  stochastic rounding's random word (see the compile-time form)
template <ScalarFormat To, ScalarFormat From>
MIXTAPE_HOST_DEVICE constexpr To convert(From x, Rounding r, std::uint32_t random = 0) noexcept {
  switch (r) {
    case Rounding::nearest_even_saturate:
      return convert<To, Rounding::nearest_even_saturate>(x, random);
    case Rounding::stochastic:
      return convert<To, Rounding::stochastic>(x, random);
    case Rounding::stochastic_saturate:
      return convert<To, Rounding::stochastic_saturate>(x, random);
    case Rounding::nearest_even:
      break;
  }
  return convert<To, Rounding::nearest_even>(x, random);
}

}  // namespace mixtape
