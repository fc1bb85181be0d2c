/// @file elementwise_cuda.cuh
/// @brief The CUDA element-wise engine (only in `.cu` units).
///
/// Dense operands whose pointers are all 16-byte aligned: each thread handles packs of P elements,
/// where a pack of the narrowest operand is 16 bytes (P = 16 / min sizeof), loaded and stored as
/// 16-byte vectors; a block of 256 threads handles U packs per thread (U chosen so a thread has
/// about 64 bytes in flight per operand), grid-stride over tiles; the last n % P elements are done
/// one by one by block 0. Dense but misaligned operands take the same kernel with P = 1. Strided
/// operands take a generic kernel that turns each linear index into offsets (int64) through the
/// collapsed StridedPlan. Every launch is on the context's stream and checked.
#pragma once

#if !defined(__CUDACC__)
#error "elementwise_cuda.cuh is for .cu translation units"
#endif

#include <cuda/std/tuple>
#include <cuda/std/utility>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "mixtape/core/error.hpp"
#include "mixtape/core/execution_context.hpp"
#include "mixtape/core/tensor.hpp"
#include "mixtape/kernels/detail/strided.hpp"

namespace mixtape::kernels::detail {
MIXTAPE_BACKEND_BEGIN
namespace gpu {

inline constexpr int kElementwiseThreads = 256;
inline constexpr std::int64_t kMaxGrid = std::int64_t{1} << 20;  // grid-stride beyond this

/// P elements of T, aligned for 16-byte vector access when P * sizeof(T) >= 16.
template <class T, int P>
struct alignas(P * sizeof(T) >= 16 ? 16 : alignof(T)) Pack {
  T v[P];
};

/// U packs of one operand.
template <class T, int P, int U>
struct Packs {
  Pack<T, P> p[U];
};

template <class T, int P>
__device__ __forceinline__ void load_pack(Pack<T, P>& dst, const T* src) {
  if constexpr (P * sizeof(T) >= 16) {
    static_assert((P * sizeof(T)) % 16 == 0);
    const uint4* s = reinterpret_cast<const uint4*>(src);
    uint4* d = reinterpret_cast<uint4*>(dst.v);
#pragma unroll
    for (int w = 0; w < static_cast<int>(P * sizeof(T) / 16); ++w) d[w] = s[w];
  } else {
#pragma unroll
    for (int k = 0; k < P; ++k) dst.v[k] = src[k];
  }
}

template <class T, int P>
__device__ __forceinline__ void store_pack(T* dst, const Pack<T, P>& src) {
  if constexpr (P * sizeof(T) >= 16) {
    uint4* d = reinterpret_cast<uint4*>(dst);
    const uint4* s = reinterpret_cast<const uint4*>(src.v);
#pragma unroll
    for (int w = 0; w < static_cast<int>(P * sizeof(T) / 16); ++w) d[w] = s[w];
  } else {
#pragma unroll
    for (int k = 0; k < P; ++k) dst[k] = src.v[k];
  }
}

template <int P, int U, class Op, class Out, class... In, std::size_t... K>
__device__ __forceinline__ void packed_body(const Op& op, std::int64_t n, Out* out, ::cuda::std::tuple<const In*...> in,
                                            ::cuda::std::index_sequence<K...>) {
  const std::int64_t packs = n / P;
  const std::int64_t tile = static_cast<std::int64_t>(kElementwiseThreads) * U;
  const std::int64_t grid_tile = static_cast<std::int64_t>(gridDim.x) * tile;
  for (std::int64_t base = static_cast<std::int64_t>(blockIdx.x) * tile + threadIdx.x; base < packs; base += grid_tile) {
    ::cuda::std::tuple<Packs<In, P, U>...> regs;
    // All loads first (U * operands independent 16-byte loads in flight), then compute and store.
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const std::int64_t p = base + static_cast<std::int64_t>(u) * kElementwiseThreads;
      if (p < packs) (load_pack<In, P>(::cuda::std::get<K>(regs).p[u], ::cuda::std::get<K>(in) + p * P), ...);
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const std::int64_t p = base + static_cast<std::int64_t>(u) * kElementwiseThreads;
      if (p < packs) {
        Pack<Out, P> o;
        op.template apply<P>(p * P, o.v, ::cuda::std::get<K>(regs).p[u].v...);
        store_pack<Out, P>(out + p * P, o);
      }
    }
  }
  if constexpr (P > 1) {
    if (blockIdx.x == 0) {
      const std::int64_t i = packs * P + threadIdx.x;
      if (i < n) {
        Out o;
        op.template apply<1>(i, &o, (::cuda::std::get<K>(in) + i)...);
        out[i] = o;
      }
    }
  }
}

template <int P, int U, class Op, class Out, class... In>
__global__ void __launch_bounds__(kElementwiseThreads)
    elementwise_packed_kernel(Op op, std::int64_t n, Out* out, const In*... in) {
  packed_body<P, U>(op, n, out, ::cuda::std::tuple<const In*...>(in...), ::cuda::std::index_sequence_for<In...>{});
}

template <int N, class Op, class Out, class... In, std::size_t... K>
__device__ __forceinline__ void strided_body(const Op& op, std::int64_t n, const StridedPlan<N>& plan, Out* out,
                                             ::cuda::std::tuple<const In*...> in, ::cuda::std::index_sequence<K...>) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    std::int64_t off[N];
    plan.offsets(i, off);
    Out o;
    op.template apply<1>(i, &o, (::cuda::std::get<K>(in) + off[K + 1])...);
    out[off[0]] = o;
  }
}

template <int N, class Op, class Out, class... In>
__global__ void __launch_bounds__(kElementwiseThreads)
    elementwise_strided_kernel(Op op, std::int64_t n, StridedPlan<N> plan, Out* out, const In*... in) {
  strided_body<N>(op, n, plan, out, ::cuda::std::tuple<const In*...>(in...), ::cuda::std::index_sequence_for<In...>{});
}

/// Makes `device` current for the scope (kernels launch on the context's stream, which belongs to it).
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    MIXTAPE_CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != device) MIXTAPE_CUDA_CHECK(cudaSetDevice(device));
    target_ = device;
  }
  ~DeviceScope() {
    if (previous_ != target_) (void)cudaSetDevice(previous_);
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = 0;
  int target_ = 0;
};

inline unsigned grid_for(std::int64_t work, std::int64_t per_block) {
  return static_cast<unsigned>(std::clamp<std::int64_t>((work + per_block - 1) / per_block, 1, kMaxGrid));
}

template <class T>
inline bool aligned16(const T* p) {
  return reinterpret_cast<std::uintptr_t>(p) % 16 == 0;
}

template <class T, class... Ts>
inline constexpr std::size_t kMinSize = std::min({sizeof(T), sizeof(Ts)...});
template <class T, class... Ts>
inline constexpr std::size_t kMaxSize = std::max({sizeof(T), sizeof(Ts)...});

/// Runs `op` over every element of `out` on the context's stream.
template <class Op, class Out, class... In>
void elementwise(const ExecutionContext& ctx, const Op& op, const Tensor<Out>& out, const Tensor<In>&... in) {
  constexpr int N = 1 + static_cast<int>(sizeof...(In));
  const std::int64_t n = out.numel();
  if (n == 0) return;
  DeviceScope scope(ctx.device().index());
  const Layout* const layouts[N] = {&out.layout(), &in.layout()...};
  const StridedPlan<N> plan = make_plan<N>(layouts);
  cudaStream_t stream = ctx.stream();
  if (plan.contiguous()) {
    constexpr int P = static_cast<int>(16 / kMinSize<Out, In...>);
    constexpr int U = std::max(1, static_cast<int>(64 / (P * kMaxSize<Out, In...>)));
    const bool aligned = aligned16(out.data()) && (aligned16(in.data()) && ... && true);
    if (aligned) {
      const unsigned grid = grid_for(n / P, static_cast<std::int64_t>(kElementwiseThreads) * U);
      elementwise_packed_kernel<P, U><<<grid, kElementwiseThreads, 0, stream>>>(op, n, out.data(), in.data()...);
    } else {
      constexpr int U1 = 4;
      const unsigned grid = grid_for(n, static_cast<std::int64_t>(kElementwiseThreads) * U1);
      elementwise_packed_kernel<1, U1><<<grid, kElementwiseThreads, 0, stream>>>(op, n, out.data(), in.data()...);
    }
  } else {
    const unsigned grid = grid_for(n, kElementwiseThreads);
    elementwise_strided_kernel<N><<<grid, kElementwiseThreads, 0, stream>>>(op, n, plan, out.data(), in.data()...);
  }
  MIXTAPE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace gpu
MIXTAPE_BACKEND_END
}  // namespace mixtape::kernels::detail
