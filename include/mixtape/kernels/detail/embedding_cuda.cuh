/// @file embedding_cuda.cuh
/// @brief CUDA embedding (only in `.cu` units): the gather (a warp per row, 16-byte packs), and a
///        deterministic gradient scatter-add without atomics.
///
/// Backward:
///  1. keys[p] = ids[p] (an out-of-range id becomes the key V, sorting after every real row, and
///     is recorded in the status), values[p] = p;
///  2. cub::DeviceRadixSort::SortPairs over the key bits needed for V: stable, so equal ids keep
///     their positions in increasing order; all scratch comes from the context's stream-ordered
///     pool (MemoryRole::workspace, capture-safe);
///  3. assign mode: d_table is zeroed (cudaMemsetAsync: +0 in every float format);
///  4. a block per (sorted position, column tile): a block whose position starts a run of one id
///     adds dout over the run's positions in order (in A, from 0) and writes (or adds) the row;
///     the other blocks exit at once. Same terms, same order as the host's counting sort: the
///     same bits, on every run.
#pragma once

#if !defined(__CUDACC__)
#error "embedding_cuda.cuh is for .cu translation units"
#endif

#include <cub/device/device_radix_sort.cuh>
#include <cuda_runtime.h>

#include <bit>
#include <cstdint>

#include "mixtape/core/error.hpp"
#include "mixtape/core/execution_context.hpp"
#include "mixtape/core/tensor.hpp"
#include "mixtape/kernels/detail/embedding_host.hpp"
#include "mixtape/kernels/detail/index_status.hpp"
#include "mixtape/kernels/detail/row_group_cuda.cuh"

namespace mixtape::kernels::detail {
MIXTAPE_BACKEND_BEGIN
namespace gpu {

/// Threads per block of the scatter-add.
inline constexpr int kScatterThreads = 128;

template <int P, class I, class T, class O>
__global__ void __launch_bounds__(kRowThreads)
    embedding_forward_kernel(std::int64_t n, std::int64_t vocab, std::int64_t cols, const I* ids, const T* table, O* out,
                             std::int64_t* status) {
  using RG = RowGroup<32>;
  for (std::int64_t p = RG::first_row(); p < n; p += RG::row_stride()) {
    const auto id = static_cast<std::int64_t>(ids[p]);
    const bool valid = id >= 0 && id < vocab;
    if (!valid && RG::rank() == 0) record_index_error(status, p, id);
    O* dst = out + p * cols;
    for (std::int64_t c = static_cast<std::int64_t>(RG::rank()) * P; c < cols; c += 32 * P) {
      Pack<O, P> o;
      if (valid) {
        Pack<T, P> t;
        load_pack<T, P>(t, table + id * cols + c);
#pragma unroll
        for (int k = 0; k < P; ++k) o.v[k] = cast<O>(t.v[k]);
      } else {
#pragma unroll
        for (int k = 0; k < P; ++k) o.v[k] = cast<O>(quiet_nan<float>());
      }
      store_pack<O, P>(dst + c, o);
    }
  }
}

template <class I>
__global__ void __launch_bounds__(kRowThreads)
    embedding_keys_kernel(std::int64_t n, std::int64_t vocab, const I* ids, std::uint32_t* keys, std::int32_t* values,
                          std::int64_t* status) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t p = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; p < n; p += stride) {
    const auto id = static_cast<std::int64_t>(ids[p]);
    const bool valid = id >= 0 && id < vocab;
    if (!valid) record_index_error(status, p, id);
    keys[p] = static_cast<std::uint32_t>(valid ? id : vocab);
    values[p] = static_cast<std::int32_t>(p);
  }
}

template <int P, class A, class G, class D>
__global__ void __launch_bounds__(kScatterThreads)
    embedding_scatter_kernel(std::int64_t n, std::int64_t vocab, std::int64_t cols, const std::uint32_t* keys,
                             const std::int32_t* positions, const G* dout, D* dtable, bool accumulate) {
  const std::int64_t i = blockIdx.x;
  const std::uint32_t key = keys[i];
  if (key >= vocab || (i > 0 && keys[i - 1] == key)) return;  // an invalid id, or not the start of a run
  const std::int64_t c = (static_cast<std::int64_t>(blockIdx.y) * kScatterThreads + threadIdx.x) * P;
  if (c >= cols) return;
  A s[P];
#pragma unroll
  for (int k = 0; k < P; ++k) s[k] = A(0);
  for (std::int64_t j = i; j < n && keys[j] == key; ++j) {
    A v[P];
    load_row_pack<P>(dout + static_cast<std::int64_t>(positions[j]) * cols + c, v);
#pragma unroll
    for (int k = 0; k < P; ++k) s[k] += v[k];
  }
  D* row = dtable + static_cast<std::int64_t>(key) * cols + c;
  if (accumulate) {
    A old[P];
    load_row_pack<P>(row, old);
#pragma unroll
    for (int k = 0; k < P; ++k) s[k] = old[k] + s[k];
  }
  store_row_pack<P>(row, s);
}

template <class I, class T, class O>
void embedding_forward(const ExecutionContext& ctx, const I* ids, const T* table, O* out, std::int64_t n,
                       std::int64_t vocab, std::int64_t cols, std::int64_t* status) {
  if (n == 0 || cols == 0) return;
  DeviceScope scope(ctx.device().index());
  constexpr int P = kPackOf<T, O>;
  if (rows_packable<P>(cols, table, out)) {
    embedding_forward_kernel<P><<<row_grid<32>(n), kRowThreads, 0, ctx.stream()>>>(n, vocab, cols, ids, table, out, status);
  } else {
    embedding_forward_kernel<1><<<row_grid<32>(n), kRowThreads, 0, ctx.stream()>>>(n, vocab, cols, ids, table, out, status);
  }
  MIXTAPE_CUDA_CHECK(cudaGetLastError());
}

/// Rounds a byte count up to 256 (the slots of one workspace allocation).
inline std::int64_t slot_bytes(std::int64_t bytes) { return (bytes + 255) / 256 * 256; }

template <class A, class I, class G, class D>
void embedding_backward(const ExecutionContext& ctx, const I* ids, const G* dout, D* dtable, std::int64_t n,
                        std::int64_t vocab, std::int64_t cols, bool accumulate, std::int64_t* status) {
  DeviceScope scope(ctx.device().index());
  cudaStream_t stream = ctx.stream();
  if (!accumulate && vocab * cols > 0)
    MIXTAPE_CUDA_CHECK(cudaMemsetAsync(dtable, 0, static_cast<std::size_t>(vocab * cols) * sizeof(D), stream));
  if (n == 0 || cols == 0) return;
  const int end_bit = static_cast<int>(std::bit_width(static_cast<std::uint64_t>(vocab)));  // holds the key V
  const int items = static_cast<int>(n);
  std::size_t temp_bytes = 0;
  MIXTAPE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, static_cast<const std::uint32_t*>(nullptr),
                                                     static_cast<std::uint32_t*>(nullptr),
                                                     static_cast<const std::int32_t*>(nullptr),
                                                     static_cast<std::int32_t*>(nullptr), items, 0, end_bit, stream));
  const std::int64_t slot = slot_bytes(n * 4);
  auto workspace = Tensor<std::uint8_t>::empty(ctx, {4 * slot + slot_bytes(static_cast<std::int64_t>(temp_bytes))},
                                               MemoryRole::workspace);
  auto* base = workspace.data();
  auto* keys_in = reinterpret_cast<std::uint32_t*>(base);
  auto* keys_out = reinterpret_cast<std::uint32_t*>(base + slot);
  auto* values_in = reinterpret_cast<std::int32_t*>(base + 2 * slot);
  auto* values_out = reinterpret_cast<std::int32_t*>(base + 3 * slot);
  void* temp = base + 4 * slot;
  embedding_keys_kernel<<<grid_for(n, kRowThreads), kRowThreads, 0, stream>>>(n, vocab, ids, keys_in, values_in, status);
  MIXTAPE_CUDA_CHECK(cudaGetLastError());
  MIXTAPE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, keys_in, keys_out, values_in, values_out, items, 0,
                                                     end_bit, stream));
  constexpr int P = kPackOf<G, D>;
  const bool packable = rows_packable<P>(cols, dout, dtable);
  const int pw = packable ? P : 1;
  const dim3 grid(static_cast<unsigned>(n),
                  static_cast<unsigned>((cols + static_cast<std::int64_t>(kScatterThreads) * pw - 1) /
                                        (static_cast<std::int64_t>(kScatterThreads) * pw)));
  if (packable) {
    embedding_scatter_kernel<P, A><<<grid, kScatterThreads, 0, stream>>>(n, vocab, cols, keys_out, values_out, dout,
                                                                        dtable, accumulate);
  } else {
    embedding_scatter_kernel<1, A><<<grid, kScatterThreads, 0, stream>>>(n, vocab, cols, keys_out, values_out, dout,
                                                                        dtable, accumulate);
  }
  MIXTAPE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace gpu
MIXTAPE_BACKEND_END
}  // namespace mixtape::kernels::detail
