/// @file gemm_host_kernels.hpp
/// @brief The host GEMM's instruction-set-specific pieces: panel packing (with the widening of
///        f16 / bf16 operands), register-blocked micro-kernels, the macro-kernel over a packed block,
///        and the epilogue ("finish") that turns accumulators into C. A portable version of each,
///        and AVX2 / AVX-512 versions compiled with `__attribute__((target(...)))` so that a
///        header-only library needs no -march from its user; gemm_host.hpp picks one at run time.
///        The micro-kernels name every accumulator register (macro-unrolled, no arrays): compilers
///        keep them in registers without unroll pragmas, which nvcc's front end drops.
///
/// Packed panel layout (BLIS): a panel holds R rows (R = MR for A, NR for B) of kc values of the
/// reduction index k; element (k, r) sits at (k / P) * (R * P) + r * P + k % P. P = 1 for f32 / f64
/// kernels; P = 2 for the bf16 dot-product kernel, whose `vdpbf16ps` consumes (k, k + 1) pairs.
/// Rows past the matrix edge and k past kc are zero, so micro-kernels always compute full tiles
/// into a padded accumulator block and only the epilogue looks at the edges.
///
/// Kernels (MR x NR tile of accumulators in registers, 24 of the 32 zmm registers):
///  - Avx512F32: 12 x 32 f32, `vfmadd231ps` with the A element broadcast;
///  - Avx512F64: 12 x 16 f64, `vfmadd231pd`;
///  - Avx512Bf16: 12 x 32 f32 accumulators, `vdpbf16ps` on bf16 pairs. Per Intel's definition each
///    lane does acc += a[k+1] b[k+1]; acc += a[k] b[k] as two f32 FMAs with round-to-nearest-even,
///    denormal inputs read as zero and denormal results flushed to zero, MXCSR ignored. The products
///    of two bf16 are exact in f32, so this is f32 accumulation in a different order (pairs, odd
///    index first) plus flushing below 2^-126: not bitwise equal to the f32 kernels, within the
///    same error bound up to an absolute 2^-126 per step;
///  - Avx2{F32,F64}: 6 x 16 f32 / 6 x 8 f64 with AVX2 + FMA (12 of the 16 ymm registers), plain
///    packing and epilogue;
///  - Portable{F32,F64}: 6 x 8 f32 / 6 x 4 f64 in 16-byte GCC / Clang vector-extension registers
///    (SSE2 on baseline x86-64, NEON on Arm; plain loops for other compilers), no FMA contraction
///    unless the build's flags allow it.
///
/// Every accumulator sums its k terms in a fixed order given by the packed layout and the block
/// size KC only, never by the tile's position, the thread split or the thread count: one ISA gives
/// the same bits for any `host_threads`.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "mixtape/blas/detail/gelu.hpp"
#include "mixtape/blas/gemm_types.hpp"
#include "mixtape/config.hpp"
#include "mixtape/kernels/detail/scalar.hpp"
#include "mixtape/numeric/numeric.hpp"

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 10))
#define MIXTAPE_BLAS_HAS_AVX512 1
#include <immintrin.h>
#define MIXTAPE_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))
#define MIXTAPE_TARGET_AVX512_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))
#define MIXTAPE_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#else
#define MIXTAPE_BLAS_HAS_AVX512 0
#endif

namespace mixtape::blas::detail::host {

using i64 = std::int64_t;

/// The epilogue of one matrix in the accumulate type `Acc` (gemm_host.hpp fills it).
template <class Acc>
struct Finish {
  Epilogue kind = Epilogue::none;
  Acc alpha = 1, beta = 0;
  const Acc* bias = nullptr;  ///< n values already converted to Acc, or null
  void* c = nullptr;          ///< C (TC)
  i64 ldc = 0;
  void* aux = nullptr;        ///< aux (TC), for *_aux and dgelu*
  i64 ldaux = 0;
};

/// Value of `Src` as the packed element type.
template <class PackT, class Src>
MIXTAPE_FORCEINLINE PackT to_pack(Src x) {
  if constexpr (std::is_same_v<PackT, std::uint16_t>) {
    static_assert(std::is_same_v<Src, bf16>, "bf16 pairs are packed from bf16 operands only");
    return x.bits();
  } else {
    return kernels::detail::to_acc<PackT>(x);
  }
}

/// Packs one panel with plain loops (see the file comment for the layout): element (k, r) of the
/// panel is src[r * rs + k * cs] for r < valid_r, k < kc, zero elsewhere up to R rows and kcp.
template <class PackT, int P, class Src>
void pack_panel_scalar(PackT* dst, const Src* src, i64 rs, i64 cs, int R, int valid_r, i64 kc, i64 kcp) {
  if (valid_r < R || kcp > kc) std::memset(static_cast<void*>(dst), 0, sizeof(PackT) * static_cast<std::size_t>(kcp * R));
  if (cs == 1) {
    for (int r = 0; r < valid_r; ++r) {
      const Src* s = src + r * rs;
      for (i64 k = 0; k < kc; ++k) dst[(k / P) * (R * P) + r * P + k % P] = to_pack<PackT>(s[k]);
    }
  } else {
    for (i64 k = 0; k < kc; ++k) {
      const Src* s = src + k * cs;
      PackT* d = dst + (k / P) * (R * P) + k % P;
      for (int r = 0; r < valid_r; ++r) d[r * P] = to_pack<PackT>(s[r * rs]);
    }
  }
}

/// The epilogue over rows [i0, i0 + mc) and columns [j0, j0 + nc) of C from the accumulator block
/// `acc` (row r, column j at acc[r * ldacc + j]); adds each final value to `partial[j0 + j]` when
/// `partial` is set (dgelu_bgrad). Plain loops; the reference semantics of every finish.
template <class TC, class Acc>
void finish_scalar(const Finish<Acc>& f, const Acc* acc, i64 ldacc, i64 i0, i64 mc, i64 j0, i64 nc, Acc* partial) {
  using kernels::detail::cast;
  using kernels::detail::to_acc;
  TC* const c = static_cast<TC*>(f.c);
  TC* const aux = static_cast<TC*>(f.aux);
  const bool gelu = epilogue_gelu(f.kind), dgelu = epilogue_dgelu(f.kind), write_aux = epilogue_writes_aux(f.kind);
  for (i64 r = 0; r < mc; ++r) {
    const Acc* a = acc + r * ldacc;
    TC* cr = c + (i0 + r) * f.ldc + j0;
    TC* xr = aux != nullptr ? aux + (i0 + r) * f.ldaux + j0 : nullptr;
    for (i64 j = 0; j < nc; ++j) {
      Acc v = f.alpha * a[j];
      if (f.beta != Acc(0)) v += f.beta * to_acc<Acc>(cr[j]);
      if (f.bias != nullptr) v += f.bias[j0 + j];
      if (write_aux) xr[j] = cast<TC>(v);
      if (gelu) {
        v = gelu_tanh(v);
      } else if (dgelu) {
        v *= gelu_tanh_grad(to_acc<Acc>(xr[j]));
      }
      cr[j] = cast<TC>(v);
      if (partial != nullptr) partial[j0 + j] += v;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Portable kernels
// ---------------------------------------------------------------------------------------------

#define MIXTAPE_X6(M) M(0) M(1) M(2) M(3) M(4) M(5)

/// Kernels for any CPU: 6 x (two 16-byte vectors) tiles written with GCC / Clang vector extensions
/// (SSE2 on baseline x86-64, NEON on Arm), plain loops elsewhere. `T` is float or double.
template <class T>
struct PortableKernel {
  using pack_t = T;
  using acc_t = T;
  static constexpr int kW = static_cast<int>(16 / sizeof(T));  // lanes of a 16-byte vector
  static constexpr int kMR = 6, kNR = 2 * kW, kP = 1;
  static constexpr i64 kKC = 256, kMC = 96;
  static constexpr const char* kName = "portable";

  template <class Src>
  static void pack(pack_t* dst, const Src* src, i64 rs, i64 cs, int R, int valid_r, i64 kc, i64 kcp) {
    pack_panel_scalar<pack_t, 1>(dst, src, rs, cs, R, valid_r, kc, kcp);
  }

  static void micro(i64 kcs, const T* a, const T* b, T* c, i64 ldc, bool load) {
#if defined(__GNUC__) || defined(__clang__)
    using V4 = float __attribute__((vector_size(16)));
    using V2 = double __attribute__((vector_size(16)));
    using V = std::conditional_t<std::is_same_v<T, float>, V4, V2>;
#define MIXTAPE_Z(i) V c##i##_0 = V{} , c##i##_1 = V{};
    MIXTAPE_X6(MIXTAPE_Z)
#undef MIXTAPE_Z
    for (i64 p = 0; p < kcs; ++p) {
      V b0, b1;
      std::memcpy(&b0, b, 16);
      std::memcpy(&b1, b + kW, 16);
#define MIXTAPE_F(i)          \
  {                           \
    const T ai = a[i];        \
    c##i##_0 += ai * b0;      \
    c##i##_1 += ai * b1;      \
  }
      MIXTAPE_X6(MIXTAPE_F)
#undef MIXTAPE_F
      a += kMR;
      b += kNR;
    }
#define MIXTAPE_S(i)                                 \
  {                                                  \
    T* ci = c + (i) * ldc;                           \
    if (load) {                                      \
      V t0, t1;                                      \
      std::memcpy(&t0, ci, 16);                      \
      std::memcpy(&t1, ci + kW, 16);                 \
      c##i##_0 = t0 + c##i##_0;                      \
      c##i##_1 = t1 + c##i##_1;                      \
    }                                                \
    std::memcpy(ci, &c##i##_0, 16);                  \
    std::memcpy(ci + kW, &c##i##_1, 16);             \
  }
    MIXTAPE_X6(MIXTAPE_S)
#undef MIXTAPE_S
#else
    T acc[kMR][kNR] = {};
    for (i64 p = 0; p < kcs; ++p) {
      for (int i = 0; i < kMR; ++i)
        for (int j = 0; j < kNR; ++j) acc[i][j] += a[i] * b[j];
      a += kMR;
      b += kNR;
    }
    for (int i = 0; i < kMR; ++i)
      for (int j = 0; j < kNR; ++j) c[i * ldc + j] = load ? c[i * ldc + j] + acc[i][j] : acc[i][j];
#endif
  }

  /// C block (mc x nc, padded) += packed A block (mc rows) x packed B block (nc columns).
  static void macro(const T* ap, const T* bp, i64 kcs, i64 mc, i64 nc, T* acc, i64 ldacc, bool load) {
    for (i64 jr = 0; jr < nc; jr += kNR)
      for (i64 ir = 0; ir < mc; ir += kMR)
        micro(kcs, ap + (ir / kMR) * kcs * kMR, bp + (jr / kNR) * kcs * kNR, acc + ir * ldacc + jr, ldacc, load);
  }

  template <class TC>
  static void finish(const Finish<acc_t>& f, const acc_t* acc, i64 ldacc, i64 i0, i64 mc, i64 j0, i64 nc, acc_t* partial) {
    finish_scalar<TC>(f, acc, ldacc, i0, mc, j0, nc, partial);
  }
};

using PortableF32 = PortableKernel<float>;
using PortableF64 = PortableKernel<double>;

#if MIXTAPE_BLAS_HAS_AVX512

// GCC 12's AVX-512 intrinsics start from `__m512 __Y = __Y;` (`_mm512_undefined_*`), which
// -Wmaybe-uninitialized reports at every inlined use (GCC bug 105593, fixed in GCC 13).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

// ---------------------------------------------------------------------------------------------
// AVX2 + FMA kernels (x86 CPUs without AVX-512): 6 x 16 f32, 6 x 8 f64; plain packing and epilogue
// ---------------------------------------------------------------------------------------------

MIXTAPE_TARGET_AVX2 inline void micro_f32_6x16_avx2(i64 kcs, const float* a, const float* b, float* c, i64 ldc, bool load) {
#define MIXTAPE_Z(i) __m256 c##i##_0 = _mm256_setzero_ps(), c##i##_1 = _mm256_setzero_ps();
  MIXTAPE_X6(MIXTAPE_Z)
#undef MIXTAPE_Z
  for (i64 p = 0; p < kcs; ++p) {
    const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
#define MIXTAPE_F(i)                                    \
  {                                                     \
    const __m256 ai = _mm256_set1_ps(a[i]);             \
    c##i##_0 = _mm256_fmadd_ps(ai, b0, c##i##_0);       \
    c##i##_1 = _mm256_fmadd_ps(ai, b1, c##i##_1);       \
  }
    MIXTAPE_X6(MIXTAPE_F)
#undef MIXTAPE_F
    a += 6;
    b += 16;
  }
#define MIXTAPE_S(i)                                                                        \
  if (load) {                                                                               \
    c##i##_0 = _mm256_add_ps(_mm256_loadu_ps(c + (i) * ldc), c##i##_0);                     \
    c##i##_1 = _mm256_add_ps(_mm256_loadu_ps(c + (i) * ldc + 8), c##i##_1);                 \
  }                                                                                         \
  _mm256_storeu_ps(c + (i) * ldc, c##i##_0);                                                \
  _mm256_storeu_ps(c + (i) * ldc + 8, c##i##_1);
  MIXTAPE_X6(MIXTAPE_S)
#undef MIXTAPE_S
}

MIXTAPE_TARGET_AVX2 inline void micro_f64_6x8_avx2(i64 kcs, const double* a, const double* b, double* c, i64 ldc, bool load) {
#define MIXTAPE_Z(i) __m256d c##i##_0 = _mm256_setzero_pd(), c##i##_1 = _mm256_setzero_pd();
  MIXTAPE_X6(MIXTAPE_Z)
#undef MIXTAPE_Z
  for (i64 p = 0; p < kcs; ++p) {
    const __m256d b0 = _mm256_loadu_pd(b), b1 = _mm256_loadu_pd(b + 4);
#define MIXTAPE_F(i)                                    \
  {                                                     \
    const __m256d ai = _mm256_set1_pd(a[i]);            \
    c##i##_0 = _mm256_fmadd_pd(ai, b0, c##i##_0);       \
    c##i##_1 = _mm256_fmadd_pd(ai, b1, c##i##_1);       \
  }
    MIXTAPE_X6(MIXTAPE_F)
#undef MIXTAPE_F
    a += 6;
    b += 8;
  }
#define MIXTAPE_S(i)                                                                        \
  if (load) {                                                                               \
    c##i##_0 = _mm256_add_pd(_mm256_loadu_pd(c + (i) * ldc), c##i##_0);                     \
    c##i##_1 = _mm256_add_pd(_mm256_loadu_pd(c + (i) * ldc + 4), c##i##_1);                 \
  }                                                                                         \
  _mm256_storeu_pd(c + (i) * ldc, c##i##_0);                                                \
  _mm256_storeu_pd(c + (i) * ldc + 4, c##i##_1);
  MIXTAPE_X6(MIXTAPE_S)
#undef MIXTAPE_S
}

/// AVX2 + FMA kernels; `T` is float or double.
template <class T>
struct Avx2Kernel {
  using pack_t = T;
  using acc_t = T;
  static constexpr int kMR = 6, kNR = std::is_same_v<T, float> ? 16 : 8, kP = 1;
  static constexpr i64 kKC = std::is_same_v<T, float> ? 256 : 192, kMC = 96;
  static constexpr const char* kName = "avx2";

  template <class Src>
  static void pack(pack_t* dst, const Src* src, i64 rs, i64 cs, int R, int valid_r, i64 kc, i64 kcp) {
    pack_panel_scalar<pack_t, 1>(dst, src, rs, cs, R, valid_r, kc, kcp);
  }
  MIXTAPE_TARGET_AVX2 static void macro(const T* ap, const T* bp, i64 kcs, i64 mc, i64 nc, T* acc, i64 ldacc, bool load) {
    for (i64 jr = 0; jr < nc; jr += kNR) {
      for (i64 ir = 0; ir < mc; ir += kMR) {
        const T* a = ap + (ir / kMR) * kcs * kMR;
        const T* b = bp + (jr / kNR) * kcs * kNR;
        if constexpr (std::is_same_v<T, float>) {
          micro_f32_6x16_avx2(kcs, a, b, acc + ir * ldacc + jr, ldacc, load);
        } else {
          micro_f64_6x8_avx2(kcs, a, b, acc + ir * ldacc + jr, ldacc, load);
        }
      }
    }
  }
  template <class TC>
  static void finish(const Finish<acc_t>& f, const acc_t* acc, i64 ldacc, i64 i0, i64 mc, i64 j0, i64 nc, acc_t* partial) {
    finish_scalar<TC>(f, acc, ldacc, i0, mc, j0, nc, partial);
  }
};
using Avx2F32 = Avx2Kernel<float>;
using Avx2F64 = Avx2Kernel<double>;

// ---------------------------------------------------------------------------------------------
// AVX-512 helpers
// ---------------------------------------------------------------------------------------------

#define MIXTAPE_X12(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11)

MIXTAPE_TARGET_AVX512 inline __mmask16 tail_mask16(i64 n) {
  return n >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << n) - 1u);
}

/// 16 (or the masked first n) values of Src widened to f32: f16 with `vcvtph2ps` (exact), bf16 by a
/// 16-bit shift (exact), f32 as is.
template <class Src>
MIXTAPE_TARGET_AVX512 inline __m512 load_f32x16(const Src* p, __mmask16 m) {
  if constexpr (std::is_same_v<Src, float>) {
    return _mm512_maskz_loadu_ps(m, p);
  } else if constexpr (std::is_same_v<Src, f16>) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
  } else {
    static_assert(std::is_same_v<Src, bf16>);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
  }
}

/// Stores 16 (masked) f32 values as TC, rounding to nearest-even: f16 with `vcvtps2ph` (IEEE,
/// overflow to inf, subnormals kept), bf16 by integer rounding (subnormals kept; NaNs stay NaN).
template <class TC>
MIXTAPE_TARGET_AVX512 inline void store_f32x16(TC* p, __m512 v, __mmask16 m) {
  if constexpr (std::is_same_v<TC, float>) {
    _mm512_mask_storeu_ps(p, m, v);
  } else if constexpr (std::is_same_v<TC, f16>) {
    _mm256_mask_storeu_epi16(p, m, _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  } else {
    static_assert(std::is_same_v<TC, bf16>);
    const __m512i bits = _mm512_castps_si512(v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(bits, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF))), 16);
    const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(0x40)));
    _mm256_mask_storeu_epi16(p, m, _mm512_cvtepi32_epi16(r));
  }
}

/// exp(x) for f32 lanes: range reduction by ln 2 (Cody-Waite, two constants), a degree-7 Taylor
/// polynomial on |r| <= ln(2)/2 (truncation below 2^-27 relative), and `vscalefps` for 2^n, which
/// overflows to inf and underflows to 0 cleanly. About 2 ulp.
MIXTAPE_TARGET_AVX512 inline __m512 exp_f32x16(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-104.0f)), _mm512_set1_ps(89.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.0f / 5040);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

/// tanh(u) = 1 - 2 / (exp(2u) + 1): absolute error a few f32 ulps of 1 (what GELU's 1 + t needs);
/// +-1 for large |u|, NaN for NaN.
MIXTAPE_TARGET_AVX512 inline __m512 tanh_f32x16(__m512 u) {
  const __m512 e = exp_f32x16(_mm512_add_ps(u, u));
  const __m512 t = _mm512_sub_ps(_mm512_set1_ps(1.0f), _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(e, _mm512_set1_ps(1.0f))));
  return _mm512_mask_mov_ps(t, _mm512_cmp_ps_mask(u, u, _CMP_UNORD_Q), u);
}

/// gelu(x) and gelu'(x) for f32 lanes (gelu.hpp's formulas).
MIXTAPE_TARGET_AVX512 inline __m512 gelu_f32x16(__m512 x) {
  const __m512 x3 = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
  const __m512 u = _mm512_mul_ps(_mm512_set1_ps(static_cast<float>(kGeluS)), _mm512_fmadd_ps(_mm512_set1_ps(static_cast<float>(kGeluC)), x3, x));
  const __m512 t = tanh_f32x16(u);
  return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), x), _mm512_add_ps(_mm512_set1_ps(1.0f), t));
}
MIXTAPE_TARGET_AVX512 inline __m512 gelu_grad_f32x16(__m512 x) {
  const __m512 s = _mm512_set1_ps(static_cast<float>(kGeluS)), c = _mm512_set1_ps(static_cast<float>(kGeluC));
  const __m512 one = _mm512_set1_ps(1.0f), half = _mm512_set1_ps(0.5f);
  const __m512 x2 = _mm512_mul_ps(x, x);
  const __m512 t = tanh_f32x16(_mm512_mul_ps(s, _mm512_fmadd_ps(_mm512_mul_ps(c, x2), x, x)));
  const __m512 left = _mm512_mul_ps(half, _mm512_add_ps(one, t));
  const __m512 dt = _mm512_mul_ps(_mm512_fnmadd_ps(t, t, one), _mm512_mul_ps(s, _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(3.0f), c), x2, one)));
  return _mm512_fmadd_ps(_mm512_mul_ps(half, x), dt, left);
}

/// Transposes 16 x 16 32-bit elements in place: r[q] lane l <- r[l] lane q.
MIXTAPE_TARGET_AVX512 inline void transpose16x16(__m512* r) {
  __m512 t[16], u[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);      // per 128-bit lane: a0 b0 a1 b1
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);  // a2 b2 a3 b3
  }
  for (int i = 0; i < 4; ++i) {  // u[4i + j], lane L: column 4L + j of rows 4i .. 4i + 3
    u[4 * i + 0] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    u[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    u[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    u[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  for (int j = 0; j < 4; ++j) {
    const __m512 v0 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88), w0 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xDD);
    const __m512 v1 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88), w1 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xDD);
    r[j] = _mm512_shuffle_f32x4(v0, v1, 0x88);
    r[j + 8] = _mm512_shuffle_f32x4(v0, v1, 0xDD);
    r[j + 4] = _mm512_shuffle_f32x4(w0, w1, 0x88);
    r[j + 12] = _mm512_shuffle_f32x4(w0, w1, 0xDD);
  }
}

/// Packs an f32 panel (P = 1) from f32 / f16 / bf16 with vector conversion.
template <class Src>
MIXTAPE_TARGET_AVX512 void pack_f32_avx512(float* dst, const Src* src, i64 rs, i64 cs, int R, int valid_r, i64 kc, i64 kcp) {
  if (rs == 1) {  // a panel row of R values is contiguous in the source: convert runs
    for (i64 k = 0; k < kc; ++k) {
      const Src* s = src + k * cs;
      float* d = dst + k * R;
      for (int r = 0; r < R; r += 16) {
        const int n = std::max(0, std::min(16, valid_r - r));
        // Loads stop at the valid rows (masked-off lanes load 0); stores stop at the panel's R rows,
        // which need not be a multiple of 16 (R = 12): a full store would run past the scratch.
        _mm512_mask_storeu_ps(d + r, tail_mask16(std::min(16, R - r)), load_f32x16(s + r, tail_mask16(n)));
      }
    }
    for (i64 k = kc; k < kcp; ++k) std::memset(dst + k * R, 0, sizeof(float) * R);
    return;
  }
  if (cs == 1) {  // k is contiguous: convert 16 x 16 blocks (rows x k) and transpose them
    __m512 r[16];
    for (i64 k0 = 0; k0 < kc; k0 += 16) {
      const int kn = static_cast<int>(std::min<i64>(16, kc - k0));
      const __mmask16 km = tail_mask16(kn);
      for (int g = 0; g < R; g += 16) {
        for (int q = 0; q < 16; ++q) {
          if (g + q < valid_r) {
            // The 16 rows are 16 interleaved streams that hardware prefetchers follow poorly.
            _mm_prefetch(reinterpret_cast<const char*>(src + (g + q) * rs + k0) + 256, _MM_HINT_T0);
            r[q] = load_f32x16(src + (g + q) * rs + k0, km);
          } else {
            r[q] = _mm512_setzero_ps();
          }
        }
        transpose16x16(r);
        const __mmask16 rm = tail_mask16(std::min(16, R - g));
        for (int q = 0; q < kn; ++q) _mm512_mask_storeu_ps(dst + (k0 + q) * R + g, rm, r[q]);
      }
    }
    for (i64 k = kc; k < kcp; ++k) std::memset(dst + k * R, 0, sizeof(float) * R);
    return;
  }
  pack_panel_scalar<float, 1>(dst, src, rs, cs, R, valid_r, kc, kcp);
}

// ---------------------------------------------------------------------------------------------
// AVX-512 f32 kernel (f32, f16 and bf16 operands)
// ---------------------------------------------------------------------------------------------

/// 12 x 32 f32 tile: c[i][0..31] += sum_p a[p][i] b[p][0..31].
MIXTAPE_TARGET_AVX512 inline void micro_f32_12x32(i64 kcs, const float* a, const float* b, float* c, i64 ldc, bool load) {
#define MIXTAPE_Z(i) __m512 c##i##_0 = _mm512_setzero_ps(), c##i##_1 = _mm512_setzero_ps();
  MIXTAPE_X12(MIXTAPE_Z)
#undef MIXTAPE_Z
  for (i64 p = 0; p < kcs; ++p) {
    const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
#define MIXTAPE_F(i)                                    \
  {                                                     \
    const __m512 ai = _mm512_set1_ps(a[i]);             \
    c##i##_0 = _mm512_fmadd_ps(ai, b0, c##i##_0);       \
    c##i##_1 = _mm512_fmadd_ps(ai, b1, c##i##_1);       \
  }
    MIXTAPE_X12(MIXTAPE_F)
#undef MIXTAPE_F
    a += 12;
    b += 32;
  }
  if (load) {
#define MIXTAPE_L(i)                                                        \
  c##i##_0 = _mm512_add_ps(_mm512_loadu_ps(c + (i) * ldc), c##i##_0);       \
  c##i##_1 = _mm512_add_ps(_mm512_loadu_ps(c + (i) * ldc + 16), c##i##_1);
    MIXTAPE_X12(MIXTAPE_L)
#undef MIXTAPE_L
  }
#define MIXTAPE_S(i)                              \
  _mm512_storeu_ps(c + (i) * ldc, c##i##_0);      \
  _mm512_storeu_ps(c + (i) * ldc + 16, c##i##_1);
  MIXTAPE_X12(MIXTAPE_S)
#undef MIXTAPE_S
}

/// The vectorised epilogue for f32 accumulators (finish_scalar's semantics).
template <class TC>
MIXTAPE_TARGET_AVX512 void finish_f32_avx512(const Finish<float>& f, const float* acc, i64 ldacc, i64 i0, i64 mc, i64 j0,
                                             i64 nc, float* partial) {
  TC* const c = static_cast<TC*>(f.c);
  TC* const aux = static_cast<TC*>(f.aux);
  const bool gelu = epilogue_gelu(f.kind), dgelu = epilogue_dgelu(f.kind), write_aux = epilogue_writes_aux(f.kind);
  const bool use_beta = f.beta != 0.0f;
  const __m512 alpha = _mm512_set1_ps(f.alpha), beta = _mm512_set1_ps(f.beta);
  for (i64 r = 0; r < mc; ++r) {
    const float* a = acc + r * ldacc;
    TC* cr = c + (i0 + r) * f.ldc + j0;
    TC* xr = aux != nullptr ? aux + (i0 + r) * f.ldaux + j0 : nullptr;
    for (i64 j = 0; j < nc; j += 16) {
      const __mmask16 m = tail_mask16(nc - j);
      __m512 v = _mm512_mul_ps(alpha, _mm512_maskz_loadu_ps(m, a + j));
      if (use_beta) v = _mm512_add_ps(v, _mm512_mul_ps(beta, load_f32x16(cr + j, m)));
      if (f.bias != nullptr) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, f.bias + j0 + j));
      if (write_aux) store_f32x16(xr + j, v, m);
      if (gelu) {
        v = gelu_f32x16(v);
      } else if (dgelu) {
        v = _mm512_mul_ps(v, gelu_grad_f32x16(load_f32x16(xr + j, m)));
      }
      store_f32x16(cr + j, v, m);
      if (partial != nullptr) {
        float* pj = partial + j0 + j;
        _mm512_mask_storeu_ps(pj, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, pj), v));
      }
    }
  }
}

struct Avx512F32 {
  using pack_t = float;
  using acc_t = float;
  static constexpr int kMR = 12, kNR = 32, kP = 1;
  static constexpr i64 kKC = 256, kMC = 144;
  static constexpr const char* kName = "avx512";

  template <class Src>
  MIXTAPE_TARGET_AVX512 static void pack(float* dst, const Src* src, i64 rs, i64 cs, int R, int valid_r, i64 kc, i64 kcp) {
    pack_f32_avx512(dst, src, rs, cs, R, valid_r, kc, kcp);
  }
  MIXTAPE_TARGET_AVX512 static void macro(const float* ap, const float* bp, i64 kcs, i64 mc, i64 nc, float* acc, i64 ldacc,
                                          bool load) {
    for (i64 jr = 0; jr < nc; jr += kNR)
      for (i64 ir = 0; ir < mc; ir += kMR)
        micro_f32_12x32(kcs, ap + (ir / kMR) * kcs * kMR, bp + (jr / kNR) * kcs * kNR, acc + ir * ldacc + jr, ldacc, load);
  }
  template <class TC>
  static void finish(const Finish<float>& f, const float* acc, i64 ldacc, i64 i0, i64 mc, i64 j0, i64 nc, float* partial) {
    finish_f32_avx512<TC>(f, acc, ldacc, i0, mc, j0, nc, partial);
  }
};

// ---------------------------------------------------------------------------------------------
// AVX-512 f64 kernel
// ---------------------------------------------------------------------------------------------

/// 12 x 16 f64 tile.
MIXTAPE_TARGET_AVX512 inline void micro_f64_12x16(i64 kcs, const double* a, const double* b, double* c, i64 ldc, bool load) {
#define MIXTAPE_Z(i) __m512d c##i##_0 = _mm512_setzero_pd(), c##i##_1 = _mm512_setzero_pd();
  MIXTAPE_X12(MIXTAPE_Z)
#undef MIXTAPE_Z
  for (i64 p = 0; p < kcs; ++p) {
    const __m512d b0 = _mm512_loadu_pd(b), b1 = _mm512_loadu_pd(b + 8);
#define MIXTAPE_F(i)                                    \
  {                                                     \
    const __m512d ai = _mm512_set1_pd(a[i]);            \
    c##i##_0 = _mm512_fmadd_pd(ai, b0, c##i##_0);       \
    c##i##_1 = _mm512_fmadd_pd(ai, b1, c##i##_1);       \
  }
    MIXTAPE_X12(MIXTAPE_F)
#undef MIXTAPE_F
    a += 12;
    b += 16;
  }
  if (load) {
#define MIXTAPE_L(i)                                                       \
  c##i##_0 = _mm512_add_pd(_mm512_loadu_pd(c + (i) * ldc), c##i##_0);      \
  c##i##_1 = _mm512_add_pd(_mm512_loadu_pd(c + (i) * ldc + 8), c##i##_1);
    MIXTAPE_X12(MIXTAPE_L)
#undef MIXTAPE_L
  }
#define MIXTAPE_S(i)                              \
  _mm512_storeu_pd(c + (i) * ldc, c##i##_0);      \
  _mm512_storeu_pd(c + (i) * ldc + 8, c##i##_1);
  MIXTAPE_X12(MIXTAPE_S)
#undef MIXTAPE_S
}

/// Packs an f64 panel.
MIXTAPE_TARGET_AVX512 inline void pack_f64_avx512(double* dst, const double* src, i64 rs, i64 cs, int R, int valid_r, i64 kc,
                                                  i64 kcp) {
  if (rs == 1) {
    for (i64 k = 0; k < kc; ++k) {
      const double* s = src + k * cs;
      double* d = dst + k * R;
      for (int r = 0; r < R; r += 8) {
        const int n = std::max(0, std::min(8, valid_r - r)), w = std::min(8, R - r);  // R = 12: not a multiple of 8
        _mm512_mask_storeu_pd(d + r, static_cast<__mmask8>(w >= 8 ? 0xFF : (1u << w) - 1u),
                              _mm512_maskz_loadu_pd(static_cast<__mmask8>(n >= 8 ? 0xFF : (1u << n) - 1u), s + r));
      }
    }
    for (i64 k = kc; k < kcp; ++k) std::memset(dst + k * R, 0, sizeof(double) * R);
    return;
  }
  pack_panel_scalar<double, 1>(dst, src, rs, cs, R, valid_r, kc, kcp);
}

struct Avx512F64 {
  using pack_t = double;
  using acc_t = double;
  static constexpr int kMR = 12, kNR = 16, kP = 1;
  static constexpr i64 kKC = 192, kMC = 96;
  static constexpr const char* kName = "avx512";

  template <class Src>
  MIXTAPE_TARGET_AVX512 static void pack(double* dst, const Src* src, i64 rs, i64 cs, int R, int valid_r, i64 kc, i64 kcp) {
    static_assert(std::is_same_v<Src, double>);
    pack_f64_avx512(dst, src, rs, cs, R, valid_r, kc, kcp);
  }
  MIXTAPE_TARGET_AVX512 static void macro(const double* ap, const double* bp, i64 kcs, i64 mc, i64 nc, double* acc, i64 ldacc,
                                          bool load) {
    for (i64 jr = 0; jr < nc; jr += kNR)
      for (i64 ir = 0; ir < mc; ir += kMR)
        micro_f64_12x16(kcs, ap + (ir / kMR) * kcs * kMR, bp + (jr / kNR) * kcs * kNR, acc + ir * ldacc + jr, ldacc, load);
  }
  template <class TC>
  static void finish(const Finish<double>& f, const double* acc, i64 ldacc, i64 i0, i64 mc, i64 j0, i64 nc, double* partial) {
    finish_scalar<TC>(f, acc, ldacc, i0, mc, j0, nc, partial);
  }
};

// ---------------------------------------------------------------------------------------------
// AVX-512-BF16 kernel (bf16 operands, f32 accumulation by bf16 pairs)
// ---------------------------------------------------------------------------------------------

/// 12 x 32 f32 tile from bf16 pair panels: a holds (a[k][i], a[k+1][i]) pairs, b (b[k][j], b[k+1][j]).
MIXTAPE_TARGET_AVX512_BF16 inline void micro_bf16_12x32(i64 kps, const std::uint16_t* a, const std::uint16_t* b, float* c,
                                                        i64 ldc, bool load) {
#define MIXTAPE_Z(i) __m512 c##i##_0 = _mm512_setzero_ps(), c##i##_1 = _mm512_setzero_ps();
  MIXTAPE_X12(MIXTAPE_Z)
#undef MIXTAPE_Z
  for (i64 p = 0; p < kps; ++p) {
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b), b1 = (__m512bh)_mm512_loadu_si512(b + 32);
#define MIXTAPE_F(i)                                                 \
  {                                                                  \
    std::uint32_t pair;                                              \
    std::memcpy(&pair, a + 2 * (i), 4);                              \
    const __m512bh ai = (__m512bh)_mm512_set1_epi32(static_cast<int>(pair)); \
    c##i##_0 = _mm512_dpbf16_ps(c##i##_0, ai, b0);                   \
    c##i##_1 = _mm512_dpbf16_ps(c##i##_1, ai, b1);                   \
  }
    MIXTAPE_X12(MIXTAPE_F)
#undef MIXTAPE_F
    a += 24;
    b += 64;
  }
  if (load) {
#define MIXTAPE_L(i)                                                        \
  c##i##_0 = _mm512_add_ps(_mm512_loadu_ps(c + (i) * ldc), c##i##_0);       \
  c##i##_1 = _mm512_add_ps(_mm512_loadu_ps(c + (i) * ldc + 16), c##i##_1);
    MIXTAPE_X12(MIXTAPE_L)
#undef MIXTAPE_L
  }
#define MIXTAPE_S(i)                              \
  _mm512_storeu_ps(c + (i) * ldc, c##i##_0);      \
  _mm512_storeu_ps(c + (i) * ldc + 16, c##i##_1);
  MIXTAPE_X12(MIXTAPE_S)
#undef MIXTAPE_S
}

/// Packs a bf16 pair panel (P = 2): element (k, r) at (k / 2) * 2R + 2r + k % 2, raw bf16 bits.
MIXTAPE_TARGET_AVX512 inline void pack_bf16_pairs_avx512(std::uint16_t* dst, const bf16* src, i64 rs, i64 cs, int R,
                                                         int valid_r, i64 kc, i64 kcp) {
  const auto* s16 = reinterpret_cast<const std::uint16_t*>(src);
  if (rs == 1) {  // rows k and k + 1 contiguous over r: interleave them
    // Lane 2q takes x0[q] (lane q of the concatenation), lane 2q + 1 takes x1[q] (lane 16 + q).
    alignas(64) static constexpr std::uint16_t kInterleave[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,
                                                                  21, 6, 22, 7, 23, 8,  24, 9,  25, 10, 26,
                                                                  11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
    const __m512i idx = _mm512_load_si512(kInterleave);
    for (i64 k = 0; k < kcp; k += 2) {
      std::uint16_t* d = dst + k * R;
      for (int r = 0; r < R; r += 16) {
        const __mmask16 m = tail_mask16(std::max(0, std::min(16, valid_r - r)));
        const __m256i x0 = k < kc ? _mm256_maskz_loadu_epi16(m, s16 + k * cs + r) : _mm256_setzero_si256();
        const __m256i x1 = k + 1 < kc ? _mm256_maskz_loadu_epi16(m, s16 + (k + 1) * cs + r) : _mm256_setzero_si256();
        const __m512i x = _mm512_inserti64x4(_mm512_zextsi256_si512(x0), x1, 1);
        const int rows = std::min(16, R - r);
        const __mmask32 sm = rows >= 16 ? __mmask32(0xFFFFFFFFu) : static_cast<__mmask32>((1u << (2 * rows)) - 1u);
        _mm512_mask_storeu_epi16(d + 2 * r, sm, _mm512_permutexvar_epi16(idx, x));
      }
    }
    return;
  }
  if (cs == 1) {  // k contiguous: a (k, k + 1) pair is one 32-bit word; transpose 16 x 16 words
    __m512 r[16];
    for (i64 k0 = 0; k0 < kcp; k0 += 32) {  // 16 pairs
      const int kn = static_cast<int>(std::min<i64>(32, kc - k0));  // valid bf16 values in the chunk
      const __mmask32 km = kn >= 32 ? __mmask32(0xFFFFFFFFu) : static_cast<__mmask32>((1u << kn) - 1u);
      const int pairs = static_cast<int>(std::min<i64>(16, (kcp - k0) / 2));
      for (int g = 0; g < R; g += 16) {
        for (int q = 0; q < 16; ++q) {
          if (g + q < valid_r) {
            _mm_prefetch(reinterpret_cast<const char*>(s16 + (g + q) * rs + k0) + 256, _MM_HINT_T0);
            r[q] = _mm512_castsi512_ps(_mm512_maskz_loadu_epi16(km, s16 + (g + q) * rs + k0));
          } else {
            r[q] = _mm512_setzero_ps();
          }
        }
        transpose16x16(r);
        const __mmask16 rm = tail_mask16(std::min(16, R - g));
        for (int q = 0; q < pairs; ++q) _mm512_mask_storeu_ps(reinterpret_cast<float*>(dst + (k0 + 2 * q) * R + 2 * g), rm, r[q]);
      }
    }
    return;
  }
  pack_panel_scalar<std::uint16_t, 2>(dst, src, rs, cs, R, valid_r, kc, kcp);
}

struct Avx512Bf16 {
  using pack_t = std::uint16_t;
  using acc_t = float;
  static constexpr int kMR = 12, kNR = 32, kP = 2;
  static constexpr i64 kKC = 512, kMC = 144;
  static constexpr const char* kName = "avx512_bf16";

  template <class Src>
  MIXTAPE_TARGET_AVX512 static void pack(std::uint16_t* dst, const Src* src, i64 rs, i64 cs, int R, int valid_r, i64 kc,
                                         i64 kcp) {
    static_assert(std::is_same_v<Src, bf16>);
    pack_bf16_pairs_avx512(dst, src, rs, cs, R, valid_r, kc, kcp);
  }
  MIXTAPE_TARGET_AVX512_BF16 static void macro(const std::uint16_t* ap, const std::uint16_t* bp, i64 kps, i64 mc, i64 nc,
                                               float* acc, i64 ldacc, bool load) {
    for (i64 jr = 0; jr < nc; jr += kNR)
      for (i64 ir = 0; ir < mc; ir += kMR)
        micro_bf16_12x32(kps, ap + (ir / kMR) * kps * 2 * kMR, bp + (jr / kNR) * kps * 2 * kNR, acc + ir * ldacc + jr, ldacc,
                         load);
  }
  template <class TC>
  static void finish(const Finish<float>& f, const float* acc, i64 ldacc, i64 i0, i64 mc, i64 j0, i64 nc, float* partial) {
    finish_f32_avx512<TC>(f, acc, ldacc, i0, mc, j0, nc, partial);
  }
};

#undef MIXTAPE_X12

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#endif  // MIXTAPE_BLAS_HAS_AVX512

#undef MIXTAPE_X6

}  // namespace mixtape::blas::detail::host
