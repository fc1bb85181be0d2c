/// @file loss.hpp
/// @brief Losses on both backends: cross-entropy with integer targets (fused log-softmax; per-row
///        losses, their mean as a device scalar, and the logits' gradient) and mean-squared error.
///
/// Cross-entropy is PyTorch's `F.cross_entropy(logits.float().view(-1, V), targets)` (mean
/// reduction): per row loss = logsumexp(z) - z[target], computed in `compute_t` of the logits
/// (float for f16 / bf16 / f32, double for f64); losses, the saved logsumexp and the mean are in a
/// loss type L (float, or double for f64 models). The mean is summed in double in a fixed order
/// (two passes on CUDA) and written to a 1-element tensor on the device: nothing syncs. The
/// backward takes the loss gradient as a device scalar (dloss, 1 normally; a loss scale folds in
/// there) and writes dlogits = (softmax(z) - onehot(target)) * dloss / N in the gradient type,
/// assigned or accumulated. `cross_entropy_rows` and `cross_entropy_mean` are the forward's two
/// halves, for a batch whose logits are formed a chunk of rows at a time (linear_cross_entropy).
///
/// Out-of-range targets: the host throws ValueError naming the row and the value; CUDA never
/// reads out of bounds, makes the row's loss and gradient NaN and records the row in the optional
/// status tensor (detail/index_status.hpp: reset_index_status / check_index_status).
///
/// MSE is `F.mse_loss(x.float(), y)`: loss = mean((x - y)^2) as L (block sums in the compute
/// type, added in double), dx = 2 (x - y) dloss / n (element-wise: the same bits on host and CUDA).
///
/// @code
///   kernels::cross_entropy_forward(ctx, logits, targets, losses, lse, loss);   // (B*T, V) -> loss
///   kernels::cross_entropy_rows(ctx, logits_chunk, targets_chunk, losses_chunk, lse_chunk);  // no mean
///   kernels::cross_entropy_rows_grad(ctx, z_chunk, t_chunk, l_chunk, lse_chunk, z_chunk);  // + softmax - onehot
///   kernels::cross_entropy_mean(ctx, losses, loss);                             // after every chunk
///   kernels::fill(ctx, dloss, 1.0f);
///   kernels::cross_entropy_backward(ctx, logits, targets, lse, dloss, logits, false);  // in place
///   kernels::mse_forward(ctx, out, y, loss);
///   kernels::mse_backward(ctx, out, y, dloss, dout, false);
/// @endcode
#pragma once

#include <concepts>
#include <cstdint>

#include "mixtape/config.hpp"
#include "mixtape/core/execution_context.hpp"
#include "mixtape/core/tensor.hpp"
#include "mixtape/kernels/detail/index_status.hpp"
#include "mixtape/kernels/detail/loss_host.hpp"
#include "mixtape/kernels/detail/model_checks.hpp"
#include "mixtape/kernels/detail/scalar.hpp"
#include "mixtape/kernels/elementwise.hpp"

#if MIXTAPE_HAS_KERNELS
#include "mixtape/kernels/detail/loss_cuda.cuh"
#endif

namespace mixtape::kernels {

namespace detail {

/// Checks the logits / targets pair; returns (rows, vocab).
template <class T, class I>
RowShape cross_entropy_shape(const char* op, const Tensor<T>& logits, const Tensor<I>& targets) {
  const auto rs = row_shape(op, "logits", logits);
  MIXTAPE_EXPECT(rs.cols >= 1, ShapeError, op, ": expected logits with at least one class, got shape ", logits.shape());
  expect_shape(op, "targets (the logits' leading shape)", targets, leading_shape(logits));
  expect_int32_count(op, "rows", rs.rows);
  return rs;
}

}  // namespace detail

MIXTAPE_BACKEND_BEGIN

namespace impl {
/// The checks and the launch of the cross-entropy forward; the mean only when `mean_loss` is given.
template <FloatElement T, IndexElement I, StatElement L>
void cross_entropy_forward(const char* op, const ExecutionContext& ctx, const Tensor<T>& logits, const Tensor<I>& targets,
                           const Tensor<L>& losses, const Tensor<L>& lse, const Tensor<L>* mean_loss,
                           const Tensor<std::int64_t>& status) {
  using A = compute_t<T>;
  detail::expect_dense_all(op, ctx, {{"logits", &logits}, {"targets", &targets}, {"losses", &losses}, {"lse", &lse}});
  const auto rs = detail::cross_entropy_shape(op, logits, targets);
  detail::expect_shape(op, "losses", losses, targets.shape());
  detail::expect_shape(op, "lse", lse, targets.shape());
  if (mean_loss != nullptr) {
    detail::expect_dense(op, "mean_loss", ctx, *mean_loss);
    detail::expect_scalar(op, "mean_loss", *mean_loss);
  }
  detail::expect_status(op, ctx, status);
  L* mean = mean_loss != nullptr ? mean_loss->data() : nullptr;
  if (ctx.is_cuda()) {
#if MIXTAPE_HAS_KERNELS
    detail::gpu::cross_entropy_forward<A>(ctx, logits.data(), targets.data(), losses.data(), lse.data(), mean, rs.rows,
                                          rs.cols, status.data());
#else
    detail::throw_needs_cu(op, ctx.device());
#endif
  } else {
    detail::cross_entropy_forward_host<A>(ctx.pool(), logits.data(), targets.data(), losses.data(), lse.data(), mean,
                                          rs.rows, rs.cols);
  }
  losses.storage()->bump_version();
  lse.storage()->bump_version();
  if (mean_loss != nullptr) mean_loss->storage()->bump_version();
}
}  // namespace impl

/// Per-row cross-entropy losses, their logsumexp (saved for the backward) and their mean.
/// @tparam T  the logits' element type
/// @tparam I  the targets' element type (int32 or int64)
/// @tparam L  the loss type (float or double)
/// @param logits     (..., V)
/// @param targets    the logits' leading shape (...), values in [0, V)
/// @param losses     targets' shape
/// @param lse        targets' shape: logsumexp of each row
/// @param mean_loss  one element: the mean of `losses` over all rows
/// @param status     optional (CUDA): records an out-of-range target (index_status.hpp)
/// @throws ValueError (host) naming the row and value of an out-of-range target; ShapeError,
///         DeviceError, BackendError as usual.
template <FloatElement T, IndexElement I, StatElement L>
void cross_entropy_forward(const ExecutionContext& ctx, const Tensor<T>& logits, const Tensor<I>& targets,
                           const Tensor<L>& losses, const Tensor<L>& lse, const Tensor<L>& mean_loss,
                           const Tensor<std::int64_t>& status = {}) {
  impl::cross_entropy_forward("cross_entropy_forward", ctx, logits, targets, losses, lse, &mean_loss, status);
}

/// cross_entropy_forward without the mean: the per-row losses and lse of a chunk of rows, whose
/// mean over the whole batch `cross_entropy_mean` takes afterwards (the same bits as one call).
/// Rows and an out-of-range target's reported row are relative to the chunk.
template <FloatElement T, IndexElement I, StatElement L>
void cross_entropy_rows(const ExecutionContext& ctx, const Tensor<T>& logits, const Tensor<I>& targets,
                        const Tensor<L>& losses, const Tensor<L>& lse, const Tensor<std::int64_t>& status = {}) {
  impl::cross_entropy_forward("cross_entropy_rows", ctx, logits, targets, losses, lse, static_cast<const Tensor<L>*>(nullptr),
                              status);
}

/// cross_entropy_rows and, in the same call, the gradient of the rows' *sum* of losses:
/// dlogits = softmax(logits) - onehot(targets) in the logits' type (values in [-1, 1], so no half
/// format overflows and no 1/N underflows), for a caller that applies dloss / N later
/// (linear_cross_entropy). The same values as cross_entropy_rows then cross_entropy_backward with
/// dloss = N (bit for bit on the host). CUDA reads the logits once when a row fits the one-pass
/// kernel's registers (2048 < V <= 65,536 in f16 / bf16, 32,768 in f32, 16-byte aligned rows), else
/// runs the forward and backward kernels.
/// @param logits   (..., V)
/// @param targets  the logits' leading shape, values in [0, V)
/// @param losses, lse  targets' shape
/// @param dlogits  the logits' shape: the logits tensor itself (in place) or not overlapping it
/// @param status   optional (CUDA), as in the forward
template <FloatElement T, IndexElement I, StatElement L>
void cross_entropy_rows_grad(const ExecutionContext& ctx, const Tensor<T>& logits, const Tensor<I>& targets,
                             const Tensor<L>& losses, const Tensor<L>& lse, const Tensor<T>& dlogits,
                             const Tensor<std::int64_t>& status = {}) {
  constexpr const char* kOp = "cross_entropy_rows_grad";
  using A = compute_t<T>;
  detail::expect_dense_all(kOp, ctx, {{"logits", &logits}, {"targets", &targets}, {"losses", &losses}, {"lse", &lse},
                                      {"dlogits", &dlogits}});
  const auto rs = detail::cross_entropy_shape(kOp, logits, targets);
  detail::expect_shape(kOp, "losses", losses, targets.shape());
  detail::expect_shape(kOp, "lse", lse, targets.shape());
  detail::expect_shape(kOp, "dlogits", dlogits, logits.shape());
  detail::expect_status(kOp, ctx, status);
  MIXTAPE_EXPECT(dlogits.data() == logits.data() || !detail::overlaps(dlogits, logits), ValueError, kOp,
                 ": expected dlogits to be the logits tensor itself or not to overlap it");
  if (ctx.is_cuda()) {
#if MIXTAPE_HAS_KERNELS
    detail::gpu::cross_entropy_rows_grad<A>(ctx, logits.data(), targets.data(), losses.data(), lse.data(),
                                            dlogits.data(), rs.rows, rs.cols, status.data());
#else
    detail::throw_needs_cu(kOp, ctx.device());
#endif
  } else {
    detail::cross_entropy_rows_grad_host<A>(ctx.pool(), logits.data(), targets.data(), losses.data(), lse.data(),
                                            dlogits.data(), rs.rows, rs.cols);
  }
  losses.storage()->bump_version();
  lse.storage()->bump_version();
  dlogits.storage()->bump_version();
}

/// mean_loss = the mean of the per-row `losses`, summed in double in the forward's fixed order.
/// @param losses     (N) dense, N >= 1
/// @param mean_loss  one element
template <StatElement L>
void cross_entropy_mean(const ExecutionContext& ctx, const Tensor<L>& losses, const Tensor<L>& mean_loss) {
  constexpr const char* kOp = "cross_entropy_mean";
  detail::expect_dense_all(kOp, ctx, {{"losses", &losses}, {"mean_loss", &mean_loss}});
  MIXTAPE_EXPECT(losses.rank() == 1 && losses.numel() >= 1, ShapeError, kOp,
                 ": expected per-row losses of shape (N) with N >= 1, got ", losses.shape());
  detail::expect_scalar(kOp, "mean_loss", mean_loss);
  if (ctx.is_cuda()) {
#if MIXTAPE_HAS_KERNELS
    detail::gpu::loss_mean(ctx, losses.data(), mean_loss.data(), losses.numel());
#else
    detail::throw_needs_cu(kOp, ctx.device());
#endif
  } else {
    detail::loss_mean_host(losses.data(), mean_loss.data(), losses.numel());
  }
  mean_loss.storage()->bump_version();
}

/// dlogits = (softmax(logits) - onehot(targets)) * dloss / N (assign), or dlogits += that.
/// @tparam T  the logits' element type
/// @tparam I  the targets' element type
/// @tparam L  the loss type
/// @tparam G  dlogits' element type
/// @param logits, targets, lse  the forward's operands and its saved logsumexp
/// @param dloss    one element on the context's device: the gradient of the mean loss (times a
///                 loss scale, if any)
/// @param dlogits  the logits' shape; may be the logits tensor itself (in place, not accumulating,
///                 G == T), otherwise must not overlap it
/// @param status   optional (CUDA), as in the forward
template <FloatElement T, IndexElement I, StatElement L, FloatElement G>
void cross_entropy_backward(const ExecutionContext& ctx, const Tensor<T>& logits, const Tensor<I>& targets,
                            const Tensor<L>& lse, const Tensor<L>& dloss, const Tensor<G>& dlogits, bool accumulate,
                            const Tensor<std::int64_t>& status = {}) {
  constexpr const char* kOp = "cross_entropy_backward";
  using A = compute_t<T>;
  detail::expect_dense_all(kOp, ctx, {{"logits", &logits}, {"targets", &targets}, {"lse", &lse}, {"dloss", &dloss},
                                      {"dlogits", &dlogits}});
  const auto rs = detail::cross_entropy_shape(kOp, logits, targets);
  detail::expect_shape(kOp, "lse", lse, targets.shape());
  detail::expect_scalar(kOp, "dloss", dloss);
  detail::expect_shape(kOp, "dlogits", dlogits, logits.shape());
  detail::expect_status(kOp, ctx, status);
  const bool in_place = static_cast<const void*>(dlogits.data()) == static_cast<const void*>(logits.data()) &&
                        std::same_as<T, G> && !accumulate;
  MIXTAPE_EXPECT(in_place || !detail::overlaps(dlogits, logits), ValueError, kOp,
                 ": expected dlogits to be the logits tensor itself (same type, not accumulating) or not to overlap it");
  if (ctx.is_cuda()) {
#if MIXTAPE_HAS_KERNELS
    detail::gpu::cross_entropy_backward<A>(ctx, logits.data(), targets.data(), lse.data(), dloss.data(), dlogits.data(),
                                           rs.rows, rs.cols, accumulate, status.data());
#else
    detail::throw_needs_cu(kOp, ctx.device());
#endif
  } else {
    detail::cross_entropy_backward_host<A>(ctx.pool(), logits.data(), targets.data(), lse.data(), dloss.data(),
                                           dlogits.data(), rs.rows, rs.cols, accumulate);
  }
  dlogits.storage()->bump_version();
}

/// cross_entropy_forward with type-erased targets (i32 or i64; DTypeError otherwise), e.g. from
/// a token file reader.
/// @tparam T  the logits' element type
/// @tparam L  the loss type
template <FloatElement T, StatElement L>
void cross_entropy_forward(const ExecutionContext& ctx, const Tensor<T>& logits, const std::same_as<TensorRef> auto& targets,
                           const Tensor<L>& losses, const Tensor<L>& lse, const Tensor<L>& mean_loss,
                           const Tensor<std::int64_t>& status = {}) {
  detail::visit_index_dtype("cross_entropy_forward", targets, [&](const auto& t) {
    kernels::cross_entropy_forward(ctx, logits, t, losses, lse, mean_loss, status);
  });
}

/// cross_entropy_backward with type-erased targets (i32 or i64; DTypeError otherwise).
/// @tparam T  the logits' element type
/// @tparam L  the loss type
/// @tparam G  dlogits' element type
template <FloatElement T, StatElement L, FloatElement G>
void cross_entropy_backward(const ExecutionContext& ctx, const Tensor<T>& logits, const std::same_as<TensorRef> auto& targets,
                            const Tensor<L>& lse, const Tensor<L>& dloss, const Tensor<G>& dlogits, bool accumulate,
                            const Tensor<std::int64_t>& status = {}) {
  detail::visit_index_dtype("cross_entropy_backward", targets, [&](const auto& t) {
    kernels::cross_entropy_backward(ctx, logits, t, lse, dloss, dlogits, accumulate, status);
  });
}

/// loss = mean((x - target)^2) over all elements, as L.
/// @tparam X  x's element type
/// @tparam Y  the target's element type
/// @tparam L  the loss type (float or double)
/// @param x       any shape, dense
/// @param target  x's shape, dense
/// @param loss    one element
template <FloatElement X, FloatElement Y, StatElement L>
void mse_forward(const ExecutionContext& ctx, const Tensor<X>& x, const Tensor<Y>& target, const Tensor<L>& loss) {
  constexpr const char* kOp = "mse_forward";
  using A = compute_t<X, Y>;
  detail::expect_dense_all(kOp, ctx, {{"x", &x}, {"target", &target}, {"loss", &loss}});
  detail::expect_shape(kOp, "target", target, x.shape());
  detail::expect_scalar(kOp, "loss", loss);
  if (ctx.is_cuda()) {
#if MIXTAPE_HAS_KERNELS
    detail::gpu::mse_forward<A>(ctx, x.data(), target.data(), loss.data(), x.numel());
#else
    detail::throw_needs_cu(kOp, ctx.device());
#endif
  } else {
    detail::mse_forward_host<A>(ctx.pool(), x.data(), target.data(), loss.data(), x.numel());
  }
  loss.storage()->bump_version();
}

/// dx = 2 (x - target) dloss / n (assign), or dx += that; element-wise (any strides).
/// @tparam X   x's element type
/// @tparam Y   the target's element type
/// @tparam L   the loss type
/// @tparam DX  dx's element type
/// @param dloss  one element on the context's device
/// @param dx     x's shape; may be x itself when not accumulating
template <FloatElement X, FloatElement Y, StatElement L, FloatElement DX>
void mse_backward(const ExecutionContext& ctx, const Tensor<X>& x, const Tensor<Y>& target, const Tensor<L>& dloss,
                  const Tensor<DX>& dx, bool accumulate) {
  constexpr const char* kOp = "mse_backward";
  detail::expect_dense(kOp, "dloss", ctx, dloss);
  detail::expect_scalar(kOp, "dloss", dloss);
  const std::int64_t n = x.numel();
  if (accumulate) {
    detail::expect_elementwise(kOp, ctx, dx, x, target, dx);
    impl::run_elementwise(kOp, ctx, detail::MapOp<detail::MseGradAccumulate<L>, DX>{{dloss.data(), n}}, dx, x, target, dx);
  } else {
    detail::expect_elementwise(kOp, ctx, dx, x, target);
    impl::run_elementwise(kOp, ctx, detail::MapOp<detail::MseGrad<L>, DX>{{dloss.data(), n}}, dx, x, target);
  }
}

MIXTAPE_BACKEND_END

}  // namespace mixtape::kernels
