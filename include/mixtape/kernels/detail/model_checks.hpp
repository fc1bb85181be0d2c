/// @file model_checks.hpp
/// @brief Operand checks shared by the model kernels (activation, layernorm, softmax, loss,
///        embedding, broadcast): storage on the context's device, dense row-major layout, a
///        (rows, cols) view of the last dimension, and the index element types.
///
/// The row-wise kernels read each row as one dense run, so they take contiguous views only (a
/// strided view gets a ShapeError that says to make it contiguous first); element-wise ones
/// (GELU, the MSE gradient) take any strides through the element-wise engines instead.
#pragma once

#include <array>
#include <concepts>
#include <cstddef>
#include <initializer_list>
#include <span>
#include <cstdint>
#include <type_traits>

#include "mixtape/core/error.hpp"
#include "mixtape/core/execution_context.hpp"
#include "mixtape/core/tensor.hpp"
#include "mixtape/kernels/elementwise.hpp"

namespace mixtape::kernels {

/// The index element types the gather / target ops take (token ids, class targets).
template <class T>
concept IndexElement = std::is_same_v<T, std::int32_t> || std::is_same_v<T, std::int64_t>;

/// The loss and statistics types: float, or double for f64 models.
template <class T>
concept StatElement = std::is_same_v<T, float> || std::is_same_v<T, double>;

namespace detail {

/// Checks that `t` has storage on the context's device and is dense row-major.
inline void expect_dense(const char* op, const char* what, const ExecutionContext& ctx,
                         const mixtape::detail::TensorBase& t) {
  expect_on_context(op, what, ctx, t);
  MIXTAPE_EXPECT(t.is_contiguous(), ShapeError, op, ": ", what, " must be a contiguous (row-major) view, got shape ",
                 t.shape(), " with other strides; make it contiguous with kernels::contiguous first");
}

/// A named operand, for checking several at once.
struct Operand {
  const char* what;
  const mixtape::detail::TensorBase* tensor;
};

/// expect_dense for each operand.
inline void expect_dense_all(const char* op, const ExecutionContext& ctx, std::initializer_list<Operand> operands) {
  for (const Operand& o : operands) expect_dense(op, o.what, ctx, *o.tensor);
}

/// Whether two dense views share any byte (views of one arena that do not overlap are fine).
template <class T, class U>
bool overlaps(const Tensor<T>& a, const Tensor<U>& b) {
  if (!a.aliases(b) || a.numel() == 0 || b.numel() == 0) return false;
  const auto* a0 = reinterpret_cast<const std::byte*>(a.data());
  const auto* b0 = reinterpret_cast<const std::byte*>(b.data());
  return a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
}

/// Rows and columns of a tensor read as (rows, cols) over its last dimension.
struct RowShape {
  std::int64_t rows = 0;
  std::int64_t cols = 0;
};

/// (product of the leading extents, last extent); a ShapeError for rank 0.
inline RowShape row_shape(const char* op, const char* what, const mixtape::detail::TensorBase& t) {
  MIXTAPE_EXPECT(t.rank() >= 1, ShapeError, op, ": ", what, " must have rank >= 1, got shape ", t.shape());
  const std::int64_t cols = t.shape()[t.rank() - 1];
  return {cols == 0 ? 0 : t.numel() / cols, cols};
}

/// The leading extents of `t` (all but the last) as a shape.
inline Shape leading_shape(const mixtape::detail::TensorBase& t) {
  return Shape(t.shape().span().first(static_cast<std::size_t>(t.rank() - 1)));
}

/// Checks that `t` has exactly `want` as its shape.
inline void expect_shape(const char* op, const char* what, const mixtape::detail::TensorBase& t, const Shape& want) {
  MIXTAPE_EXPECT(t.shape() == want, ShapeError, op, ": expected ", what, " of shape ", want, ", got ", t.shape());
}

/// Checks that `t` holds exactly one element (a device scalar such as the loss or its gradient).
inline void expect_scalar(const char* op, const char* what, const mixtape::detail::TensorBase& t) {
  MIXTAPE_EXPECT(t.numel() == 1, ShapeError, op, ": expected ", what, " with one element, got shape ", t.shape());
}

/// Checks that `n` fits the int32 positions the CUDA kernels sort and index by.
inline void expect_int32_count(const char* op, const char* what, std::int64_t n) {
  MIXTAPE_EXPECT(n <= INT32_MAX, ShapeError, op, ": expected at most ", INT32_MAX, " ", what, ", got ", n);
}

/// Calls f(indices as Tensor<I>) for an i32 or i64 type-erased tensor; DTypeError otherwise.
template <class F>
void visit_index_dtype(const char* op, const TensorRef& idx, F&& f) {
  if (idx.dtype() == DType::i32) return f(idx.as<std::int32_t>());
  if (idx.dtype() == DType::i64) return f(idx.as<std::int64_t>());
  MIXTAPE_THROW(DTypeError, op, ": expected i32 or i64 indices, got ", idx.dtype());
}

}  // namespace detail
}  // namespace mixtape::kernels
