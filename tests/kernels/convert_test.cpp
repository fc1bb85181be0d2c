// Host tensor conversions: every rounding mode between float formats (nearest-even within half an
// ulp of the float64 value, saturation, overflow), the Philox-keyed stochastic mapping, unbiasedness
// of stochastic rounding, and integer conversions.
#include "kernels_test_util.hpp"

#include "mixtape/core/philox.hpp"
#include "mixtape/kernels/elementwise.hpp"

using namespace mixtape;
using ktest::elem;

namespace {

/// in -> out with `mode` on random inputs spanning To's range (and beyond, for the overflow
/// rules), through a transposed input and a sliced output. Checks:
///  - each element equals the scalar convert<To, R>(x, word) with the documented Philox word
///    (word i % 4 of block i / 4 at the draw's offset; i = the row-major index);
///  - nearest-even results are within half an ulp of the float64 value: |y - x| <= u_To |x| + floor/2
///    for |x| <= max; saturating modes give +-max beyond it; stochastic results are one of the two
///    neighbours: |y - x| < 2 u_To |x| + floor.
template <class From, class To>
void check_convert(Rounding mode) {
  const std::uint64_t seed = ktest::fresh_seed();
  std::mt19937_64 rng(seed);
  ContextOptions opts;
  opts.seed = seed;
  auto ctx = ExecutionContext::host(opts);
  const double max_to = numeric_traits<To>::max_value;
  const double range = std::min(numeric_traits<From>::max_value, 2 * max_to);
  const Shape s{37, 129};
  auto in_base = Tensor<From>::empty(ctx, {129, 37});
  auto in = in_base.transposed();
  // Magnitudes log-uniform over To's range so every binade and the subnormals are hit.
  const double tiny = std::max(numeric_traits<To>::min_subnormal_value / 4, numeric_traits<From>::min_subnormal_value);
  std::uniform_real_distribution<double> log_mag(std::log(tiny), std::log(range));
  std::bernoulli_distribution neg(0.5);
  for (std::int64_t i = 0; i < in.numel(); ++i) {
    const double m = std::exp(log_mag(rng));
    elem(in, i) = convert<From>(neg(rng) ? -m : m);
  }
  auto out_base = Tensor<To>::empty(ctx, {37, 140});
  auto out = out_base.slice(1, 5, 129);
  const std::uint64_t offset = ctx.rng_offset();
  kernels::convert(ctx, in, out, mode);
  const bool stochastic = is_stochastic(mode);
  CHECK(ctx.rng_offset() == offset + (stochastic ? philox_counters(static_cast<std::uint64_t>(in.numel())) : 0));
  const double u = ktest::unit_roundoff<To>(), floor = ktest::subnormal_floor<To>();
  INFO(ktest::type_name<From>() << " -> " << ktest::type_name<To>() << " " << rounding_name(mode) << " seed " << seed);
  for (std::int64_t i = 0; i < in.numel(); ++i) {
    const From x = elem(in, i);
    const To y = elem(out, i);
    const std::uint32_t word = stochastic ? philox_word(seed, offset, static_cast<std::uint64_t>(i)) : 0u;
    const To expected = convert<To>(x, mode, word);
    INFO("element " << i << " x = " << ktest::to_double(x));
    REQUIRE(std::memcmp(&y, &expected, sizeof(To)) == 0);
    const double xd = ktest::to_double(x), yd = ktest::to_double(y);
    if (std::fabs(xd) <= max_to) {
      REQUIRE(std::isfinite(yd));
      REQUIRE(std::fabs(yd - xd) <= (stochastic ? 2 * u * std::fabs(xd) + floor : u * std::fabs(xd) + floor / 2));
    } else if (is_saturating(mode)) {
      REQUIRE(std::fabs(yd) == max_to);
    }
  }
}

}  // namespace

TEST_CASE("convert between float formats in every rounding mode", "[kernels][convert]") {
  for (Rounding mode : kAllRoundings) {
    check_convert<float, bf16>(mode);
    check_convert<float, f16>(mode);
    check_convert<float, e4m3>(mode);
    check_convert<float, e5m2>(mode);
    check_convert<double, float>(mode);
    check_convert<double, bf16>(mode);
    check_convert<double, e4m3>(mode);
    check_convert<bf16, e4m3>(mode);
    check_convert<f16, e5m2>(mode);
    check_convert<f16, bf16>(mode);
  }
}

TEST_CASE("convert overflow: inf (NaN for e4m3) when non-saturating, +-max when saturating", "[kernels][convert]") {
  auto ctx = ExecutionContext::host();
  auto x = Tensor<float>::empty(ctx, {4});
  x.at({0}) = 1e6f;
  x.at({1}) = -1e6f;
  x.at({2}) = INFINITY;
  x.at({3}) = NAN;
  auto y = Tensor<e4m3>::empty(ctx, {4});
  kernels::convert(ctx, x, y);
  CHECK(isnan(y.at({0})));
  CHECK(isnan(y.at({2})));
  CHECK(isnan(y.at({3})));
  kernels::convert(ctx, x, y, Rounding::nearest_even_saturate);
  CHECK(static_cast<float>(y.at({0})) == 448.0f);
  CHECK(static_cast<float>(y.at({1})) == -448.0f);
  CHECK(static_cast<float>(y.at({2})) == 448.0f);
  CHECK(isnan(y.at({3})));
  auto h = Tensor<f16>::empty(ctx, {4});
  kernels::convert(ctx, x, h);
  CHECK(isinf(h.at({0})));
  CHECK(signbit(h.at({1})));
  kernels::convert(ctx, x, h, Rounding::stochastic_saturate);
  CHECK(static_cast<float>(h.at({0})) == 65504.0f);
}

TEST_CASE("stochastic rounding is unbiased and keyed by the element index", "[kernels][convert]") {
  ContextOptions opts;
  opts.seed = ktest::fresh_seed();
  INFO("seed " << opts.seed);
  auto ctx = ExecutionContext::host(opts);
  // x = 1 + 0.3 ulp(bf16): rounds up with probability 0.3.
  const float x = 1.0f + 0.3f * 0x1p-7f;
  const std::int64_t n = 1 << 16;
  auto in = Tensor<float>::empty(ctx, {n});
  kernels::fill(ctx, in, x);
  auto out = Tensor<bf16>::empty(ctx, {n});
  kernels::convert(ctx, in, out, Rounding::stochastic);
  std::int64_t up = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const float y = static_cast<float>(out.at({i}));
    REQUIRE((y == 1.0f || y == 1.0f + 0x1p-7f));
    up += y != 1.0f;
  }
  // Binomial(n, 0.3): 6 standard deviations.
  CHECK(std::fabs(double(up) / n - 0.3) <= 6 * std::sqrt(0.3 * 0.7 / n));
  // A second draw uses new counters: different roundings; replaying the offset repeats them.
  auto again = Tensor<bf16>::empty(ctx, {n});
  kernels::convert(ctx, in, again, Rounding::stochastic);
  CHECK_FALSE(ktest::bitwise_equal(out, again));
  ctx.set_rng_offset(0);
  kernels::convert(ctx, in, again, Rounding::stochastic);
  CHECK(ktest::bitwise_equal(out, again));
  // Independent of the host thread count.
  ContextOptions one = opts;
  one.host_threads = 1;
  auto c1 = ExecutionContext::host(one);
  kernels::convert(c1, in, again, Rounding::stochastic);
  CHECK(ktest::bitwise_equal(out, again));
}

TEST_CASE("convert to and from integers", "[kernels][convert]") {
  auto ctx = ExecutionContext::host();
  // Float -> integer: truncation toward zero, saturation, NaN -> 0 (whatever the rounding mode).
  const float xs[] = {2.7f, -2.7f, 1e10f, -1e10f, NAN, 0.5f, -0.0f, 2147483520.0f};
  const std::int32_t want[] = {2, -2, 2147483647, -2147483647 - 1, 0, 0, 0, 2147483520};
  auto x = Tensor<float>::wrap(const_cast<float*>(xs), {8});
  auto y = Tensor<std::int32_t>::empty(ctx, {8});
  for (Rounding mode : kAllRoundings) {
    kernels::convert(ctx, x, y, mode);
    for (int i = 0; i < 8; ++i) CHECK(y.at({i}) == want[i]);
  }
  auto u8 = Tensor<std::uint8_t>::empty(ctx, {8});
  kernels::convert(ctx, x, u8);
  CHECK(u8.at({0}) == 2);
  CHECK(u8.at({1}) == 0);
  CHECK(u8.at({2}) == 255);
  // Integer -> float: rounded once from the exact integer.
  const std::int64_t is[] = {(std::int64_t{1} << 53) + 1, -3, 257, 1000001};
  auto i64 = Tensor<std::int64_t>::wrap(const_cast<std::int64_t*>(is), {4});
  auto d = Tensor<double>::empty(ctx, {4});
  kernels::convert(ctx, i64, d);
  CHECK(d.at({0}) == 9007199254740992.0);  // tie to even
  CHECK(d.at({1}) == -3.0);
  auto b = Tensor<bf16>::empty(ctx, {4});
  kernels::convert(ctx, i64, b);
  CHECK(static_cast<float>(b.at({2})) == 256.0f);      // 257: a tie between 256 and 258 -> even
  CHECK(static_cast<float>(b.at({3})) == 999424.0f);   // 1000001 -> nearest bf16
  // Integer -> integer: C++'s modular conversion.
  auto i8 = Tensor<std::int8_t>::empty(ctx, {4});
  kernels::convert(ctx, i64, i8);
  CHECK(i8.at({2}) == 1);  // 257 mod 256
  CHECK(i8.at({1}) == -3);
}
