/// @file softmax_cuda.cuh
/// @brief CUDA softmax over the last dimension (only in `.cu` units): a warp per row (<= 2048
///        columns) or a block per row, 16-byte packs when every operand allows.
///
/// Forward takes two passes over a row: the first keeps an online (max, sum of exp) state per
/// thread (row_group_cuda.cuh's MaxSum: one exp per element) and merges the states by the group's
/// fixed tree; the second writes exp(z - max) / sum. Causal rows read only their visible columns
/// and write zeros past them. Backward: one pass for sum(dy y), one to write. Deterministic run to
/// run; within the tests' tolerances of the host (exp and log are the device's, not libm's).
#pragma once

#if !defined(__CUDACC__)
#error "softmax_cuda.cuh is for .cu translation units"
#endif

#include <cuda_runtime.h>

#include <cstdint>

#include "mixtape/core/error.hpp"
#include "mixtape/core/execution_context.hpp"
#include "mixtape/kernels/detail/row_group_cuda.cuh"
#include "mixtape/kernels/detail/softmax_host.hpp"

namespace mixtape::kernels::detail {
MIXTAPE_BACKEND_BEGIN
namespace gpu {

template <int G, int P, class A, class In, class Out>
__global__ void __launch_bounds__(kRowThreads)
    softmax_forward_kernel(std::int64_t rows, std::int64_t cols, std::int64_t tile_rows, A scale, bool causal,
                           const In* x, Out* y) {
  using RG = RowGroup<G>;
  __shared__ MaxSum<A> smem[RG::kWarps];
  for (std::int64_t row = RG::first_row(); row < rows; row += RG::row_stride()) {
    const In* xr = x + row * cols;
    Out* yr = y + row * cols;
    const std::int64_t vis = visible_cols(row, cols, tile_rows, causal);
    MaxSum<A> st{-infinity<A>(), A(0)};
    for (std::int64_t c = static_cast<std::int64_t>(RG::rank()) * P; c < vis; c += G * P) {
      A v[P];
      load_row_pack<P>(xr + c, v);
#pragma unroll
      for (int k = 0; k < P; ++k)
        if (c + k < vis) st = add_max_sum(st, scale * v[k]);
    }
    st = RG::reduce(st, CombineMaxSum{}, smem);
    for (std::int64_t c = static_cast<std::int64_t>(RG::rank()) * P; c < cols; c += G * P) {
      A v[P];
      if (c < vis) {
        load_row_pack<P>(xr + c, v);
#pragma unroll
        for (int k = 0; k < P; ++k) v[k] = c + k < vis ? exp_of(scale * v[k] - st.m) / st.s : A(0);
      } else {
#pragma unroll
        for (int k = 0; k < P; ++k) v[k] = A(0);
      }
      store_row_pack<P>(yr + c, v);
    }
  }
}

template <int G, int P, class A, class Y, class DY, class DX>
__global__ void __launch_bounds__(kRowThreads)
    softmax_backward_kernel(std::int64_t rows, std::int64_t cols, std::int64_t tile_rows, A scale, bool causal,
                            const Y* y, const DY* dy, DX* dx, bool accumulate) {
  using RG = RowGroup<G>;
  __shared__ A smem[RG::kWarps];
  for (std::int64_t row = RG::first_row(); row < rows; row += RG::row_stride()) {
    const std::int64_t base = row * cols;
    const std::int64_t vis = visible_cols(row, cols, tile_rows, causal);
    A s = 0;
    for (std::int64_t c = static_cast<std::int64_t>(RG::rank()) * P; c < vis; c += G * P) {
      A yv[P], dv[P];
      load_row_pack<P>(y + base + c, yv);
      load_row_pack<P>(dy + base + c, dv);
#pragma unroll
      for (int k = 0; k < P; ++k)
        if (c + k < vis) s += dv[k] * yv[k];
    }
    const A dot = RG::reduce(s, Plus{}, smem);
    for (std::int64_t c = static_cast<std::int64_t>(RG::rank()) * P; c < cols; c += G * P) {
      A g[P];
      if (c < vis) {
        A yv[P], dv[P];
        load_row_pack<P>(y + base + c, yv);
        load_row_pack<P>(dy + base + c, dv);
#pragma unroll
        for (int k = 0; k < P; ++k) g[k] = c + k < vis ? scale * (yv[k] * (dv[k] - dot)) : A(0);
      } else {
#pragma unroll
        for (int k = 0; k < P; ++k) g[k] = A(0);
      }
      if (accumulate) {
        A old[P];
        load_row_pack<P>(dx + base + c, old);
#pragma unroll
        for (int k = 0; k < P; ++k)
          if (c + k < vis) g[k] = old[k] + g[k];
          else g[k] = old[k];
      }
      store_row_pack<P>(dx + base + c, g);
    }
  }
}

template <class A, class In, class Out>
void softmax_forward(const ExecutionContext& ctx, const In* x, Out* y, std::int64_t rows, std::int64_t cols,
                     std::int64_t tile_rows, A scale, bool causal) {
  if (rows == 0 || cols == 0) return;
  DeviceScope scope(ctx.device().index());
  constexpr int P = kPackOf<In, Out>;
  launch_rows<P>(rows, cols, rows_packable<P>(cols, x, y), [&]<int G, int PP>(unsigned grid) {
    softmax_forward_kernel<G, PP, A><<<grid, kRowThreads, 0, ctx.stream()>>>(rows, cols, tile_rows, scale, causal, x, y);
  });
}

template <class A, class Y, class DY, class DX>
void softmax_backward(const ExecutionContext& ctx, const Y* y, const DY* dy, DX* dx, std::int64_t rows,
                      std::int64_t cols, std::int64_t tile_rows, A scale, bool causal, bool accumulate) {
  if (rows == 0 || cols == 0) return;
  DeviceScope scope(ctx.device().index());
  constexpr int P = kPackOf<Y, DY, DX>;
  launch_rows<P>(rows, cols, rows_packable<P>(cols, y, dy, dx), [&]<int G, int PP>(unsigned grid) {
    softmax_backward_kernel<G, PP, A><<<grid, kRowThreads, 0, ctx.stream()>>>(rows, cols, tile_rows, scale, causal, y,
                                                                             dy, dx, accumulate);
  });
}

}  // namespace gpu
MIXTAPE_BACKEND_END
}  // namespace mixtape::kernels::detail
