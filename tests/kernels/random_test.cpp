// Philox4x32-10 known answers, the element mapping, and the uniform / normal fills on the host.
#include "kernels_test_util.hpp"

#include "mixtape/core/philox.hpp"
#include "mixtape/kernels/random.hpp"

using namespace mixtape;
using ktest::elem;

// Known-answer vectors of Random123 (kat_vectors: philox4x32_10), also cuRAND's and PyTorch's.
static_assert(philox4x32_10(PhiloxWords{{0, 0, 0, 0}}, PhiloxKey{{0, 0}}) ==
              PhiloxWords{{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}});
static_assert(philox4x32_10(PhiloxWords{{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}},
                            PhiloxKey{{0xffffffffu, 0xffffffffu}}) ==
              PhiloxWords{{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}});
static_assert(philox4x32_10(PhiloxWords{{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}},
                            PhiloxKey{{0xa4093822u, 0x299f31d0u}}) ==
              PhiloxWords{{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}});

TEST_CASE("philox4x32_10 matches the Random123 known answers at run time", "[kernels][philox]") {
  volatile std::uint32_t zero = 0;  // keep the compiler from folding the call
  const PhiloxWords a = philox4x32_10(PhiloxWords{{zero, zero, zero, zero}}, PhiloxKey{{zero, zero}});
  CHECK(a[0] == 0x6627e8d5u);
  CHECK(a[1] == 0xe169c58du);
  CHECK(a[2] == 0xbc57ac4cu);
  CHECK(a[3] == 0x9b00dbd8u);
  const PhiloxWords b = philox4x32_10(PhiloxWords{{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u + zero}},
                                      PhiloxKey{{0xa4093822u, 0x299f31d0u}});
  CHECK(b == PhiloxWords{{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}});
}

TEST_CASE("philox element mapping: counter offset + i / 4, word i % 4, key = seed", "[kernels][philox]") {
  const std::uint64_t seed = 0x0123456789abcdefull, offset = 0xfffffffffffffffeull;  // wraps past 2^64
  for (std::uint64_t i = 0; i < 12; ++i) {
    const std::uint64_t c = offset + i / 4;
    const PhiloxWords w = philox4x32_10(
        PhiloxWords{{static_cast<std::uint32_t>(c), static_cast<std::uint32_t>(c >> 32), 0, 0}},
        PhiloxKey{{0x89abcdefu, 0x01234567u}});
    CHECK(philox_word(seed, offset, i) == w[static_cast<int>(i % 4)]);
  }
  CHECK(philox_counters(0) == 0);
  CHECK(philox_counters(1) == 1);
  CHECK(philox_counters(4) == 1);
  CHECK(philox_counters(5) == 2);
  CHECK(philox_counters(5, 2) == 3);
}

TEST_CASE("uniform word scalings are exact and in range", "[kernels][philox]") {
  CHECK(uniform_float(0u) == 0.0f);
  CHECK(uniform_float(0xffffffffu) == 1.0f - 0x1p-24f);
  CHECK(uniform_float(0x80000000u) == 0.5f);
  CHECK(uniform_float_open0(0u) == 0x1p-24f);
  CHECK(uniform_float_open0(0xffffffffu) == 1.0f);
  CHECK(uniform_double(0u, 0u) == 0.0);
  CHECK(uniform_double(0xffffffffu, 0xffffffffu) == 1.0 - 0x1p-53);
  CHECK(uniform_double_open0(0u, 0u) == 0x1p-53);
  CHECK(uniform_double_open0(0xffffffffu, 0xffffffffu) == 1.0);
}

namespace {

template <class T>
void check_uniform_moments(double lo, double hi) {
  ContextOptions opts;
  opts.seed = ktest::fresh_seed();
  INFO("type " << ktest::type_name<T>() << " seed " << opts.seed);
  auto ctx = ExecutionContext::host(opts);
  const std::int64_t n = 1 << 18;
  auto t = Tensor<T>::empty(ctx, {n});
  kernels::uniform(ctx, t, lo, hi);
  const auto v = ktest::values(t);
  double mn = 1e300, mx = -1e300;
  long double s = 0, s2 = 0;
  int bins[16] = {};
  for (double x : v) {
    mn = std::min(mn, x);
    mx = std::max(mx, x);
    s += x;
    s2 += (long double)x * x;
    bins[std::clamp(static_cast<int>((x - lo) / (hi - lo) * 16), 0, 15)]++;
  }
  const double mean = static_cast<double>(s / n), var = static_cast<double>(s2 / n) - mean * mean;
  // Range: [lo, hi) before rounding; rounding to T can reach hi.
  CHECK(mn >= lo);
  CHECK(mx <= hi);
  // Moments of U[lo, hi): mean (lo + hi) / 2, variance w^2 / 12. The sample mean's standard error is
  // w / sqrt(12 n); 6 sigma leaves a false alarm rate of ~2e-9. Rounding to T shifts values by at
  // most u_T * max(|lo|, |hi|), which we add (it is what separates bf16 / fp8 from the ideal).
  const double w = hi - lo, quant = ktest::unit_roundoff<T>() * std::max(std::fabs(lo), std::fabs(hi));
  CHECK(std::fabs(mean - (lo + hi) / 2) <= 6 * w / std::sqrt(12.0 * n) + quant);
  // var of the sample variance of U: (w^4 / 80 - w^4 / 144) / n -> sd = w^2 sqrt(1/180 / n).
  CHECK(std::fabs(var - w * w / 12) <= 6 * w * w * std::sqrt(1.0 / 180 / n) + 2 * w * quant);
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    // Chi-square over 16 equal bins, 15 degrees of freedom: P(chi2 > 50) ~ 1e-5.
    double chi2 = 0;
    for (int b : bins) chi2 += (b - n / 16.0) * (b - n / 16.0) / (n / 16.0);
    CHECK(chi2 < 50);
  }
}

}  // namespace

TEST_CASE("uniform: range, moments and histogram", "[kernels][random]") {
  check_uniform_moments<float>(-1.0, 3.0);
  check_uniform_moments<double>(-2.0, 0.5);
  check_uniform_moments<bf16>(0.0, 1.0);
  check_uniform_moments<f16>(-0.1, 0.1);
  check_uniform_moments<e4m3>(-4.0, 4.0);
  check_uniform_moments<e5m2>(1.0, 2.0);
}

TEST_CASE("uniform follows the documented element mapping", "[kernels][random]") {
  ContextOptions opts;
  opts.seed = ktest::fresh_seed();
  INFO("seed " << opts.seed);
  auto ctx = ExecutionContext::host(opts);
  ctx.set_rng_offset(1000);
  auto f = Tensor<float>::empty(ctx, {4, 37});
  kernels::uniform(ctx, f, -1.0, 3.0);
  CHECK(ctx.rng_offset() == 1000 + philox_counters(4 * 37));
  for (std::int64_t i = 0; i < f.numel(); ++i) {
    const float u = uniform_float(philox_word(opts.seed, 1000, static_cast<std::uint64_t>(i)));
    REQUIRE(elem(f, i) == std::fma(u, 4.0f, -1.0f));
  }
  const std::uint64_t off = ctx.rng_offset();
  auto d = Tensor<double>::empty(ctx, {11});
  kernels::uniform(ctx, d, 0.0, 1.0);
  CHECK(ctx.rng_offset() == off + philox_counters(11, 2));
  for (std::uint64_t i = 0; i < 11; ++i) {
    const PhiloxWords w = philox_block(opts.seed, off, i / 2);
    const int j = 2 * static_cast<int>(i % 2);
    REQUIRE(elem(d, static_cast<std::int64_t>(i)) == uniform_double(w[j], w[j + 1]));
  }
}

TEST_CASE("random fills depend on (seed, offset, index) only: not strides, not threads", "[kernels][random]") {
  ContextOptions one, four;
  one.seed = four.seed = ktest::fresh_seed();
  one.host_threads = 1;
  four.host_threads = 4;
  INFO("seed " << one.seed);
  auto c1 = ExecutionContext::host(one);
  auto c4 = ExecutionContext::host(four);
  // A large draw (several host chunks) with 1 and 4 threads.
  auto a = Tensor<bf16>::empty(c1, {300, 1000});
  auto b = Tensor<bf16>::empty(c4, {300, 1000});
  kernels::normal(c1, a, 0.5, 2.0);
  kernels::normal(c4, b, 0.5, 2.0);
  CHECK(ktest::bitwise_equal(a, b));
  // A transposed destination: element (i, j) of the view gets the value of row-major index i*C + j.
  c1.set_rng_offset(7);
  auto dense = Tensor<float>::empty(c1, {13, 29});
  kernels::uniform(c1, dense, -1, 1);
  c1.set_rng_offset(7);
  auto storage = Tensor<float>::empty(c1, {29, 13});
  kernels::uniform(c1, storage.transposed(), -1, 1);
  CHECK(ktest::bitwise_equal(dense, storage.transposed()));
  // Consecutive draws use disjoint counters: different values.
  auto x = Tensor<float>::empty(c1, {64});
  auto y = Tensor<float>::empty(c1, {64});
  kernels::uniform(c1, x);
  kernels::uniform(c1, y);
  CHECK_FALSE(ktest::bitwise_equal(x, y));
}

namespace {
template <class T>
void check_normal_moments(double mean, double stddev) {
  ContextOptions opts;
  opts.seed = ktest::fresh_seed();
  INFO("type " << ktest::type_name<T>() << " seed " << opts.seed);
  auto ctx = ExecutionContext::host(opts);
  const std::int64_t n = 1 << 18;
  auto t = Tensor<T>::empty(ctx, {n});
  kernels::normal(ctx, t, mean, stddev);
  const auto v = ktest::values(t);
  long double s = 0, s2 = 0;
  std::int64_t within = 0;
  for (double x : v) {
    s += x;
    s2 += (long double)x * x;
    within += std::fabs(x - mean) <= stddev;
    REQUIRE(std::isfinite(x));
  }
  const double m = static_cast<double>(s / n), var = static_cast<double>(s2 / n) - m * m;
  // Standard errors: mean sd / sqrt(n); variance sd^2 sqrt(2 / n) (normal kurtosis 3); the fraction
  // within one sd is 0.6827 with sd sqrt(p (1 - p) / n). 6 sigma each, plus T's rounding.
  const double quant = ktest::unit_roundoff<T>() * (std::fabs(mean) + 4 * stddev);
  CHECK(std::fabs(m - mean) <= 6 * stddev / std::sqrt(double(n)) + quant);
  CHECK(std::fabs(var - stddev * stddev) <= 6 * stddev * stddev * std::sqrt(2.0 / n) + 4 * stddev * quant);
  const double p = 0.682689492137;
  // Rounding to T moves values near +-1 sd by at most u_T relative: mass 2 * phi(1) * u_T moves.
  CHECK(std::fabs(double(within) / n - p) <= 6 * std::sqrt(p * (1 - p) / n) + 2 * 0.242 * ktest::unit_roundoff<T>());
}
}  // namespace

TEST_CASE("normal: moments and the one-sigma mass", "[kernels][random]") {
  check_normal_moments<float>(0.0, 1.0);
  check_normal_moments<double>(1.5, 0.25);
  check_normal_moments<bf16>(0.0, 0.02);
  check_normal_moments<f16>(-3.0, 2.0);
}

TEST_CASE("random fills of a non-floating tensor are refused with DTypeError", "[kernels][random][errors]") {
  auto ctx = ExecutionContext::host();
  auto ints = Tensor<std::int32_t>::empty(ctx, {4});
  try {
    kernels::uniform(ctx, TensorRef(ints));
    FAIL("expected DTypeError");
  } catch (const DTypeError& e) {
    CHECK_THAT(e.what(), Catch::Contains("expected a floating-point tensor") && Catch::Contains("got i32"));
  }
  CHECK_THROWS_AS(kernels::normal(ctx, TensorRef(ints)), DTypeError);
  auto f = Tensor<float>::empty(ctx, {4});
  kernels::uniform(ctx, TensorRef(f), 2.0, 3.0);
  CHECK(f.at({0}) >= 2.0f);
}
