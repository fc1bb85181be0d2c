// Softmax on the host: forward and backward against long-double references with derived
// tolerances (f64, f32, bf16, f16, mixed types; scale; causal mask), the f64 backward against
// central differences, -inf entries, accumulation and the typed errors.
#include "model_reference.hpp"

#include "mixtape/kernels/softmax.hpp"

using namespace mixtape;
namespace k = mixtape::kernels;

namespace {

ExecutionContext& host() {
  static ExecutionContext ctx = ExecutionContext::host();
  return ctx;
}

const std::vector<Shape>& shapes() {
  static const std::vector<Shape> s = {{1, 1}, {1, 5}, {3, 17}, {2, 3, 8, 8}, {4, 64, 64}, {2, 1030}};
  return s;
}

template <class In, class Out>
void check_forward(std::mt19937_64& rng) {
  using A = k::compute_t<In, Out>;
  for (const Shape& s : shapes()) {
    for (auto mask : {k::SoftmaxMask::none, k::SoftmaxMask::causal}) {
      for (double scale : {1.0, 0.125}) {
        const bool causal = mask == k::SoftmaxMask::causal;
        INFO("shape " << s << " causal " << causal << " scale " << scale);
        const std::int64_t cols = s[s.rank() - 1], rows = s.numel() / cols, tile = s[s.rank() - 2];
        auto x = mref::random_tensor<In>(host(), s, rng, -8, 8);
        auto y = Tensor<Out>::empty(host(), s);
        k::softmax_forward(host(), x, y, scale, mask);
        std::vector<double> ref, err;
        mref::softmax_reference(ktest::values(x), rows, cols, tile, scale, causal, ktest::unit_roundoff<A>(), ref, err);
        mref::require_close("softmax", ktest::values(y), ref, mref::with_output_rounding<Out>(ref, err));
      }
    }
  }
}

template <class Y, class DY, class DX>
void check_backward(std::mt19937_64& rng) {
  using A = k::compute_t<Y, DY>;
  const double u_a = ktest::unit_roundoff<A>();
  for (const Shape& s : shapes()) {
    for (auto mask : {k::SoftmaxMask::none, k::SoftmaxMask::causal}) {
      for (bool accumulate : {false, true}) {
        const bool causal = mask == k::SoftmaxMask::causal;
        const double scale = 0.37;
        INFO("shape " << s << " causal " << causal << " accumulate " << accumulate);
        const std::int64_t cols = s[s.rank() - 1], rows = s.numel() / cols, tile = s[s.rank() - 2];
        auto x = mref::random_tensor<double>(host(), s, rng, -8, 8);
        std::vector<double> yref, yerr;
        mref::softmax_reference(ktest::values(x), rows, cols, tile, scale, causal, u_a, yref, yerr);
        auto y = Tensor<Y>::empty(host(), s);
        for (std::int64_t i = 0; i < s.numel(); ++i) y.data()[i] = convert<Y>(yref[i]);
        auto dy = mref::random_tensor<DY>(host(), s, rng, -1, 1);
        auto dx = mref::random_tensor<DX>(host(), s, rng, -1, 1);
        const auto old = ktest::values(dx);
        k::softmax_backward(host(), y, dy, dx, scale, mask, accumulate);
        std::vector<double> ref, err;
        mref::softmax_grad_reference(ktest::values(y), ktest::values(dy), rows, cols, tile, scale, causal, u_a, ref, err);
        for (std::int64_t i = 0; i < s.numel(); ++i) {
          const bool masked = causal && (i % cols) >= mref::visible(i / cols, cols, tile, true);
          if (accumulate) {
            ref[i] += old[i];
            if (!masked) err[i] += u_a * std::fabs(ref[i]);
          }
        }
        mref::require_close("softmax_backward", ktest::values(dx), ref, mref::with_output_rounding<DX>(ref, err));
      }
    }
  }
}

}  // namespace

TEMPLATE_TEST_CASE("softmax_forward matches the long-double reference", "[kernels][softmax]", double, float, bf16, f16) {
  const std::uint64_t seed = ktest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  check_forward<TestType, TestType>(rng);
}

TEST_CASE("softmax_forward with mixed types (f32 probabilities of bf16 scores)", "[kernels][softmax]") {
  const std::uint64_t seed = ktest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  check_forward<bf16, float>(rng);
  check_forward<float, bf16>(rng);
  check_forward<f16, float>(rng);
}

TEMPLATE_TEST_CASE("softmax_backward matches the long-double reference", "[kernels][softmax]", double, float, bf16, f16) {
  const std::uint64_t seed = ktest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  check_backward<TestType, TestType, TestType>(rng);
}

TEST_CASE("softmax_backward with mixed types", "[kernels][softmax]") {
  const std::uint64_t seed = ktest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  check_backward<float, bf16, bf16>(rng);
  check_backward<float, float, bf16>(rng);
}

TEST_CASE("softmax_backward in f64 matches central differences of softmax_forward", "[kernels][softmax][gradcheck]") {
  const std::uint64_t seed = ktest::fresh_seed();
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  for (auto mask : {k::SoftmaxMask::none, k::SoftmaxMask::causal}) {
    const Shape s{2, 6, 6};
    const double scale = 0.7;
    auto x = mref::random_tensor<double>(host(), s, rng, -3, 3);
    auto w = mref::random_tensor<double>(host(), s, rng, -1, 1);
    auto y = Tensor<double>::empty(host(), s);
    auto dx = Tensor<double>::empty(host(), s);
    k::softmax_forward(host(), x, y, scale, mask);
    k::softmax_backward(host(), y, w, dx, scale, mask, false);
    const auto wv = ktest::values(w);
    auto objective = [&] {
      k::softmax_forward(host(), x, y, scale, mask);
      return mref::dot(wv, ktest::values(y));
    };
    std::vector<double> ref, err;
    mref::softmax_reference(ktest::values(x), 12, 6, 6, scale, mask == k::SoftmaxMask::causal,
                            ktest::unit_roundoff<double>(), ref, err);
    const double rounding = mref::weighted(wv, err);
    for (std::int64_t j = 0; j < s.numel(); ++j)
      mref::require_gradient_matches("d/dx " + std::to_string(j), x.data()[j], dx.data()[j], objective, rounding);
  }
}

TEST_CASE("softmax treats -inf entries as masked and gives NaN for an all -inf row", "[kernels][softmax]") {
  const double inf = INFINITY;
  std::vector<float> v = {0.f, float(-inf), 1.f, float(-inf), float(-inf), float(-inf)};
  auto x = Tensor<float>::wrap(v.data(), {2, 3});
  auto y = Tensor<float>::empty(host(), {2, 3});
  k::softmax_forward(host(), x, y);
  REQUIRE(y.data()[1] == 0.0f);
  REQUIRE(std::fabs(y.data()[0] - float(1 / (1 + std::exp(1.0)))) <= 1e-7f);
  REQUIRE(std::fabs(y.data()[2] - float(std::exp(1.0) / (1 + std::exp(1.0)))) <= 1e-7f);
  for (int i = 3; i < 6; ++i) REQUIRE(std::isnan(y.data()[i]));
}

TEST_CASE("softmax rejects bad operands with typed errors", "[kernels][softmax][errors]") {
  auto x = Tensor<float>::empty(host(), {4, 8});
  auto y = Tensor<float>::empty(host(), {4, 8});
  auto y9 = Tensor<float>::empty(host(), {4, 9});
  auto v = Tensor<float>::empty(host(), {8});
  REQUIRE_THROWS_AS(k::softmax_forward(host(), x, y9), ShapeError);
  REQUIRE_THROWS_AS(k::softmax_forward(host(), v, v.slice(0, 0, 8), 1.0, k::SoftmaxMask::none), ValueError);
  try {
    k::softmax_forward(host(), v, Tensor<float>::empty(host(), {8}), 1.0, k::SoftmaxMask::causal);
    FAIL("no exception");
  } catch (const ShapeError& e) {
    REQUIRE_THAT(e.what(), Catch::Contains("rank >= 2") && Catch::Contains("got shape (8)"));
  }
  REQUIRE_THROWS_AS(k::softmax_forward(host(), x, y, 1.0, static_cast<k::SoftmaxMask>(7)), ValueError);
  REQUIRE_THROWS_AS(k::softmax_forward(host(), x.transposed(), Tensor<float>::empty(host(), {8, 4})), ShapeError);
  REQUIRE_THROWS_AS(k::softmax_backward(host(), y, x, y, 1.0, k::SoftmaxMask::none, false), ValueError);  // dx is y
  REQUIRE_NOTHROW(k::softmax_backward(host(), y, x, x, 1.0, k::SoftmaxMask::none, false));                // dx is dy
}
