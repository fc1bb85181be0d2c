/// @file row_group_cuda.cuh
/// @brief Building blocks of the CUDA row kernels (only in `.cu` units): a row group (a warp per
///        row for short rows, the whole block per row for long ones), deterministic group
///        reductions, 16-byte row packs, and the online max / sum-of-exp state of softmax and
///        cross-entropy.
///
/// Determinism: a group reduction is a fixed shuffle-down tree within each warp, then (block
/// groups) the warp results combined in warp order by every thread from shared memory; the result
/// is broadcast, so all threads of a group see the same bits and nothing depends on timing.
#pragma once

#if !defined(__CUDACC__)
#error "row_group_cuda.cuh is for .cu translation units"
#endif

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "mixtape/kernels/detail/elementwise_cuda.cuh"
#include "mixtape/kernels/detail/scalar.hpp"

namespace mixtape::kernels::detail {
MIXTAPE_BACKEND_BEGIN
namespace gpu {

/// Threads per block of every row kernel.
inline constexpr int kRowThreads = 256;
/// Rows up to this many columns get a warp each; longer rows get a block.
inline constexpr std::int64_t kWarpPerRowMaxCols = 2048;

/// exp and log in A with the platform's device functions (within 2 ulps; not bitwise equal to libm).
template <class A>
__device__ __forceinline__ A exp_of(A x) {
  if constexpr (std::is_same_v<A, float>) {
    return ::expf(x);
  } else {
    return ::exp(x);
  }
}
template <class A>
__device__ __forceinline__ A log_of(A x) {
  if constexpr (std::is_same_v<A, float>) {
    return ::logf(x);
  } else {
    return ::log(x);
  }
}

/// Running maximum and sum of exp(z - maximum) of a set of values (online softmax).
template <class A>
struct MaxSum {
  A m;  ///< maximum so far (-inf for the empty set)
  A s;  ///< sum of exp(z - m)
};

/// Merges two states: the smaller maximum's sum is rescaled. A side whose maximum is -inf adds
/// nothing (so -inf entries never produce exp(-inf - -inf)); a NaN maximum propagates.
template <class A>
__device__ __forceinline__ MaxSum<A> merge_max_sum(MaxSum<A> a, MaxSum<A> b) {
  if (a.m < b.m) {
    const MaxSum<A> t = a;
    a = b;
    b = t;
  }
  if (b.m == -infinity<A>()) return a;
  return {a.m, a.s + b.s * exp_of(b.m - a.m)};
}

/// Adds one value z to the state.
template <class A>
__device__ __forceinline__ MaxSum<A> add_max_sum(MaxSum<A> st, A z) {
  return merge_max_sum(st, MaxSum<A>{z, A(1)});
}

template <class A>
__device__ __forceinline__ A shfl_down(A v, int delta) {
  return __shfl_down_sync(0xFFFFFFFFu, v, delta);
}
template <class A>
__device__ __forceinline__ MaxSum<A> shfl_down(MaxSum<A> v, int delta) {
  return {__shfl_down_sync(0xFFFFFFFFu, v.m, delta), __shfl_down_sync(0xFFFFFFFFu, v.s, delta)};
}
template <class A>
__device__ __forceinline__ A shfl_lane0(A v) {
  return __shfl_sync(0xFFFFFFFFu, v, 0);
}
template <class A>
__device__ __forceinline__ MaxSum<A> shfl_lane0(MaxSum<A> v) {
  return {__shfl_sync(0xFFFFFFFFu, v.m, 0), __shfl_sync(0xFFFFFFFFu, v.s, 0)};
}

struct Plus {
  template <class A>
  __device__ __forceinline__ A operator()(A a, A b) const {
    return a + b;
  }
};
struct CombineMaxSum {
  template <class A>
  __device__ __forceinline__ MaxSum<A> operator()(MaxSum<A> a, MaxSum<A> b) const {
    return merge_max_sum(a, b);
  }
};

/// G threads handle one row: G = 32 (a warp per row, kRowThreads / 32 rows per block) or
/// G = kRowThreads (the block per row). Every thread of a group runs the same row loop, so the
/// group reductions below are reached uniformly.
template <int G>
struct RowGroup {
  static_assert(G == 32 || G == kRowThreads);
  static constexpr int kThreads = G;
  static constexpr int kPerBlock = kRowThreads / G;
  static constexpr int kWarps = kRowThreads / 32;

  __device__ static int rank() { return static_cast<int>(threadIdx.x) % G; }
  __device__ static std::int64_t first_row() {
    return static_cast<std::int64_t>(blockIdx.x) * kPerBlock + static_cast<int>(threadIdx.x) / G;
  }
  __device__ static std::int64_t row_stride() { return static_cast<std::int64_t>(gridDim.x) * kPerBlock; }

  /// The combination of every thread's `v` over the group by a fixed tree, in every thread.
  /// @param smem kWarps slots of shared memory (used by block groups only)
  template <class S, class Combine>
  __device__ static S reduce(S v, Combine combine_fn, S* smem) {
#pragma unroll
    for (int delta = 16; delta > 0; delta /= 2) v = combine_fn(v, shfl_down(v, delta));
    v = shfl_lane0(v);
    if constexpr (G == 32) {
      return v;
    } else {
      const int warp = static_cast<int>(threadIdx.x) / 32;
      if (threadIdx.x % 32 == 0) smem[warp] = v;
      __syncthreads();
      S r = smem[0];
#pragma unroll
      for (int w = 1; w < kWarps; ++w) r = combine_fn(r, smem[w]);
      __syncthreads();  // the slots may be written again by the next reduction
      return r;
    }
  }
};

/// Grid size of a row kernel: enough blocks for every row, capped (the row loop is grid-stride).
template <int G>
inline unsigned row_grid(std::int64_t rows) {
  return grid_for(rows, RowGroup<G>::kPerBlock);
}

/// Launches a row kernel with a warp or a block per row and vector packs or single elements.
/// `launch` is called as launch.template operator()<G, P>(grid).
template <int PV, class Launch>
void launch_rows(std::int64_t rows, std::int64_t cols, bool packable, const Launch& launch) {
  if (cols <= kWarpPerRowMaxCols) {
    if (packable) {
      launch.template operator()<32, PV>(row_grid<32>(rows));
    } else {
      launch.template operator()<32, 1>(row_grid<32>(rows));
    }
  } else if (packable) {
    launch.template operator()<kRowThreads, PV>(row_grid<kRowThreads>(rows));
  } else {
    launch.template operator()<kRowThreads, 1>(row_grid<kRowThreads>(rows));
  }
  MIXTAPE_CUDA_CHECK(cudaGetLastError());
}

/// P elements of `T` at p (a 16-byte vector load when P * sizeof(T) >= 16), widened to A.
template <int P, class A, class T>
__device__ __forceinline__ void load_row_pack(const T* p, A (&out)[P]) {
  Pack<T, P> pk;
  load_pack<T, P>(pk, p);
#pragma unroll
  for (int k = 0; k < P; ++k) out[k] = to_acc<A>(pk.v[k]);
}

/// P values rounded to `T` (nearest-even) and stored at p as one pack.
template <int P, class T, class A>
__device__ __forceinline__ void store_row_pack(T* p, const A (&in)[P]) {
  Pack<T, P> pk;
#pragma unroll
  for (int k = 0; k < P; ++k) pk.v[k] = cast<T>(in[k]);
  store_pack<T, P>(p, pk);
}

/// Elements per pack for operands of types Ts: 16 bytes of the narrowest one.
template <class... Ts>
inline constexpr int kPackOf = static_cast<int>(16 / std::min({sizeof(Ts)...}));

/// Whether every pointer is 16-byte aligned and rows of `cols` elements keep every row start so
/// (then the P-wide packs of a row are vector loads and stores).
template <int P, class... Ts>
inline bool rows_packable(std::int64_t cols, const Ts*... ptrs) {
  return cols % P == 0 && (aligned16(ptrs) && ...);
}

}  // namespace gpu
MIXTAPE_BACKEND_END
}  // namespace mixtape::kernels::detail
