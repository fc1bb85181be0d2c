/// @file elementwise.hpp
/// @brief Element-wise ops on both backends: `map` (1..3 inputs of any element types, any strides),
///        `fill`, `convert` (all rounding modes, stochastic ones keyed by Philox), `copy` between
///        views and devices, `contiguous`, `clone`, and `item`.
///
/// Each op checks its operands (same shape, same device as the context, typed errors naming what
/// was expected and what came), then runs the host engine (thread pool, vectorisable tiles) or, in
/// a `.cu` unit, the CUDA engine (16-byte vector packs for dense aligned operands, a generic int64
/// index path for strided views) on the context's stream. A `.cpp` unit given CUDA tensors throws
/// BackendError. Results are bitwise identical between host and CUDA, and independent of the host
/// thread count and the launch shape (see functors.hpp for the contraction caveat).
///
/// @code
///   kernels::map(ctx, kernels::ScaleBy{2.0}, y, x);             // y = 2 x     (any element types)
///   kernels::convert(ctx, x_f32, x_bf16, Rounding::stochastic);  // Philox-keyed stochastic rounding
///   auto xt = kernels::contiguous(ctx, x.transposed());          // dense copy of a strided view
/// @endcode
#pragma once

#include <concepts>
#include <cstdint>
#include <type_traits>

#include "mixtape/config.hpp"
#include "mixtape/core/error.hpp"
#include "mixtape/core/execution_context.hpp"
#include "mixtape/core/philox.hpp"
#include "mixtape/core/tensor.hpp"
#include "mixtape/core/transfer.hpp"
#include "mixtape/kernels/detail/elementwise_host.hpp"
#include "mixtape/kernels/detail/elementwise_ops.hpp"
#include "mixtape/kernels/detail/scalar.hpp"
#include "mixtape/kernels/functors.hpp"

#if MIXTAPE_HAS_KERNELS
#include "mixtape/kernels/detail/elementwise_cuda.cuh"
#endif

namespace mixtape::kernels {

namespace detail {

/// Throws BackendError: CUDA tensors reached an op in a unit compiled by the host compiler.
[[noreturn]] inline void throw_needs_cu(const char* op, Device device) {
  MIXTAPE_THROW(BackendError, op, ": tensors on ", device,
                " need a .cu translation unit; this one was compiled by the host compiler");
}

/// Checks that `t` has storage and lives on the context's device.
inline void expect_on_context(const char* op, const char* what, const ExecutionContext& ctx,
                              const mixtape::detail::TensorBase& t) {
  MIXTAPE_EXPECT(t.defined(), ValueError, op, ": expected ", what, " to have storage, got an empty handle");
  MIXTAPE_EXPECT(t.device() == ctx.device(), DeviceError, op, ": ", what, " must be on the context's device, expected ",
                 ctx.device(), ", got ", t.device());
}

/// Checks that input `index` has the output's shape.
inline void expect_input_shape(const char* op, int index, const mixtape::detail::TensorBase& out,
                               const mixtape::detail::TensorBase& in) {
  MIXTAPE_EXPECT(in.shape() == out.shape(), ShapeError, op, ": input ", index, " must have the output's shape, expected ",
                 out.shape(), ", got ", in.shape());
}

/// The checks of every element-wise op: out and inputs defined, on the context's device, of out's shape.
template <class Out, class... In>
void expect_elementwise(const char* op, const ExecutionContext& ctx, const Tensor<Out>& out, const Tensor<In>&... in) {
  expect_on_context(op, "the output", ctx, out);
  [[maybe_unused]] int index = 0;
  (([&] {
     expect_on_context(op, "every input", ctx, in);
     expect_input_shape(op, index++, out, in);
   }()),
   ...);
}

inline void expect_rounding(const char* op, Rounding r) {
  const int v = static_cast<int>(r);
  MIXTAPE_EXPECT(v >= 0 && v < kRoundingCount, ValueError, op, ": expected a Rounding value in [0, ", kRoundingCount,
                 "), got ", v);
}

}  // namespace detail

MIXTAPE_BACKEND_BEGIN

// Backend-specific helpers live in `impl` (not `detail`: a second `detail` inside the inline
// namespace would make `kernels::detail` ambiguous).
namespace impl {
/// Runs an element-wise operation on the backend of out's device (checked by the caller).
template <class Op, class Out, class... In>
void run_elementwise(const char* name, const ExecutionContext& ctx, const Op& op, const Tensor<Out>& out,
                     const Tensor<In>&... in) {
  if (out.numel() == 0) return;
  if (out.device().is_cuda()) {
#if MIXTAPE_HAS_KERNELS
    (void)name;
    detail::gpu::elementwise(ctx, op, out, in...);
#else
    (void)op;
    detail::throw_needs_cu(name, out.device());
#endif
  } else {
    elementwise_host(ctx.pool(), op, out, in...);
  }
  out.storage()->bump_version();
}
}  // namespace impl

/// out[i] = op(in_0[i], ..., in_k[i]) for every element, rounded to Out with nearest-even.
///
/// @tparam Op   a copyable functor with a `MIXTAPE_HOST_DEVICE` call operator taking the inputs'
///              element types and returning a float format or an integer (functors.hpp)
/// @tparam Out  the output element type (any scalar element type)
/// @tparam In   the input element types (0 to 3 of them, any scalar element types)
/// @param out  the output view (any strides); may be one of the inputs (in place), but must not
///             partially overlap one
/// @throws ShapeError when an input's shape differs from out's; DeviceError when a tensor is not on
///         the context's device; BackendError for CUDA tensors in a `.cpp` unit.
template <class Op, ScalarElement Out, ScalarElement... In>
  requires(sizeof...(In) <= 3)
void map(const ExecutionContext& ctx, const Op& op, const Tensor<Out>& out, const Tensor<In>&... in) {
  detail::expect_elementwise("map", ctx, out, in...);
  impl::run_elementwise("map", ctx, detail::MapOp<Op, Out>{op}, out, in...);
}

/// Sets every element of `out` to `value`, converted once to T (nearest-even; integers truncate).
/// @tparam T  the element type
/// @tparam V  an arithmetic type or a scalar format (f16, bf16, ...)
template <ScalarElement T, class V>
  requires(std::is_arithmetic_v<V> || ScalarFormat<V>)
void fill(const ExecutionContext& ctx, const Tensor<T>& out, V value) {
  detail::expect_elementwise("fill", ctx, out);
  const T v = detail::cast<T>(value);
  impl::run_elementwise("fill", ctx, detail::MapOp<Constant<T>, T>{Constant<T>{v}}, out);
}

/// out = in converted element by element with `rounding` (numeric/rounding.hpp). Stochastic modes
/// reserve ceil(n / 4) Philox counters from the context and give element i (row-major index) word
/// i % 4 of block i / 4 (core/philox.hpp): host and device round identically. Integer destinations
/// truncate toward zero and saturate (NaN gives 0) whatever the mode; integer sources round once
/// from their exact value.
/// @tparam In   the source element type
/// @tparam Out  the destination element type
template <ScalarElement In, ScalarElement Out>
void convert(const ExecutionContext& ctx, const Tensor<In>& in, const Tensor<Out>& out,
             Rounding rounding = Rounding::nearest_even) {
  detail::expect_elementwise("convert", ctx, out, in);
  detail::expect_rounding("convert", rounding);
  std::uint64_t offset = 0;
  if (is_stochastic(rounding) && FloatElement<Out>) offset = ctx.reserve_rng(philox_counters(static_cast<std::uint64_t>(out.numel())));
  const std::uint64_t seed = ctx.seed();
  switch (rounding) {
    case Rounding::nearest_even_saturate:
      return impl::run_elementwise("convert", ctx, detail::ConvertOp<Out, Rounding::nearest_even_saturate>{seed, offset}, out, in);
    case Rounding::stochastic:
      return impl::run_elementwise("convert", ctx, detail::ConvertOp<Out, Rounding::stochastic>{seed, offset}, out, in);
    case Rounding::stochastic_saturate:
      return impl::run_elementwise("convert", ctx, detail::ConvertOp<Out, Rounding::stochastic_saturate>{seed, offset}, out, in);
    case Rounding::nearest_even:
      break;
  }
  impl::run_elementwise("convert", ctx, detail::ConvertOp<Out, Rounding::nearest_even>{seed, offset}, out, in);
}

/// Copies `src` into `dst` (same element type and shape, any strides, any devices). On one device
/// it is a strided copy kernel; across devices, strided views are made contiguous on their own
/// side first and the dense bytes move through mixtape::copy (pinned staging, peer copies).
template <ScalarElement T>
void copy(const ExecutionContext& ctx, const Tensor<T>& src, const Tensor<T>& dst) {
  MIXTAPE_EXPECT(src.defined() && dst.defined(), ValueError, "copy: expected tensors with storage, got an empty handle");
  MIXTAPE_EXPECT(src.shape() == dst.shape(), ShapeError, "copy: shapes must match, expected ", dst.shape(), ", got ",
                 src.shape());
  for (Device d : {src.device(), dst.device()}) {
    MIXTAPE_EXPECT(d.is_cpu() || d == ctx.device(), DeviceError, "copy: expected tensors on cpu or on the context's device ",
                   ctx.device(), ", got one on ", d);
  }
  if (src.device() == dst.device()) {
    impl::run_elementwise("copy", ctx, detail::MapOp<Identity, T>{}, dst, src);
    return;
  }
  Tensor<T> s = src;
  if (!src.is_contiguous()) {
    s = Tensor<T>::empty(ctx, src.shape(), src.device(), MemoryRole::workspace);
    impl::run_elementwise("copy", ctx, detail::MapOp<Identity, T>{}, s, src);
  }
  if (dst.is_contiguous()) {
    mixtape::copy(ctx, s, dst);
    return;
  }
  auto staged = Tensor<T>::empty(ctx, dst.shape(), dst.device(), MemoryRole::workspace);
  mixtape::copy(ctx, s, staged);
  impl::run_elementwise("copy", ctx, detail::MapOp<Identity, T>{}, dst, staged);
}

/// A dense row-major copy of `view` on its device, counted under `role`.
template <ScalarElement T>
Tensor<T> clone(const ExecutionContext& ctx, const Tensor<T>& view, MemoryRole role = MemoryRole::activations) {
  detail::expect_on_context("clone", "the view", ctx, view);
  auto out = Tensor<T>::empty(ctx, view.shape(), role);
  impl::run_elementwise("clone", ctx, detail::MapOp<Identity, T>{}, out, view);
  return out;
}

/// `view` itself when it is already dense row-major, else a dense copy (like torch's .contiguous()).
/// Packed formats are always contiguous.
template <Element T>
Tensor<T> contiguous(const ExecutionContext& ctx, const Tensor<T>& view, MemoryRole role = MemoryRole::activations) {
  detail::expect_on_context("contiguous", "the view", ctx, view);
  if constexpr (PackedElement<T>) {
    return view;
  } else {
    if (view.is_contiguous()) return view;
    return clone(ctx, view, role);
  }
}

// ---- runtime-typed forms (templates constrained to TensorRef, so they instantiate only when used) ----

/// `copy` for type-erased views; DTypeError when the dtypes differ.
void copy(const ExecutionContext& ctx, const std::same_as<TensorRef> auto& src, const std::same_as<TensorRef> auto& dst) {
  MIXTAPE_EXPECT(src.dtype() == dst.dtype(), DTypeError, "copy: dtypes must match, expected ", dst.dtype(), ", got ",
                 src.dtype(), " (convert with kernels::convert)");
  visit_dtype(src.dtype(), [&]<class T>() {
    if constexpr (PackedElement<T>) {
      mixtape::copy(ctx, src, dst);  // packed views are always contiguous
    } else {
      kernels::copy(ctx, src.template as<T>(), dst.template as<T>());
    }
  });
}

/// `contiguous` for a type-erased view.
TensorRef contiguous(const ExecutionContext& ctx, const std::same_as<TensorRef> auto& view,
                     MemoryRole role = MemoryRole::activations) {
  return visit_dtype(view.dtype(), [&]<class T>() -> TensorRef { return kernels::contiguous(ctx, view.template as<T>(), role); });
}

/// `fill` for a type-erased view; DTypeError for the packed formats.
void fill(const ExecutionContext& ctx, const std::same_as<TensorRef> auto& out, double value) {
  visit_dtype(out.dtype(), [&]<class T>() {
    if constexpr (PackedElement<T>) {
      MIXTAPE_THROW(DTypeError, "fill: expected a tensor of addressable elements (f64 ... u8), got ", out.dtype());
    } else {
      kernels::fill(ctx, out.template as<T>(), value);
    }
  });
}

MIXTAPE_BACKEND_END

/// The single element of `t`, on the host (waits for the context's stream when t is on a device;
/// for tests and logging, never inside a training step).
template <ScalarElement T>
T item(const ExecutionContext& ctx, const Tensor<T>& t) {
  MIXTAPE_EXPECT(t.defined(), ValueError, "item: expected a tensor with storage, got an empty handle");
  MIXTAPE_EXPECT(t.numel() == 1, ShapeError, "item: expected a tensor of one element, got shape ", t.shape());
  T value{};
  mixtape::copy(ctx, t, Tensor<T>::wrap(&value, t.shape()));
  ctx.synchronize();
  return value;
}

}  // namespace mixtape::kernels
