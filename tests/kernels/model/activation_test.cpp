// GELU (tanh approximation) on the host: portable tanh / expm1 accuracy against long double, the
// forward and backward against long-double references with derived tolerances (f64, f32, bf16, f16
// and mixed types), the f64 backward against central differences, accumulation, strided views and
// the typed errors.
#include "model_reference.hpp"

#include "mixtape/kernels/activation.hpp"

using namespace mixtape;
namespace k = mixtape::kernels;

namespace {

ExecutionContext& host() {
  static ExecutionContext ctx = ExecutionContext::host();
  return ctx;
}

const std::vector<Shape>& shapes() {
  static const std::vector<Shape> s = {{1}, {7}, {3, 65}, {4, 8, 97}, {2, 4099}};
  return s;
}

template <class A>
void check_tanh_sweep(std::mt19937_64& rng) {
  const double u = ktest::unit_roundoff<A>();
  std::vector<A> xs = {A(0), A(1e-30), A(1e-8), A(0.1), A(0.3465), A(0.3466), A(0.5493), A(1), A(9), A(18), A(21.9), A(22), A(40)};
  std::uniform_real_distribution<double> exponent(-40, 5);
  for (int i = 0; i < 20000; ++i) xs.push_back(static_cast<A>(std::pow(2.0, exponent(rng))));
  std::uniform_real_distribution<double> lin(0, 25);
  for (int i = 0; i < 20000; ++i) xs.push_back(static_cast<A>(lin(rng)));
  for (A a : xs) {
    for (A x : {a, -a}) {
      const long double want = std::tanh(static_cast<long double>(x));
      const A got = k::detail::portable_tanh<A>(x);
      // 5 ulps = 10 u relative; plus the smallest subnormal where tanh(x) ~ x underflows.
      const double tol = 10 * u * std::fabs(double(want)) + std::numeric_limits<A>::denorm_min();
      INFO("x " << double(x) << " got " << double(got) << " want " << double(want));
      REQUIRE(std::fabs(double(got - want)) <= tol);
    }
  }
  for (A x : xs) {
    const A z = -x;
    if (z < A(-44)) continue;
    const long double want = std::expm1(static_cast<long double>(z));
    const A got = k::detail::expm1_nonpositive<A>(z);
    // 2 ulps = 4 u relative (the series and the final fma), + the subnormal floor.
    const double tol = 4 * u * std::fabs(double(want)) + std::numeric_limits<A>::denorm_min();
    INFO("z " << double(z) << " got " << double(got) << " want " << double(want));
    REQUIRE(std::fabs(double(got - want)) <= tol);
  }
}

template <class A>
void check_tanh_specials() {
  REQUIRE(!std::signbit(k::detail::portable_tanh<A>(A(0))));
  REQUIRE(std::signbit(k::detail::portable_tanh<A>(-A(0))));
  REQUIRE(k::detail::portable_tanh<A>(std::numeric_limits<A>::infinity()) == A(1));
  REQUIRE(k::detail::portable_tanh<A>(-std::numeric_limits<A>::infinity()) == A(-1));
  REQUIRE(std::isnan(k::detail::portable_tanh<A>(std::numeric_limits<A>::quiet_NaN())));
}

template <class In, class Out>
void check_forward(std::mt19937_64& rng) {
  using A = k::compute_t<In>;
  for (const Shape& s : shapes()) {
    INFO("shape " << s << " " << ktest::type_name<In>() << " -> " << ktest::type_name<Out>());
    auto x = mref::random_tensor<In>(host(), s, rng, -6, 6);
    auto y = Tensor<Out>::empty(host(), s);
    k::gelu_forward(host(), x, y);
    const auto xv = ktest::values(x);
    std::vector<double> ref(xv.size()), comp(xv.size());
    for (std::size_t i = 0; i < xv.size(); ++i) {
      ref[i] = double(mref::gelu(xv[i]));
      comp[i] = mref::gelu_forward_error(xv[i], ktest::unit_roundoff<A>());
    }
    mref::require_close("gelu_forward", ktest::values(y), ref, mref::with_output_rounding<Out>(ref, comp));
  }
}

template <class In, class G, class DX>
void check_backward(std::mt19937_64& rng) {
  using A = k::compute_t<In, G, DX>;
  const double u_a = ktest::unit_roundoff<A>();
  for (const Shape& s : shapes()) {
    for (bool accumulate : {false, true}) {
      INFO("shape " << s << " accumulate " << accumulate);
      auto x = mref::random_tensor<In>(host(), s, rng, -6, 6);
      auto dy = mref::random_tensor<G>(host(), s, rng, -2, 2);
      auto dx = mref::random_tensor<DX>(host(), s, rng, -1, 1);
      const auto old = ktest::values(dx);
      k::gelu_backward(host(), x, dy, dx, accumulate);
      const auto xv = ktest::values(x), dyv = ktest::values(dy);
      std::vector<double> ref(xv.size()), comp(xv.size());
      for (std::size_t i = 0; i < xv.size(); ++i) {
        const long double g = dyv[i] * mref::gelu_grad(xv[i]);
        ref[i] = double(accumulate ? old[i] + g : g);
        // accumulate: old + dy g is one fma, one more rounding of the sum.
        comp[i] = mref::gelu_backward_error(xv[i], dyv[i], u_a) + (accumulate ? u_a * std::fabs(ref[i]) : 0.0);
      }
      mref::require_close("gelu_backward", ktest::values(dx), ref, mref::with_output_rounding<DX>(ref, comp));
    }
  }
}

template <class X, class Y>
concept GeluCallable = requires(const ExecutionContext& ctx, const Tensor<X>& x, const Tensor<Y>& y) {
  k::gelu_forward(ctx, x, y);
};

}  // namespace

TEST_CASE("portable tanh and expm1 are within a few ulps of long double", "[kernels][gelu]") {
  const std::uint64_t seed = ktest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  check_tanh_sweep<float>(rng);
  check_tanh_sweep<double>(rng);
  check_tanh_specials<float>();
  check_tanh_specials<double>();
}

TEMPLATE_TEST_CASE("gelu_forward matches the long-double reference", "[kernels][gelu]", double, float, bf16, f16) {
  const std::uint64_t seed = ktest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  check_forward<TestType, TestType>(rng);
}

TEST_CASE("gelu_forward with mixed types", "[kernels][gelu]") {
  const std::uint64_t seed = ktest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  check_forward<bf16, float>(rng);
  check_forward<float, bf16>(rng);
  check_forward<f16, double>(rng);
}

TEMPLATE_TEST_CASE("gelu_backward matches the long-double reference", "[kernels][gelu]", double, float, bf16, f16) {
  const std::uint64_t seed = ktest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  check_backward<TestType, TestType, TestType>(rng);
}

TEST_CASE("gelu_backward with mixed types", "[kernels][gelu]") {
  const std::uint64_t seed = ktest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  check_backward<bf16, float, bf16>(rng);
  check_backward<bf16, bf16, float>(rng);
}

TEST_CASE("gelu_backward in f64 matches central differences of gelu_forward", "[kernels][gelu][gradcheck]") {
  const std::uint64_t seed = ktest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  const Shape s{5, 9};
  auto x = mref::random_tensor<double>(host(), s, rng, -5, 5);
  auto w = mref::random_tensor<double>(host(), s, rng, -1, 1);
  auto y = Tensor<double>::empty(host(), s);
  auto dx = Tensor<double>::empty(host(), s);
  k::gelu_backward(host(), x, w, dx, false);
  const auto wv = ktest::values(w);
  auto objective = [&] {
    k::gelu_forward(host(), x, y);
    return mref::dot(wv, ktest::values(y));
  };
  const auto xv = ktest::values(x);
  std::vector<double> err(xv.size());
  for (std::size_t i = 0; i < xv.size(); ++i) err[i] = mref::gelu_forward_error(xv[i], ktest::unit_roundoff<double>());
  const double rounding = mref::weighted(wv, err);
  for (std::int64_t j : mref::sample_indices(s.numel(), 45))
    mref::require_gradient_matches("d/dx " + std::to_string(j), x.data()[j], dx.data()[j], objective, rounding);
}

TEST_CASE("gelu on strided views equals gelu on dense copies", "[kernels][gelu]") {
  std::mt19937_64 rng(ktest::fresh_seed());
  auto x = mref::random_tensor<float>(host(), {33, 17}, rng, -4, 4);
  auto xt = x.transposed();
  auto dense = k::contiguous(host(), xt);
  auto y1 = Tensor<bf16>::empty(host(), xt.shape()), y2 = Tensor<bf16>::empty(host(), xt.shape());
  k::gelu_forward(host(), xt, y1);
  k::gelu_forward(host(), dense, y2);
  REQUIRE(ktest::bitwise_equal(y1, y2));
}

TEST_CASE("gelu rejects mismatched shapes", "[kernels][gelu][errors]") {
  auto x = Tensor<float>::empty(host(), {4, 8});
  auto y = Tensor<float>::empty(host(), {4, 9});
  REQUIRE_THROWS_AS(k::gelu_forward(host(), x, y), ShapeError);
  try {
    k::gelu_backward(host(), x, x, y, false);
    FAIL("no exception");
  } catch (const ShapeError& e) {
    REQUIRE_THAT(e.what(), Catch::Contains("expected (4, 9)") && Catch::Contains("got (4, 8)"));
  }
  // Integer element types are rejected at compile time.
  static_assert(!GeluCallable<std::int32_t, float>);
  static_assert(GeluCallable<bf16, float>);
}

namespace {
/// GELU forward, backward and accumulating backward of n random values (with the special values
/// first) against the functors called one by one.
template <class X, class G>
std::int64_t gelu_bits_differing(std::int64_t n) {
  auto ctx = ExecutionContext::host();
  std::mt19937_64 rng(ktest::fresh_seed());
  std::uniform_real_distribution<double> u(-12, 12);
  auto x = Tensor<X>::empty(ctx, {n});
  auto dy = Tensor<G>::empty(ctx, {n}), old = Tensor<G>::empty(ctx, {n});
  for (std::int64_t i = 0; i < n; ++i) {
    x.data()[i] = static_cast<X>(u(rng)), dy.data()[i] = static_cast<G>(u(rng)), old.data()[i] = static_cast<G>(u(rng));
  }
  const float specials[] = {0.0f, -0.0f, 1e-30f, -1e-30f, std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN(), 30.0f, -30.0f};
  for (std::size_t i = 0; i < std::size(specials); ++i) x.data()[i] = static_cast<X>(specials[i]);
  auto y = Tensor<G>::empty(ctx, {n}), dx = Tensor<G>::empty(ctx, {n}), acc = k::clone(ctx, old);
  k::gelu_forward(ctx, x, y);
  k::gelu_backward(ctx, x, dy, dx, false);
  k::gelu_backward(ctx, x, dy, acc, true);
  // Equal bits, or NaN both: IEEE leaves a NaN result's sign and payload open (x86 takes the first
  // NaN operand's, and a compiler may swap a product's operands), and GPUs return one canonical NaN.
  const auto same = [](G a, G b) {
    return std::memcmp(&a, &b, sizeof(G)) == 0 || (std::isnan(static_cast<double>(a)) && std::isnan(static_cast<double>(b)));
  };
  std::int64_t differ = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const G fy = k::detail::cast<G>(k::GeluTanh{}(x.data()[i]));
    const G fdx = k::detail::cast<G>(k::GeluTanhBackward{}(x.data()[i], dy.data()[i]));
    const G facc = k::detail::cast<G>(k::GeluTanhBackwardAccumulate{}(x.data()[i], dy.data()[i], old.data()[i]));
    differ += !same(fy, y.data()[i]) || !same(fdx, dx.data()[i]) || !same(facc, acc.data()[i]);
  }
  return differ;
}
}  // namespace

TEST_CASE("gelu on the host gives the functors' bits (AVX-512 lanes and FMA tiles included)", "[kernels][gelu]") {
  // The host may run GELU in AVX-512 lanes (f32 / bf16) or in a loop compiled for FMA (other types);
  // the functors called one by one use std::fma, a correctly rounded library call. A contraction,
  // reassociation or different rounding step anywhere in the fast paths shows as a changed bit.
  const std::int64_t n = (1 << 16) + 37;  // whole chunks, whole vectors and a tail
  CHECK(gelu_bits_differing<float, float>(n) == 0);
  CHECK(gelu_bits_differing<bf16, bf16>(n) == 0);
  CHECK(gelu_bits_differing<bf16, float>(n) == 0);
  CHECK(gelu_bits_differing<f16, f16>(n) == 0);
  CHECK(gelu_bits_differing<double, double>(n) == 0);
}
