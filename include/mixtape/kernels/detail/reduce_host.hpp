/// @file reduce_host.hpp
/// @brief The host reduction engine.
///
/// A sequence of n elements is cut into blocks of kReduceBlock (8192) elements; each block is
/// widened into a buffer and reduced by the op's `block` routine (8 independent accumulators), and
/// the block states are combined by a fixed pairwise tree (split at the midpoint). The blocks of a
/// whole-tensor reduction are spread over the thread pool; the rows of a row reduction are. Neither
/// the split nor the tree depends on the thread count, so results are bitwise reproducible for any
/// `host_threads`, and a row reduction of a [1, n] tensor equals the full reduction of its n
/// elements.
///
/// Error model (for the tests' tolerances): a sum over n elements adds at most
/// kReduceBlock / 8 + 3 + ceil(log2(ceil(n / kReduceBlock))) terms in sequence along any path of
/// the summation tree, so |error| <= gamma_L * sum |x_i| with L that depth and gamma_L = L u / (1 - L u).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "mixtape/core/tensor.hpp"
#include "mixtape/core/thread_pool.hpp"
#include "mixtape/kernels/detail/reduce_ops.hpp"
#include "mixtape/kernels/detail/strided.hpp"

namespace mixtape::kernels::detail {

/// Elements per host reduction block.
inline constexpr std::int64_t kReduceBlock = 8192;

/// Combines states [lo, hi) by the pairwise tree split at the midpoint.
template <class R>
typename R::state_type combine_tree(const typename R::state_type* s, std::int64_t lo, std::int64_t hi) {
  if (hi - lo == 1) return s[lo];
  if (hi <= lo) return R::identity();
  const std::int64_t mid = lo + (hi - lo) / 2;
  return R::combine(combine_tree<R>(s, lo, mid), combine_tree<R>(s, mid, hi));
}

/// The state of elements [begin, begin + len) of a 1-D strided sequence (len <= kReduceBlock).
template <class R, class T>
typename R::state_type block_state_1d(const T* p, std::int64_t stride, std::int64_t begin, std::int64_t len) {
  using A = typename R::acc_type;
  A buf[kReduceBlock];
  if (stride == 1) {
    const T* q = p + begin;
    for (std::int64_t j = 0; j < len; ++j) buf[j] = R::widen(q[j]);
  } else {
    const T* q = p + begin * stride;
    for (std::int64_t j = 0; j < len; ++j) buf[j] = R::widen(q[j * stride]);
  }
  return R::block(buf, len);
}

/// The state of n elements of a 1-D strided sequence, on the calling thread.
template <class R, class T>
typename R::state_type reduce_sequence(const T* p, std::int64_t stride, std::int64_t n) {
  if (n <= kReduceBlock) return n == 0 ? R::identity() : block_state_1d<R>(p, stride, 0, n);
  const std::int64_t blocks = (n + kReduceBlock - 1) / kReduceBlock;
  std::vector<typename R::state_type> states(static_cast<std::size_t>(blocks));
  for (std::int64_t b = 0; b < blocks; ++b)
    states[b] = block_state_1d<R>(p, stride, b * kReduceBlock, std::min(kReduceBlock, n - b * kReduceBlock));
  return combine_tree<R>(states.data(), 0, blocks);
}

/// Whole-tensor reduction of `in` (any strides) on the host; returns the state.
template <class R, class T>
typename R::state_type reduce_all_host(ThreadPool& pool, const Tensor<T>& in) {
  using A = typename R::acc_type;
  using S = typename R::state_type;
  const std::int64_t n = in.numel();
  if (n == 0) return R::identity();
  const Layout* const layouts[1] = {&in.layout()};
  const StridedPlan<1> plan = make_plan<1>(layouts);
  const T* p = in.data();
  const std::int64_t blocks = (n + kReduceBlock - 1) / kReduceBlock;
  std::vector<S> states(static_cast<std::size_t>(blocks));
  const bool one_dim = plan.rank <= 1;
  const std::int64_t stride = plan.rank == 1 ? plan.strides[0][0] : 1;
  pool.parallel_for(blocks, 4, [&](std::int64_t b0, std::int64_t b1, int) {
    for (std::int64_t b = b0; b < b1; ++b) {
      const std::int64_t begin = b * kReduceBlock, len = std::min(kReduceBlock, n - begin);
      if (one_dim) {
        states[b] = block_state_1d<R>(p, stride, begin, len);
      } else {
        A buf[kReduceBlock];
        std::int64_t k = 0;
        for_each_run(plan, begin, begin + len, [&](std::int64_t, const std::int64_t (&off)[1], std::int64_t run) {
          const std::int64_t s = plan.strides[0][plan.rank - 1];
          for (std::int64_t j = 0; j < run; ++j) buf[k++] = R::widen(p[off[0] + j * s]);
        });
        states[b] = R::block(buf, len);
      }
    }
  });
  return combine_tree<R>(states.data(), 0, blocks);
}

/// Row reduction over the last dimension of `in` on the host: finalize()d values of row r go to
/// out0[row offset] (and out1 for two-output reductions), rounded to O with nearest-even.
template <class R, class T, class O>
void reduce_rows_host(ThreadPool& pool, const Tensor<T>& in, const RowPlan& plan, std::int64_t rows, O* out0, O* out1) {
  using A = typename R::acc_type;
  const std::int64_t cols = in.rank() > 0 ? in.shape()[in.rank() - 1] : 1;
  const T* p = in.data();
  const std::int64_t grain = std::max<std::int64_t>(1, (std::int64_t{1} << 15) / std::max<std::int64_t>(cols, 1));
  pool.parallel_for(rows, grain, [&](std::int64_t r0, std::int64_t r1, int) {
    for (std::int64_t r = r0; r < r1; ++r) {
      std::int64_t in_off, o0, o1;
      plan.offsets(r, in_off, o0, o1);
      A values[2];
      R::finalize(reduce_sequence<R>(p + in_off, plan.col_stride, cols), values);
      out0[o0] = cast<O>(values[0]);
      if constexpr (R::kOutputs == 2) out1[o1] = cast<O>(values[1]);
    }
  });
}

}  // namespace mixtape::kernels::detail
