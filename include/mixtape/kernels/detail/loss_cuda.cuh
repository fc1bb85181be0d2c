/// @file loss_cuda.cuh
/// @brief CUDA cross-entropy and mean-squared error (only in `.cu` units).
///
/// Cross-entropy forward: a block per row (a warp when V <= 2048) keeps the online (max, sum of
/// exp) state of softmax, writes lse and the row's loss; the mean over rows is a two-pass sum
/// (fixed chunks per block, then one block adds the chunk sums in order, in double) into a device
/// scalar: no atomics, no host synchronisation. Backward: one pass per row writing
/// (exp(z - lse) - onehot) * dloss / N. MSE forward: the same two-pass sum over (x - y)^2.
/// An out-of-range target never indexes memory: its row's loss and gradient are NaN and, with a
/// status tensor, the row is recorded (index_status.hpp).
#pragma once

#if !defined(__CUDACC__)
#error "loss_cuda.cuh is for .cu translation units"
#endif

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "mixtape/core/error.hpp"
#include "mixtape/core/execution_context.hpp"
#include "mixtape/core/tensor.hpp"
#include "mixtape/kernels/detail/index_status.hpp"
#include "mixtape/kernels/detail/loss_host.hpp"
#include "mixtape/kernels/detail/row_group_cuda.cuh"

namespace mixtape::kernels::detail {
MIXTAPE_BACKEND_BEGIN
namespace gpu {

/// Terms per block of the first pass of a device sum, and the most blocks.
inline constexpr std::int64_t kSumChunk = 16384;
inline constexpr std::int64_t kSumMaxBlocks = 1024;

template <class A, class Term>
__global__ void __launch_bounds__(kRowThreads) sum_partials_kernel(Term term, std::int64_t n, std::int64_t chunk,
                                                                   double* partials) {
  using RG = RowGroup<kRowThreads>;
  __shared__ A smem[RG::kWarps];
  const std::int64_t begin = static_cast<std::int64_t>(blockIdx.x) * chunk;
  const std::int64_t end = begin + chunk < n ? begin + chunk : n;
  A s = 0;
  for (std::int64_t i = begin + threadIdx.x; i < end; i += kRowThreads) s += term(i);
  s = RG::reduce(s, Plus{}, smem);
  if (threadIdx.x == 0) partials[blockIdx.x] = to_acc<double>(s);
}

template <class L>
__global__ void __launch_bounds__(kRowThreads) sum_finalize_kernel(const double* partials, std::int64_t count,
                                                                   double divisor, L* out) {
  using RG = RowGroup<kRowThreads>;
  __shared__ double smem[RG::kWarps];
  double s = 0;
  for (std::int64_t i = threadIdx.x; i < count; i += kRowThreads) s += partials[i];
  s = RG::reduce(s, Plus{}, smem);
  if (threadIdx.x == 0) *out = cast<L>(s / divisor);
}

/// *out = (sum over i < n of term(i)) / divisor, deterministically, on the context's stream.
template <class A, class Term, class L>
void device_mean(const ExecutionContext& ctx, const Term& term, std::int64_t n, double divisor, L* out) {
  const std::int64_t blocks = std::clamp<std::int64_t>((n + kSumChunk - 1) / kSumChunk, 1, kSumMaxBlocks);
  const std::int64_t chunk = std::max<std::int64_t>(1, (n + blocks - 1) / blocks);
  auto partials = Tensor<double>::empty(ctx, {blocks}, MemoryRole::workspace);
  sum_partials_kernel<A><<<static_cast<unsigned>(blocks), kRowThreads, 0, ctx.stream()>>>(term, n, chunk, partials.data());
  MIXTAPE_CUDA_CHECK(cudaGetLastError());
  sum_finalize_kernel<<<1, kRowThreads, 0, ctx.stream()>>>(partials.data(), blocks, divisor, out);
  MIXTAPE_CUDA_CHECK(cudaGetLastError());
}

/// A per-row loss widened to double (the cross-entropy mean's term).
template <class L>
struct LossTerm {
  const L* losses;
  __device__ double operator()(std::int64_t i) const { return to_acc<double>(losses[i]); }
};

/// (x - y)^2 in A (the MSE's term).
template <class A, class X, class Y>
struct SquaredDifferenceTerm {
  const X* x;
  const Y* y;
  __device__ A operator()(std::int64_t i) const {
    const A d = to_acc<A>(x[i]) - to_acc<A>(y[i]);
    return d * d;
  }
};

template <int G, int P, class A, class T, class I, class L>
__global__ void __launch_bounds__(kRowThreads)
    cross_entropy_forward_kernel(std::int64_t rows, std::int64_t vocab, const T* logits, const I* targets, L* losses,
                                 L* lse, std::int64_t* status) {
  using RG = RowGroup<G>;
  __shared__ MaxSum<A> smem[RG::kWarps];
  for (std::int64_t row = RG::first_row(); row < rows; row += RG::row_stride()) {
    const T* zr = logits + row * vocab;
    MaxSum<A> st{-infinity<A>(), A(0)};
    for (std::int64_t c = static_cast<std::int64_t>(RG::rank()) * P; c < vocab; c += G * P) {
      A v[P];
      load_row_pack<P>(zr + c, v);
#pragma unroll
      for (int k = 0; k < P; ++k) st = add_max_sum(st, v[k]);
    }
    st = RG::reduce(st, CombineMaxSum{}, smem);
    if (RG::rank() == 0) {
      const auto t = static_cast<std::int64_t>(targets[row]);
      const A l = st.m + log_of(st.s);
      A loss = quiet_nan<A>();
      if (t >= 0 && t < vocab) {
        loss = l - to_acc<A>(zr[t]);
      } else {
        record_index_error(status, row, t);
      }
      lse[row] = cast<L>(l);
      losses[row] = cast<L>(loss);
    }
  }
}

template <int G, int P, class A, class T, class I, class L, class GT>
__global__ void __launch_bounds__(kRowThreads)
    cross_entropy_backward_kernel(std::int64_t rows, std::int64_t vocab, const T* logits, const I* targets,
                                  const L* lse, const L* dloss, GT* dlogits, bool accumulate, std::int64_t* status) {
  using RG = RowGroup<G>;
  const A scale = to_acc<A>(*dloss) / static_cast<A>(rows);
  for (std::int64_t row = RG::first_row(); row < rows; row += RG::row_stride()) {
    const std::int64_t base = row * vocab;
    const auto t = static_cast<std::int64_t>(targets[row]);
    const bool valid = t >= 0 && t < vocab;
    if (!valid && RG::rank() == 0) record_index_error(status, row, t);
    const A l = to_acc<A>(lse[row]);
    for (std::int64_t c = static_cast<std::int64_t>(RG::rank()) * P; c < vocab; c += G * P) {
      A v[P];
      load_row_pack<P>(logits + base + c, v);
#pragma unroll
      for (int k = 0; k < P; ++k) {
        const A p = exp_of(v[k] - l);
        v[k] = valid ? (c + k == t ? p - A(1) : p) * scale : quiet_nan<A>();
      }
      if (accumulate) {
        A old[P];
        load_row_pack<P>(dlogits + base + c, old);
#pragma unroll
        for (int k = 0; k < P; ++k) v[k] = old[k] + v[k];
      }
      store_row_pack<P>(dlogits + base + c, v);
    }
  }
}

template <class A, class T, class I, class L>
void cross_entropy_forward(const ExecutionContext& ctx, const T* logits, const I* targets, L* losses, L* lse, L* mean,
                           std::int64_t rows, std::int64_t vocab, std::int64_t* status) {
  DeviceScope scope(ctx.device().index());
  if (rows > 0) {
    constexpr int P = kPackOf<T>;
    launch_rows<P>(rows, vocab, rows_packable<P>(vocab, logits), [&]<int G, int PP>(unsigned grid) {
      cross_entropy_forward_kernel<G, PP, A><<<grid, kRowThreads, 0, ctx.stream()>>>(rows, vocab, logits, targets,
                                                                                    losses, lse, status);
    });
  }
  if (mean != nullptr) device_mean<double>(ctx, LossTerm<L>{losses}, rows, static_cast<double>(rows), mean);
}

/// *mean = the mean of `rows` per-row losses (the forward's mean alone, for rows written in chunks).
template <class L>
void loss_mean(const ExecutionContext& ctx, const L* losses, L* mean, std::int64_t rows) {
  DeviceScope scope(ctx.device().index());
  device_mean<double>(ctx, LossTerm<L>{losses}, rows, static_cast<double>(rows), mean);
}

template <class A, class T, class I, class L, class GT>
void cross_entropy_backward(const ExecutionContext& ctx, const T* logits, const I* targets, const L* lse, const L* dloss,
                            GT* dlogits, std::int64_t rows, std::int64_t vocab, bool accumulate, std::int64_t* status) {
  if (rows == 0) return;
  DeviceScope scope(ctx.device().index());
  constexpr int P = kPackOf<T, GT>;
  launch_rows<P>(rows, vocab, rows_packable<P>(vocab, logits, dlogits), [&]<int G, int PP>(unsigned grid) {
    cross_entropy_backward_kernel<G, PP, A><<<grid, kRowThreads, 0, ctx.stream()>>>(rows, vocab, logits, targets, lse,
                                                                                   dloss, dlogits, accumulate, status);
  });
}

template <class A, class X, class Y, class L>
void mse_forward(const ExecutionContext& ctx, const X* x, const Y* y, L* loss, std::int64_t n) {
  DeviceScope scope(ctx.device().index());
  device_mean<A>(ctx, SquaredDifferenceTerm<A, X, Y>{x, y}, n, static_cast<double>(n), loss);
}

}  // namespace gpu
MIXTAPE_BACKEND_END
}  // namespace mixtape::kernels::detail
