// The scalar types and traits: numeric_traits against the reference table and std::numeric_limits,
// the ScalarFormat concept, the type properties the kernels rely on (size, trivially copyable),
// constexpr use, arithmetic (exactly rounded: every e4m3 and e5m2 pair, random f16 and bf16 pairs),
// comparisons, negation and classification, the runtime-rounding overload of convert, and the
// Rounding helpers.
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "numeric/numeric_test_util.hpp"

using namespace mixtape;
using mixtape::test::hex;
using mixtape::test::Mismatches;

// ---- compile-time properties ----------------------------------------------------------------
static_assert(ScalarFormat<f16> && ScalarFormat<bf16> && ScalarFormat<e4m3> && ScalarFormat<e5m2> &&
              ScalarFormat<f32> && ScalarFormat<f64>);
static_assert(!ScalarFormat<int> && !ScalarFormat<long double> && !ScalarFormat<const f16> &&
              !ScalarFormat<std::uint16_t>);
static_assert(sizeof(f16) == 2 && sizeof(bf16) == 2 && sizeof(e4m3) == 1 && sizeof(e5m2) == 1);
static_assert(std::is_trivially_copyable_v<f16> && std::is_trivially_copyable_v<e5m2>);
static_assert(std::is_trivially_default_constructible_v<bf16> && std::is_trivially_default_constructible_v<e4m3>);
// Explicit conversions only: no implicit narrowing from float, no implicit widening to float.
static_assert(!std::is_convertible_v<float, f16> && !std::is_convertible_v<f16, float>);
static_assert(!std::is_convertible_v<double, e4m3> && !std::is_convertible_v<e4m3, double>);
static_assert(std::is_constructible_v<f16, float> && std::is_constructible_v<float, f16>);
// constexpr: conversions, traits and arithmetic in constant expressions.
static_assert(f16(1.0f).bits() == 0x3C00 && bf16(1.0f).bits() == 0x3F80);
static_assert(e4m3(1.0f).bits() == 0x38 && e5m2(1.0f).bits() == 0x3C);
static_assert(convert<e4m3, Rounding::nearest_even_saturate>(1000.0).bits() == 0x7E);
static_assert(convert<bf16, Rounding::stochastic>(1.0f + 0x1p-8f, 0x80000000u).bits() == 0x3F81);
static_assert((f16(3.0f) * f16(0.5f)).bits() == f16(1.5f).bits());
static_assert(static_cast<float>(-e5m2(2.0f)) == -2.0f);
static_assert(numeric_traits<e4m3>::max().bits() == 0x7E && numeric_traits<e5m2>::max_value == 57344.0);
static_assert(numeric_traits<float>::max() == std::numeric_limits<float>::max());
static_assert(is_saturating(Rounding::stochastic_saturate) && !is_saturating(Rounding::stochastic));
static_assert(is_stochastic(Rounding::stochastic) && !is_stochastic(Rounding::nearest_even_saturate));
static_assert(with_saturation(Rounding::nearest_even, true) == Rounding::nearest_even_saturate);
static_assert(with_saturation(Rounding::stochastic_saturate, false) == Rounding::stochastic);

namespace {

template <class T>
void check_traits_against_reference() {
  using traits = numeric_traits<T>;
  const auto& f = test::ref_format<T>();
  const auto& enc = test::encoder<T>();
  INFO(f.name);
  CHECK(traits::bits == f.bits());
  CHECK(traits::bits == 8 * static_cast<int>(sizeof(T)));
  CHECK(traits::exponent_bits == f.exponent_bits);
  CHECK(traits::mantissa_bits == f.mantissa_bits);
  CHECK(std::string(traits::name) == f.name);

  // From the reference table: largest finite value, smallest subnormal, smallest normal (the
  // smallest value with a non-zero exponent field), and the successor of 1.
  long double min_normal = 0, one_next = 0;
  bool has_inf = false, has_nan = false;
  for (std::uint32_t code = 0; code < (1u << f.bits()); ++code) {
    const auto d = test::ref::decode(f, code);
    has_inf |= d.kind == test::ref::Kind::inf;
    has_nan |= d.kind == test::ref::Kind::nan;
  }
  for (std::size_t i = 0; i < enc.size(); ++i) {
    if (min_normal == 0 && (enc.code(i) >> f.mantissa_bits) != 0) min_normal = enc.value(i);
    if (one_next == 0 && enc.value(i) > 1.0L) one_next = enc.value(i);
  }
  CHECK(static_cast<long double>(static_cast<double>(traits::max())) == enc.max());
  CHECK(static_cast<long double>(traits::max_value) == enc.max());
  CHECK(static_cast<long double>(static_cast<double>(traits::lowest())) == -enc.max());
  CHECK(static_cast<long double>(traits::lowest_value) == -enc.max());
  CHECK(static_cast<long double>(static_cast<double>(traits::min_subnormal())) == enc.value(1));
  CHECK(static_cast<long double>(traits::min_subnormal_value) == enc.value(1));
  CHECK(static_cast<long double>(static_cast<double>(traits::min_normal())) == min_normal);
  CHECK(static_cast<long double>(traits::min_normal_value) == min_normal);
  CHECK(static_cast<long double>(static_cast<double>(traits::epsilon())) == one_next - 1);
  CHECK(static_cast<long double>(traits::epsilon_value) == one_next - 1);
  CHECK(traits::has_inf == has_inf);
  CHECK(traits::has_nan == has_nan);
  CHECK(std::ldexp(1.0L, traits::max_exponent) <= enc.max());
  CHECK(std::ldexp(1.0L, traits::max_exponent + 1) > enc.max());
  CHECK(std::ldexp(1.0L, traits::min_exponent) == min_normal);
  CHECK(isnan(traits::quiet_nan()));
  if (has_inf) {
    CHECK(isinf(traits::infinity()));
  } else {
    CHECK(isnan(traits::infinity()));
  }
}

template <class T>
void check_traits_against_std() {
  using traits = numeric_traits<T>;
  using limits = std::numeric_limits<T>;
  CHECK(traits::max() == limits::max());
  CHECK(traits::lowest() == limits::lowest());
  CHECK(traits::min_normal() == limits::min());
  CHECK(traits::min_subnormal() == limits::denorm_min());
  CHECK(traits::epsilon() == limits::epsilon());
  CHECK(traits::mantissa_bits == limits::digits - 1);
  CHECK(traits::max_exponent == limits::max_exponent - 1);  // std counts one more
  CHECK(traits::min_exponent == limits::min_exponent - 1);
  CHECK(traits::has_inf == limits::has_infinity);
  CHECK(traits::max_value == static_cast<double>(limits::max()));
  CHECK(std::isinf(traits::infinity()));
}

/// The exact result of a op b in long double, then rounded by the reference (a NaN result is the
/// positive all-ones NaN, scalar_ops.hpp). Sums and products of two values of these formats are
/// exact in long double's 64 bits where the callers use them; a quotient is rounded once to 64 bits
/// first, which cannot change the final rounding to p <= 11 bits (64 >= 2p + 2).
template <class T>
std::uint32_t reference_op(char op, T a, T b) {
  const auto& f = test::ref_format<T>();
  const long double x = test::ref::decode(f, a.bits()).value;
  const long double y = test::ref::decode(f, b.bits()).value;
  long double r = 0;
  switch (op) {
    case '+':
      r = x + y;
      break;
    case '-':
      r = x - y;
      break;
    case '*':
      r = x * y;
      break;
    default:
      r = x / y;
      break;
  }
  if (std::isnan(r)) return f.all_ones_magnitude();
  return test::encoder<T>().encode(r, false);
}

template <class T>
void check_op(Mismatches& wrong, T a, T b) {
  const std::uint32_t got[4] = {(a + b).bits(), (a - b).bits(), (a * b).bits(), (a / b).bits()};
  const char ops[4] = {'+', '-', '*', '/'};
  for (int i = 0; i < 4; ++i) {
    const std::uint32_t want = reference_op(ops[i], a, b);
    if (got[i] != want)
      wrong.add(hex(a.bits()), " ", ops[i], " ", hex(b.bits()), " = ", hex(got[i]), ", want ", hex(want));
  }
  T c = a;
  c += b;
  if (c.bits() != got[0]) wrong.add("+= differs from +");
  c = a;
  c /= b;
  if (c.bits() != got[3]) wrong.add("/= differs from /");
  // Comparisons follow the values (IEEE: NaN unordered, -0 == +0).
  const auto& f = test::ref_format<T>();
  const long double x = test::ref::decode(f, a.bits()).value;
  const long double y = test::ref::decode(f, b.bits()).value;
  if ((a == b) != (x == y) || (a != b) != (x != y) || (a < b) != (x < y) || (a <= b) != (x <= y) ||
      (a > b) != (x > y) || (a >= b) != (x >= y)) {
    wrong.add("comparison of ", hex(a.bits()), " and ", hex(b.bits()));
  }
}

template <class T>
void check_all_pairs() {
  Mismatches wrong;
  for (std::uint32_t i = 0; i < 256; ++i) {
    for (std::uint32_t j = 0; j < 256; ++j) {
      check_op(wrong, T::from_bits(static_cast<std::uint8_t>(i)), T::from_bits(static_cast<std::uint8_t>(j)));
    }
  }
  MIXTAPE_CHECK_NONE(wrong);
}

/// Random pairs whose exponents differ by less than 48, so sums are exact in long double.
template <class T>
void check_random_pairs() {
  const std::uint64_t seed = test::test_seed();
  INFO(test::ref_format<T>().name << ", seed " << seed);
  std::mt19937_64 rng(seed);
  Mismatches wrong;
  int done = 0;
  while (done < 300000) {
    const T a = T::from_bits(static_cast<std::uint16_t>(rng()));
    const T b = T::from_bits(static_cast<std::uint16_t>(rng()));
    const int ea = (a.bits() >> numeric_traits<T>::mantissa_bits) & ((1 << numeric_traits<T>::exponent_bits) - 1);
    const int eb = (b.bits() >> numeric_traits<T>::mantissa_bits) & ((1 << numeric_traits<T>::exponent_bits) - 1);
    if (std::abs(ea - eb) >= 48) continue;
    check_op(wrong, a, b);
    ++done;
  }
  MIXTAPE_CHECK_NONE(wrong);
}

template <class T>
void check_sign_ops() {
  Mismatches wrong;
  const std::uint32_t sign = numeric_traits<T>::bits == 16 ? 0x8000u : 0x80u;
  for (std::uint32_t code = 0; code < (1u << numeric_traits<T>::bits); ++code) {
    const T x = T::from_bits(static_cast<typename T::storage_type>(code));
    if ((-x).bits() != (code ^ sign)) wrong.add("-", hex(code));
    if (abs(x).bits() != (code & (sign - 1))) wrong.add("abs ", hex(code));
    if ((+x).bits() != code) wrong.add("+", hex(code));
    if (!bitwise_equal(x, x)) wrong.add("bitwise_equal ", hex(code));
  }
  CHECK(!bitwise_equal(T(0.0f), -T(0.0f)));
  CHECK(T(0.0f) == -T(0.0f));
  MIXTAPE_CHECK_NONE(wrong);
}

template <class T>
void check_runtime_rounding() {
  std::mt19937_64 rng(test::test_seed());
  test::FloatInputs<T> inputs(rng());
  Mismatches wrong;
  for (int n = 0; n < 20000; ++n) {
    const float x = inputs.any();
    const double xd = static_cast<double>(inputs.any()) * 1.0000001;
    const auto w = static_cast<std::uint32_t>(rng());
    const std::uint32_t want[4] = {
        convert<T, Rounding::nearest_even>(x, w).bits(), convert<T, Rounding::nearest_even_saturate>(x, w).bits(),
        convert<T, Rounding::stochastic>(x, w).bits(), convert<T, Rounding::stochastic_saturate>(x, w).bits()};
    const std::uint32_t want_d[4] = {
        convert<T, Rounding::nearest_even>(xd, w).bits(), convert<T, Rounding::nearest_even_saturate>(xd, w).bits(),
        convert<T, Rounding::stochastic>(xd, w).bits(), convert<T, Rounding::stochastic_saturate>(xd, w).bits()};
    for (int r = 0; r < kRoundingCount; ++r) {
      if (convert<T>(x, kAllRoundings[r], w).bits() != want[r]) wrong.add(x, " ", rounding_name(kAllRoundings[r]));
      if (convert<T>(xd, kAllRoundings[r], w).bits() != want_d[r]) wrong.add(xd, " ", rounding_name(kAllRoundings[r]));
    }
    // The nearest-even modes ignore the word.
    if (convert<T, Rounding::nearest_even>(x, ~w).bits() != want[0]) wrong.add(x, ": nearest_even read the word");
    if (T(x).bits() != want[0]) wrong.add(x, ": constructor differs from convert");
    if (T(xd).bits() != want_d[0]) wrong.add(xd, ": double constructor differs from convert");
  }
  // An out-of-range mode value rounds to nearest even.
  CHECK(convert<T>(1.3f, static_cast<Rounding>(200), 0u).bits() == convert<T>(1.3f).bits());
  MIXTAPE_CHECK_NONE(wrong);
}

}  // namespace

TEST_CASE("numeric_traits of f16, bf16, e4m3, e5m2 match the reference tables", "[numeric][traits]") {
  check_traits_against_reference<f16>();
  check_traits_against_reference<bf16>();
  check_traits_against_reference<e4m3>();
  check_traits_against_reference<e5m2>();
}

TEST_CASE("numeric_traits of f32 and f64 match std::numeric_limits", "[numeric][traits]") {
  check_traits_against_std<float>();
  check_traits_against_std<double>();
  CHECK(std::string(numeric_traits<f32>::name) == "f32");
  CHECK(std::string(numeric_traits<f64>::name) == "f64");
  CHECK(numeric_traits<f32>::bits == 32);
  CHECK(numeric_traits<f64>::exponent_bits == 11);
}

TEST_CASE("e4m3 and e5m2 arithmetic is exactly rounded for every pair of operands", "[numeric][ops]") {
  check_all_pairs<e4m3>();
  check_all_pairs<e5m2>();
}

TEST_CASE("f16 and bf16 arithmetic is exactly rounded on random operands", "[numeric][ops]") {
  check_random_pairs<f16>();
  check_random_pairs<bf16>();
}

TEST_CASE("negation, abs and bitwise equality work on the bits", "[numeric][ops]") {
  check_sign_ops<f16>();
  check_sign_ops<bf16>();
  check_sign_ops<e4m3>();
  check_sign_ops<e5m2>();
}

TEST_CASE("the runtime-rounding convert gives the compile-time results", "[numeric][convert]") {
  check_runtime_rounding<f16>();
  check_runtime_rounding<bf16>();
  check_runtime_rounding<e4m3>();
  check_runtime_rounding<e5m2>();
}

TEST_CASE("std::numeric_limits of the narrow formats follows the standard's conventions", "[numeric][traits]") {
  // Values from the format parameters (and, for f16 and bf16, GCC's __FLT16_* / __BFLT16_* macros).
  using L16 = std::numeric_limits<f16>;
  STATIC_REQUIRE(L16::is_specialized && L16::is_iec559 && L16::has_infinity && L16::has_signaling_NaN);
  STATIC_REQUIRE(L16::digits == 11 && L16::digits10 == 3 && L16::max_digits10 == 5);
  STATIC_REQUIRE(L16::min_exponent == -13 && L16::max_exponent == 16);
  STATIC_REQUIRE(L16::min_exponent10 == -4 && L16::max_exponent10 == 4);
  using LB = std::numeric_limits<bf16>;
  STATIC_REQUIRE(!LB::is_iec559 && LB::digits == 8 && LB::digits10 == 2 && LB::max_digits10 == 4);
  STATIC_REQUIRE(LB::min_exponent == -125 && LB::max_exponent == 128);
  STATIC_REQUIRE(LB::min_exponent10 == -37 && LB::max_exponent10 == 38);
  using L43 = std::numeric_limits<e4m3>;
  STATIC_REQUIRE(!L43::has_infinity && !L43::has_signaling_NaN && L43::has_quiet_NaN);
  STATIC_REQUIRE(L43::digits == 4 && L43::digits10 == 0 && L43::max_digits10 == 3);
  STATIC_REQUIRE(L43::min_exponent == -5 && L43::max_exponent == 9);
  STATIC_REQUIRE(L43::min_exponent10 == -1 && L43::max_exponent10 == 2);
  using L52 = std::numeric_limits<e5m2>;
  STATIC_REQUIRE(L52::digits == 3 && L52::digits10 == 0 && L52::max_digits10 == 2);
  STATIC_REQUIRE(L52::min_exponent == -13 && L52::max_exponent == 16);
  STATIC_REQUIRE(L52::min_exponent10 == -4 && L52::max_exponent10 == 4);
  // The functions give the traits' values.
  CHECK(static_cast<float>(L16::max()) == 65504.0f);
  CHECK(static_cast<float>(L16::lowest()) == -65504.0f);
  CHECK(static_cast<float>(L16::min()) == 0x1p-14f);
  CHECK(static_cast<float>(L16::denorm_min()) == 0x1p-24f);
  CHECK(static_cast<float>(L16::epsilon()) == 0x1p-10f);
  CHECK(static_cast<float>(L16::round_error()) == 0.5f);
  CHECK(static_cast<float>(LB::round_error()) == 0.5f);
  CHECK(static_cast<float>(L43::round_error()) == 0.5f);
  CHECK(static_cast<float>(L43::max()) == 448.0f);
  CHECK(static_cast<float>(L52::max()) == 57344.0f);
  CHECK(std::isinf(static_cast<float>(L16::infinity())));
  CHECK(isnan(L43::infinity()));
  CHECK(isnan(LB::quiet_NaN()));
  CHECK(isnan(L52::signaling_NaN()));
  CHECK(L52::signaling_NaN().bits() == 0x7D);  // quiet bit clear
  CHECK(L16::signaling_NaN().bits() == 0x7C01);
  CHECK(static_cast<float>(L52::denorm_min()) == 0x1p-16f);
}

TEST_CASE("scalar types are plain bits: value-initialization, memcpy, names", "[numeric][types]") {
  f16 zero{};
  CHECK(zero.bits() == 0);
  const bf16 b(2.5f);
  std::uint16_t raw = 0;
  std::memcpy(&raw, &b, sizeof raw);
  CHECK(raw == b.bits());
  CHECK(raw == 0x4020);
  CHECK(std::string(rounding_name(Rounding::nearest_even)) == "nearest_even");
  CHECK(std::string(rounding_name(Rounding::stochastic_saturate)) == "stochastic_saturate");
  CHECK(std::string(rounding_name(static_cast<Rounding>(9))) == "invalid");
  CHECK(std::string(numeric_traits<e4m3>::name) == "e4m3");
  CHECK(std::string(numeric_traits<bf16>::name) == "bf16");
}
