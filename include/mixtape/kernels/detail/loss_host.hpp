/// @file loss_host.hpp
/// @brief Host cross-entropy (fused log-softmax, integer targets) and mean-squared error, forward
///        and backward; plus the MSE gradient functor both element-wise engines run.
///
/// Cross-entropy per row n of V logits z, target t, in the accumulate type A:
///   lse = max z + log(sum exp(z - max z)),  loss_n = lse - z_t,  mean = sum_n loss_n / N
///   (the mean summed in double);  dz = (exp(z - lse) - [v == t]) * (dloss / N).
/// MSE over n elements: loss = sum (x - y)^2 / n (block sums in A, blocks added in double);
///   dx = (x - y) * (2 dloss / n).
/// Targets are validated before anything is written (ValueError naming the row and the value).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "mixtape/core/error.hpp"
#include "mixtape/core/thread_pool.hpp"
#include "mixtape/kernels/detail/broadcast_host.hpp"
#include "mixtape/kernels/detail/index_status.hpp"
#include "mixtape/kernels/detail/reduce_ops.hpp"
#include "mixtape/kernels/detail/scalar.hpp"
#include "mixtape/kernels/detail/softmax_host.hpp"
#include "mixtape/kernels/functors.hpp"

namespace mixtape::kernels::detail {

/// Elements per host MSE block.
inline constexpr std::int64_t kMseHostBlock = 8192;

/// *mean = sum_n losses[n] / rows, summed in double in row order (one thread: the same bits for any
/// pool size, and for rows written in several chunks).
template <class L>
void loss_mean_host(const L* losses, L* mean, std::int64_t rows) {
  double total = 0;
  for (std::int64_t r = 0; r < rows; ++r) total += to_acc<double>(losses[r]);
  *mean = cast<L>(total / static_cast<double>(rows));
}

/// Per-row losses and lse; their mean too unless `mean` is null (a chunk of a longer batch).
template <class A, class T, class I, class L>
void cross_entropy_forward_host(ThreadPool& pool, const T* logits, const I* targets, L* losses, L* lse, L* mean,
                                std::int64_t rows, std::int64_t vocab) {
  expect_indices_in_range("cross_entropy_forward", "target", targets, rows, vocab);
  pool.parallel_for(rows, host_row_grain(vocab), [&](std::int64_t r0, std::int64_t r1, int) {
    std::vector<A> z(static_cast<std::size_t>(vocab));
    for (std::int64_t r = r0; r < r1; ++r) {
      const T* zr = logits + r * vocab;
      for (std::int64_t c = 0; c < vocab; ++c) z[c] = to_acc<A>(zr[c]);
      const A m = host_row_max(z.data(), vocab);
      const A zt = z[static_cast<std::int64_t>(targets[r])];
      for (std::int64_t c = 0; c < vocab; ++c) z[c] = host_exp(z[c] - m);
      const A l = m + host_log(SumReduce<A>::block(z.data(), vocab));
      lse[r] = cast<L>(l);
      losses[r] = cast<L>(l - zt);
    }
  });
  if (mean != nullptr) loss_mean_host(losses, mean, rows);
}

template <class A, class T, class I, class L, class G>
void cross_entropy_backward_host(ThreadPool& pool, const T* logits, const I* targets, const L* lse, const L* dloss,
                                 G* dlogits, std::int64_t rows, std::int64_t vocab, bool accumulate) {
  expect_indices_in_range("cross_entropy_backward", "target", targets, rows, vocab);
  // dloss == nullptr: the gradient of the rows' sum (scale exactly 1), for cross_entropy_rows_grad.
  const A scale = dloss != nullptr ? to_acc<A>(*dloss) / static_cast<A>(rows) : A(1);
  pool.parallel_for(rows, host_row_grain(vocab), [&](std::int64_t r0, std::int64_t r1, int) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const std::int64_t base = r * vocab;
      const std::int64_t t = static_cast<std::int64_t>(targets[r]);
      const A l = to_acc<A>(lse[r]);
      for (std::int64_t c = 0; c < vocab; ++c) {
        const A p = host_exp(to_acc<A>(logits[base + c]) - l);
        const A g = (c == t ? p - A(1) : p) * scale;
        dlogits[base + c] = accumulate ? cast<G>(to_acc<A>(dlogits[base + c]) + g) : cast<G>(g);
      }
    }
  });
}

/// loss = sum (x - y)^2 / n on the host (dense x, y).
/// Per-row losses and lse, then dlogits = softmax - onehot (the gradient of the rows' sum); dlogits
/// may be the logits.
template <class A, class T, class I, class L>
void cross_entropy_rows_grad_host(ThreadPool& pool, const T* logits, const I* targets, L* losses, L* lse, T* dlogits,
                                  std::int64_t rows, std::int64_t vocab) {
  cross_entropy_forward_host<A>(pool, logits, targets, losses, lse, static_cast<L*>(nullptr), rows, vocab);
  cross_entropy_backward_host<A>(pool, logits, targets, static_cast<const L*>(lse), static_cast<const L*>(nullptr),
                                 dlogits, rows, vocab, false);
}

template <class A, class X, class Y, class L>
void mse_forward_host(ThreadPool& pool, const X* x, const Y* y, L* loss, std::int64_t n) {
  const std::int64_t blocks = std::max<std::int64_t>(1, (n + kMseHostBlock - 1) / kMseHostBlock);
  std::vector<double> partial(static_cast<std::size_t>(blocks), 0.0);
  pool.parallel_for(blocks, 1, [&](std::int64_t b0, std::int64_t b1, int) {
    std::vector<A> sq(static_cast<std::size_t>(kMseHostBlock));
    for (std::int64_t b = b0; b < b1; ++b) {
      const std::int64_t begin = b * kMseHostBlock, len = std::min(kMseHostBlock, n - begin);
      for (std::int64_t i = 0; i < len; ++i) {
        const A d = to_acc<A>(x[begin + i]) - to_acc<A>(y[begin + i]);
        sq[i] = d * d;
      }
      partial[b] = to_acc<double>(SumReduce<A>::block(sq.data(), len));
    }
  });
  double total = 0;
  for (double p : partial) total += p;
  *loss = cast<L>(total / static_cast<double>(n));
}

/// dx = (x - y) * (2 dloss / n), dloss read from memory on the op's device (host or CUDA).
/// @tparam L the loss element type
template <class L>
struct MseGrad {
  const L* dloss;
  std::int64_t n;
  template <class X, class Y>
  MIXTAPE_HOST_DEVICE compute_t<X, Y, L> operator()(X x, Y y) const noexcept {
    using A = compute_t<X, Y, L>;
    const A c = (A(2) * to_acc<A>(*dloss)) / static_cast<A>(n);
    return (to_acc<A>(x) - to_acc<A>(y)) * c;
  }
};

/// dx_new = dx_old + (x - y) * (2 dloss / n), one fma.
/// @tparam L the loss element type
template <class L>
struct MseGradAccumulate {
  const L* dloss;
  std::int64_t n;
  template <class X, class Y, class D>
  MIXTAPE_HOST_DEVICE compute_t<X, Y, D, L> operator()(X x, Y y, D old) const noexcept {
    using A = compute_t<X, Y, D, L>;
    const A c = (A(2) * to_acc<A>(*dloss)) / static_cast<A>(n);
    return fma_exact<A>(to_acc<A>(x) - to_acc<A>(y), c, to_acc<A>(old));
  }
};

}  // namespace mixtape::kernels::detail
