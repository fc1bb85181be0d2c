// The model ops' backward passes against central differences in f64, and their mixed-type forms
// (bf16 activations with f32 parameter gradients) against the f64 tape.
#include "autograd_test_util.hpp"

#include <cstring>
#include <map>
#include <string>

#include "mixtape/autograd/gradcheck.hpp"
#include "mixtape/autograd/ops_attention.hpp"

using namespace mixtape;
using namespace mixtape::autograd;

namespace {
const ExecutionContext& host() {
  static auto ctx = ExecutionContext::host();
  return ctx;
}
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
Tensor<std::int32_t> random_ids(std::int64_t n, std::int32_t v) {
  auto t = Tensor<std::int32_t>::empty(host(), {n});
  std::uniform_int_distribution<std::int32_t> u(0, v - 1);
  for (std::int64_t i = 0; i < n; ++i) t.data()[i] = u(atest::rng());
  return t;
}
}  // namespace

TEST_CASE("add_bias and add_positional: central differences", "[autograd][gradcheck][nn]") {
  std::vector inputs{atest::random_tensor<double>(host(), {2, 3, 5}), atest::random_tensor<double>(host(), {5}),
                     atest::random_tensor<double>(host(), {3, 5})};
  require_passed(check_gradients(host(), inputs, [](Tape& t, std::vector<Var<double>>& x) {
    return readout(t, add_positional(t, add_bias(t, x[0], x[1]), x[2]));
  }));
}

TEST_CASE("gelu: central differences", "[autograd][gradcheck][nn]") {
  std::vector inputs{atest::random_tensor<double>(host(), {4, 9}, -4, 4)};
  require_passed(check_gradients(host(), inputs, [](Tape& t, std::vector<Var<double>>& x) {
    return readout(t, gelu<double>(t, x[0]));
  }));
}

TEST_CASE("layer_norm: central differences for x, gamma and beta", "[autograd][gradcheck][nn]") {
  std::vector inputs{atest::random_tensor<double>(host(), {3, 4, 7}), atest::random_tensor<double>(host(), {7}, 0.5, 1.5),
                     atest::random_tensor<double>(host(), {7})};
  require_passed(check_gradients(host(), inputs, [](Tape& t, std::vector<Var<double>>& x) {
    return readout(t, layer_norm<double>(t, x[0], x[1], x[2], 1e-5));
  }));
}

TEST_CASE("softmax (scaled, causal): central differences", "[autograd][gradcheck][nn]") {
  std::vector inputs{atest::random_tensor<double>(host(), {2, 5, 5})};
  require_passed(check_gradients(host(), inputs, [](Tape& t, std::vector<Var<double>>& x) {
    return readout(t, softmax<double>(t, x[0], 0.7, kernels::SoftmaxMask::causal));
  }));
  require_passed(check_gradients(host(), {atest::random_tensor<double>(host(), {3, 6})}, [](Tape& t, std::vector<Var<double>>& x) {
    return readout(t, softmax<double>(t, x[0]));
  }));
}

TEST_CASE("embedding with repeated ids: central differences", "[autograd][gradcheck][nn]") {
  const auto ids = random_ids(13, 5);  // 13 lookups into 5 rows: repeats accumulate
  std::vector inputs{atest::random_tensor<double>(host(), {5, 4})};
  require_passed(check_gradients(host(), inputs, [&](Tape& t, std::vector<Var<double>>& x) {
    return readout(t, embedding<double>(t, ids, x[0]));
  }));
}

TEST_CASE("cross_entropy and mse: central differences", "[autograd][gradcheck][nn]") {
  const auto targets = random_ids(6, 11);
  std::vector inputs{atest::random_tensor<double>(host(), {6, 11}, -3, 3)};
  require_passed(check_gradients(host(), inputs, [&](Tape& t, std::vector<Var<double>>& x) {
    return cross_entropy(t, x[0], targets);
  }));
  const auto y = atest::random_tensor<double>(host(), {4, 3});
  require_passed(check_gradients(host(), {atest::random_tensor<double>(host(), {4, 3})}, [&](Tape& t, std::vector<Var<double>>& x) {
    return mse(t, x[0], y);
  }));
}

TEST_CASE("a small bf16-mixed chain: f32 parameter gradients close to the f64 tape", "[autograd][precision][nn]") {
  // x (f32 residual) -> LayerNorm (bf16 out, f32 stats, f32 gamma/beta grads) -> GELU (bf16) ->
  // cast f32 -> cross-entropy. The f64 run sees the same rounded inputs.
  const std::int64_t R = 8, C = 16;
  auto x32 = atest::random_tensor<float>(host(), {R, C});
  auto g32 = atest::random_tensor<float>(host(), {C}, 0.5, 1.5);
  auto b32 = atest::random_tensor<float>(host(), {C});
  const auto targets = random_ids(R, static_cast<std::int32_t>(C));
  auto widen = [](const Tensor<float>& t) {
    auto d = Tensor<double>::empty(host(), t.shape());
    kernels::convert(host(), t, d);
    return d;
  };
  // Mixed: f32 gradient sinks for gamma and beta, as the parameter store gives a bf16-mixed LayerNorm.
  auto dg = Tensor<float>::empty(host(), {C});
  auto db = Tensor<float>::empty(host(), {C});
  GradSink sg{dg, false, {}}, sb{db, false, {}};
  Tape tm(host());
  auto h = layer_norm<bf16>(tm, leaf(tm, x32), parameter(tm, g32, sg), parameter(tm, b32, sb));
  auto a = gelu<bf16>(tm, h);
  backward(tm, cross_entropy(tm, cast<float>(tm, a), targets));
  Tape tr(host());
  auto gr = leaf(tr, widen(g32)), br = leaf(tr, widen(b32));
  auto hr = layer_norm<double>(tr, leaf(tr, widen(x32)), gr, br);  // (R, C)
  retain_grad(tr, hr);  // read below: an op's output keeps its gradient only when asked
  backward(tr, cross_entropy(tr, gelu<double>(tr, hr), targets));
  const auto ref_g = grad(tr, gr), ref_b = grad(tr, br);
  const auto dh = grad(tr, hr);  // f64 gradient at the LayerNorm output
  // Per-column sums of the absolute terms of dgamma = sum_r dh * xhat and dbeta = sum_r dh, from
  // the f64 run (xhat recomputed in f64).
  const auto xr = widen(x32);
  std::vector<double> abs_g(C, 0.0), abs_b(C, 0.0);
  for (int r = 0; r < R; ++r) {
    double mean = 0, var = 0;
    for (int c = 0; c < C; ++c) mean += xr.at({r, c}) / C;
    for (int c = 0; c < C; ++c) var += (xr.at({r, c}) - mean) * (xr.at({r, c}) - mean) / C;
    for (int c = 0; c < C; ++c) {
      const double xhat = (xr.at({r, c}) - mean) / std::sqrt(var + 1e-5);
      abs_g[c] += std::abs(dh.at({r, c}) * xhat);
      abs_b[c] += std::abs(dh.at({r, c}));
    }
  }
  // Each term dh_r reaches the parameters through four bf16 roundings (LayerNorm output, GELU
  // output, GELU input gradient, LayerNorm output gradient; u = 2^-8 each) plus the first-order
  // change of the softmax gradient they cause, which is of the same size: |err_r| <= 8 u |term_r|
  // to first order, so |err| <= 8 u sum_r |term_r| (the f32 accumulation adds R 2^-24, negligible).
  const double u = 0x1p-8;
  for (int c = 0; c < C; ++c) {
    INFO("column " << c);
    CHECK(std::abs(dg.at({c}) - ref_g.at({c})) <= 8 * u * abs_g[c] + 1e-7);
    CHECK(std::abs(db.at({c}) - ref_b.at({c})) <= 8 * u * abs_b[c] + 1e-7);
  }
}

TEST_CASE("matmul (2-D and batched) and linear with bias: central differences", "[autograd][gradcheck][linear]") {
  std::vector inputs{atest::random_tensor<double>(host(), {5, 3}), atest::random_tensor<double>(host(), {3, 4})};
  require_passed(check_gradients(host(), inputs, [](Tape& t, std::vector<Var<double>>& x) {
    return readout(t, matmul(t, x[0], x[1]));
  }));
  std::vector batched{atest::random_tensor<double>(host(), {2, 4, 3}), atest::random_tensor<double>(host(), {2, 4, 3})};
  require_passed(check_gradients(host(), batched, [](Tape& t, std::vector<Var<double>>& x) {
    return readout(t, matmul(t, x[0], transpose(t, x[1], 1, 2)));  // q k^T per batch item
  }));
  std::vector lin{atest::random_tensor<double>(host(), {2, 3, 5}), atest::random_tensor<double>(host(), {4, 5}),
                  atest::random_tensor<double>(host(), {4})};
  require_passed(check_gradients(host(), lin, [](Tape& t, std::vector<Var<double>>& x) {
    auto y = linear(t, x[0], x[1], &x[2]);  // (2, 3, 4)
    return readout(t, linear(t, y, x[1].shape()[0] == 4 ? transpose(t, x[1]) : x[1]));  // x reused: accumulation
  }));
}

TEST_CASE("causal_self_attention: central differences through q, k and v", "[autograd][gradcheck][attention]") {
  // (B, T, 3C) with C = 6 over 2 heads of 3; the qkv input is used twice so the second write
  // accumulates.
  std::vector inputs{atest::random_tensor<double>(host(), {2, 4, 18})};
  require_passed(check_gradients(host(), inputs, [](Tape& t, std::vector<Var<double>>& x) {
    return readout(t, causal_self_attention(t, x[0], 2));
  }));
  require_passed(check_gradients(host(), inputs, [](Tape& t, std::vector<Var<double>>& x) {
    auto y = causal_self_attention(t, x[0], 3);
    return add(t, readout(t, y), readout(t, causal_self_attention(t, x[0], 3)));
  }));
}

TEST_CASE("causal_self_attention equals the composed ops per head, and position t sees only <= t",
          "[autograd][attention]") {
  const std::int64_t B = 2, T = 5, H = 2, D = 3, C = H * D;
  const auto qkv = atest::random_tensor<double>(host(), {B, T, 3 * C});
  Tape tape(host());
  const auto y = causal_self_attention(tape, constant(qkv), H).value();  // (B, T, C)
  for (std::int64_t b = 0; b < B; ++b) {
    for (std::int64_t h = 0; h < H; ++h) {
      for (std::int64_t i = 0; i < T; ++i) {
        std::vector<double> s(T, 0.0);
        double mx = -1e300, z = 0;
        for (std::int64_t j = 0; j <= i; ++j) {
          for (std::int64_t d = 0; d < D; ++d) s[j] += qkv.at({b, i, h * D + d}) * qkv.at({b, j, C + h * D + d});
          s[j] /= std::sqrt(double(D));
          mx = std::max(mx, s[j]);
        }
        for (std::int64_t j = 0; j <= i; ++j) z += std::exp(s[j] - mx);
        for (std::int64_t d = 0; d < D; ++d) {
          double ref = 0;
          for (std::int64_t j = 0; j <= i; ++j) ref += std::exp(s[j] - mx) / z * qkv.at({b, j, 2 * C + h * D + d});
          CHECK(std::abs(y.at({b, i, h * D + d}) - ref) <= 1e-13);
        }
      }
    }
  }
}

TEST_CASE("causal_self_attention rejects a width not divisible by the heads", "[autograd][attention][errors]") {
  Tape tape(host());
  const auto qkv = atest::random_tensor<double>(host(), {1, 2, 12});
  CHECK_THROWS_WITH(causal_self_attention(tape, constant(qkv), 3),
                    Catch::Contains("expected qkv (B, T, 3C) with C divisible by 3 heads, got (1, 2, 12)"));
}

TEST_CASE("add_positional with a table longer than the sequence: its unused rows get zero gradient",
          "[autograd][gradcheck][nn]") {
  std::vector inputs{atest::random_tensor<double>(host(), {2, 3, 4}), atest::random_tensor<double>(host(), {5, 4})};
  require_passed(check_gradients(host(), inputs, [](Tape& t, std::vector<Var<double>>& x) {
    return readout(t, add_positional(t, x[0], x[1]));
  }));
  Tape tape(host());
  auto table = atest::random_tensor<double>(host(), {5, 4});
  auto dtable = Tensor<double>::empty(host(), {5, 4});
  kernels::fill(host(), dtable, 7.0);  // stale values from an earlier step
  GradSink sink{dtable, false, {}};
  backward(tape, sum(tape, add_positional(tape, leaf(tape, atest::random_tensor<double>(host(), {2, 3, 4})),
                                          parameter(tape, table, sink))));
  for (std::int64_t r = 0; r < 5; ++r)
    for (std::int64_t c = 0; c < 4; ++c) CHECK(dtable.at({r, c}) == (r < 3 ? 2.0 : 0.0));
  CHECK_THROWS_AS(add_positional(tape, constant(atest::random_tensor<double>(host(), {1, 6, 4})), constant(table)),
                  ShapeError);
}

TEST_CASE("add of an f32 stream and a bf16 branch: f32 sum, bf16 branch gradient", "[autograd][nn][mixed]") {
  const auto a = atest::random_tensor<float>(host(), {3, 4});
  const auto b = atest::random_tensor<bf16>(host(), {3, 4});
  Tape tape(host());
  auto va = leaf(tape, a);
  auto vb = leaf(tape, b);
  auto y = add(tape, va, vb);
  static_assert(std::is_same_v<decltype(y), Var<float>>);
  auto w = atest::random_tensor<float>(host(), {3, 4});
  backward(tape, sum(tape, mul(tape, y, constant(w))));
  const auto gb = grad(tape, vb);
  for (std::int64_t i = 0; i < 3; ++i) {
    for (std::int64_t j = 0; j < 4; ++j) {
      CHECK(y.value().at({i, j}) == a.at({i, j}) + static_cast<float>(b.at({i, j})));
      CHECK(static_cast<float>(gb.at({i, j})) == static_cast<float>(bf16(w.at({i, j}))));
      CHECK(grad(tape, va).at({i, j}) == w.at({i, j}));
    }
  }
}

namespace {
/// Values and gradients of sum = x + r, norm = layer_norm(sum) under a loss over both, fused
/// (add_layer_norm) or not (add, then layer_norm).
struct AddNormRun {
  std::vector<float> sum, gx, gg, gb;
  std::vector<bf16> norm, gr;
};
enum class AddNormCase { both_outputs, branch_reused, sum_unused, norm_unused, stream_constant };

AddNormRun add_norm_run(bool fused, AddNormCase c) {
  static const auto x = atest::random_tensor<float>(host(), {6, 40});
  static const auto r = atest::random_tensor<bf16>(host(), {6, 40});
  static const auto g = atest::random_tensor<float>(host(), {40});
  static const auto b = atest::random_tensor<float>(host(), {40});
  static const auto ws = atest::random_tensor<float>(host(), {6, 40});
  static const auto wn = atest::random_tensor<bf16>(host(), {6, 40});
  Tape tape(host());
  auto vx = c == AddNormCase::stream_constant ? constant(x) : leaf(tape, x);
  auto vr = c == AddNormCase::stream_constant ? constant(r) : leaf(tape, r);
  auto vg = leaf(tape, g);
  auto vb = leaf(tape, b);
  const auto out = fused ? add_layer_norm<bf16>(tape, vx, vr, vg, vb) : [&] {
    const auto sum = add(tape, vx, vr);
    return AddLayerNorm<float, bf16>{sum, layer_norm<bf16>(tape, sum, vg, vb)};
  }();
  auto loss = sum(tape, cast<float>(tape, mul(tape, out.norm, constant(wn))));
  if (c != AddNormCase::sum_unused) loss = add(tape, loss, sum(tape, mul(tape, out.sum, constant(ws))));
  if (c == AddNormCase::norm_unused) loss = sum(tape, mul(tape, out.sum, constant(ws)));
  if (c == AddNormCase::branch_reused) loss = add(tape, loss, sum(tape, cast<float>(tape, mul(tape, vr, constant(wn)))));
  backward(tape, loss);
  auto vals = [](const auto& t) { return std::vector(t.data(), t.data() + t.numel()); };
  const bool streams = c != AddNormCase::stream_constant;
  const bool params = c != AddNormCase::norm_unused;
  return AddNormRun{vals(out.sum.value()), streams ? vals(grad(tape, vx)) : std::vector<float>{},
                    params ? vals(grad(tape, vg)) : std::vector<float>{}, params ? vals(grad(tape, vb)) : std::vector<float>{},
                    vals(out.norm.value()), streams ? vals(grad(tape, vr)) : std::vector<bf16>{}};
}

template <class T>
bool same_bits(const std::vector<T>& p, const std::vector<T>& q) {
  return p.size() == q.size() && std::memcmp(p.data(), q.data(), p.size() * sizeof(T)) == 0;
}
}  // namespace

TEST_CASE("add_layer_norm gives add then layer_norm's values and gradients, bit for bit", "[autograd][nn][mixed]") {
  // The bf16-mixed residual: an f32 stream x, a bf16 branch r, f32 gain and bias, bf16 output. The
  // sum continues the stream, the norm feeds the next branch; also a branch with a second use (its
  // gradient accumulates, so the LayerNorm's kernel does not write it), one output unused, and
  // constant x and r (only gamma and beta train).
  for (const auto c : {AddNormCase::both_outputs, AddNormCase::branch_reused, AddNormCase::sum_unused,
                       AddNormCase::norm_unused, AddNormCase::stream_constant}) {
    INFO("case " << static_cast<int>(c));
    const AddNormRun a = add_norm_run(true, c), u = add_norm_run(false, c);
    CHECK(same_bits(a.sum, u.sum));
    CHECK(same_bits(a.norm, u.norm));
    CHECK(same_bits(a.gx, u.gx));
    CHECK(same_bits(a.gr, u.gr));
    CHECK(same_bits(a.gg, u.gg));
    CHECK(same_bits(a.gb, u.gb));
    if (c == AddNormCase::both_outputs) {
      REQUIRE(!a.gx.empty());
      CHECK(a.gg != std::vector<float>(a.gg.size(), 0.0f));  // not vacuous: the norm's path reached the parameters
    }
  }
}

TEST_CASE("add_layer_norm: central differences through both outputs", "[autograd][gradcheck][nn]") {
  std::vector inputs{atest::random_tensor<double>(host(), {3, 7}), atest::random_tensor<double>(host(), {3, 7}),
                     atest::random_tensor<double>(host(), {7}), atest::random_tensor<double>(host(), {7})};
  require_passed(check_gradients(host(), inputs, [](Tape& t, std::vector<Var<double>>& x) {
    const auto out = add_layer_norm<double>(t, x[0], x[1], x[2], x[3], 1e-5);
    return add(t, readout(t, out.sum), readout(t, out.norm));
  }));
}

TEST_CASE("add_layer_norm rejects mismatched operands", "[autograd][nn][errors]") {
  Tape tape(host());
  auto x = leaf(tape, atest::random_tensor<float>(host(), {3, 4}));
  auto r = leaf(tape, atest::random_tensor<float>(host(), {3, 5}));
  auto g = leaf(tape, atest::random_tensor<float>(host(), {4}));
  CHECK_THROWS_WITH(add_layer_norm<float>(tape, x, r, g, g), Catch::Contains("add_layer_norm"));
  CHECK_THROWS_AS(add_layer_norm<float>(tape, x, x, leaf(tape, atest::random_tensor<float>(host(), {5})), g), ShapeError);
}
