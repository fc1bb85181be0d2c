// Host reductions (sum, max, amax, mean_var and their row forms) against long-double references
// with tolerances derived from the accumulator's epsilon and the summation depth, plus NaN handling,
// empty inputs, determinism (thread count, strides, row vs whole) and the typed errors.
#include "kernels_test_util.hpp"

#include <algorithm>

#include "mixtape/kernels/detail/reduce_host.hpp"
#include "mixtape/kernels/reduce.hpp"

using namespace mixtape;
using ktest::elem;

namespace {

enum class View { dense, transposed, sliced };

template <class T>
Tensor<T> make_input(const ExecutionContext& ctx, const Shape& s, View kind) {
  if (kind == View::dense || s.rank() < 2) {
    if (kind == View::sliced) {
      Shape wide = s;
      wide[s.rank() - 1] += 5;
      return Tensor<T>::empty(ctx, wide).slice(-1, 2, s[s.rank() - 1]);
    }
    return Tensor<T>::empty(ctx, s);
  }
  Shape st = s;
  if (kind == View::sliced) {
    st[s.rank() - 1] += 5;
    return Tensor<T>::empty(ctx, st).slice(-1, 2, s[s.rank() - 1]);
  }
  std::swap(st[0], st[s.rank() - 1]);
  return Tensor<T>::empty(ctx, st).transposed(0, -1);
}

/// Summation depth of the host engine for n terms (reduce_host.hpp): a lane of a block adds
/// ceil(len / 8) terms in sequence, the 8 lanes are combined in 3 levels, the blocks by a pairwise
/// tree of ceil(log2(blocks)) levels. Any element's path crosses at most L = that many roundings.
double host_depth(std::int64_t n) {
  const std::int64_t blocks = std::max<std::int64_t>(1, (n + kernels::detail::kReduceBlock - 1) / kernels::detail::kReduceBlock);
  const std::int64_t in_block = std::min<std::int64_t>(n, kernels::detail::kReduceBlock);
  return double((in_block + 7) / 8 + 3) + std::ceil(std::log2(double(blocks)));
}

/// Tolerances (Higham ch. 4 for sums; Chan, Golub & LeVeque 1983 for the variance), with u the
/// accumulator's unit roundoff, L = host_depth(n), u_O the output's:
///   sum:   |s - S| <= gamma_L(u) sum|x| + u_O |S| + floor_O   (then rounded once to O)
///   mean:  |m - M| <= gamma_{L+1}(u) sum|x| / n + u_O |M| + floor_O
///   var:   |v - V| <= 4 gamma_{L+4+5D}(u) mean(x^2) + u_O |V| + floor_O, D = the merge depth
///          (each Chan merge rounds ~5 times; the deviations d = x - mean round 3 times; mean(x^2)
///          bounds every intermediate m2 / n and the between-block terms)
///   max, amax: exact (no rounding; the widening to the accumulator is exact).
struct Tolerance {
  double u, u_out, floor_out, L, D;
  double sum(const ktest::RefStats& r) const { return ktest::gamma(L, u) * double(r.sum_abs) + u_out * std::fabs(double(r.sum)) + floor_out; }
  double mean(const ktest::RefStats& r, std::int64_t n) const {
    return ktest::gamma(L + 1, u) * double(r.sum_abs) / double(n) + u_out * std::fabs(double(r.mean)) + floor_out;
  }
  double var(const ktest::RefStats& r) const {
    return 4 * ktest::gamma(L + 4 + 5 * D, u) * double(r.mean_sq) + u_out * double(r.var) + floor_out;
  }
};

template <class T, class O, class Acc>
Tolerance host_tolerance(std::int64_t n) {
  const std::int64_t blocks = std::max<std::int64_t>(1, (n + kernels::detail::kReduceBlock - 1) / kernels::detail::kReduceBlock);
  return {ktest::unit_roundoff<Acc>(), ktest::unit_roundoff<O>(), ktest::subnormal_floor<O>(), host_depth(n),
          3 + std::ceil(std::log2(double(blocks)))};
}

template <class O>
void require_exact(O got, long double want) {
  const O w = kernels::detail::cast<O>(static_cast<double>(want));
  REQUIRE(std::memcmp(&got, &w, sizeof(O)) == 0);
}

template <class T, class O = kernels::default_accum_t<T>, class Acc = kernels::default_accum_t<T>>
void check_full(double lo, double hi) {
  const std::uint64_t seed = ktest::fresh_seed();
  std::mt19937_64 rng(seed);
  auto ctx = ExecutionContext::host(ContextOptions{.host_threads = 3});
  const std::vector<Shape> shapes = {{1}, {7}, {1000}, {3, 8193}, {70001}, {2, 3, 40000}};
  for (const Shape& s : shapes) {
    for (View kind : {View::dense, View::transposed, View::sliced}) {
      auto x = make_input<T>(ctx, s, kind);
      ktest::fill_random(x, rng, lo, hi);
      const auto v = ktest::values(x);
      const std::int64_t n = x.numel();
      const auto r = ktest::ref_stats(v, 0, static_cast<std::size_t>(n));
      const Tolerance tol = host_tolerance<T, O, Acc>(n);
      INFO(ktest::type_name<T>() << " -> " << ktest::type_name<O>() << " acc " << ktest::type_name<Acc>() << " shape " << s
                                 << " view " << int(kind) << " seed " << seed);
      auto out = Tensor<O>::empty(ctx, {1});
      kernels::sum<Acc>(ctx, x, out);
      CHECK(std::fabs(ktest::to_double(out.at({0})) - double(r.sum)) <= tol.sum(r));
      kernels::max<Acc>(ctx, x, out);
      require_exact(out.at({0}), r.max);
      kernels::amax<Acc>(ctx, x, out);
      require_exact(out.at({0}), r.amax);
      auto mv = Tensor<O>::empty(ctx, {2});
      kernels::mean_var<Acc>(ctx, x, mv);
      CHECK(std::fabs(ktest::to_double(mv.at({0})) - double(r.mean)) <= tol.mean(r, n));
      CHECK(std::fabs(ktest::to_double(mv.at({1})) - double(r.var)) <= tol.var(r));
    }
  }
}

template <class T, class O = kernels::default_accum_t<T>>
void check_rows(double lo, double hi) {
  using Acc = kernels::default_accum_t<T>;
  const std::uint64_t seed = ktest::fresh_seed();
  std::mt19937_64 rng(seed);
  auto ctx = ExecutionContext::host(ContextOptions{.host_threads = 3});
  const std::vector<Shape> shapes = {{5}, {4, 1}, {9, 33}, {3, 7, 100}, {2, 20000}, {300, 129}};
  for (const Shape& s : shapes) {
    for (View kind : {View::dense, View::transposed, View::sliced}) {
      auto x = make_input<T>(ctx, s, kind);
      ktest::fill_random(x, rng, lo, hi);
      const auto v = ktest::values(x);
      const std::int64_t cols = s[s.rank() - 1], rows = x.numel() / cols;
      const Shape lead(s.span().first(static_cast<std::size_t>(s.rank() - 1)));
      // Outputs: dense, and for rank >= 2 a strided window of a wider tensor.
      auto out_view = [&] {
        if (lead.rank() == 0) return Tensor<O>::empty(ctx, lead);
        Shape wide = lead;
        wide[lead.rank() - 1] += 3;
        return Tensor<O>::empty(ctx, wide).slice(-1, 1, lead[lead.rank() - 1]);
      };
      auto sum = out_view(), mx = out_view(), am = out_view(), mean = out_view(), var = out_view();
      kernels::sum_rows(ctx, x, sum);
      kernels::max_rows(ctx, x, mx);
      kernels::amax_rows(ctx, x, am);
      kernels::mean_var_rows(ctx, x, mean, var);
      const Tolerance tol = host_tolerance<T, O, Acc>(cols);
      INFO(ktest::type_name<T>() << " shape " << s << " view " << int(kind) << " seed " << seed);
      for (std::int64_t row = 0; row < rows; ++row) {
        const auto r = ktest::ref_stats(v, static_cast<std::size_t>(row * cols), static_cast<std::size_t>(cols));
        INFO("row " << row);
        REQUIRE(std::fabs(ktest::to_double(elem(sum, row)) - double(r.sum)) <= tol.sum(r));
        require_exact(elem(mx, row), r.max);
        require_exact(elem(am, row), r.amax);
        REQUIRE(std::fabs(ktest::to_double(elem(mean, row)) - double(r.mean)) <= tol.mean(r, cols));
        REQUIRE(std::fabs(ktest::to_double(elem(var, row)) - double(r.var)) <= tol.var(r));
      }
    }
  }
}

}  // namespace

TEST_CASE("whole-tensor reductions over float formats", "[kernels][reduce]") {
  check_full<float>(-1, 2);
  check_full<double>(-1, 2);
  check_full<bf16>(-1, 2);
  check_full<f16>(-1, 2);
  check_full<e4m3>(-16, 32);
  check_full<e5m2>(-16, 32);
  check_full<bf16, bf16>(0.5, 1.5);           // result rounded once to bf16
  check_full<float, float, double>(-1, 2);    // OverrideAccumT = double
}

TEST_CASE("whole-tensor reductions over integers", "[kernels][reduce]") {
  check_full<std::int32_t>(-100000, 100000);
  check_full<std::int8_t>(-128, 127);
  check_full<std::uint8_t>(0, 255);
  check_full<std::int64_t, double>(-1000000000, 1000000000);
}

TEST_CASE("row reductions over the last dimension", "[kernels][reduce]") {
  check_rows<float>(-1, 2);
  check_rows<double>(-1, 2);
  check_rows<bf16>(-1, 2);
  check_rows<f16, f16>(0.5, 1.5);
  check_rows<e4m3>(-8, 8);
  check_rows<std::int16_t>(-1000, 1000);
}

TEST_CASE("the accumulator override changes the arithmetic", "[kernels][reduce]") {
  // 1e8 followed by 10^4 ones and -1e8: each one is lost against 1e8 in float (ulp 8), not in double.
  auto ctx = ExecutionContext::host();
  const std::int64_t n = 10002;
  auto x = Tensor<float>::empty(ctx, {n});
  kernels::fill(ctx, x, 1.0f);
  x.at({0}) = 1e8f;
  x.at({n - 1}) = -1e8f;
  auto out = Tensor<double>::empty(ctx, {1});
  kernels::sum<double>(ctx, x, out);
  CHECK(out.at({0}) == 10000.0);
  kernels::sum(ctx, x, out);
  CHECK(out.at({0}) != 10000.0);
}

TEST_CASE("NaN propagates; empty inputs give the identities", "[kernels][reduce]") {
  auto ctx = ExecutionContext::host();
  std::mt19937_64 rng(ktest::fresh_seed());
  for (std::int64_t at : {std::int64_t{0}, std::int64_t{4097}, std::int64_t{20000 - 1}}) {
    auto x = Tensor<bf16>::empty(ctx, {20000});
    ktest::fill_random(x, rng, -1, 1);
    x.at({at}) = bf16::from_bits(0x7FC1);  // a NaN
    auto out = Tensor<float>::empty(ctx, {1});
    auto mv = Tensor<float>::empty(ctx, {2});
    kernels::amax(ctx, x, out);
    CHECK(std::isnan(out.at({0})));
    kernels::max(ctx, x, out);
    CHECK(std::isnan(out.at({0})));
    kernels::sum(ctx, x, out);
    CHECK(std::isnan(out.at({0})));
    kernels::mean_var(ctx, x, mv);
    CHECK(std::isnan(mv.at({0})));
    CHECK(std::isnan(mv.at({1})));
    auto rows = Tensor<float>::empty(ctx, {2});
    kernels::amax_rows(ctx, x.reshape({2, 10000}), rows);
    CHECK(std::isnan(rows.at({at / 10000})));
    CHECK_FALSE(std::isnan(rows.at({1 - at / 10000})));
  }
  // Infinities are ordinary values for max.
  auto y = Tensor<float>::empty(ctx, {3});
  y.at({0}) = -INFINITY;
  y.at({1}) = 2;
  y.at({2}) = -3;
  auto out = Tensor<float>::empty(ctx, {1});
  kernels::amax(ctx, y, out);
  CHECK(out.at({0}) == INFINITY);
  kernels::max(ctx, y, out);
  CHECK(out.at({0}) == 2);
  auto empty = Tensor<float>::empty(ctx, {0});
  kernels::sum(ctx, empty, out);
  CHECK(out.at({0}) == 0);
  kernels::max(ctx, empty, out);
  CHECK(out.at({0}) == -INFINITY);
  kernels::amax(ctx, empty, out);
  CHECK(out.at({0}) == 0);
  auto mv = Tensor<float>::empty(ctx, {2});
  kernels::mean_var(ctx, empty, mv);
  CHECK(std::isnan(mv.at({0})));
  auto no_cols = Tensor<float>::empty(ctx, {3, 0});
  auto rs = Tensor<float>::empty(ctx, {3});
  kernels::sum_rows(ctx, no_cols, rs);
  CHECK(rs.at({2}) == 0);
}

TEST_CASE("host reductions are bitwise reproducible across threads, strides and forms", "[kernels][reduce]") {
  const std::uint64_t seed = ktest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  auto c1 = ExecutionContext::host(ContextOptions{.host_threads = 1});
  auto c4 = ExecutionContext::host(ContextOptions{.host_threads = 4});
  const std::int64_t n = 3 * 8192 * 7 + 11;
  auto x = Tensor<float>::empty(c1, {n});
  ktest::fill_random(x, rng, -1, 3);
  auto o1 = Tensor<float>::empty(c1, {2});
  auto o4 = Tensor<float>::empty(c4, {2});
  kernels::mean_var(c1, x, o1);
  kernels::mean_var(c4, x, o4);
  CHECK(ktest::bitwise_equal(o1, o4));
  kernels::sum(c1, x, o1.slice(0, 0, 1));
  kernels::sum(c4, x, o4.slice(0, 0, 1));
  CHECK(ktest::bitwise_equal(o1, o4));
  // The row form of a [1, n] tensor equals the whole-tensor form.
  auto row = Tensor<float>::empty(c4, {1});
  kernels::sum_rows(c4, x.reshape({1, n}), row);
  CHECK(ktest::bitwise_equal(row, o4.slice(0, 0, 1)));
  // A strided view holding the same values in the same logical order gives the same bits.
  auto wide = Tensor<float>::empty(c4, {n, 2});
  auto col = wide.slice(1, 1, 1);  // (n, 1), stride 2
  for (std::int64_t i = 0; i < n; ++i) col.at({i, 0}) = x.at({i});
  kernels::sum(c4, col, row);
  CHECK(ktest::bitwise_equal(row, o4.slice(0, 0, 1)));
}

TEST_CASE("reductions reject bad outputs with typed errors", "[kernels][reduce][errors]") {
  auto ctx = ExecutionContext::host();
  auto x = Tensor<float>::empty(ctx, {4, 5, 6});
  kernels::fill(ctx, x, 1.0);
  try {
    kernels::sum(ctx, x, Tensor<float>::empty(ctx, {3}));
    FAIL("expected ShapeError");
  } catch (const ShapeError& e) {
    CHECK_THAT(e.what(), Catch::Contains("sum: expected an output of 1 element, got shape (3)"));
  }
  CHECK_THROWS_AS(kernels::mean_var(ctx, x, Tensor<float>::empty(ctx, {1})), ShapeError);
  try {
    kernels::sum_rows(ctx, x, Tensor<float>::empty(ctx, {4, 6}));
    FAIL("expected ShapeError");
  } catch (const ShapeError& e) {
    CHECK_THAT(e.what(), Catch::Contains("expected an output of shape (4, 5)") && Catch::Contains("got (4, 6)"));
  }
  CHECK_THROWS_AS(kernels::mean_var_rows(ctx, x, Tensor<float>::empty(ctx, {4, 5}), Tensor<float>::empty(ctx, {5, 4})),
                  ShapeError);
  CHECK_THROWS_AS(kernels::sum_rows(ctx, Tensor<float>::empty(ctx, {}), Tensor<float>::empty(ctx, {})), ShapeError);
  auto gpu = Tensor<float>::wrap(reinterpret_cast<float*>(std::uintptr_t{0x1000}), {1}, Device::cuda(0));
  try {
    kernels::amax(ctx, x, gpu);
    FAIL("expected DeviceError");
  } catch (const DeviceError& e) {
    CHECK_THAT(e.what(), Catch::Contains("amax: the output must be on the context's device, expected cpu, got cuda:0"));
  }
  // A scalar output (shape ()) is fine for whole-tensor reductions; so is a 2-element strided view.
  auto scalar = Tensor<float>::empty(ctx, {});
  kernels::sum(ctx, x, scalar);
  CHECK(scalar.at({}) == 120.0f);
  auto strided = Tensor<float>::empty(ctx, {2, 3}).slice(1, 2, 1);
  kernels::mean_var(ctx, x, strided);
  CHECK(strided.at({0, 0}) == 1.0f);
  CHECK(strided.at({1, 0}) == 0.0f);
}
