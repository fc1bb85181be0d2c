// Nearest-even rounding from float and double to f16, bf16, e4m3 and e5m2 at the places where it
// goes wrong: every pair of neighbours (each midpoint, the floats and doubles next to it, both
// neighbours themselves, both signs), subnormals and underflow to zero, the overflow threshold
// (exactly at max + ulp/2 and one float or double either side), inf, NaN and -0, in the IEEE
// (PyTorch) and the saturating (TransformerEngine) mode; all against the table-search reference,
// plus hand-written expectations from the specifications for the overflow semantics.
#include <cmath>
#include <limits>

#include "numeric/numeric_test_util.hpp"

using namespace mixtape;
using mixtape::test::hex;
using mixtape::test::Mismatches;

namespace {

constexpr float kInfF = std::numeric_limits<float>::infinity();
constexpr double kInfD = std::numeric_limits<double>::infinity();

template <class T, class X>
void check_one(Mismatches& wrong, X x) {
  const auto& enc = test::encoder<T>();
  const std::uint32_t ieee = convert<T, Rounding::nearest_even>(x).bits();
  const std::uint32_t sat = convert<T, Rounding::nearest_even_saturate>(x).bits();
  const std::uint32_t want_ieee = enc.encode(static_cast<long double>(x), false);
  const std::uint32_t want_sat = enc.encode(static_cast<long double>(x), true);
  if (ieee != want_ieee)
    wrong.add(enc.format().name, " nearest_even(", x, ") = ", hex(ieee), ", reference ", hex(want_ieee));
  if (sat != want_sat) wrong.add(enc.format().name, " saturate(", x, ") = ", hex(sat), ", reference ", hex(want_sat));
  // The constructor is the non-saturating nearest-even conversion.
  if (T(x).bits() != ieee) wrong.add(enc.format().name, " constructor(", x, ") differs from convert");
}

/// Every neighbour pair (v_i, v_i+1), the last one being (max, max + ulp): both neighbours, the
/// midpoint, and the float and double on either side of it, with both signs.
template <class T>
void check_neighbour_pairs() {
  const auto& enc = test::encoder<T>();
  Mismatches wrong;
  for (std::size_t i = 0; i < enc.size(); ++i) {
    const long double lo = enc.bracket_value(i);
    const long double hi = enc.bracket_value(i + 1);
    const long double mid = (lo + hi) / 2;
    const double mid_d = static_cast<double>(mid);  // exact: at most 12 significant bits
    const float mid_f = static_cast<float>(mid);
    REQUIRE(static_cast<long double>(mid_d) == mid);
    REQUIRE(static_cast<long double>(mid_f) == mid);
    const double probes_d[] = {static_cast<double>(lo), mid_d, std::nextafter(mid_d, 0.0), std::nextafter(mid_d, kInfD),
                               static_cast<double>(hi)};
    const float probes_f[] = {static_cast<float>(lo), mid_f, std::nextafter(mid_f, 0.0f), std::nextafter(mid_f, kInfF)};
    for (const double p : probes_d) {
      check_one<T>(wrong, p);
      check_one<T>(wrong, -p);
    }
    for (const float p : probes_f) {
      check_one<T>(wrong, p);
      check_one<T>(wrong, -p);
    }
  }
  MIXTAPE_CHECK_NONE(wrong);
}

/// Specials and the edges of the range, with both signs.
template <class T>
void check_specials() {
  const auto& enc = test::encoder<T>();
  const long double min_sub = enc.bracket_value(1);
  Mismatches wrong;
  const float floats[] = {0.0f,
                          std::numeric_limits<float>::denorm_min(),
                          std::numeric_limits<float>::min(),
                          static_cast<float>(min_sub / 2),
                          std::nextafter(static_cast<float>(min_sub / 2), kInfF),
                          std::nextafter(static_cast<float>(min_sub / 2), 0.0f),
                          static_cast<float>(min_sub),
                          static_cast<float>(enc.max()),
                          std::nextafter(static_cast<float>(enc.max()), kInfF),
                          2.0f * static_cast<float>(enc.max()),
                          std::numeric_limits<float>::max(),
                          kInfF};
  for (const float x : floats) {
    check_one<T>(wrong, x);
    check_one<T>(wrong, -x);
  }
  const double doubles[] = {0.0,
                            std::numeric_limits<double>::denorm_min(),
                            std::numeric_limits<double>::min(),
                            static_cast<double>(min_sub / 2),
                            std::nextafter(static_cast<double>(min_sub / 2), kInfD),
                            static_cast<double>(enc.max()),
                            std::nextafter(static_cast<double>(enc.max()), kInfD),
                            1e300,
                            std::numeric_limits<double>::max(),
                            kInfD};
  for (const double x : doubles) {
    check_one<T>(wrong, x);
    check_one<T>(wrong, -x);
  }
  MIXTAPE_CHECK_NONE(wrong);

  // NaN: any payload, either sign, float or double, quiet or signalling: sign | all ones
  // (rounding.hpp), in every mode.
  const std::uint32_t all_ones = enc.format().sign_bit() - 1;
  for (const std::uint32_t nan_bits : {0x7FC00000u, 0x7F800001u, 0x7FFFFFFFu, 0x7FA5A5A5u, 0xFFC00000u, 0xFF800001u}) {
    const float x = detail::bit_cast<float>(nan_bits);
    const std::uint32_t sign = (nan_bits >> 31) ? enc.format().sign_bit() : 0u;
    INFO(enc.format().name << " NaN " << hex(nan_bits));
    CHECK(convert<T, Rounding::nearest_even>(x).bits() == (sign | all_ones));
    CHECK(convert<T, Rounding::nearest_even_saturate>(x).bits() == (sign | all_ones));
    CHECK(convert<T, Rounding::stochastic>(x, 0x12345678u).bits() == (sign | all_ones));
    CHECK(convert<T, Rounding::stochastic_saturate>(x, 0xFFFFFFFFu).bits() == (sign | all_ones));
    const double xd = static_cast<double>(x);
    CHECK(convert<T>(xd).bits() == (sign | all_ones));
  }
  // -0 keeps its sign; so does a negative value that rounds to zero.
  CHECK(convert<T>(-0.0f).bits() == enc.format().sign_bit());
  CHECK(convert<T>(-1e-300).bits() == enc.format().sign_bit());
  CHECK(convert<T>(-std::numeric_limits<float>::denorm_min()).bits() == enc.format().sign_bit());
  CHECK(convert<T>(0.0).bits() == 0u);
}

}  // namespace

TEST_CASE("f16: every midpoint, its neighbours and the values next to it round to nearest even", "[numeric][encode]") {
  check_neighbour_pairs<f16>();
}
TEST_CASE("bf16: every midpoint, its neighbours and the values next to it round to nearest even", "[numeric][encode]") {
  check_neighbour_pairs<bf16>();
}
TEST_CASE("e4m3: every midpoint, its neighbours and the values next to it round to nearest even", "[numeric][encode]") {
  check_neighbour_pairs<e4m3>();
}
TEST_CASE("e5m2: every midpoint, its neighbours and the values next to it round to nearest even", "[numeric][encode]") {
  check_neighbour_pairs<e5m2>();
}

TEST_CASE("specials, underflow and overflow edges agree with the reference", "[numeric][encode]") {
  check_specials<f16>();
  check_specials<bf16>();
  check_specials<e4m3>();
  check_specials<e5m2>();
}

TEST_CASE("overflow semantics: PyTorch's casts and TransformerEngine's saturating casts", "[numeric][encode]") {
  // Written from the specifications, not from the reference: the thresholds are max + ulp(max)/2
  // with the tie going to the even neighbour, the results inf (IEEE) or NaN (E4M3 has no inf).
  constexpr auto ne = Rounding::nearest_even;
  constexpr auto sat = Rounding::nearest_even_saturate;
  // E4M3: max 448 = 1.110b * 2^8 is even, so the tie at 464 stays at 448; above it, NaN.
  CHECK(convert<e4m3, ne>(464.0f).bits() == 0x7E);
  CHECK(convert<e4m3, ne>(std::nextafter(464.0f, kInfF)).bits() == 0x7F);
  CHECK(convert<e4m3, ne>(-std::nextafter(464.0, kInfD)).bits() == 0xFF);
  CHECK(convert<e4m3, ne>(480.0f).bits() == 0x7F);
  CHECK(convert<e4m3, ne>(kInfF).bits() == 0x7F);  // torch: inf -> float8_e4m3fn is NaN
  CHECK(convert<e4m3, ne>(-kInfF).bits() == 0xFF);
  CHECK(convert<e4m3, sat>(1e30f).bits() == 0x7E);
  CHECK(convert<e4m3, sat>(-kInfF).bits() == 0xFE);
  CHECK(convert<e4m3, sat>(std::nextafter(464.0f, kInfF)).bits() == 0x7E);
  // E5M2: max 57344 = 1.11b * 2^15 is odd, so the tie at 61440 goes up to 2^16: inf.
  CHECK(convert<e5m2, ne>(std::nextafter(61440.0f, 0.0f)).bits() == 0x7B);
  CHECK(convert<e5m2, ne>(61440.0f).bits() == 0x7C);
  CHECK(convert<e5m2, ne>(-61440.0).bits() == 0xFC);
  CHECK(convert<e5m2, ne>(kInfF).bits() == 0x7C);
  CHECK(convert<e5m2, sat>(kInfF).bits() == 0x7B);
  CHECK(convert<e5m2, sat>(-1e10).bits() == 0xFB);
  // f16: max 65504, threshold 65520.
  CHECK(convert<f16, ne>(65519.998f).bits() == 0x7BFF);
  CHECK(convert<f16, ne>(65520.0f).bits() == 0x7C00);
  CHECK(convert<f16, sat>(65520.0f).bits() == 0x7BFF);
  CHECK(convert<f16, sat>(-kInfF).bits() == 0xFBFF);
  // bf16: max 0x1.FEp127, threshold 0x1.FFp127.
  CHECK(convert<bf16, ne>(0x1.FFp127f).bits() == 0x7F80);
  CHECK(convert<bf16, ne>(std::nextafter(0x1.FFp127f, 0.0f)).bits() == 0x7F7F);
  CHECK(convert<bf16, sat>(std::numeric_limits<float>::max()).bits() == 0x7F7F);
  CHECK(convert<bf16, sat>(kInfF).bits() == 0x7F7F);
  // Saturating never produces inf, also when widening (to the destination's max) or converting to
  // the same type.
  CHECK(convert<float, sat>(f16::from_bits(0x7C00)) == std::numeric_limits<float>::max());
  CHECK(convert<float, ne>(f16::from_bits(0x7C00)) == kInfF);
  CHECK(convert<f16, sat>(f16::from_bits(0xFC00)).bits() == 0xFBFF);
  CHECK(convert<f16, ne>(f16::from_bits(0xFC00)).bits() == 0xFC00);
  CHECK(convert<double, sat>(-kInfF) == std::numeric_limits<double>::lowest());
  CHECK(convert<float, sat>(kInfD) == std::numeric_limits<float>::max());
}

TEST_CASE("double inputs round once, not through float", "[numeric][encode]") {
  // x is just above the f16 midpoint 1 + 2^-11 between 1 and 1 + 2^-10; as a float it *is* the
  // midpoint, which rounds to the even neighbour 1. Rounded once, x goes up.
  const double x = 1.0 + 0x1p-11 + 0x1p-40;
  REQUIRE(static_cast<float>(x) == 1.0f + 0x1p-11f);
  CHECK(convert<f16>(x).bits() == 0x3C01);
  CHECK(f16(x).bits() == 0x3C01);
  CHECK(convert<f16>(static_cast<float>(x)).bits() == 0x3C00);
  // The same trap for each format, at every pair of neighbours, is part of the neighbour-pair tests
  // (the doubles next to each midpoint round to the same float).
  const double y = 448.0 + 16.0 + 0x1p-30;  // just above E4M3's overflow tie
  REQUIRE(static_cast<float>(y) == 464.0f);
  CHECK(convert<e4m3>(y).bits() == 0x7F);
  CHECK(convert<e4m3, Rounding::nearest_even_saturate>(y).bits() == 0x7E);
}

TEST_CASE("integers convert exactly rounded", "[numeric][encode]") {
  Mismatches wrong;
  for (int i = -70000; i <= 70000; ++i) {
    const auto want = test::encoder<f16>().encode(i, false);
    if (f16(i).bits() != want) wrong.add("f16(", i, ") = ", hex(f16(i).bits()), ", reference ", hex(want));
    if (i >= -1000 && i <= 1000) {
      if (e4m3(i).bits() != test::encoder<e4m3>().encode(i, false)) wrong.add("e4m3(", i, ")");
      if (e5m2(i).bits() != test::encoder<e5m2>().encode(i, false)) wrong.add("e5m2(", i, ")");
    }
  }
  std::mt19937_64 rng(test::test_seed());
  for (int n = 0; n < 100000; ++n) {
    const std::uint64_t u = rng() >> (rng() % 64);
    const auto v = static_cast<std::int64_t>(u >> 1);
    const std::int64_t s = (rng() & 1) ? v : -v;
    // long double holds every 64-bit integer exactly; a detour through double would not.
    if (bf16(s).bits() != test::encoder<bf16>().encode(static_cast<long double>(s), false)) wrong.add("bf16(", s, ")");
    if (bf16(u).bits() != test::encoder<bf16>().encode(static_cast<long double>(u), false)) wrong.add("bf16(", u, "u)");
  }
  const std::int64_t lowest = std::numeric_limits<std::int64_t>::min();
  CHECK(bf16(lowest).bits() == 0xDF00);  // -2^63
  CHECK(f16(std::numeric_limits<std::uint64_t>::max()).bits() == 0x7C00);
  MIXTAPE_CHECK_NONE(wrong);
}

TEST_CASE("double to float and float to double", "[numeric][encode]") {
  // The hardware's IEEE conversion is the reference here (the table search would need 2^31
  // entries); only the NaN rule and saturation are the library's own.
  std::mt19937_64 rng(test::test_seed());
  Mismatches wrong;
  for (int n = 0; n < 1000000; ++n) {
    double x;
    if (n % 2 == 0) {
      x = detail::bit_cast<double>(rng());
    } else {
      std::uniform_int_distribution<int> e(-160, 130);
      x = std::ldexp(1.0 + std::ldexp(static_cast<double>(rng() >> 12), -52), e(rng));
      if (rng() & 1) x = -x;
    }
    const float hw = static_cast<float>(x);
    std::uint32_t want = test::float_bits(hw);
    std::uint32_t want_sat = want;
    if (std::isnan(x)) {
      want = want_sat = (std::signbit(x) ? 0x80000000u : 0u) | 0x7FFFFFFFu;
    } else if (std::isinf(hw)) {
      want_sat = (std::signbit(x) ? 0x80000000u : 0u) | 0x7F7FFFFFu;
    }
    if (test::float_bits(convert<float>(x)) != want) wrong.add("convert<float>(", x, ")");
    if (test::float_bits(convert<float, Rounding::nearest_even_saturate>(x)) != want_sat) wrong.add("sat(", x, ")");
    // float -> double is exact; a NaN keeps sign and payload, and is quiet.
    const float xf = detail::bit_cast<float>(static_cast<std::uint32_t>(rng()));
    std::uint64_t want_d = test::double_bits(static_cast<double>(xf));
    if (std::isnan(xf)) {
      const std::uint64_t b = test::float_bits(xf);
      want_d = ((b >> 31) << 63) | 0x7FF8000000000000ull | ((b & 0x7FFFFFull) << 29);
    }
    if (test::double_bits(convert<double>(xf)) != want_d) wrong.add("convert<double>(", xf, ")");
  }
  MIXTAPE_CHECK_NONE(wrong);
}

TEST_CASE("f32 -> bf16 nearest-even: the branch-free host path equals the portable one for every float",
          "[numeric][encode][exhaustive]") {
  std::uint64_t differ = 0;
  for (std::uint64_t i = 0; i <= 0xFFFFFFFFull; ++i) {
    const auto x = static_cast<std::uint32_t>(i);
    differ += mixtape::detail::convert_bits<mixtape::detail::BF16Format, mixtape::detail::F32Format,
                                            mixtape::Rounding::nearest_even>(x, 0) !=
              mixtape::detail::convert_bits_portable<mixtape::detail::BF16Format, mixtape::detail::F32Format,
                                                     mixtape::Rounding::nearest_even>(x, 0);
  }
  CHECK(differ == 0);
}

TEST_CASE("f32 -> bf16 stochastic: the add-and-shift path equals the portable one for every float, at both "
          "sides of each input's threshold, in both modes",
          "[numeric][encode][stochastic][exhaustive]") {
  using mixtape::Rounding;
  using mixtape::detail::BF16Format;
  using mixtape::detail::F32Format;
  // Input x rounds up exactly when D + (word >> 16) >= 2^16 (D: its low 16 bits), so the word
  // whose top half is 2^16 - D is the smallest that rounds it up and the one below the largest
  // that does not. Each input gets one of the two words and one of the two modes, alternating
  // with its two lowest bits, so every (sign, exponent, top bits) meets all four combinations;
  // the low half of the word is junk that must not matter.
  std::uint64_t differ = 0;
  for (std::uint64_t i = 0; i <= 0xFFFFFFFFull; ++i) {
    const auto x = static_cast<std::uint32_t>(i);
    const std::uint32_t d = x & 0xFFFFu;
    const std::uint32_t top = (0x10000u - d - ((i >> 1) & 1u)) & 0xFFFFu;  // D = 0: 0 or 0xFFFF
    const std::uint32_t word = (top << 16) | (static_cast<std::uint32_t>(i * 0x9E3779B9u) >> 16);
    if ((i & 1u) == 0) {
      differ += mixtape::detail::convert_bits<BF16Format, F32Format, Rounding::stochastic>(x, word) !=
                mixtape::detail::convert_bits_portable<BF16Format, F32Format, Rounding::stochastic>(x, word);
    } else {
      differ += mixtape::detail::convert_bits<BF16Format, F32Format, Rounding::stochastic_saturate>(x, word) !=
                mixtape::detail::convert_bits_portable<BF16Format, F32Format, Rounding::stochastic_saturate>(x, word);
    }
  }
  CHECK(differ == 0);
}
