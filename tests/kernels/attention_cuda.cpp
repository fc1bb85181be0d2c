// GPU tests of the fused causal self-attention. This unit is compiled by the host compiler: its
// kernels:: calls are the host backend, and kattn:: calls reach the CUDA kernels instantiated in
// attention_cuda_helpers.cu.
//
// Tolerance: host and device keep the same rounding points and differ only by summation order
// (tensor-core tiles vs sequential loops), the online-softmax rescaling, which running maximum
// exp(z - m) is rounded against, and expf / logf (libm vs CUDA, both within 2 ulp). Each side
// satisfies the first-order bound against the exact f64 values derived in attention_test_ref.hpp,
// evaluated with the f32 addition roundoff taken as 2 u_A = 2^-23 (tensor cores may truncate
// instead of rounding), so they differ by at most twice it; the device is also checked against
// the exact values with the bound itself.
#include "attention_test_ref.hpp"

#include <cstring>

#include "attention_cuda_helpers.hpp"
#include "mixtape/core/transfer.hpp"
#include "mixtape/kernels/attention.hpp"

using namespace mixtape;
using ktest::require_within;

namespace {

// Created on first use and never destroyed: no CUDA call runs during static destruction.
ExecutionContext& dev() {
  static auto* ctx = new ExecutionContext(ExecutionContext::cuda(0));
  return *ctx;
}
ExecutionContext& host() {
  static auto* ctx = new ExecutionContext(ExecutionContext::host());
  return *ctx;
}

template <class T>
Tensor<T> on_dev(const Tensor<T>& h) {
  return to_device(dev(), h, Device::cuda(0));
}
template <class T>
std::vector<double> dev_values(const Tensor<T>& d) {
  const auto v = to_vector(dev(), d);
  std::vector<double> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = ktest::to_double(v[i]);
  return out;
}
template <class T>
bool same_bits(const Tensor<T>& a, const Tensor<T>& b) {
  const auto va = to_vector(dev(), a), vb = to_vector(dev(), b);
  return std::memcmp(va.data(), vb.data(), va.size() * sizeof(T)) == 0;
}

template <class T>
void check_device_against_host(std::mt19937_64& rng, const ktest::AttentionCase& cs) {
  INFO("type " << ktest::type_name<T>() << " B " << cs.b << " T " << cs.t << " H " << cs.h << " D " << cs.d);
  const std::int64_t C = cs.h * cs.d;
  auto qkv = Tensor<T>::empty(host(), {cs.b, cs.t, 3 * C});
  auto dy = Tensor<T>::empty(host(), {cs.b, cs.t, C});
  ktest::fill_random(qkv, rng, -2, 2);
  ktest::fill_random(dy, rng, -1, 1);
  const auto ex = ktest::exact_attention<T>(cs, ktest::values(qkv), ktest::values(dy), 2 * ktest::unit_roundoff<float>());

  auto yh = Tensor<T>::empty(host(), dy.shape());
  auto lh = Tensor<float>::empty(host(), {cs.b, cs.h, cs.t});
  auto gh = Tensor<T>::empty(host(), qkv.shape());
  kernels::causal_attention_forward(host(), qkv, cs.h, yh, lh);
  kernels::causal_attention_backward(host(), qkv, yh, dy, lh, cs.h, gh, false);

  const auto qd = on_dev(qkv), dyd = on_dev(dy);
  auto yd = Tensor<T>::empty(dev(), dy.shape());
  auto ld = Tensor<float>::empty(dev(), {cs.b, cs.h, cs.t});
  auto gd = Tensor<T>::empty(dev(), qkv.shape());
  kattn::forward(dev(), qd, cs.h, yd, ld);
  kattn::backward(dev(), qd, yd, dyd, ld, cs.h, gd, false);

  require_within("y device vs exact", dev_values(yd), ex.y, ex.tol_y);
  require_within("lse device vs exact", dev_values(ld), ex.lse, ex.tol_lse);
  require_within("dqkv device vs exact", dev_values(gd), ex.dqkv, ex.tol_dqkv);
  require_within("y device vs host", dev_values(yd), ktest::values(yh), ex.tol_y, 2.0);
  require_within("lse device vs host", dev_values(ld), ktest::values(lh), ex.tol_lse, 2.0);
  require_within("dqkv device vs host", dev_values(gd), ktest::values(gh), ex.tol_dqkv, 2.0);

  // Deterministic: no atomics, fixed summation orders.
  auto yd2 = Tensor<T>::empty(dev(), dy.shape());
  auto ld2 = Tensor<float>::empty(dev(), {cs.b, cs.h, cs.t});
  auto gd2 = Tensor<T>::empty(dev(), qkv.shape());
  kattn::forward(dev(), qd, cs.h, yd2, ld2);
  kattn::backward(dev(), qd, yd, dyd, ld, cs.h, gd2, false);
  CHECK(same_bits(yd, yd2));
  CHECK(same_bits(ld, ld2));
  CHECK(same_bits(gd, gd2));
}

}  // namespace

TEMPLATE_TEST_CASE("CUDA fused causal attention matches the host's and the exact values, deterministically",
                   "[cuda][kernels][attention]", bf16, f16) {
  const std::uint64_t seed = ktest::fresh_seed();
  std::mt19937_64 rng(seed);
  INFO("seed " << seed);
  for (const std::int64_t d : {32, 64, 128})
    for (const std::int64_t t : {1, 17, 64, 127, 256, 1024}) {
      const ktest::AttentionCase cs = t < 256 ? ktest::AttentionCase{2, t, 3, d} : ktest::AttentionCase{1, t, 2, d};
      check_device_against_host<TestType>(rng, cs);
    }
}

TEMPLATE_TEST_CASE("CUDA fused attention backward into f32 gradients and accumulating", "[cuda][kernels][attention]",
                   bf16, f16) {
  using T = TestType;
  std::mt19937_64 rng(ktest::fresh_seed());
  const ktest::AttentionCase cs{2, 127, 2, 64};
  const std::int64_t C = cs.h * cs.d;
  auto qkv = Tensor<T>::empty(host(), {cs.b, cs.t, 3 * C});
  auto dy = Tensor<T>::empty(host(), {cs.b, cs.t, C});
  ktest::fill_random(qkv, rng, -2, 2);
  ktest::fill_random(dy, rng, -1, 1);
  const auto ex = ktest::exact_attention<T>(cs, ktest::values(qkv), ktest::values(dy), 2 * ktest::unit_roundoff<float>());
  const auto qd = on_dev(qkv), dyd = on_dev(dy);
  auto yd = Tensor<T>::empty(dev(), dy.shape());
  auto ld = Tensor<float>::empty(dev(), {cs.b, cs.h, cs.t});
  kattn::forward(dev(), qd, cs.h, yd, ld);
  auto g32 = Tensor<float>::empty(dev(), qkv.shape());
  kattn::backward(dev(), qd, yd, dyd, ld, cs.h, g32, false);
  require_within("f32 dqkv device vs exact", dev_values(g32), ex.dqkv, ex.tol_dqkv);

  // accumulate = true: |acc - (old + round(g))| <= u_T (|round(g)| + |acc|), as on the host.
  auto gd = Tensor<T>::empty(dev(), qkv.shape());
  kattn::backward(dev(), qd, yd, dyd, ld, cs.h, gd, false);
  auto old = Tensor<T>::empty(host(), qkv.shape());
  ktest::fill_random(old, rng, -1, 1);
  auto acc = on_dev(old);
  kattn::backward(dev(), qd, yd, dyd, ld, cs.h, acc, true);
  const auto a = dev_values(acc), r = ktest::values(old), g = dev_values(gd);
  std::vector<double> want(a.size()), tol(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    want[i] = r[i] + g[i];
    tol[i] = ktest::unit_roundoff<T>() * (std::abs(g[i]) + std::abs(a[i]));
  }
  require_within("accumulate", a, want, tol);
}

TEST_CASE("autograd causal_self_attention takes the fused kernels on CUDA for bf16", "[cuda][autograd][attention]") {
  std::mt19937_64 rng(ktest::fresh_seed());
  const ktest::AttentionCase cs{2, 100, 2, 64};
  const std::int64_t C = cs.h * cs.d;
  auto qkv = Tensor<bf16>::empty(host(), {cs.b, cs.t, 3 * C});
  auto dy = Tensor<bf16>::empty(host(), {cs.b, cs.t, C});
  ktest::fill_random(qkv, rng, -2, 2);
  ktest::fill_random(dy, rng, -1, 1);
  auto y = Tensor<bf16>::empty(host(), dy.shape());
  auto g = Tensor<bf16>::empty(host(), qkv.shape());
  kattn::autograd_attention(dev(), qkv, dy, cs.h, y, g);
  // The fused node's backward is the kernel itself: equal bits to a direct call.
  const auto qd = on_dev(qkv), dyd = on_dev(dy);
  auto yd = Tensor<bf16>::empty(dev(), dy.shape());
  auto ld = Tensor<float>::empty(dev(), {cs.b, cs.h, cs.t});
  auto gd = Tensor<bf16>::empty(dev(), qkv.shape());
  kattn::forward(dev(), qd, cs.h, yd, ld);
  kattn::backward(dev(), qd, yd, dyd, ld, cs.h, gd, false);
  CHECK(ktest::bitwise_equal(y, to_device(dev(), yd, Device::cpu())));
  CHECK(ktest::bitwise_equal(g, to_device(dev(), gd, Device::cpu())));
}

TEST_CASE("CUDA fused attention rejects what its kernels do not take", "[cuda][kernels][attention][errors]") {
  auto q48 = Tensor<bf16>::empty(dev(), {1, 4, 3 * 96});  // 2 heads of 48
  auto y48 = Tensor<bf16>::empty(dev(), {1, 4, 96});
  auto l = Tensor<float>::empty(dev(), {1, 2, 4});
  CHECK_THROWS_WITH(kattn::forward(dev(), q48, 2, y48, l), Catch::Contains("head dim 32, 64 or 128, got 48"));
  // A view one element into its storage: 2-byte aligned only.
  auto big = Tensor<bf16>::empty(dev(), {3 * 64 * 4 + 1});
  Layout lay;
  lay.shape = Shape{1, 4, 3 * 64};
  lay.strides = {4 * 3 * 64, 3 * 64, 1};
  lay.offset = 1;
  const Tensor<bf16> misaligned(big.storage(), lay);
  auto y = Tensor<bf16>::empty(dev(), {1, 4, 64});
  auto l1 = Tensor<float>::empty(dev(), {1, 1, 4});
  CHECK_THROWS_WITH(kattn::forward(dev(), misaligned, 1, y, l1), Catch::Contains("16-byte aligned"));
  auto q32 = Tensor<float>::empty(dev(), {1, 4, 3 * 64});
  auto y32 = Tensor<float>::empty(dev(), {1, 4, 64});
  CHECK_THROWS_WITH(kattn::forward(dev(), q32, 1, y32, l1), Catch::Contains("f16 or bf16 operands, got f32"));
  // An operand on the host.
  CHECK_THROWS_AS(kattn::forward(dev(), Tensor<bf16>::empty(host(), {1, 4, 3 * 64}), 1, y, l1), DeviceError);
}
