/// @file reference.hpp
/// @brief An independent reference for the scalar formats, written from their definitions
///        (IEEE 754 binary16, bfloat16, OCP FP8 E4M3 and E5M2) and sharing no code with the
///        library: decode by the field formula with ldexp, encode by searching the sorted table of
///        all finite values.
///
/// Why this shape: the library converts with integer bit manipulation (shifts, carries). The
/// reference therefore does the opposite: it never manipulates a significand. It decodes each field
/// with the textbook formula, builds the sorted list of every finite value of the format, and rounds
/// by comparing the input with its two neighbours and their midpoint, exactly in long double (each
/// format value has at most 11 significant bits and each input at most 64, so the neighbours, the
/// midpoint and the comparisons are all exact). A bug would have to be made twice, in two
/// unrelated ways, to go unseen.
///
/// Conventions taken from the definitions:
///  - value = (-1)^s * 2^(e - bias) * 1.f for 0 < e, and (-1)^s * 2^(1 - bias) * 0.f for e = 0,
///    with bias = 2^(E-1) - 1;
///  - IEEE-style formats (f16, bf16, E5M2): e all ones is inf (f = 0) or NaN (f != 0);
///    OCP E4M3: e all ones is an ordinary binade, except S.1111.111 which is NaN; no inf;
///  - nearest-even: the nearer neighbour, on a tie the one whose last fraction bit is 0;
///  - overflow (IEEE 754 7.4): when the value rounded with an unbounded exponent range exceeds max.
///    The first value past max with an unbounded exponent is max + ulp(max); it is one more table
///    entry, "virtual", whose fraction parity decides the tie at max + ulp(max)/2;
///  - the overflow result: inf, or NaN for E4M3 (OCP, non-saturating); max when saturating (OCP
///    saturating mode). A NaN result is written as sign | all ones, the library's documented
///    choice among the NaN encodings (the definitions only require "a NaN").
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace mixtape::test::ref {

/// A format from its definition.
struct Format {
  const char* name;
  int exponent_bits;
  int mantissa_bits;
  bool ieee_specials;  ///< true: all-ones exponent = inf/NaN; false: OCP E4M3 (S.1111.111 is NaN)

  int bits() const { return 1 + exponent_bits + mantissa_bits; }
  int bias() const { return (1 << (exponent_bits - 1)) - 1; }
  std::uint32_t sign_bit() const { return 1u << (exponent_bits + mantissa_bits); }
  std::uint32_t all_ones_magnitude() const { return sign_bit() - 1; }
};

inline const Format kF16{"f16", 5, 10, true};
inline const Format kBF16{"bf16", 8, 7, true};
inline const Format kE4M3{"e4m3", 4, 3, false};
inline const Format kE5M2{"e5m2", 5, 2, true};

enum class Kind { finite, inf, nan };

/// A decoded encoding: its kind, its sign, and (finite and inf) its value, -0 included.
struct Decoded {
  Kind kind;
  bool negative;
  long double value;
};

/// Decodes `code` from the fields.
inline Decoded decode(const Format& f, std::uint32_t code) {
  const int m = f.mantissa_bits;
  const bool negative = ((code >> (f.exponent_bits + m)) & 1u) != 0;
  const std::uint32_t e = (code >> m) & ((1u << f.exponent_bits) - 1);
  const std::uint32_t frac = code & ((1u << m) - 1);
  const std::uint32_t e_all_ones = (1u << f.exponent_bits) - 1;
  const std::uint32_t frac_all_ones = (1u << m) - 1;
  if (f.ieee_specials && e == e_all_ones) {
    if (frac == 0) {
      return {Kind::inf, negative,
              negative ? -std::numeric_limits<long double>::infinity() : std::numeric_limits<long double>::infinity()};
    }
    return {Kind::nan, negative, std::numeric_limits<long double>::quiet_NaN()};
  }
  if (!f.ieee_specials && e == e_all_ones && frac == frac_all_ones) {
    return {Kind::nan, negative, std::numeric_limits<long double>::quiet_NaN()};
  }
  long double magnitude;
  if (e == 0) {
    magnitude = std::ldexp(static_cast<long double>(frac), 1 - f.bias() - m);  // 0.f * 2^(1-bias)
  } else {
    magnitude = std::ldexp(static_cast<long double>((1u << m) + frac), static_cast<int>(e) - f.bias() - m);
  }
  return {Kind::finite, negative, negative ? -magnitude : magnitude};
}

/// Rounds values to one format by table search.
class Encoder {
 public:
  explicit Encoder(const Format& f) : f_(f) {
    // Every non-negative finite value with its code, sorted by value.
    struct Entry {
      long double value;
      std::uint32_t code;
    };
    std::vector<Entry> entries;
    for (std::uint32_t code = 0; code < f.sign_bit(); ++code) {
      const Decoded d = decode(f, code);
      if (d.kind == Kind::finite) entries.push_back({d.value, code});
    }
    std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.value < b.value; });
    for (const Entry& e : entries) {
      values_.push_back(e.value);
      codes_.push_back(e.code);
      even_.push_back((e.code & 1u) == 0);  // the fraction's last bit is the code's last bit
    }
    max_ = values_.back();
    max_code_ = codes_.back();
    // The virtual value past max: max + ulp(max), with the parity of its significand.
    const long double ulp = max_ - values_[values_.size() - 2];
    const long double past = max_ + ulp;
    const int exponent = std::ilogb(past);
    const auto significand = static_cast<long long>(std::ldexp(past, f.mantissa_bits - exponent));
    values_.push_back(past);
    codes_.push_back(kOverflowCode);
    even_.push_back(significand % 2 == 0);
  }

  const Format& format() const { return f_; }
  long double max() const { return max_; }
  std::uint32_t max_code() const { return max_code_; }
  /// The finite values (non-negative, ascending) and their codes, without the virtual entry.
  std::size_t size() const { return values_.size() - 1; }
  long double value(std::size_t i) const { return values_[i]; }
  std::uint32_t code(std::size_t i) const { return codes_[i]; }

  std::uint32_t nan_code(bool negative) const { return (negative ? f_.sign_bit() : 0u) | f_.all_ones_magnitude(); }
  /// The non-saturating overflow result: inf, or NaN where the format has no inf.
  std::uint32_t overflow_code(bool negative) const {
    if (!f_.ieee_specials) return nan_code(negative);
    const std::uint32_t inf = ((1u << f_.exponent_bits) - 1) << f_.mantissa_bits;
    return (negative ? f_.sign_bit() : 0u) | inf;
  }

  /// Nearest-even encoding of x, non-saturating or saturating.
  std::uint32_t encode(long double x, bool saturate) const {
    const bool negative = std::signbit(x);
    const std::uint32_t sign = negative ? f_.sign_bit() : 0u;
    if (std::isnan(x)) return nan_code(negative);
    if (std::isinf(x)) return saturate ? (sign | max_code_) : overflow_code(negative);
    const long double a = std::fabs(x);
    const std::size_t i = lower_index(a);
    std::size_t pick;
    if (values_[i] == a) {
      pick = i;
    } else if (i + 1 >= values_.size()) {
      pick = values_.size() - 1;  // beyond the virtual value: overflow
    } else {
      const long double mid = (values_[i] + values_[i + 1]) / 2;  // exact
      if (a < mid) {
        pick = i;
      } else if (a > mid) {
        pick = i + 1;
      } else {
        pick = even_[i] ? i : i + 1;
      }
    }
    if (codes_[pick] == kOverflowCode) return saturate ? (sign | max_code_) : overflow_code(negative);
    return sign | codes_[pick];
  }

  /// The neighbours lo <= |x| <= hi of a finite x, as table indices (hi may be the virtual entry,
  /// index size()); lo == hi when |x| is a value of the format. |x| must be below the virtual value.
  struct Bracket {
    std::size_t lo;
    std::size_t hi;
  };
  Bracket bracket(long double x) const {
    const long double a = std::fabs(x);
    const std::size_t i = lower_index(a);
    if (values_[i] == a) return {i, i};
    return {i, i + 1};
  }
  /// Value of index i, where i == size() is the virtual value past max.
  long double bracket_value(std::size_t i) const { return values_[i]; }

 private:
  static constexpr std::uint32_t kOverflowCode = 0xFFFFFFFFu;

  /// The largest index whose value is <= a (a >= 0).
  std::size_t lower_index(long double a) const {
    const auto it = std::upper_bound(values_.begin(), values_.end(), a);
    return static_cast<std::size_t>(it - values_.begin()) - 1;
  }

  Format f_;
  std::vector<long double> values_;
  std::vector<std::uint32_t> codes_;
  std::vector<bool> even_;
  long double max_ = 0;
  std::uint32_t max_code_ = 0;
};

}  // namespace mixtape::test::ref
