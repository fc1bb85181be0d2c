/// @file broadcast_cuda.cuh
/// @brief CUDA side of the broadcast ops (only in `.cu` units): the row-broadcast add (16-byte
///        packs when every operand allows) and the deterministic two-pass column reduction whose
///        steps broadcast_host.hpp states.
///
/// Column reduction: kernel 1 has a block of 32 x 8 threads per (32-column tile, row chunk); thread
/// (x, y) sums rows y, y + 8, ... of the chunk for its column (a warp reads 32 consecutive
/// columns of one row), thread (x, 0) adds the 8 lane sums in lane order and writes the chunk's
/// partial to workspace memory; kernel 2 stages the partials of a column tile in shared memory and
/// adds each column's in chunk order, then writes (or accumulates into) the output. No atomics: the same inputs give the same bits on
/// every run and on the host.
#pragma once

#if !defined(__CUDACC__)
#error "broadcast_cuda.cuh is for .cu translation units"
#endif

#include <cuda_runtime.h>

#include <cstdint>

#include "mixtape/core/error.hpp"
#include "mixtape/core/execution_context.hpp"
#include "mixtape/core/tensor.hpp"
#include "mixtape/kernels/detail/broadcast_host.hpp"
#include "mixtape/kernels/detail/elementwise_cuda.cuh"
#include "mixtape/kernels/detail/row_group_cuda.cuh"

namespace mixtape::kernels::detail {
MIXTAPE_BACKEND_BEGIN
namespace gpu {

inline constexpr int kColumnTile = 32;

template <class Term>
__global__ void __launch_bounds__(kColumnTile* kColumnLanes)
    column_partials_kernel(Term term, ColumnPlan plan, typename Term::acc_type* partials) {
  using A = typename Term::acc_type;
  constexpr int K = Term::kValues;
  __shared__ A lanes[kColumnLanes][K][kColumnTile];
  const std::int64_t g = blockIdx.y;
  const std::int64_t c = static_cast<std::int64_t>(blockIdx.x) * kColumnTile + threadIdx.x;
  A acc[K];
#pragma unroll
  for (int k = 0; k < K; ++k) acc[k] = A(0);
  if (c < plan.cols) {
    const std::int64_t end = plan.end(g);
    for (std::int64_t r = plan.begin(g) + threadIdx.y; r < end; r += kColumnLanes) {
      A v[K];
      term.load(r, c, v);
#pragma unroll
      for (int k = 0; k < K; ++k) acc[k] += v[k];
    }
  }
#pragma unroll
  for (int k = 0; k < K; ++k) lanes[threadIdx.y][k][threadIdx.x] = acc[k];
  __syncthreads();
  if (threadIdx.y == 0 && c < plan.cols) {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      A s = lanes[0][k][threadIdx.x];
#pragma unroll
      for (int j = 1; j < kColumnLanes; ++j) s = s + lanes[j][k][threadIdx.x];
      partials[(g * K + k) * plan.cols + c] = s;
    }
  }
}

/// Chunk partials staged in shared memory per batch by the finalize kernel.
inline constexpr int kColumnFinalizeBatch = 64;

/// Adds each column's chunk partials in chunk order (the documented order) and writes the column.
/// A block of 32 x 8 threads owns one (32-column tile, output k): the whole block loads a batch of
/// chunk partials into shared memory, 8 row loads in flight per thread and a warp per 128 bytes,
/// then lane (x, 0) adds them in order. One thread per column walking the partials in global
/// memory instead pays a dependent load round trip per chunk: 256 chunks were ~30 us a call.
template <class A, int K, class D>
__global__ void __launch_bounds__(kColumnTile* kColumnLanes)
    column_finalize_kernel(ColumnPlan plan, const A* partials, ColumnOutputs<D, K> out, bool accumulate) {
  __shared__ A staged[kColumnFinalizeBatch][kColumnTile];
  const int k = static_cast<int>(blockIdx.y);
  const std::int64_t c = static_cast<std::int64_t>(blockIdx.x) * kColumnTile + threadIdx.x;
  A s = A(0);
  for (std::int64_t g0 = 0; g0 < plan.chunks; g0 += kColumnFinalizeBatch) {
    const std::int64_t n = plan.chunks - g0 < kColumnFinalizeBatch ? plan.chunks - g0 : kColumnFinalizeBatch;
    if (c < plan.cols) {
      for (std::int64_t g = threadIdx.y; g < n; g += kColumnLanes)
        staged[g][threadIdx.x] = partials[((g0 + g) * K + k) * plan.cols + c];
    }
    __syncthreads();
    if (threadIdx.y == 0) {
      for (std::int64_t g = 0; g < n; ++g) s = g0 + g == 0 ? staged[g][threadIdx.x] : s + staged[g][threadIdx.x];
    }
    __syncthreads();
  }
  if (threadIdx.y == 0 && c < plan.cols) write_column<A>(out.p[k], c, s, accumulate);
}

/// Column reduction of `term` over (rows, cols) into `out` on the context's stream.
template <class Term, class D>
void column_reduce(const ExecutionContext& ctx, const Term& term, std::int64_t rows, std::int64_t cols,
                   const ColumnOutputs<D, Term::kValues>& out, bool accumulate) {
  using A = typename Term::acc_type;
  constexpr int K = Term::kValues;
  if (cols == 0) return;
  DeviceScope scope(ctx.device().index());
  const ColumnPlan plan = make_column_plan(rows, cols);
  auto partials = Tensor<A>::empty(ctx, {plan.chunks * K * cols}, MemoryRole::workspace);
  const dim3 block(kColumnTile, kColumnLanes);
  const dim3 grid(static_cast<unsigned>((cols + kColumnTile - 1) / kColumnTile), static_cast<unsigned>(plan.chunks));
  column_partials_kernel<Term><<<grid, block, 0, ctx.stream()>>>(term, plan, partials.data());
  MIXTAPE_CUDA_CHECK(cudaGetLastError());
  const dim3 finalize_grid(grid.x, static_cast<unsigned>(K));
  column_finalize_kernel<A, K, D><<<finalize_grid, block, 0, ctx.stream()>>>(plan, partials.data(), out, accumulate);
  MIXTAPE_CUDA_CHECK(cudaGetLastError());
}

template <int P, class A, class X, class B, class Y>
__global__ void __launch_bounds__(kRowThreads)
    add_bias_kernel(std::int64_t packs, std::int64_t row_packs, const X* x, const B* b, Y* y) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t p = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; p < packs; p += stride) {
    const std::int64_t c = (p % row_packs) * P;
    A xv[P], bv[P];
    load_row_pack<P>(x + p * P, xv);
    load_row_pack<P>(b + c, bv);
#pragma unroll
    for (int k = 0; k < P; ++k) xv[k] = xv[k] + bv[k];
    store_row_pack<P>(y + p * P, xv);
  }
}

/// y = x + b over rows of `cols` on the context's stream.
template <class A, class X, class B, class Y>
void add_bias(const ExecutionContext& ctx, const X* x, const B* b, Y* y, std::int64_t rows, std::int64_t cols) {
  if (rows == 0 || cols == 0) return;
  DeviceScope scope(ctx.device().index());
  constexpr int P = kPackOf<X, B, Y>;
  const std::int64_t n = rows * cols;
  if (rows_packable<P>(cols, x, b, y)) {
    add_bias_kernel<P, A><<<grid_for(n / P, kRowThreads), kRowThreads, 0, ctx.stream()>>>(n / P, cols / P, x, b, y);
  } else {
    add_bias_kernel<1, A><<<grid_for(n, kRowThreads), kRowThreads, 0, ctx.stream()>>>(n, cols, x, b, y);
  }
  MIXTAPE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace gpu
MIXTAPE_BACKEND_END
}  // namespace mixtape::kernels::detail
