/// @file loss_cuda.cuh
/// @brief CUDA cross-entropy and mean-squared error (only in `.cu` units).
///
/// Cross-entropy forward: a block per row (a warp when V <= 2048) keeps the online (max, sum of
/// exp) state of softmax, writes lse and the row's loss; the mean over rows is a two-pass sum
/// (fixed chunks per block, then one block adds the chunk sums in order, in double) into a device
/// scalar: no atomics, no host synchronisation. Backward: one pass per row writing
/// (exp(z - lse) - onehot) * dloss / N. Both at once (cross_entropy_rows_grad, the chunked LM
/// head): a block per row holding the row in shared memory (or registers), one read of the logits
/// and one write. MSE forward: the same two-pass sum over (x - y)^2.
/// An out-of-range target never indexes memory: its row's loss and gradient are NaN and, with a
/// status tensor, the row is recorded (index_status.hpp).
#pragma once

#if !defined(__CUDACC__)
#error "loss_cuda.cuh is for .cu translation units"
#endif

#include <cuda_pipeline.h>
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
  // dloss == nullptr: the gradient of the rows' sum (scale exactly 1), for cross_entropy_rows_grad.
  const A scale = dloss != nullptr ? to_acc<A>(*dloss) / static_cast<A>(rows) : A(1);
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

/// Threads of the one-pass cross-entropy (a block per row) and the most 16-byte packs a thread
/// holds: rows of up to kOnePassThreads * kOnePassPacks * P classes stay in registers (65,536 in
/// f16 / bf16, 32,768 in f32), so the logits are read from memory once and p - onehot written once.
inline constexpr int kOnePassThreads = 1024;
inline constexpr int kOnePassPacks = 8;

/// The larger of a and b, a NaN in either winning (fmax would drop it).
struct MaxKeepNan {
  template <class A>
  __device__ __forceinline__ A operator()(A a, A b) const {
    return (b > a || b != b) ? b : a;
  }
};

/// `v` combined over the block by a fixed tree (warps by shuffles, then the warp results in warp
/// order), in every thread. @param smem Threads / 32 slots
template <int Threads, class S, class Combine>
__device__ __forceinline__ S block_all_reduce(S v, Combine combine_fn, S* smem) {
#pragma unroll
  for (int delta = 16; delta > 0; delta /= 2) v = combine_fn(v, shfl_down(v, delta));
  v = shfl_lane0(v);
  if (threadIdx.x % 32 == 0) smem[threadIdx.x / 32] = v;
  __syncthreads();
  S r = smem[0];
#pragma unroll
  for (int w = 1; w < Threads / 32; ++w) r = combine_fn(r, smem[w]);
  __syncthreads();
  return r;
}

/// Element k of a 16-byte pack of P `T`s held as raw 32-bit words, widened to A (f32 for every
/// type the one-pass kernel takes). The widening is volatile asm so that the compiler redoes it in
/// each of the three passes instead of keeping all widened values live across the barriers (which
/// doubles a half-precision row's registers and spills).
template <int P, class A, class T>
__device__ __forceinline__ A pack_element(const uint4& raw, int k) {
  static_assert(std::is_same_v<A, float> && P * sizeof(T) == 16);
  const unsigned words[4] = {raw.x, raw.y, raw.z, raw.w};
  if constexpr (sizeof(T) == 4) {
    return __uint_as_float(words[k]);
  } else if constexpr (std::is_same_v<T, bf16>) {  // the top half of an f32 (NaNs stay NaN)
    unsigned bits;
    if (k % 2 == 0) {
      asm volatile("shl.b32 %0, %1, 16;" : "=r"(bits) : "r"(words[k / 2]));
    } else {
      asm volatile("and.b32 %0, %1, 0xffff0000;" : "=r"(bits) : "r"(words[k / 2]));
    }
    return __uint_as_float(bits);
  } else {
    static_assert(std::is_same_v<T, f16>);
    const auto half = static_cast<unsigned short>(k % 2 == 0 ? words[k / 2] & 0xFFFFu : words[k / 2] >> 16);
    float f;
    asm volatile("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(half));
    return f;
  }
}

/// Stores P f32 values rounded to nearest-even into one 16-byte pack of `T` with the hardware's
/// paired conversions (cvt.rn.{bf16,f16}x2.f32): the library's portable conversion is exact too
/// but holds more registers than the one-pass kernel has. A NaN becomes the canonical NaN.
template <int P, class T>
__device__ __forceinline__ void store_pack_rn(T* dst, const float (&v)[P]) {
  static_assert(P * sizeof(T) == 16);
  uint4 out;
  unsigned* w = &out.x;
  if constexpr (sizeof(T) == 4) {
#pragma unroll
    for (int i = 0; i < 4; ++i) w[i] = __float_as_uint(v[i]);
  } else if constexpr (std::is_same_v<T, bf16>) {
#pragma unroll
    for (int i = 0; i < 4; ++i) asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(w[i]) : "f"(v[2 * i + 1]), "f"(v[2 * i]));
  } else {
    static_assert(std::is_same_v<T, f16>);
#pragma unroll
    for (int i = 0; i < 4; ++i) asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(w[i]) : "f"(v[2 * i + 1]), "f"(v[2 * i]));
  }
  *reinterpret_cast<uint4*>(dst) = out;
}

/// Per row: loss and lse as cross_entropy_forward_kernel (two passes over registers: the maximum,
/// then the sum of exp(z - max)), then dlogits = exp(z - lse) - onehot, the backward's formula with
/// dloss / N = 1. dlogits may be the logits (the row is in registers, and the target's logit is
/// read before the first barrier).
template <int P, class A, class T, class I, class L>
__global__ void __launch_bounds__(kOnePassThreads, 1)
    cross_entropy_one_pass_kernel(std::int64_t rows, std::int64_t vocab, const T* logits, const I* targets, L* losses,
                                  L* lse, T* dlogits, std::int64_t* status) {
  __shared__ A smem[kOnePassThreads / 32];
  const std::int64_t lane0 = static_cast<std::int64_t>(threadIdx.x) * P;
  constexpr std::int64_t kStride = std::int64_t{kOnePassThreads} * P;  // columns between a thread's packs
  for (std::int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* zr = logits + row * vocab;
    uint4 z[kOnePassPacks];
#pragma unroll
    for (int j = 0; j < kOnePassPacks; ++j) {
      // A plain load, not ld.global.nc: with dlogits == logits the row is written by this kernel.
      if (j * kStride + lane0 < vocab) z[j] = *reinterpret_cast<const uint4*>(zr + j * kStride + lane0);
    }
    const auto t = static_cast<std::int64_t>(targets[row]);
    const bool valid = t >= 0 && t < vocab;
    const A zt = threadIdx.x == 0 && valid ? to_acc<A>(zr[t]) : A(0);
    A m = -infinity<A>();
#pragma unroll
    for (int j = 0; j < kOnePassPacks; ++j) {
      if (j * kStride + lane0 < vocab) {
#pragma unroll
        for (int k = 0; k < P; ++k) m = MaxKeepNan{}(m, pack_element<P, A, T>(z[j], k));
      }
    }
    m = block_all_reduce<kOnePassThreads>(m, MaxKeepNan{}, smem);
    A s = A(0);
#pragma unroll
    for (int j = 0; j < kOnePassPacks; ++j) {
      if (j * kStride + lane0 < vocab) {
#pragma unroll
        for (int k = 0; k < P; ++k) s += exp_of(pack_element<P, A, T>(z[j], k) - m);
      }
    }
    s = block_all_reduce<kOnePassThreads>(s, Plus{}, smem);
    // Rounded to L first, as the two-kernel path reads it back from lse.
    const A l = to_acc<A>(cast<L>(m + log_of(s)));
    if (threadIdx.x == 0) {
      if (!valid) record_index_error(status, row, t);
      lse[row] = cast<L>(l);
      losses[row] = cast<L>(valid ? l - zt : quiet_nan<A>());
    }
    T* gr = dlogits + row * vocab;
#pragma unroll
    for (int j = 0; j < kOnePassPacks; ++j) {
      const std::int64_t c = j * kStride + lane0;
      if (c < vocab) {
        A g[P];
#pragma unroll
        for (int k = 0; k < P; ++k) {
          const A p = exp_of(pack_element<P, A, T>(z[j], k) - l);
          g[k] = valid ? (c + k == t ? p - A(1) : p) : quiet_nan<A>();
        }
        store_pack_rn<P>(gr + c, g);
      }
    }
  }
}

/// Threads of the staged cross-entropy (a block per row, two blocks an SM).
inline constexpr int kStagedThreads = 512;

/// The one-pass cross-entropy with the row staged in shared memory instead of registers: the block
/// copies its row in with cp.async (16-byte packs, every copy in flight, no registers held), then
/// takes the maximum, the sum of exp and the gradient in three passes over shared memory, with the
/// register kernel's formulas. Its point is the second block on the SM: a row in registers takes a
/// whole H100 register file (1,024 threads x 64), so that kernel's loads, passes and stores run one
/// after another on each SM, where here one block's copies overlap the other's passes and stores.
/// dlogits may be the logits: the row is in shared memory before the first store.
template <int P, class A, class T, class I, class L>
__global__ void __launch_bounds__(kStagedThreads, 2)
    cross_entropy_staged_kernel(std::int64_t rows, std::int64_t vocab, const T* logits, const I* targets, L* losses,
                                L* lse, T* dlogits, std::int64_t* status) {
  extern __shared__ uint4 staged[];  // the row: vocab / P packs
  __shared__ A smem[kStagedThreads / 32];
  const std::int64_t packs = vocab / P;
  for (std::int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const auto* zr = reinterpret_cast<const uint4*>(logits + row * vocab);
    for (std::int64_t j = threadIdx.x; j < packs; j += kStagedThreads) __pipeline_memcpy_async(staged + j, zr + j, 16);
    __pipeline_commit();
    const auto t = static_cast<std::int64_t>(targets[row]);
    const bool valid = t >= 0 && t < vocab;
    __pipeline_wait_prior(0);
    __syncthreads();
    A m = -infinity<A>();
    for (std::int64_t j = threadIdx.x; j < packs; j += kStagedThreads) {
      const uint4 z = staged[j];
#pragma unroll
      for (int k = 0; k < P; ++k) m = MaxKeepNan{}(m, pack_element<P, A, T>(z, k));
    }
    m = block_all_reduce<kStagedThreads>(m, MaxKeepNan{}, smem);
    A s = A(0);
    for (std::int64_t j = threadIdx.x; j < packs; j += kStagedThreads) {
      const uint4 z = staged[j];
#pragma unroll
      for (int k = 0; k < P; ++k) s += exp_of(pack_element<P, A, T>(z, k) - m);
    }
    s = block_all_reduce<kStagedThreads>(s, Plus{}, smem);
    // Rounded to L first, as the two-kernel path reads it back from lse.
    const A l = to_acc<A>(cast<L>(m + log_of(s)));
    if (threadIdx.x == 0) {
      if (!valid) record_index_error(status, row, t);
      const A zt = valid ? to_acc<A>(reinterpret_cast<const T*>(staged)[t]) : A(0);
      lse[row] = cast<L>(l);
      losses[row] = cast<L>(valid ? l - zt : quiet_nan<A>());
    }
    T* gr = dlogits + row * vocab;
    for (std::int64_t j = threadIdx.x; j < packs; j += kStagedThreads) {
      const uint4 z = staged[j];
      A g[P];
#pragma unroll
      for (int k = 0; k < P; ++k) {
        const A p = exp_of(pack_element<P, A, T>(z, k) - l);
        g[k] = valid ? (j * P + k == t ? p - A(1) : p) : quiet_nan<A>();
      }
      store_pack_rn<P>(gr + j * P, g);
    }
    __syncthreads();  // the next row's copies overwrite the staged row
  }
}

/// Dynamic shared memory of the staged kernel for a row of `vocab` T, or 0 where two of its blocks
/// do not fit an SM of the current device (then a second block could not overlap the first).
template <class T>
std::size_t cross_entropy_staged_bytes(int device, std::int64_t vocab) {
  int per_sm = 0, per_block = 0;
  MIXTAPE_CUDA_CHECK(cudaDeviceGetAttribute(&per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, device));
  MIXTAPE_CUDA_CHECK(cudaDeviceGetAttribute(&per_block, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  const auto bytes = static_cast<std::size_t>(vocab) * sizeof(T);
  constexpr std::size_t kPerBlockReserve = 1024 + sizeof(float) * (kStagedThreads / 32);  // runtime's + static
  const bool fits = bytes <= static_cast<std::size_t>(per_block) &&
                    2 * (bytes + kPerBlockReserve) <= static_cast<std::size_t>(per_sm);
  return fits ? bytes : 0;
}

/// Losses, lse and dlogits = softmax - onehot of `rows` rows in one pass when every row is packable
/// (f16 / bf16 / f32) and fits shared memory twice an SM (the staged kernel: GPT-2's 50,304 bf16
/// logits on an H100) or else the one-pass kernel's registers; otherwise the forward kernel, then
/// the backward kernel with a unit scale (two passes over the logits). The paths give the same
/// results up to their summation orders.
template <class A, class T, class I, class L>
void cross_entropy_rows_grad(const ExecutionContext& ctx, const T* logits, const I* targets, L* losses, L* lse,
                             T* dlogits, std::int64_t rows, std::int64_t vocab, std::int64_t* status) {
  if (rows == 0) return;
  DeviceScope scope(ctx.device().index());
  if constexpr (sizeof(T) <= 4) {  // f64 rows would not fit the registers
    constexpr int P = kPackOf<T>;
    const bool packable = vocab > kWarpPerRowMaxCols && rows_packable<P>(vocab, logits, dlogits);
    const std::size_t staged_bytes = packable ? cross_entropy_staged_bytes<T>(ctx.device().index(), vocab) : 0;
    if (staged_bytes > 0) {
      auto kernel = cross_entropy_staged_kernel<P, A, T, I, L>;
      MIXTAPE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                              static_cast<int>(staged_bytes)));
      int sms = 0;
      MIXTAPE_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, ctx.device().index()));
      const auto grid = static_cast<unsigned>(std::min<std::int64_t>(rows, std::int64_t{8} * sms));
      kernel<<<grid, kStagedThreads, staged_bytes, ctx.stream()>>>(rows, vocab, logits, targets, losses, lse, dlogits,
                                                                   status);
      MIXTAPE_CUDA_CHECK(cudaGetLastError());
      return;
    }
    if (packable && vocab <= std::int64_t{kOnePassThreads} * kOnePassPacks * P) {
      const auto grid = static_cast<unsigned>(std::min<std::int64_t>(rows, 65535));
      cross_entropy_one_pass_kernel<P, A><<<grid, kOnePassThreads, 0, ctx.stream()>>>(rows, vocab, logits, targets,
                                                                                      losses, lse, dlogits, status);
      MIXTAPE_CUDA_CHECK(cudaGetLastError());
      return;
    }
  }
  cross_entropy_forward<A>(ctx, logits, targets, losses, lse, static_cast<L*>(nullptr), rows, vocab, status);
  cross_entropy_backward<A>(ctx, logits, targets, static_cast<const L*>(lse), static_cast<const L*>(nullptr), dlogits,
                            rows, vocab, false, status);
}

template <class A, class X, class Y, class L>
void mse_forward(const ExecutionContext& ctx, const X* x, const Y* y, L* loss, std::int64_t n) {
  DeviceScope scope(ctx.device().index());
  device_mean<A>(ctx, SquaredDifferenceTerm<A, X, Y>{x, y}, n, static_cast<double>(n), loss);
}

}  // namespace gpu
MIXTAPE_BACKEND_END
}  // namespace mixtape::kernels::detail
