/// @file layernorm_host.hpp
/// @brief Host LayerNorm over the last dimension: forward (y, mean, rstd) and the input gradient,
///        a row per task over the thread pool; plus the (dy * xhat, dy) term whose column
///        reduction (broadcast_host.hpp / broadcast_cuda.cuh) gives dgamma and dbeta.
///
/// Per row of C values, in the accumulate type A:
///   mean = sum(x) / C,  var = sum((x - mean)^2) / C (two passes: no cancellation),
///   rstd = 1 / sqrt(var + eps),  xhat = (x - mean) rstd,  y = xhat gamma + beta;
///   dxhat = dy gamma,  dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)).
/// Row sums use the host reduction blocks (8 independent accumulators, reduce_ops.hpp); rows are
/// independent, so the results do not depend on the thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "mixtape/core/thread_pool.hpp"
#include "mixtape/kernels/detail/broadcast_host.hpp"
#include "mixtape/kernels/detail/reduce_ops.hpp"
#include "mixtape/kernels/detail/scalar.hpp"

namespace mixtape::kernels::detail {

/// 1 / sqrt(v) in A with the correctly rounded sqrt and division (no rsqrt approximation).
template <class A>
MIXTAPE_HOST_DEVICE inline A inverse_sqrt(A v) noexcept {
  if constexpr (std::is_same_v<A, float>) {
    return 1.0f / ::sqrtf(v);
  } else {
    return 1.0 / ::sqrt(v);
  }
}

/// The per-(row, column) terms of LayerNorm's parameter gradients: v[0] = dy xhat (dgamma),
/// v[1] = dy (dbeta), with xhat recomputed from the saved mean and rstd.
template <class A, class In, class G, class S>
struct LayerNormParamTerm {
  using acc_type = A;
  static constexpr int kValues = 2;
  const In* x;
  const G* dy;
  const S* mean;
  const S* rstd;
  std::int64_t cols;
  MIXTAPE_HOST_DEVICE void load(std::int64_t r, std::int64_t c, A (&v)[2]) const noexcept {
    const std::int64_t i = r * cols + c;
    const A xhat = (to_acc<A>(x[i]) - to_acc<A>(mean[r])) * to_acc<A>(rstd[r]);
    const A d = to_acc<A>(dy[i]);
    v[0] = d * xhat;
    v[1] = d;
  }
};

/// One row's forward: y, mean and rstd from the row `xr` of `cols` (v, d: scratch of cols).
template <class A, class In, class W, class Out, class S>
void layernorm_forward_row(const In* xr, const W* gamma, const W* beta, Out* yr, S& mean, S& rstd, std::int64_t cols,
                           A eps, std::vector<A>& v, std::vector<A>& d) {
  for (std::int64_t c = 0; c < cols; ++c) v[c] = to_acc<A>(xr[c]);
  const A m = SumReduce<A>::block(v.data(), cols) / static_cast<A>(cols);
  for (std::int64_t c = 0; c < cols; ++c) {
    const A dev = v[c] - m;
    d[c] = dev * dev;
  }
  const A var = SumReduce<A>::block(d.data(), cols) / static_cast<A>(cols);
  const A rs = inverse_sqrt<A>(var + eps);
  for (std::int64_t c = 0; c < cols; ++c) yr[c] = cast<Out>((v[c] - m) * rs * to_acc<A>(gamma[c]) + to_acc<A>(beta[c]));
  mean = cast<S>(m);
  rstd = cast<S>(rs);
}

/// Forward over `rows` rows of `cols`: y, and mean / rstd per row rounded to S.
template <class A, class In, class W, class Out, class S>
void layernorm_forward_host(ThreadPool& pool, const In* x, const W* gamma, const W* beta, Out* y, S* mean, S* rstd,
                            std::int64_t rows, std::int64_t cols, A eps) {
  pool.parallel_for(rows, host_row_grain(cols), [&](std::int64_t r0, std::int64_t r1, int) {
    std::vector<A> v(static_cast<std::size_t>(cols)), d(static_cast<std::size_t>(cols));
    for (std::int64_t r = r0; r < r1; ++r)
      layernorm_forward_row<A>(x + r * cols, gamma, beta, y + r * cols, mean[r], rstd[r], cols, eps, v, d);
  });
}

/// The residual add and the forward: h = x + res in h's type (the sum formed in compute_t of x and
/// res, as kernels::map(Add) forms it), then y, mean, rstd of h.
template <class A, class X, class R, class W, class Out, class S>
void add_layernorm_forward_host(ThreadPool& pool, const X* x, const R* res, X* h, const W* gamma, const W* beta, Out* y,
                                S* mean, S* rstd, std::int64_t rows, std::int64_t cols, A eps) {
  using AR = compute_t<X, R>;
  pool.parallel_for(rows, host_row_grain(cols), [&](std::int64_t r0, std::int64_t r1, int) {
    std::vector<A> v(static_cast<std::size_t>(cols)), d(static_cast<std::size_t>(cols));
    for (std::int64_t r = r0; r < r1; ++r) {
      const std::int64_t base = r * cols;
      for (std::int64_t c = 0; c < cols; ++c) h[base + c] = cast<X>(to_acc<AR>(x[base + c]) + to_acc<AR>(res[base + c]));
      layernorm_forward_row<A>(h + base, gamma, beta, y + base, mean[r], rstd[r], cols, eps, v, d);
    }
  });
}

/// Input gradient over `rows` rows: dx = (or +=) rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat));
/// with `copy`, also the final dx rounded on to DC there.
template <class A, class In, class W, class S, class G, class DX, class DC = DX>
void layernorm_backward_dx_host(ThreadPool& pool, const In* x, const W* gamma, const S* mean, const S* rstd,
                                const G* dy, DX* dx, std::int64_t rows, std::int64_t cols, bool accumulate,
                                DC* copy = nullptr) {
  pool.parallel_for(rows, host_row_grain(cols), [&](std::int64_t r0, std::int64_t r1, int) {
    std::vector<A> xhat(static_cast<std::size_t>(cols)), dxhat(static_cast<std::size_t>(cols)),
        prod(static_cast<std::size_t>(cols));
    for (std::int64_t r = r0; r < r1; ++r) {
      const std::int64_t base = r * cols;
      const A m = to_acc<A>(mean[r]);
      const A rs = to_acc<A>(rstd[r]);
      for (std::int64_t c = 0; c < cols; ++c) {
        xhat[c] = (to_acc<A>(x[base + c]) - m) * rs;
        dxhat[c] = to_acc<A>(dy[base + c]) * to_acc<A>(gamma[c]);
        prod[c] = dxhat[c] * xhat[c];
      }
      const A mean1 = SumReduce<A>::block(dxhat.data(), cols) / static_cast<A>(cols);
      const A mean2 = SumReduce<A>::block(prod.data(), cols) / static_cast<A>(cols);
      DX* out = dx + base;
      for (std::int64_t c = 0; c < cols; ++c) {
        const A g = (dxhat[c] - (xhat[c] * mean2 + mean1)) * rs;
        out[c] = accumulate ? cast<DX>(to_acc<A>(out[c]) + g) : cast<DX>(g);
        if (copy) copy[base + c] = cast<DC>(to_acc<A>(out[c]));
      }
    }
  });
}

}  // namespace mixtape::kernels::detail
