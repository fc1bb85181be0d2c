/// @file broadcast_host.hpp
/// @brief Host side of the broadcast ops: the row-broadcast add, and the deterministic column
///        reduction (bias and positional gradients, LayerNorm's dgamma / dbeta) that the CUDA
///        engine (broadcast_cuda.cuh) mirrors operation for operation.
///
/// Column reduction of a (rows, cols) grid of terms, per column c and value k:
///  1. the rows are cut into `chunks` chunks of `chunk_rows` consecutive rows (a function of the
///     row count only: never of the thread count or the GPU);
///  2. inside a chunk, lane j (j = 0..7) sums rows j, j + 8, ... of the chunk in order, starting
///     from 0; the chunk's partial is ((lane0 + lane1) + lane2) + ... + lane7;
///  3. the chunk partials are added in chunk order;
///  4. the result is written rounded to the output type, or added to the output's old value first.
/// The CUDA kernels take exactly these steps (a thread per (column, lane), the lanes combined by
/// one thread, a second kernel over the partials), so host and device give the same bits whenever
/// the terms do (the bias gradient always; LayerNorm's when neither build contracts dy * xhat +
/// acc into an fma, as the tests build). No atomics anywhere.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "mixtape/core/thread_pool.hpp"
#include "mixtape/kernels/detail/scalar.hpp"

namespace mixtape::kernels::detail {

/// Rows per host task of the row-wise kernels: about 32K elements, at least one row.
inline std::int64_t host_row_grain(std::int64_t cols) {
  return std::max<std::int64_t>(1, (std::int64_t{1} << 15) / std::max<std::int64_t>(cols, 1));
}

/// Minimum rows per column-reduction chunk, and the most chunks (bounding the partials' memory).
inline constexpr std::int64_t kColumnChunkRows = 64;
inline constexpr std::int64_t kColumnMaxChunks = 256;
/// Row lanes per chunk (threadIdx.y on the device).
inline constexpr int kColumnLanes = 8;

/// How the rows of a column reduction are cut into chunks.
struct ColumnPlan {
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  std::int64_t chunks = 1;
  std::int64_t chunk_rows = 0;

  MIXTAPE_HOST_DEVICE std::int64_t begin(std::int64_t g) const noexcept { return g * chunk_rows; }
  MIXTAPE_HOST_DEVICE std::int64_t end(std::int64_t g) const noexcept {
    const std::int64_t e = (g + 1) * chunk_rows;
    return e < rows ? e : rows;
  }
};

inline ColumnPlan make_column_plan(std::int64_t rows, std::int64_t cols) {
  ColumnPlan p;
  p.rows = rows;
  p.cols = cols;
  p.chunks = std::clamp<std::int64_t>((rows + kColumnChunkRows - 1) / kColumnChunkRows, 1, kColumnMaxChunks);
  p.chunk_rows = (rows + p.chunks - 1) / p.chunks;
  return p;
}

/// The term of a bias gradient: dy[r, c].
template <class A, class G>
struct BiasGradTerm {
  using acc_type = A;
  static constexpr int kValues = 1;
  const G* dy;
  std::int64_t cols;
  MIXTAPE_HOST_DEVICE void load(std::int64_t r, std::int64_t c, A (&v)[1]) const noexcept {
    v[0] = to_acc<A>(dy[r * cols + c]);
  }
};

/// Output pointers of a column reduction (one per value of the term).
template <class D, int K>
struct ColumnOutputs {
  D* p[K];
};

/// Writes the reduced value s of output k, column c: assign, or add to the old value first.
template <class A, class D>
MIXTAPE_HOST_DEVICE inline void write_column(D* out, std::int64_t c, A s, bool accumulate) {
  out[c] = accumulate ? cast<D>(to_acc<A>(out[c]) + s) : cast<D>(s);
}

/// Column reduction of `term` over a (rows, cols) grid on the host (steps in the file comment).
template <class Term, class D>
void column_reduce_host(ThreadPool& pool, const Term& term, std::int64_t rows, std::int64_t cols,
                        const ColumnOutputs<D, Term::kValues>& out, bool accumulate) {
  using A = typename Term::acc_type;
  constexpr int K = Term::kValues;
  if (cols == 0) return;
  const ColumnPlan plan = make_column_plan(rows, cols);
  std::vector<A> partials(static_cast<std::size_t>(plan.chunks * K * cols));
  pool.parallel_for(plan.chunks, 1, [&](std::int64_t g0, std::int64_t g1, int) {
    std::vector<A> lane(static_cast<std::size_t>(K * cols));
    for (std::int64_t g = g0; g < g1; ++g) {
      A* part = partials.data() + g * K * cols;
      for (int j = 0; j < kColumnLanes; ++j) {
        std::fill(lane.begin(), lane.end(), A(0));
        for (std::int64_t r = plan.begin(g) + j; r < plan.end(g); r += kColumnLanes) {
          for (std::int64_t c = 0; c < cols; ++c) {
            A v[K];
            term.load(r, c, v);
            for (int k = 0; k < K; ++k) lane[k * cols + c] += v[k];
          }
        }
        for (std::int64_t i = 0; i < K * cols; ++i) part[i] = j == 0 ? lane[i] : part[i] + lane[i];
      }
    }
  });
  pool.parallel_for(cols, 4096, [&](std::int64_t c0, std::int64_t c1, int) {
    for (int k = 0; k < K; ++k) {
      for (std::int64_t c = c0; c < c1; ++c) {
        A s = partials[k * cols + c];
        for (std::int64_t g = 1; g < plan.chunks; ++g) s += partials[(g * K + k) * cols + c];
        write_column<A>(out.p[k], c, s, accumulate);
      }
    }
  });
}

/// y[r, c] = x[r, c] + b[c] in A, rounded once to Y (bitwise equal to the CUDA kernel).
template <class A, class X, class B, class Y>
void add_bias_host(ThreadPool& pool, const X* x, const B* b, Y* y, std::int64_t rows, std::int64_t cols) {
  pool.parallel_for(rows, host_row_grain(cols), [&](std::int64_t r0, std::int64_t r1, int) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const X* xr = x + r * cols;
      Y* yr = y + r * cols;
      for (std::int64_t c = 0; c < cols; ++c) yr[c] = cast<Y>(to_acc<A>(xr[c]) + to_acc<A>(b[c]));
    }
  });
}

}  // namespace mixtape::kernels::detail
