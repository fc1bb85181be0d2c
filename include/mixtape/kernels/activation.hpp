/// @file activation.hpp
/// @brief GELU with the tanh approximation (PyTorch's `F.gelu(x, approximate="tanh")`), forward and
///        backward, on both backends, for any float element types.
///
///     y  = 0.5 x (1 + tanh(k_beta (x + k_kappa x^3))),   k_beta = sqrt(2 / pi), k_kappa = 0.044715
///     dx = dy (0.5 (1 + t) + 0.5 x (1 - t^2) k_beta (1 + 3 k_kappa x^2)),   t = tanh(...)
///
/// which is PyTorch's formula term by term (aten/src/ATen/native/cpu/Activation.cpp,
/// GeluBackwardKernelImpl). Computed in `compute_t<...>` (float for f16/bf16/f32 operands, double
/// when one is f64) and rounded once to the output type, as PyTorch's opmath does.
///
/// Element-wise, so it runs on the element-wise engines (any strides) and host and CUDA give the
/// same bits: tanh is detail::portable_tanh (IEEE basic operations and explicit fmas only, never
/// the platform's libm), and every multiply-add in the formulas is an explicit fma.
///
/// @code
///   kernels::gelu_forward(ctx, h, a);                       // a = gelu(h), e.g. bf16 -> bf16
///   kernels::gelu_backward(ctx, h, da, dh, false);          // dh  = da * gelu'(h)
///   kernels::gelu_backward(ctx, h, da, dh, true);           // dh += da * gelu'(h)
/// @endcode
#pragma once

#include "mixtape/config.hpp"
#include "mixtape/core/execution_context.hpp"
#include "mixtape/core/tensor.hpp"
#include "mixtape/kernels/detail/gelu_host.hpp"
#include "mixtape/kernels/detail/portable_math.hpp"
#include "mixtape/kernels/detail/scalar.hpp"
#include "mixtape/kernels/elementwise.hpp"
#include "mixtape/kernels/functors.hpp"

namespace mixtape::kernels {

namespace detail {


/// The inner argument k_beta (x + k_kappa x^3) and its tanh.
template <class A>
struct GeluInner {
  A x2, t;
  MIXTAPE_HOST_DEVICE explicit GeluInner(A x) noexcept {
    x2 = x * x;
    const A x3 = x2 * x;
    t = portable_tanh<A>(kGeluBeta<A> * fma_exact<A>(kGeluKappa<A>, x3, x));
  }
  /// gelu'(x) = 0.5 (1 + t) + 0.5 x (1 - t^2) k_beta (1 + 3 k_kappa x^2).
  MIXTAPE_HOST_DEVICE A derivative(A x) const noexcept {
    const A left = A(0.5) * x;
    const A left_derivative = A(0.5) * (A(1) + t);
    const A tanh_derivative = fma_exact<A>(-t, t, A(1));
    const A inner_derivative = kGeluBeta<A> * fma_exact<A>(A(3) * kGeluKappa<A>, x2, A(1));
    return fma_exact<A>(left * tanh_derivative, inner_derivative, left_derivative);
  }
};

}  // namespace detail

/// y = gelu_tanh(x), a functor for `kernels::map` (also usable on its own).
struct GeluTanh {
  template <class X>
  MIXTAPE_HOST_DEVICE compute_t<X> operator()(X xv) const noexcept {
    using A = compute_t<X>;
    const A x = detail::to_acc<A>(xv);
    const detail::GeluInner<A> in(x);
    return (A(0.5) * x) * (A(1) + in.t);
  }
};

/// dx = dy * gelu_tanh'(x).
struct GeluTanhBackward {
  template <class X, class DY>
  MIXTAPE_HOST_DEVICE compute_t<X, DY> operator()(X xv, DY dyv) const noexcept {
    using A = compute_t<X, DY>;
    const A x = detail::to_acc<A>(xv);
    return detail::to_acc<A>(dyv) * detail::GeluInner<A>(x).derivative(x);
  }
};

/// dx_new = dx_old + dy * gelu_tanh'(x), one fma.
struct GeluTanhBackwardAccumulate {
  template <class X, class DY, class DX>
  MIXTAPE_HOST_DEVICE compute_t<X, DY, DX> operator()(X xv, DY dyv, DX old) const noexcept {
    using A = compute_t<X, DY, DX>;
    const A x = detail::to_acc<A>(xv);
    return detail::fma_exact<A>(detail::to_acc<A>(dyv), detail::GeluInner<A>(x).derivative(x), detail::to_acc<A>(old));
  }
};

MIXTAPE_BACKEND_BEGIN

/// y = gelu_tanh(x) element by element, rounded once to Out (nearest-even).
/// @tparam In   x's element type (f64, f32, f16, bf16, e4m3, e5m2)
/// @tparam Out  y's element type (any float format)
/// @param x  the input, any shape and strides
/// @param y  the output, x's shape; may be x itself (in place)
/// @throws ShapeError for a shape mismatch; DeviceError for a tensor off the context's device;
///         BackendError for CUDA tensors in a `.cpp` unit.
template <FloatElement In, FloatElement Out>
void gelu_forward(const ExecutionContext& ctx, const Tensor<In>& x, const Tensor<Out>& y) {
  detail::expect_elementwise("gelu_forward", ctx, y, x);
#if MIXTAPE_GELU_HOST_AVX512
  if constexpr (detail::kGeluLaneType<In> && detail::kGeluLaneType<Out>) {
    if (!ctx.is_cuda() && x.is_contiguous() && y.is_contiguous() && detail::gelu_lanes_available()) {
      ctx.pool().parallel_for(y.numel(), detail::kHostElementwiseGrain, [&](std::int64_t b, std::int64_t e, int) {
        detail::gelu_forward_lanes(x.data() + b, y.data() + b, e - b);
      });
      y.storage()->bump_version();
      return;
    }
  }
#endif
  impl::run_elementwise("gelu_forward", ctx, detail::MapOp<GeluTanh, Out>{}, y, x);
}

/// dx = dy * gelu_tanh'(x) (accumulate = false) or dx += dy * gelu_tanh'(x) (accumulate = true),
/// the tape's "first gradient write assigns, later ones accumulate".
/// @tparam In  x's element type (the forward input)
/// @tparam DY  dy's element type
/// @tparam DX  dx's element type
/// @param x   the forward input, any shape and strides
/// @param dy  the output gradient, x's shape
/// @param dx  the input gradient, x's shape; may be dy (in place) when not accumulating
template <FloatElement In, FloatElement DY, FloatElement DX>
void gelu_backward(const ExecutionContext& ctx, const Tensor<In>& x, const Tensor<DY>& dy, const Tensor<DX>& dx,
                   bool accumulate) {
#if MIXTAPE_GELU_HOST_AVX512
  if constexpr (detail::kGeluLaneType<In> && detail::kGeluLaneType<DY> && detail::kGeluLaneType<DX>) {
    if (!ctx.is_cuda() && x.is_contiguous() && dy.is_contiguous() && dx.is_contiguous() &&
        detail::gelu_lanes_available()) {
      detail::expect_elementwise("gelu_backward", ctx, dx, x, dy);
      ctx.pool().parallel_for(dx.numel(), detail::kHostElementwiseGrain, [&](std::int64_t b, std::int64_t e, int) {
        detail::gelu_backward_lanes(x.data() + b, dy.data() + b, dx.data() + b, e - b, accumulate);
      });
      dx.storage()->bump_version();
      return;
    }
  }
#endif
  if (accumulate) {
    detail::expect_elementwise("gelu_backward", ctx, dx, x, dy, dx);
    impl::run_elementwise("gelu_backward", ctx, detail::MapOp<GeluTanhBackwardAccumulate, DX>{}, dx, x, dy, dx);
  } else {
    detail::expect_elementwise("gelu_backward", ctx, dx, x, dy);
    impl::run_elementwise("gelu_backward", ctx, detail::MapOp<GeluTanhBackward, DX>{}, dx, x, dy);
  }
}

MIXTAPE_BACKEND_END

}  // namespace mixtape::kernels
