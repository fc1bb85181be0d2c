/// @file bit_convert.hpp
/// @brief The bit-level engine behind every conversion: format descriptions (field widths and
///        special encodings) and one generic, constexpr, integer-only conversion between any two
///        binary floating-point formats, for each Rounding mode.
///
/// Why one generic routine instead of one hand-written cast per pair: every pair (double -> e4m3,
/// f16 -> bf16, ...) then rounds once from the exact input, with the same code for ties, subnormals
/// and overflow, and the host and the device run the same integer operations, so they agree bit for
/// bit. CUDA's conversion instructions are used on the device only where they provably give the
/// same bits (cuda_intrinsics.hpp); everything else runs this code on both sides.
///
/// The routine only uses integer arithmetic on the encodings (no floating-point operation, so no
/// dependence on the FPU's rounding mode, flush-to-zero or contraction flags) and no standard
/// library function, so it is usable in constant expressions and in device code without
/// `--expt-relaxed-constexpr`.
#pragma once

#include <cstdint>
#include <type_traits>

#include "mixtape/config.hpp"
#include "mixtape/numeric/rounding.hpp"

namespace mixtape::detail {

/// `std::bit_cast` for host and device: the standard one is a host function, which device code may
/// call only under `--expt-relaxed-constexpr`; the builtin (GCC >= 11, Clang, nvcc) is both.
/// @tparam To    destination type, trivially copyable, same size as `From`
/// @tparam From  source type, trivially copyable
template <class To, class From>
MIXTAPE_HOST_DEVICE constexpr To bit_cast(const From& from) noexcept {
  static_assert(sizeof(To) == sizeof(From), "bit_cast needs types of equal size");
  static_assert(std::is_trivially_copyable_v<To> && std::is_trivially_copyable_v<From>,
                "bit_cast needs trivially copyable types");
  return __builtin_bit_cast(To, from);
}

/// Number of bits needed to represent `v` (0 for 0), as `std::bit_width`, usable on the device.
MIXTAPE_HOST_DEVICE constexpr int bit_width(std::uint64_t v) noexcept {
#if !MIXTAPE_DEVICE_CODE && (defined(__GNUC__) || defined(__clang__))
  // One instruction on the host; GCC and Clang evaluate it in constant expressions too.
  return v == 0 ? 0 : 64 - __builtin_clzll(v);
#else
#if MIXTAPE_DEVICE_CODE
  if (!__builtin_is_constant_evaluated()) return 64 - __clzll(static_cast<long long>(v));  // one instruction
#endif
  // Binary search in six steps (unrolled by the compiler), constexpr everywhere.
  int n = 0;
  for (int step = 32; step > 0; step >>= 1) {
    if (v >> step) {
      v >>= step;
      n += step;
    }
  }
  return n + static_cast<int>(v);
#endif
}

/// A binary floating-point format: one sign bit, `ExponentBits` biased exponent bits (bias
/// 2^(E-1) - 1), `MantissaBits` fraction bits, an implicit leading 1 for normal numbers and
/// subnormals at the smallest exponent.
/// @tparam ExponentBits  width of the exponent field (4 for E4M3, 5 for f16 and E5M2, 8 for bf16
///                       and f32, 11 for f64)
/// @tparam MantissaBits  width of the fraction field (3, 2, 10, 7, 23, 52)
/// @tparam Ieee          true: the all-ones exponent encodes inf (fraction 0) and NaNs (IEEE 754,
///                       bfloat16, OCP E5M2); false: OCP E4M3 ("fn": finite + NaN), where the
///                       all-ones exponent is an ordinary binade and only S.1111.111 is NaN
/// @tparam Storage       unsigned integer type of the encoding's width
template <int ExponentBits, int MantissaBits, bool Ieee, class Storage>
struct BinaryFormat {
  using storage_type = Storage;
  static constexpr int kExponentBits = ExponentBits;
  static constexpr int kMantissaBits = MantissaBits;
  static constexpr int kBits = 1 + ExponentBits + MantissaBits;
  static constexpr bool kIeee = Ieee;
  static_assert(kBits == 8 * static_cast<int>(sizeof(Storage)), "storage must hold exactly one encoding");

  static constexpr int kBias = (1 << (ExponentBits - 1)) - 1;
  /// Unbiased exponent of the largest binade (E4M3 gains the all-ones exponent: 8, not 7).
  static constexpr int kEmax = (1 << ExponentBits) - (Ieee ? 2 : 1) - kBias;
  /// Unbiased exponent of the smallest normal binade (also the exponent of the subnormals).
  static constexpr int kEmin = 1 - kBias;

  static constexpr std::uint64_t kSignBit = std::uint64_t{1} << (ExponentBits + MantissaBits);
  static constexpr std::uint64_t kMagnitudeMask = kSignBit - 1;
  static constexpr std::uint64_t kMantissaMask = (std::uint64_t{1} << MantissaBits) - 1;
  static constexpr std::uint64_t kExponentMask = kMagnitudeMask & ~kMantissaMask;
  static constexpr std::uint64_t kQuietBit = std::uint64_t{1} << (MantissaBits - 1);
  /// The NaN this library produces when a payload cannot be kept: all exponent and fraction bits
  /// set (E4M3's only NaN; PyTorch's FP8 NaN; CUDA's f16/bf16 NaN).
  static constexpr std::uint64_t kNaN = kMagnitudeMask;
  /// Infinity, for IEEE-style formats.
  static constexpr std::uint64_t kInf = kExponentMask;
  /// The largest finite magnitude: 0x7BFF (f16), 0x7F7F (bf16), 0x7E (E4M3, 448), 0x7B (E5M2, 57344).
  static constexpr std::uint64_t kMax = Ieee ? kInf - 1 : kNaN - 1;
  /// What a non-saturating overflow produces: inf, or NaN where there is no inf.
  static constexpr std::uint64_t kOverflow = Ieee ? kInf : kNaN;

  MIXTAPE_HOST_DEVICE static constexpr bool is_nan(std::uint64_t magnitude) noexcept {
    return magnitude > (Ieee ? kInf : kMax);
  }
  MIXTAPE_HOST_DEVICE static constexpr bool is_inf(std::uint64_t magnitude) noexcept {
    return Ieee && magnitude == kInf;
  }
};

using F16Format = BinaryFormat<5, 10, true, std::uint16_t>;   ///< IEEE 754 binary16
using BF16Format = BinaryFormat<8, 7, true, std::uint16_t>;   ///< bfloat16 (f32's top half)
using E4M3Format = BinaryFormat<4, 3, false, std::uint8_t>;   ///< OCP FP8 E4M3 (PyTorch float8_e4m3fn)
using E5M2Format = BinaryFormat<5, 2, true, std::uint8_t>;    ///< OCP FP8 E5M2 (PyTorch float8_e5m2)
using F32Format = BinaryFormat<8, 23, true, std::uint32_t>;   ///< IEEE 754 binary32
using F64Format = BinaryFormat<11, 52, true, std::uint64_t>;  ///< IEEE 754 binary64

/// Rounds the exact magnitude `significand * 2^lsb_exponent` (not zero) to format `To` by the rules
/// of rounding.hpp and returns the encoding with `sign` (To's sign bit or 0) applied. The common
/// core of every finite conversion, from floating-point encodings and from integers alike.
/// @tparam To  destination BinaryFormat
/// @tparam R   rounding mode
template <class To, Rounding R>
MIXTAPE_HOST_DEVICE constexpr typename To::storage_type round_magnitude(std::uint64_t sign, std::uint64_t significand,
                                                                        int lsb_exponent,
                                                                        std::uint32_t random) noexcept {
  using Out = typename To::storage_type;
  const std::uint64_t overflow = sign | (is_saturating(R) ? To::kMax : To::kOverflow);
  const int top = lsb_exponent + bit_width(significand) - 1;  // floor(log2 |x|)
  // At or above 2^(emax+1) every format is past its max: overflow without further work (this
  // also keeps the shifts below in range for double inputs such as 1e300).
  if (top > To::kEmax) return static_cast<Out>(overflow);

  // The destination's ulp at |x| is 2^(binade - M); below the normal range it stays at emin's.
  const int binade = top > To::kEmin ? top : To::kEmin;
  const int shift = binade - To::kMantissaBits - lsb_exponent;  // input bits below that ulp
  std::uint64_t kept = 0;
  bool round_up = false;
  if (shift <= 0) {
    kept = significand << -shift;  // exact (widening)
  } else {
    kept = shift < 64 ? significand >> shift : 0;
    const std::uint64_t rest = shift < 64 ? significand & ((std::uint64_t{1} << shift) - 1) : significand;
    if constexpr (is_stochastic(R)) {
      // rounding.hpp: round up iff D_m + r >= 2^m, with m = min(k, 32).
      const int m = shift < 32 ? shift : 32;
      const int drop = shift - m;
      const std::uint64_t rest_top = drop < 64 ? rest >> drop : 0;
      const std::uint64_t r = static_cast<std::uint64_t>(random) >> (32 - m);
      round_up = rest_top + r >= (std::uint64_t{1} << m);
    } else {
      (void)random;
      // Ties to even. With shift > 64, half an ulp (2^(shift-1)) exceeds every 64-bit
      // significand, so the magnitude rounds down.
      if (shift <= 64) {
        const std::uint64_t half = std::uint64_t{1} << (shift - 1);
        round_up = rest > half || (rest == half && (kept & 1) != 0);
      }
    }
  }
  // (biased exponent - 1) in the exponent field plus a significand that still carries its leading
  // 1 is the encoding; for subnormal results (binade == emin, no leading 1) the field is 0. Adding
  // the round-up then carries into the exponent by itself (1.11..1 -> 10.0, the largest subnormal
  // -> the smallest normal, max -> the overflow encoding).
  const std::uint64_t encoding =
      (static_cast<std::uint64_t>(binade + To::kBias - 1) << To::kMantissaBits) + kept + (round_up ? 1 : 0);
  if (encoding > To::kMax) return static_cast<Out>(overflow);
  return static_cast<Out>(sign | encoding);
}

/// Converts the encoding `x` of format `From` to format `To` by the rules of rounding.hpp, with
/// integer operations only. This is the portable path: the host always runs it, the device runs it
/// wherever no CUDA instruction gives the same bits.
/// @tparam To      destination BinaryFormat
/// @tparam From    source BinaryFormat
/// @tparam R       rounding mode
/// @param random   the stochastic-rounding word (its top bits are used; ignored by other modes)
template <class To, class From, Rounding R>
MIXTAPE_HOST_DEVICE constexpr typename To::storage_type convert_bits_portable(typename From::storage_type x,
                                                                              std::uint32_t random) noexcept {
  using Out = typename To::storage_type;
  constexpr bool kSaturate = is_saturating(R);
  const std::uint64_t in = x;
  const std::uint64_t magnitude = in & From::kMagnitudeMask;
  const std::uint64_t sign = (in & From::kSignBit) != 0 ? To::kSignBit : 0;

  if constexpr (std::is_same_v<To, From>) {
    // Identity: nothing to round; only saturation has an effect (inf -> max).
    if (kSaturate && From::is_inf(magnitude)) return static_cast<Out>(sign | To::kMax);
    return x;
  } else {
    if (From::is_nan(magnitude)) {
      if constexpr (To::kIeee && To::kExponentBits >= From::kExponentBits && To::kMantissaBits >= From::kMantissaBits) {
        // Every payload fits: keep it (top-aligned) and make the NaN quiet.
        const std::uint64_t payload = (magnitude & From::kMantissaMask) << (To::kMantissaBits - From::kMantissaBits);
        return static_cast<Out>(sign | To::kExponentMask | To::kQuietBit | payload);
      } else {
        return static_cast<Out>(sign | To::kNaN);
      }
    }
    if (From::is_inf(magnitude)) return static_cast<Out>(sign | (kSaturate ? To::kMax : To::kOverflow));
    if (magnitude == 0) return static_cast<Out>(sign);

    // |x| = significand * 2^lsb_exponent, exactly.
    const std::uint64_t exponent_field = magnitude >> From::kMantissaBits;
    std::uint64_t significand = magnitude & From::kMantissaMask;
    int lsb_exponent = From::kEmin - From::kMantissaBits;
    if (exponent_field != 0) {
      significand |= std::uint64_t{1} << From::kMantissaBits;
      lsb_exponent = static_cast<int>(exponent_field) - From::kBias - From::kMantissaBits;
    }
    return round_magnitude<To, R>(sign, significand, lsb_exponent, random);
  }
}

/// Converts an integer exactly rounded (once) to format `To`, e.g. for `f16(70000)` (inf) or
/// `bf16(int64_t{1} << 60 | 1)`, which a detour through double would round twice.
/// @tparam To  destination BinaryFormat
/// @tparam R   rounding mode
/// @tparam I   integer type
template <class To, Rounding R, class I>
MIXTAPE_HOST_DEVICE constexpr typename To::storage_type convert_integer_bits(I value, std::uint32_t random) noexcept {
  static_assert(std::is_integral_v<I> && sizeof(I) <= 8, "integers up to 64 bits");
  if (value == 0) return 0;
  std::uint64_t sign = 0;
  std::uint64_t magnitude = static_cast<std::uint64_t>(value);
  if constexpr (std::is_signed_v<I>) {
    if (value < 0) {
      sign = To::kSignBit;
      magnitude = std::uint64_t{0} - magnitude;  // |INT64_MIN| = 2^63 fits in 64 unsigned bits
    }
  }
  return round_magnitude<To, R>(sign, magnitude, 0, random);
}

}  // namespace mixtape::detail
