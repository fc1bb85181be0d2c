// Nearest-even rounding of millions of fresh random inputs, float and double, to each format, in
// the IEEE and the saturating mode, against the table-search reference. The inputs cover every
// exponent: uniformly random bit patterns (every float exponent, NaN, inf, subnormals), values with
// a random exponent across the format's range and a full random mantissa, and values at and next to
// the midpoints between neighbours. The seed is printed on failure; MIXTAPE_TEST_SEED reproduces it.
#include <cmath>

#include "numeric/numeric_test_util.hpp"

using namespace mixtape;
using mixtape::test::hex;
using mixtape::test::Mismatches;

namespace {

constexpr int kFloatsPerFormat = 4 << 20;  // 4.2 million floats per format (16.8 million in all)
constexpr int kDoublesPerFormat = 1 << 20;

template <class T, class X>
void check_input(Mismatches& wrong, const test::ref::Encoder& enc, X x) {
  const auto want_ieee = enc.encode(static_cast<long double>(x), false);
  const auto want_sat = enc.encode(static_cast<long double>(x), true);
  const std::uint32_t ieee = convert<T, Rounding::nearest_even>(x).bits();
  const std::uint32_t sat = convert<T, Rounding::nearest_even_saturate>(x).bits();
  if (ieee != want_ieee) {
    wrong.add(enc.format().name, " nearest_even(", hex(test::bits_of(x)), " = ", x, ") = ", hex(ieee), ", reference ",
              hex(want_ieee));
  }
  if (sat != want_sat) {
    wrong.add(enc.format().name, " saturate(", hex(test::bits_of(x)), " = ", x, ") = ", hex(sat), ", reference ",
              hex(want_sat));
  }
}

template <class T>
void check_random_floats() {
  const std::uint64_t seed = test::test_seed();
  INFO("seed " << seed << " (MIXTAPE_TEST_SEED=" << seed << " reproduces)");
  test::FloatInputs<T> inputs(seed);
  const auto& enc = test::encoder<T>();
  Mismatches wrong;
  for (int n = 0; n < kFloatsPerFormat; ++n) check_input<T>(wrong, enc, inputs.any());
  MIXTAPE_CHECK_NONE(wrong);
}

template <class T>
void check_random_doubles() {
  const std::uint64_t seed = test::test_seed();
  INFO("seed " << seed << " (MIXTAPE_TEST_SEED=" << seed << " reproduces)");
  std::mt19937_64 rng(seed);
  const auto& enc = test::encoder<T>();
  const auto& f = enc.format();
  const int emin = 1 - f.bias();
  const int emax = (1 << f.exponent_bits) - 1 - f.bias();
  std::uniform_int_distribution<int> exponent(emin - f.mantissa_bits - 4, emax + 2);
  std::uniform_int_distribution<std::size_t> index(0, enc.size() - 1);
  Mismatches wrong;
  for (int n = 0; n < kDoublesPerFormat; ++n) {
    double x;
    switch (n % 3) {
      case 0:  // any bit pattern
        x = detail::bit_cast<double>(rng());
        break;
      case 1:  // a random exponent in range and all 52 mantissa bits random
        x = std::ldexp(1.0 + std::ldexp(static_cast<double>(rng() >> 12), -52), exponent(rng));
        break;
      default: {  // a midpoint moved by a few random units of its last place (below float's resolution)
        const std::size_t i = index(rng);
        const double mid = static_cast<double>((enc.bracket_value(i) + enc.bracket_value(i + 1)) / 2);
        x = mid + std::ldexp(static_cast<double>(static_cast<int>(rng() % 9) - 4), std::ilogb(mid) - 52);
        break;
      }
    }
    if (rng() & 1) x = -x;
    check_input<T>(wrong, enc, x);
  }
  MIXTAPE_CHECK_NONE(wrong);
}

}  // namespace

TEST_CASE("f16: millions of random floats round like the reference", "[numeric][random]") {
  check_random_floats<f16>();
}
TEST_CASE("bf16: millions of random floats round like the reference", "[numeric][random]") {
  check_random_floats<bf16>();
}
TEST_CASE("e4m3: millions of random floats round like the reference", "[numeric][random]") {
  check_random_floats<e4m3>();
}
TEST_CASE("e5m2: millions of random floats round like the reference", "[numeric][random]") {
  check_random_floats<e5m2>();
}

TEST_CASE("f16: random doubles round once, like the reference", "[numeric][random]") { check_random_doubles<f16>(); }
TEST_CASE("bf16: random doubles round once, like the reference", "[numeric][random]") { check_random_doubles<bf16>(); }
TEST_CASE("e4m3: random doubles round once, like the reference", "[numeric][random]") { check_random_doubles<e4m3>(); }
TEST_CASE("e5m2: random doubles round once, like the reference", "[numeric][random]") { check_random_doubles<e5m2>(); }
