/// @file layernorm.hpp
/// @brief LayerNorm over the last dimension (PyTorch's `F.layer_norm(x, (C,), gamma, beta, eps)`),
///        forward (alone or fused with the residual add before it) and backward, on both backends.
///
/// Forward writes y in the output type (nn::LayerNorm passes its policy's compute type: bf16 or
/// f16 under mixed policies, which equals autocast's f32 LayerNorm followed by the cast the next
/// matmul makes, fused here) and saves mean and
/// rstd per row in a statistics type (f32, f64 for f64 models). Backward gives dx and the
/// parameter gradients dgamma, dbeta. Everything is computed in `compute_t` of the operands (float
/// for f16 / bf16 / f32, double with an f64 operand); formulas in detail/layernorm_host.hpp.
///
/// Determinism: row statistics are fixed-order reductions; dgamma and dbeta are reduced over the
/// rows in fixed chunks, then across chunks in a second pass (no atomics), with the same bits on
/// host and CUDA when the builds do not contract (detail/broadcast_host.hpp).
///
/// Operands are dense row-major views (ShapeError otherwise).
///
/// @code
///   kernels::layernorm_forward(ctx, x, ln_w, ln_b, h, mean, rstd, 1e-5);      // x (B, T, C) -> h
///   kernels::layernorm_backward(ctx, x, ln_w, mean, rstd, dh, dx, dw, db,
///                               /*accumulate_dx=*/true, /*accumulate_params=*/false);
/// @endcode
#pragma once

#include <cstdint>

#include "mixtape/config.hpp"
#include "mixtape/core/execution_context.hpp"
#include "mixtape/core/tensor.hpp"
#include "mixtape/kernels/detail/broadcast_host.hpp"
#include "mixtape/kernels/detail/layernorm_host.hpp"
#include "mixtape/kernels/detail/model_checks.hpp"
#include "mixtape/kernels/detail/scalar.hpp"
#include "mixtape/kernels/elementwise.hpp"

#if MIXTAPE_HAS_KERNELS
#include "mixtape/kernels/detail/layernorm_cuda.cuh"
#endif

namespace mixtape::kernels {

namespace detail {
MIXTAPE_BACKEND_BEGIN
/// The forwards' shape checks: x (..., C) with C >= 1 unless there are no rows, gamma and beta
/// (C), y x's shape, mean and rstd the leading shape; returns x's rows and columns.
template <class In, class W, class Out, class S>
RowShape expect_layernorm_shapes(const char* op, const Tensor<In>& x, const Tensor<W>& gamma, const Tensor<W>& beta,
                                 const Tensor<Out>& y, const Tensor<S>& mean, const Tensor<S>& rstd) {
  const auto rs = row_shape(op, "x", x);
  expect_shape(op, "gamma", gamma, Shape{rs.cols});
  expect_shape(op, "beta", beta, Shape{rs.cols});
  expect_shape(op, "y", y, x.shape());
  expect_shape(op, "mean", mean, leading_shape(x));
  expect_shape(op, "rstd", rstd, leading_shape(x));
  MIXTAPE_EXPECT(rs.cols > 0 || rs.rows == 0, ShapeError, op, ": expected a last dimension of at least 1, got shape ",
                 x.shape());
  return rs;
}

/// layernorm_backward's checks and dispatch; `copy` (or null) receives the final dx rounded to DC.
template <class In, class W, class S, class G, class DX, class DW, class DC>
void layernorm_backward_impl(const char* op, const ExecutionContext& ctx, const Tensor<In>& x, const Tensor<W>& gamma,
                             const Tensor<S>& mean, const Tensor<S>& rstd, const Tensor<G>& dy, const Tensor<DX>& dx,
                             const Tensor<DW>& dgamma, const Tensor<DW>& dbeta, bool accumulate_dx,
                             bool accumulate_params, const Tensor<DC>* copy) {
  using A = compute_t<In, W, G>;
  expect_dense_all(op, ctx, {{"x", &x}, {"gamma", &gamma}, {"mean", &mean}, {"rstd", &rstd}, {"dy", &dy}, {"dx", &dx},
                             {"dgamma", &dgamma}, {"dbeta", &dbeta}});
  const auto rs = row_shape(op, "x", x);
  expect_shape(op, "gamma", gamma, Shape{rs.cols});
  expect_shape(op, "mean", mean, leading_shape(x));
  expect_shape(op, "rstd", rstd, leading_shape(x));
  expect_shape(op, "dy", dy, x.shape());
  expect_shape(op, "dx", dx, x.shape());
  expect_shape(op, "dgamma", dgamma, Shape{rs.cols});
  expect_shape(op, "dbeta", dbeta, Shape{rs.cols});
  MIXTAPE_EXPECT(!overlaps(dx, dy), ValueError, op, ": expected dx not to overlap dy (dy is read twice per row)");
  DC* c = nullptr;
  if (copy) {
    expect_dense_all(op, ctx, {{"dx_copy", copy}});
    expect_shape(op, "dx_copy", *copy, x.shape());
    MIXTAPE_EXPECT(!overlaps(*copy, dx) && !overlaps(*copy, dy) && !overlaps(*copy, x), ValueError, op,
                   ": expected dx_copy to overlap none of dx, dy and x");
    c = copy->data();
  }
  if (ctx.is_cuda()) {
#if MIXTAPE_HAS_KERNELS
    gpu::layernorm_backward<A>(ctx, x.data(), gamma.data(), mean.data(), rstd.data(), dy.data(), dx.data(),
                               dgamma.data(), dbeta.data(), rs.rows, rs.cols, accumulate_dx, accumulate_params, c);
#else
    throw_needs_cu(op, ctx.device());
#endif
  } else {
    layernorm_backward_dx_host<A>(ctx.pool(), x.data(), gamma.data(), mean.data(), rstd.data(), dy.data(), dx.data(),
                                  rs.rows, rs.cols, accumulate_dx, c);
    const LayerNormParamTerm<A, In, G, S> term{x.data(), dy.data(), mean.data(), rstd.data(), rs.cols};
    column_reduce_host(ctx.pool(), term, rs.rows, rs.cols, ColumnOutputs<DW, 2>{{dgamma.data(), dbeta.data()}},
                       accumulate_params);
  }
  dx.storage()->bump_version();
  dgamma.storage()->bump_version();
  dbeta.storage()->bump_version();
  if (copy) copy->storage()->bump_version();
}
MIXTAPE_BACKEND_END
}  // namespace detail

MIXTAPE_BACKEND_BEGIN

/// y = (x - mean) * rstd * gamma + beta over the last dimension, with mean and rstd saved.
/// @tparam In   x's element type
/// @tparam W    gamma's and beta's element type (the parameter type)
/// @tparam Out  y's element type
/// @tparam S    the statistics' element type (float or double)
/// @param x      (..., C)
/// @param gamma  (C)
/// @param beta   (C)
/// @param y      x's shape, not overlapping x (x's rows are read in three passes)
/// @param mean   x's leading shape (...), one per row
/// @param rstd   x's leading shape, 1 / sqrt(var + eps) per row (population variance)
/// @param eps    added to the variance (PyTorch's default 1e-5), rounded to the compute type
/// @throws ShapeError for mismatched or strided operands; DeviceError, BackendError as usual.
template <FloatElement In, FloatElement W, FloatElement Out, StatElement S>
void layernorm_forward(const ExecutionContext& ctx, const Tensor<In>& x, const Tensor<W>& gamma, const Tensor<W>& beta,
                       const Tensor<Out>& y, const Tensor<S>& mean, const Tensor<S>& rstd, double eps = 1e-5) {
  constexpr const char* kOp = "layernorm_forward";
  using A = compute_t<In, W>;
  detail::expect_dense_all(kOp, ctx, {{"x", &x}, {"gamma", &gamma}, {"beta", &beta}, {"y", &y}, {"mean", &mean},
                                     {"rstd", &rstd}});
  const auto rs = detail::expect_layernorm_shapes(kOp, x, gamma, beta, y, mean, rstd);
  MIXTAPE_EXPECT(!detail::overlaps(y, x), ValueError, kOp,
                 ": expected y not to overlap x (x is read in three passes)");
  MIXTAPE_EXPECT(eps >= 0, ValueError, kOp, ": expected eps >= 0, got ", eps);
  if (ctx.is_cuda()) {
#if MIXTAPE_HAS_KERNELS
    detail::gpu::layernorm_forward<A>(ctx, x.data(), gamma.data(), beta.data(), y.data(), mean.data(), rstd.data(),
                                      rs.rows, rs.cols, static_cast<A>(eps));
#else
    detail::throw_needs_cu(kOp, ctx.device());
#endif
  } else {
    detail::layernorm_forward_host<A>(ctx.pool(), x.data(), gamma.data(), beta.data(), y.data(), mean.data(),
                                      rstd.data(), rs.rows, rs.cols, static_cast<A>(eps));
  }
  y.storage()->bump_version();
  mean.storage()->bump_version();
  rstd.storage()->bump_version();
}

/// The residual add of a pre-norm transformer and the LayerNorm that reads its result, in one pass
/// over the rows: h = x + res (formed in compute_t of x and res and rounded to X, as
/// kernels::map(Add) does), then y = layernorm(h) with mean and rstd saved, the same bits as the two
/// calls (on the host, and on CUDA against CUDA). Saves a read of h and a launch per block.
/// @tparam X    x's and h's element type (the residual stream's)
/// @tparam R    res's element type (the branch output, e.g. the compute type)
/// @tparam W, Out, S  as layernorm_forward
/// @param x, res  (..., C)
/// @param h       x's shape, overlapping none of x, res, y
/// @param gamma, beta, y, mean, rstd, eps  as layernorm_forward
/// @throws ShapeError for mismatched or strided operands; ValueError for overlaps; DeviceError,
///         BackendError as usual.
template <FloatElement X, FloatElement R, FloatElement W, FloatElement Out, StatElement S>
void add_layernorm_forward(const ExecutionContext& ctx, const Tensor<X>& x, const Tensor<R>& res, const Tensor<X>& h,
                           const Tensor<W>& gamma, const Tensor<W>& beta, const Tensor<Out>& y, const Tensor<S>& mean,
                           const Tensor<S>& rstd, double eps = 1e-5) {
  constexpr const char* kOp = "add_layernorm_forward";
  using A = compute_t<X, W>;
  detail::expect_dense_all(kOp, ctx, {{"x", &x}, {"res", &res}, {"h", &h}, {"gamma", &gamma}, {"beta", &beta},
                                     {"y", &y}, {"mean", &mean}, {"rstd", &rstd}});
  const auto rs = detail::expect_layernorm_shapes(kOp, x, gamma, beta, y, mean, rstd);
  detail::expect_shape(kOp, "res", res, x.shape());
  detail::expect_shape(kOp, "h", h, x.shape());
  MIXTAPE_EXPECT(!detail::overlaps(h, x) && !detail::overlaps(h, res) && !detail::overlaps(y, h), ValueError, kOp,
                 ": expected h to overlap none of x, res and y");
  MIXTAPE_EXPECT(eps >= 0, ValueError, kOp, ": expected eps >= 0, got ", eps);
  if (ctx.is_cuda()) {
#if MIXTAPE_HAS_KERNELS
    detail::gpu::add_layernorm_forward<A>(ctx, x.data(), res.data(), h.data(), gamma.data(), beta.data(), y.data(),
                                          mean.data(), rstd.data(), rs.rows, rs.cols, static_cast<A>(eps));
#else
    detail::throw_needs_cu(kOp, ctx.device());
#endif
  } else {
    detail::add_layernorm_forward_host<A>(ctx.pool(), x.data(), res.data(), h.data(), gamma.data(), beta.data(),
                                          y.data(), mean.data(), rstd.data(), rs.rows, rs.cols, static_cast<A>(eps));
  }
  h.storage()->bump_version();
  y.storage()->bump_version();
  mean.storage()->bump_version();
  rstd.storage()->bump_version();
}


/// Gradients of layernorm_forward: dx from dy through the normalisation, dgamma = sum over rows
/// of dy * xhat, dbeta = sum over rows of dy.
/// @tparam In  x's element type (the forward input)
/// @tparam W   gamma's element type
/// @tparam S   the saved statistics' element type
/// @tparam G   dy's element type
/// @tparam DX  dx's element type
/// @tparam DW  dgamma's and dbeta's element type (the parameter-gradient type)
/// @param x, gamma, mean, rstd  the forward's operands and saved statistics
/// @param dy      x's shape
/// @param dx      x's shape; written (accumulate_dx = false) or added to (true); must not overlap
///                dy (dy is read in two passes)
/// @param dgamma  (C); written or added to per accumulate_params
/// @param dbeta   (C); likewise
template <FloatElement In, FloatElement W, StatElement S, FloatElement G, FloatElement DX, FloatElement DW>
void layernorm_backward(const ExecutionContext& ctx, const Tensor<In>& x, const Tensor<W>& gamma, const Tensor<S>& mean,
                        const Tensor<S>& rstd, const Tensor<G>& dy, const Tensor<DX>& dx, const Tensor<DW>& dgamma,
                        const Tensor<DW>& dbeta, bool accumulate_dx, bool accumulate_params) {
  detail::layernorm_backward_impl("layernorm_backward", ctx, x, gamma, mean, rstd, dy, dx, dgamma, dbeta, accumulate_dx,
                                  accumulate_params, static_cast<const Tensor<DX>*>(nullptr));
}

/// layernorm_backward that also writes the final dx (after any accumulation) rounded on to DC into
/// `dx_copy`: the gradient of the residual branch of a fused add + LayerNorm
/// (autograd::add_layer_norm), which is the stream's gradient in the branch's type, without
/// reading dx again for a separate cast.
/// @tparam DC  dx_copy's element type
/// @param dx_copy  x's shape, overlapping none of dx, dy, x
template <FloatElement In, FloatElement W, StatElement S, FloatElement G, FloatElement DX, FloatElement DW,
          FloatElement DC>
void layernorm_backward(const ExecutionContext& ctx, const Tensor<In>& x, const Tensor<W>& gamma, const Tensor<S>& mean,
                        const Tensor<S>& rstd, const Tensor<G>& dy, const Tensor<DX>& dx, const Tensor<DW>& dgamma,
                        const Tensor<DW>& dbeta, bool accumulate_dx, bool accumulate_params, const Tensor<DC>& dx_copy) {
  detail::layernorm_backward_impl("layernorm_backward", ctx, x, gamma, mean, rstd, dy, dx, dgamma, dbeta, accumulate_dx,
                                  accumulate_params, &dx_copy);
}

MIXTAPE_BACKEND_END

}  // namespace mixtape::kernels
