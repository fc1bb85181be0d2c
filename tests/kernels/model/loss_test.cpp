// Losses on the host: cross-entropy (per-row losses, lse, mean; the logits' gradient) and MSE
// against long-double references with derived tolerances (f64, f32, bf16, f16, mixed), the f64
// gradients against central differences, out-of-range targets, runtime-typed targets, in-place
// gradients and the typed errors.
#include "model_reference.hpp"

#include "mixtape/kernels/loss.hpp"

using namespace mixtape;
namespace k = mixtape::kernels;

namespace {

ExecutionContext& host() {
  static ExecutionContext ctx = ExecutionContext::host();
  return ctx;
}

const std::vector<Shape>& ce_shapes() {
  static const std::vector<Shape> s = {{1, 1}, {1, 5}, {7, 33}, {2, 3, 100}, {65, 257}, {3, 50304}};
  return s;
}

template <class I>
Tensor<I> random_targets(const Shape& s, std::int64_t vocab, std::mt19937_64& rng) {
  auto t = Tensor<I>::empty(host(), s);
  std::uniform_int_distribution<std::int64_t> d(0, vocab - 1);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = static_cast<I>(d(rng));
  return t;
}

template <class I>
std::vector<std::int64_t> as_int64(const Tensor<I>& t) {
  return std::vector<std::int64_t>(t.data(), t.data() + t.numel());
}

template <class T>
using loss_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <class T, class I>
void check_ce_forward(std::mt19937_64& rng) {
  using A = k::compute_t<T>;
  using L = loss_t<T>;
  for (const Shape& s : ce_shapes()) {
    INFO("shape " << s << " " << ktest::type_name<T>());
    const std::int64_t vocab = s[s.rank() - 1], rows = s.numel() / vocab;
    const Shape lead(s.span().first(static_cast<std::size_t>(s.rank() - 1)));
    auto z = mref::random_tensor<T>(host(), s, rng, -8, 8);
    auto t = random_targets<I>(lead, vocab, rng);
    auto losses = Tensor<L>::empty(host(), lead), lse = Tensor<L>::empty(host(), lead);
    auto mean = Tensor<L>::empty(host(), {1});
    k::cross_entropy_forward(host(), z, t, losses, lse, mean);
    const auto r = mref::cross_entropy_reference<L>(ktest::values(z), as_int64(t), rows, vocab, ktest::unit_roundoff<A>());
    mref::require_close("losses", ktest::values(losses), r.loss, mref::with_output_rounding<L>(r.loss, r.loss_err));
    mref::require_close("lse", ktest::values(lse), r.lse, mref::with_output_rounding<L>(r.lse, r.lse_err));
    mref::require_close("mean", ktest::values(mean), {r.mean}, mref::with_output_rounding<L>({r.mean}, {r.mean_err}));
  }
}

template <class T, class G>
void check_ce_backward(std::mt19937_64& rng) {
  using A = k::compute_t<T>;
  using L = loss_t<T>;
  const double u_a = ktest::unit_roundoff<A>();
  for (const Shape& s : ce_shapes()) {
    for (bool accumulate : {false, true}) {
      INFO("shape " << s << " accumulate " << accumulate);
      const std::int64_t vocab = s[s.rank() - 1], rows = s.numel() / vocab;
      const Shape lead(s.span().first(static_cast<std::size_t>(s.rank() - 1)));
      auto z = mref::random_tensor<T>(host(), s, rng, -8, 8);
      auto t = random_targets<std::int32_t>(lead, vocab, rng);
      const auto fwd = mref::cross_entropy_reference<L>(ktest::values(z), as_int64(t), rows, vocab, u_a);
      auto lse = Tensor<L>::empty(host(), lead);
      for (std::int64_t i = 0; i < rows; ++i) lse.data()[i] = static_cast<L>(fwd.lse[i]);
      std::vector<L> dloss_v = {static_cast<L>(1.7)};
      auto dloss = Tensor<L>::wrap(dloss_v.data(), {1});
      auto dz = mref::random_tensor<G>(host(), s, rng, -1e-3, 1e-3);
      const auto old = ktest::values(dz);
      k::cross_entropy_backward(host(), z, t, lse, dloss, dz, accumulate);
      std::vector<double> ref, err;
      mref::cross_entropy_grad_reference(ktest::values(z), as_int64(t), ktest::values(lse), double(dloss_v[0]), rows, vocab,
                                         u_a, ref, err);
      if (accumulate) {
        for (std::size_t i = 0; i < ref.size(); ++i) {
          ref[i] += old[i];
          err[i] += u_a * std::fabs(ref[i]);
        }
      }
      mref::require_close("dlogits", ktest::values(dz), ref, mref::with_output_rounding<G>(ref, err));
    }
  }
}

template <class X, class Y, class L>
void check_mse(std::mt19937_64& rng) {
  using A = k::compute_t<X, Y>;
  const double u_a = ktest::unit_roundoff<A>();
  for (const Shape& s : {Shape{1}, Shape{7}, Shape{3, 333}, Shape{5, 4100}}) {
    INFO("shape " << s << " " << ktest::type_name<X>() << "/" << ktest::type_name<Y>());
    const std::int64_t n = s.numel();
    auto x = mref::random_tensor<X>(host(), s, rng, -2, 2);
    auto y = mref::random_tensor<Y>(host(), s, rng, -2, 2);
    auto loss = Tensor<L>::empty(host(), {1});
    k::mse_forward(host(), x, y, loss);
    const auto xv = ktest::values(x), yv = ktest::values(y);
    long double sum = 0;
    for (std::int64_t i = 0; i < n; ++i) sum += (static_cast<long double>(xv[i]) - yv[i]) * (static_cast<long double>(xv[i]) - yv[i]);
    const double want = double(sum / n);
    // d = x - y and d^2 round once each (3 u_a relative per term), the sum gamma_n(u_a) (blocks in A,
    // added in double).
    mref::require_close("mse", ktest::values(loss), {want},
                        mref::with_output_rounding<L>({want}, {(3 * u_a + mref::gam(double(n), u_a)) * want}));
    for (bool accumulate : {false, true}) {
      std::vector<L> dloss_v = {static_cast<L>(0.75)};
      auto dloss = Tensor<L>::wrap(dloss_v.data(), {1});
      auto dx = mref::random_tensor<X>(host(), s, rng, -1, 1);
      const auto old = ktest::values(dx);
      k::mse_backward(host(), x, y, dloss, dx, accumulate);
      std::vector<double> ref(n), err(n);
      for (std::int64_t i = 0; i < n; ++i) {
        const long double g = 2.0L * (static_cast<long double>(xv[i]) - yv[i]) * dloss_v[0] / n;
        ref[i] = double(accumulate ? old[i] + g : g);
        // x - y, the division by n (and n's conversion to A), the product: 4 u_a |g|; accumulate: the
        // fma's rounding of the sum.
        err[i] = 4 * u_a * double(std::fabs(g)) + (accumulate ? u_a * std::fabs(ref[i]) : 0.0);
      }
      mref::require_close("mse_backward", ktest::values(dx), ref, mref::with_output_rounding<X>(ref, err));
    }
  }
}

}  // namespace

TEMPLATE_TEST_CASE("cross_entropy_forward matches the long-double reference", "[kernels][loss]", double, float, bf16, f16) {
  const std::uint64_t seed = ktest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  check_ce_forward<TestType, std::int32_t>(rng);
  check_ce_forward<TestType, std::int64_t>(rng);
}

TEMPLATE_TEST_CASE("cross_entropy_backward matches the long-double reference", "[kernels][loss]", double, float, bf16, f16) {
  const std::uint64_t seed = ktest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  check_ce_backward<TestType, TestType>(rng);
}

TEST_CASE("cross_entropy_backward with an f32 gradient of bf16 logits", "[kernels][loss]") {
  const std::uint64_t seed = ktest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  check_ce_backward<bf16, float>(rng);
}

TEST_CASE("cross_entropy in f64: the gradient matches central differences of the mean loss", "[kernels][loss][gradcheck]") {
  const std::uint64_t seed = ktest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  const std::int64_t rows = 5, vocab = 11;
  auto z = mref::random_tensor<double>(host(), {rows, vocab}, rng, -4, 4);
  auto t = random_targets<std::int64_t>({rows}, vocab, rng);
  auto losses = Tensor<double>::empty(host(), {rows}), lse = Tensor<double>::empty(host(), {rows});
  auto mean = Tensor<double>::empty(host(), {1});
  k::cross_entropy_forward(host(), z, t, losses, lse, mean);
  std::vector<double> one = {1.0};
  auto dz = Tensor<double>::empty(host(), {rows, vocab});
  k::cross_entropy_backward(host(), z, t, lse, Tensor<double>::wrap(one.data(), {1}), dz, false);
  auto objective = [&] {
    k::cross_entropy_forward(host(), z, t, losses, lse, mean);
    return static_cast<mref::LD>(mean.data()[0]);
  };
  const auto r = mref::cross_entropy_reference<double>(ktest::values(z), as_int64(t), rows, vocab, ktest::unit_roundoff<double>());
  for (std::int64_t j = 0; j < rows * vocab; ++j)
    mref::require_gradient_matches("d/dz " + std::to_string(j), z.data()[j], dz.data()[j], objective, r.mean_err);
}

TEMPLATE_TEST_CASE("mse forward and backward match the long-double reference", "[kernels][loss]", double, float, bf16, f16) {
  const std::uint64_t seed = ktest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  check_mse<TestType, TestType, std::conditional_t<std::is_same_v<TestType, double>, double, float>>(rng);
}

TEST_CASE("mse with a bf16 output against an f32 target", "[kernels][loss]") {
  const std::uint64_t seed = ktest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  check_mse<bf16, float, float>(rng);
}

TEST_CASE("mse in f64: the gradient matches central differences of the loss", "[kernels][loss][gradcheck]") {
  const std::uint64_t seed = ktest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  auto x = mref::random_tensor<double>(host(), {3, 7}, rng, -2, 2);
  auto y = mref::random_tensor<double>(host(), {3, 7}, rng, -2, 2);
  auto loss = Tensor<double>::empty(host(), {1});
  std::vector<double> one = {1.0};
  auto dx = Tensor<double>::empty(host(), {3, 7});
  k::mse_backward(host(), x, y, Tensor<double>::wrap(one.data(), {1}), dx, false);
  auto objective = [&] {
    k::mse_forward(host(), x, y, loss);
    return static_cast<mref::LD>(loss.data()[0]);
  };
  const double u = ktest::unit_roundoff<double>();
  for (std::int64_t j = 0; j < 21; ++j)
    mref::require_gradient_matches("d/dx " + std::to_string(j), x.data()[j], dx.data()[j], objective, (3 * u + mref::gam(21, u)) * 16);
}

TEST_CASE("mse_backward takes strided views", "[kernels][loss]") {
  std::mt19937_64 rng(ktest::fresh_seed());
  auto x = mref::random_tensor<float>(host(), {9, 5}, rng, -2, 2);
  auto y = mref::random_tensor<float>(host(), {5, 9}, rng, -2, 2);
  std::vector<float> d = {2.0f};
  auto dloss = Tensor<float>::wrap(d.data(), {1});
  auto a = Tensor<float>::empty(host(), {5, 9}), b = Tensor<float>::empty(host(), {5, 9});
  k::mse_backward(host(), x.transposed(), y, dloss, a, false);
  k::mse_backward(host(), k::contiguous(host(), x.transposed()), y, dloss, b, false);
  REQUIRE(ktest::bitwise_equal(a, b));
}

TEST_CASE("cross_entropy computes in place and takes runtime-typed targets", "[kernels][loss]") {
  std::mt19937_64 rng(ktest::fresh_seed());
  const std::int64_t rows = 6, vocab = 40;
  auto z = mref::random_tensor<bf16>(host(), {rows, vocab}, rng, -8, 8);
  auto t32 = random_targets<std::int32_t>({rows}, vocab, rng);
  auto t64 = Tensor<std::int64_t>::empty(host(), {rows});
  for (std::int64_t i = 0; i < rows; ++i) t64.data()[i] = t32.data()[i];
  auto losses = Tensor<float>::empty(host(), {rows}), lse = Tensor<float>::empty(host(), {rows});
  auto mean_a = Tensor<float>::empty(host(), {1}), mean_b = Tensor<float>::empty(host(), {1});
  k::cross_entropy_forward(host(), z, TensorRef(t32), losses, lse, mean_a);
  k::cross_entropy_forward(host(), z, TensorRef(t64), losses, lse, mean_b);
  REQUIRE(mean_a.data()[0] == mean_b.data()[0]);
  REQUIRE_THROWS_AS(k::cross_entropy_forward(host(), z, TensorRef(Tensor<float>::empty(host(), {rows})), losses, lse, mean_a),
                    DTypeError);
  std::vector<float> one = {1.0f};
  auto dloss = Tensor<float>::wrap(one.data(), {1});
  auto out = Tensor<bf16>::empty(host(), {rows, vocab});
  k::cross_entropy_backward(host(), z, t32, lse, dloss, out, false);
  k::cross_entropy_backward(host(), z, TensorRef(t64), lse, dloss, z, false);  // in place
  REQUIRE(ktest::bitwise_equal(out, z));
}

TEMPLATE_TEST_CASE("cross_entropy_rows_grad is cross_entropy_rows then the backward of the rows' sum, bit for bit",
                   "[kernels][loss]", double, float, bf16, f16) {
  using L = std::conditional_t<std::is_same_v<TestType, double>, double, float>;
  std::mt19937_64 rng(ktest::fresh_seed());
  for (const auto& [rows, vocab] : {std::pair<std::int64_t, std::int64_t>{1, 1}, {5, 37}, {9, 3000}}) {
    INFO(rows << " x " << vocab);
    auto z = mref::random_tensor<TestType>(host(), {rows, vocab}, rng, -8, 8);
    auto t = random_targets<std::int32_t>({rows}, vocab, rng);
    auto losses = Tensor<L>::empty(host(), {rows}), lse = Tensor<L>::empty(host(), {rows});
    auto grad = Tensor<TestType>::empty(host(), {rows, vocab});
    k::cross_entropy_rows_grad(host(), z, t, losses, lse, grad);
    // The two calls it replaces: the rows, then the backward with dloss = N (scale N / N = 1).
    auto losses_ref = Tensor<L>::empty(host(), {rows}), lse_ref = Tensor<L>::empty(host(), {rows});
    k::cross_entropy_rows(host(), z, t, losses_ref, lse_ref);
    std::vector<L> n = {static_cast<L>(rows)};
    auto grad_ref = Tensor<TestType>::empty(host(), {rows, vocab});
    k::cross_entropy_backward(host(), z, t, lse_ref, Tensor<L>::wrap(n.data(), {1}), grad_ref, false);
    REQUIRE(ktest::bitwise_equal(losses, losses_ref));
    REQUIRE(ktest::bitwise_equal(lse, lse_ref));
    REQUIRE(ktest::bitwise_equal(grad, grad_ref));
    // In place gives the same bits.
    k::cross_entropy_rows_grad(host(), z, t, losses, lse, z);
    REQUIRE(ktest::bitwise_equal(z, grad_ref));
  }
}

TEST_CASE("cross_entropy_rows_grad rejects bad operands with typed errors", "[kernels][loss][errors]") {
  auto z = Tensor<float>::empty(host(), {4, 7});
  std::fill(z.data(), z.data() + 28, 0.5f);
  auto losses = Tensor<float>::empty(host(), {4}), lse = Tensor<float>::empty(host(), {4});
  std::vector<std::int32_t> tv = {0, 6, 7, 3};
  auto t = Tensor<std::int32_t>::wrap(tv.data(), {4});
  try {
    k::cross_entropy_rows_grad(host(), z, t, losses, lse, z);
    FAIL("no exception");
  } catch (const ValueError& e) {
    REQUIRE_THAT(e.what(), Catch::Contains("target 7 at row 2"));
  }
  tv[2] = 1;
  REQUIRE_THROWS_AS(k::cross_entropy_rows_grad(host(), z, t, losses, lse, Tensor<float>::empty(host(), {4, 6})), ShapeError);
  REQUIRE_THROWS_AS(k::cross_entropy_rows_grad(host(), z, t, losses, Tensor<float>::empty(host(), {3}), z), ShapeError);
  // A gradient that overlaps the logits without being them would be read after it is written.
  auto big = Tensor<float>::empty(host(), {5, 7});
  std::fill(big.data(), big.data() + 35, 0.5f);
  REQUIRE_THROWS_AS(k::cross_entropy_rows_grad(host(), big.slice(0, 0, 4), t, losses, lse, big.slice(0, 1, 4)), ValueError);
}

TEST_CASE("cross_entropy rejects out-of-range targets naming the row and the value", "[kernels][loss][errors]") {
  auto z = Tensor<float>::empty(host(), {4, 7});
  std::fill(z.data(), z.data() + 28, 0.5f);
  auto losses = Tensor<float>::empty(host(), {4}), lse = Tensor<float>::empty(host(), {4}), mean = Tensor<float>::empty(host(), {1});
  for (std::int32_t bad : {7, -1, 1000}) {
    std::vector<std::int32_t> tv = {0, 6, bad, 3};
    auto t = Tensor<std::int32_t>::wrap(tv.data(), {4});
    try {
      k::cross_entropy_forward(host(), z, t, losses, lse, mean);
      FAIL("no exception");
    } catch (const ValueError& e) {
      REQUIRE_THAT(e.what(), Catch::Contains("target " + std::to_string(bad) + " at row 2") &&
                                 Catch::Contains("[0, 7)"));
    }
    std::vector<float> one = {1.0f};
    REQUIRE_THROWS_AS(k::cross_entropy_backward(host(), z, t, lse, Tensor<float>::wrap(one.data(), {1}), z, false), ValueError);
  }
}

TEST_CASE("losses reject bad operands with typed errors", "[kernels][loss][errors]") {
  auto z = Tensor<float>::empty(host(), {4, 7});
  auto t = Tensor<std::int32_t>::empty(host(), {4});
  std::fill(t.data(), t.data() + 4, 0);
  auto l4 = Tensor<float>::empty(host(), {4}), l5 = Tensor<float>::empty(host(), {5});
  auto m1 = Tensor<float>::empty(host(), {1}), m2 = Tensor<float>::empty(host(), {2});
  REQUIRE_THROWS_AS(k::cross_entropy_forward(host(), z, Tensor<std::int32_t>::empty(host(), {5}), l4, l4, m1), ShapeError);
  REQUIRE_THROWS_AS(k::cross_entropy_forward(host(), z, t, l5, l4, m1), ShapeError);
  try {
    k::cross_entropy_forward(host(), z, t, l4, l4, m2);
    FAIL("no exception");
  } catch (const ShapeError& e) {
    REQUIRE_THAT(e.what(), Catch::Contains("mean_loss with one element") && Catch::Contains("got shape (2)"));
  }
  REQUIRE_THROWS_AS(k::cross_entropy_forward(host(), Tensor<float>::empty(host(), {4, 0}), t, l4, l4, m1), ShapeError);
  REQUIRE_THROWS_AS(k::cross_entropy_backward(host(), z, t, l4, m2, z, false), ShapeError);
  REQUIRE_THROWS_AS(k::cross_entropy_backward(host(), z, t, l4, m1, z, true), ValueError);  // in place + accumulate
  REQUIRE_THROWS_AS(k::mse_forward(host(), z, Tensor<float>::empty(host(), {7, 4}), m1), ShapeError);
  REQUIRE_THROWS_AS(k::mse_forward(host(), z, z, m2), ShapeError);
  REQUIRE_THROWS_AS(k::mse_backward(host(), z, z, m2, z, false), ShapeError);
}
