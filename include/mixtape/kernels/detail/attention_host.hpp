/// @file attention_host.hpp
/// @brief Host fused causal self-attention, forward and backward: the CUDA kernels' algorithm and
///        rounding points in plain loops, one (batch, head) per task over the thread pool.
///
/// Per head, with scale s = 1/sqrt(D), A the compute type (float for f16 / bf16 / f32, double for
/// f64) and round_T the rounding to the operand type T (nearest even):
///
///   forward, row i:   z_j = s * (q_i . k_j) in A for j <= i,  m = max z,  e_j = exp(z_j - m),
///                     l = sum e_j (unrounded),  y_i = round_T(sum_j round_T(e_j) v_j / l),
///                     lse_i = m + log(l)
///   backward:         D_i = sum_d dy_id y_id,  P_ij = exp(z_ij - lse_i) in A,
///                     dP_ij = dy_i . v_j in A,  dS_ij = round_T(s * (P_ij * (dP_ij - D_i))),
///                     dq_i = sum_j dS_ij k_j,  dk_j = sum_i dS_ij q_i,  dv_j = sum_i round_T(P_ij) dy_i,
///                     each accumulated in A and rounded once to the gradient's type (or added to it).
///
/// The CUDA kernels round exp(z - running max) instead of exp(z - final max) for the P V product
/// (the flash-attention online softmax); both are one rounding of the same relative size, which
/// the tests' tolerance covers. Only O(T D) scratch per head: no (T, T) tensor.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "mixtape/core/thread_pool.hpp"
#include "mixtape/kernels/detail/scalar.hpp"
#include "mixtape/kernels/detail/softmax_host.hpp"

namespace mixtape::kernels::detail {

/// Geometry of the fused (B, T, 3C) projection: head h of batch b starts at
/// qkv + b T 3C + h D (q), + C (k), + 2C (v), rows 3C apart; y and dy rows are C apart.
struct AttentionDims {
  std::int64_t batch = 0, seq = 0, heads = 0, head_dim = 0;
  std::int64_t width() const noexcept { return heads * head_dim; }  // C
};

/// Rows per thread-pool task: enough (batch, head) pairs that a chunk does ~T^2 D >= 2^15 work.
inline std::int64_t attention_head_grain(const AttentionDims& d) {
  const std::int64_t work = d.seq * d.seq * d.head_dim;
  return std::max<std::int64_t>(1, (std::int64_t{1} << 15) / std::max<std::int64_t>(work, 1));
}

template <class A, class T>
A attention_dot(const T* a, const T* b, std::int64_t n) noexcept {
  A s = 0;
  for (std::int64_t d = 0; d < n; ++d) s += to_acc<A>(a[d]) * to_acc<A>(b[d]);
  return s;
}

template <class A, class T>
void causal_attention_forward_host(ThreadPool& pool, const AttentionDims& dims, const T* qkv, T* y, A* lse, A scale) {
  const std::int64_t tn = dims.seq, dn = dims.head_dim, c = dims.width(), ld = 3 * c;
  pool.parallel_for(dims.batch * dims.heads, attention_head_grain(dims), [&](std::int64_t h0, std::int64_t h1, int) {
    std::vector<A> z(static_cast<std::size_t>(tn)), acc(static_cast<std::size_t>(dn));
    for (std::int64_t bh = h0; bh < h1; ++bh) {
      const std::int64_t b = bh / dims.heads, h = bh % dims.heads;
      const T* q = qkv + b * tn * ld + h * dn;
      const T* k = q + c;
      const T* v = q + 2 * c;
      for (std::int64_t i = 0; i < tn; ++i) {
        for (std::int64_t j = 0; j <= i; ++j) z[j] = scale * attention_dot<A>(q + i * ld, k + j * ld, dn);
        const A m = host_row_max(z.data(), i + 1);
        A l = 0;
        for (std::int64_t d = 0; d < dn; ++d) acc[d] = 0;
        for (std::int64_t j = 0; j <= i; ++j) {
          const A e = host_exp(z[j] - m);
          l += e;
          const A p = to_acc<A>(cast<T>(e));  // P rounded to the operand type for the P V product
          for (std::int64_t d = 0; d < dn; ++d) acc[d] += p * to_acc<A>(v[j * ld + d]);
        }
        T* yr = y + (b * tn + i) * c + h * dn;
        for (std::int64_t d = 0; d < dn; ++d) yr[d] = cast<T>(acc[d] / l);
        lse[bh * tn + i] = m + host_log(l);
      }
    }
  });
}

template <class A, class T, class G>
void causal_attention_backward_host(ThreadPool& pool, const AttentionDims& dims, const T* qkv, const T* y, const T* dy,
                                    const A* lse, G* dqkv, A scale, bool accumulate) {
  const std::int64_t tn = dims.seq, dn = dims.head_dim, c = dims.width(), ld = 3 * c;
  auto put = [accumulate](G* dst, A g) { *dst = accumulate ? cast<G>(to_acc<A>(*dst) + g) : cast<G>(g); };
  pool.parallel_for(dims.batch * dims.heads, attention_head_grain(dims), [&](std::int64_t h0, std::int64_t h1, int) {
    const auto td = static_cast<std::size_t>(tn * dn);
    std::vector<A> dk(td), dv(td), dq(static_cast<std::size_t>(dn)), drow(static_cast<std::size_t>(tn));
    for (std::int64_t bh = h0; bh < h1; ++bh) {
      const std::int64_t b = bh / dims.heads, h = bh % dims.heads;
      const T* q = qkv + b * tn * ld + h * dn;
      const T* k = q + c;
      const T* v = q + 2 * c;
      const T* yh = y + b * tn * c + h * dn;
      const T* dyh = dy + b * tn * c + h * dn;
      G* dqh = dqkv + b * tn * ld + h * dn;
      for (std::int64_t i = 0; i < tn; ++i) drow[i] = attention_dot<A>(dyh + i * c, yh + i * c, dn);
      std::fill(dk.begin(), dk.end(), A(0));
      std::fill(dv.begin(), dv.end(), A(0));
      for (std::int64_t i = 0; i < tn; ++i) {
        std::fill(dq.begin(), dq.end(), A(0));
        const T* qi = q + i * ld;
        const T* dyi = dyh + i * c;
        for (std::int64_t j = 0; j <= i; ++j) {
          const A p = host_exp(scale * attention_dot<A>(qi, k + j * ld, dn) - lse[bh * tn + i]);
          const A dp = attention_dot<A>(dyi, v + j * ld, dn);
          const A ds = to_acc<A>(cast<T>(scale * (p * (dp - drow[i]))));
          const A pt = to_acc<A>(cast<T>(p));
          A* dkj = dk.data() + j * dn;
          A* dvj = dv.data() + j * dn;
          for (std::int64_t d = 0; d < dn; ++d) {
            dq[d] += ds * to_acc<A>(k[j * ld + d]);
            dkj[d] += ds * to_acc<A>(qi[d]);
            dvj[d] += pt * to_acc<A>(dyi[d]);
          }
        }
        for (std::int64_t d = 0; d < dn; ++d) put(dqh + i * ld + d, dq[d]);
      }
      for (std::int64_t j = 0; j < tn; ++j)
        for (std::int64_t d = 0; d < dn; ++d) {
          put(dqh + j * ld + c + d, dk[j * dn + d]);
          put(dqh + j * ld + 2 * c + d, dv[j * dn + d]);
        }
    }
  });
}

}  // namespace mixtape::kernels::detail
