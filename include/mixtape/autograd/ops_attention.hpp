/// @file ops_attention.hpp
/// @brief Differentiable causal self-attention over a fused q|k|v projection: torch's
///        `scaled_dot_product_attention(q, k, v, is_causal=True)` for the GPT block, by the fused
///        (flash-attention) kernels where they apply, else by the unfused reference below.
///
/// Which path runs (AttentionImpl): `automatic` (the default) takes the fused path
/// (ops_flash_attention.hpp, kernels/attention.hpp) on CUDA for f16 / bf16, and for f32 on a
/// context that allows TF32 (whose f32 GEMMs, the reference's included, are TF32 too), with head
/// dim 32, 64 or 128 and a 16-byte aligned qkv; otherwise (the host, f64 and full-f32 on CUDA,
/// other head dims) the reference. On the host the reference is the faster one: its four products
/// run in the packed host GEMM, where the fused host kernel is a scalar row loop (4x slower on the
/// small GPT's training step, measured with perf); `fused` still saves the (B*H, T, T) memory
/// there. `fused` and `reference` force one (`fused` throws where its kernels do not apply). Both
/// keep the same rounding points; the fused node saves qkv, y and lse (B, H, T) instead of the
/// probabilities.
///
/// The unfused reference path, written with the library's own GEMM and softmax kernels:
///
///   Q, K, V (B*H, T, D)  <- head split of qkv (B, T, 3C)           (strided copies)
///   S = Q K^T            in the accumulate type (f32; f64 for f64) (never rounded to a half type)
///   P = softmax(S / sqrt(D), causal) written in T                   (f32 math)
///   Y = P V              in T, merged back to (B, T, C)
///
/// which is what flash attention computes for f16/bf16 operands (scores and softmax in f32, P
/// rounded to the operand type for the second GEMM), so the fused kernels are checked against this
/// one element for element (tests/kernels/attention_test.cpp). Backward saves Q, K, V and P (not S):
///
///   dP = dY V^T (accumulate type),  dS = P * (dP - rowsum(dP * P)) / sqrt(D) (written in T),
///   dQ = dS K,  dK = dS^T Q,  dV = P^T dY,  all scattered back into d(qkv).
///
/// The (B*H, T, T) scores make this O(T^2) in memory per head; it is meant for the small models
/// and as the reference.
#pragma once

#include <cmath>
#include <cstdint>

#include "mixtape/autograd/ops_flash_attention.hpp"
#include "mixtape/autograd/ops_linear.hpp"

namespace mixtape::autograd {

namespace detail {

/// Part `part` (0: q, 1: k, 2: v) of a dense (B, T, 3C) projection as a (B, H, T, D) view.
template <class T>
Tensor<T> qkv_head_view(const Tensor<T>& qkv, int part, std::int64_t heads) {
  const std::int64_t b = qkv.size(0), t = qkv.size(1), c3 = qkv.size(2), c = c3 / 3, d = c / heads;
  Layout l;
  l.shape = Shape{b, heads, t, d};
  l.strides = {t * c3, d, c3, 1};
  l.offset = qkv.offset() + part * c;
  return Tensor<T>(qkv.storage(), l);
}

/// A dense (B, T, C) tensor as a (B, H, T, D) view (the heads interleaved along C).
template <class T>
Tensor<T> merged_head_view(const Tensor<T>& y, std::int64_t heads) {
  const std::int64_t b = y.size(0), t = y.size(1), c = y.size(2), d = c / heads;
  Layout l;
  l.shape = Shape{b, heads, t, d};
  l.strides = {t * c, d, c, 1};
  l.offset = y.offset();
  return Tensor<T>(y.storage(), l);
}

}  // namespace detail

/// Which implementation causal_self_attention runs.
enum class AttentionImpl : std::uint8_t {
  automatic,  ///< fused where its CUDA kernels apply (f16 / bf16, head dim 32 / 64 / 128), else the reference
  fused,      ///< the flash-attention kernels (throws where they do not apply)
  reference,  ///< the unfused GEMM + softmax path (materialises the (B*H, T, T) probabilities)
};

MIXTAPE_BACKEND_BEGIN
namespace nodes {

template <GradElement T>
struct CausalAttentionNode final : Node {
  SavedTensor q, k, v, p;  // (B*H, T, D) x3 and the probabilities (B*H, T, T)
  std::int64_t heads;
  double scale;
  CausalAttentionNode(const Tensor<T>& q_, const Tensor<T>& k_, const Tensor<T>& v_, const Tensor<T>& p_,
                      std::int64_t h, double s)
      : q(q_), k(k_), v(v_), p(p_), heads(h), scale(s) {}
  const char* name() const noexcept override { return "causal_self_attention"; }

  void backward(Tape& tape) override {
    using S = kernels::compute_t<T>;
    const ExecutionContext& ctx = tape.ctx();
    const auto qv = q.get<T>(name()), kv = k.get<T>(name()), vv = v.get<T>(name()), pv = p.get<T>(name());
    const auto gy = out_grad<T>(tape, *this);  // (B, T, C), tape-owned: dense
    const std::int64_t bh = qv.size(0), t = qv.size(1), d = qv.size(2), b = bh / heads;
    auto dy = Tensor<T>::empty(ctx, qv.shape(), MemoryRole::activations);  // (B*H, T, D)
    kernels::copy(ctx, autograd::detail::merged_head_view(gy, heads), dy.reshape({b, heads, t, d}));
    auto dp = Tensor<S>::empty(ctx, pv.shape(), MemoryRole::workspace);  // (B*H, T, T)
    blas::matmul(ctx, dy, vv.transposed(-2, -1), dp);
    auto ds = Tensor<T>::empty(ctx, pv.shape(), MemoryRole::workspace);
    kernels::softmax_backward(ctx, pv, dp, ds, scale, kernels::SoftmaxMask::causal, /*accumulate=*/false);
    Tensor<T> parts[3] = {Tensor<T>::empty(ctx, qv.shape(), MemoryRole::activations),
                          Tensor<T>::empty(ctx, qv.shape(), MemoryRole::activations),
                          Tensor<T>::empty(ctx, qv.shape(), MemoryRole::activations)};
    blas::matmul(ctx, ds, kv, parts[0]);                      // dQ = dS K
    blas::matmul(ctx, ds.transposed(-2, -1), qv, parts[1]);   // dK = dS^T Q
    blas::matmul(ctx, pv.transposed(-2, -1), dy, parts[2]);   // dV = P^T dY
    write_grad<T>(tape, inputs[0], [&](const auto& g, bool acc) {
      for (int i = 0; i < 3; ++i) {
        const auto dst = autograd::detail::qkv_head_view(g, i, heads);
        const auto src = parts[i].reshape({b, heads, t, d});
        if (acc) {
          kernels::map(ctx, autograd::detail::AccumulateInto{}, dst, src, dst);
        } else {
          kernels::map(ctx, kernels::Identity{}, dst, src);
        }
      }
    });
  }
};

}  // namespace nodes

/// Causal multi-head self-attention of a fused projection: y = softmax(q k^T / sqrt(D), causal) v
/// per head, heads merged. T is the operand type (the policy's compute type: bf16 under
/// bf16-mixed, f32 under 32-true); scores and softmax math are in kernels::compute_t<T>.
/// // qkv (B, T, 3C), [q | k | v] along the last dimension, each (B, T, H, D) -> y (B, T, C)
/// @param impl  which path runs (see the file comment); automatic by default
/// @throws ShapeError when qkv is not rank 3 or 3C is not divisible by 3 * heads; with
///         AttentionImpl::fused, the fused kernels' errors where they do not apply
template <GradElement T>
Var<T> causal_self_attention(Tape& tape, const Var<T>& qkv, std::int64_t heads,
                             AttentionImpl impl = AttentionImpl::automatic) {
  using S = kernels::compute_t<T>;
  const ExecutionContext& ctx = tape.ctx();
  MIXTAPE_EXPECT(qkv.shape().rank() == 3 && heads > 0 && qkv.shape()[2] % (3 * heads) == 0, ShapeError,
                 "causal_self_attention: expected qkv (B, T, 3C) with C divisible by ", heads, " heads, got ",
                 qkv.shape());
  const Tensor<T> x = qkv.value().is_contiguous() ? qkv.value() : kernels::contiguous(ctx, qkv.value());
  const std::int64_t b = x.size(0), t = x.size(1), c = x.size(2) / 3, d = c / heads;
  const bool fused_applies = kernels::causal_attention_cuda_applies<T>(ctx, d) && b * heads <= 65535 &&
                            reinterpret_cast<std::uintptr_t>(x.data()) % 16 == 0;
  if (impl == AttentionImpl::fused || (impl == AttentionImpl::automatic && fused_applies))
    return nodes::flash_self_attention(tape, qkv, x, heads);
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  Tensor<T> q = Tensor<T>::empty(ctx, {b * heads, t, d}, MemoryRole::activations);
  Tensor<T> k = Tensor<T>::empty(ctx, {b * heads, t, d}, MemoryRole::activations);
  Tensor<T> v = Tensor<T>::empty(ctx, {b * heads, t, d}, MemoryRole::activations);
  kernels::copy(ctx, autograd::detail::qkv_head_view(x, 0, heads), q.reshape({b, heads, t, d}));
  kernels::copy(ctx, autograd::detail::qkv_head_view(x, 1, heads), k.reshape({b, heads, t, d}));
  kernels::copy(ctx, autograd::detail::qkv_head_view(x, 2, heads), v.reshape({b, heads, t, d}));
  auto s = Tensor<S>::empty(ctx, {b * heads, t, t}, MemoryRole::workspace);
  blas::matmul(ctx, q, k.transposed(-2, -1), s);
  auto p = Tensor<T>::empty(ctx, {b * heads, t, t}, MemoryRole::activations);
  kernels::softmax_forward(ctx, s, p, scale, kernels::SoftmaxMask::causal);
  auto yh = Tensor<T>::empty(ctx, {b * heads, t, d}, MemoryRole::workspace);
  blas::matmul(ctx, p, v, yh);
  auto y = autograd::detail::make_output<T>(tape, {b, t, c}, qkv.device(), qkv.requires_grad());
  kernels::copy(ctx, yh.reshape({b, heads, t, d}), autograd::detail::merged_head_view(y.value(), heads));
  if (y.requires_grad())
    tape.record<nodes::CausalAttentionNode<T>>(std::array{qkv.slot()}, std::array{y.slot()}, q, k, v, p, heads, scale);
  return y;
}

MIXTAPE_BACKEND_END
}  // namespace mixtape::autograd
