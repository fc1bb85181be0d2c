/// @file softmax_host.hpp
/// @brief Host softmax over the last dimension with a scale and an optional causal mask, forward
///        and backward, a row per task over the thread pool.
///
/// Row r of a (rows, cols) view sees columns [0, visible(r)): all of them, or with the causal
/// mask the columns c <= r mod tile_rows (the row's index inside its (T, T) tile; PyTorch's
/// `is_causal`, top-left aligned). In the accumulate type A:
///   forward:  z = scale x,  y = exp(z - max z) / sum exp(z - max z)  (masked: y = 0);
///   backward: dx = scale y (dy - sum(dy y))                          (masked: dx = 0).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "mixtape/core/thread_pool.hpp"
#include "mixtape/kernels/detail/broadcast_host.hpp"
#include "mixtape/kernels/detail/reduce_ops.hpp"
#include "mixtape/kernels/detail/scalar.hpp"

namespace mixtape::kernels::detail {

/// Columns row `row` sees: all `cols`, or under the causal mask min(row mod tile_rows + 1, cols).
MIXTAPE_HOST_DEVICE inline std::int64_t visible_cols(std::int64_t row, std::int64_t cols, std::int64_t tile_rows,
                                                     bool causal) noexcept {
  if (!causal) return cols;
  const std::int64_t i = row % tile_rows + 1;
  return i < cols ? i : cols;
}

/// exp and log of A on the host (libm).
template <class A>
inline A host_exp(A x) noexcept {
  return std::exp(x);
}
template <class A>
inline A host_log(A x) noexcept {
  return std::log(x);
}

/// The maximum of v[0, n) (NaN-propagating, -inf for n = 0).
template <class A>
inline A host_row_max(const A* v, std::int64_t n) noexcept {
  A m = -infinity<A>();
  for (std::int64_t c = 0; c < n; ++c) m = nan_max(m, v[c]);
  return m;
}

template <class A, class In, class Out>
void softmax_forward_host(ThreadPool& pool, const In* x, Out* y, std::int64_t rows, std::int64_t cols,
                          std::int64_t tile_rows, A scale, bool causal) {
  pool.parallel_for(rows, host_row_grain(cols), [&](std::int64_t r0, std::int64_t r1, int) {
    std::vector<A> z(static_cast<std::size_t>(cols));
    for (std::int64_t r = r0; r < r1; ++r) {
      const In* xr = x + r * cols;
      Out* yr = y + r * cols;
      const std::int64_t vis = visible_cols(r, cols, tile_rows, causal);
      for (std::int64_t c = 0; c < vis; ++c) z[c] = scale * to_acc<A>(xr[c]);
      const A m = host_row_max(z.data(), vis);
      for (std::int64_t c = 0; c < vis; ++c) z[c] = host_exp(z[c] - m);
      const A s = SumReduce<A>::block(z.data(), vis);
      for (std::int64_t c = 0; c < vis; ++c) yr[c] = cast<Out>(z[c] / s);
      for (std::int64_t c = vis; c < cols; ++c) yr[c] = cast<Out>(A(0));
    }
  });
}

template <class A, class Y, class DY, class DX>
void softmax_backward_host(ThreadPool& pool, const Y* y, const DY* dy, DX* dx, std::int64_t rows, std::int64_t cols,
                           std::int64_t tile_rows, A scale, bool causal, bool accumulate) {
  pool.parallel_for(rows, host_row_grain(cols), [&](std::int64_t r0, std::int64_t r1, int) {
    std::vector<A> prod(static_cast<std::size_t>(cols));
    for (std::int64_t r = r0; r < r1; ++r) {
      const std::int64_t base = r * cols;
      const std::int64_t vis = visible_cols(r, cols, tile_rows, causal);
      for (std::int64_t c = 0; c < vis; ++c) prod[c] = to_acc<A>(dy[base + c]) * to_acc<A>(y[base + c]);
      const A dot = SumReduce<A>::block(prod.data(), vis);
      DX* out = dx + base;
      for (std::int64_t c = 0; c < vis; ++c) {
        const A g = scale * (to_acc<A>(y[base + c]) * (to_acc<A>(dy[base + c]) - dot));
        out[c] = accumulate ? cast<DX>(to_acc<A>(out[c]) + g) : cast<DX>(g);
      }
      if (!accumulate)
        for (std::int64_t c = vis; c < cols; ++c) out[c] = cast<DX>(A(0));
    }
  });
}

}  // namespace mixtape::kernels::detail
