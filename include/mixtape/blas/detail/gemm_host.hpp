/// @file gemm_host.hpp
/// @brief The host GEMM: BLIS / GotoBLAS blocking over the context's thread pool, with the
///        instruction-set-specific kernels of gemm_host_kernels.hpp picked at run time.
///
/// Per matrix (batch item) and thread:
///
///     for jc in the thread's columns, NC at a time:        pack op(B)[:, jc:jc+NC] (all of k)
///       for ic in the thread's rows, MC at a time:
///         for pc in k, KC at a time:                      pack op(A)[ic:ic+MC, pc:pc+KC]
///           for jr in NR panels, ir in MR panels:         micro-kernel -> accumulator block
///         epilogue (alpha, beta, bias, GELU, aux, ...) -> C[ic:ic+MC, jc:jc+NC]
///
/// The packed B block (k x NC, at most kBPackBytes) stays in L3 and is read once per MC rows; the
/// packed A block (MC x KC) stays in L2; a micro-kernel's B panel (KC x NR) in L1. The accumulator
/// block (MC x NC, f32 or f64) holds the partial sums across KC blocks, so narrow outputs are
/// rounded once, at the end.
///
/// Threads: the batch items are spread over the pool when there are at least as many as threads;
/// otherwise each matrix's rows (in MR units; MC blocks for dgelu_bgrad) and columns (in NR panels)
/// are split into a tm x tn grid (static chunks), choosing the grid that duplicates the least packing. Each thread packs its
/// own panels. Every output element's arithmetic is fixed by the ISA and the block sizes alone, so
/// results are bitwise identical for any thread count, and so are bias gradients (partial sums per
/// global MC block of rows, added in block order).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <type_traits>
#include <vector>

#include "mixtape/blas/detail/gemm_host_kernels.hpp"
#include "mixtape/blas/gemm_types.hpp"
#include "mixtape/core/cpu_features.hpp"
#include "mixtape/core/error.hpp"
#include "mixtape/core/thread_pool.hpp"
#include "mixtape/kernels/detail/scalar.hpp"

namespace mixtape::blas::detail::host {

/// Upper bound on one thread's packed B block (k x NC): NC shrinks for long k.
inline constexpr i64 kBPackBytes = i64{6} << 20;
/// Below this many multiply-adds a GEMM stays on the calling thread.
inline constexpr i64 kSerialWork = i64{1} << 17;

// ---- CPU features -------------------------------------------------------------------------------

using mixtape::detail::cpu_has_avx2;
using mixtape::detail::cpu_has_avx512;
using mixtape::detail::cpu_has_avx512_bf16;

/// Whether `best` should use the `vdpbf16ps` kernel where the CPU has it. Measured (bench_gemm_host,
/// one thread, bf16 2048 x 768 x 768): AMD Zen 5 (EPYC) runs it at 2.0x the AVX-512 f32 kernel (410
/// vs 208 GFLOP/s), an Intel Xeon with AVX512_BF16 (the H100 host, a VM) at 0.5x (43 vs 92). So AMD
/// gets it by default, other vendors the f32 kernel; `host_isa = avx512_bf16` forces it anywhere.
/// Decided by vendor, not timed at run time, so that one machine always runs one kernel (its bits).
inline bool cpu_prefers_dpbf16() noexcept { return mixtape::detail::cpu_is_amd(); }

/// `requested` resolved for this CPU (best -> the fastest supported); throws BackendError when the
/// CPU lacks what was asked for.
inline HostIsa resolve_isa(HostIsa requested) {
  switch (requested) {
    case HostIsa::best:
      return cpu_has_avx512_bf16() && cpu_prefers_dpbf16() ? HostIsa::avx512_bf16
             : cpu_has_avx512()    ? HostIsa::avx512
             : cpu_has_avx2()      ? HostIsa::avx2
                                   : HostIsa::portable;
    case HostIsa::portable:
      return HostIsa::portable;
    case HostIsa::avx2:
      MIXTAPE_EXPECT(cpu_has_avx2(), BackendError, "gemm: host_isa avx2 requested, but this CPU (or build) lacks AVX2, ",
                     "FMA or F16C; available: portable");
      return HostIsa::avx2;
    case HostIsa::avx512:
      MIXTAPE_EXPECT(cpu_has_avx512(), BackendError, "gemm: host_isa avx512 requested, but this CPU (or build) lacks ",
                     "AVX-512 F/BW/VL/DQ; available: ", cpu_has_avx512_bf16() ? "avx512_bf16, " : "", "portable");
      return HostIsa::avx512;
    case HostIsa::avx512_bf16:
      MIXTAPE_EXPECT(cpu_has_avx512_bf16(), BackendError, "gemm: host_isa avx512_bf16 requested, but this CPU (or build) ",
                     "lacks AVX512_BF16; available: ", cpu_has_avx512() ? "avx512, " : "", "portable");
      return HostIsa::avx512_bf16;
  }
  MIXTAPE_THROW(ValueError, "gemm: invalid host_isa value ", static_cast<int>(requested));
}

// ---- per-thread scratch ---------------------------------------------------------------------------

/// A 64-byte aligned buffer that only grows.
class ScratchBuffer {
 public:
  ScratchBuffer() = default;
  ScratchBuffer(const ScratchBuffer&) = delete;
  ScratchBuffer& operator=(const ScratchBuffer&) = delete;
  ~ScratchBuffer() { release(); }

  template <class T>
  T* get(i64 count) {
    const std::size_t bytes = sizeof(T) * static_cast<std::size_t>(std::max<i64>(count, 1));
    if (bytes > bytes_) {
      release();
      const std::size_t grown = std::max(bytes, bytes_ + bytes_ / 2);
      data_ = ::operator new(grown, std::align_val_t(64));
      bytes_ = grown;
    }
    return static_cast<T*>(data_);
  }

 private:
  void release() noexcept {
    if (data_ != nullptr) ::operator delete(data_, std::align_val_t(64));
    data_ = nullptr;
    bytes_ = 0;
  }
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
};

/// The packing and accumulator buffers of the calling thread (kept between calls: no allocation
/// in a steady state).
struct Scratch {
  ScratchBuffer a, b, acc;
};
inline Scratch& thread_scratch() {
  thread_local Scratch scratch;
  return scratch;
}

constexpr i64 round_up(i64 x, i64 m) { return (x + m - 1) / m * m; }

// ---- one matrix -----------------------------------------------------------------------------------

/// One batch item: op(A)(i, k) = a[i * a_rs + k * a_cs], op(B)(k, j) = b[k * b_rs + j * b_cs].
template <class TA>
struct Operands {
  const TA* a;
  i64 a_rs, a_cs;
  const TA* b;
  i64 b_rs, b_cs;
};

/// Columns of the packed B block for reduction length k.
template <class KT>
i64 block_nc(i64 k) {
  const i64 kp = std::max<i64>(round_up(k, KT::kP), 1);
  const i64 nc = kBPackBytes / (kp * static_cast<i64>(sizeof(typename KT::pack_t)));
  return std::max<i64>(KT::kNR, nc / KT::kNR * KT::kNR);
}

/// Rows [i_begin, i_end) and columns [j_begin, j_end) of one matrix. `partial` (dgelu_bgrad) is the
/// (m / MC blocks) x n array of per-block column sums; i_begin is then a multiple of KT::kMC.
template <class KT, class TA, class TC>
void gemm_rect(const Operands<TA>& g, const Finish<typename KT::acc_t>& fin, i64 k, i64 i_begin, i64 i_end, i64 j_begin,
               i64 j_end, typename KT::acc_t* partial, i64 n_total) {
  using pack_t = typename KT::pack_t;
  using acc_t = typename KT::acc_t;
  constexpr int MR = KT::kMR, NR = KT::kNR, P = KT::kP;
  constexpr i64 KC = KT::kKC, MC = KT::kMC;
  static_assert(MC % MR == 0 && KC % P == 0);
  Scratch& s = thread_scratch();
  const i64 nc_max = std::min(block_nc<KT>(k), round_up(j_end - j_begin, NR));
  const i64 kp_total = round_up(k, P);  // only the last KC block can be padded
  pack_t* const bp = s.b.get<pack_t>(kp_total * nc_max);
  pack_t* const ap = s.a.get<pack_t>(MC * KC);
  acc_t* const acc = s.acc.get<acc_t>(MC * nc_max);

  for (i64 jc = j_begin; jc < j_end; jc += nc_max) {
    const i64 nc = std::min(nc_max, j_end - jc), ncp = round_up(nc, NR);
    i64 off = 0;
    for (i64 pc = 0; pc < k; pc += KC) {
      const i64 kc = std::min(KC, k - pc), kcp = round_up(kc, P);
      for (i64 jr = 0; jr < nc; jr += NR) {
        KT::pack(bp + off + (jr / NR) * kcp * NR, g.b + pc * g.b_rs + (jc + jr) * g.b_cs, g.b_cs, g.b_rs, NR,
                 static_cast<int>(std::min<i64>(NR, nc - jr)), kc, kcp);
      }
      off += kcp * ncp;
    }
    for (i64 ic = i_begin; ic < i_end; ic += MC) {
      const i64 mc = std::min(MC, i_end - ic);
      off = 0;
      for (i64 pc = 0; pc < k; pc += KC) {
        const i64 kc = std::min(KC, k - pc), kcp = round_up(kc, P);
        for (i64 ir = 0; ir < mc; ir += MR) {
          KT::pack(ap + (ir / MR) * kcp * MR, g.a + (ic + ir) * g.a_rs + pc * g.a_cs, g.a_rs, g.a_cs, MR,
                   static_cast<int>(std::min<i64>(MR, mc - ir)), kc, kcp);
        }
        KT::macro(ap, bp + off, kcp / P, mc, ncp, acc, ncp, pc > 0);
        off += kcp * ncp;
      }
      if (k == 0) std::memset(static_cast<void*>(acc), 0, sizeof(acc_t) * static_cast<std::size_t>(round_up(mc, MR) * ncp));
      KT::template finish<TC>(fin, acc, ncp, ic, mc, jc, nc, partial != nullptr ? partial + (ic / MC) * n_total : nullptr);
    }
  }
}

/// Rows (MC blocks) x columns (NR panels) grid for `threads` threads: as many threads as the blocks
/// allow, then the least duplicated packing (tm copies of B, tn copies of A).
inline std::pair<int, int> choose_grid(i64 m_blocks, i64 n_panels, i64 m, i64 n, int threads) {
  std::pair<int, int> best{1, 1};
  double best_cost = 0;
  for (int tm = 1; tm <= threads; ++tm) {
    for (int tn = 1; tm * tn <= threads; ++tn) {
      if (tm > m_blocks || tn > n_panels) continue;
      const double cost = static_cast<double>(tm) * static_cast<double>(n) + static_cast<double>(tn) * static_cast<double>(m);
      const int used = tm * tn, best_used = best.first * best.second;
      if (used > best_used || (used == best_used && cost < best_cost)) {
        best = {tm, tn};
        best_cost = cost;
      }
    }
  }
  return best;
}

/// Sums over k: out[o] = sum_{q < len} p[o * o_stride + q * q_stride], each in order of q, for o in
/// [0, count), over the pool (bgrad_a / bgrad_b).
template <class Acc, class T>
void reduce_over_k(ThreadPool& pool, const T* p, i64 count, i64 o_stride, i64 len, i64 q_stride, Acc* out) {
  using kernels::detail::to_acc;
  pool.parallel_for(count, std::max<i64>(1, (i64{1} << 15) / std::max<i64>(len, 1)), [&](i64 begin, i64 end, int) {
    if (q_stride == 1 || o_stride != 1) {
      for (i64 o = begin; o < end; ++o) {
        Acc s = 0;
        for (i64 q = 0; q < len; ++q) s += to_acc<Acc>(p[o * o_stride + q * q_stride]);
        out[o] = s;
      }
    } else {  // outputs contiguous: add whole rows, still in order of q for every output
      for (i64 o = begin; o < end; ++o) out[o] = 0;
      for (i64 q = 0; q < len; ++q) {
        const T* row = p + q * q_stride;
        for (i64 o = begin; o < end; ++o) out[o] += to_acc<Acc>(row[o]);
      }
    }
  });
}

/// Writes `values` (count elements of Acc) to `dst` of `dtype`, rounding to nearest-even.
template <class Acc>
void store_vector(void* dst, DType dtype, const Acc* values, i64 count) {
  visit_dtype(dtype, [&]<class T>() {
    if constexpr (kernels::FloatElement<T>) {
      T* d = static_cast<T*>(dst);
      for (i64 i = 0; i < count; ++i) d[i] = kernels::detail::cast<T>(values[i]);
    } else {
      MIXTAPE_THROW(DTypeError, "gemm: bias_grad of dtype ", dtype_name(dtype), " is not supported");
    }
  });
}

/// max |C| over every batch item (NaN if any is NaN), as f32.
template <class TC>
float amax_host(ThreadPool& pool, const GemmDesc& d) {
  using kernels::detail::to_acc;
  const i64 rows = d.batch * d.m;
  const int chunks = pool.chunk_count(rows, std::max<i64>(1, (i64{1} << 15) / std::max<i64>(d.n, 1)));
  std::vector<double> part(static_cast<std::size_t>(chunks), 0.0);
  const TC* c = static_cast<const TC*>(d.c.data);
  pool.parallel_for(rows, std::max<i64>(1, (i64{1} << 15) / std::max<i64>(d.n, 1)), [&](i64 begin, i64 end, int chunk) {
    double mx = 0;
    for (i64 r = begin; r < end; ++r) {
      const TC* row = c + (r / d.m) * d.c.batch_stride + (r % d.m) * d.c.ld;
      for (i64 j = 0; j < d.n; ++j) {
        const double v = to_acc<double>(row[j]);
        const double a = v < 0 ? -v : v;
        if (!(a <= mx)) mx = a;  // a NaN replaces the max and then stays
      }
    }
    part[static_cast<std::size_t>(chunk)] = mx;
  });
  double mx = 0;
  for (double v : part)
    if (!(v <= mx)) mx = v;
  return static_cast<float>(mx);
}

/// The whole host GEMM with kernel traits KT, operand type TA and output type TC. `d` is valid.
template <class KT, class TA, class TC>
void gemm_typed(ThreadPool& pool, const GemmDesc& d) {
  using acc_t = typename KT::acc_t;
  constexpr i64 MC = KT::kMC, NR = KT::kNR;
  const i64 m = d.m, n = d.n, k = d.k;
  const Epilogue kind = d.epilogue.kind;

  std::vector<acc_t> bias;
  if (epilogue_reads_bias(kind)) {
    bias.resize(static_cast<std::size_t>(n));
    visit_dtype(d.epilogue.bias_dtype, [&]<class B>() {
      if constexpr (kernels::FloatElement<B>) {
        const B* p = static_cast<const B*>(d.epilogue.bias);
        for (i64 j = 0; j < n; ++j) bias[static_cast<std::size_t>(j)] = kernels::detail::to_acc<acc_t>(p[j]);
      }
    });
  }
  const i64 m_blocks = (m + MC - 1) / MC;
  std::vector<acc_t> partial;
  if (kind == Epilogue::dgelu_bgrad) partial.assign(static_cast<std::size_t>(m_blocks * n), acc_t(0));

  Finish<acc_t> fin;
  fin.kind = kind;
  fin.alpha = static_cast<acc_t>(d.alpha);
  fin.beta = static_cast<acc_t>(d.c.beta);
  fin.bias = bias.empty() ? nullptr : bias.data();
  fin.ldc = d.c.ld;
  fin.ldaux = d.epilogue.aux_ld;

  auto item = [&](i64 bi, i64 i0, i64 i1, i64 j0, i64 j1) {
    Operands<TA> g;
    g.a = static_cast<const TA*>(d.a.data) + bi * d.a.batch_stride;
    g.a_rs = d.a.transpose ? 1 : d.a.ld;
    g.a_cs = d.a.transpose ? d.a.ld : 1;
    g.b = static_cast<const TA*>(d.b.data) + bi * d.b.batch_stride;
    g.b_rs = d.b.transpose ? 1 : d.b.ld;
    g.b_cs = d.b.transpose ? d.b.ld : 1;
    Finish<acc_t> f = fin;
    f.c = static_cast<TC*>(d.c.data) + bi * d.c.batch_stride;
    f.aux = d.epilogue.aux != nullptr ? static_cast<TC*>(d.epilogue.aux) + bi * d.epilogue.aux_batch_stride : nullptr;
    gemm_rect<KT, TA, TC>(g, f, k, i0, i1, j0, j1, partial.empty() ? nullptr : partial.data(), n);
  };

  const int threads = (2 * m * n * std::max<i64>(k, 1) * d.batch < kSerialWork) ? 1 : pool.size();
  if (d.batch > 1 && d.batch >= threads) {
    pool.parallel_for(d.batch, 1, [&](i64 b0, i64 b1, int) {
      for (i64 bi = b0; bi < b1; ++bi) item(bi, 0, m, 0, n);
    });
  } else {
    // Rows are split in MR units (balance), or in MC blocks when the bias-gradient partials (one per
    // global MC block) must not straddle two threads.
    const i64 unit = partial.empty() ? KT::kMR : MC;
    const i64 m_units = (m + unit - 1) / unit, n_panels = (n + NR - 1) / NR;
    const auto [tm, tn] = choose_grid(m_units, n_panels, m, n, threads);
    for (i64 bi = 0; bi < d.batch; ++bi) {
      pool.parallel_for(tm * tn, 1, [&, tm = tm, tn = tn](i64 t0, i64 t1, int) {
        for (i64 t = t0; t < t1; ++t) {
          const auto [mu0, mu1] = ThreadPool::chunk_range(m_units, tm, static_cast<int>(t / tn));
          const auto [np0, np1] = ThreadPool::chunk_range(n_panels, tn, static_cast<int>(t % tn));
          item(bi, mu0 * unit, std::min(m, mu1 * unit), np0 * NR, std::min(n, np1 * NR));
        }
      });
    }
  }

  // Bias gradients.
  if (kind == Epilogue::dgelu_bgrad) {
    std::vector<acc_t> sum(static_cast<std::size_t>(n), acc_t(0));
    for (i64 blk = 0; blk < m_blocks; ++blk)
      for (i64 j = 0; j < n; ++j) sum[static_cast<std::size_t>(j)] += partial[static_cast<std::size_t>(blk * n + j)];
    store_vector(d.epilogue.bias_grad, d.epilogue.bias_grad_dtype, sum.data(), n);
  } else if (kind == Epilogue::bgrad_a) {
    std::vector<acc_t> sum(static_cast<std::size_t>(m));
    const i64 rs = d.a.transpose ? 1 : d.a.ld, cs = d.a.transpose ? d.a.ld : 1;
    reduce_over_k(pool, static_cast<const TA*>(d.a.data), m, rs, k, cs, sum.data());
    store_vector(d.epilogue.bias_grad, d.epilogue.bias_grad_dtype, sum.data(), m);
  } else if (kind == Epilogue::bgrad_b) {
    std::vector<acc_t> sum(static_cast<std::size_t>(n));
    const i64 rs = d.b.transpose ? 1 : d.b.ld, cs = d.b.transpose ? d.b.ld : 1;
    reduce_over_k(pool, static_cast<const TA*>(d.b.data), n, cs, k, rs, sum.data());
    store_vector(d.epilogue.bias_grad, d.epilogue.bias_grad_dtype, sum.data(), n);
  }
  if (d.c.amax != nullptr) *d.c.amax = amax_host<TC>(pool, d);
}

/// The name of the kernel family that runs for operands of `a` under `isa` (benchmarks, logs).
inline const char* kernel_name(DType a, HostIsa isa) {
  const HostIsa r = resolve_isa(isa);
  if (r == HostIsa::avx512_bf16 && a != DType::bf16) return "avx512";
  return host_isa_name(r).data();
}

/// Host entry: picks the kernels for (A's dtype, ISA) and the output type. `d` is valid and
/// non-empty (m, n > 0).
inline void gemm(ThreadPool& pool, const GemmDesc& d) {
  const HostIsa isa = resolve_isa(d.host_isa);
  visit_dtype(d.a.dtype, [&]<class TA>() {
    visit_dtype(d.c.dtype, [&]<class TC>() {
      if constexpr (std::is_same_v<TA, double> && (std::is_same_v<TC, double> || std::is_same_v<TC, float> ||
                                                   std::is_same_v<TC, f16> || std::is_same_v<TC, bf16>)) {
#if MIXTAPE_BLAS_HAS_AVX512
        if (isa == HostIsa::avx2) return gemm_typed<Avx2F64, TA, TC>(pool, d);
        if (isa != HostIsa::portable) return gemm_typed<Avx512F64, TA, TC>(pool, d);
#endif
        return gemm_typed<PortableF64, TA, TC>(pool, d);
      } else if constexpr ((std::is_same_v<TA, float> || std::is_same_v<TA, f16> || std::is_same_v<TA, bf16>) &&
                           (std::is_same_v<TC, float> || std::is_same_v<TC, f16> || std::is_same_v<TC, bf16>)) {
#if MIXTAPE_BLAS_HAS_AVX512
        if constexpr (std::is_same_v<TA, bf16>) {
          if (isa == HostIsa::avx512_bf16) return gemm_typed<Avx512Bf16, TA, TC>(pool, d);
        }
        if (isa == HostIsa::avx2) return gemm_typed<Avx2F32, TA, TC>(pool, d);
        if (isa != HostIsa::portable) return gemm_typed<Avx512F32, TA, TC>(pool, d);
#endif
        (void)isa;
        return gemm_typed<PortableF32, TA, TC>(pool, d);
      } else {
        MIXTAPE_THROW(DTypeError, "gemm: no host kernel for A ", dtype_name(d.a.dtype), " and C ", dtype_name(d.c.dtype));
      }
    });
  });
}

}  // namespace mixtape::blas::detail::host
