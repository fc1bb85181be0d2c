/// @file softmax.hpp
/// @brief Softmax over the last dimension with an optional scale and causal mask, forward and
///        backward, on both backends; the output type may differ from the input's (an f32 softmax
///        of bf16 attention scores, as autocast runs it).
///
/// With scale s and mask M (row r of a (T, T) tile sees the columns c <= r, PyTorch's
/// `is_causal`):
///
///     y  = softmax(s x) over the visible columns, 0 at masked ones
///     dx = s y (dy - sum(dy y))                  (0 at masked ones)
///
/// computed in `compute_t` of the operands (float for f16 / bf16 / f32, double with an f64
/// operand). Row reductions are fixed-order (deterministic); host and CUDA differ by the summation
/// order and their exp, within the tests' derived tolerances. A row whose visible entries are all
/// -inf gives NaN, as in PyTorch.
///
/// Operands are dense row-major views (ShapeError otherwise).
///
/// @code
///   // att: (B, H, T, T) scores in bf16, probabilities in f32
///   kernels::softmax_forward(ctx, att, p, 1.0 / std::sqrt(hd), kernels::SoftmaxMask::causal);
///   kernels::softmax_backward(ctx, p, dp, datt, 1.0 / std::sqrt(hd), kernels::SoftmaxMask::causal, false);
/// @endcode
#pragma once

#include <algorithm>
#include <cstdint>

#include "mixtape/config.hpp"
#include "mixtape/core/execution_context.hpp"
#include "mixtape/core/tensor.hpp"
#include "mixtape/kernels/detail/model_checks.hpp"
#include "mixtape/kernels/detail/scalar.hpp"
#include "mixtape/kernels/detail/softmax_host.hpp"
#include "mixtape/kernels/elementwise.hpp"

#if MIXTAPE_HAS_KERNELS
#include "mixtape/kernels/detail/softmax_cuda.cuh"
#endif

namespace mixtape::kernels {

/// Which columns a softmax row sees.
enum class SoftmaxMask : std::uint8_t {
  none,    ///< every column
  causal,  ///< row r of each (T, T) tile (the last two dimensions) sees columns c <= r
};

namespace detail {

/// Rows per (T, T) tile of a softmax operand (1 without a mask); the causal mask needs rank >= 2.
inline std::int64_t softmax_tile_rows(const char* op, const mixtape::detail::TensorBase& t, SoftmaxMask mask) {
  const int m = static_cast<int>(mask);
  MIXTAPE_EXPECT(m == 0 || m == 1, ValueError, op, ": expected SoftmaxMask::none or ::causal, got value ", m);
  if (mask == SoftmaxMask::none) return 1;
  MIXTAPE_EXPECT(t.rank() >= 2, ShapeError, op, ": the causal mask needs (..., T, T) scores of rank >= 2, got shape ",
                 t.shape());
  return std::max<std::int64_t>(t.shape()[t.rank() - 2], 1);
}

}  // namespace detail

MIXTAPE_BACKEND_BEGIN

/// y = softmax(scale * x) over the last dimension, masked entries 0.
/// @tparam In   x's element type
/// @tparam Out  y's element type
/// @param x      (..., cols); with the causal mask (..., T, cols)
/// @param y      x's shape, not overlapping x
/// @param scale  multiplies x before the softmax (1 / sqrt(head dim) in attention), rounded to the
///               compute type
/// @param mask   SoftmaxMask::none or SoftmaxMask::causal
/// @throws ShapeError for mismatched or strided operands; ValueError for an overlap or a bad mask.
template <FloatElement In, FloatElement Out>
void softmax_forward(const ExecutionContext& ctx, const Tensor<In>& x, const Tensor<Out>& y, double scale = 1.0,
                     SoftmaxMask mask = SoftmaxMask::none) {
  constexpr const char* kOp = "softmax_forward";
  using A = compute_t<In, Out>;
  detail::expect_dense_all(kOp, ctx, {{"x", &x}, {"y", &y}});
  const auto rs = detail::row_shape(kOp, "x", x);
  detail::expect_shape(kOp, "y", y, x.shape());
  const std::int64_t tile = detail::softmax_tile_rows(kOp, x, mask);
  MIXTAPE_EXPECT(!detail::overlaps(y, x), ValueError, kOp, ": expected y not to overlap x (x is read in two passes)");
  const bool causal = mask == SoftmaxMask::causal;
  if (ctx.is_cuda()) {
#if MIXTAPE_HAS_KERNELS
    detail::gpu::softmax_forward<A>(ctx, x.data(), y.data(), rs.rows, rs.cols, tile, static_cast<A>(scale), causal);
#else
    detail::throw_needs_cu(kOp, ctx.device());
#endif
  } else {
    detail::softmax_forward_host<A>(ctx.pool(), x.data(), y.data(), rs.rows, rs.cols, tile, static_cast<A>(scale),
                                    causal);
  }
  y.storage()->bump_version();
}

/// dx = scale * y * (dy - sum(dy * y)) (accumulate = false) or dx += that (true); masked entries
/// are written 0 (or left unchanged when accumulating).
/// @tparam Y   y's element type (the forward output)
/// @tparam DY  dy's element type
/// @tparam DX  dx's element type
/// @param y      the forward output, (..., cols)
/// @param dy     y's shape
/// @param dx     y's shape; may be dy itself (same tensor, in place); must not otherwise overlap y or dy
/// @param scale, mask  the forward's
template <FloatElement Y, FloatElement DY, FloatElement DX>
void softmax_backward(const ExecutionContext& ctx, const Tensor<Y>& y, const Tensor<DY>& dy, const Tensor<DX>& dx,
                      double scale, SoftmaxMask mask, bool accumulate) {
  constexpr const char* kOp = "softmax_backward";
  using A = compute_t<Y, DY>;
  detail::expect_dense_all(kOp, ctx, {{"y", &y}, {"dy", &dy}, {"dx", &dx}});
  const auto rs = detail::row_shape(kOp, "y", y);
  detail::expect_shape(kOp, "dy", dy, y.shape());
  detail::expect_shape(kOp, "dx", dx, y.shape());
  const std::int64_t tile = detail::softmax_tile_rows(kOp, y, mask);
  const bool same_as_dy = static_cast<const void*>(dx.data()) == static_cast<const void*>(dy.data()) && sizeof(DX) == sizeof(DY);
  MIXTAPE_EXPECT(!detail::overlaps(dx, y) && (same_as_dy || !detail::overlaps(dx, dy)), ValueError, kOp,
                 ": expected dx not to overlap y, and dy only as the very same tensor");
  const bool causal = mask == SoftmaxMask::causal;
  if (ctx.is_cuda()) {
#if MIXTAPE_HAS_KERNELS
    detail::gpu::softmax_backward<A>(ctx, y.data(), dy.data(), dx.data(), rs.rows, rs.cols, tile, static_cast<A>(scale),
                                     causal, accumulate);
#else
    detail::throw_needs_cu(kOp, ctx.device());
#endif
  } else {
    detail::softmax_backward_host<A>(ctx.pool(), y.data(), dy.data(), dx.data(), rs.rows, rs.cols, tile,
                                     static_cast<A>(scale), causal, accumulate);
  }
  dx.storage()->bump_version();
}

MIXTAPE_BACKEND_END

}  // namespace mixtape::kernels
