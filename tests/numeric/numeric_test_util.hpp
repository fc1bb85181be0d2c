/// @file numeric_test_util.hpp
/// @brief Shared pieces of the numeric tests: the map from library types to reference formats,
///        seeded random inputs, and a mismatch collector that reports the first few failures
///        instead of drowning Catch2 in millions of assertions.
#pragma once

#include <catch2/catch.hpp>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "mixtape/numeric/numeric.hpp"
#include "numeric/reference.hpp"

namespace mixtape::test {

/// The reference description of a library type (the mapping only; the reference shares no code).
template <class T>
const ref::Format& ref_format();
template <>
inline const ref::Format& ref_format<f16>() {
  return ref::kF16;
}
template <>
inline const ref::Format& ref_format<bf16>() {
  return ref::kBF16;
}
template <>
inline const ref::Format& ref_format<e4m3>() {
  return ref::kE4M3;
}
template <>
inline const ref::Format& ref_format<e5m2>() {
  return ref::kE5M2;
}

/// One table-search encoder per format, built on first use.
template <class T>
const ref::Encoder& encoder() {
  static const ref::Encoder e(ref_format<T>());
  return e;
}

/// Test seed: MIXTAPE_TEST_SEED when set (to reproduce a failure), otherwise fresh.
inline std::uint64_t test_seed() {
  if (const char* s = std::getenv("MIXTAPE_TEST_SEED")) return std::strtoull(s, nullptr, 0);
  std::random_device rd;
  return (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
}

inline std::string hex(std::uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

inline std::uint32_t float_bits(float x) { return detail::bit_cast<std::uint32_t>(x); }
inline std::uint64_t double_bits(double x) { return detail::bit_cast<std::uint64_t>(x); }
inline std::uint64_t bits_of(float x) { return float_bits(x); }
inline std::uint64_t bits_of(double x) { return double_bits(x); }

/// Counts failures and keeps the first few descriptions.
class Mismatches {
 public:
  template <class... Parts>
  void add(const Parts&... parts) {
    ++count_;
    if (first_.size() < kKeep) {
      std::ostringstream os;
      (os << ... << parts);
      first_.push_back(os.str());
    }
  }
  std::uint64_t count() const { return count_; }
  std::string report() const {
    std::ostringstream os;
    os << count_ << " mismatches";
    for (const auto& s : first_) os << "\n  " << s;
    return os.str();
  }

 private:
  static constexpr std::size_t kKeep = 10;
  std::uint64_t count_ = 0;
  std::vector<std::string> first_;
};

#define MIXTAPE_CHECK_NONE(mismatches) \
  do {                                 \
    INFO((mismatches).report());       \
    CHECK((mismatches).count() == 0u); \
  } while (0)

/// Random float inputs that cover every exponent of a format: uniformly random bit patterns (all
/// float exponents, NaN, inf and subnormals included), values with a random exponent from a
/// little below the format's smallest subnormal to a little above its max and a random 23-bit
/// mantissa, and values at and next to the midpoints between neighbours (the ties).
template <class T>
class FloatInputs {
 public:
  explicit FloatInputs(std::uint64_t seed) : rng_(seed) {}

  float bits_pattern() { return detail::bit_cast<float>(static_cast<std::uint32_t>(rng_())); }

  float near_range() {
    const auto& f = ref_format<T>();
    const int emin = 1 - f.bias();
    const int emax = (1 << f.exponent_bits) - 1 - f.bias();
    std::uniform_int_distribution<int> exponent(emin - f.mantissa_bits - 4, emax + 2);
    const float mantissa = 1.0f + std::ldexp(static_cast<float>(rng_() & 0x7FFFFF), -23);
    const float x = std::ldexp(mantissa, exponent(rng_));
    return (rng_() & 1) ? -x : x;
  }

  /// A midpoint between two neighbours of T (as a float: exact, it has at most 12 bits), or the
  /// float just below or above it.
  float tie() {
    const auto& enc = encoder<T>();
    std::uniform_int_distribution<std::size_t> index(0, enc.size() - 1);
    const std::size_t i = index(rng_);
    const long double mid = (enc.bracket_value(i) + enc.bracket_value(i + 1)) / 2;
    float x = static_cast<float>(mid);
    switch (rng_() % 3) {
      case 0:
        x = std::nextafter(x, 0.0f);
        break;
      case 1:
        x = std::nextafter(x, std::numeric_limits<float>::infinity());
        break;
      default:
        break;
    }
    return (rng_() & 1) ? -x : x;
  }

  float any() {
    switch (rng_() % 3) {
      case 0:
        return bits_pattern();
      case 1:
        return near_range();
      default:
        return tie();
    }
  }

  std::mt19937_64& rng() { return rng_; }

 private:
  std::mt19937_64 rng_;
};

}  // namespace mixtape::test
