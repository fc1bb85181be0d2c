/// @file embedding_host.hpp
/// @brief Host embedding: the row gather, and the deterministic scatter-add of its gradient.
///
/// Backward, per table row v: s = sum of dout[p, :] over the positions p with ids[p] == v, added
/// in increasing p, starting from 0, in the accumulate type A; then d_table[v, :] = s
/// (assign: rows no id hits become 0) or d_table[v, :] = old + s (accumulate). The positions are
/// grouped by a stable counting sort (the host's form of the CUDA path's radix sort of (id,
/// position) pairs), so host and CUDA add the same terms in the same order: same bits.
#pragma once

#include <cstdint>
#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "mixtape/core/thread_pool.hpp"
#include "mixtape/kernels/detail/broadcast_host.hpp"
#include "mixtape/kernels/detail/index_status.hpp"
#include "mixtape/kernels/detail/scalar.hpp"

namespace mixtape::kernels::detail {

/// out[p, :] = table[ids[p], :] converted to O (nearest-even); ids checked first (ValueError).
template <class I, class T, class O>
void embedding_forward_host(ThreadPool& pool, const I* ids, const T* table, O* out, std::int64_t n, std::int64_t vocab,
                            std::int64_t cols) {
  expect_indices_in_range("embedding_forward", "id", ids, n, vocab);
  pool.parallel_for(n, host_row_grain(cols), [&](std::int64_t p0, std::int64_t p1, int) {
    for (std::int64_t p = p0; p < p1; ++p) {
      const T* src = table + static_cast<std::int64_t>(ids[p]) * cols;
      O* dst = out + p * cols;
      if constexpr (std::is_same_v<T, O>) {
        std::memcpy(dst, src, static_cast<std::size_t>(cols) * sizeof(T));
      } else {
        for (std::int64_t c = 0; c < cols; ++c) dst[c] = cast<O>(src[c]);
      }
    }
  });
}

/// d_table (vocab, cols) = (or +=) the scatter-add of dout (n, cols) by ids (file comment).
template <class A, class I, class G, class D>
void embedding_backward_host(ThreadPool& pool, const I* ids, const G* dout, D* dtable, std::int64_t n,
                             std::int64_t vocab, std::int64_t cols, bool accumulate) {
  expect_indices_in_range("embedding_backward", "id", ids, n, vocab);
  // Stable counting sort of the positions by id: first[v] .. first[v + 1] index `order`.
  std::vector<std::int64_t> first(static_cast<std::size_t>(vocab + 1), 0);
  for (std::int64_t p = 0; p < n; ++p) ++first[static_cast<std::int64_t>(ids[p]) + 1];
  for (std::int64_t v = 0; v < vocab; ++v) first[v + 1] += first[v];
  std::vector<std::int64_t> order(static_cast<std::size_t>(n)), next(first.begin(), first.end() - 1);
  for (std::int64_t p = 0; p < n; ++p) order[next[static_cast<std::int64_t>(ids[p])]++] = p;
  pool.parallel_for(vocab, host_row_grain(cols), [&](std::int64_t v0, std::int64_t v1, int) {
    std::vector<A> s(static_cast<std::size_t>(cols));
    for (std::int64_t v = v0; v < v1; ++v) {
      D* row = dtable + v * cols;
      if (first[v] == first[v + 1]) {
        if (!accumulate)
          for (std::int64_t c = 0; c < cols; ++c) row[c] = cast<D>(A(0));
        continue;
      }
      std::fill(s.begin(), s.end(), A(0));
      for (std::int64_t j = first[v]; j < first[v + 1]; ++j) {
        const G* src = dout + order[j] * cols;
        for (std::int64_t c = 0; c < cols; ++c) s[c] += to_acc<A>(src[c]);
      }
      for (std::int64_t c = 0; c < cols; ++c) row[c] = accumulate ? cast<D>(to_acc<A>(row[c]) + s[c]) : cast<D>(s[c]);
    }
  });
}

}  // namespace mixtape::kernels::detail
