/// @file gelu_host.hpp
/// @brief GELU's constants, and GELU (tanh) forward and backward on the host in AVX-512, 16 lanes
///        at a time, for dense f32 / bf16 operands, chosen at run time; the bits equal the portable
///        element-wise path.
///
/// The lanes run exactly the operation sequence of GeluInner and portable_tanh (activation.hpp,
/// portable_math.hpp): the same IEEE multiplies, adds, divisions and fmas (vfmadd is the fused
/// operation std::fma computes), round-to-nearest-integer (vrndscale), exponent-bit scaling, and
/// the same branches as lane masks. So the results are bit for bit those of the scalar functors,
/// and of the CUDA kernels (the activation tests compare them). The scalar path evaluates about
/// 6 ns per element on the CI kind of CPU; this one is what brings the host GPT step near the
/// GEMMs' cost.
#pragma once

#include <cstdint>

#include <type_traits>

#include "mixtape/core/cpu_features.hpp"
#include "mixtape/kernels/detail/portable_math.hpp"
#include "mixtape/kernels/detail/scalar.hpp"

#if defined(__x86_64__) && (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 10))
#define MIXTAPE_GELU_HOST_AVX512 1
#include <immintrin.h>
#else
#define MIXTAPE_GELU_HOST_AVX512 0
#endif

namespace mixtape::kernels::detail {

template <class A>
inline constexpr A kGeluBeta = A(0.79788456080286535588);  // sqrt(2 / pi)
template <class A>
inline constexpr A kGeluKappa = A(0.044715);

/// Whether the GELU lanes apply: dense operands of f32 / bf16 on a CPU with AVX-512 F/BW/VL/DQ.
template <class T>
inline constexpr bool kGeluLaneType = std::is_same_v<T, float> || std::is_same_v<T, bf16>;

inline bool gelu_lanes_available() noexcept { return MIXTAPE_GELU_HOST_AVX512 && mixtape::detail::cpu_has_avx512(); }

#if MIXTAPE_GELU_HOST_AVX512
// The all-lanes masked forms compute the same as the unmasked intrinsics; GCC 12 warns that the
// unmasked ones' undefined pass-through "may be used uninitialized" (its bug 105593).
inline constexpr __mmask16 kAll = 0xFFFF;
#define MIXTAPE_GELU_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))

/// 16 values (masked tail: 0 in the off lanes) widened to f32.
template <class T>
MIXTAPE_GELU_TARGET inline __m512 gelu_load(const T* p, __mmask16 m) {
  if constexpr (std::is_same_v<T, float>) {
    return _mm512_maskz_loadu_ps(m, p);
  } else {  // bf16: the f32 with the same top 16 bits (exact)
    const __m256i h = _mm256_maskz_loadu_epi16(m, p);
    return _mm512_castsi512_ps(_mm512_maskz_slli_epi32(kAll, _mm512_maskz_cvtepu16_epi32(kAll, h), 16));
  }
}

/// Stores 16 f32 results as T with the library's nearest-even conversion.
template <class T>
MIXTAPE_GELU_TARGET inline void gelu_store(T* p, __m512 v, int n) {
  if constexpr (std::is_same_v<T, float>) {
    _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1u), v);
  } else {
    alignas(64) float tmp[16];
    _mm512_store_ps(tmp, v);
    for (int i = 0; i < n; ++i) p[i] = cast<T>(tmp[i]);  // bit-level RNE, NaN kept quiet: as everywhere
  }
}

/// portable_tanh over 16 lanes.
MIXTAPE_GELU_TARGET inline __m512 gelu_tanh16(__m512 u) {
  const __m512 abs_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7FFFFFFF));
  const __mmask16 nan = _mm512_cmp_ps_mask(u, u, _CMP_UNORD_Q);
  __m512 a = _mm512_and_ps(u, abs_mask);
  a = _mm512_mask_mov_ps(a, _mm512_cmp_ps_mask(a, _mm512_set1_ps(22.0f), _CMP_GT_OQ), _mm512_set1_ps(22.0f));
  const __m512 z = _mm512_mul_ps(_mm512_set1_ps(-2.0f), a);
  // expm1_nonpositive<float>(z)
  const __m512 k = _mm512_maskz_roundscale_ps(kAll, _mm512_mul_ps(z, _mm512_set1_ps(float(1.44269504088896340736))),
                                              _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 sign_bit = _mm512_castsi512_ps(_mm512_set1_epi32(static_cast<int>(0x80000000u)));
  const __m512 nk = _mm512_xor_ps(k, sign_bit);  // -k: a sign flip, as the scalar negation
  __m512 r = _mm512_fmadd_ps(nk, _mm512_set1_ps(0.693145751953125f), z);
  r = _mm512_fmadd_ps(nk, _mm512_set1_ps(1.428606765330187045e-06f), r);
  __m512 q = _mm512_set1_ps(float(1.0 / 40320));
  q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(float(1.0 / 5040)));
  q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(float(1.0 / 720)));
  q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(float(1.0 / 120)));
  q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(float(1.0 / 24)));
  q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(float(1.0 / 6)));
  q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(0.5f));
  const __m512 r2 = _mm512_mul_ps(r, r);
  const __m512 p = _mm512_fmadd_ps(r2, q, r);
  const __m512i ki = _mm512_maskz_cvttps_epi32(kAll, k);  // k is integral: truncation is the conversion
  const __m512 scale = _mm512_castsi512_ps(_mm512_maskz_slli_epi32(kAll, _mm512_add_epi32(ki, _mm512_set1_epi32(127)), 23));
  __m512 e = _mm512_fmadd_ps(scale, p, _mm512_sub_ps(scale, _mm512_set1_ps(1.0f)));
  e = _mm512_mask_mov_ps(e, _mm512_cmpeq_epi32_mask(ki, _mm512_setzero_si512()), p);
  // t = -e / (e + 2), then |t| with u's sign; NaN passes through.
  const __m512 t = _mm512_div_ps(_mm512_xor_ps(e, sign_bit), _mm512_add_ps(e, _mm512_set1_ps(2.0f)));
  const __m512 sign = _mm512_andnot_ps(abs_mask, u);
  return _mm512_mask_mov_ps(_mm512_or_ps(_mm512_and_ps(t, abs_mask), sign), nan, u);
}

/// y = gelu(x) for n dense elements.
template <class X, class Y>
MIXTAPE_GELU_TARGET void gelu_forward_lanes(const X* x, Y* y, std::int64_t n) {
  const __m512 beta = _mm512_set1_ps(kGeluBeta<float>), kappa = _mm512_set1_ps(kGeluKappa<float>);
  const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
  for (std::int64_t i = 0; i < n; i += 16) {
    const int m = static_cast<int>(n - i < 16 ? n - i : 16);
    const __m512 v = gelu_load(x + i, static_cast<__mmask16>((1u << m) - 1u));
    const __m512 x3 = _mm512_mul_ps(_mm512_mul_ps(v, v), v);
    const __m512 t = gelu_tanh16(_mm512_mul_ps(beta, _mm512_fmadd_ps(kappa, x3, v)));
    gelu_store(y + i, _mm512_mul_ps(_mm512_mul_ps(half, v), _mm512_add_ps(one, t)), m);
  }
}

/// dx = dy * gelu'(x), or dx = fma(dy, gelu'(x), dx) when accumulating, for n dense elements.
template <class X, class DY, class DX>
MIXTAPE_GELU_TARGET void gelu_backward_lanes(const X* x, const DY* dy, DX* dx, std::int64_t n, bool accumulate) {
  const __m512 beta = _mm512_set1_ps(kGeluBeta<float>), kappa = _mm512_set1_ps(kGeluKappa<float>);
  const __m512 kappa3 = _mm512_set1_ps(3.0f * kGeluKappa<float>);
  const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
  for (std::int64_t i = 0; i < n; i += 16) {
    const int m = static_cast<int>(n - i < 16 ? n - i : 16);
    const auto mask = static_cast<__mmask16>((1u << m) - 1u);
    const __m512 v = gelu_load(x + i, mask);
    const __m512 x2 = _mm512_mul_ps(v, v);
    const __m512 t = gelu_tanh16(_mm512_mul_ps(beta, _mm512_fmadd_ps(kappa, _mm512_mul_ps(x2, v), v)));
    const __m512 left = _mm512_mul_ps(half, v);
    const __m512 left_d = _mm512_mul_ps(half, _mm512_add_ps(one, t));
    const __m512 tanh_d = _mm512_fnmadd_ps(t, t, one);  // fma(-t, t, 1)
    const __m512 inner_d = _mm512_mul_ps(beta, _mm512_fmadd_ps(kappa3, x2, one));
    const __m512 d = _mm512_fmadd_ps(_mm512_mul_ps(left, tanh_d), inner_d, left_d);
    const __m512 g = gelu_load(dy + i, mask);
    gelu_store(dx + i, accumulate ? _mm512_fmadd_ps(g, d, gelu_load(dx + i, mask)) : _mm512_mul_ps(g, d), m);
  }
}
#undef MIXTAPE_GELU_TARGET
#endif

}  // namespace mixtape::kernels::detail
