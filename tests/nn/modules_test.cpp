// Linear, LayerNorm and Embedding modules: the formats their policies name, the compute copies they
// read, the gradients they write, and a model that mixes two policies.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>

#include "mixtape/nn/embedding.hpp"
#include "mixtape/nn/init.hpp"
#include "mixtape/nn/layer_norm.hpp"
#include "mixtape/nn/linear.hpp"

using namespace mixtape;
using namespace mixtape::nn;
namespace ag = mixtape::autograd;

namespace {
template <class T>
Tensor<T> random_tensor(const ExecutionContext& ctx, const Shape& s, double lo = -1, double hi = 1) {
  static std::mt19937_64 rng(Catch::rngSeed() ? Catch::rngSeed() : std::random_device{}());
  auto t = Tensor<T>::empty(ctx, s);
  std::uniform_real_distribution<double> u(lo, hi);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = static_cast<T>(u(rng));
  return t;
}
}  // namespace

TEST_CASE("Linear<64-true> equals the linear op on its parameters, gradients included", "[nn][modules]") {
  auto ctx = ExecutionContext::host();
  ParameterStore store;
  Linear<precision::f64_true> fc(ModuleScope{store, "fc"}, 6, 4);
  store.allocate(ctx);
  initialize(ctx, store);
  kernels::uniform(ctx, fc.bias()->view(ParamRole::weight).as<double>(), -1, 1);  // not zeros
  const auto x = random_tensor<double>(ctx, {5, 6});
  ag::Tape tape(ctx);
  auto y = fc(tape, ag::constant(x));
  ag::backward(tape, ag::sum(tape, ag::mul(tape, y, y)));
  // The same through the ops directly, with tape-owned gradients.
  ag::Tape ref(ctx);
  auto w = ag::leaf(ref, fc.weight().view(ParamRole::weight).as<double>());
  auto b = ag::leaf(ref, fc.bias()->view(ParamRole::weight).as<double>());
  auto yr = ag::linear(ref, ag::constant(x), w, &b);
  ag::backward(ref, ag::sum(ref, ag::mul(ref, yr, yr)));
  CHECK(to_vector(ctx, y.value()) == to_vector(ctx, yr.value()));
  CHECK(to_vector(ctx, fc.weight().view(ParamRole::grad).as<double>()) == to_vector(ctx, ag::grad(ref, w)));
  CHECK(to_vector(ctx, fc.bias()->view(ParamRole::grad).as<double>()) == to_vector(ctx, ag::grad(ref, b)));
  CHECK(fc.weight().name() == "fc.weight");
  CHECK(fc.parameter_count() == 6 * 4 + 4);
}

TEST_CASE("Linear<bf16-mixed> reads its bf16 compute copies and writes f32 gradients", "[nn][modules][mixed]") {
  auto ctx = ExecutionContext::host();
  ParameterStore store;
  const std::int64_t K = 48, N = 8, M = 16;
  Linear<precision::bf16_mixed> fc(ModuleScope{store, "fc"}, K, N);
  store.allocate(ctx);
  initialize(ctx, store);
  CHECK(fc.weight().view(ParamRole::weight).dtype() == DType::f32);
  CHECK(fc.weight().view(ParamRole::compute).dtype() == DType::bf16);
  CHECK(fc.weight().view(ParamRole::grad).dtype() == DType::f32);
  // Give the bias non-zero values in both its f32 weight and its bf16 copy.
  kernels::uniform(ctx, fc.bias()->view(ParamRole::weight).as<float>(), -1, 1);
  kernels::convert(ctx, fc.bias()->view(ParamRole::weight).as<float>(), fc.bias()->view(ParamRole::compute).as<bf16>());
  const auto x = random_tensor<bf16>(ctx, {M, K});
  ag::Tape tape(ctx);
  auto y = fc(tape, ag::constant(x));
  static_assert(std::is_same_v<decltype(y), ag::Var<bf16>>);
  ag::backward(tape, ag::mean(tape, y));
  // f64 reference on the bf16 values the GEMM read: |y - ref| <= u_bf16 |ref| + K u_f32 sum|x||w|
  // (the output rounding plus f32 accumulation).
  const auto wc = fc.weight().view(ParamRole::compute).as<bf16>();
  const auto bc = fc.bias()->view(ParamRole::compute).as<bf16>();
  for (int i = 0; i < M; ++i) {
    for (int j = 0; j < N; ++j) {
      double ref = static_cast<float>(bc.at({j})), mag = 0;
      for (int k = 0; k < K; ++k) {
        const double p = double(static_cast<float>(x.at({i, k}))) * static_cast<float>(wc.at({j, k}));
        ref += p;
        mag += std::abs(p);
      }
      CHECK(std::abs(static_cast<float>(y.value().at({i, j})) - ref) <= 0x1p-8 * std::abs(ref) + K * 0x1p-24 * mag + 1e-30);
    }
  }
  // d mean(y) / d W[j, k] = sum_i x[i, k] / (M N), accumulated in f32 from bf16 operands.
  const auto gw = fc.weight().view(ParamRole::grad).as<float>();
  const double dy = static_cast<float>(bf16(1.0f / (M * N)));  // the upstream gradient, rounded to bf16
  for (int k = 0; k < K; ++k) {
    double ref = 0, mag = 0;
    for (int i = 0; i < M; ++i) {
      ref += static_cast<float>(x.at({i, k})) * dy;
      mag += std::abs(static_cast<float>(x.at({i, k})) * dy);
    }
    CHECK(std::abs(gw.at({0, k}) - ref) <= M * 0x1p-24 * mag + 1e-30);
  }
}

TEST_CASE("LayerNorm<bf16-mixed>: f32 residual in, bf16 out, f32 gain and bias gradients", "[nn][modules][mixed]") {
  auto ctx = ExecutionContext::host();
  ParameterStore store;
  LayerNorm<precision::bf16_mixed> ln(ModuleScope{store, "ln"}, 32);
  store.allocate(ctx);
  initialize(ctx, store);
  const auto x = random_tensor<float>(ctx, {4, 32}, -3, 3);
  ag::Tape tape(ctx);
  auto y = ln(tape, ag::leaf(tape, x));
  static_assert(std::is_same_v<decltype(y), ag::Var<bf16>>);
  ag::backward(tape, ag::mean(tape, y));
  for (int r = 0; r < 4; ++r) {
    double mean = 0, var = 0;
    for (int c = 0; c < 32; ++c) mean += x.at({r, c}) / 32.0;
    for (int c = 0; c < 32; ++c) var += (x.at({r, c}) - mean) * (x.at({r, c}) - mean) / 32.0;
    for (int c = 0; c < 32; ++c) {
      const double ref = (x.at({r, c}) - mean) / std::sqrt(var + 1e-5);
      // one bf16 rounding of the output plus f32 statistics (a few 2^-24 relative)
      CHECK(std::abs(static_cast<float>(y.value().at({r, c})) - ref) <= 0x1p-8 * std::abs(ref) + 64 * 0x1p-24 * (1 + std::abs(ref)));
    }
  }
  CHECK(ln.weight().view(ParamRole::grad).dtype() == DType::f32);
  CHECK(ln.bias().has_grad());
}

TEST_CASE("Embedding with a tied head: one table, one f32 gradient from both uses", "[nn][modules][mixed]") {
  auto ctx = ExecutionContext::host();
  ParameterStore store;
  Embedding<precision::bf16_mixed> wte(ModuleScope{store, "wte"}, 11, 8, /*tied_head=*/true);
  store.allocate(ctx);
  initialize(ctx, store);
  auto ids = Tensor<std::int32_t>::empty(ctx, {2, 3});
  for (int i = 0; i < 6; ++i) ids.data()[i] = (i * 5) % 11;
  int ready = 0;
  wte.weight().sink().on_ready = [&] { ++ready; };
  ag::Tape tape(ctx);
  auto x = wte(tape, ids);  // (6, 8) f32: the residual stream of a mixed policy
  static_assert(std::is_same_v<decltype(x), ag::Var<float>>);
  for (int i = 0; i < 6; ++i)
    for (int c = 0; c < 8; ++c)
      CHECK(x.value().at({i, c}) == wte.weight().view(ParamRole::weight).as<float>().at({ids.data()[i], c}));
  auto logits = wte.head(tape, ag::cast<bf16>(tape, x));  // (6, 11) through the bf16 copy
  auto targets = Tensor<std::int32_t>::empty(ctx, {6});
  for (int i = 0; i < 6; ++i) targets.data()[i] = (i * 3 + 1) % 11;
  ag::backward(tape, ag::cross_entropy(tape, logits, targets));
  CHECK(ready == 1);
  CHECK(store.size() == 1);
  // Rows never looked up still get the head's gradient (softmax over every row of the table).
  const auto g = wte.weight().view(ParamRole::grad).as<float>();
  double total = 0;
  for (int v = 0; v < 11; ++v)
    for (int c = 0; c < 8; ++c) total += std::abs(g.at({v, c}));
  CHECK(total > 0);
}

TEST_CASE("a bf16-mixed body feeding an f32-true head: explicit casts, two buffer groups", "[nn][modules][mixed]") {
  auto ctx = ExecutionContext::host();
  ParameterStore store;
  Linear<precision::bf16_mixed> body(ModuleScope{store, "body"}, 8, 16);
  Linear<precision::f32_true> head(ModuleScope{store, "head"}, 16, 3);
  store.allocate(ctx);
  initialize(ctx, store);
  const auto x = random_tensor<bf16>(ctx, {5, 8});
  ag::Tape tape(ctx);
  auto h = body(tape, ag::constant(x));                   // bf16
  auto y = head(tape, ag::cast<float>(tape, h));          // the boundary cast, f32 GEMM
  static_assert(std::is_same_v<decltype(y), ag::Var<float>>);
  ag::backward(tape, ag::mean(tape, ag::mul(tape, y, y)));
  CHECK(body.weight().has_grad());
  CHECK(head.weight().has_grad());
  CHECK_FALSE(head.weight().has(ParamRole::compute));
  CHECK(store.buffer(ParamRole::compute, DType::bf16).numel() > 0);
  CHECK_THROWS_AS(store.buffer(ParamRole::compute, DType::f16), ValueError);
}
