/// @file reduce.hpp
/// @brief Reductions over any scalar element type on both backends: `sum`, `max`, `amax`
///        (NaN-propagating max |x|), `mean_var` (mean and population variance, Welford / Chan) over
///        a whole tensor into a 1- (2-) element tensor on the same device, and the same over the last
///        dimension (`sum_rows`, `max_rows`, `amax_rows`, `mean_var_rows`) into tensors shaped like
///        the leading dimensions.
///
/// Results land in a tensor on the input's device: on CUDA nothing is copied back and nothing
/// syncs (read a value with `item` in tests and logging only). Host: fixed blocks with 8
/// accumulators over the thread pool, fixed combination tree (reduce_host.hpp). CUDA: CUB's
/// DeviceReduce for whole tensors, warp- or block-per-row kernels for rows (reduce_cuda.cuh). Both
/// are deterministic run to run; host and CUDA agree within the accumulation's rounding error (max
/// and amax exactly). No atomics.
///
/// The accumulator is `default_accum_t<T>` (double for f64 and 32/64-bit integers, float
/// otherwise); pass another as the first template argument, like CUB's OverrideAccumT:
/// @code
///   kernels::sum(ctx, x, total);                 // float accumulation for bf16 x
///   kernels::sum<double>(ctx, x, total);         // double accumulation
///   kernels::mean_var_rows(ctx, h, mean, var);   // h: (B, T, C) -> mean, var: (B, T)
/// @endcode
#pragma once

#include <cstdint>
#include <type_traits>

#include "mixtape/config.hpp"
#include "mixtape/core/error.hpp"
#include "mixtape/core/execution_context.hpp"
#include "mixtape/core/tensor.hpp"
#include "mixtape/kernels/detail/reduce_host.hpp"
#include "mixtape/kernels/detail/reduce_ops.hpp"
#include "mixtape/kernels/detail/scalar.hpp"
#include "mixtape/kernels/elementwise.hpp"

#if MIXTAPE_HAS_KERNELS
#include "mixtape/kernels/detail/reduce_cuda.cuh"
#endif

namespace mixtape::kernels {

namespace detail {

/// The accumulator: Override unless it is void, else default_accum_t<T>.
template <class Override, class T>
using accum_for_t = std::conditional_t<std::is_void_v<Override>, default_accum_t<T>, Override>;

/// Element offset of linear index 1 of a 2-element view (mean_var's variance slot).
inline std::int64_t second_element_offset(const Layout& l) {
  const Layout* const layouts[1] = {&l};
  const StridedPlan<1> plan = make_plan<1>(layouts);
  std::int64_t off[1];
  plan.offsets(1, off);
  return off[0];
}

inline void expect_row_output(const char* op, const mixtape::detail::TensorBase& in, const mixtape::detail::TensorBase& out) {
  const auto lead = in.shape().span().first(static_cast<std::size_t>(in.rank() - 1));
  MIXTAPE_EXPECT(out.shape() == Shape(lead), ShapeError, op, ": expected an output of shape ",
                 mixtape::detail::shape_string(lead), " (the input's leading dimensions), got ", out.shape());
}

}  // namespace detail

MIXTAPE_BACKEND_BEGIN

namespace impl {

/// Whole-tensor reduction R of `in` into out (one element, or two for mean_var).
template <class R, class T, class O>
void reduce_all(const char* name, const ExecutionContext& ctx, const Tensor<T>& in, const Tensor<O>& out) {
  static_assert(detail::kIsAccum<typename R::acc_type>, "the accumulator must be float or double");
  detail::expect_on_context(name, "the input", ctx, in);
  detail::expect_on_context(name, "the output", ctx, out);
  MIXTAPE_EXPECT(out.numel() == R::kOutputs, ShapeError, name, ": expected an output of ", R::kOutputs,
                 R::kOutputs == 1 ? " element" : " elements (mean, variance)", ", got shape ", out.shape());
  O* out0 = out.data();
  O* out1 = R::kOutputs == 2 ? out.data() + detail::second_element_offset(out.layout()) : nullptr;
  if (ctx.is_cuda()) {
#if MIXTAPE_HAS_KERNELS
    detail::gpu::reduce_all<R>(ctx, in, out0, out1);
#else
    detail::throw_needs_cu(name, ctx.device());
#endif
  } else {
    typename R::acc_type values[2];
    R::finalize(detail::reduce_all_host<R>(ctx.pool(), in), values);
    *out0 = detail::cast<O>(values[0]);
    if constexpr (R::kOutputs == 2) *out1 = detail::cast<O>(values[1]);
  }
  out.storage()->bump_version();
}

/// Row reduction R of `in` over its last dimension into out0 (and out1).
template <class R, class T, class O>
void reduce_rows(const char* name, const ExecutionContext& ctx, const Tensor<T>& in, const Tensor<O>& out0,
                 const Tensor<O>* out1) {
  static_assert(detail::kIsAccum<typename R::acc_type>, "the accumulator must be float or double");
  detail::expect_on_context(name, "the input", ctx, in);
  MIXTAPE_EXPECT(in.rank() >= 1, ShapeError, name, ": expected an input of rank >= 1, got shape ", in.shape());
  detail::expect_on_context(name, "the output", ctx, out0);
  detail::expect_row_output(name, in, out0);
  if (out1 != nullptr) {
    detail::expect_on_context(name, "the output", ctx, *out1);
    detail::expect_row_output(name, in, *out1);
  }
  const Layout& l1 = out1 != nullptr ? out1->layout() : out0.layout();
  const detail::RowPlan plan = detail::make_row_plan(in.layout(), out0.layout(), l1);
  const std::int64_t rows = out0.numel();
  O* p1 = out1 != nullptr ? out1->data() : nullptr;
  if (ctx.is_cuda()) {
#if MIXTAPE_HAS_KERNELS
    detail::gpu::reduce_rows<R>(ctx, in, plan, rows, out0.data(), p1);
#else
    detail::throw_needs_cu(name, ctx.device());
#endif
  } else {
    detail::reduce_rows_host<R>(ctx.pool(), in, plan, rows, out0.data(), p1);
  }
  out0.storage()->bump_version();
  if (out1 != nullptr) out1->storage()->bump_version();
}

}  // namespace impl

/// out = sum of all elements of `in` (out: 1 element, any element type, rounded once).
/// @tparam OverrideAccumT the accumulator (void: default_accum_t<T>)
template <class OverrideAccumT = void, ScalarElement T, ScalarElement O>
void sum(const ExecutionContext& ctx, const Tensor<T>& in, const Tensor<O>& out) {
  impl::reduce_all<detail::SumReduce<detail::accum_for_t<OverrideAccumT, T>>>("sum", ctx, in, out);
}

/// out = max of all elements (NaN if any is NaN; -inf for an empty input).
template <class OverrideAccumT = void, ScalarElement T, ScalarElement O>
void max(const ExecutionContext& ctx, const Tensor<T>& in, const Tensor<O>& out) {
  impl::reduce_all<detail::MaxReduce<detail::accum_for_t<OverrideAccumT, T>, false>>("max", ctx, in, out);
}

/// out = max |x| over all elements (NaN if any is NaN; 0 for an empty input): the FP8 amax.
template <class OverrideAccumT = void, ScalarElement T, ScalarElement O>
void amax(const ExecutionContext& ctx, const Tensor<T>& in, const Tensor<O>& out) {
  impl::reduce_all<detail::MaxReduce<detail::accum_for_t<OverrideAccumT, T>, true>>("amax", ctx, in, out);
}

/// out = {mean, population variance} of all elements (out: 2 elements; NaN, NaN when empty).
template <class OverrideAccumT = void, ScalarElement T, ScalarElement O>
void mean_var(const ExecutionContext& ctx, const Tensor<T>& in, const Tensor<O>& out) {
  impl::reduce_all<detail::MeanVarReduce<detail::accum_for_t<OverrideAccumT, T>>>("mean_var", ctx, in, out);
}

/// out[r] = sum of row r (the last dimension); out's shape is in's leading dimensions.
template <class OverrideAccumT = void, ScalarElement T, ScalarElement O>
void sum_rows(const ExecutionContext& ctx, const Tensor<T>& in, const Tensor<O>& out) {
  impl::reduce_rows<detail::SumReduce<detail::accum_for_t<OverrideAccumT, T>>>("sum_rows", ctx, in, out, static_cast<const Tensor<O>*>(nullptr));
}

/// out[r] = max of row r (NaN-propagating).
template <class OverrideAccumT = void, ScalarElement T, ScalarElement O>
void max_rows(const ExecutionContext& ctx, const Tensor<T>& in, const Tensor<O>& out) {
  impl::reduce_rows<detail::MaxReduce<detail::accum_for_t<OverrideAccumT, T>, false>>("max_rows", ctx, in, out, static_cast<const Tensor<O>*>(nullptr));
}

/// out[r] = max |x| over row r (NaN-propagating).
template <class OverrideAccumT = void, ScalarElement T, ScalarElement O>
void amax_rows(const ExecutionContext& ctx, const Tensor<T>& in, const Tensor<O>& out) {
  impl::reduce_rows<detail::MaxReduce<detail::accum_for_t<OverrideAccumT, T>, true>>("amax_rows", ctx, in, out, static_cast<const Tensor<O>*>(nullptr));
}

/// mean[r], var[r] = mean and population variance of row r (LayerNorm's statistics).
template <class OverrideAccumT = void, ScalarElement T, ScalarElement O>
void mean_var_rows(const ExecutionContext& ctx, const Tensor<T>& in, const Tensor<O>& mean, const Tensor<O>& var) {
  impl::reduce_rows<detail::MeanVarReduce<detail::accum_for_t<OverrideAccumT, T>>>("mean_var_rows", ctx, in, mean, &var);
}

MIXTAPE_BACKEND_END

}  // namespace mixtape::kernels
