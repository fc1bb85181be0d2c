/// @file random.hpp
/// @brief Counter-based random fills: `uniform` and `normal`, keyed by (context seed, reserved
///        Philox offset, element index) as core/philox.hpp documents, so values are independent of
///        strides, launch shape and host thread count.
///
/// Uniform draws are bitwise identical on host and CUDA (integer Philox, exact scaling, one fma,
/// one rounding). Normal draws use the platform's log/sqrt/sin/cos and may differ between host and
/// device by a few ulps of float (of double for f64) before the final rounding.
///
/// @code
///   kernels::uniform(ctx, w, -0.1, 0.1);   // w ~ U[-0.1, 0.1), any float format
///   kernels::normal(ctx, x, 0.0, 0.02);    // x ~ N(0, 0.02^2)
/// @endcode
#pragma once

#include <concepts>
#include <cstdint>

#include "mixtape/kernels/elementwise.hpp"

namespace mixtape::kernels {

MIXTAPE_BACKEND_BEGIN

/// Fills `out` with uniform values on [lo, hi): u * (hi - lo) + lo, u = (word >> 8) 2^-24 (53 bits
/// for f64), computed with one fma in float (double for f64) and rounded once to T with nearest-even
/// (so the rounded value may equal hi). Reserves ceil(n / 4) Philox counters (ceil(n / 2) for f64).
/// @tparam T a floating element type (f64, f32, f16, bf16, e4m3, e5m2)
template <FloatElement T>
void uniform(const ExecutionContext& ctx, const Tensor<T>& out, double lo = 0.0, double hi = 1.0) {
  detail::expect_elementwise("uniform", ctx, out);
  using Op = detail::UniformOp<T>;
  using A = typename Op::A;
  const auto n = static_cast<std::uint64_t>(out.numel());
  Op op;
  op.seed = ctx.seed();
  op.offset = ctx.reserve_rng(philox_counters(n, std::is_same_v<T, double> ? 2 : 1));
  op.lo = static_cast<A>(lo);
  op.scale = static_cast<A>(hi - lo);
  impl::run_elementwise("uniform", ctx, op, out);
}

/// Fills `out` with normal values of mean `mean` and standard deviation `stddev` (Box-Muller in
/// float, double for f64; z * stddev + mean with one fma, rounded once to T). Reserves ceil(n / 4)
/// Philox counters (ceil(n / 2) for f64).
/// @tparam T a floating element type
template <FloatElement T>
void normal(const ExecutionContext& ctx, const Tensor<T>& out, double mean = 0.0, double stddev = 1.0) {
  detail::expect_elementwise("normal", ctx, out);
  using Op = detail::NormalOp<T>;
  using A = typename Op::A;
  const auto n = static_cast<std::uint64_t>(out.numel());
  Op op;
  op.seed = ctx.seed();
  op.offset = ctx.reserve_rng(philox_counters(n, std::is_same_v<T, double> ? 2 : 1));
  op.mean = static_cast<A>(mean);
  op.stddev = static_cast<A>(stddev);
  impl::run_elementwise("normal", ctx, op, out);
}

/// `uniform` for a type-erased view; DTypeError unless its dtype is a floating format.
void uniform(const ExecutionContext& ctx, const std::same_as<TensorRef> auto& out, double lo = 0.0, double hi = 1.0) {
  visit_dtype(out.dtype(), [&]<class T>() {
    if constexpr (FloatElement<T>) {
      kernels::uniform(ctx, out.template as<T>(), lo, hi);
    } else {
      MIXTAPE_THROW(DTypeError, "uniform: expected a floating-point tensor (f64, f32, f16, bf16, e4m3, e5m2), got ",
                    out.dtype());
    }
  });
}

/// `normal` for a type-erased view; DTypeError unless its dtype is a floating format.
void normal(const ExecutionContext& ctx, const std::same_as<TensorRef> auto& out, double mean = 0.0,
            double stddev = 1.0) {
  visit_dtype(out.dtype(), [&]<class T>() {
    if constexpr (FloatElement<T>) {
      kernels::normal(ctx, out.template as<T>(), mean, stddev);
    } else {
      MIXTAPE_THROW(DTypeError, "normal: expected a floating-point tensor (f64, f32, f16, bf16, e4m3, e5m2), got ",
                    out.dtype());
    }
  });
}

MIXTAPE_BACKEND_END

}  // namespace mixtape::kernels
