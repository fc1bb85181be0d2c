/// @file cuda_intrinsics.hpp
/// @brief Device fast paths of the conversions: CUDA's conversion instructions, used only where
///        they give exactly the bits of the portable code (bit_convert.hpp). nvcc units only.
///
/// Which instructions qualify, and why the rest does not:
///  - f32 -> f16 (`cvt.rn.f16.f32`, sm_53+), f32 -> bf16 (`cvt.rn.bf16.f32`, sm_80+): IEEE
///    round-to-nearest-even with gradual underflow and overflow to inf, for every finite input. Their
///    NaN is 0x7FFF whatever the input's sign, ours keeps the sign, so NaN and inf inputs take the
///    portable path; saturation is applied to their result (an inf result from a finite input is
///    exactly a finite overflow, which saturates to max).
///  - f32 -> e4m3 / e5m2 (`cvt.rn.satfinite.{e4m3,e5m2}x2.f32`, sm_89+): nearest-even and clamped
///    to +-max for finite inputs. There is no non-saturating instruction (`__NV_NOSAT` runs a
///    software path through double), so the non-saturating overflow is decided here by comparing
///    |x| with the overflow threshold (E4M3: |x| > 464 -> NaN; E5M2: |x| >= 61440 -> inf, see
///    rounding.hpp) and the instruction only sees inputs that do not overflow. NaN and inf inputs
///    take the portable path (the instruction's NaN sign is not documented).
///  - f16 / e4m3 / e5m2 -> f32 (`cvt.f32.f16`, `cvt.rn.f16x2.{e4m3,e5m2}x2`): exact for every finite
///    input; NaN (payload handling) and inf (saturation) take the portable path.
///  - Stochastic rounding (sm_100's `cvt.rs` rounds with different bits of the random word),
///    conversions from double and between the narrow formats: the portable code.
/// Define MIXTAPE_NUMERIC_NO_CUDA_INTRINSICS (program-wide) to run the portable code on the device
/// everywhere; tests/numeric's exhaustive GPU test compares both paths with the host.
#pragma once

#if defined(__CUDACC__)

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstdint>
#include <type_traits>

#include "mixtape/numeric/detail/bit_convert.hpp"
#include "mixtape/numeric/rounding.hpp"

// Thresholds on |x| (as f32 bits) above which a non-saturating FP8 conversion overflows.
static_assert(mixtape::detail::bit_cast<std::uint32_t>(464.0f) == 0x43E80000u, "E4M3: 448 + ulp/2 = 464");
static_assert(mixtape::detail::bit_cast<std::uint32_t>(61440.0f) == 0x47700000u, "E5M2: 57344 + ulp/2 = 61440");

#if defined(__CUDA_ARCH__)

namespace mixtape::detail::cuda {

/// True where convert_fast below handles the conversion (for finite inputs).
/// @tparam To    destination BinaryFormat
/// @tparam From  source BinaryFormat
/// @tparam R     rounding mode
template <class To, class From, Rounding R>
inline constexpr bool kHasFastPath =
    (std::is_same_v<From, F32Format> && !is_stochastic(R) &&
     ((std::is_same_v<To, F16Format> && __CUDA_ARCH__ >= 530) ||
      (std::is_same_v<To, BF16Format> && __CUDA_ARCH__ >= 800) ||
      ((std::is_same_v<To, E4M3Format> || std::is_same_v<To, E5M2Format>)&&__CUDA_ARCH__ >= 890))) ||
    (std::is_same_v<To, F32Format> &&
     ((std::is_same_v<From, F16Format> && __CUDA_ARCH__ >= 530) ||
      ((std::is_same_v<From, E4M3Format> || std::is_same_v<From, E5M2Format>)&&__CUDA_ARCH__ >= 890)));

/// The f32 -> narrow conversions by instruction. Finite inputs only.
template <class To, Rounding R>
__device__ inline typename To::storage_type narrow_f32_fast(std::uint32_t x) {
  using Out = typename To::storage_type;
  constexpr bool kSaturate = is_saturating(R);
  const float f = __uint_as_float(x);
  const std::uint32_t magnitude = x & 0x7FFFFFFFu;
  const std::uint64_t sign = (x >> 31) != 0 ? To::kSignBit : 0;
  if constexpr (std::is_same_v<To, F16Format>) {
    const Out h = __half_as_ushort(__float2half_rn(f));
    return kSaturate && (h & To::kMagnitudeMask) == To::kInf ? static_cast<Out>(sign | To::kMax) : h;
  } else if constexpr (std::is_same_v<To, BF16Format>) {
    const Out b = __bfloat16_as_ushort(__float2bfloat16_rn(f));
    return kSaturate && (b & To::kMagnitudeMask) == To::kInf ? static_cast<Out>(sign | To::kMax) : b;
  } else if constexpr (std::is_same_v<To, E4M3Format>) {
    if (!kSaturate && magnitude > 0x43E80000u) return static_cast<Out>(sign | To::kNaN);
    return static_cast<Out>(__nv_cvt_float_to_fp8(f, __NV_SATFINITE, __NV_E4M3));
  } else {
    static_assert(std::is_same_v<To, E5M2Format>);
    if (!kSaturate && magnitude >= 0x47700000u) return static_cast<Out>(sign | To::kInf);
    return static_cast<Out>(__nv_cvt_float_to_fp8(f, __NV_SATFINITE, __NV_E5M2));
  }
}

/// The narrow -> f32 widenings by instruction. Finite inputs only.
template <class From>
__device__ inline std::uint32_t widen_f32_fast(typename From::storage_type x) {
  if constexpr (std::is_same_v<From, F16Format>) {
    return __float_as_uint(__half2float(__ushort_as_half(x)));
  } else {
    constexpr __nv_fp8_interpretation_t kKind = std::is_same_v<From, E4M3Format> ? __NV_E4M3 : __NV_E5M2;
    const __half_raw h = __nv_cvt_fp8_to_halfraw(static_cast<__nv_fp8_storage_t>(x), kKind);
    return __float_as_uint(__half2float(__half(h)));
  }
}

/// convert_bits on the device where kHasFastPath: NaN and inf go to the portable code, finite
/// inputs to the instruction.
template <class To, class From, Rounding R>
__device__ inline typename To::storage_type convert_fast(typename From::storage_type x, std::uint32_t random) {
  const std::uint64_t magnitude = x & From::kMagnitudeMask;
  if (From::is_nan(magnitude) || From::is_inf(magnitude)) return convert_bits_portable<To, From, R>(x, random);
  if constexpr (std::is_same_v<From, F32Format>) {
    return narrow_f32_fast<To, R>(x);
  } else {
    return widen_f32_fast<From>(x);
  }
}

}  // namespace mixtape::detail::cuda

#endif  // __CUDA_ARCH__
#endif  // __CUDACC__
