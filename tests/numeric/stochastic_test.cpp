// Stochastic rounding (rounding.hpp): the result is always one of the two neighbours; over all
// 2^K values of the random word's top K bits (K >= the number of dropped bits) the number of
// round-ups is exactly (|x| - lo) / (hi - lo) * 2^K; over random words the mean is x within a
// derived bound; the word's bits are used exactly as specified (top bits, added to the dropped bits,
// quantized to 32 bits); overflow follows the mode's saturation.
#include <cmath>

#include "numeric/numeric_test_util.hpp"

using namespace mixtape;
using mixtape::test::hex;
using mixtape::test::Mismatches;

namespace {

template <class T, Rounding R, class X>
std::uint32_t sr(X x, std::uint32_t word) {
  return convert<T, R>(x, word).bits();
}

/// A random float in T's normal range, below its top binade (so nothing overflows); converting it
/// drops 23 - M <= 21 bits for every format here.
template <class T>
float random_in_range(std::mt19937_64& rng) {
  const auto& f = test::ref_format<T>();
  const int emin = 1 - f.bias();
  const int emax = (1 << f.exponent_bits) - 3 - f.bias();
  std::uniform_int_distribution<int> exponent(emin, emax);
  const float mantissa = 1.0f + std::ldexp(static_cast<float>(rng() & 0x7FFFFF), -23);
  const float x = std::ldexp(mantissa, exponent(rng));
  return (rng() & 1) ? -x : x;
}

/// Exact frequency: with K = 21 >= k (the dropped bits: 13, 16, 20, 21 for f16, bf16, e4m3, e5m2
/// in their normal range), the top K bits of the word take every value once and the low bits are
/// random; the low bits must not matter and the count of round-ups must be exactly p * 2^K.
template <class T>
void check_exact_frequency(int inputs) {
  constexpr int kTopBits = 21;
  const std::uint64_t seed = test::test_seed();
  INFO(test::ref_format<T>().name << ", seed " << seed);
  std::mt19937_64 rng(seed);
  const auto& enc = test::encoder<T>();
  Mismatches wrong;
  for (int n = 0; n < inputs; ++n) {
    const float x = random_in_range<T>(rng);
    const auto b = enc.bracket(x);
    const std::uint32_t sign = std::signbit(x) ? enc.format().sign_bit() : 0u;
    const std::uint32_t lo_code = sign | enc.code(b.lo), hi_code = sign | enc.code(b.hi);
    const long double lo = enc.bracket_value(b.lo), hi = enc.bracket_value(b.hi);
    const long double p = b.lo == b.hi ? 0.0L : (std::fabs(static_cast<long double>(x)) - lo) / (hi - lo);
    std::uint64_t ups = 0;
    for (std::uint32_t j = 0; j < (1u << kTopBits); ++j) {
      const std::uint32_t word =
          (j << (32 - kTopBits)) | static_cast<std::uint32_t>(rng() & ((1u << (32 - kTopBits)) - 1));
      const std::uint32_t r = sr<T, Rounding::stochastic>(x, word);
      if (r == hi_code && b.lo != b.hi) {
        ++ups;
      } else if (r != lo_code) {
        wrong.add(x, " with word ", hex(word), " -> ", hex(r), ", not a neighbour");
      }
    }
    const long double want = p * (1u << kTopBits);
    if (want != std::floor(want)) wrong.add(x, ": p * 2^21 is not an integer, the input drops more than 21 bits");
    if (static_cast<long double>(ups) != want) wrong.add(x, ": ", ups, " round-ups, want ", static_cast<double>(want));
  }
  MIXTAPE_CHECK_NONE(wrong);
}

/// The mean over N random words. Derivation of the bound: each result Y is lo or hi, with
/// P(hi) = p_q, where p_q = D_m / 2^m is the exact probability p = (|x| - lo) / (hi - lo) truncated
/// to m = min(k, 32) bits (rounding.hpp), so |E[Y] - x| <= (hi - lo) * 2^-32. The Y_i are independent
/// (independent uniform words) and bounded in an interval of length hi - lo, so by Hoeffding's
/// inequality P(|mean - E[Y]| >= t (hi - lo)) <= 2 exp(-2 N t^2). With t = sqrt(ln(2 / delta) /
/// (2 N)) and delta = 1e-9 a correct implementation fails one input in a billion; the bound is
/// |mean - x| <= (hi - lo) (t + 2^-32). (t = 0.0057 for N = 2^18.)
template <class T, class X>
void check_mean(std::mt19937_64& rng, Mismatches& wrong, X x) {
  constexpr int kN = 1 << 18;
  const auto& enc = test::encoder<T>();
  const auto b = enc.bracket(static_cast<long double>(x));
  const long double lo = enc.bracket_value(b.lo), hi = enc.bracket_value(b.hi);
  const long double magnitude = std::fabs(static_cast<long double>(x));
  const std::uint32_t sign = std::signbit(x) ? enc.format().sign_bit() : 0u;
  long double sum = 0;
  for (int i = 0; i < kN; ++i) {
    const std::uint32_t r = sr<T, Rounding::stochastic>(x, static_cast<std::uint32_t>(rng()));
    if (r == (sign | enc.code(b.lo))) {
      sum += lo;
    } else if (b.hi < enc.size() && r == (sign | enc.code(b.hi))) {
      sum += hi;
    } else {
      wrong.add(static_cast<double>(x), " -> ", hex(r), ", not a neighbour");
      return;
    }
  }
  const long double mean = sum / kN;
  const long double t = std::sqrt(std::log(2 / 1e-9L) / (2.0L * kN));
  const long double bound = (hi - lo) * (t + std::ldexp(1.0L, -32));
  if (std::fabs(mean - magnitude) > bound) {
    wrong.add(enc.format().name, ": mean of ", kN, " stochastic roundings of ", static_cast<double>(x), " is ",
              static_cast<double>(mean), ", off by ", static_cast<double>(std::fabs(mean - magnitude)), " > bound ",
              static_cast<double>(bound));
  }
}

template <class T>
void check_unbiased() {
  const std::uint64_t seed = test::test_seed();
  INFO(test::ref_format<T>().name << ", seed " << seed);
  std::mt19937_64 rng(seed);
  test::FloatInputs<T> inputs(rng());
  const auto& enc = test::encoder<T>();
  Mismatches wrong;
  for (int n = 0; n < 12; ++n) {
    check_mean<T>(rng, wrong, random_in_range<T>(rng));  // normal range, float
    // Anywhere from the subnormals to max, as float and as double (k > 32 for doubles there).
    float x = inputs.near_range();
    if (std::fabs(x) >= enc.max()) x = static_cast<float>(enc.max()) / 3;
    check_mean<T>(rng, wrong, x);
    const double xd = static_cast<double>(x) * (1.0 + std::ldexp(static_cast<double>(rng() >> 40), -30));
    if (std::fabs(xd) < enc.max()) check_mean<T>(rng, wrong, xd);
  }
  MIXTAPE_CHECK_NONE(wrong);
}

}  // namespace

TEST_CASE("stochastic rounding follows the specified use of the random word", "[numeric][stochastic]") {
  // f16 from float: 13 dropped bits. 1 + 2^-11 is half an ulp above 1: D = 2^12, so the magnitude
  // rounds up iff (word >> 19) + 2^12 >= 2^13, i.e. iff word >= 2^31.
  const float half = 1.0f + 0x1p-11f;
  CHECK(sr<f16, Rounding::stochastic>(half, 0x7FFFFFFFu) == 0x3C00);
  CHECK(sr<f16, Rounding::stochastic>(half, 0x80000000u) == 0x3C01);
  CHECK(sr<f16, Rounding::stochastic>(-half, 0x80000000u) == 0xBC01);  // magnitudes: away from zero
  // Three quarters of an ulp: up iff (word >> 19) >= 2^11, i.e. word >= 2^30.
  const float three_quarters = 1.0f + 0x1p-11f + 0x1p-12f;
  CHECK(sr<f16, Rounding::stochastic>(three_quarters, 0x3FFFFFFFu) == 0x3C00);
  CHECK(sr<f16, Rounding::stochastic>(three_quarters, 0x40000000u) == 0x3C01);
  // The low 19 bits of the word are not used when 13 bits are dropped.
  CHECK(sr<f16, Rounding::stochastic>(three_quarters, 0x3FF80000u | 0x7FFFFu) == 0x3C00);
  // A representable value never moves, whatever the word.
  for (const std::uint32_t w : {0u, 1u, 0x80000000u, 0xFFFFFFFFu}) {
    CHECK(sr<f16, Rounding::stochastic>(1.0f, w) == 0x3C00);
    CHECK(sr<e4m3, Rounding::stochastic>(448.0f, w) == 0x7E);
    CHECK(sr<bf16, Rounding::stochastic>(-0.0f, w) == 0x8000);
  }
  // More than 32 dropped bits (double -> f16: 42): the probability is the top 32 dropped bits.
  // 2^-40 of an ulp above 1: D_32 = 0, never rounds up; 1 - 2^-40 of an ulp: D_32 = 2^32 - 1,
  // rounds up for every word but 0.
  const double tiny = 1.0 + std::ldexp(1.0, -50);
  const double almost = 1.0 + 0x1p-10 - std::ldexp(1.0, -50);
  CHECK(sr<f16, Rounding::stochastic>(tiny, 0xFFFFFFFFu) == 0x3C00);
  CHECK(sr<f16, Rounding::stochastic>(almost, 0u) == 0x3C00);
  CHECK(sr<f16, Rounding::stochastic>(almost, 1u) == 0x3C01);
  // Subnormal results drop more bits: f16 from 2^-25 (half of the smallest subnormal) drops 24.
  CHECK(sr<f16, Rounding::stochastic>(0x1p-25f, 0x7FFFFFFFu) == 0x0000);
  CHECK(sr<f16, Rounding::stochastic>(0x1p-25f, 0x80000000u) == 0x0001);
  // Overflow: from max, rounding up goes to inf (NaN for E4M3) unless saturating.
  const float past_max = 65504.0f + 16.0f;  // half an ulp above f16's max
  CHECK(sr<f16, Rounding::stochastic>(past_max, 0xFFFFFFFFu) == 0x7C00);
  CHECK(sr<f16, Rounding::stochastic>(past_max, 0u) == 0x7BFF);
  CHECK(sr<f16, Rounding::stochastic_saturate>(past_max, 0xFFFFFFFFu) == 0x7BFF);
  CHECK(sr<e4m3, Rounding::stochastic>(450.0f, 0xFFFFFFFFu) == 0x7F);
  CHECK(sr<e4m3, Rounding::stochastic_saturate>(450.0f, 0xFFFFFFFFu) == 0x7E);
  CHECK(sr<e4m3, Rounding::stochastic>(1e9f, 0u) == 0x7F);
  CHECK(sr<e5m2, Rounding::stochastic_saturate>(-std::numeric_limits<float>::infinity(), 0u) == 0xFB);
}

TEST_CASE("f16: stochastic rounding up-counts are exact over all values of the word's top bits",
          "[numeric][stochastic]") {
  check_exact_frequency<f16>(6);
}
TEST_CASE("bf16: stochastic rounding up-counts are exact over all values of the word's top bits",
          "[numeric][stochastic]") {
  check_exact_frequency<bf16>(6);
}
TEST_CASE("e4m3: stochastic rounding up-counts are exact over all values of the word's top bits",
          "[numeric][stochastic]") {
  check_exact_frequency<e4m3>(6);
}
TEST_CASE("e5m2: stochastic rounding up-counts are exact over all values of the word's top bits",
          "[numeric][stochastic]") {
  check_exact_frequency<e5m2>(6);
}

TEST_CASE("stochastic rounding is unbiased: the mean over random words is x within the derived bound",
          "[numeric][stochastic]") {
  check_unbiased<f16>();
  check_unbiased<bf16>();
  check_unbiased<e4m3>();
  check_unbiased<e5m2>();
}

TEST_CASE("stochastic rounding of double to float", "[numeric][stochastic]") {
  // 29 dropped bits: the neighbours come from the hardware's directed conversions.
  std::mt19937_64 rng(test::test_seed());
  Mismatches wrong;
  for (int n = 0; n < 20; ++n) {
    const double x =
        std::ldexp(1.0 + std::ldexp(static_cast<double>(rng() >> 12), -52), static_cast<int>(rng() % 40) - 20);
    const float nearest = static_cast<float>(x);
    const float lo = static_cast<double>(nearest) <= x ? nearest : std::nextafter(nearest, 0.0f);
    const float hi = std::nextafter(lo, std::numeric_limits<float>::infinity());
    const long double p = (static_cast<long double>(x) - lo) / (static_cast<long double>(hi) - lo);
    long double ups = 0;
    constexpr int kN = 1 << 16;
    for (int i = 0; i < kN; ++i) {
      const float r = convert<float, Rounding::stochastic>(x, static_cast<std::uint32_t>(rng()));
      if (r == hi) {
        ++ups;
      } else if (r != lo) {
        wrong.add(x, " -> ", r);
      }
    }
    const long double t = std::sqrt(std::log(2 / 1e-9L) / (2.0L * kN));  // Hoeffding, as above
    if (std::fabs(ups / kN - p) > t + std::ldexp(1.0L, -32))
      wrong.add(x, ": frequency ", static_cast<double>(ups / kN), " vs p ", static_cast<double>(p));
  }
  MIXTAPE_CHECK_NONE(wrong);
}
