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
// f32 attention runs on TF32 tensor cores only where the context allows TF32.
ExecutionContext& tf32_dev() {
  static auto* ctx = new ExecutionContext(ExecutionContext::cuda(0, {.allow_tf32 = true}));
  return *ctx;
}
ExecutionContext& host() {
  static auto* ctx = new ExecutionContext(ExecutionContext::host());
  return *ctx;
}

// Each helper works on the stream of the context it is given (dev() unless said): a test that
// runs kernels on tf32_dev() allocates, copies and reads on it too, so every step is ordered.
template <class T>
Tensor<T> on_dev(const Tensor<T>& h, const ExecutionContext& ctx = dev()) {
  return to_device(ctx, h, Device::cuda(0));
}
// Host f32 values rounded to TF32 (cvt.rna) in place.
void round_to_tf32(const Tensor<float>& h) {
  float* p = h.data();
  for (std::int64_t i = 0; i < h.numel(); ++i) p[i] = ktest::round_tf32(p[i]);
}
template <class T>
std::vector<double> dev_values(const Tensor<T>& d, const ExecutionContext& ctx = dev()) {
  const auto v = to_vector(ctx, d);
  std::vector<double> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = ktest::to_double(v[i]);
  return out;
}
template <class T>
bool same_bits(const Tensor<T>& a, const Tensor<T>& b, const ExecutionContext& ctx = dev()) {
  const auto va = to_vector(ctx, a), vb = to_vector(ctx, b);
  return std::memcmp(va.data(), vb.data(), va.size() * sizeof(T)) == 0;
}

// Forward then backward by direct kernel calls on ctx; y, lse and dqkv on the host.
template <class T>
struct DirectRun {
  Tensor<T> y;
  Tensor<float> lse;
  Tensor<T> dqkv;
};
template <class T>
DirectRun<T> run_direct(const ExecutionContext& ctx, const Tensor<T>& qkv, const Tensor<T>& dy,
                        const ktest::AttentionCase& cs) {
  const auto qd = on_dev(qkv, ctx), dyd = on_dev(dy, ctx);
  auto yd = Tensor<T>::empty(ctx, dy.shape());
  auto ld = Tensor<float>::empty(ctx, {cs.b, cs.h, cs.t});
  auto gd = Tensor<T>::empty(ctx, qkv.shape());
  kattn::forward(ctx, qd, cs.h, yd, ld);
  kattn::backward(ctx, qd, yd, dyd, ld, cs.h, gd, false);
  return {to_device(ctx, yd, Device::cpu()), to_device(ctx, ld, Device::cpu()), to_device(ctx, gd, Device::cpu())};
}

// Forward and backward on ctx, then both again from the same inputs (the second backward reads
// the first run's y and lse, so each kernel's determinism is checked on its own): no atomics,
// fixed summation orders, so the bits agree. Returns the first run's device tensors.
template <class T>
struct DeviceRun {
  Tensor<T> y;
  Tensor<float> lse;
  Tensor<T> dqkv;
};
template <class T>
DeviceRun<T> run_device_twice(const ExecutionContext& ctx, const Tensor<T>& qkv, const Tensor<T>& dy,
                              const ktest::AttentionCase& cs) {
  const auto qd = on_dev(qkv, ctx), dyd = on_dev(dy, ctx);
  DeviceRun<T> r{Tensor<T>::empty(ctx, dy.shape()), Tensor<float>::empty(ctx, {cs.b, cs.h, cs.t}),
                 Tensor<T>::empty(ctx, qkv.shape())};
  kattn::forward(ctx, qd, cs.h, r.y, r.lse);
  kattn::backward(ctx, qd, r.y, dyd, r.lse, cs.h, r.dqkv, false);
  auto y2 = Tensor<T>::empty(ctx, dy.shape());
  auto lse2 = Tensor<float>::empty(ctx, {cs.b, cs.h, cs.t});
  auto dqkv2 = Tensor<T>::empty(ctx, qkv.shape());
  kattn::forward(ctx, qd, cs.h, y2, lse2);
  kattn::backward(ctx, qd, r.y, dyd, r.lse, cs.h, dqkv2, false);
  CHECK(same_bits(r.y, y2, ctx));
  CHECK(same_bits(r.lse, lse2, ctx));
  CHECK(same_bits(r.dqkv, dqkv2, ctx));
  return r;
}

// The autograd op on ctx against direct kernel calls on a fresh draw: the fused node's backward is
// the kernel itself, so y and dqkv have equal bits. Returns the draw and the op's y.
template <class T>
struct AutogradRun {
  Tensor<T> qkv, dy, y;
};
template <class T>
AutogradRun<T> check_autograd_is_direct(const ExecutionContext& ctx, std::mt19937_64& rng,
                                        const ktest::AttentionCase& cs) {
  const std::int64_t C = cs.h * cs.d;
  auto qkv = Tensor<T>::empty(host(), {cs.b, cs.t, 3 * C});
  auto dy = Tensor<T>::empty(host(), {cs.b, cs.t, C});
  ktest::fill_random(qkv, rng, -2, 2);
  ktest::fill_random(dy, rng, -1, 1);
  auto y = Tensor<T>::empty(host(), dy.shape());
  auto g = Tensor<T>::empty(host(), qkv.shape());
  kattn::autograd_attention(ctx, qkv, dy, cs.h, y, g);
  const auto direct = run_direct(ctx, qkv, dy, cs);
  CHECK(ktest::bitwise_equal(y, direct.y));
  CHECK(ktest::bitwise_equal(g, direct.dqkv));
  return {qkv, dy, y};
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

  const auto d = run_device_twice(dev(), qkv, dy, cs);
  require_within("y device vs exact", dev_values(d.y), ex.y, ex.tol_y);
  require_within("lse device vs exact", dev_values(d.lse), ex.lse, ex.tol_lse);
  require_within("dqkv device vs exact", dev_values(d.dqkv), ex.dqkv, ex.tol_dqkv);
  require_within("y device vs host", dev_values(d.y), ktest::values(yh), ex.tol_y, 2.0);
  require_within("lse device vs host", dev_values(d.lse), ktest::values(lh), ex.tol_lse, 2.0);
  require_within("dqkv device vs host", dev_values(d.dqkv), ktest::values(gh), ex.tol_dqkv, 2.0);
}

}  // namespace

TEMPLATE_TEST_CASE("CUDA fused causal attention matches the host's and the exact values, deterministically",
                   "[cuda][kernels][attention]", bf16, f16) {
  const std::uint64_t seed = ktest::fresh_seed();
  std::mt19937_64 rng(seed);
  INFO("seed " << seed);
  for (const std::int64_t d : {32, 64, 128})
    for (const std::int64_t t : {1, 17, 64, 127, 191, 256, 1024}) {
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

// The dS^T workspace holds a group of heads; where the batch's heads do not fit (long sequences)
// the backward runs group by group, with the same bits as all heads in one group.
TEST_CASE("CUDA fused attention backward in head groups gives the one-group bits", "[cuda][kernels][attention]") {
  std::mt19937_64 rng(ktest::fresh_seed());
  for (const std::int64_t d : {32, 64, 128}) {
    const ktest::AttentionCase cs{2, 300, 3, d};
    INFO("D " << d);
    const std::int64_t C = cs.h * cs.d;
    auto qkv = Tensor<bf16>::empty(host(), {cs.b, cs.t, 3 * C});
    auto dy = Tensor<bf16>::empty(host(), {cs.b, cs.t, C});
    ktest::fill_random(qkv, rng, -2, 2);
    ktest::fill_random(dy, rng, -1, 1);
    const auto qd = on_dev(qkv), dyd = on_dev(dy);
    auto yd = Tensor<bf16>::empty(dev(), dy.shape());
    auto ld = Tensor<float>::empty(dev(), {cs.b, cs.h, cs.t});
    kattn::forward(dev(), qd, cs.h, yd, ld);
    auto whole = Tensor<bf16>::empty(dev(), qkv.shape());
    kattn::backward(dev(), qd, yd, dyd, ld, cs.h, whole, false);
    for (const std::int64_t group : {1, 4}) {  // 6 heads: groups of 1, and of 4 then 2
      INFO("group " << group);
      auto grouped = Tensor<bf16>::empty(dev(), qkv.shape());
      kattn::backward_in_groups(dev(), qd, yd, dyd, ld, cs.h, grouped, group);
      CHECK(same_bits(whole, grouped));
    }
  }
}

// TF32: q, k, v and dy are drawn as TF32 numbers, so the kernels' rounding of their inputs is exact
// and the bounds are those above with u_T = 2^-11 for P and dS and f32's for the outputs (each
// output is rounded once, to f32). The host's full-f32 path meets the tighter f32 bounds, so the
// two differ by at most twice the TF32 ones.
TEST_CASE("CUDA fused attention for f32 operands on TF32 tensor cores matches the exact values, deterministically",
          "[cuda][kernels][attention][tf32]") {
  const std::uint64_t seed = ktest::fresh_seed();
  const ExecutionContext& tc = tf32_dev();
  std::mt19937_64 rng(seed);
  INFO("seed " << seed);
  for (const std::int64_t d : {32, 64, 128})
    for (const std::int64_t t : {1, 17, 64, 127, 191, 256, 1024}) {
      const ktest::AttentionCase cs = t < 256 ? ktest::AttentionCase{2, t, 3, d} : ktest::AttentionCase{1, t, 2, d};
      INFO("B " << cs.b << " T " << cs.t << " H " << cs.h << " D " << cs.d);
      const std::int64_t C = cs.h * cs.d;
      auto qkv = Tensor<float>::empty(host(), {cs.b, cs.t, 3 * C});
      auto dy = Tensor<float>::empty(host(), {cs.b, cs.t, C});
      ktest::fill_random(qkv, rng, -2, 2);
      ktest::fill_random(dy, rng, -1, 1);
      round_to_tf32(qkv);
      round_to_tf32(dy);
      const auto ex = ktest::exact_attention(cs, ktest::values(qkv), ktest::values(dy),
                                             ktest::tf32_roundoffs(2 * ktest::unit_roundoff<float>()));
      auto yh = Tensor<float>::empty(host(), dy.shape());
      auto lh = Tensor<float>::empty(host(), {cs.b, cs.h, cs.t});
      auto gh = Tensor<float>::empty(host(), qkv.shape());
      kernels::causal_attention_forward(host(), qkv, cs.h, yh, lh);
      kernels::causal_attention_backward(host(), qkv, yh, dy, lh, cs.h, gh, false);

      const auto d = run_device_twice(tc, qkv, dy, cs);
      require_within("y device vs exact", dev_values(d.y, tc), ex.y, ex.tol_y);
      require_within("lse device vs exact", dev_values(d.lse, tc), ex.lse, ex.tol_lse);
      require_within("dqkv device vs exact", dev_values(d.dqkv, tc), ex.dqkv, ex.tol_dqkv);
      require_within("y device vs host", dev_values(d.y, tc), ktest::values(yh), ex.tol_y, 2.0);
      require_within("dqkv device vs host", dev_values(d.dqkv, tc), ktest::values(gh), ex.tol_dqkv, 2.0);
    }
}

TEST_CASE("TF32 attention rounds raw f32 inputs as cvt.rna does", "[cuda][kernels][attention][tf32]") {
  // The kernels round q, k, v and dO to TF32 as their tiles land: raw f32 inputs give the bits of
  // the same inputs rounded on the host (nearest, ties away from zero) first.
  const ExecutionContext& tc = tf32_dev();
  std::mt19937_64 rng(ktest::fresh_seed());
  for (const std::int64_t d : {32, 64, 128}) {
    INFO("D " << d);
    const ktest::AttentionCase cs{2, 150, 2, d};
    const std::int64_t C = cs.h * cs.d;
    auto raw = Tensor<float>::empty(host(), {cs.b, cs.t, 3 * C});
    auto dy_raw = Tensor<float>::empty(host(), {cs.b, cs.t, C});
    ktest::fill_random(raw, rng, -2, 2);
    ktest::fill_random(dy_raw, rng, -1, 1);
    auto rounded = kernels::clone(host(), raw);
    auto dy_rounded = kernels::clone(host(), dy_raw);
    round_to_tf32(rounded);
    round_to_tf32(dy_rounded);
    REQUIRE_FALSE(ktest::bitwise_equal(raw, rounded));  // the draw has bits below TF32's
    const auto a = run_direct(tc, raw, dy_raw, cs), b = run_direct(tc, rounded, dy_rounded, cs);
    CHECK(ktest::bitwise_equal(a.y, b.y));
    CHECK(ktest::bitwise_equal(a.lse, b.lse));
    CHECK(ktest::bitwise_equal(a.dqkv, b.dqkv));
  }
}

TEST_CASE("autograd causal_self_attention takes the fused kernels for f32 on a TF32 context",
          "[cuda][autograd][attention][tf32]") {
  std::mt19937_64 rng(ktest::fresh_seed());
  const ktest::AttentionCase cs{2, 100, 2, 64};
  const auto r = check_autograd_is_direct<float>(tf32_dev(), rng, cs);
  // Without TF32 the f32 op keeps the unfused full-f32 reference: the same values within the TF32
  // kernels' error, but not their bits.
  auto y_ref = Tensor<float>::empty(host(), r.dy.shape());
  auto g_ref = Tensor<float>::empty(host(), r.qkv.shape());
  kattn::autograd_attention(dev(), r.qkv, r.dy, cs.h, y_ref, g_ref);
  CHECK_FALSE(ktest::bitwise_equal(r.y, y_ref));
}

TEST_CASE("autograd causal_self_attention takes the fused kernels on CUDA for bf16", "[cuda][autograd][attention]") {
  std::mt19937_64 rng(ktest::fresh_seed());
  check_autograd_is_direct<bf16>(dev(), rng, {2, 100, 2, 64});
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
  CHECK_THROWS_WITH(kattn::forward(dev(), q32, 1, y32, l1),
                    Catch::Contains("need a context with ContextOptions::allow_tf32"));
  // An operand on the host.
  CHECK_THROWS_AS(kattn::forward(dev(), Tensor<bf16>::empty(host(), {1, 4, 3 * 64}), 1, y, l1), DeviceError);
}
