/// @file broadcast.hpp
/// @brief The broadcast ops of the linear / bias and residual paths, on both backends: a bias
///        added along the last dimension and its gradient (column sums over every leading
///        dimension), and the positional-embedding add (x (B, T, C) + pos (T, C)) and its gradient.
///
/// Adds compute in `compute_t<X, B>` (float for narrow operands, double with an f64 one) and round
/// once: host and CUDA give the same bits. Gradients are deterministic column reductions (fixed
/// row chunks, fixed lane order, a second pass over the chunk partials; broadcast_host.hpp), with
/// the same bits on host and CUDA; no atomics. Every gradient takes `accumulate`: false assigns
/// (the tape's first write), true adds to the existing values.
///
/// Operands are dense row-major views (ShapeError otherwise).
///
/// @code
///   kernels::add_bias(ctx, h, b, h);                       // h (B, T, 4C) += b (4C), in place
///   kernels::bias_grad(ctx, dh, db, false);                 // db (4C) = sum over B, T of dh
///   kernels::add_positional(ctx, tok, wpe_t, x);            // x (B, T, C) = tok + wpe_t (T, C)
///   kernels::positional_grad(ctx, dx, dwpe_t, true);        // dwpe_t (T, C) += sum over B of dx
/// @endcode
#pragma once

#include <cstdint>

#include "mixtape/config.hpp"
#include "mixtape/core/execution_context.hpp"
#include "mixtape/core/tensor.hpp"
#include "mixtape/kernels/detail/broadcast_host.hpp"
#include "mixtape/kernels/detail/model_checks.hpp"
#include "mixtape/kernels/detail/scalar.hpp"
#include "mixtape/kernels/elementwise.hpp"

#if MIXTAPE_HAS_KERNELS
#include "mixtape/kernels/detail/broadcast_cuda.cuh"
#endif

namespace mixtape::kernels {

MIXTAPE_BACKEND_BEGIN

namespace impl {

/// y (rows, cols) = x + b (cols) on the context's backend; operands already checked.
template <class X, class B, class Y>
void run_add_bias(const char* name, const ExecutionContext& ctx, const Tensor<X>& x, const Tensor<B>& b,
                  const Tensor<Y>& y, std::int64_t rows, std::int64_t cols) {
  using A = compute_t<X, B>;
  if (ctx.is_cuda()) {
#if MIXTAPE_HAS_KERNELS
    (void)name;
    detail::gpu::add_bias<A>(ctx, x.data(), b.data(), y.data(), rows, cols);
#else
    detail::throw_needs_cu(name, ctx.device());
#endif
  } else {
    detail::add_bias_host<A>(ctx.pool(), x.data(), b.data(), y.data(), rows, cols);
  }
  y.storage()->bump_version();
}

/// Column sums of dy (rows, cols) into d (cols); operands already checked.
template <class G, class D>
void run_column_sum(const char* name, const ExecutionContext& ctx, const Tensor<G>& dy, const Tensor<D>& d,
                    std::int64_t rows, std::int64_t cols, bool accumulate) {
  using A = compute_t<G, D>;
  const detail::BiasGradTerm<A, G> term{dy.data(), cols};
  const detail::ColumnOutputs<D, 1> out{{d.data()}};
  if (ctx.is_cuda()) {
#if MIXTAPE_HAS_KERNELS
    (void)name;
    detail::gpu::column_reduce(ctx, term, rows, cols, out, accumulate);
#else
    detail::throw_needs_cu(name, ctx.device());
#endif
  } else {
    detail::column_reduce_host(ctx.pool(), term, rows, cols, out, accumulate);
  }
  d.storage()->bump_version();
}

/// Checks of a (..., T, C) tensor against a (T, C) one; returns (rows = leading product, T * C).
inline detail::RowShape positional_shape(const char* op, const char* what, const mixtape::detail::TensorBase& x,
                                         const mixtape::detail::TensorBase& pos) {
  MIXTAPE_EXPECT(pos.rank() == 2, ShapeError, op, ": expected the positional tensor of shape (T, C), got ", pos.shape());
  MIXTAPE_EXPECT(x.rank() >= 2 && x.shape()[x.rank() - 2] == pos.shape()[0] && x.shape()[x.rank() - 1] == pos.shape()[1],
                 ShapeError, op, ": expected ", what, " of shape (..., ", pos.shape()[0], ", ", pos.shape()[1],
                 ") to match the positional tensor ", pos.shape(), ", got ", x.shape());
  const std::int64_t cols = pos.numel();
  return {cols == 0 ? 0 : x.numel() / cols, cols};
}

}  // namespace impl

/// y = x + bias, the bias broadcast along every leading dimension.
/// @tparam X  x's element type
/// @tparam B  the bias element type
/// @tparam Y  y's element type
/// @param x     (..., C)
/// @param bias  (C)
/// @param y     x's shape; may be x itself (in place)
/// @throws ShapeError for mismatched or strided operands; DeviceError, BackendError as usual.
template <FloatElement X, FloatElement B, FloatElement Y>
void add_bias(const ExecutionContext& ctx, const Tensor<X>& x, const Tensor<B>& bias, const Tensor<Y>& y) {
  constexpr const char* kOp = "add_bias";
  detail::expect_dense(kOp, "x", ctx, x);
  detail::expect_dense(kOp, "the bias", ctx, bias);
  detail::expect_dense(kOp, "y", ctx, y);
  const auto rs = detail::row_shape(kOp, "x", x);
  detail::expect_shape(kOp, "the bias", bias, Shape{rs.cols});
  detail::expect_shape(kOp, "y", y, x.shape());
  impl::run_add_bias(kOp, ctx, x, bias, y, rs.rows, rs.cols);
}

/// dbias = sum of dy over every leading dimension (assign), or dbias += that sum (accumulate).
/// @tparam G  dy's element type
/// @tparam D  dbias's element type (the parameter-gradient type)
/// @param dy     (..., C)
/// @param dbias  (C)
template <FloatElement G, FloatElement D>
void bias_grad(const ExecutionContext& ctx, const Tensor<G>& dy, const Tensor<D>& dbias, bool accumulate) {
  constexpr const char* kOp = "bias_grad";
  detail::expect_dense(kOp, "dy", ctx, dy);
  detail::expect_dense(kOp, "dbias", ctx, dbias);
  const auto rs = detail::row_shape(kOp, "dy", dy);
  detail::expect_shape(kOp, "dbias", dbias, Shape{rs.cols});
  impl::run_column_sum(kOp, ctx, dy, dbias, rs.rows, rs.cols, accumulate);
}

/// y[..., t, c] = x[..., t, c] + pos[t, c] (GPT: token embeddings plus the first T rows of the
/// position table, e.g. `wpe.slice(0, 0, T)`).
/// @tparam X  x's element type
/// @tparam P  the positional table's element type
/// @tparam Y  y's element type
/// @param x    (B, T, C) (any number of leading dimensions)
/// @param pos  (T, C)
/// @param y    x's shape; may be x itself
template <FloatElement X, FloatElement P, FloatElement Y>
void add_positional(const ExecutionContext& ctx, const Tensor<X>& x, const Tensor<P>& pos, const Tensor<Y>& y) {
  constexpr const char* kOp = "add_positional";
  detail::expect_dense(kOp, "x", ctx, x);
  detail::expect_dense(kOp, "pos", ctx, pos);
  detail::expect_dense(kOp, "y", ctx, y);
  const auto rs = impl::positional_shape(kOp, "x", x, pos);
  detail::expect_shape(kOp, "y", y, x.shape());
  impl::run_add_bias(kOp, ctx, x, pos, y, rs.rows, rs.cols);
}

/// dpos[t, c] = sum over the leading dimensions of dy[..., t, c] (assign), or dpos += that sum.
/// @tparam G  dy's element type
/// @tparam D  dpos's element type
/// @param dy    (B, T, C)
/// @param dpos  (T, C)
template <FloatElement G, FloatElement D>
void positional_grad(const ExecutionContext& ctx, const Tensor<G>& dy, const Tensor<D>& dpos, bool accumulate) {
  constexpr const char* kOp = "positional_grad";
  detail::expect_dense(kOp, "dy", ctx, dy);
  detail::expect_dense(kOp, "dpos", ctx, dpos);
  const auto rs = impl::positional_shape(kOp, "dy", dy, dpos);
  impl::run_column_sum(kOp, ctx, dy, dpos, rs.rows, rs.cols, accumulate);
}

MIXTAPE_BACKEND_END

}  // namespace mixtape::kernels
