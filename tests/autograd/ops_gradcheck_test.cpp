// Every basic op's backward against central differences in f64, on random inputs and shapes.
#include "autograd_test_util.hpp"

#include "mixtape/autograd/gradcheck.hpp"

#include <map>
#include <string>

using namespace mixtape;
using namespace mixtape::autograd;

namespace {
const ExecutionContext& host() {
  static auto ctx = ExecutionContext::host();
  return ctx;
}
// A scalar readout with fixed random weights, so every upstream gradient element is distinct:
// sum(w * y). The weights are drawn once per shape and reused by every evaluation.
Var<double> readout(Tape& t, const Var<double>& y) {
  static std::map<std::string, Tensor<double>> weights;
  auto& w = weights[y.shape().to_string()];
  if (!w.defined()) w = atest::random_tensor<double>(host(), y.shape());
  return sum(t, mul(t, y, constant(w)));
}
void require_passed(const GradCheckReport& r) {
  INFO(r.describe());
  REQUIRE(r.checked > 0);
  REQUIRE(r.passed());
}
}  // namespace

TEST_CASE("add, sub, mul, scale: central differences", "[autograd][gradcheck]") {
  for (const Shape& s : {Shape{1}, Shape{3, 5}, Shape{2, 3, 4}}) {
    INFO("shape " << s);
    std::vector inputs{atest::random_tensor<double>(host(), s), atest::random_tensor<double>(host(), s)};
    require_passed(check_gradients(host(), inputs, [](Tape& t, std::vector<Var<double>>& x) {
      // (a + b) * (a - b) * 1.5 exercises both accumulation paths of a.
      return readout(t, scale(t, mul(t, add(t, x[0], x[1]), sub(t, x[0], x[1])), 1.5));
    }));
  }
}

TEST_CASE("sum and mean: central differences", "[autograd][gradcheck]") {
  std::vector inputs{atest::random_tensor<double>(host(), {4, 7})};
  require_passed(check_gradients(host(), inputs, [](Tape& t, std::vector<Var<double>>& x) {
    auto m = mean(t, mul(t, x[0], x[0]));  // d/dx = 2x / n
    return add(t, m, sum(t, x[0]));
  }));
}

TEST_CASE("reshape and transpose: central differences", "[autograd][gradcheck]") {
  std::vector inputs{atest::random_tensor<double>(host(), {3, 4}), atest::random_tensor<double>(host(), {4, 3})};
  require_passed(check_gradients(host(), inputs, [](Tape& t, std::vector<Var<double>>& x) {
    auto xt = transpose(t, x[0]);                           // (4, 3) view
    auto y = mul(t, xt, x[1]);                              // strided input to a kernel
    auto r = reshape(t, transpose(t, y), Shape{2, 6});      // reshape of a non-contiguous value copies
    return readout(t, r);
  }));
}

TEST_CASE("split_last and concat_last: central differences, unused parts give zeros", "[autograd][gradcheck]") {
  std::vector inputs{atest::random_tensor<double>(host(), {2, 3, 9}), atest::random_tensor<double>(host(), {2, 3, 2})};
  require_passed(check_gradients(host(), inputs, [](Tape& t, std::vector<Var<double>>& x) {
    auto parts = split_last(t, x[0], 3);                    // q, k, v of width 3; v unused
    std::vector<Var<double>> cat{parts[1], x[1], parts[0]};
    auto y = concat_last(t, std::span<const Var<double>>(cat));  // (2, 3, 8)
    return readout(t, mul(t, y, y));
  }));
  // The unused third part must receive exact zeros, not stale memory.
  Tape tape(host());
  auto x = leaf(tape, atest::random_tensor<double>(host(), {2, 6}));
  auto parts = split_last(tape, x, 2);
  backward(tape, sum(tape, parts[0]));
  const auto g = grad(tape, x);
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 6; ++j) CHECK(g.at({i, j}) == (j < 3 ? 1.0 : 0.0));
}

TEST_CASE("f32 gradients agree with the f64 tape within derived bounds", "[autograd][precision]") {
  const Shape s{16, 33};
  auto a64 = atest::random_tensor<double>(host(), s);
  auto b64 = atest::random_tensor<double>(host(), s);
  auto a32 = Tensor<float>::empty(host(), s);
  auto b32 = Tensor<float>::empty(host(), s);
  kernels::convert(host(), a64, a32);
  kernels::convert(host(), b64, b32);
  kernels::convert(host(), a32, a64);  // the f64 reference sees the f32-rounded inputs exactly
  kernels::convert(host(), b32, b64);
  auto run = [&]<class T>(const Tensor<T>& a, const Tensor<T>& b) {
    Tape t(host());
    auto va = leaf(t, a), vb = leaf(t, b);
    auto y = mul(t, add(t, va, vb), va);  // y = (a + b) a; dy/da = 2a + b, dy/db = a
    backward(t, sum(t, y));
    return std::pair{to_vector(host(), grad(t, va)), to_vector(host(), grad(t, vb))};
  };
  const auto [ga32, gb32] = run(a32, b32);
  const auto [ga64, gb64] = run(a64, b64);
  // Each f32 gradient element is at most three roundings from the exact value (a + b, the products
  // of the two paths, their sum): |err| <= 3u (|a| + |b| + |a|) with u = 2^-24.
  const auto a = to_vector(host(), a64), b = to_vector(host(), b64);
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double bound = 3 * 0x1p-24 * (2 * std::abs(a[i]) + std::abs(b[i])) + 1e-30;
    REQUIRE(std::abs(ga32[i] - ga64[i]) <= bound);
    REQUIRE(std::abs(gb32[i] - gb64[i]) <= bound);
  }
}

TEST_CASE("cast at a policy boundary passes gradients back in the source type", "[autograd][cast]") {
  Tape tape(host());
  auto x = leaf(tape, atest::random_tensor<bf16>(host(), {4, 5}));
  auto y = cast<float>(tape, x);
  auto l = sum(tape, mul(tape, y, y));  // dl/dx = 2 x, computed in f32, rounded to bf16 once
  backward(tape, l);
  const auto g = grad(tape, x);
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 5; ++j) CHECK(static_cast<float>(g.at({i, j})) == static_cast<float>(bf16(2.0f * static_cast<float>(x.value().at({i, j})))));
}
