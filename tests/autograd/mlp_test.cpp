// linear_gelu_linear (the MLP with its GELU in GEMM epilogues) against central differences in f64,
// the composed ops (linear, gelu, linear), and, in the bf16-mixed layout, the f64 tape; and linear's
// bias gradient through the weight-gradient GEMM's epilogue, written and accumulated.
#include "autograd_test_util.hpp"

#include <cmath>

#include "mixtape/autograd/gradcheck.hpp"
#include "mixtape/autograd/ops_mlp.hpp"

using namespace mixtape;
using namespace mixtape::autograd;

namespace {
const ExecutionContext& host() {
  static auto ctx = ExecutionContext::host();
  return ctx;
}
Var<double> readout(Tape& t, const Var<double>& y, const Tensor<double>& w) { return sum(t, mul(t, y, constant(w))); }
void require_passed(const GradCheckReport& r) {
  INFO(r.describe());
  REQUIRE(r.checked > 0);
  REQUIRE(r.passed());
}
Tensor<double> widen(const Tensor<float>& t) {
  auto d = Tensor<double>::empty(host(), t.shape());
  kernels::convert(host(), t, d);
  return d;
}
template <class T>
Tensor<T> narrow(const Tensor<float>& t) {
  auto d = Tensor<T>::empty(host(), t.shape());
  kernels::convert(host(), t, d);
  return d;
}
}  // namespace

TEST_CASE("linear_gelu_linear: central differences for x, both weights and both biases", "[autograd][gradcheck][mlp]") {
  std::vector inputs{atest::random_tensor<double>(host(), {2, 3, 5}), atest::random_tensor<double>(host(), {7, 5}, -1, 1),
                     atest::random_tensor<double>(host(), {7}), atest::random_tensor<double>(host(), {4, 7}, -1, 1),
                     atest::random_tensor<double>(host(), {4})};
  const auto w = atest::random_tensor<double>(host(), {2, 3, 4});
  require_passed(check_gradients(host(), inputs, [&](Tape& t, std::vector<Var<double>>& x) {
    return readout(t, linear_gelu_linear(t, x[0], x[1], x[2], x[3], x[4]), w);
  }));
}

TEST_CASE("linear_gelu_linear used twice: the second use accumulates every gradient", "[autograd][gradcheck][mlp]") {
  // Square layers so the block can be applied to its own output; the parameters' second writes
  // accumulate, which takes the bias gradient off the GEMM epilogue (an epilogue writes, never adds).
  std::vector inputs{atest::random_tensor<double>(host(), {3, 4}), atest::random_tensor<double>(host(), {6, 4}, -1, 1),
                     atest::random_tensor<double>(host(), {6}), atest::random_tensor<double>(host(), {4, 6}, -1, 1),
                     atest::random_tensor<double>(host(), {4})};
  const auto w = atest::random_tensor<double>(host(), {3, 4});
  require_passed(check_gradients(host(), inputs, [&](Tape& t, std::vector<Var<double>>& x) {
    const auto y = linear_gelu_linear(t, x[0], x[1], x[2], x[3], x[4]);
    return readout(t, linear_gelu_linear(t, y, x[1], x[2], x[3], x[4]), w);
  }));
}

TEST_CASE("linear with a bias used twice: central differences (epilogue write, then accumulation)",
          "[autograd][gradcheck][linear]") {
  std::vector inputs{atest::random_tensor<double>(host(), {3, 5}), atest::random_tensor<double>(host(), {5, 5}),
                     atest::random_tensor<double>(host(), {5})};
  const auto w = atest::random_tensor<double>(host(), {3, 5});
  require_passed(check_gradients(host(), inputs, [&](Tape& t, std::vector<Var<double>>& x) {
    return readout(t, linear(t, linear(t, x[0], x[1], &x[2]), x[1], &x[2]), w);
  }));
}

TEST_CASE("linear_gelu_linear equals linear, gelu, linear in f64", "[autograd][mlp]") {
  const auto x = atest::random_tensor<double>(host(), {6, 8});
  const auto w1 = atest::random_tensor<double>(host(), {12, 8}, -1, 1), b1 = atest::random_tensor<double>(host(), {12});
  const auto w2 = atest::random_tensor<double>(host(), {5, 12}, -1, 1), b2 = atest::random_tensor<double>(host(), {5});
  const auto r = atest::random_tensor<double>(host(), {6, 5});
  Tensor<double> grads[2][5], ys[2];
  for (int fused = 0; fused < 2; ++fused) {
    Tape t(host());
    Var<double> v[5] = {leaf(t, x), leaf(t, w1), leaf(t, b1), leaf(t, w2), leaf(t, b2)};
    const auto y = fused ? linear_gelu_linear(t, v[0], v[1], v[2], v[3], v[4])
                         : linear(t, gelu<double>(t, linear(t, v[0], v[1], &v[2])), v[3], &v[4]);
    ys[fused] = kernels::contiguous(host(), y.value());
    backward(t, readout(t, y, r));
    for (int i = 0; i < 5; ++i) grads[fused][i] = grad(t, v[i]);
  }
  // Both evaluate the same f64 expressions; they differ by summation order and where the GELU is
  // evaluated (epilogue vs kernel, the same functor), so a few f64 ulps of the terms' magnitudes.
  auto close = [](const Tensor<double>& a, const Tensor<double>& b) {
    for (std::int64_t i = 0; i < a.numel(); ++i)
      REQUIRE(std::abs(a.data()[i] - b.data()[i]) <= 1e-13 * (1 + std::abs(b.data()[i])));
  };
  close(ys[1], ys[0]);
  for (int i = 0; i < 5; ++i) close(grads[1][i], grads[0][i]);
}

TEST_CASE("linear_gelu_linear in bf16 with f32 parameter gradients: close to the f64 tape", "[autograd][precision][mlp]") {
  const std::int64_t N = 16, C = 8, H = 24, O = 6;
  // Inputs representable in bf16, so the f64 run sees exactly the values the bf16 run reads.
  auto round_bf16 = [](Tensor<float> t) {
    for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = static_cast<float>(bf16(t.data()[i]));
    return t;
  };
  const auto x = round_bf16(atest::random_tensor<float>(host(), {N, C}));
  const auto w1 = round_bf16(atest::random_tensor<float>(host(), {H, C}, -0.5, 0.5));
  const auto b1 = round_bf16(atest::random_tensor<float>(host(), {H}));
  const auto w2 = round_bf16(atest::random_tensor<float>(host(), {O, H}, -0.5, 0.5));
  const auto b2 = round_bf16(atest::random_tensor<float>(host(), {O}));
  const auto r = round_bf16(atest::random_tensor<float>(host(), {N, O}));
  // The bf16-mixed layout: bf16 operands, f32 gradient sinks for the four parameters.
  Tensor<float> g[4] = {Tensor<float>::empty(host(), {H, C}), Tensor<float>::empty(host(), {H}),
                        Tensor<float>::empty(host(), {O, H}), Tensor<float>::empty(host(), {O})};
  GradSink s[4] = {{g[0], false, {}}, {g[1], false, {}}, {g[2], false, {}}, {g[3], false, {}}};
  Tape tm(host());
  const auto xv = leaf(tm, narrow<bf16>(x));
  const auto y = linear_gelu_linear(tm, xv, parameter(tm, narrow<bf16>(w1), s[0]), parameter(tm, narrow<bf16>(b1), s[1]),
                                    parameter(tm, narrow<bf16>(w2), s[2]), parameter(tm, narrow<bf16>(b2), s[3]));
  // dy = r exactly: the readout's gradient, seeded in f32 through a cast.
  backward(tm, sum(tm, mul(tm, cast<float>(tm, y), constant(r))));
  Tape tr(host());
  Var<double> v[5] = {leaf(tr, widen(x)), leaf(tr, widen(w1)), leaf(tr, widen(b1)), leaf(tr, widen(w2)), leaf(tr, widen(b2))};
  const auto pre = linear(tr, v[0], v[1], &v[2]);
  const auto h = gelu<double>(tr, pre);
  const auto yr = linear(tr, h, v[3], &v[4]);
  retain_grad(tr, pre);  // read below
  backward(tr, sum(tr, mul(tr, yr, constant(widen(r)))));
  const auto hv = h.value(), dpre = grad(tr, pre), xd = widen(x), w1d = widen(w1), w2d = widen(w2), b2d = widen(b2);
  const double u = 0x1p-8;  // bf16 unit roundoff
  // y = round(W2 round(gelu(pre)) + b2): the h rounding contributes u sum_j |W2 h| and the output
  // rounding u |y| <= u (sum_j |W2 h| + |b2|); f32 accumulation is 2^-24-small: |err| <= 2u S + 1e-6.
  const auto yv = mixtape::to_vector(host(), y.value());
  for (std::int64_t i = 0; i < N; ++i)
    for (std::int64_t o = 0; o < O; ++o) {
      double s_abs = std::abs(b2d.at({o}));
      for (std::int64_t j = 0; j < H; ++j) s_abs += std::abs(w2d.at({o, j}) * hv.at({i, j}));
      INFO("y " << i << "," << o);
      CHECK(std::abs(static_cast<double>(yv[static_cast<std::size_t>(i * O + o)]) - yr.value().at({i, o})) <=
            2 * u * s_abs + 1e-6);
    }
  // Gradients: each term of dW1 = dpre^T x, db1 = sum dpre, dx = dpre W1 reaches through the
  // rounding of dpre (u), of pre (which gelu' sees: |gelu''| <= 1 and |pre| rounding u, so at most
  // u |pre| / |gelu'| relative; bounded with the rounding of h it shares, by 2u of the term for the
  // inputs drawn here, |pre| < 4) and of x's gradient itself (u): |err| <= 4u sum |terms| + 1e-6.
  // dW2 = dy^T h, db2 = sum dy: only h's rounding (u) and the f32 sum.
  for (std::int64_t j = 0; j < H; ++j) {
    double sb = 0;
    for (std::int64_t k = 0; k < C; ++k) {
      double sw = 0;
      for (std::int64_t i = 0; i < N; ++i) sw += std::abs(dpre.at({i, j}) * xd.at({i, k}));
      CHECK(std::abs(g[0].at({j, k}) - grad(tr, v[1]).at({j, k})) <= 4 * u * sw + 1e-6);
    }
    for (std::int64_t i = 0; i < N; ++i) sb += std::abs(dpre.at({i, j}));
    CHECK(std::abs(g[1].at({j}) - grad(tr, v[2]).at({j})) <= 4 * u * sb + 1e-6);
  }
  const auto gx = grad(tm, xv);
  for (std::int64_t i = 0; i < N; ++i)
    for (std::int64_t k = 0; k < C; ++k) {
      double sx = 0;
      for (std::int64_t j = 0; j < H; ++j) sx += std::abs(dpre.at({i, j}) * w1d.at({j, k}));
      CHECK(std::abs(static_cast<double>(gx.at({i, k})) - grad(tr, v[0]).at({i, k})) <= 4 * u * sx + 1e-6);
    }
  for (std::int64_t o = 0; o < O; ++o)
    for (std::int64_t j = 0; j < H; ++j) {
      double s2 = 0;
      for (std::int64_t i = 0; i < N; ++i) s2 += std::abs(r.at({i, o}) * hv.at({i, j}));
      CHECK(std::abs(g[2].at({o, j}) - grad(tr, v[3]).at({o, j})) <= u * s2 + 1e-6);
    }
  for (std::int64_t o = 0; o < O; ++o) CHECK(std::abs(g[3].at({o}) - grad(tr, v[4]).at({o})) <= 1e-5);
}

TEST_CASE("linear_gelu_linear rejects operands that do not chain", "[autograd][mlp][errors]") {
  Tape t(host());
  const auto x = leaf(t, atest::random_tensor<double>(host(), {3, 4}));
  const auto w1 = leaf(t, atest::random_tensor<double>(host(), {6, 4})), b1 = leaf(t, atest::random_tensor<double>(host(), {6}));
  const auto w2 = leaf(t, atest::random_tensor<double>(host(), {2, 5})), b2 = leaf(t, atest::random_tensor<double>(host(), {2}));
  REQUIRE_THROWS_WITH(linear_gelu_linear(t, x, w1, b1, w2, b2),
                      Catch::Contains("expected x (..., C), w1 (H, C), b1 (H), w2 (C_out, H), b2 (C_out)"));
}
