/// @file rounding.hpp
/// @brief The rounding modes of every narrowing conversion (`Rounding`), and the exact rules each
///        one follows: nearest-even, overflow to inf/NaN or saturation, stochastic rounding.
///
/// These rules are the contract of `convert` (convert.hpp) and of the scalar types' constructors.
/// Host and device follow them bit for bit; tests/numeric checks them against a reference built
/// from the format definitions, and, on a GPU, checks all 2^32 float inputs device against host.
///
/// ## Nearest-even (`nearest_even`, `nearest_even_saturate`)
/// The result is the representable value nearest to the exact input; a tie goes to the one whose
/// last mantissa bit is 0 (IEEE 754 roundTiesToEven). Inputs are rounded once, from their exact
/// value: a double is never rounded to float first (which could round twice and land on the
/// wrong neighbour of a tie).
///
/// ## Overflow: IEEE (the default) or saturating
/// Whether a finite input overflows is decided as IEEE 754 does: round as if the exponent range
/// were unbounded, and the input overflows when that result exceeds the format's largest finite
/// value `max`. With nearest-even that happens for |x| >= max + ulp(max)/2, except that E4M3's
/// `max` (448, mantissa 110) is even, so its tie at 464 rounds down to 448 and only |x| > 464
/// overflows.
///  - non-saturating (`nearest_even`, `stochastic`): PyTorch's casts. Overflow gives +-inf where
///    the format has an infinity (f16, bf16, e5m2, f32, f64); E4M3 (OCP "fn": no infinity) gives
///    NaN, as `torch.float8_e4m3fn` does for |x| > 464. An infinite input gives +-inf, or NaN
///    for E4M3 (PyTorch: `torch.tensor(inf).to(torch.float8_e4m3fn)` is NaN).
///  - saturating (`*_saturate`): TransformerEngine's casts (PTX `cvt.rn.satfinite`). Finite
///    overflow and +-inf give +-max. No saturating conversion ever returns an infinity; this holds
///    for every pair of types, widening and identity included (f16 inf -> f32 gives FLT_MAX).
///
/// ## NaN
/// A NaN input always gives a NaN of the same sign. When the destination holds every payload of
/// the source (it has at least as many exponent and mantissa bits: f16 -> f32, e4m3 -> f16,
/// f32 -> f64, ...) the payload is kept and the quiet bit set (IEEE 754 6.2.3). Otherwise the
/// result is the all-ones NaN `S.11...1` (0x7FFF for f16 and bf16, 0x7F for E4M3 and E5M2): the
/// NaN PyTorch's FP8 casts return, and the one CUDA's f16/bf16 conversions return for positive
/// NaNs. A conversion to the same type returns its input unchanged (except inf when saturating).
///
/// ## Stochastic rounding (`stochastic`, `stochastic_saturate`)
/// Let x be the exact input and a, b the two representable neighbours of |x| with
/// a <= |x| < b (magnitudes; the sign is applied at the end). Write |x| = (A + D / 2^k) ulp, where
/// A is a's integer significand, k >= 1 is the number of input bits below the destination's ulp
/// and D is the k-bit integer those bits form. With m = min(k, 32), let
///     D_m = floor(D / 2^(k - m))          (the top m discarded bits)
///     r   = random >> (32 - m)            (the top m bits of the supplied random word)
/// The magnitude rounds up to b exactly when D_m + r >= 2^m; otherwise it is a. If x is
/// representable (D = 0) the result is x, whatever the random word.
/// Hence, for a random word uniform on [0, 2^32): P(b) = D_m / 2^m, which equals the exact
/// (|x| - a) / (b - a) when k <= 32 (every float input to f16, bf16, e4m3 or e5m2 in their normal
/// range: k = 13, 16, 20, 21) and is smaller than it by less than 2^-32 otherwise (double inputs,
/// subnormal results). The result is always a or b, so the expectation is within
/// 2^-32 (b - a) of x. Overflow then follows the rule above for the mode's saturation (rounding
/// up past `max` gives inf / NaN, or max when saturating).
/// The random word should be uniform and independent per element (a counter-based generator such
/// as Philox keyed by the element's index); reusing one word for many elements correlates their
/// rounding.
#pragma once

#include <cstdint>

#include "mixtape/config.hpp"

namespace mixtape {

/// How a conversion rounds a value that the destination cannot represent exactly, and what it
/// does with values beyond the destination's range. The exact rules are in this file's header.
enum class Rounding : std::uint8_t {
  /// Round to nearest, ties to even; overflow gives inf (NaN for E4M3). PyTorch's casts.
  nearest_even,
  /// Round to nearest, ties to even; overflow and inf give +-max. TransformerEngine's FP8 casts.
  nearest_even_saturate,
  /// Round up or down with probability proportional to the distance, from a supplied 32-bit
  /// random word; overflow as `nearest_even`.
  stochastic,
  /// Stochastic rounding; overflow and inf give +-max.
  stochastic_saturate,
};

/// Number of Rounding values (for loops over all modes and for validating runtime values).
inline constexpr int kRoundingCount = 4;

/// True for the modes that clamp to the largest finite value instead of producing inf or NaN.
/// @post `is_saturating(r)` is true exactly for `nearest_even_saturate` and `stochastic_saturate`.
MIXTAPE_HOST_DEVICE constexpr bool is_saturating(Rounding r) noexcept {
  return r == Rounding::nearest_even_saturate || r == Rounding::stochastic_saturate;
}

/// True for the modes that read the random word.
MIXTAPE_HOST_DEVICE constexpr bool is_stochastic(Rounding r) noexcept {
  return r == Rounding::stochastic || r == Rounding::stochastic_saturate;
}

/// The mode with the same rounding and the given overflow behaviour, e.g.
/// `with_saturation(Rounding::stochastic, true) == Rounding::stochastic_saturate`.
MIXTAPE_HOST_DEVICE constexpr Rounding with_saturation(Rounding r, bool saturate) noexcept {
  if (is_stochastic(r)) {
    return saturate ? Rounding::stochastic_saturate : Rounding::stochastic;
  }
  return saturate ? Rounding::nearest_even_saturate : Rounding::nearest_even;
}

/// The enumerator's name ("nearest_even", ...), or "invalid" for a value outside the enum.
MIXTAPE_HOST_DEVICE constexpr const char* rounding_name(Rounding r) noexcept {
  switch (r) {
    case Rounding::nearest_even:
      return "nearest_even";
    case Rounding::nearest_even_saturate:
      return "nearest_even_saturate";
    case Rounding::stochastic:
      return "stochastic";
    case Rounding::stochastic_saturate:
      return "stochastic_saturate";
  }
  return "invalid";
}

/// All modes, in enumerator order (for tests and sweeps).
inline constexpr Rounding kAllRoundings[kRoundingCount] = {Rounding::nearest_even, Rounding::nearest_even_saturate,
                                                           Rounding::stochastic, Rounding::stochastic_saturate};

}  // namespace mixtape
