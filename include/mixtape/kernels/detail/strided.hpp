/// @file strided.hpp
/// @brief Index plans for element-wise kernels over N operands of one shape with their own strides:
///        dimensions of extent 1 dropped and neighbours merged where every operand allows it, so a
///        transposed matrix stays rank 2 and a contiguous tensor becomes rank 1. int64 throughout.
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>

#include "mixtape/config.hpp"
#include "mixtape/core/layout.hpp"

namespace mixtape::kernels::detail {

/// Shape and per-operand strides (elements) after collapsing; operand 0 is the output.
/// @tparam N number of operands (output first)
template <int N>
struct StridedPlan {
  int rank = 0;
  std::int64_t shape[kMaxRank] = {};
  std::int64_t strides[N][kMaxRank] = {};

  /// True when every operand is dense row-major (one run of stride 1 over all elements).
  bool contiguous() const noexcept {
    if (rank == 0) return true;
    if (rank > 1) return false;
    for (int k = 0; k < N; ++k)
      if (strides[k][0] != 1) return false;
    return true;
  }

  /// Element offsets of the row-major linear index `i` for every operand.
  MIXTAPE_HOST_DEVICE void offsets(std::int64_t i, std::int64_t (&off)[N]) const noexcept {
    for (int k = 0; k < N; ++k) off[k] = 0;
    for (int d = rank - 1; d > 0; --d) {
      const std::int64_t q = i / shape[d];
      const std::int64_t r = i - q * shape[d];
      i = q;
      for (int k = 0; k < N; ++k) off[k] += r * strides[k][d];
    }
    if (rank > 0) {
      for (int k = 0; k < N; ++k) off[k] += i * strides[k][0];  // i < shape[0]: no division
    }
  }
};

/// The collapsed plan for `layouts` (all of one shape, checked by the caller).
template <int N>
StridedPlan<N> make_plan(const Layout* const (&layouts)[N]) {
  StridedPlan<N> p;
  const Layout& l0 = *layouts[0];
  for (int d = 0; d < l0.rank(); ++d) {
    if (l0.shape[d] == 1) continue;  // extent 1: any stride, contributes nothing
    if (p.rank > 0) {
      const int prev = p.rank - 1;
      bool merge = true;
      for (int k = 0; k < N; ++k)
        if (p.strides[k][prev] != layouts[k]->strides[d] * l0.shape[d]) merge = false;
      if (merge) {
        p.shape[prev] *= l0.shape[d];
        for (int k = 0; k < N; ++k) p.strides[k][prev] = layouts[k]->strides[d];
        continue;
      }
    }
    p.shape[p.rank] = l0.shape[d];
    for (int k = 0; k < N; ++k) p.strides[k][p.rank] = layouts[k]->strides[d];
    ++p.rank;
  }
  return p;
}

/// Calls `f(i, off, len)` for the runs along the innermost collapsed dimension that cover the
/// linear range [begin, end): elements i .. i + len - 1 sit at off[k] + j * strides[k][rank - 1].
template <int N, class F>
void for_each_run(const StridedPlan<N>& p, std::int64_t begin, std::int64_t end, F&& f) {
  if (begin >= end) return;
  if (p.rank == 0) {
    std::int64_t off[N] = {};
    f(begin, off, end - begin);
    return;
  }
  const int last = p.rank - 1;
  std::int64_t index[kMaxRank] = {};
  std::int64_t off[N];
  {
    std::int64_t i = begin;
    for (int d = last; d >= 0; --d) {
      index[d] = i % p.shape[d];
      i /= p.shape[d];
    }
    for (int k = 0; k < N; ++k) {
      off[k] = 0;
      for (int d = 0; d <= last; ++d) off[k] += index[d] * p.strides[k][d];
    }
  }
  std::int64_t i = begin;
  while (i < end) {
    const std::int64_t len = std::min(p.shape[last] - index[last], end - i);
    f(i, off, len);
    i += len;
    if (i >= end) break;
    // Advance to the start of the next run: carry through the outer dimensions.
    for (int k = 0; k < N; ++k) off[k] += len * p.strides[k][last];
    index[last] += len;
    for (int d = last; d > 0 && index[d] == p.shape[d]; --d) {
      for (int k = 0; k < N; ++k) off[k] += p.strides[k][d - 1] - p.shape[d] * p.strides[k][d];
      index[d] = 0;
      ++index[d - 1];
    }
  }
}

}  // namespace mixtape::kernels::detail
