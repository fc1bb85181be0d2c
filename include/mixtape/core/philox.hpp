/// @file philox.hpp
/// @brief Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3",
///        SC 2011), with the constants of Random123, cuRAND and PyTorch, and the element mapping
///        every mixtape random draw uses.
///
/// All functions are `constexpr` integer arithmetic (plus exact scalings to float/double), the same
/// on host and device, so a draw is bitwise identical on both backends.
///
/// **Element mapping** (what a value depends on). A draw is keyed by `(seed, offset, index)`:
/// `seed` is the 64-bit Philox key (`ExecutionContext::seed()`), `offset` the first of the counters
/// the draw reserved (`ExecutionContext::reserve_rng()`), `index` the row-major linear index of the
/// element in the output's logical shape (never a memory offset, a thread id or a block id, so values
/// are independent of strides and of the launch shape). Philox call ("block") `b` of a draw uses
///
///     counter = { lo32(offset + b), hi32(offset + b), 0, 0 },  key = { lo32(seed), hi32(seed) }
///
/// and yields 4 words. Elements take words as follows:
///  - one word per element (uniform f32/f16/bf16/fp8, stochastic rounding): element i takes word
///    i % 4 of block i / 4; a draw of n elements reserves ceil(n / 4) counters;
///  - two words per element (uniform f64): element i takes words 2(i % 2), 2(i % 2) + 1 of block
///    i / 2; reserves ceil(n / 2);
///  - normal (Box-Muller), float formats: elements 2k, 2k + 1 share the pair of words
///    (2(k % 2), 2(k % 2) + 1) of block i / 4, u1 from the first (in (0, 1]), u2 from the second
///    (in [0, 1)); even elements take r cos(2 pi u2), odd ones r sin(2 pi u2), r = sqrt(-2 ln u1);
///    reserves ceil(n / 4);
///  - normal, f64: elements 2k, 2k + 1 share block k: u1 from words 0, 1 and u2 from words 2, 3.
///    Reserves ceil(n / 2).
///
/// Uniform floats are `(word >> 8) * 2^-24` in [0, 1) (24 bits, exact in float); uniform doubles are
/// `((w0 << 21) | (w1 >> 11)) * 2^-53` in [0, 1) (53 bits, exact in double).
#pragma once

#include <cstdint>

#include "mixtape/config.hpp"

namespace mixtape {

/// Four 32-bit words: a Philox counter or its output ("uint4-like").
struct PhiloxWords {
  std::uint32_t v[4];
  MIXTAPE_HOST_DEVICE constexpr std::uint32_t operator[](int i) const { return v[i]; }
  friend constexpr bool operator==(const PhiloxWords& a, const PhiloxWords& b) noexcept {
    return a.v[0] == b.v[0] && a.v[1] == b.v[1] && a.v[2] == b.v[2] && a.v[3] == b.v[3];
  }
};

/// A Philox4x32 key: two 32-bit words.
struct PhiloxKey {
  std::uint32_t k[2];
};

namespace detail {
inline constexpr std::uint32_t kPhiloxM0 = 0xD2511F53u;  // multipliers (Random123, cuRAND, PyTorch)
inline constexpr std::uint32_t kPhiloxM1 = 0xCD9E8D57u;
inline constexpr std::uint32_t kPhiloxW0 = 0x9E3779B9u;  // Weyl key increments (golden ratio, sqrt(3) - 1)
inline constexpr std::uint32_t kPhiloxW1 = 0xBB67AE85u;

MIXTAPE_HOST_DEVICE constexpr PhiloxWords philox_round(const PhiloxWords& c, const PhiloxKey& k) {
  const std::uint64_t p0 = static_cast<std::uint64_t>(kPhiloxM0) * c.v[0];
  const std::uint64_t p1 = static_cast<std::uint64_t>(kPhiloxM1) * c.v[2];
  const auto hi0 = static_cast<std::uint32_t>(p0 >> 32), lo0 = static_cast<std::uint32_t>(p0);
  const auto hi1 = static_cast<std::uint32_t>(p1 >> 32), lo1 = static_cast<std::uint32_t>(p1);
  return PhiloxWords{{hi1 ^ c.v[1] ^ k.k[0], lo1, hi0 ^ c.v[3] ^ k.k[1], lo0}};
}
}  // namespace detail

/// Philox4x32 with 10 rounds: the 4 output words for `counter` under `key`.
MIXTAPE_HOST_DEVICE constexpr PhiloxWords philox4x32_10(PhiloxWords counter, PhiloxKey key) {
  counter = detail::philox_round(counter, key);
  for (int r = 1; r < 10; ++r) {
    key.k[0] += detail::kPhiloxW0;
    key.k[1] += detail::kPhiloxW1;
    counter = detail::philox_round(counter, key);
  }
  return counter;
}

/// The key for a 64-bit seed: { lo32(seed), hi32(seed) }.
MIXTAPE_HOST_DEVICE constexpr PhiloxKey philox_key(std::uint64_t seed) {
  return PhiloxKey{{static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32)}};
}

/// Block `block` of the draw at (seed, offset): Philox at counter offset + block (64-bit, wrapping).
MIXTAPE_HOST_DEVICE constexpr PhiloxWords philox_block(std::uint64_t seed, std::uint64_t offset, std::uint64_t block) {
  const std::uint64_t c = offset + block;
  return philox4x32_10(PhiloxWords{{static_cast<std::uint32_t>(c), static_cast<std::uint32_t>(c >> 32), 0u, 0u}},
                       philox_key(seed));
}

/// The 32-bit word of element `index` in a one-word-per-element draw (word index % 4 of block index / 4).
MIXTAPE_HOST_DEVICE constexpr std::uint32_t philox_word(std::uint64_t seed, std::uint64_t offset, std::uint64_t index) {
  return philox_block(seed, offset, index / 4)[static_cast<int>(index % 4)];
}

/// Counters a draw of `n` elements reserves, with `words_per_element` (1 or 2) words each.
MIXTAPE_HOST_DEVICE constexpr std::uint64_t philox_counters(std::uint64_t n, int words_per_element = 1) {
  return (n * static_cast<std::uint64_t>(words_per_element) + 3) / 4;
}

/// Uniform float in [0, 1): the top 24 bits of `word` times 2^-24 (exact).
MIXTAPE_HOST_DEVICE constexpr float uniform_float(std::uint32_t word) {
  return static_cast<float>(word >> 8) * (1.0f / 16777216.0f);
}
/// Uniform float in (0, 1]: (top 24 bits + 1) times 2^-24 (exact); safe under a logarithm.
MIXTAPE_HOST_DEVICE constexpr float uniform_float_open0(std::uint32_t word) {
  return static_cast<float>((word >> 8) + 1u) * (1.0f / 16777216.0f);
}
/// Uniform double in [0, 1) from 53 bits: the 32 bits of w0 above the top 21 bits of w1, times 2^-53.
MIXTAPE_HOST_DEVICE constexpr double uniform_double(std::uint32_t w0, std::uint32_t w1) {
  return static_cast<double>((static_cast<std::uint64_t>(w0) << 21) | (w1 >> 11)) * (1.0 / 9007199254740992.0);
}
/// Uniform double in (0, 1] (53 bits).
MIXTAPE_HOST_DEVICE constexpr double uniform_double_open0(std::uint32_t w0, std::uint32_t w1) {
  return static_cast<double>(((static_cast<std::uint64_t>(w0) << 21) | (w1 >> 11)) + 1u) *
         (1.0 / 9007199254740992.0);
}

}  // namespace mixtape
