// Every bit pattern of each narrow format converted to each other narrow format (f16 <-> bf16 <->
// e4m3 <-> e5m2), in all four rounding modes, against the reference: nearest-even and saturating
// results exactly; stochastic results always one of the two neighbours, with the exact frequency of
// rounding up over all 256 values of the random word's top 8 bits wherever the conversion drops at
// most 8 bits (that covers every normal-range result of these pairs).
#include <cmath>

#include "numeric/numeric_test_util.hpp"

using namespace mixtape;
using mixtape::test::hex;
using mixtape::test::Mismatches;

namespace {

/// rounding.hpp: a NaN keeps sign and payload (quiet) when the destination holds every payload of
/// the source, and is sign | all ones otherwise.
std::uint32_t expected_nan(const test::ref::Format& from, const test::ref::Format& to, std::uint32_t code) {
  const bool negative = (code & from.sign_bit()) != 0;
  const std::uint32_t sign = negative ? to.sign_bit() : 0u;
  const bool keeps_payload =
      to.ieee_specials && to.exponent_bits >= from.exponent_bits && to.mantissa_bits >= from.mantissa_bits;
  if (!keeps_payload) return sign | to.all_ones_magnitude();
  const std::uint32_t fraction = code & ((1u << from.mantissa_bits) - 1);
  const std::uint32_t exponent_all_ones = ((1u << to.exponent_bits) - 1) << to.mantissa_bits;
  const std::uint32_t quiet = 1u << (to.mantissa_bits - 1);
  return sign | exponent_all_ones | quiet | (fraction << (to.mantissa_bits - from.mantissa_bits));
}

template <class S, class T>
void check_pair() {
  const auto& from = test::ref_format<S>();
  const auto& enc = test::encoder<T>();
  const auto& to = enc.format();
  const std::uint64_t seed = test::test_seed();
  INFO(from.name << " -> " << to.name << ", seed " << seed);
  std::mt19937_64 rng(seed);
  Mismatches wrong;
  for (std::uint32_t code = 0; code < (1u << from.bits()); ++code) {
    const S x = S::from_bits(static_cast<typename S::storage_type>(code));
    const test::ref::Decoded d = test::ref::decode(from, code);
    const std::uint32_t ne = convert<T, Rounding::nearest_even>(x).bits();
    const std::uint32_t sat = convert<T, Rounding::nearest_even_saturate>(x).bits();
    if (d.kind == test::ref::Kind::nan) {
      const std::uint32_t want = expected_nan(from, to, code);
      if (ne != want || sat != want) wrong.add(hex(code), " (NaN) -> ", hex(ne), " / ", hex(sat), ", want ", hex(want));
      if (convert<T, Rounding::stochastic>(x, static_cast<std::uint32_t>(rng())).bits() != want) {
        wrong.add(hex(code), " (NaN) stochastic");
      }
      continue;
    }
    const std::uint32_t want_ne = enc.encode(d.value, false);
    const std::uint32_t want_sat = enc.encode(d.value, true);
    if (ne != want_ne)
      wrong.add(hex(code), " = ", static_cast<double>(d.value), " -> ", hex(ne), ", want ", hex(want_ne));
    if (sat != want_sat) wrong.add(hex(code), " saturate -> ", hex(sat), ", want ", hex(want_sat));

    // Stochastic: the candidates are the two neighbours (or the overflow results past max).
    for (const bool saturate : {false, true}) {
      std::uint32_t lo_code, hi_code;
      long double p = 0;  // probability of hi
      const std::uint32_t sign = d.negative ? to.sign_bit() : 0u;
      if (d.kind == test::ref::Kind::inf || std::fabs(d.value) >= enc.bracket_value(enc.size())) {
        lo_code = hi_code = saturate ? (sign | enc.max_code()) : enc.overflow_code(d.negative);
      } else {
        const auto b = enc.bracket(d.value);
        const long double lo = enc.bracket_value(b.lo);
        const long double hi = enc.bracket_value(b.hi);
        lo_code = sign | enc.code(b.lo);
        hi_code = b.hi == enc.size() ? (saturate ? (sign | enc.max_code()) : enc.overflow_code(d.negative))
                                     : (sign | enc.code(b.hi));
        // Exact: hi - lo is a power of two. (Saturating past max both candidates are max.)
        if (b.hi != b.lo && hi_code != lo_code) p = (std::fabs(d.value) - lo) / (hi - lo);
      }
      int ups = 0;
      for (std::uint32_t j = 0; j < 256; ++j) {
        const std::uint32_t word = (j << 24) | static_cast<std::uint32_t>(rng() & 0xFFFFFFu);
        const std::uint32_t r = saturate ? convert<T, Rounding::stochastic_saturate>(x, word).bits()
                                         : convert<T, Rounding::stochastic>(x, word).bits();
        if (r == hi_code && hi_code != lo_code) {
          ++ups;
        } else if (r != lo_code) {
          wrong.add(hex(code), " stochastic(", hex(word), ") -> ", hex(r), ", not ", hex(lo_code), " or ",
                    hex(hi_code));
        }
      }
      const long double expected_ups = p * 256;
      if (expected_ups == std::floor(expected_ups) && ups != static_cast<int>(expected_ups)) {
        wrong.add(hex(code), " rounds up for ", ups, " of 256 words, want ", static_cast<double>(expected_ups));
      }
    }
  }
  MIXTAPE_CHECK_NONE(wrong);
}

}  // namespace

TEST_CASE("f16 converts to bf16, e4m3 and e5m2 like the reference, in every mode", "[numeric][pairs]") {
  check_pair<f16, bf16>();
  check_pair<f16, e4m3>();
  check_pair<f16, e5m2>();
}
TEST_CASE("bf16 converts to f16, e4m3 and e5m2 like the reference, in every mode", "[numeric][pairs]") {
  check_pair<bf16, f16>();
  check_pair<bf16, e4m3>();
  check_pair<bf16, e5m2>();
}
TEST_CASE("e4m3 and e5m2 convert to the other formats like the reference, in every mode", "[numeric][pairs]") {
  check_pair<e4m3, f16>();
  check_pair<e4m3, bf16>();
  check_pair<e4m3, e5m2>();
  check_pair<e5m2, f16>();
  check_pair<e5m2, bf16>();
  check_pair<e5m2, e4m3>();
}

TEST_CASE("a conversion to the same type returns its input, except inf when saturating", "[numeric][pairs]") {
  Mismatches wrong;
  for (std::uint32_t code = 0; code < 65536; ++code) {
    const f16 h = f16::from_bits(static_cast<std::uint16_t>(code));
    const bool inf = (code & 0x7FFFu) == 0x7C00u;
    for (const Rounding r : kAllRoundings) {
      const std::uint32_t got = convert<f16>(h, r, 0xDEADBEEFu).bits();
      const std::uint32_t want = inf && is_saturating(r) ? ((code & 0x8000u) | 0x7BFFu) : code;
      if (got != want) wrong.add(hex(code), " ", rounding_name(r), " -> ", hex(got));
    }
    const e4m3 q = e4m3::from_bits(static_cast<std::uint8_t>(code & 0xFF));
    if (convert<e4m3, Rounding::nearest_even_saturate>(q).bits() != (code & 0xFF))
      wrong.add("e4m3 identity ", hex(code & 0xFF));
  }
  MIXTAPE_CHECK_NONE(wrong);
}
