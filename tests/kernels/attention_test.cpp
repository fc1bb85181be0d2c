// The fused causal self-attention on the host (kernels/attention.hpp) against an exact f64
// reference and against the unfused autograd reference path, forward and backward, f32 and bf16;
// the tolerances are derived in attention_test_ref.hpp.
#include "attention_test_ref.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "mixtape/autograd/ops_attention.hpp"
#include "mixtape/autograd/ops_basic.hpp"
#include "mixtape/kernels/attention.hpp"

using namespace mixtape;
using ktest::gamma;

namespace {

const ExecutionContext& host() {
  static auto ctx = ExecutionContext::host();
  return ctx;
}

using Case = ktest::AttentionCase;
using ktest::Exact;
using ktest::exact_attention;
using ktest::require_within;

const std::vector<Case>& cases() {
  static const std::vector<Case> c = {{1, 1, 1, 32}, {2, 7, 3, 32}, {1, 64, 2, 64}, {2, 100, 2, 32}, {1, 100, 3, 64}};
  return c;
}

template <class T>
void check_against_references() {
  using A = kernels::compute_t<T>;
  const std::uint64_t seed = ktest::fresh_seed();
  std::mt19937_64 rng(seed);
  INFO("seed " << seed << " type " << ktest::type_name<T>());
  for (const Case& cs : cases()) {
    INFO("B " << cs.b << " T " << cs.t << " H " << cs.h << " D " << cs.d);
    const std::int64_t C = cs.h * cs.d;
    auto qkv = Tensor<T>::empty(host(), {cs.b, cs.t, 3 * C});
    auto dy = Tensor<T>::empty(host(), {cs.b, cs.t, C});
    ktest::fill_random(qkv, rng, -2, 2);  // scaled scores of std ~ 1.3: peaked and flat rows both
    ktest::fill_random(dy, rng, -1, 1);
    const Exact ex = exact_attention<T>(cs, ktest::values(qkv), ktest::values(dy));

    auto y = Tensor<T>::empty(host(), {cs.b, cs.t, C});
    auto lse = Tensor<A>::empty(host(), {cs.b, cs.h, cs.t});
    kernels::causal_attention_forward(host(), qkv, cs.h, y, lse);
    auto dqkv = Tensor<T>::empty(host(), qkv.shape());
    kernels::causal_attention_backward(host(), qkv, y, dy, lse, cs.h, dqkv, false);
    require_within("fused y vs exact", ktest::values(y), ex.y, ex.tol_y);
    require_within("fused lse vs exact", ktest::values(lse), ex.lse, ex.tol_lse);
    require_within("fused dqkv vs exact", ktest::values(dqkv), ex.dqkv, ex.tol_dqkv);

    // f32 gradients of bf16 operands (the mixed policies' gradient buffers): one rounding fewer.
    auto dqkv32 = Tensor<float>::empty(host(), qkv.shape());
    kernels::causal_attention_backward(host(), qkv, y, dy, lse, cs.h, dqkv32, false);
    require_within("fused f32 dqkv vs exact", ktest::values(dqkv32), ex.dqkv, ex.tol_dqkv);

    // accumulate = true adds the unrounded gradient g to the old value r once:
    // |acc - (r + round(g))| <= u_T |round(g)| + u_T |acc| (two roundings of the same sum).
    auto old = Tensor<T>::empty(host(), qkv.shape());
    ktest::fill_random(old, rng, -1, 1);
    auto acc = Tensor<T>::empty(host(), qkv.shape());
    ktest::copy_values(old, acc);
    kernels::causal_attention_backward(host(), qkv, y, dy, lse, cs.h, acc, true);
    {
      const auto a = ktest::values(acc), r = ktest::values(old), g = ktest::values(dqkv);
      std::vector<double> want(a.size()), tol(a.size());
      for (std::size_t i = 0; i < a.size(); ++i) {
        want[i] = r[i] + g[i];
        tol[i] = ktest::unit_roundoff<T>() * (std::abs(g[i]) + std::abs(a[i]));
      }
      require_within("accumulate", a, want, tol);
    }

    // The unfused reference path and the fused one through the tape.
    auto run = [&](autograd::AttentionImpl impl) {
      autograd::Tape tape(host());
      auto x = autograd::leaf(tape, qkv);
      auto out = autograd::causal_self_attention(tape, x, cs.h, impl);
      autograd::backward(tape, autograd::sum(tape, autograd::mul(tape, out, autograd::constant(dy))));
      return std::pair{out.value(), autograd::grad(tape, x)};
    };
    const auto [yr, gr] = run(autograd::AttentionImpl::reference);
    require_within("reference y vs exact", ktest::values(yr), ex.y, ex.tol_y);
    require_within("reference dqkv vs exact", ktest::values(gr), ex.dqkv, ex.tol_dqkv);
    require_within("fused y vs reference", ktest::values(y), ktest::values(yr), ex.tol_y, 2.0);
    require_within("fused dqkv vs reference", ktest::values(dqkv), ktest::values(gr), ex.tol_dqkv, 2.0);
    const auto [yf, gf] = run(autograd::AttentionImpl::fused);  // the tape's fused node runs the kernels above
    CHECK(ktest::bitwise_equal(yf, y));
    CHECK(ktest::bitwise_equal(gf, dqkv));
    const auto [ya, ga] = run(autograd::AttentionImpl::automatic);  // the host picks the reference (GEMMs)
    CHECK(ktest::bitwise_equal(ya, yr));
    CHECK(ktest::bitwise_equal(ga, gr));
  }
}

}  // namespace

TEST_CASE("fused causal attention (host) matches the exact and the unfused reference, f32", "[kernels][attention]") {
  check_against_references<float>();
}

TEST_CASE("fused causal attention (host) matches the exact and the unfused reference, bf16", "[kernels][attention]") {
  check_against_references<bf16>();
}

TEST_CASE("fused causal attention (host) in f64 equals the exact values to f64 rounding", "[kernels][attention]") {
  // The same bounds with u_T = u_A = 2^-53 would need the f64 variants of the constants; a flat
  // 1e-12 relative to the row scales (sum_j p_j |v_j| ~ 1, T D << 2^20) is far above them.
  std::mt19937_64 rng(ktest::fresh_seed());
  const Case cs{2, 9, 2, 4};
  auto qkv = Tensor<double>::empty(host(), {cs.b, cs.t, 3 * cs.h * cs.d});
  auto dy = Tensor<double>::empty(host(), {cs.b, cs.t, cs.h * cs.d});
  ktest::fill_random(qkv, rng, -2, 2);
  ktest::fill_random(dy, rng, -1, 1);
  const Exact ex = exact_attention<double>(cs, ktest::values(qkv), ktest::values(dy));
  auto y = Tensor<double>::empty(host(), dy.shape());
  auto lse = Tensor<double>::empty(host(), {cs.b, cs.h, cs.t});
  auto dqkv = Tensor<double>::empty(host(), qkv.shape());
  kernels::causal_attention_forward(host(), qkv, cs.h, y, lse);
  kernels::causal_attention_backward(host(), qkv, y, dy, lse, cs.h, dqkv, false);
  const std::vector<double> flat_y(ex.y.size(), 1e-12), flat_g(ex.dqkv.size(), 1e-12), flat_l(ex.lse.size(), 1e-12);
  require_within("f64 y", ktest::values(y), ex.y, flat_y);
  require_within("f64 lse", ktest::values(lse), ex.lse, flat_l);
  require_within("f64 dqkv", ktest::values(dqkv), ex.dqkv, flat_g);
}

TEST_CASE("fused causal attention rejects bad inputs with the expected and the actual", "[kernels][attention][errors]") {
  auto qkv = Tensor<float>::empty(host(), {2, 5, 24});
  auto y = Tensor<float>::empty(host(), {2, 5, 8});
  auto lse = Tensor<float>::empty(host(), {2, 2, 5});
  std::mt19937_64 rng(ktest::fresh_seed());
  ktest::fill_random(qkv, rng, -1, 1);
  CHECK_THROWS_AS(kernels::causal_attention_forward(host(), qkv, 3, y, lse), ShapeError);
  CHECK_THROWS_WITH(kernels::causal_attention_forward(host(), qkv, 3, y, lse),
                    Catch::Contains("expected qkv (B, T, 3C) with C divisible by 3 heads, got (2, 5, 24)"));
  CHECK_THROWS_WITH(kernels::causal_attention_forward(host(), qkv.reshape({10, 24}), 2, y, lse),
                    Catch::Contains("expected qkv (B, T, 3C)"));
  CHECK_THROWS_WITH(kernels::causal_attention_forward(host(), qkv, 2, Tensor<float>::empty(host(), {2, 5, 9}), lse),
                    Catch::Contains("expected y of shape (2, 5, 8), got (2, 5, 9)"));
  CHECK_THROWS_WITH(kernels::causal_attention_forward(host(), qkv, 2, y, Tensor<float>::empty(host(), {2, 5, 2})),
                    Catch::Contains("expected lse of shape (2, 2, 5), got (2, 5, 2)"));
  CHECK_THROWS_AS(kernels::causal_attention_forward(host(), qkv.transposed(0, 1).transposed(0, 1).slice(2, 0, 12), 2,
                                                    Tensor<float>::empty(host(), {2, 5, 4}), lse),
                  ShapeError);  // a strided view
  kernels::causal_attention_forward(host(), qkv, 2, y, lse);
  auto dq = Tensor<float>::empty(host(), qkv.shape());
  CHECK_THROWS_WITH(kernels::causal_attention_backward(host(), qkv, y, y, lse, 2, Tensor<float>::empty(host(), {2, 5, 8}), false),
                    Catch::Contains("expected dqkv of shape (2, 5, 24), got (2, 5, 8)"));
  CHECK_THROWS_WITH(kernels::causal_attention_backward(host(), qkv, y, Tensor<float>::empty(host(), {2, 4, 8}), lse, 2, dq, false),
                    Catch::Contains("expected dy of shape (2, 5, 8), got (2, 4, 8)"));
  CHECK_THROWS_AS(kernels::causal_attention_backward(host(), qkv, y, y, lse, 2, qkv, false), ValueError);  // overlap
  CHECK_THROWS_AS(kernels::causal_attention_forward(host(), qkv, 2, qkv.slice(2, 0, 8), lse), ShapeError);
  autograd::Tape tape(host());
  CHECK_THROWS_WITH(autograd::causal_self_attention(tape, autograd::constant(qkv), 5, autograd::AttentionImpl::fused),
                    Catch::Contains("with C divisible by 5 heads, got (2, 5, 24)"));
}
