/// @file portable_math.hpp
/// @brief `expm1` on (-inf, 0] and `tanh` built from IEEE basic operations and explicit fma only,
///        so host and device give the same bits (GELU is element-wise, and the library promises
///        bitwise host/CUDA equality for element-wise ops; libm's tanhf and CUDA's differ).
///
/// Every step is a correctly rounded IEEE operation (+, -, *, /, fma, round-to-integer) or exact
/// bit manipulation, and every multiply-add is an explicit fma, so neither compiler's contraction
/// flags nor its math library can change a result.
///
/// Accuracy (float and double alike): expm1 within about 2 ulps, tanh within about 5 ulps of
/// the exact value over the whole range (tests/kernels/model/activation_test.cpp measures it).
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "mixtape/config.hpp"
#include "mixtape/kernels/detail/scalar.hpp"
#include "mixtape/kernels/functors.hpp"

namespace mixtape::kernels::detail {

/// `x` with the sign bit of `s` (exact; NaN payloads kept).
template <class A>
MIXTAPE_HOST_DEVICE constexpr A copysign_exact(A x, A s) noexcept {
  if constexpr (std::is_same_v<A, float>) {
    const auto xb = mixtape::detail::bit_cast<std::uint32_t>(x) & 0x7FFFFFFFu;
    const auto sb = mixtape::detail::bit_cast<std::uint32_t>(s) & 0x80000000u;
    return mixtape::detail::bit_cast<float>(xb | sb);
  } else {
    static_assert(std::is_same_v<A, double>);
    const auto xb = mixtape::detail::bit_cast<std::uint64_t>(x) & 0x7FFFFFFFFFFFFFFFull;
    const auto sb = mixtape::detail::bit_cast<std::uint64_t>(s) & 0x8000000000000000ull;
    return mixtape::detail::bit_cast<double>(xb | sb);
  }
}

/// 2^k for k in [-126, 0] (float) / [-1022, 0] (double), built from its exponent bits (exact).
template <class A>
MIXTAPE_HOST_DEVICE constexpr A exp2_int(int k) noexcept {
  if constexpr (std::is_same_v<A, float>) {
    return mixtape::detail::bit_cast<float>(static_cast<std::uint32_t>(127 + k) << 23);
  } else {
    return mixtape::detail::bit_cast<double>(static_cast<std::uint64_t>(1023 + k) << 52);
  }
}

/// The nearest integer to x, ties to even (IEEE roundToIntegralTiesToEven: exact on every platform).
template <class A>
MIXTAPE_HOST_DEVICE inline A round_to_int(A x) noexcept {
  if constexpr (std::is_same_v<A, float>) {
    return ::rintf(x);
  } else {
    return ::rint(x);
  }
}

/// e^z - 1 for z in [-44, 0] (callers clamp; e^-44 is below half an ulp of 1 in double).
///
/// Cody-Waite reduction z = k ln2 + r with |r| <= ln2 / 2 (k = rint(z / ln2), ln2 split in a high
/// part with trailing zeros and a low part), expm1(r) by its Taylor series to degree 8 (float) or
/// 14 (double) in Horner form (truncation below 1e-9 resp. 1e-19 relative), then
/// e^z - 1 = 2^k expm1(r) + (2^k - 1) in one fma. For k = 0 the series is the result, which keeps
/// full relative accuracy near zero (no cancellation).
template <class A>
MIXTAPE_HOST_DEVICE inline A expm1_nonpositive(A z) noexcept {
  static_assert(kIsAccum<A>);
  constexpr A kInvLn2 = A(1.44269504088896340736);
  // fdlibm's split of ln 2: the high part has enough trailing zero bits that k * hi is exact.
  constexpr A kLn2Hi = std::is_same_v<A, float> ? A(0.693145751953125) : A(6.93147180369123816490e-01);
  constexpr A kLn2Lo = std::is_same_v<A, float> ? A(1.428606765330187045e-06) : A(1.90821492927058770002e-10);
  const A k = round_to_int(z * kInvLn2);
  A r = fma_exact<A>(-k, kLn2Hi, z);
  r = fma_exact<A>(-k, kLn2Lo, r);
  // Q(r) = sum_{n>=2} r^(n-2) / n!, so expm1(r) = r + r^2 Q(r).
  A q;
  if constexpr (std::is_same_v<A, float>) {
    q = A(1.0 / 40320);
    q = fma_exact<A>(q, r, A(1.0 / 5040));
    q = fma_exact<A>(q, r, A(1.0 / 720));
    q = fma_exact<A>(q, r, A(1.0 / 120));
    q = fma_exact<A>(q, r, A(1.0 / 24));
    q = fma_exact<A>(q, r, A(1.0 / 6));
    q = fma_exact<A>(q, r, A(0.5));
  } else {
    q = A(1.0 / 87178291200.0);                       // 1/14!
    q = fma_exact<A>(q, r, A(1.0 / 6227020800.0));    // 1/13!
    q = fma_exact<A>(q, r, A(1.0 / 479001600.0));     // 1/12!
    q = fma_exact<A>(q, r, A(1.0 / 39916800.0));      // 1/11!
    q = fma_exact<A>(q, r, A(1.0 / 3628800.0));       // 1/10!
    q = fma_exact<A>(q, r, A(1.0 / 362880.0));        // 1/9!
    q = fma_exact<A>(q, r, A(1.0 / 40320.0));
    q = fma_exact<A>(q, r, A(1.0 / 5040.0));
    q = fma_exact<A>(q, r, A(1.0 / 720.0));
    q = fma_exact<A>(q, r, A(1.0 / 120.0));
    q = fma_exact<A>(q, r, A(1.0 / 24.0));
    q = fma_exact<A>(q, r, A(1.0 / 6.0));
    q = fma_exact<A>(q, r, A(0.5));
  }
  const A r2 = r * r;
  const A p = fma_exact<A>(r2, q, r);
  const int ki = static_cast<int>(k);
  if (ki == 0) return p;
  const A scale = exp2_int<A>(ki);
  return fma_exact<A>(scale, p, scale - A(1));
}

/// tanh(u), odd, with tanh(+-0) = +-0, tanh(+-inf) = +-1 and NaN propagated.
///
/// For a = |u|: tanh(a) = -e / (e + 2) with e = expm1(-2a) in (-1, 0]; no cancellation anywhere
/// (e + 2 lies in (1, 2]), so the relative error stays a few ulps from 0 to the clamp at a = 22
/// (beyond which tanh rounds to 1 in double as in float).
template <class A>
MIXTAPE_HOST_DEVICE inline A portable_tanh(A u) noexcept {
  static_assert(kIsAccum<A>);
  if (is_nan(u)) return u;
  A a = abs_exact(u);
  if (a > A(22)) a = A(22);
  const A e = expm1_nonpositive<A>(A(-2) * a);
  const A t = -e / (e + A(2));
  return copysign_exact(abs_exact(t), u);
}

}  // namespace mixtape::kernels::detail
