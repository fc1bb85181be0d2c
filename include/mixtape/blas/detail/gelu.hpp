/// @file gelu.hpp
/// @brief GELU (tanh approximation) and its derivative in the accumulate type, as the scalar host
///        epilogue and the CUDA separate epilogue kernel evaluate them.
///
/// gelu(x)  = x/2 (1 + t),                       t = tanh(s (x + c x^3)), s = sqrt(2/pi), c = 0.044715
/// gelu'(x) = (1 + t)/2 + x/2 (1 - t^2) s (1 + 3 c x^2)
///
/// PyTorch's `gelu(approximate="tanh")` forward and backward formulas, evaluated by kernels/'
/// activation functors (portable tanh: the same bits on host and device), so a GEMM with a separate
/// GELU epilogue equals a plain GEMM followed by kernels::gelu_forward / gelu_backward on values of
/// the accumulate type. The AVX-512 host epilogue has its own vectorised tanh
/// (gemm_host_kernels.hpp) and cuBLASLt's fused epilogues their own; both agree within the GEMM's
/// tolerances, not bitwise.
#pragma once

#include "mixtape/config.hpp"
#include "mixtape/kernels/activation.hpp"

namespace mixtape::blas::detail {

inline constexpr double kGeluS = 0.79788456080286535588;  // sqrt(2 / pi)
inline constexpr double kGeluC = 0.044715;

template <class A>
MIXTAPE_HOST_DEVICE inline A gelu_tanh(A x) {
  return kernels::GeluTanh{}(x);
}

template <class A>
MIXTAPE_HOST_DEVICE inline A gelu_tanh_grad(A x) {
  return kernels::detail::GeluInner<A>(x).derivative(x);
}

}  // namespace mixtape::blas::detail
