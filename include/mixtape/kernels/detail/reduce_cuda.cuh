/// @file reduce_cuda.cuh
/// @brief The CUDA reduction engine (only in `.cu` units).
///
/// Whole-tensor reductions: `cub::DeviceReduce::TransformReduce` (run-to-run deterministic, no
/// atomics) over the dense input (a strided view is first made dense in workspace memory) into a
/// state in workspace memory, then a one-thread kernel finalizes and rounds the result into the
/// output tensor: nothing is copied to the host and nothing syncs. CUB's temporary storage comes
/// from the context's stream-ordered pool (MemoryRole::workspace), which is capture-safe.
///
/// Row reductions (last dimension): a warp per row when rows have at most 1024 elements, a block of
/// 256 threads per row otherwise; each thread reduces a fixed strided subset of the row in order,
/// then `cub::WarpReduce` / `cub::BlockReduce` combine with a fixed tree: deterministic. Error
/// model: at most ceil(cols / W) + log2(W) sequential terms on any path (W = 32 or 256).
#pragma once

#if !defined(__CUDACC__)
#error "reduce_cuda.cuh is for .cu translation units"
#endif

#include <cub/block/block_reduce.cuh>
#include <cub/device/device_reduce.cuh>
#include <cub/warp/warp_reduce.cuh>
#include <cuda_runtime.h>

#include <cstdint>

#include "mixtape/core/error.hpp"
#include "mixtape/core/execution_context.hpp"
#include "mixtape/core/tensor.hpp"
#include "mixtape/kernels/detail/elementwise_cuda.cuh"
#include "mixtape/kernels/detail/elementwise_ops.hpp"
#include "mixtape/kernels/detail/reduce_ops.hpp"

namespace mixtape::kernels::detail {
MIXTAPE_BACKEND_BEGIN
namespace gpu {

inline constexpr int kRowBlockThreads = 256;
inline constexpr std::int64_t kWarpRowMaxCols = 1024;

/// CUB's reduction functor for op R.
template <class R>
struct CombineFn {
  using S = typename R::state_type;
  __device__ __forceinline__ S operator()(const S& a, const S& b) const { return R::combine(a, b); }
};

/// CUB's transform functor: one element of T to a state.
template <class R, class T>
struct LoadFn {
  __device__ __forceinline__ typename R::state_type operator()(const T& x) const { return R::load(x); }
};

template <class R, class O>
__global__ void finalize_kernel(const typename R::state_type* state, O* out0, O* out1) {
  typename R::acc_type values[2];
  R::finalize(*state, values);
  *out0 = cast<O>(values[0]);
  if constexpr (R::kOutputs == 2) *out1 = cast<O>(values[1]);
}

/// Whole-tensor reduction of `in` into out0 (and out1) on the context's stream.
template <class R, class T, class O>
void reduce_all(const ExecutionContext& ctx, const Tensor<T>& in, O* out0, O* out1) {
  using S = typename R::state_type;
  DeviceScope scope(ctx.device().index());
  cudaStream_t stream = ctx.stream();
  Tensor<T> dense = in;
  if (!in.is_contiguous()) {
    dense = Tensor<T>::empty(ctx, in.shape(), MemoryRole::workspace);
    elementwise(ctx, MapOp<Identity, T>{}, dense, in);
  }
  const std::int64_t n = dense.numel();
  std::size_t temp_bytes = 0;
  MIXTAPE_CUDA_CHECK(cub::DeviceReduce::TransformReduce(nullptr, temp_bytes, dense.data(), static_cast<S*>(nullptr), n,
                                                        CombineFn<R>{}, LoadFn<R, T>{}, R::identity(), stream));
  // One workspace allocation: the state (256-byte aligned slot) then CUB's temporary storage.
  constexpr std::int64_t kStateSlot = (static_cast<std::int64_t>(sizeof(S)) + 255) / 256 * 256;
  auto workspace = Tensor<std::uint8_t>::empty(ctx, {kStateSlot + static_cast<std::int64_t>(temp_bytes)}, MemoryRole::workspace);
  auto* state = reinterpret_cast<S*>(workspace.data());
  void* temp = workspace.data() + kStateSlot;
  MIXTAPE_CUDA_CHECK(cub::DeviceReduce::TransformReduce(temp, temp_bytes, dense.data(), state, n, CombineFn<R>{},
                                                        LoadFn<R, T>{}, R::identity(), stream));
  finalize_kernel<R, O><<<1, 1, 0, stream>>>(state, out0, out1);
  MIXTAPE_CUDA_CHECK(cudaGetLastError());
}

template <class R, class T, class O>
__global__ void __launch_bounds__(kRowBlockThreads)
    reduce_rows_warp_kernel(RowPlan plan, std::int64_t rows, std::int64_t cols, const T* in, O* out0, O* out1) {
  using S = typename R::state_type;
  using WarpReduce = cub::WarpReduce<S>;
  constexpr int kWarps = kRowBlockThreads / 32;
  __shared__ typename WarpReduce::TempStorage temp[kWarps];
  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  for (std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * kWarps + warp; row < rows;
       row += static_cast<std::int64_t>(gridDim.x) * kWarps) {
    std::int64_t in_off, o0, o1;
    plan.offsets(row, in_off, o0, o1);
    const T* p = in + in_off;
    S s = R::identity();
    for (std::int64_t c = lane; c < cols; c += 32) s = R::combine(s, R::load(p[c * plan.col_stride]));
    s = WarpReduce(temp[warp]).Reduce(s, CombineFn<R>{});
    if (lane == 0) {
      typename R::acc_type values[2];
      R::finalize(s, values);
      out0[o0] = cast<O>(values[0]);
      if constexpr (R::kOutputs == 2) out1[o1] = cast<O>(values[1]);
    }
    __syncwarp();
  }
}

template <class R, class T, class O>
__global__ void __launch_bounds__(kRowBlockThreads)
    reduce_rows_block_kernel(RowPlan plan, std::int64_t rows, std::int64_t cols, const T* in, O* out0, O* out1) {
  using S = typename R::state_type;
  using BlockReduce = cub::BlockReduce<S, kRowBlockThreads>;
  __shared__ typename BlockReduce::TempStorage temp;
  for (std::int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    std::int64_t in_off, o0, o1;
    plan.offsets(row, in_off, o0, o1);
    const T* p = in + in_off;
    S s = R::identity();
    for (std::int64_t c = threadIdx.x; c < cols; c += kRowBlockThreads) s = R::combine(s, R::load(p[c * plan.col_stride]));
    s = BlockReduce(temp).Reduce(s, CombineFn<R>{});
    if (threadIdx.x == 0) {
      typename R::acc_type values[2];
      R::finalize(s, values);
      out0[o0] = cast<O>(values[0]);
      if constexpr (R::kOutputs == 2) out1[o1] = cast<O>(values[1]);
    }
    __syncthreads();
  }
}

/// Row reduction over the last dimension on the context's stream.
template <class R, class T, class O>
void reduce_rows(const ExecutionContext& ctx, const Tensor<T>& in, const RowPlan& plan, std::int64_t rows, O* out0, O* out1) {
  if (rows == 0) return;
  DeviceScope scope(ctx.device().index());
  const std::int64_t cols = in.shape()[in.rank() - 1];
  cudaStream_t stream = ctx.stream();
  if (cols <= kWarpRowMaxCols) {
    const unsigned grid = grid_for(rows, kRowBlockThreads / 32);
    reduce_rows_warp_kernel<R, T, O><<<grid, kRowBlockThreads, 0, stream>>>(plan, rows, cols, in.data(), out0, out1);
  } else {
    const unsigned grid = grid_for(rows, 1);
    reduce_rows_block_kernel<R, T, O><<<grid, kRowBlockThreads, 0, stream>>>(plan, rows, cols, in.data(), out0, out1);
  }
  MIXTAPE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace gpu
MIXTAPE_BACKEND_END
}  // namespace mixtape::kernels::detail
