/// @file optimizer_cuda.cuh
/// @brief The CUDA engine of the optimizer kernels (only in `.cu` units): one launch per dtype
///        group for the multi-tensor operations, one-thread kernels for the step scalars, and the
///        two-pass deterministic gradient norm.
///
/// Multi-tensor operations: one block of 256 threads per chunk of the group (grid-stride over
/// chunks beyond 2^20), each thread loading the step scalars once (`op.load()`), then handling
/// elements begin + threadIdx.x, + 256, ... of its chunk with the same per-element code as the
/// host engine, so results are bitwise identical. An operation that reports non-finite values
/// (unscale) has each reporting thread store 1.0f into found_inf: every writer stores the same
/// value, so the result does not depend on their order (a store, not a floating-point atomic).
///
/// Gradient norm: pass 1 launches, per group, a grid fixed by the group's size alone
/// (norm_blocks(n)); each thread sums the squares of a fixed strided subset in double, then
/// cub::BlockReduce (a fixed tree) writes one partial per block into workspace memory. Pass 2, one
/// block, sums all partials of all groups in a fixed order and finishes the norm and the clip
/// coefficient into the step scalars. Deterministic run to run, no atomics, no host sync; the
/// workspace comes from the stream-ordered pool, so the two passes can be captured in a graph.
#pragma once

#if !defined(__CUDACC__)
#error "optimizer_cuda.cuh is for .cu translation units"
#endif

#include <cub/block/block_reduce.cuh>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "mixtape/core/error.hpp"
#include "mixtape/core/execution_context.hpp"
#include "mixtape/kernels/detail/elementwise_cuda.cuh"
#include "mixtape/kernels/detail/optimizer_ops.hpp"

namespace mixtape::kernels::detail {
MIXTAPE_BACKEND_BEGIN
namespace gpu {

inline constexpr int kOptimizerThreads = 256;
inline constexpr int kNormThreads = 256;
inline constexpr std::int64_t kNormMaxBlocks = 1024;
inline constexpr std::int64_t kNormElementsPerThread = 16;

template <class Op>
__global__ void __launch_bounds__(kOptimizerThreads)
    multi_tensor_kernel(Op op, const OptimizerChunk* chunks, std::int64_t nchunks, std::int64_t n, float* found_inf) {
  const auto k = op.load();
  if (k.skip) return;
  bool any = false;
  for (std::int64_t c = blockIdx.x; c < nchunks; c += gridDim.x) {
    const OptimizerChunk ch = chunk_at(chunks, c, n);
    for (std::int32_t j = static_cast<std::int32_t>(threadIdx.x); j < ch.length; j += kOptimizerThreads)
      any |= op.apply(ch, j, k);
  }
  if (any && found_inf != nullptr) *found_inf = 1.0f;
}

/// Runs `op` over the group's chunks on the context's stream; reporting operations set
/// *found_inf (device memory) to 1 when they see a non-finite value.
template <class Op>
void multi_tensor(const ExecutionContext& ctx, const Op& op, const OptimizerChunk* chunks, std::int64_t nchunks,
                  std::int64_t n, float* found_inf) {
  if (nchunks == 0) return;
  DeviceScope scope(ctx.device().index());
  const auto grid = static_cast<unsigned>(std::min<std::int64_t>(nchunks, kMaxGrid));
  multi_tensor_kernel<<<grid, kOptimizerThreads, 0, ctx.stream()>>>(op, chunks, nchunks, n, found_inf);
  MIXTAPE_CUDA_CHECK(cudaGetLastError());
}

template <class F>
__global__ void scalar_update_kernel(F f, StepScalarValues* s) {
  f(*s);
}

/// Runs f(*s) in one thread on the context's stream (f: a copyable functor on StepScalarValues&).
template <class F>
void scalar_update(const ExecutionContext& ctx, const F& f, StepScalarValues* s) {
  DeviceScope scope(ctx.device().index());
  scalar_update_kernel<<<1, 1, 0, ctx.stream()>>>(f, s);
  MIXTAPE_CUDA_CHECK(cudaGetLastError());
}

/// Partial sums the norm's first pass writes for a group of n elements (0 for an empty group).
constexpr std::int64_t norm_blocks(std::int64_t n) noexcept {
  if (n == 0) return 0;
  const std::int64_t per_block = kNormThreads * kNormElementsPerThread;
  return std::clamp<std::int64_t>((n + per_block - 1) / per_block, 1, kNormMaxBlocks);
}

template <class T>
__global__ void __launch_bounds__(kNormThreads)
    norm_partials_kernel(const T* g, std::int64_t n, const StepScalarValues* s, bool use_inv, double* partials) {
  using BlockReduce = cub::BlockReduce<double, kNormThreads>;
  __shared__ typename BlockReduce::TempStorage temp;
  const float inv = s->inv_scale;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * kNormThreads;
  double acc = 0.0;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * kNormThreads + threadIdx.x; i < n; i += stride)
    acc += norm_term(g[i], inv, use_inv);
  const double total = BlockReduce(temp).Sum(acc);
  if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

/// First pass of the norm over one group: norm_blocks(n) partials into `partials`.
template <class T>
void norm_partials(const ExecutionContext& ctx, const T* g, std::int64_t n, const StepScalarValues* s, bool use_inv,
                   double* partials) {
  const std::int64_t blocks = norm_blocks(n);
  if (blocks == 0) return;
  DeviceScope scope(ctx.device().index());
  norm_partials_kernel<T><<<static_cast<unsigned>(blocks), kNormThreads, 0, ctx.stream()>>>(g, n, s, use_inv, partials);
  MIXTAPE_CUDA_CHECK(cudaGetLastError());
}

// A template (on the block size) so that every .cu unit including this header may define it.
template <int Threads>
__global__ void __launch_bounds__(Threads)
    norm_finish_kernel(const double* partials, std::int64_t count, StepScalarValues* s, float max_norm,
                       bool flag_nonfinite) {
  using BlockReduce = cub::BlockReduce<double, Threads>;
  __shared__ typename BlockReduce::TempStorage temp;
  double acc = 0.0;
  for (std::int64_t j = threadIdx.x; j < count; j += Threads) acc += partials[j];
  const double total = BlockReduce(temp).Sum(acc);
  if (threadIdx.x == 0) finish_grad_norm(*s, total, max_norm, flag_nonfinite);
}

/// Second pass: the sum of all `count` partials, the norm and the clip coefficient into *s.
inline void norm_finish(const ExecutionContext& ctx, const double* partials, std::int64_t count, StepScalarValues* s,
                        float max_norm, bool flag_nonfinite) {
  DeviceScope scope(ctx.device().index());
  norm_finish_kernel<kNormThreads><<<1, kNormThreads, 0, ctx.stream()>>>(partials, count, s, max_norm, flag_nonfinite);
  MIXTAPE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace gpu
MIXTAPE_BACKEND_END
}  // namespace mixtape::kernels::detail
