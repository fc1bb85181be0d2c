/// @file attention.hpp
/// @brief Fused causal self-attention (flash-attention-2 style) over a fused q|k|v projection,
///        forward and backward, on both backends: no (T, T) tensor is materialised.
///
/// Per batch b and head h, with D = C / heads, scale s = 1 / sqrt(D) and torch's `is_causal=True`
/// mask (query i sees keys j <= i):
///
///     y_i   = sum_j softmax_j(s q_i . k_j) v_j                  (B, T, C), heads merged
///     lse_i = log sum_j exp(s q_i . k_j)                       (B, H, T), natural log
///
/// q, k and v are read in place from the (B, T, 3C) projection ([q | k | v] along the last
/// dimension, each (B, T, H, D)) and y is written in the merged (B, T, C) layout. Rounding points
/// (the unfused autograd reference's): scores, softmax and their row sums in compute_t<T> (f32 for
/// f16 / bf16); P rounded to T for the P V product; O accumulated in f32 and rounded once. The
/// backward recomputes P from lse: dP = dO V^T in f32, dS = s P (dP - D) with
/// D_i = rowsum(dO_i * O_i) in f32, dS rounded to T for dQ = dS K and dK = dS^T Q, dV = P^T dO with
/// P in T; each gradient accumulated in f32 and rounded once (kernels/detail/attention_host.hpp
/// spells out every step). Both backends are deterministic run to run. The CUDA backward keeps
/// dS^T in a workspace of at most 256 MiB (kAttentionDsBytes) between its dK/dV and dQ kernels.
///
/// Host: every float type (f64 in double). CUDA: f16 and bf16, and f32 on a context with
/// ContextOptions::allow_tf32 (products on TF32 tensor cores: q, k, v, dO, P and dS rounded to TF32,
/// as that context's f32 GEMMs round their inputs; everything else f32), with head dim 32, 64 or
/// 128 and 16-byte aligned operands (attention_cuda.cuh); other cases throw.
///
/// @code
///   // qkv (B, T, 3C) bf16; y (B, T, C) bf16; lse (B, H, T) f32
///   kernels::causal_attention_forward(ctx, qkv, heads, y, lse);
///   kernels::causal_attention_backward(ctx, qkv, y, dy, lse, heads, dqkv, /*accumulate=*/false);
/// @endcode
#pragma once

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "mixtape/config.hpp"
#include "mixtape/core/execution_context.hpp"
#include "mixtape/core/tensor.hpp"
#include "mixtape/kernels/detail/attention_host.hpp"
#include "mixtape/kernels/detail/model_checks.hpp"
#include "mixtape/kernels/detail/scalar.hpp"
#include "mixtape/kernels/elementwise.hpp"

#if MIXTAPE_HAS_KERNELS
#include "mixtape/kernels/detail/attention_cuda.cuh"
#endif

namespace mixtape::kernels {

/// The operand types of the fused attention: f64, f32, f16, bf16.
template <class T>
concept AttentionElement =
    std::is_same_v<T, double> || std::is_same_v<T, float> || std::is_same_v<T, f16> || std::is_same_v<T, bf16>;

/// Whether the CUDA kernels take operand type T and head dim `head_dim` (f16 / bf16 / f32, 32 / 64 /
/// 128); f32 also needs a context that allows TF32 (causal_attention_cuda_applies).
template <class T>
constexpr bool causal_attention_cuda_supports(std::int64_t head_dim) noexcept {
  return (std::is_same_v<T, f16> || std::is_same_v<T, bf16> || std::is_same_v<T, float>) &&
         (head_dim == 32 || head_dim == 64 || head_dim == 128);
}

/// Whether the CUDA kernels run for T and `head_dim` on `ctx`: causal_attention_cuda_supports, and
/// for f32 the context's allow_tf32 (the kernels multiply f32 as TF32, as that context's GEMMs do).
template <class T>
bool causal_attention_cuda_applies(const ExecutionContext& ctx, std::int64_t head_dim) noexcept {
  return ctx.is_cuda() && causal_attention_cuda_supports<T>(head_dim) &&
         (!std::is_same_v<T, float> || ctx.allow_tf32());
}

namespace detail {

/// (B, T, heads, D) of a (B, T, 3C) projection; a ShapeError naming the expected layout otherwise.
inline AttentionDims attention_dims(const char* op, const mixtape::detail::TensorBase& qkv, std::int64_t heads) {
  MIXTAPE_EXPECT(qkv.rank() == 3 && heads > 0 && qkv.shape()[2] % (3 * heads) == 0, ShapeError, op,
                 ": expected qkv (B, T, 3C) with C divisible by ", heads, " heads, got ", qkv.shape());
  AttentionDims d;
  d.batch = qkv.shape()[0];
  d.seq = qkv.shape()[1];
  d.heads = heads;
  d.head_dim = qkv.shape()[2] / (3 * heads);
  return d;
}

/// The CUDA kernels' limits: type (f32 only where the context allows TF32), head dim, 16-byte
/// alignment, grid extents.
template <class T>
void expect_attention_cuda(const char* op, const ExecutionContext& ctx, const AttentionDims& d,
                           std::initializer_list<const void*> operands) {
  if constexpr (!std::is_same_v<T, f16> && !std::is_same_v<T, bf16> && !std::is_same_v<T, float>) {
    MIXTAPE_THROW(DTypeError, op, ": the CUDA kernels take f16, bf16 or f32 operands, got ", dtype_v<T>,
                  " (autograd::causal_self_attention runs the unfused reference for it)");
  } else {
    if constexpr (std::is_same_v<T, float>)
      MIXTAPE_EXPECT(ctx.allow_tf32(), DTypeError, op,
                     ": the CUDA kernels multiply f32 operands as TF32, so they need a context with "
                     "ContextOptions::allow_tf32; got one without it (autograd::causal_self_attention runs the "
                     "unfused f32 reference there)");
    MIXTAPE_EXPECT(causal_attention_cuda_supports<T>(d.head_dim), ShapeError, op,
                   ": the CUDA kernels take head dim 32, 64 or 128, got ", d.head_dim);
    MIXTAPE_EXPECT(d.seq <= INT32_MAX && d.batch * d.heads <= 65535, ShapeError, op,
                   ": expected T <= 2^31 - 1 and B * heads <= 65535, got T = ", d.seq, ", B * heads = ",
                   d.batch * d.heads);
    for (const void* p : operands)
      MIXTAPE_EXPECT(reinterpret_cast<std::uintptr_t>(p) % 16 == 0, ValueError, op,
                     ": the CUDA kernels need 16-byte aligned operands (vector loads), got an operand at byte offset ",
                     reinterpret_cast<std::uintptr_t>(p) % 16);
  }
}

}  // namespace detail

MIXTAPE_BACKEND_BEGIN

/// Fused causal self-attention forward.
/// @tparam T  the operand type (f64, f32, f16, bf16; CUDA: f16, bf16, f32 with allow_tf32)
/// @param qkv    (B, T, 3C) dense, [q | k | v], each (B, T, H, D)
/// @param heads  H; C must be divisible by it
/// @param y      (B, T, C) dense, not overlapping qkv
/// @param lse    (B, H, T) dense: the log-sum-exp of each row's scaled scores, for the backward
/// @throws ShapeError for bad shapes or head dims the CUDA kernels lack; DTypeError for f64 on CUDA
///         and for f32 on a CUDA context without allow_tf32; DeviceError for operands off the
///         context's device; ValueError for overlaps.
template <AttentionElement T>
void causal_attention_forward(const ExecutionContext& ctx, const Tensor<T>& qkv, std::int64_t heads,
                              const Tensor<T>& y, const Tensor<compute_t<T>>& lse) {
  constexpr const char* kOp = "causal_attention_forward";
  using A = compute_t<T>;
  detail::expect_dense_all(kOp, ctx, {{"qkv", &qkv}, {"y", &y}, {"lse", &lse}});
  const detail::AttentionDims d = detail::attention_dims(kOp, qkv, heads);
  detail::expect_shape(kOp, "y", y, Shape{d.batch, d.seq, d.width()});
  detail::expect_shape(kOp, "lse", lse, Shape{d.batch, d.heads, d.seq});
  MIXTAPE_EXPECT(!detail::overlaps(y, qkv) && !detail::overlaps(lse, qkv) && !detail::overlaps(lse, y), ValueError,
                 kOp, ": expected y and lse not to overlap qkv or each other");
  const A scale = static_cast<A>(1.0 / std::sqrt(static_cast<double>(d.head_dim)));
  if (ctx.is_cuda()) {
    detail::expect_attention_cuda<T>(kOp, ctx, d, {qkv.data(), y.data(), lse.data()});
#if MIXTAPE_HAS_KERNELS
    if constexpr (causal_attention_cuda_supports<T>(64))
      detail::gpu::causal_attention_forward<T>(ctx, d, qkv.data(), y.data(), lse.data(), scale);
#else
    detail::throw_needs_cu(kOp, ctx.device());
#endif
  } else {
    detail::causal_attention_forward_host<A>(ctx.pool(), d, qkv.data(), y.data(), lse.data(), scale);
  }
  y.storage()->bump_version();
  lse.storage()->bump_version();
}

/// Fused causal self-attention backward: d(qkv) from dy, recomputing the probabilities from lse.
/// @tparam T  the operand type, as in the forward
/// @tparam G  the gradient's type (host: any of f64, f32, f16, bf16; CUDA: T or f32)
/// @param qkv, heads  the forward's
/// @param y      (B, T, C): the forward's output
/// @param dy     (B, T, C): the gradient of y
/// @param lse    (B, H, T): the forward's
/// @param dqkv   (B, T, 3C) dense: dq | dk | dv written (accumulate = false) or added (true);
///               must not overlap the inputs
/// @throws as the forward
template <AttentionElement T, AttentionElement G>
void causal_attention_backward(const ExecutionContext& ctx, const Tensor<T>& qkv, const Tensor<T>& y,
                               const Tensor<T>& dy, const Tensor<compute_t<T>>& lse, std::int64_t heads,
                               const Tensor<G>& dqkv, bool accumulate) {
  constexpr const char* kOp = "causal_attention_backward";
  using A = compute_t<T>;
  detail::expect_dense_all(kOp, ctx, {{"qkv", &qkv}, {"y", &y}, {"dy", &dy}, {"lse", &lse}, {"dqkv", &dqkv}});
  const detail::AttentionDims d = detail::attention_dims(kOp, qkv, heads);
  const Shape ys{d.batch, d.seq, d.width()};
  detail::expect_shape(kOp, "y", y, ys);
  detail::expect_shape(kOp, "dy", dy, ys);
  detail::expect_shape(kOp, "lse", lse, Shape{d.batch, d.heads, d.seq});
  detail::expect_shape(kOp, "dqkv", dqkv, qkv.shape());
  MIXTAPE_EXPECT(!detail::overlaps(dqkv, qkv) && !detail::overlaps(dqkv, y) && !detail::overlaps(dqkv, dy) &&
                     !detail::overlaps(dqkv, lse),
                 ValueError, kOp, ": expected dqkv not to overlap qkv, y, dy or lse");
  const A scale = static_cast<A>(1.0 / std::sqrt(static_cast<double>(d.head_dim)));
  if (ctx.is_cuda()) {
    detail::expect_attention_cuda<T>(kOp, ctx, d, {qkv.data(), y.data(), dy.data(), lse.data(), dqkv.data()});
    MIXTAPE_EXPECT((std::is_same_v<G, T> || std::is_same_v<G, float>), DTypeError, kOp,
                   ": the CUDA kernels write gradients of the operand type or f32, got ", dtype_v<G>, " for ",
                   dtype_v<T>, " operands");
#if MIXTAPE_HAS_KERNELS
    if constexpr (causal_attention_cuda_supports<T>(64) && (std::is_same_v<G, T> || std::is_same_v<G, float>)) {
      auto dvec = Tensor<float>::empty(ctx, lse.shape(), MemoryRole::workspace);  // D = rowsum(dO * O)
      const std::int64_t group = detail::gpu::attention_ds_group_heads(d, sizeof(T));  // heads whose dS^T tiles fit
      auto ds = Tensor<T>::empty(ctx, Shape{group, detail::gpu::attention_ds_tiles(d.seq), 64, 64},
                                 MemoryRole::workspace);
      detail::gpu::causal_attention_backward<T>(ctx, d, qkv.data(), y.data(), dy.data(), lse.data(), dvec.data(),
                                                ds.data(), group, dqkv.data(), scale, accumulate);
    }
#else
    detail::throw_needs_cu(kOp, ctx.device());
#endif
  } else {
    detail::causal_attention_backward_host<A>(ctx.pool(), d, qkv.data(), y.data(), dy.data(), lse.data(),
                                              dqkv.data(), scale, accumulate);
  }
  dqkv.storage()->bump_version();
}

MIXTAPE_BACKEND_END

}  // namespace mixtape::kernels
