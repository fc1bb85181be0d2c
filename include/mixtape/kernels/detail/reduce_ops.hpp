/// @file reduce_ops.hpp
/// @brief The reductions (sum, max, amax, mean/variance) as value types both backends drive: a
///        state, its identity, `widen` (one element to the accumulator type), `load` (one element
///        to a state), `combine` (two states), `finalize`
///        (state to 1 or 2 output values), and a host `block` routine over a buffer of widened
///        values with several independent accumulators (so the compiler vectorises it).
///
/// Determinism: nothing here depends on timing; the host engine fixes the block size and the
/// combination tree, the CUDA engine uses CUB's run-to-run deterministic reduction and fixed-tree
/// warp/block reductions. No atomics.
#pragma once

#include <cstdint>
#include <type_traits>

#include "mixtape/config.hpp"
#include "mixtape/core/layout.hpp"
#include "mixtape/kernels/detail/scalar.hpp"

namespace mixtape::kernels::detail {

/// Independent accumulators of the host block routines.
inline constexpr int kReduceLanes = 8;

/// NaN-propagating maximum: a NaN operand wins (TE and MS-AMP read a NaN amax as "skip the step").
template <class A>
MIXTAPE_HOST_DEVICE constexpr A nan_max(A a, A b) noexcept {
  return (a > b || is_nan(a)) ? a : b;
}

/// Sum in A.
template <class A>
struct SumReduce {
  using acc_type = A;
  using state_type = A;
  static constexpr int kOutputs = 1;
  MIXTAPE_HOST_DEVICE static constexpr state_type identity() noexcept { return A(0); }
  /// One element widened to A (what the host blocks buffer).
  template <class T>
  MIXTAPE_HOST_DEVICE static constexpr A widen(T x) noexcept {
    return to_acc<A>(x);
  }
  /// One element as a state.
  template <class T>
  MIXTAPE_HOST_DEVICE static constexpr state_type load(T x) noexcept {
    return to_acc<A>(x);
  }
  MIXTAPE_HOST_DEVICE static constexpr state_type combine(state_type a, state_type b) noexcept { return a + b; }
  MIXTAPE_HOST_DEVICE static constexpr void finalize(state_type s, A* out) noexcept { out[0] = s; }

  /// Lane j sums elements j, j + 8, ...; the lanes are added pairwise.
  static state_type block(const A* buf, std::int64_t len) noexcept {
    A lane[kReduceLanes] = {};
    std::int64_t i = 0;
    for (; i + kReduceLanes <= len; i += kReduceLanes)
      for (int j = 0; j < kReduceLanes; ++j) lane[j] += buf[i + j];
    for (int j = 0; i < len; ++i, ++j) lane[j] += buf[i];
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
  }
};

/// Maximum (NaN-propagating) of the widened values; identity -inf.
/// @tparam Abs true for amax: the maximum of |x| (identity 0)
template <class A, bool Abs>
struct MaxReduce {
  using acc_type = A;
  using state_type = A;
  static constexpr int kOutputs = 1;
  MIXTAPE_HOST_DEVICE static constexpr state_type identity() noexcept { return Abs ? A(0) : -infinity<A>(); }
  template <class T>
  MIXTAPE_HOST_DEVICE static constexpr A widen(T x) noexcept {
    if constexpr (Abs) {
      return abs_exact(to_acc<A>(x));
    } else {
      return to_acc<A>(x);
    }
  }
  template <class T>
  MIXTAPE_HOST_DEVICE static constexpr state_type load(T x) noexcept {
    return widen(x);
  }
  MIXTAPE_HOST_DEVICE static constexpr state_type combine(state_type a, state_type b) noexcept { return nan_max(a, b); }
  MIXTAPE_HOST_DEVICE static constexpr void finalize(state_type s, A* out) noexcept { out[0] = s; }

  /// buf holds widen()ed values. Lane maxima with a separate NaN flag per lane (compare-and-select
  /// and or: both vectorise).
  static state_type block(const A* buf, std::int64_t len) noexcept {
    using Mask = std::conditional_t<sizeof(A) == 4, std::int32_t, std::int64_t>;  // lane-width flags
    A lane[kReduceLanes];
    Mask nan[kReduceLanes] = {};
    for (int j = 0; j < kReduceLanes; ++j) lane[j] = identity();
    std::int64_t i = 0;
    for (; i + kReduceLanes <= len; i += kReduceLanes) {
      for (int j = 0; j < kReduceLanes; ++j) {
        const A x = buf[i + j];
        lane[j] = x > lane[j] ? x : lane[j];
        nan[j] |= static_cast<Mask>(is_nan(x));
      }
    }
    for (int j = 0; i < len; ++i, ++j) {
      const A x = buf[i];
      lane[j] = x > lane[j] ? x : lane[j];
      nan[j] |= static_cast<Mask>(is_nan(x));
    }
    A m = lane[0];
    Mask any_nan = nan[0];
    for (int j = 1; j < kReduceLanes; ++j) {
      m = lane[j] > m ? lane[j] : m;
      any_nan |= nan[j];
    }
    return any_nan ? quiet_nan<A>() : m;
  }
};

/// Count, mean and sum of squared deviations (Welford; Chan, Golub and LeVeque's pairwise merge).
template <class A>
struct WelfordState {
  A mean;
  A m2;
  std::int64_t count;
};

/// Mean and population variance (m2 / n); an empty input gives NaN for both.
template <class A>
struct MeanVarReduce {
  using acc_type = A;
  using state_type = WelfordState<A>;
  static constexpr int kOutputs = 2;
  MIXTAPE_HOST_DEVICE static constexpr state_type identity() noexcept { return {A(0), A(0), 0}; }
  template <class T>
  MIXTAPE_HOST_DEVICE static constexpr A widen(T x) noexcept {
    return to_acc<A>(x);
  }
  template <class T>
  MIXTAPE_HOST_DEVICE static constexpr state_type load(T x) noexcept {
    return {to_acc<A>(x), A(0), 1};
  }
  /// Chan et al.: n = na + nb, d = mb - ma, mean = ma + d nb / n, m2 = m2a + m2b + d^2 na nb / n.
  MIXTAPE_HOST_DEVICE static constexpr state_type combine(const state_type& a, const state_type& b) noexcept {
    if (b.count == 0) return a;
    if (a.count == 0) return b;
    const std::int64_t n = a.count + b.count;
    const A fb = static_cast<A>(b.count) / static_cast<A>(n);
    const A d = b.mean - a.mean;
    return {a.mean + d * fb, a.m2 + b.m2 + d * d * static_cast<A>(a.count) * fb, n};
  }
  MIXTAPE_HOST_DEVICE static constexpr void finalize(const state_type& s, A* out) noexcept {
    if (s.count == 0) {
      out[0] = quiet_nan<A>();
      out[1] = quiet_nan<A>();
      return;
    }
    out[0] = s.mean;
    out[1] = s.m2 / static_cast<A>(s.count);
  }

  /// Two passes over the block (it is in cache): the mean from lane sums, then the lane sums of
  /// squared deviations from it.
  static state_type block(const A* buf, std::int64_t len) noexcept {
    if (len == 0) return identity();
    const A mean = SumReduce<A>::block(buf, len) / static_cast<A>(len);
    A lane[kReduceLanes] = {};
    std::int64_t i = 0;
    for (; i + kReduceLanes <= len; i += kReduceLanes)
      for (int j = 0; j < kReduceLanes; ++j) {
        const A d = buf[i + j] - mean;
        lane[j] += d * d;
      }
    for (int j = 0; i < len; ++i, ++j) {
      const A d = buf[i] - mean;
      lane[j] += d * d;
    }
    const A m2 = ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
    return {mean, m2, len};
  }
};

/// Where row r of a row reduction starts in the input and where its results go: the leading
/// dimensions (all but the last) with the input's strides and the outputs' strides.
struct RowPlan {
  int rank = 0;  // leading dimensions
  std::int64_t shape[kMaxRank] = {};
  std::int64_t in_stride[kMaxRank] = {};
  std::int64_t out_stride[2][kMaxRank] = {};
  std::int64_t col_stride = 1;

  MIXTAPE_HOST_DEVICE void offsets(std::int64_t row, std::int64_t& in_off, std::int64_t& out0,
                                   std::int64_t& out1) const noexcept {
    in_off = out0 = out1 = 0;
    for (int d = rank - 1; d >= 0; --d) {
      const std::int64_t q = row / shape[d];
      const std::int64_t r = row - q * shape[d];
      row = q;
      in_off += r * in_stride[d];
      out0 += r * out_stride[0][d];
      out1 += r * out_stride[1][d];
    }
  }
};

/// The plan for reducing the last dimension of `in` into outputs of layouts `out0`, `out1`
/// (shapes checked by the caller: the input's leading dimensions).
inline RowPlan make_row_plan(const Layout& in, const Layout& out0, const Layout& out1) {
  RowPlan p;
  p.rank = in.rank() - 1;
  for (int d = 0; d < p.rank; ++d) {
    p.shape[d] = in.shape[d];
    p.in_stride[d] = in.strides[d];
    p.out_stride[0][d] = out0.strides[d];
    p.out_stride[1][d] = out1.strides[d];
  }
  p.col_stride = in.rank() > 0 ? in.strides[in.rank() - 1] : 1;
  return p;
}

}  // namespace mixtape::kernels::detail
