/// @file cpu_features.hpp
/// @brief What the host CPU supports, detected once at run time: a header-only library cannot count
///        on its user's -march, so the host GEMM, the GELU lanes and the element-wise FMA tiles pick
///        their instruction set from these.
#pragma once

namespace mixtape::detail {

#if defined(__x86_64__) && (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 10))
#define MIXTAPE_X86_DISPATCH 1
#else
#define MIXTAPE_X86_DISPATCH 0
#endif

/// AVX-512 F, BW, VL and DQ (the subsets the kernels use), with OS support.
inline bool cpu_has_avx512() noexcept {
#if MIXTAPE_X86_DISPATCH
  static const bool ok = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  }();
  return ok;
#else
  return false;
#endif
}

/// AVX2 with FMA and F16C.
inline bool cpu_has_avx2() noexcept {
#if MIXTAPE_X86_DISPATCH
  static const bool ok = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  }();
  return ok;
#else
  return false;
#endif
}

/// AVX-512 with AVX512_BF16 (`vdpbf16ps`).
inline bool cpu_has_avx512_bf16() noexcept {
#if MIXTAPE_X86_DISPATCH
  static const bool ok = [] {
    __builtin_cpu_init();
    return cpu_has_avx512() && __builtin_cpu_supports("avx512bf16");
  }();
  return ok;
#else
  return false;
#endif
}

/// An AMD CPU (the host GEMM chooses its bf16 kernel by vendor: blas/detail/gemm_host.hpp).
inline bool cpu_is_amd() noexcept {
#if MIXTAPE_X86_DISPATCH
  static const bool amd = [] {
    __builtin_cpu_init();
    return __builtin_cpu_is("amd") != 0;
  }();
  return amd;
#else
  return false;
#endif
}

}  // namespace mixtape::detail
