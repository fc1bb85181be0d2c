/// @file embedding.hpp
/// @brief Embedding lookup (`nn.Embedding`) on both backends: the gather out[p, :] =
///        table[ids[p], :], and its gradient d_table[v, :] = sum over positions p with ids[p] == v
///        of dout[p, :], deterministic and without atomics.
///
/// The gather converts to the output type with nearest-even (a plain copy when the types agree):
/// host and CUDA give the same bits. The gradient adds each row's positions in increasing order in
/// `compute_t` of the operands (float for narrow ones, double with an f64 one), starting from 0,
/// then assigns (rows no id hits become 0) or adds to the existing row: host (stable counting
/// sort) and CUDA (CUB radix sort of (id, position) pairs, a block per run) add the same terms in
/// the same order, so they also give the same bits. The GPT's tied token embedding gets this
/// gradient accumulated onto the LM head's (`accumulate = true`).
///
/// Out-of-range ids: the host throws ValueError naming the position and the id before writing;
/// CUDA never reads out of bounds: the output row becomes NaN, the id is left out of the
/// gradient, and the optional status tensor records it (detail/index_status.hpp).
///
/// Operands are dense row-major views (ShapeError otherwise).
///
/// @code
///   kernels::embedding_forward(ctx, idx, wte, tok);              // idx (B, T) -> tok (B, T, C)
///   kernels::embedding_backward(ctx, idx, dtok, dwte, true);     // dwte (V, C) += scatter of dtok
/// @endcode
#pragma once

#include <array>
#include <concepts>
#include <cstdint>
#include <span>

#include "mixtape/config.hpp"
#include "mixtape/core/execution_context.hpp"
#include "mixtape/core/tensor.hpp"
#include "mixtape/kernels/detail/embedding_host.hpp"
#include "mixtape/kernels/detail/index_status.hpp"
#include "mixtape/kernels/detail/model_checks.hpp"
#include "mixtape/kernels/detail/scalar.hpp"
#include "mixtape/kernels/elementwise.hpp"

#if MIXTAPE_HAS_KERNELS
#include "mixtape/kernels/detail/embedding_cuda.cuh"
#endif

namespace mixtape::kernels {

namespace detail {

/// Checks ids (...) against a (V, C) table and a (..., C) activation; returns (positions, C) and V.
inline RowShape embedding_shape(const char* op, const mixtape::detail::TensorBase& ids,
                                const mixtape::detail::TensorBase& table, const mixtape::detail::TensorBase& rows,
                                const char* rows_name, std::int64_t& vocab) {
  MIXTAPE_EXPECT(table.rank() == 2 && table.shape()[0] >= 1, ShapeError, op,
                 ": expected a table of shape (V, C) with V >= 1, got ", table.shape());
  vocab = table.shape()[0];
  const std::int64_t cols = table.shape()[1];
  std::array<std::int64_t, kMaxRank> e{};
  MIXTAPE_EXPECT(ids.rank() < kMaxRank, ShapeError, op, ": ids of rank ", ids.rank(), " leave no room for C");
  for (int d = 0; d < ids.rank(); ++d) e[d] = ids.shape()[d];
  e[ids.rank()] = cols;
  expect_shape(op, rows_name, rows, Shape(std::span<const std::int64_t>(e.data(), static_cast<std::size_t>(ids.rank() + 1))));
  expect_int32_count(op, "positions", ids.numel());
  expect_int32_count(op, "table rows", vocab);
  return {ids.numel(), cols};
}

}  // namespace detail

MIXTAPE_BACKEND_BEGIN

/// out[..., :] = table[ids[...], :], converted to O.
/// @tparam I  the ids' element type (int32 or int64)
/// @tparam T  the table's element type
/// @tparam O  the output's element type
/// @param ids     any shape (...), values in [0, V)
/// @param table   (V, C)
/// @param out     (..., C)
/// @param status  optional (CUDA): records an out-of-range id (index_status.hpp)
/// @throws ValueError (host) naming the position and value of an out-of-range id; ShapeError,
///         DeviceError, BackendError as usual.
template <IndexElement I, FloatElement T, FloatElement O>
void embedding_forward(const ExecutionContext& ctx, const Tensor<I>& ids, const Tensor<T>& table, const Tensor<O>& out,
                       const Tensor<std::int64_t>& status = {}) {
  constexpr const char* kOp = "embedding_forward";
  detail::expect_dense_all(kOp, ctx, {{"ids", &ids}, {"the table", &table}, {"out", &out}});
  std::int64_t vocab = 0;
  const auto rs = detail::embedding_shape(kOp, ids, table, out, "out", vocab);
  detail::expect_status(kOp, ctx, status);
  if (ctx.is_cuda()) {
#if MIXTAPE_HAS_KERNELS
    detail::gpu::embedding_forward(ctx, ids.data(), table.data(), out.data(), rs.rows, vocab, rs.cols, status.data());
#else
    detail::throw_needs_cu(kOp, ctx.device());
#endif
  } else {
    detail::embedding_forward_host(ctx.pool(), ids.data(), table.data(), out.data(), rs.rows, vocab, rs.cols);
  }
  out.storage()->bump_version();
}

/// d_table = (accumulate ? d_table : 0) + scatter-add of dout by ids, deterministic (file comment).
/// @tparam I  the ids' element type
/// @tparam G  dout's element type
/// @tparam D  d_table's element type (the parameter-gradient type)
/// @param ids      any shape (...)
/// @param dout     (..., C)
/// @param d_table  (V, C)
/// @param status   optional (CUDA), as in the forward
template <IndexElement I, FloatElement G, FloatElement D>
void embedding_backward(const ExecutionContext& ctx, const Tensor<I>& ids, const Tensor<G>& dout, const Tensor<D>& d_table,
                        bool accumulate, const Tensor<std::int64_t>& status = {}) {
  constexpr const char* kOp = "embedding_backward";
  using A = compute_t<G, D>;
  detail::expect_dense_all(kOp, ctx, {{"ids", &ids}, {"dout", &dout}, {"d_table", &d_table}});
  std::int64_t vocab = 0;
  const auto rs = detail::embedding_shape(kOp, ids, d_table, dout, "dout", vocab);
  detail::expect_status(kOp, ctx, status);
  MIXTAPE_EXPECT(!detail::overlaps(d_table, dout), ValueError, kOp, ": expected d_table not to overlap dout");
  if (ctx.is_cuda()) {
#if MIXTAPE_HAS_KERNELS
    detail::gpu::embedding_backward<A>(ctx, ids.data(), dout.data(), d_table.data(), rs.rows, vocab, rs.cols, accumulate,
                                       status.data());
#else
    detail::throw_needs_cu(kOp, ctx.device());
#endif
  } else {
    detail::embedding_backward_host<A>(ctx.pool(), ids.data(), dout.data(), d_table.data(), rs.rows, vocab, rs.cols,
                                       accumulate);
  }
  d_table.storage()->bump_version();
}

/// embedding_forward with type-erased ids (i32 or i64; DTypeError otherwise).
/// @tparam T  the table's element type
/// @tparam O  the output's element type
template <FloatElement T, FloatElement O>
void embedding_forward(const ExecutionContext& ctx, const std::same_as<TensorRef> auto& ids, const Tensor<T>& table,
                       const Tensor<O>& out, const Tensor<std::int64_t>& status = {}) {
  detail::visit_index_dtype("embedding_forward", ids,
                            [&](const auto& i) { kernels::embedding_forward(ctx, i, table, out, status); });
}

/// embedding_backward with type-erased ids (i32 or i64; DTypeError otherwise).
/// @tparam G  dout's element type
/// @tparam D  d_table's element type
template <FloatElement G, FloatElement D>
void embedding_backward(const ExecutionContext& ctx, const std::same_as<TensorRef> auto& ids, const Tensor<G>& dout,
                        const Tensor<D>& d_table, bool accumulate, const Tensor<std::int64_t>& status = {}) {
  detail::visit_index_dtype("embedding_backward", ids,
                            [&](const auto& i) { kernels::embedding_backward(ctx, i, dout, d_table, accumulate, status); });
}

MIXTAPE_BACKEND_END

}  // namespace mixtape::kernels
