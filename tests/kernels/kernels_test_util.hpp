// Shared helpers of the kernel tests: fresh random inputs, exact widening to double, element access
// through a view's layout, long-double references and the tolerances derived from the formats'
// epsilons and the reduction lengths.
#pragma once

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "mixtape/core/tensor.hpp"
#include "mixtape/kernels/detail/scalar.hpp"
#include "mixtape/numeric/numeric.hpp"

namespace ktest {

using namespace mixtape;

/// A fresh seed per run (inputs are never the same twice); INFO it so failures can be replayed.
inline std::uint64_t fresh_seed() {
  static std::random_device rd;
  return (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
}

template <class T>
double to_double(T x) {
  return kernels::detail::to_acc<double>(x);
}

template <class T>
const char* type_name() {
  if constexpr (std::is_same_v<T, double>) return "f64";
  else if constexpr (std::is_same_v<T, float>) return "f32";
  else if constexpr (std::is_same_v<T, f16>) return "f16";
  else if constexpr (std::is_same_v<T, bf16>) return "bf16";
  else if constexpr (std::is_same_v<T, e4m3>) return "e4m3";
  else if constexpr (std::is_same_v<T, e5m2>) return "e5m2";
  else if constexpr (std::is_same_v<T, std::int64_t>) return "i64";
  else if constexpr (std::is_same_v<T, std::int32_t>) return "i32";
  else if constexpr (std::is_same_v<T, std::int16_t>) return "i16";
  else if constexpr (std::is_same_v<T, std::uint16_t>) return "u16";
  else if constexpr (std::is_same_v<T, std::int8_t>) return "i8";
  else return "u8";
}

/// Unit roundoff u = eps / 2 of a float format; 0 for integers (exact).
template <class T>
constexpr double unit_roundoff() {
  if constexpr (kernels::FloatElement<T>) {
    return numeric_traits<T>::epsilon_value / 2;
  } else {
    return 0.0;
  }
}

/// Smallest positive subnormal of a float format (absolute floor of a rounding error); 0 for integers.
template <class T>
constexpr double subnormal_floor() {
  if constexpr (kernels::FloatElement<T>) {
    return numeric_traits<T>::min_subnormal_value;
  } else {
    return 0.0;
  }
}

/// gamma_L = L u / (1 - L u) (Higham, Accuracy and Stability, eq. 3.8): the relative error bound
/// of L roundings in sequence.
inline double gamma(double L, double u) {
  const double lu = L * u;
  REQUIRE(lu < 0.5);
  return lu / (1 - lu);
}

/// Element `linear` (row-major in the view's logical shape) of a host view.
template <class T>
T& elem(const Tensor<T>& t, std::int64_t linear) {
  const Layout& l = t.layout();
  std::int64_t off = l.offset;
  for (int d = l.rank() - 1; d >= 0; --d) {
    const std::int64_t i = linear % l.shape[d];
    linear /= l.shape[d];
    off += i * l.strides[d];
  }
  return static_cast<T*>(t.storage()->data())[off];
}

/// Fills a host view with values drawn in double from U[lo, hi) and rounded to T (nearest-even), so
/// the reference sees exactly the quantised values. Integers draw uniformly from [lo, hi].
template <class T>
void fill_random(const Tensor<T>& t, std::mt19937_64& rng, double lo, double hi) {
  std::uniform_real_distribution<double> dist(lo, hi);
  for (std::int64_t i = 0; i < t.numel(); ++i) {
    if constexpr (std::is_integral_v<T>) {
      std::uniform_int_distribution<long long> idist(static_cast<long long>(lo), static_cast<long long>(hi));
      elem(t, i) = static_cast<T>(idist(rng));
    } else {
      elem(t, i) = convert<T>(dist(rng));
    }
  }
}

/// Copies the values of one host view into another of the same shape (element by element).
template <class T>
void copy_values(const Tensor<T>& from, const Tensor<T>& to) {
  for (std::int64_t i = 0; i < from.numel(); ++i) elem(to, i) = elem(from, i);
}

/// The values of a view in row-major order, widened to double.
template <class T>
std::vector<double> values(const Tensor<T>& t) {
  std::vector<double> v(static_cast<std::size_t>(t.numel()));
  for (std::int64_t i = 0; i < t.numel(); ++i) v[i] = to_double(elem(t, i));
  return v;
}

/// Bitwise equality of two host views of one shape (the elements in row-major order).
template <class T>
bool bitwise_equal(const Tensor<T>& a, const Tensor<T>& b) {
  if (!(a.shape() == b.shape())) return false;
  for (std::int64_t i = 0; i < a.numel(); ++i) {
    if (std::memcmp(&elem(a, i), &elem(b, i), sizeof(T)) != 0) return false;
  }
  return true;
}

/// Index of the first element whose bits differ, or -1.
template <class T>
std::int64_t first_bitwise_difference(const T* a, const T* b, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i)
    if (std::memcmp(a + i, b + i, sizeof(T)) != 0) return i;
  return -1;
}

/// Reference statistics in long double (x86: 64-bit significand) with Neumaier compensation:
/// its own error is far below every tolerance below.
struct RefStats {
  long double sum = 0, sum_abs = 0, mean = 0, var = 0, mean_sq = 0, max = -INFINITY, amax = 0;
  bool nan = false;
};
inline RefStats ref_stats(const std::vector<double>& v, std::size_t begin, std::size_t n, std::size_t stride = 1) {
  RefStats r;
  long double s = 0, c = 0, sa = 0, sq = 0;
  for (std::size_t k = 0; k < n; ++k) {
    const long double x = v[begin + k * stride];
    if (std::isnan(static_cast<double>(x))) r.nan = true;
    const long double t = s + x;
    c += std::fabs(s) >= std::fabs(x) ? (s - t) + x : (x - t) + s;
    s = t;
    sa += std::fabs(x);
    sq += x * x;
    if (x > r.max) r.max = x;
    if (std::fabs(x) > r.amax) r.amax = std::fabs(x);
  }
  r.sum = s + c;
  r.sum_abs = sa;
  if (n > 0) {
    r.mean = r.sum / n;
    r.mean_sq = sq / n;
    long double m2 = 0;
    for (std::size_t k = 0; k < n; ++k) {
      const long double d = v[begin + k * stride] - r.mean;
      m2 += d * d;
    }
    r.var = m2 / n;
  }
  return r;
}

}  // namespace ktest
