/// @file optimizer_host.hpp
/// @brief The host engine of the optimizer kernels: multi-tensor operations over the chunks of a
///        flat group on the context's thread pool, and the gradient norm's per-block partial sums.
///
/// Chunks are spread over the pool in static contiguous ranges; every element's result depends on
/// its index and the step scalars only, so any thread count gives the same bits (and the same bits
/// as the CUDA engine, which runs the same per-element code). The gradient norm's partials are sums
/// over fixed blocks of kNormHostBlock elements, combined in index order: reproducible for any
/// thread count; within rounding of the CUDA engine's different (also fixed) order.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "mixtape/core/thread_pool.hpp"
#include "mixtape/kernels/detail/optimizer_ops.hpp"

namespace mixtape::kernels::detail {

/// Chunks per host task below which a loop stays on the calling thread (2 chunks: 32K elements,
/// the element-wise engine's grain).
inline constexpr std::int64_t kHostOptimizerGrain = 2;

/// Elements per partial sum of the host gradient norm.
inline constexpr std::int64_t kNormHostBlock = 8192;

/// Runs `op` (optimizer_ops.hpp) over the `nchunks` chunks of a group of `n` elements (`chunks`
/// null: implicit chunks, weight decay everywhere). Returns whether any element reported a
/// non-finite value; does nothing when the operation's consts say skip.
template <class Op>
bool multi_tensor_host(ThreadPool& pool, const Op& op, const OptimizerChunk* chunks, std::int64_t nchunks,
                       std::int64_t n) {
  const auto k = op.load();
  if (k.skip || nchunks == 0) return false;
  // One flag per pool task, not one shared flag: no two threads write the same byte.
  std::vector<unsigned char> seen(static_cast<std::size_t>(pool.chunk_count(nchunks, kHostOptimizerGrain)), 0);
  pool.parallel_for(nchunks, kHostOptimizerGrain, [&](std::int64_t c0, std::int64_t c1, int task) {
    bool any = false;
    for (std::int64_t c = c0; c < c1; ++c) {
      const OptimizerChunk ch = chunk_at(chunks, c, n);
      for (std::int32_t j = 0; j < ch.length; ++j) any |= op.apply(ch, j, k);
    }
    seen[static_cast<std::size_t>(task)] = any ? 1 : 0;
  });
  return std::any_of(seen.begin(), seen.end(), [](unsigned char f) { return f != 0; });
}

/// Number of partial sums the host norm writes for n elements.
constexpr std::int64_t norm_host_partials(std::int64_t n) noexcept { return (n + kNormHostBlock - 1) / kNormHostBlock; }

/// partials[b] = sum of norm_term(g[i], inv, use_inv) over block b (8 lanes, added pairwise), for
/// the norm_host_partials(n) blocks of g.
template <class T>
void norm_partials_host(ThreadPool& pool, const T* g, std::int64_t n, float inv, bool use_inv, double* partials) {
  const std::int64_t blocks = norm_host_partials(n);
  pool.parallel_for(blocks, 4, [&](std::int64_t b0, std::int64_t b1, int) {
    for (std::int64_t b = b0; b < b1; ++b) {
      const std::int64_t begin = b * kNormHostBlock, end = std::min(n, begin + kNormHostBlock);
      double lane[8] = {};
      std::int64_t i = begin;
      for (; i + 8 <= end; i += 8)
        for (int j = 0; j < 8; ++j) lane[j] += norm_term(g[i + j], inv, use_inv);
      for (int j = 0; i < end; ++i, ++j) lane[j] += norm_term(g[i], inv, use_inv);
      partials[b] = ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
    }
  });
}

}  // namespace mixtape::kernels::detail
