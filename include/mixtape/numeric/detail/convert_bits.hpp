/// @file convert_bits.hpp
/// @brief `detail::convert_bits`, the one conversion routine every public entry point calls: CUDA
///        instructions on the device where they give the same bits, the portable code elsewhere.
///
/// Why a separate header: the portable code (bit_convert.hpp) must not depend on CUDA, and the
/// device fast paths (cuda_intrinsics.hpp) are built on it, so the choice between the two sits
/// above both.
#pragma once

#include <type_traits>
#include <cstdint>

#include "mixtape/config.hpp"
#include "mixtape/numeric/detail/bit_convert.hpp"
#include "mixtape/numeric/rounding.hpp"

#if defined(__CUDACC__)
#include "mixtape/numeric/detail/cuda_intrinsics.hpp"
#endif

namespace mixtape::detail {

/// Converts the encoding `x` of format `From` to format `To` by the rules of rounding.hpp.
/// On the device, CUDA's conversion instruction where one gives the same bits as
/// convert_bits_portable (see cuda_intrinsics.hpp); everywhere else, and during constant
/// evaluation, convert_bits_portable itself. Only the `__CUDA_ARCH__` branch differs between a
/// `.cpp` and a `.cu` unit, so the host code has one definition in every unit (design.md, ODR).
/// @tparam To    destination BinaryFormat
/// @tparam From  source BinaryFormat
/// @tparam R     rounding mode
/// @param random the stochastic-rounding word (ignored by the nearest-even modes)
template <class To, class From, Rounding R>
MIXTAPE_HOST_DEVICE constexpr typename To::storage_type convert_bits(typename From::storage_type x,
                                                                     std::uint32_t random) noexcept {
#if MIXTAPE_DEVICE_CODE && !defined(MIXTAPE_NUMERIC_NO_CUDA_INTRINSICS)
  if constexpr (cuda::kHasFastPath<To, From, R>) {
    if (!__builtin_is_constant_evaluated()) return cuda::convert_fast<To, From, R>(x, random);
  }
#endif
  if constexpr (std::is_same_v<To, BF16Format> && std::is_same_v<From, F32Format> && R == Rounding::nearest_even) {
    // f32 -> bf16 nearest-even is an add and a shift on the top half (overflow carries into inf,
    // subnormals round the same way); NaN becomes the canonical quiet NaN with the sign, as the
    // portable path makes it. Branch-free, so host element-wise loops that store bf16 vectorise.
    const std::uint32_t u = x;
    const std::uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
    const std::uint32_t nan = ((u >> 16) & 0x8000u) | BF16Format::kNaN;
    return static_cast<std::uint16_t>((u & 0x7FFFFFFFu) > 0x7F800000u ? nan : rounded);
  } else if constexpr (std::is_same_v<To, BF16Format> && std::is_same_v<From, F32Format> && is_stochastic(R)) {
    // f32 -> bf16 drops k = 16 bits from every finite input (subnormals too: both formats' ulp
    // there is 2^16 f32 ulps), so rounding.hpp's rule "up iff D + (random >> 16) >= 2^16" is the
    // add of the word's top half to the low half, whose carry moves the top half to the next
    // encoding (past max: inf, the non-saturating overflow). The portable path's 64-bit generic
    // code made the stochastic convert kernel compute-bound at 0.38 of copy bandwidth on an H100.
    const std::uint32_t u = x;
    const std::uint32_t sign = (u >> 16) & 0x8000u;
    std::uint32_t rounded = (u + (random >> 16)) >> 16;  // no wrap: |u| <= inf's bits for non-NaNs
    if constexpr (is_saturating(R)) {
      if ((rounded & 0x7FFFu) == BF16Format::kInf) rounded = sign | static_cast<std::uint32_t>(BF16Format::kMax);
    }
    const std::uint32_t nan = sign | static_cast<std::uint32_t>(BF16Format::kNaN);
    return static_cast<std::uint16_t>((u & 0x7FFFFFFFu) > 0x7F800000u ? nan : rounded);
  } else {
    return convert_bits_portable<To, From, R>(x, random);
  }
}

/// Exact widening of an encoding to f32 bits (every format here widens to f32 exactly).
/// @tparam From  source BinaryFormat
template <class From>
MIXTAPE_HOST_DEVICE constexpr std::uint32_t widen_to_f32_bits(typename From::storage_type x) noexcept {
  if constexpr (std::is_same_v<From, BF16Format>) {
    // bf16 is the top half of an f32: a shift, plus the quiet bit for NaNs, is the whole widening
    // (the generic path's integer work made bf16 element-wise kernels compute-bound on the GPU).
    std::uint32_t u = static_cast<std::uint32_t>(x) << 16;
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) u |= 0x00400000u;
    return u;
  } else {
    return convert_bits<F32Format, From, Rounding::nearest_even>(x, 0);
  }
}

}  // namespace mixtape::detail
