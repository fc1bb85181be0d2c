// GPU tests of the kernels. This unit is compiled by the host compiler: its mixtape::kernels calls are
// the host backend (the reference), and kcuda:: calls reach the CUDA backend instantiated in
// kernels_cuda_*.cu. Element-wise ops, conversions (every rounding mode) and uniform draws must be
// bitwise identical between the two; normal draws within a few ulps; reductions within the
// tolerances derived below (max and amax exactly).
#include "kernels_test_util.hpp"

#include <algorithm>
#include <functional>

#include "kernels_cuda_helpers.hpp"
#include "mixtape/core/transfer.hpp"
#include "mixtape/kernels/elementwise.hpp"
#include "mixtape/kernels/random.hpp"
#include "mixtape/kernels/reduce.hpp"

using namespace mixtape;
using ktest::elem;

namespace {

// Created on first use and never destroyed: no CUDA call runs during static destruction, after the
// runtime may have been torn down.
ExecutionContext& dev() {
  static auto* ctx = new ExecutionContext(ExecutionContext::cuda(0));
  return *ctx;
}
ExecutionContext& host() {
  static auto* ctx = new ExecutionContext(ExecutionContext::host());
  return *ctx;
}

/// The same random values on the host and on the device (storage tensors: views are taken of both).
template <class T>
struct Twin {
  Tensor<T> h, d;
};
template <class T>
Twin<T> twin(const Shape& s, std::mt19937_64& rng, double lo, double hi) {
  auto h = Tensor<T>::empty(host(), s);
  ktest::fill_random(h, rng, lo, hi);
  return {h, to_device(dev(), h, Device::cuda(0))};
}
template <class T>
Twin<T> twin_zero(const Shape& s) {
  auto h = Tensor<T>::empty(host(), s);
  std::memset(static_cast<void*>(h.data()), 0, static_cast<std::size_t>(h.nbytes()));
  return {h, to_device(dev(), h, Device::cuda(0))};
}

/// Device storage equals host storage bit for bit (the whole storage: nothing written outside a view).
template <class T>
void require_same_bits(const Twin<T>& t, const char* what) {
  const auto back = to_vector(dev(), t.d);
  const std::int64_t i = ktest::first_bitwise_difference(back.data(), t.h.data(), t.h.numel());
  INFO(what << ": first difference at storage element " << i << " of " << t.h.numel());
  if (i >= 0) {
    INFO("device " << ktest::to_double(back[i]) << " host " << ktest::to_double(t.h.data()[i]));
    REQUIRE(i < 0);
  }
  REQUIRE(i < 0);
}

using ViewFn = std::function<Layout(const Layout&)>;
/// The views each element-wise op is checked on: the whole storage, a transposed window, a window
/// at offset 1 (misaligned: the scalar dense path, or the strided path), for rank-2 storage.
std::vector<std::pair<const char*, ViewFn>> views_2d() {
  return {
      {"dense", [](const Layout& l) { return l; }},
      {"transposed", [](const Layout& l) { return l.transposed(0, 1); }},
      // Interior window (row 0, first and last column dropped); empty when an extent is below 2-3.
      {"window", [](const Layout& l) {
         const std::int64_t cols = std::max<std::int64_t>(l.shape[1] - 2, 0), rows = std::max<std::int64_t>(l.shape[0] - 1, 0);
         return l.sliced(1, std::min<std::int64_t>(1, l.shape[1]), cols).sliced(0, std::min<std::int64_t>(1, l.shape[0]), rows);
       }},
      {"misaligned flat", [](const Layout& l) {
         const Layout flat = l.reshaped(std::vector<std::int64_t>{l.numel()});
         return flat.sliced(0, 1, l.numel() - 1).reshaped(std::vector<std::int64_t>{l.numel() - 1});
       }},
  };
}
template <class T>
Tensor<T> view_of(const Tensor<T>& t, const ViewFn& f) {
  return Tensor<T>(t.storage(), f(t.layout()));
}

const std::vector<Shape>& shapes_2d() {
  static const std::vector<Shape> s = {{1, 3}, {3, 7}, {33, 65}, {1025, 1031}, {2, (1 << 20) + 3}};
  return s;
}

}  // namespace

TEST_CASE("CUDA map equals host map bit for bit", "[cuda][kernels][map]") {
  const std::uint64_t seed = ktest::fresh_seed();
  std::mt19937_64 rng(seed);
  INFO("seed " << seed);
  for (const Shape& s : shapes_2d()) {
    for (const auto& [name, vf] : views_2d()) {
      INFO("shape " << s << " view " << name);
      auto check1 = [&]<class Out, class In, class Op>(const Op& op, double lo, double hi) {
        auto x = twin<In>(s, rng, lo, hi);
        auto y = twin_zero<Out>(s);
        auto yv_h = view_of(y.h, vf);
        kernels::map(host(), op, yv_h, view_of(x.h, vf));
        kcuda::map(dev(), op, view_of(y.d, vf), view_of(x.d, vf));
        require_same_bits(y, ktest::type_name<Out>());
      };
      check1.template operator()<bf16, bf16>(kernels::ScaleBy{0.37}, -2, 2);
      check1.template operator()<float, float>(kernels::ScaleBy{-1.7}, -2, 2);
      check1.template operator()<std::int32_t, std::int32_t>(kernels::ScaleBy{2.5}, -1000, 1000);
      check1.template operator()<float, e4m3>(kernels::Square{}, -16, 16);
      check1.template operator()<e5m2, double>(kernels::Identity{}, -1e5, 1e5);
      {
        auto a = twin<f16>(s, rng, -2, 2);
        auto b = twin<float>(s, rng, -2, 2);
        auto y = twin_zero<bf16>(s);
        kernels::map(host(), kernels::Add{}, view_of(y.h, vf), view_of(a.h, vf), view_of(b.h, vf));
        kcuda::map(dev(), kernels::Add{}, view_of(y.d, vf), view_of(a.d, vf), view_of(b.d, vf));
        require_same_bits(y, "add");
        auto yf = twin_zero<float>(s);
        kernels::map(host(), kernels::Axpby{0.3, -1.1}, view_of(yf.h, vf), view_of(b.h, vf), view_of(b.h, vf));
        kcuda::map(dev(), kernels::Axpby{0.3, -1.1}, view_of(yf.d, vf), view_of(b.d, vf), view_of(b.d, vf));
        require_same_bits(yf, "axpby");
      }
      {
        auto a = twin<bf16>(s, rng, -2, 2);
        auto b = twin<float>(s, rng, -2, 2);
        auto c = twin<f16>(s, rng, -2, 2);
        auto y = twin_zero<float>(s);
        kernels::map(host(), kernels::MulAdd{}, view_of(y.h, vf), view_of(a.h, vf), view_of(b.h, vf), view_of(c.h, vf));
        kcuda::map(dev(), kernels::MulAdd{}, view_of(y.d, vf), view_of(a.d, vf), view_of(b.d, vf), view_of(c.d, vf));
        require_same_bits(y, "muladd");
        auto p = twin<double>(s, rng, -2, 2);
        auto q = twin<double>(s, rng, 0.5, 2);
        auto yd = twin_zero<double>(s);
        kernels::map(host(), kernels::Div{}, view_of(yd.h, vf), view_of(p.h, vf), view_of(q.h, vf));
        kcuda::map(dev(), kernels::Div{}, view_of(yd.d, vf), view_of(p.d, vf), view_of(q.d, vf));
        require_same_bits(yd, "div f64");
      }
    }
  }
}

TEST_CASE("CUDA map with a dense output and a transposed input equals host", "[cuda][kernels][map]") {
  std::mt19937_64 rng(ktest::fresh_seed());
  for (const Shape& s : shapes_2d()) {
    INFO("shape " << s);
    auto x = twin<float>({s[1], s[0]}, rng, -2, 2);
    auto y = twin_zero<float>(s);
    kernels::map(host(), kernels::ScaleBy{3.0}, y.h, x.h.transposed());
    kcuda::map(dev(), kernels::ScaleBy{3.0}, y.d, x.d.transposed());
    require_same_bits(y, "dense <- transposed");
  }
}

TEST_CASE("CUDA map on 2^26 + 5 elements equals host", "[cuda][kernels][map][big]") {
  std::mt19937_64 rng(ktest::fresh_seed());
  const Shape s{(std::int64_t{1} << 26) + 5};
  auto x = twin<bf16>(s, rng, -4, 4);
  auto y = twin_zero<bf16>(s);
  kernels::map(host(), kernels::ScaleBy{0.1}, y.h, x.h);
  kcuda::map(dev(), kernels::ScaleBy{0.1}, y.d, x.d);
  require_same_bits(y, "bf16 scale");
  auto xf = twin<float>(s, rng, -4, 4);
  host().set_rng_offset(1 << 20);
  dev().set_rng_offset(1 << 20);
  kernels::convert(host(), xf.h, y.h, Rounding::stochastic);
  kcuda::convert(dev(), xf.d, y.d, Rounding::stochastic);
  require_same_bits(y, "f32 -> bf16 stochastic");
}

TEST_CASE("CUDA fill equals host fill", "[cuda][kernels][fill]") {
  for (const Shape& s : shapes_2d()) {
    for (const auto& [name, vf] : views_2d()) {
      INFO("shape " << s << " view " << name);
      auto run = [&]<class T>(double value) {
        auto y = twin_zero<T>(s);
        kernels::fill(host(), view_of(y.h, vf), value);
        kcuda::fill(dev(), view_of(y.d, vf), value);
        require_same_bits(y, ktest::type_name<T>());
      };
      run.template operator()<bf16>(0.1);
      run.template operator()<e4m3>(-300.0);
      run.template operator()<std::int32_t>(-7.9);
      run.template operator()<double>(1.0 / 3.0);
    }
  }
}

namespace {
/// in -> out on host and device with the same rounding mode and Philox offset; bits must match.
/// Inputs span the destination's whole range log-uniformly (subnormals to overflow) plus inf/NaN.
template <class From, class To>
void check_convert_bits(const Shape& s, const ViewFn& vf, std::mt19937_64& rng) {
  auto x = twin_zero<From>(s);
  const double max_to = kernels::FloatElement<To> ? numeric_traits<std::conditional_t<kernels::FloatElement<To>, To, float>>::max_value
                                                  : 4e9;
  std::uniform_real_distribution<double> lm(std::log(1e-9), std::log(4 * max_to));
  std::bernoulli_distribution neg(0.5);
  for (std::int64_t i = 0; i < x.h.numel(); ++i) {
    const double m = std::exp(lm(rng)) * (neg(rng) ? -1 : 1);
    if constexpr (std::is_integral_v<From>) {
      elem(x.h, i) = static_cast<From>(std::clamp(m, -2e9, 2e9));
    } else {
      elem(x.h, i) = convert<From>(i % 97 == 5 ? INFINITY : i % 89 == 7 ? NAN : m);
    }
  }
  x.d = to_device(dev(), x.h, Device::cuda(0));
  for (Rounding mode : kAllRoundings) {
    INFO(ktest::type_name<From>() << " -> " << ktest::type_name<To>() << " " << rounding_name(mode));
    auto y = twin_zero<To>(s);
    host().set_rng_offset(12345);
    dev().set_rng_offset(12345);
    kernels::convert(host(), view_of(x.h, vf), view_of(y.h, vf), mode);
    kcuda::convert(dev(), view_of(x.d, vf), view_of(y.d, vf), mode);
    CHECK(host().rng_offset() == dev().rng_offset());
    require_same_bits(y, "convert");
  }
}
}  // namespace

TEST_CASE("CUDA convert equals host convert in every rounding mode", "[cuda][kernels][convert]") {
  const std::uint64_t seed = ktest::fresh_seed();
  std::mt19937_64 rng(seed);
  INFO("seed " << seed);
  for (const Shape& s : {Shape{3, 7}, Shape{257, 1031}, Shape{2, (1 << 20) + 3}}) {
    for (const auto& [name, vf] : views_2d()) {
      INFO("shape " << s << " view " << name);
      check_convert_bits<float, bf16>(s, vf, rng);
      check_convert_bits<float, f16>(s, vf, rng);
      check_convert_bits<float, e4m3>(s, vf, rng);
      check_convert_bits<float, e5m2>(s, vf, rng);
      check_convert_bits<double, bf16>(s, vf, rng);
      check_convert_bits<bf16, e4m3>(s, vf, rng);
      check_convert_bits<float, std::int32_t>(s, vf, rng);
      check_convert_bits<std::int32_t, bf16>(s, vf, rng);
    }
  }
}

TEST_CASE("CUDA uniform equals host uniform; normal within a few ulps", "[cuda][kernels][random]") {
  for (const Shape& s : {Shape{1, 1}, Shape{3, 7}, Shape{1025, 1031}, Shape{2, (1 << 22) + 3}}) {
    for (const auto& [name, vf] : views_2d()) {
      INFO("shape " << s << " view " << name);
      auto uni = [&]<class T>(double lo, double hi) {
        auto y = twin_zero<T>(s);
        host().set_rng_offset(777);
        dev().set_rng_offset(777);
        kernels::uniform(host(), view_of(y.h, vf), lo, hi);
        kcuda::uniform(dev(), view_of(y.d, vf), lo, hi);
        require_same_bits(y, ktest::type_name<T>());
      };
      uni.template operator()<float>(-1, 3);
      uni.template operator()<double>(-1, 3);
      uni.template operator()<bf16>(0, 1);
      uni.template operator()<e4m3>(-100, 100);
      auto nor = [&]<class T>(double mean, double sd) {
        auto y = twin_zero<T>(s);
        host().set_rng_offset(99);
        dev().set_rng_offset(99);
        kernels::normal(host(), view_of(y.h, vf), mean, sd);
        kcuda::normal(dev(), view_of(y.d, vf), mean, sd);
        const auto back = to_vector(dev(), y.d);
        // Box-Muller with the platforms' log/sqrt/cos/sin: each within 2 ulps (CUDA's documented
        // bounds; glibc's are tighter), so z = r cos t differs by at most ~8 ulps of the compute
        // type relative to r <= sqrt(-2 ln 2^-24) < 6 (float) or < 9 (double); the final rounding to
        // T may then fall on either side: one ulp of T.
        using A = std::conditional_t<std::is_same_v<T, double>, double, float>;
        const double u_a = ktest::unit_roundoff<A>(), u_t = ktest::unit_roundoff<T>();
        for (std::int64_t i = 0; i < y.h.numel(); ++i) {
          const double h = ktest::to_double(y.h.data()[i]), d = ktest::to_double(back[i]);
          const double tol = 16 * u_a * 9 * sd + 2 * u_t * std::fabs(h) + ktest::subnormal_floor<T>();
          if (!(std::fabs(h - d) <= tol)) {  // assert only on failure: millions of elements
            INFO(ktest::type_name<T>() << " storage element " << i << " host " << h << " device " << d);
            REQUIRE(std::fabs(h - d) <= tol);
          }
        }
      };
      nor.template operator()<float>(0, 1);
      nor.template operator()<double>(1, 2);
      nor.template operator()<bf16>(0, 0.02);
    }
  }
}

TEST_CASE("contiguous and copy of strided views across host and device", "[cuda][kernels][copy]") {
  std::mt19937_64 rng(ktest::fresh_seed());
  auto x = twin<bf16>({6, 5, 40}, rng, -3, 3);
  auto vh = x.h.transposed(0, 2).slice(0, 3, 31);  // (31, 5, 6)
  auto vd = x.d.transposed(0, 2).slice(0, 3, 31);
  auto ch = kernels::contiguous(host(), vh);
  auto cd = kcuda::contiguous(dev(), vd);
  REQUIRE(cd.is_contiguous());
  REQUIRE(cd.device() == Device::cuda(0));
  const auto back = to_vector(dev(), cd);
  CHECK(ktest::first_bitwise_difference(back.data(), ch.data(), ch.numel()) < 0);
  // Device strided view -> host strided view, and host strided view -> device strided view.
  auto hb = Tensor<bf16>::empty(host(), {5, 6, 40});
  kernels::fill(host(), hb, 0.0);
  auto hdst = hb.transposed(0, 2).slice(0, 2, 31);  // (31, 6, 5) -> permute to (31, 5, 6)
  auto hdst_v = hdst.transposed(1, 2);
  kcuda::copy(dev(), vd, hdst_v);
  CHECK(ktest::bitwise_equal(hdst_v, vh));
  auto db = twin_zero<bf16>({5, 6, 40});
  auto ddst_v = db.d.transposed(0, 2).slice(0, 2, 31).transposed(1, 2);
  kcuda::copy(dev(), vh, ddst_v);
  kernels::copy(host(), vh, db.h.transposed(0, 2).slice(0, 2, 31).transposed(1, 2));
  require_same_bits(db, "host view -> device view");
}

// ---- reductions ----

namespace {

/// CUB's DeviceReduce: each thread reduces its items in sequence, then warps, blocks and a second
/// pass combine by trees. We assume at least 1024 threads take part for large inputs (CUB launches
/// one or more blocks of >= 256 threads per SM; an H100 has 132 SMs), so a path crosses at most
/// L = ceil(n / 1024) + 64 roundings. Rows: a warp (W = 32) per row up to 1024 columns, else a block
/// (W = 256): L = ceil(cols / W) + log2(W) + 1. Welford's per-element update rounds ~5 times.
double device_depth_full(std::int64_t n) { return double((n + 1023) / 1024 + 64); }
double device_depth_rows(std::int64_t cols) {
  return cols <= 1024 ? double((cols + 31) / 32 + 6) : double((cols + 255) / 256 + 9);
}

template <class T, class O>
void check_full_device(std::int64_t n, double lo, double hi, std::mt19937_64& rng) {
  using Acc = kernels::default_accum_t<T>;
  auto x = twin<T>({n}, rng, lo, hi);
  const auto v = ktest::values(x.h);
  const auto r = ktest::ref_stats(v, 0, v.size());
  const double u = ktest::unit_roundoff<Acc>(), uo = ktest::unit_roundoff<O>(), fl = ktest::subnormal_floor<O>();
  const double L = device_depth_full(n);
  auto out = Tensor<O>::empty(dev(), {2});
  INFO(ktest::type_name<T>() << " n " << n);
  kcuda::sum(dev(), x.d, out.slice(0, 0, 1));
  const O s1 = kernels::item(dev(), out.slice(0, 0, 1));
  CHECK(std::fabs(ktest::to_double(s1) - double(r.sum)) <= ktest::gamma(L, u) * double(r.sum_abs) + uo * std::fabs(double(r.sum)) + fl);
  kcuda::sum(dev(), x.d, out.slice(0, 0, 1));  // run to run: same bits
  const O s2 = kernels::item(dev(), out.slice(0, 0, 1));
  CHECK(std::memcmp(&s1, &s2, sizeof(O)) == 0);
  // max and amax are exact: equal to the host's.
  auto hout = Tensor<O>::empty(host(), {1});
  kcuda::max(dev(), x.d, out.slice(0, 0, 1));
  kernels::max(host(), x.h, hout);
  CHECK(ktest::to_double(kernels::item(dev(), out.slice(0, 0, 1))) == ktest::to_double(hout.at({0})));
  kcuda::amax(dev(), x.d, out.slice(0, 0, 1));
  kernels::amax(host(), x.h, hout);
  CHECK(ktest::to_double(kernels::item(dev(), out.slice(0, 0, 1))) == ktest::to_double(hout.at({0})));
  kcuda::mean_var(dev(), x.d, out);
  const auto mv = to_vector(dev(), out);
  CHECK(std::fabs(ktest::to_double(mv[0]) - double(r.mean)) <=
        ktest::gamma(5 * L, u) * double(r.sum_abs) / double(n) + uo * std::fabs(double(r.mean)) + fl);
  CHECK(std::fabs(ktest::to_double(mv[1]) - double(r.var)) <= 4 * ktest::gamma(5 * L + 4, u) * double(r.mean_sq) + uo * double(r.var) + fl);
}

template <class T, class O>
void check_rows_device(const Shape& s, double lo, double hi, std::mt19937_64& rng) {
  using Acc = kernels::default_accum_t<T>;
  auto x = twin<T>(s, rng, lo, hi);
  const std::int64_t cols = s[s.rank() - 1], rows = x.h.numel() / cols;
  const Shape lead(s.span().first(static_cast<std::size_t>(s.rank() - 1)));
  auto sum = Tensor<O>::empty(dev(), lead), mx = Tensor<O>::empty(dev(), lead), am = Tensor<O>::empty(dev(), lead);
  auto mean = Tensor<O>::empty(dev(), lead), var = Tensor<O>::empty(dev(), lead);
  // Transposed input (a strided row walk) for rank 2, dense otherwise.
  kcuda::sum_rows(dev(), x.d, sum);
  kcuda::max_rows(dev(), x.d, mx);
  kcuda::amax_rows(dev(), x.d, am);
  kcuda::mean_var_rows(dev(), x.d, mean, var);
  const auto vs = to_vector(dev(), sum), vm = to_vector(dev(), mx), va = to_vector(dev(), am);
  const auto vmean = to_vector(dev(), mean), vvar = to_vector(dev(), var);
  const auto v = ktest::values(x.h);
  const double u = ktest::unit_roundoff<Acc>(), uo = ktest::unit_roundoff<O>(), fl = ktest::subnormal_floor<O>();
  const double L = device_depth_rows(cols);
  INFO(ktest::type_name<T>() << " shape " << s);
  for (std::int64_t row = 0; row < rows; ++row) {
    const auto r = ktest::ref_stats(v, static_cast<std::size_t>(row * cols), static_cast<std::size_t>(cols));
    INFO("row " << row);
    REQUIRE(std::fabs(ktest::to_double(vs[row]) - double(r.sum)) <= ktest::gamma(L, u) * double(r.sum_abs) + uo * std::fabs(double(r.sum)) + fl);
    REQUIRE(ktest::to_double(vm[row]) == ktest::to_double(kernels::detail::cast<O>(double(r.max))));
    REQUIRE(ktest::to_double(va[row]) == ktest::to_double(kernels::detail::cast<O>(double(r.amax))));
    REQUIRE(std::fabs(ktest::to_double(vmean[row]) - double(r.mean)) <=
            ktest::gamma(5 * L, u) * double(r.sum_abs) / double(cols) + uo * std::fabs(double(r.mean)) + fl);
    REQUIRE(std::fabs(ktest::to_double(vvar[row]) - double(r.var)) <= 4 * ktest::gamma(5 * L + 4, u) * double(r.mean_sq) + uo * double(r.var) + fl);
  }
}

}  // namespace

TEST_CASE("CUDA whole-tensor reductions within the derived tolerances", "[cuda][kernels][reduce]") {
  const std::uint64_t seed = ktest::fresh_seed();
  std::mt19937_64 rng(seed);
  INFO("seed " << seed);
  for (std::int64_t n : {std::int64_t{1}, std::int64_t{7}, std::int64_t{1000}, std::int64_t{(1 << 20) + 3}}) {
    check_full_device<float, float>(n, -1, 2, rng);
    check_full_device<bf16, float>(n, -1, 2, rng);
    check_full_device<e4m3, float>(n, -16, 32, rng);
    check_full_device<double, double>(n, -1, 2, rng);
  }
  check_full_device<float, float>((std::int64_t{1} << 26) + 5, -1, 2, rng);
  check_full_device<bf16, float>((std::int64_t{1} << 26) + 5, -1, 2, rng);
}

TEST_CASE("CUDA sums of small integers are exact at 2^26 + 5 elements", "[cuda][kernels][reduce][big]") {
  // Integers in [-8, 8] are exact in bf16 and f32 and every partial sum stays far below 2^24 (a
  // random walk of 2^26 steps reaches ~4e4), so any summation order gives the exact total: a
  // dropped or doubled element would show.
  std::mt19937_64 rng(ktest::fresh_seed());
  const std::int64_t n = (std::int64_t{1} << 26) + 5;
  auto x = twin<float>({n}, rng, 0, 1);
  std::uniform_int_distribution<int> d(-8, 8);
  long long exact = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const int k = d(rng);
    x.h.data()[i] = static_cast<float>(k);
    exact += k;
  }
  x.d = to_device(dev(), x.h, Device::cuda(0));
  auto out = Tensor<float>::empty(dev(), {1});
  kcuda::sum(dev(), x.d, out);
  CHECK(kernels::item(dev(), out) == static_cast<float>(exact));
  auto xb = Tensor<bf16>::empty(dev(), {n});
  kcuda::convert(dev(), x.d, xb, Rounding::nearest_even);
  kcuda::sum(dev(), xb, out);
  CHECK(kernels::item(dev(), out) == static_cast<float>(exact));
  auto out64 = Tensor<double>::empty(dev(), {1});
  kcuda::sum_f64acc(dev(), x.d, out64);
  CHECK(kernels::item(dev(), out64) == static_cast<double>(exact));
  // The same total through row sums of the first 2^26 elements, and through a transposed (strided)
  // view, which the whole-tensor path makes dense in workspace memory first.
  auto rows = Tensor<float>::empty(dev(), {(n - 5) / 1024});
  kcuda::sum_rows(dev(), x.d.slice(0, 0, n - 5).reshape({(n - 5) / 1024, 1024}), rows);
  auto total = Tensor<float>::empty(dev(), {1});
  kcuda::sum(dev(), rows, total);
  long long exact_head = exact;
  for (std::int64_t i = n - 5; i < n; ++i) exact_head -= static_cast<long long>(x.h.data()[i]);
  CHECK(kernels::item(dev(), total) == static_cast<float>(exact_head));
  kcuda::sum(dev(), x.d.slice(0, 0, n - 5).reshape({1024, (n - 5) / 1024}).transposed(), total);
  CHECK(kernels::item(dev(), total) == static_cast<float>(exact_head));
}

TEST_CASE("CUDA row reductions within the derived tolerances", "[cuda][kernels][reduce]") {
  const std::uint64_t seed = ktest::fresh_seed();
  std::mt19937_64 rng(seed);
  INFO("seed " << seed);
  for (const Shape& s : {Shape{5}, Shape{9, 33}, Shape{3, 7, 100}, Shape{4, 1024}, Shape{3, 1025}, Shape{2, 300000},
                         Shape{20000, 64}}) {
    check_rows_device<float, float>(s, -1, 2, rng);
    check_rows_device<bf16, float>(s, -1, 2, rng);
    check_rows_device<e4m3, float>(s, -8, 8, rng);
    check_rows_device<double, double>(s, -1, 2, rng);
  }
}

TEST_CASE("CUDA reductions: NaN propagates; empty inputs", "[cuda][kernels][reduce]") {
  std::mt19937_64 rng(ktest::fresh_seed());
  auto x = twin<bf16>({100000}, rng, -1, 1);
  x.h.data()[77777] = bf16::from_bits(0x7FC1);
  x.d = to_device(dev(), x.h, Device::cuda(0));
  auto out = Tensor<float>::empty(dev(), {1});
  kcuda::amax(dev(), x.d, out);
  CHECK(std::isnan(kernels::item(dev(), out)));
  kcuda::max(dev(), x.d, out);
  CHECK(std::isnan(kernels::item(dev(), out)));
  auto rows = Tensor<float>::empty(dev(), {100});
  kcuda::amax_rows(dev(), x.d.reshape({100, 1000}), rows);
  const auto r = to_vector(dev(), rows);
  for (int i = 0; i < 100; ++i) CHECK(std::isnan(r[i]) == (i == 77));
  auto empty = Tensor<float>::empty(dev(), {0});
  kcuda::sum(dev(), empty, out);
  CHECK(kernels::item(dev(), out) == 0.0f);
  kcuda::max(dev(), empty, out);
  CHECK(kernels::item(dev(), out) == -INFINITY);
  auto mv = Tensor<float>::empty(dev(), {2});
  kcuda::mean_var(dev(), empty, mv);
  CHECK(std::isnan(to_vector(dev(), mv)[1]));
}

TEST_CASE("a host-compiled unit refuses CUDA tensors with BackendError; devices are checked", "[cuda][kernels][errors]") {
  auto t = Tensor<float>::empty(dev(), {3, 5});
  try {
    kernels::fill(dev(), t, 1.0);
    FAIL("expected BackendError");
  } catch (const BackendError& e) {
    CHECK_THAT(e.what(), Catch::Contains("fill") && Catch::Contains(".cu translation unit") && Catch::Contains("cuda:0"));
  }
  CHECK_THROWS_AS(kernels::map(dev(), kernels::Identity{}, t, t), BackendError);
  auto out = Tensor<float>::empty(dev(), {1});
  CHECK_THROWS_AS(kernels::sum(dev(), t, out), BackendError);
  // A host tensor handed to a CUDA context, and a CUDA tensor to a host context.
  auto h = Tensor<float>::empty(host(), {3, 5});
  CHECK_THROWS_AS(kcuda::map(dev(), kernels::ScaleBy{1.0}, t, h), DeviceError);
  CHECK_THROWS_AS(kernels::map(host(), kernels::ScaleBy{1.0}, h, t), DeviceError);
  CHECK_THROWS_AS(kcuda::sum(dev(), h, out), DeviceError);
}
