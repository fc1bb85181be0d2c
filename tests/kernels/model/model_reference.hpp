// References (long double, from inputs widened exactly from their storage types) and derived
// tolerances for the model kernels, shared by the host tests and the GPU test.
//
// Notation in the tolerance comments: u_a is the unit roundoff of the kernel's accumulate type
// (2^-24 for float, 2^-53 for double), u_o that of the output type, floor_o its smallest
// subnormal (an absolute floor for results that round to or near zero), gamma_n(u) = n u / (1 - n u)
// (Higham, eq. 3.8). Any summation order of n terms errs by at most gamma_{n-1}(u) sum |terms|
// (Higham, eq. 4.4), which covers the host's blocked sums and the device's trees alike. exp and
// log of the platform (libm on the host, CUDA's device functions) are within kExpU u_a.
// MREF_VERBOSE=1 prints the worst err/tol ratio of every comparison (how tight the bounds are).
#pragma once

#include "kernels/kernels_test_util.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace mref {

using namespace mixtape;
using LD = long double;

/// exp / log error of the platforms, in units of u_a (CUDA documents expf and logf at 2 ulps,
/// exp and log at 1; glibc within 1): 2 ulps = 4 u.
inline constexpr double kExpU = 4.0;

template <class T>
double u_of() {
  return ktest::unit_roundoff<T>();
}
template <class T>
double floor_of() {
  return ktest::subnormal_floor<T>();
}
inline double gam(double n, double u) {
  const double nu = std::max(n, 0.0) * u;
  if (!(nu < 0.5)) throw std::logic_error("gamma_n(u) needs n u < 0.5");  // cheaper than a REQUIRE per element
  return nu / (1 - nu);
}

/// Checks |got[i] - ref[i]| <= tol[i] for every i (NaN matches NaN), reporting the first failure
/// and the worst ratio.
inline void require_close(const std::string& what, const std::vector<double>& got, const std::vector<double>& ref,
                          const std::vector<double>& tol) {
  REQUIRE(got.size() == ref.size());
  REQUIRE(tol.size() == ref.size());
  std::int64_t first = -1;
  double worst = 0;
  std::int64_t worst_i = -1;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(ref[i]) && std::isnan(got[i])) continue;
    const double err = std::fabs(got[i] - ref[i]);
    const bool ok = err <= tol[i];  // false for NaN
    if (!ok && first < 0) first = static_cast<std::int64_t>(i);
    const double ratio = tol[i] > 0 ? err / tol[i] : (err > 0 ? INFINITY : 0);
    if (!(ratio <= worst)) {
      worst = ratio;
      worst_i = static_cast<std::int64_t>(i);
    }
  }
  if (std::getenv("MREF_VERBOSE")) std::printf("%s: worst err/tol %.3g (n %zu)\n", what.c_str(), worst, got.size());
  if (first >= 0) {
    std::ostringstream os;
    os.precision(17);
    os << what << ": first failure at " << first << ": got " << got[first] << " want " << ref[first] << " tol "
       << tol[first] << "; worst err/tol " << worst << " at " << worst_i << " of " << got.size();
    INFO(os.str());
    REQUIRE(first < 0);
  }
}

/// Bitwise equality of two value arrays, reporting the first difference.
template <class T>
void require_same_bits(const std::string& what, const std::vector<T>& a, const std::vector<T>& b) {
  REQUIRE(a.size() == b.size());
  const std::int64_t i = ktest::first_bitwise_difference(a.data(), b.data(), static_cast<std::int64_t>(a.size()));
  if (i >= 0) {
    INFO(what << ": first bit difference at " << i << " of " << a.size() << ": " << ktest::to_double(a[i]) << " vs "
              << ktest::to_double(b[i]));
    REQUIRE(i < 0);
  }
}

template <class T>
std::vector<double> widen(const std::vector<T>& v) {
  std::vector<double> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = ktest::to_double(v[i]);
  return out;
}

/// Adds the output rounding to a computation bound: |round_O(c) - r| <= u_o |r| + (1 + u_o) e + floor_o.
template <class O>
std::vector<double> with_output_rounding(const std::vector<double>& ref, const std::vector<double>& comp) {
  std::vector<double> tol(ref.size());
  for (std::size_t i = 0; i < ref.size(); ++i)
    tol[i] = u_of<O>() * std::fabs(ref[i]) + (1 + u_of<O>()) * comp[i] + floor_of<O>();
  return tol;
}

// ---------------------------------------------------------------- host tensors

/// A host tensor of `shape` with values drawn in double from U[lo, hi) and rounded to T.
template <class T>
Tensor<T> random_tensor(const ExecutionContext& ctx, const Shape& shape, std::mt19937_64& rng, double lo, double hi) {
  auto t = Tensor<T>::empty(ctx, shape);
  ktest::fill_random(t, rng, lo, hi);
  return t;
}

/// The elements of a dense host tensor.
template <class T>
std::vector<T> elements(const Tensor<T>& t) {
  return std::vector<T>(t.data(), t.data() + t.numel());
}

/// Sum of |w_i| e_i (how a weighted objective's value inherits the outputs' error bounds).
inline double weighted(const std::vector<double>& w, const std::vector<double>& e) {
  double s = 0;
  for (std::size_t i = 0; i < w.size(); ++i) s += std::fabs(w[i]) * e[i];
  return s;
}

/// sum_i w_i v_i in long double.
inline LD dot(const std::vector<double>& w, const std::vector<double>& v) {
  LD s = 0;
  for (std::size_t i = 0; i < w.size(); ++i) s += LD(w[i]) * v[i];
  return s;
}

// ---------------------------------------------------------------- GELU
inline constexpr LD kBeta = 0.797884560802865355879892119868763737L;  // sqrt(2 / pi)
inline constexpr LD kKappa = 0.044715L;

inline LD gelu(LD x) { return 0.5L * x * (1 + std::tanh(kBeta * (x + kKappa * x * x * x))); }
inline LD gelu_grad(LD x) {
  const LD t = std::tanh(kBeta * (x + kKappa * x * x * x));
  return 0.5L * (1 + t) + 0.5L * x * (1 - t * t) * kBeta * (1 + 3 * kKappa * x * x);
}
/// Error of t = tanh(k_beta (x + k_kappa x^3)) in A: the argument takes 6 roundings (the two
/// constants, x^2, x^3, the fma, the scaling: 6 u_a |arg|), which tanh passes on times 1 - t^2; portable_tanh itself is
/// within 5 ulps = 10 u_a |t| (measured in activation_test.cpp).
inline double gelu_tanh_error(double x, double u_a) {
  const double ax = std::fabs(x);
  const double arg = double(kBeta) * (ax + double(kKappa) * ax * ax * ax);
  const double t = std::tanh(arg);
  return 10 * u_a * t + (1 - t * t) * 6 * u_a * arg;
}
/// GELU forward: y = (0.5 x) (1 + t): 0.5 |x| (e_t + u_a |1 + t|) + u_a |y|.
inline double gelu_forward_error(double x, double u_a) {
  const double t = std::tanh(double(kBeta) * (x + double(kKappa) * x * x * x));
  return 0.5 * std::fabs(x) * (gelu_tanh_error(x, u_a) + u_a * std::fabs(1 + t)) + u_a * std::fabs(double(gelu(x)));
}
/// gelu'(x) = 0.5 (1 + t) + 0.5 x (1 - t^2) k_beta (1 + 3 k_kappa x^2): t's error enters times
/// 0.5 + |x| |t| k_beta (1 + 3 k_kappa x^2); the 6 roundings of the formula add 6 u_a times the sum of
/// its terms' magnitudes; dx = dy g one more u_a |dx|.
inline double gelu_backward_error(double x, double dy, double u_a) {
  const double ax = std::fabs(x);
  const double t = std::tanh(double(kBeta) * (x + double(kKappa) * x * x * x));
  const double w = double(kBeta) * (1 + 3 * double(kKappa) * x * x);
  const double terms = 0.5 * (1 + t) + 0.5 * ax * (1 - t * t) * w;
  const double e_g = (0.5 + ax * std::fabs(t) * w) * gelu_tanh_error(x, u_a) + 6 * u_a * terms;
  return std::fabs(dy) * e_g + u_a * std::fabs(dy * double(gelu_grad(x)));
}

// ---------------------------------------------------------------- LayerNorm
struct LayerNormRef {
  std::vector<double> y, mean, rstd;        // exact results
  std::vector<double> y_err, mean_err, rstd_err;  // computation bounds in A (before output rounding)
};

/// Forward reference over rows of `cols`. Bounds (per row, C = cols):
///   mean:  e_m = gamma_C(u_a) mean|x|;
///   var:   relative gamma_{C+3}(u_a) (the deviations round once, squares once, the sum; the mean's
///          own error enters only at second order because sum(x - mean) = 0), plus e_m^2;
///   rstd:  relative e_r = 0.5 e_var / (var + eps) + 3 u_a (the + eps, sqrt, division);
///   xhat:  e_x = (e_m + u_a |x - m|) rstd + |xhat| (e_r + u_a);
///   y:     |gamma| e_x + 2 u_a (|xhat gamma| + |beta|).
inline LayerNormRef layernorm_reference(const std::vector<double>& x, const std::vector<double>& gamma,
                                        const std::vector<double>& beta, std::int64_t rows, std::int64_t cols, double eps,
                                        double u_a) {
  LayerNormRef r;
  r.y.resize(x.size());
  r.y_err.resize(x.size());
  for (std::int64_t i = 0; i < rows; ++i) {
    const double* xr = x.data() + i * cols;
    LD s = 0, sa = 0;
    for (std::int64_t c = 0; c < cols; ++c) {
      s += xr[c];
      sa += std::fabs(xr[c]);
    }
    const LD m = s / cols;
    LD q = 0;
    for (std::int64_t c = 0; c < cols; ++c) q += (xr[c] - m) * (xr[c] - m);
    const LD var = q / cols;
    const LD rs = 1 / std::sqrt(var + eps);
    const double e_m = gam(double(cols), u_a) * double(sa / cols);
    const double e_var = gam(double(cols + 3), u_a) * double(var) + e_m * e_m;
    const double e_r = 0.5 * e_var / double(var + eps) + 3 * u_a;
    r.mean.push_back(double(m));
    r.rstd.push_back(double(rs));
    r.mean_err.push_back(e_m);
    r.rstd_err.push_back(e_r * double(rs));
    for (std::int64_t c = 0; c < cols; ++c) {
      const LD xhat = (xr[c] - m) * rs;
      const double e_x = (e_m + u_a * double(std::fabs(xr[c] - m))) * double(rs) + double(std::fabs(xhat)) * (e_r + u_a);
      r.y[i * cols + c] = double(xhat * gamma[c] + beta[c]);
      r.y_err[i * cols + c] = std::fabs(gamma[c]) * e_x + 2 * u_a * (double(std::fabs(xhat * gamma[c])) + std::fabs(beta[c]));
    }
  }
  return r;
}

struct LayerNormGradRef {
  std::vector<double> dx, dgamma, dbeta;
  std::vector<double> dx_err, dgamma_err, dbeta_err;
};

/// Backward reference from the statistics the op is given (mean, rstd as stored). Bounds:
///   xhat: 2 u_a |xhat|; dxhat = dy gamma: u_a |dxhat|;
///   mean1 = mean(dxhat): e1 = gamma_{C+1}(u_a) mean|dxhat|;
///   mean2 = mean(dxhat xhat): e2 = gamma_{C+4}(u_a) mean|dxhat xhat|;
///   dx = rstd (dxhat - (xhat mean2 + mean1)):
///     rstd (u_a|dxhat| + |xhat| e2 + 2 u_a |xhat mean2| + e1 + 3 u_a (|dxhat| + |xhat mean2| + |mean1|)) + u_a |dx|;
///   dgamma = sum_r dy xhat: gamma_{R+3}(u_a) sum|dy xhat|;  dbeta = sum_r dy: gamma_R(u_a) sum|dy|.
inline LayerNormGradRef layernorm_grad_reference(const std::vector<double>& x, const std::vector<double>& gamma,
                                                 const std::vector<double>& mean, const std::vector<double>& rstd,
                                                 const std::vector<double>& dy, std::int64_t rows, std::int64_t cols,
                                                 double u_a) {
  LayerNormGradRef r;
  r.dx.resize(x.size());
  r.dx_err.resize(x.size());
  std::vector<LD> dg(cols, 0), db(cols, 0), dga(cols, 0), dba(cols, 0);
  for (std::int64_t i = 0; i < rows; ++i) {
    const LD m = mean[i], rs = rstd[i];
    LD s1 = 0, s2 = 0, a1 = 0, a2 = 0;
    for (std::int64_t c = 0; c < cols; ++c) {
      const std::int64_t k = i * cols + c;
      const LD xhat = (x[k] - m) * rs;
      const LD dxhat = LD(dy[k]) * gamma[c];
      s1 += dxhat;
      s2 += dxhat * xhat;
      a1 += std::fabs(dxhat);
      a2 += std::fabs(dxhat * xhat);
      dg[c] += dy[k] * xhat;
      db[c] += dy[k];
      dga[c] += std::fabs(dy[k] * xhat);
      dba[c] += std::fabs(dy[k]);
    }
    const LD mean1 = s1 / cols, mean2 = s2 / cols;
    const double e1 = gam(double(cols + 1), u_a) * double(a1 / cols);
    const double e2 = gam(double(cols + 4), u_a) * double(a2 / cols);
    for (std::int64_t c = 0; c < cols; ++c) {
      const std::int64_t k = i * cols + c;
      const LD xhat = (x[k] - m) * rs;
      const LD dxhat = LD(dy[k]) * gamma[c];
      const LD v = rs * (dxhat - xhat * mean2 - mean1);
      r.dx[k] = double(v);
      const double axm = double(std::fabs(xhat * mean2));
      r.dx_err[k] = double(rs) * (u_a * double(std::fabs(dxhat)) + double(std::fabs(xhat)) * e2 + 2 * u_a * axm + e1 +
                                  3 * u_a * (double(std::fabs(dxhat)) + axm + double(std::fabs(mean1)))) +
                    u_a * double(std::fabs(v));
    }
  }
  for (std::int64_t c = 0; c < cols; ++c) {
    r.dgamma.push_back(double(dg[c]));
    r.dbeta.push_back(double(db[c]));
    r.dgamma_err.push_back(gam(double(rows + 3), u_a) * double(dga[c]));
    r.dbeta_err.push_back(gam(double(rows), u_a) * double(dba[c]));
  }
  return r;
}

// ---------------------------------------------------------------- softmax

/// The rescaling steps of the device's online (max, sum) merge along one term's path (see
/// softmax_reference): (kExpU + 2) u_a each, ceil(n / 32) + 8 of them.
inline double online_merge_error(std::int64_t n, double u_a) {
  return (kExpU + 2) * (double((n + 31) / 32) + 8) * u_a;
}
inline std::int64_t visible(std::int64_t row, std::int64_t cols, std::int64_t tile, bool causal) {
  return causal ? std::min(row % tile + 1, cols) : cols;
}

/// Forward reference. Bounds per row: z = scale x rounds once (u_a |z|); z - max rounds once
/// (u_a |z - max| <= 2 u_a max|z|); each exp errs by kExpU u_a plus its argument's error. The CUDA
/// kernels' online softmax also rescales partial sums by exp(m_old - m_new) whenever a larger
/// maximum arrives: each rescale errs by (kExpU + 2) u_a plus u_a |m_old - m_new|, a term meets at
/// most ceil(n / 32) of them along its thread's chain plus 8 in the warp and block trees, and the
/// |m_old - m_new| along any chain add up to at most the spread 2 max|z| (online_merge_error). So
/// each term e_i has relative error E = (kExpU + 5 max|z|) u_a + online_merge_error(n); the sum adds
/// gamma_n(u_a); the division one u_a: |y - Y| <= (2 E + gamma_n(u_a) + u_a) Y.
inline void softmax_reference(const std::vector<double>& x, std::int64_t rows, std::int64_t cols, std::int64_t tile,
                              double scale, bool causal, double u_a, std::vector<double>& y, std::vector<double>& err) {
  y.assign(x.size(), 0.0);
  err.assign(x.size(), 0.0);
  for (std::int64_t i = 0; i < rows; ++i) {
    const std::int64_t vis = visible(i, cols, tile, causal);
    LD m = -INFINITY, zmax = 0;
    for (std::int64_t c = 0; c < vis; ++c) {
      const LD z = LD(scale) * x[i * cols + c];
      m = std::max(m, z);
      zmax = std::max(zmax, std::fabs(z));
    }
    LD s = 0;
    for (std::int64_t c = 0; c < vis; ++c) s += std::exp(LD(scale) * x[i * cols + c] - m);
    const double e = (kExpU + 5 * double(zmax)) * u_a + online_merge_error(vis, u_a);
    for (std::int64_t c = 0; c < vis; ++c) {
      const LD v = std::exp(LD(scale) * x[i * cols + c] - m) / s;
      y[i * cols + c] = double(v);
      err[i * cols + c] = (2 * e + gam(double(vis), u_a) + u_a) * double(v);
    }
  }
}

/// Backward reference from the y the op is given: dot = sum dy y errs by gamma_{n+1}(u_a) sum|dy y|;
/// dx = scale (y (dy - dot)): |scale| (|y| (e_dot + u_a (|dy| + |dot|)) + 2 u_a |y (dy - dot)|) + u_a |dx|
/// (the scale itself is rounded to A: u_a |dx| more).
inline void softmax_grad_reference(const std::vector<double>& y, const std::vector<double>& dy, std::int64_t rows,
                                   std::int64_t cols, std::int64_t tile, double scale, bool causal, double u_a,
                                   std::vector<double>& dx, std::vector<double>& err) {
  dx.assign(y.size(), 0.0);
  err.assign(y.size(), 0.0);
  for (std::int64_t i = 0; i < rows; ++i) {
    const std::int64_t vis = visible(i, cols, tile, causal);
    LD dot = 0, adot = 0;
    for (std::int64_t c = 0; c < vis; ++c) {
      dot += LD(dy[i * cols + c]) * y[i * cols + c];
      adot += std::fabs(LD(dy[i * cols + c]) * y[i * cols + c]);
    }
    const double e_dot = gam(double(vis + 1), u_a) * double(adot);
    for (std::int64_t c = 0; c < vis; ++c) {
      const std::int64_t k = i * cols + c;
      const LD inner = LD(y[k]) * (dy[k] - dot);
      dx[k] = double(LD(scale) * inner);
      err[k] = std::fabs(scale) * (std::fabs(y[k]) * (e_dot + u_a * (std::fabs(dy[k]) + double(std::fabs(dot)))) +
                                   2 * u_a * double(std::fabs(inner))) +
               2 * u_a * std::fabs(dx[k]);
    }
  }
}

// ---------------------------------------------------------------- cross-entropy
struct CrossEntropyRef {
  std::vector<double> loss, lse, loss_err, lse_err;
  double mean = 0, mean_err = 0;
};

/// Forward reference. Per row (V classes, m = max z, spread = max z - min z): each exp(z - m) errs
/// relatively by (kExpU + |z - m|) u_a (its argument rounds once), the device's online rescaling by
/// up to spread u_a + online_merge_error(V) more, so the sum s by
/// E = (kExpU + 2 spread) u_a + online_merge_error(V) + gamma_V(u_a); log s adds kExpU u_a |log s|
/// (plus E, its argument's relative error); lse = m + log s one u_a |lse|; loss = lse - z_t one
/// u_a |loss|. The mean sums the rows' stored losses in double:
/// (mean of the rows' bounds, incl. their rounding to L) + gamma_N(2^-53) mean|loss|.
template <class L>
CrossEntropyRef cross_entropy_reference(const std::vector<double>& z, const std::vector<std::int64_t>& t,
                                        std::int64_t rows, std::int64_t vocab, double u_a) {
  CrossEntropyRef r;
  LD total = 0, total_err = 0, total_abs = 0;
  for (std::int64_t i = 0; i < rows; ++i) {
    const double* zr = z.data() + i * vocab;
    LD m = -INFINITY;
    for (std::int64_t c = 0; c < vocab; ++c) m = std::max<LD>(m, zr[c]);
    LD s = 0, spread = 0;
    for (std::int64_t c = 0; c < vocab; ++c) {
      s += std::exp(zr[c] - m);
      spread = std::max<LD>(spread, m - zr[c]);
    }
    const LD ls = std::log(s);
    const LD lse = m + ls;
    const LD loss = lse - zr[t[i]];
    const double e_s = (kExpU + 2 * double(spread)) * u_a + online_merge_error(vocab, u_a) + gam(double(vocab), u_a);
    const double e_lse = e_s + kExpU * u_a * double(std::fabs(ls)) + u_a * double(std::fabs(lse));
    const double e_loss = e_lse + u_a * double(std::fabs(loss));
    r.lse.push_back(double(lse));
    r.loss.push_back(double(loss));
    r.lse_err.push_back(e_lse);
    r.loss_err.push_back(e_loss);
    total += loss;
    total_abs += std::fabs(loss);
    total_err += e_loss + u_of<L>() * std::fabs(loss) + floor_of<L>();
  }
  r.mean = double(total / rows);
  r.mean_err = double(total_err / rows) + gam(double(rows), u_of<double>()) * double(total_abs / rows);
  return r;
}

/// Backward reference from the lse the op is given: p = exp(z - lse) errs relatively by
/// (kExpU + |z - lse|) u_a; c = dloss / N by u_a (2 u_a when N is not exact in A); g = (p - [v == t]) c:
/// |c| (p (kExpU + |z - lse|) u_a + u_a |p - onehot|) + 3 u_a |g|.
inline void cross_entropy_grad_reference(const std::vector<double>& z, const std::vector<std::int64_t>& t,
                                         const std::vector<double>& lse, double dloss, std::int64_t rows,
                                         std::int64_t vocab, double u_a, std::vector<double>& g,
                                         std::vector<double>& err) {
  g.assign(z.size(), 0.0);
  err.assign(z.size(), 0.0);
  const LD c = LD(dloss) / rows;
  for (std::int64_t i = 0; i < rows; ++i) {
    for (std::int64_t v = 0; v < vocab; ++v) {
      const std::int64_t k = i * vocab + v;
      const LD p = std::exp(LD(z[k]) - lse[i]);
      const LD d = p - (v == t[i] ? 1 : 0);
      g[k] = double(d * c);
      err[k] = double(std::fabs(c)) * (double(p) * (kExpU + std::fabs(z[k] - lse[i])) * u_a + u_a * double(std::fabs(d))) +
               3 * u_a * std::fabs(g[k]);
    }
  }
}

// ---------------------------------------------------------------- finite differences (f64)

/// Checks analytic derivatives of a scalar objective f against central differences.
/// For each coordinate: D(h) = (f(x + h) - f(x - h)) / 2h at h and 2h. Truncation error of D(h) is
/// about (D(2h) - D(h)) / 3 (Richardson), so |D(2h) - D(h)| bounds it with margin; rounding:
/// f's value errs by at most `rounding` (the caller's bound, c u_64 sum|terms|), so D(h) by
/// rounding / h. tol = |D(2h) - D(h)| + 2 rounding / h + 1e-12 |g|.
inline void require_gradient_matches(const std::string& what, double& coord, double analytic,
                                     const std::function<LD()>& f, double rounding) {
  const double x0 = coord;
  const double h = 1e-5 * std::max(1.0, std::fabs(x0));
  auto diff = [&](double step) {
    coord = x0 + step;
    const LD fp = f();
    coord = x0 - step;
    const LD fm = f();
    coord = x0;
    return double((fp - fm) / (2 * LD(step)));
  };
  const double d1 = diff(h), d2 = diff(2 * h);
  const double tol = std::fabs(d2 - d1) + 2 * rounding / h + 1e-12 * std::fabs(analytic);
  INFO(what << ": analytic " << analytic << " central difference " << d1 << " (2h: " << d2 << ") tol " << tol);
  REQUIRE(std::fabs(analytic - d1) <= tol);
}

/// Indices of up to `count` coordinates out of n, spread evenly (first and last included).
inline std::vector<std::int64_t> sample_indices(std::int64_t n, std::int64_t count) {
  std::vector<std::int64_t> out;
  if (n <= count) {
    for (std::int64_t i = 0; i < n; ++i) out.push_back(i);
    return out;
  }
  for (std::int64_t k = 0; k < count; ++k) out.push_back(k * (n - 1) / (count - 1));
  return out;
}

}  // namespace mref
