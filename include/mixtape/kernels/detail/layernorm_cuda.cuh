/// @file layernorm_cuda.cuh
/// @brief CUDA LayerNorm (only in `.cu` units): forward (optionally after a residual add) and input
///        gradient with a warp per row (C <= 2048) or a block per row, 16-byte packs when every
///        operand allows; dgamma and dbeta through the deterministic column reduction
///        (broadcast_cuda.cuh).
///
/// The formulas are layernorm_host.hpp's. Each thread sums a fixed strided subset of a row in
/// order and the group combines the partial sums by a fixed tree (row_group_cuda.cuh), so results
/// are the same on every run; they differ from the host's only by the summation order (the tests'
/// tolerances cover it). The forward holds a warp's row in registers where it fits
/// (layernorm_forward_warp_kernel: C <= 128 P, e.g. 1024 with a 2-byte operand), so x is read from
/// memory once with every load in flight; longer rows are re-read from L1/L2 per pass, which keeps
/// any C on one code path. Both forward kernels sum in the same order (the same bits).
#pragma once

#if !defined(__CUDACC__)
#error "layernorm_cuda.cuh is for .cu translation units"
#endif

#include <cuda_runtime.h>

#include <cstdint>

#include "mixtape/core/error.hpp"
#include "mixtape/core/execution_context.hpp"
#include "mixtape/kernels/detail/broadcast_cuda.cuh"
#include "mixtape/kernels/detail/layernorm_host.hpp"
#include "mixtape/kernels/detail/row_group_cuda.cuh"

namespace mixtape::kernels::detail {
MIXTAPE_BACKEND_BEGIN
namespace gpu {

/// With kResidual, the first pass forms h = x + res (rounded to In, as kernels::map(Add) rounds
/// it), writes it and normalises h: the later passes re-read the thread's own columns of h, which
/// it wrote itself, so no barrier is needed. Without, h is x and res unused.
template <int G, int P, bool kResidual, class A, class In, class R, class W, class Out, class S>
__global__ void __launch_bounds__(kRowThreads)
    layernorm_forward_kernel(std::int64_t rows, std::int64_t cols, A eps, const In* x, const R* res, In* h,
                             const W* gamma, const W* beta, Out* y, S* mean, S* rstd) {
  using RG = RowGroup<G>;
  using AR = compute_t<In, R>;
  __shared__ A smem[RG::kWarps];
  for (std::int64_t row = RG::first_row(); row < rows; row += RG::row_stride()) {
    const In* xr = (kResidual ? h : x) + row * cols;
    A s = 0;
    for (std::int64_t c = static_cast<std::int64_t>(RG::rank()) * P; c < cols; c += G * P) {
      A v[P];
      if constexpr (kResidual) {
        AR a[P], b[P];
        load_row_pack<P>(x + row * cols + c, a);
        load_row_pack<P>(res + row * cols + c, b);
        In hv[P];
#pragma unroll
        for (int k = 0; k < P; ++k) hv[k] = cast<In>(a[k] + b[k]);
        store_row_pack<P>(h + row * cols + c, hv);
#pragma unroll
        for (int k = 0; k < P; ++k) v[k] = to_acc<A>(hv[k]);
      } else {
        load_row_pack<P>(xr + c, v);
      }
#pragma unroll
      for (int k = 0; k < P; ++k) s += v[k];
    }
    const A m = RG::reduce(s, Plus{}, smem) / static_cast<A>(cols);
    A q = 0;
    for (std::int64_t c = static_cast<std::int64_t>(RG::rank()) * P; c < cols; c += G * P) {
      A v[P];
      load_row_pack<P>(xr + c, v);
#pragma unroll
      for (int k = 0; k < P; ++k) {
        const A dev = v[k] - m;
        q += dev * dev;
      }
    }
    const A var = RG::reduce(q, Plus{}, smem) / static_cast<A>(cols);
    const A rs = inverse_sqrt<A>(var + eps);
    Out* yr = y + row * cols;
    for (std::int64_t c = static_cast<std::int64_t>(RG::rank()) * P; c < cols; c += G * P) {
      A v[P], g[P], b[P];
      load_row_pack<P>(xr + c, v);
      load_row_pack<P>(gamma + c, g);
      load_row_pack<P>(beta + c, b);
#pragma unroll
      for (int k = 0; k < P; ++k) v[k] = (v[k] - m) * rs * g[k] + b[k];
      store_row_pack<P>(yr + c, v);
    }
    if (RG::rank() == 0) {
      mean[row] = cast<S>(m);
      rstd[row] = cast<S>(rs);
    }
  }
}

/// The forward with a warp per row held in registers: lane l owns packs l, l + 32, ... (the
/// generic kernel's columns, in its order), kIters of them at most (C <= 32 P kIters). Every load
/// of a row is issued before the first is used, where the generic kernel waits on each pack before
/// loading the next and reads the row three times; the sums and the formulas are its own, so the
/// bits are too. With kResidual, x and res are loaded whole first (h may not alias them, but the
/// compiler cannot know that), then h is formed, stored and kept.
template <int P, int kIters, bool kResidual, class A, class In, class R, class W, class Out, class S>
__global__ void __launch_bounds__(kRowThreads)
    layernorm_forward_warp_kernel(std::int64_t rows, std::int64_t cols, A eps, const In* x, const R* res, In* h,
                                  const W* gamma, const W* beta, Out* y, S* mean, S* rstd) {
  using RG = RowGroup<32>;
  using AR = compute_t<In, R>;
  for (std::int64_t row = RG::first_row(); row < rows; row += RG::row_stride()) {
    const std::int64_t base = row * cols;
    auto col = [&](int it) { return (static_cast<std::int64_t>(it) * 32 + RG::rank()) * P; };
    A v[kIters][P];
    if constexpr (kResidual) {
      // x goes straight into v: In's values are exact in A and in AR (both at least In), so
      // AR(A(x)) + res rounds as the generic kernel's AR(x) + res does.
      Pack<R, P> rp[kIters];
#pragma unroll
      for (int it = 0; it < kIters; ++it)
        if (col(it) < cols) {
          load_row_pack<P>(x + base + col(it), v[it]);
          load_pack<R, P>(rp[it], res + base + col(it));
        }
#pragma unroll
      for (int it = 0; it < kIters; ++it)
        if (col(it) < cols) {
          Pack<In, P> hp;
#pragma unroll
          for (int k = 0; k < P; ++k) {
            hp.v[k] = cast<In>(static_cast<AR>(v[it][k]) + to_acc<AR>(rp[it].v[k]));
            v[it][k] = to_acc<A>(hp.v[k]);
          }
          store_pack<In, P>(h + base + col(it), hp);
        }
    } else {
#pragma unroll
      for (int it = 0; it < kIters; ++it)
        if (col(it) < cols) load_row_pack<P>(x + base + col(it), v[it]);
    }
    A s = 0;
#pragma unroll
    for (int it = 0; it < kIters; ++it)
      if (col(it) < cols)
#pragma unroll
        for (int k = 0; k < P; ++k) s += v[it][k];
    const A m = RG::reduce(s, Plus{}, static_cast<A*>(nullptr)) / static_cast<A>(cols);
    A q = 0;
#pragma unroll
    for (int it = 0; it < kIters; ++it)
      if (col(it) < cols)
#pragma unroll
        for (int k = 0; k < P; ++k) {
          const A dev = v[it][k] - m;
          q += dev * dev;
        }
    const A var = RG::reduce(q, Plus{}, static_cast<A*>(nullptr)) / static_cast<A>(cols);
    const A rs = inverse_sqrt<A>(var + eps);
#pragma unroll
    for (int it = 0; it < kIters; ++it)
      if (col(it) < cols) {
        A g[P], b[P];
        load_row_pack<P>(gamma + col(it), g);
        load_row_pack<P>(beta + col(it), b);
#pragma unroll
        for (int k = 0; k < P; ++k) v[it][k] = (v[it][k] - m) * rs * g[k] + b[k];
        store_row_pack<P>(y + base + col(it), v[it]);
      }
    if (RG::rank() == 0) {
      mean[row] = cast<S>(m);
      rstd[row] = cast<S>(rs);
    }
  }
}

/// Launches the LayerNorm forward: packable rows of up to 128 packs (1024 columns with a 2-byte
/// operand, 512 in f32) go to the register kernel with 2 or 4 pack slots a lane, the rest to
/// launch_rows. (8 slots held a 2048-column bf16 row but spilled on sm_90a in the all-bf16 case.)
template <int P, bool kResidual, class A, class In, class R, class W, class Out, class S>
void launch_layernorm_forward(cudaStream_t stream, std::int64_t rows, std::int64_t cols, bool packable, A eps,
                              const In* x, const R* res, In* h, const W* gamma, const W* beta, Out* y, S* mean,
                              S* rstd) {
  const std::int64_t packs = (cols + P - 1) / P;
  if (packable && packs <= 32 * 4) {
    const unsigned grid = row_grid<32>(rows);
    auto launch = [&]<int kIters>() {
      layernorm_forward_warp_kernel<P, kIters, kResidual, A><<<grid, kRowThreads, 0, stream>>>(
          rows, cols, eps, x, res, h, gamma, beta, y, mean, rstd);
    };
    if (packs <= 32 * 2) {
      launch.template operator()<2>();
    } else {
      launch.template operator()<4>();
    }
    MIXTAPE_CUDA_CHECK(cudaGetLastError());
    return;
  }
  launch_rows<P>(rows, cols, packable, [&]<int G, int PP>(unsigned grid) {
    layernorm_forward_kernel<G, PP, kResidual, A, In, R><<<grid, kRowThreads, 0, stream>>>(rows, cols, eps, x, res, h,
                                                                                         gamma, beta, y, mean, rstd);
  });
}

/// With `copy`, the final dx is also written rounded on to DC there (the residual branch's
/// gradient of a fused add: one read of dx fewer than a separate cast).
template <int G, int P, class A, class In, class W, class S, class GT, class DX, class DC>
__global__ void __launch_bounds__(kRowThreads)
    layernorm_backward_dx_kernel(std::int64_t rows, std::int64_t cols, const In* x, const W* gamma, const S* mean,
                                 const S* rstd, const GT* dy, DX* dx, bool accumulate, DC* copy) {
  using RG = RowGroup<G>;
  __shared__ A smem[RG::kWarps];
  for (std::int64_t row = RG::first_row(); row < rows; row += RG::row_stride()) {
    const std::int64_t base = row * cols;
    const A m = to_acc<A>(mean[row]);
    const A rs = to_acc<A>(rstd[row]);
    A s1 = 0, s2 = 0;
    for (std::int64_t c = static_cast<std::int64_t>(RG::rank()) * P; c < cols; c += G * P) {
      A v[P], d[P], g[P];
      load_row_pack<P>(x + base + c, v);
      load_row_pack<P>(dy + base + c, d);
      load_row_pack<P>(gamma + c, g);
#pragma unroll
      for (int k = 0; k < P; ++k) {
        const A xhat = (v[k] - m) * rs;
        const A dxhat = d[k] * g[k];
        s1 += dxhat;
        s2 += dxhat * xhat;
      }
    }
    const A mean1 = RG::reduce(s1, Plus{}, smem) / static_cast<A>(cols);
    const A mean2 = RG::reduce(s2, Plus{}, smem) / static_cast<A>(cols);
    for (std::int64_t c = static_cast<std::int64_t>(RG::rank()) * P; c < cols; c += G * P) {
      A v[P], d[P], g[P];
      load_row_pack<P>(x + base + c, v);
      load_row_pack<P>(dy + base + c, d);
      load_row_pack<P>(gamma + c, g);
#pragma unroll
      for (int k = 0; k < P; ++k) {
        const A xhat = (v[k] - m) * rs;
        v[k] = (d[k] * g[k] - (xhat * mean2 + mean1)) * rs;
      }
      if (accumulate) {
        A old[P];
        load_row_pack<P>(dx + base + c, old);
#pragma unroll
        for (int k = 0; k < P; ++k) v[k] = old[k] + v[k];
      }
      if (copy) {
        DX rounded[P];
#pragma unroll
        for (int k = 0; k < P; ++k) rounded[k] = cast<DX>(v[k]);
        store_row_pack<P>(dx + base + c, rounded);
        store_row_pack<P>(copy + base + c, rounded);
      } else {
        store_row_pack<P>(dx + base + c, v);
      }
    }
  }
}

template <class A, class In, class W, class Out, class S>
void layernorm_forward(const ExecutionContext& ctx, const In* x, const W* gamma, const W* beta, Out* y, S* mean,
                       S* rstd, std::int64_t rows, std::int64_t cols, A eps) {
  if (rows == 0) return;
  DeviceScope scope(ctx.device().index());
  constexpr int P = kPackOf<In, W, Out>;
  const bool packable = rows_packable<P>(cols, x, gamma, beta, y);
  launch_layernorm_forward<P, false>(ctx.stream(), rows, cols, packable, eps, x, static_cast<const In*>(nullptr),
                                     static_cast<In*>(nullptr), gamma, beta, y, mean, rstd);
}

/// h = x + res, then layernorm_forward of h (layernorm_host.hpp: add_layernorm_forward_host).
template <class A, class X, class R, class W, class Out, class S>
void add_layernorm_forward(const ExecutionContext& ctx, const X* x, const R* res, X* h, const W* gamma, const W* beta,
                           Out* y, S* mean, S* rstd, std::int64_t rows, std::int64_t cols, A eps) {
  if (rows == 0) return;
  DeviceScope scope(ctx.device().index());
  constexpr int P = kPackOf<X, R, W, Out>;
  const bool packable = rows_packable<P>(cols, x, res, h, gamma, beta, y);
  launch_layernorm_forward<P, true>(ctx.stream(), rows, cols, packable, eps, x, res, h, gamma, beta, y, mean, rstd);
}

template <class A, class In, class W, class S, class GT, class DX, class DW, class DC = DX>
void layernorm_backward(const ExecutionContext& ctx, const In* x, const W* gamma, const S* mean, const S* rstd,
                        const GT* dy, DX* dx, DW* dgamma, DW* dbeta, std::int64_t rows, std::int64_t cols,
                        bool accumulate_dx, bool accumulate_params, DC* dx_copy = nullptr) {
  if (cols == 0) return;
  DeviceScope scope(ctx.device().index());
  if (rows > 0) {
    constexpr int P = kPackOf<In, W, GT, DX, DC>;
    const bool packable = rows_packable<P>(cols, x, gamma, dy, dx) && (dx_copy == nullptr || aligned16(dx_copy));
    launch_rows<P>(rows, cols, packable, [&]<int G, int PP>(unsigned grid) {
      layernorm_backward_dx_kernel<G, PP, A><<<grid, kRowThreads, 0, ctx.stream()>>>(rows, cols, x, gamma, mean, rstd,
                                                                                    dy, dx, accumulate_dx, dx_copy);
    });
  }
  const LayerNormParamTerm<A, In, GT, S> term{x, dy, mean, rstd, cols};
  column_reduce(ctx, term, rows, cols, ColumnOutputs<DW, 2>{{dgamma, dbeta}}, accumulate_params);
}

}  // namespace gpu
MIXTAPE_BACKEND_END
}  // namespace mixtape::kernels::detail
