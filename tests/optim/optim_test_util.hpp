// Shared helpers of the optimizer tests: flat host buffers with fresh random values, and plain
// long-double references of torch's AdamW and SGD that also carry a first-order bound on how far
// the kernel's stored values may be from the exact ones (derived below from the unit roundoffs of
// the update math and of each storage format).
#pragma once

#include "kernels/kernels_test_util.hpp"

#include <cmath>
#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "mixtape/kernels/optimizer.hpp"
#include "mixtape/optim/step_scalars.hpp"

namespace otest {

using namespace mixtape;
using ktest::elem;
using ktest::fresh_seed;
using ktest::to_double;
using kernels::StepScalarValues;

/// Unit roundoff of storing a U value as T: 0 when T holds every U value (at least as wide).
template <class T, class U>
constexpr double store_roundoff() {
  if constexpr (sizeof(T) >= sizeof(U)) {
    return 0.0;
  } else {
    return ktest::unit_roundoff<T>();
  }
}

/// A flat host buffer of n values from U[lo, hi) rounded to T (never all zero).
template <class T>
Tensor<T> random_buffer(const ExecutionContext& ctx, std::int64_t n, std::mt19937_64& rng, double lo, double hi,
                        MemoryRole role = MemoryRole::weights) {
  auto t = Tensor<T>::empty(ctx, {n}, role);
  ktest::fill_random(t, rng, lo, hi);
  return t;
}

/// Gradient-like values: random sign times U[0.1, 1) * scale (bounded away from 0, so the second
/// moment stays in the normal range of every format used and relative errors stay first order).
template <class T>
void fill_grad(const Tensor<T>& t, std::mt19937_64& rng, double scale = 1.0) {
  std::uniform_real_distribution<double> mag(0.1, 1.0);
  std::bernoulli_distribution sign(0.5);
  for (std::int64_t i = 0; i < t.numel(); ++i) elem(t, i) = convert<T>((sign(rng) ? -1.0 : 1.0) * mag(rng) * scale);
}

template <class T>
Tensor<T> copy_of(const ExecutionContext& ctx, const Tensor<T>& t) {
  auto c = Tensor<T>::empty(ctx, t.shape(), t.storage()->role());
  ktest::copy_values(t, c);
  return c;
}

/// How the kernel rounds, for the bounds: u = unit roundoff of the update math; s_* = unit
/// roundoffs of the stores (0 when exact); a stochastic store may land on either neighbour, so its
/// error is up to one ulp, 2 s, instead of s.
struct RoundingModel {
  double u = 0;
  double s_param = 0, s_m1 = 0, s_m2 = 0;
  int factors = 0;  // gradient factors applied in the kernel (inv_scale, clip_coef)
  double u_factor = 0;  // each factor's error: the in-place product's (G's opmath, then rounded to G)
  bool stochastic = false;
  double store(double s) const { return stochastic ? 2 * s : s; }
};

/// Relative error of the kernel's U value of 1 - beta^t against the exact 1 - beta^t for the
/// double beta: exponentiation by squaring makes at most 2 log2(t) + 1 double roundings of beta^t,
/// amplified by beta^t / (1 - beta^t) in the subtraction; then one rounding to U.
inline double bias_correction_error(double beta, std::int64_t t, double u) {
  const long double bt = std::pow(static_cast<long double>(beta), static_cast<long double>(t));
  const double roundings = 2 * std::log2(static_cast<double>(t)) + 1;
  return roundings * 0x1p-53 * static_cast<double>(bt / (1 - bt)) + u;
}

/// torch.optim.AdamW in long double, with first-order bounds on the kernel's deviation.
///
/// Derivation (|.| and the errors per element; u the update math's unit roundoff, a product or sum
/// adds u times its result; a constant rounded to U adds u times its term):
///   g' = g * factors:          dg  = f u_f |g'|  (u_f: G's opmath roundoff + G's, g' in G's normal range)
///   m  = b1 m + (1-b1) g':     dm  = b1 dm_s + (1-b1) dg + 3u (b1 |m_prev| + (1-b1) |g'|)
///   v  = b2 v + (1-b2) g'^2:   dv  = b2 dv_s + 2 (1-b2) |g'| dg + 4u (b2 v_prev + (1-b2) g'^2)
///   sqrt(v):                   dr  = dv / (2 sqrt v) + u sqrt v
///   d  = sqrt(v)/c2 + eps:     dd  = dr / c2 + (sqrt v / c2)(e_c2 + u) + u d + u eps
///   step = lr / bc1:           relative e_bc1 + u
///   upd = step m / d:          dupd = |upd| (e_bc1 + 3u + dd / d) + step dm / d
///   p  = p (1 - lr wd) - upd:  dp  = dp_s (1 - lr wd) + |p_prev| (3u lr wd + u) + dupd + u |p|
/// and each store adds s |x| (2 s when stochastic): dm_s = dm + s_m1 |m|, and so on. e_bc are
/// bias_correction_error; e_c2 is half of e_bc2 (a square root) plus u. The bounds are first order,
/// so the tests compare with twice them (second-order terms are below u times the first-order ones).
struct AdamRef {
  std::vector<long double> p, m, v;
  std::vector<double> ep, em, ev;

  template <class P, class M1, class M2>
  void init(const Tensor<P>& param, const Tensor<M1>& m1, const Tensor<M2>& m2) {
    const auto n = static_cast<std::size_t>(param.numel());
    p.resize(n), m.resize(n), v.resize(n), ep.assign(n, 0), em.assign(n, 0), ev.assign(n, 0);
    for (std::size_t i = 0; i < n; ++i) {
      p[i] = to_double(elem(param, i)), m[i] = to_double(elem(m1, i)), v[i] = to_double(elem(m2, i));
    }
  }

  /// One update with exact gradients g (after the factors), lr (the f32 value), step t.
  void step(const std::vector<long double>& g, const std::vector<char>& decay, double lr, std::int64_t t,
            const kernels::AdamWHyper& h, const RoundingModel& r) {
    const long double b1 = h.beta1, b2 = h.beta2, wd = h.weight_decay, eps = h.eps, lrl = lr;
    const long double bc1 = 1 - std::pow(b1, static_cast<long double>(t));
    const long double c2 = std::sqrt(1 - std::pow(b2, static_cast<long double>(t)));
    const double e_bc1 = bias_correction_error(h.beta1, t, r.u);
    const double e_c2 = bias_correction_error(h.beta2, t, r.u) / 2 + r.u;
    const double u = r.u;
    for (std::size_t i = 0; i < p.size(); ++i) {
      if (decay[i] < 0) continue;  // outside every segment: never touched
      const long double gi = g[i];
      const double dg = r.factors * r.u_factor * std::fabs(static_cast<double>(gi));
      const long double m_prev = m[i], v_prev = v[i], p_prev = p[i];
      const bool dec = decay[i] != 0 && wd != 0;
      m[i] = b1 * m_prev + (1 - b1) * gi;
      v[i] = b2 * v_prev + (1 - b2) * gi * gi;
      const long double sv = std::sqrt(v[i]);
      const long double d = sv / c2 + eps;
      const long double upd = lrl / bc1 * m[i] / d;
      p[i] = (dec ? p_prev * (1 - lrl * wd) : p_prev) - upd;
      // error propagation (double is plenty for bounds)
      const double am_prev = std::fabs(static_cast<double>(m_prev)), ag = std::fabs(static_cast<double>(gi));
      const double dm = h.beta1 * em[i] + (1 - h.beta1) * dg + 3 * u * (h.beta1 * am_prev + (1 - h.beta1) * ag);
      const double dv = h.beta2 * ev[i] + 2 * (1 - h.beta2) * ag * dg +
                        4 * u * (h.beta2 * static_cast<double>(v_prev) + (1 - h.beta2) * ag * ag);
      const double svd = static_cast<double>(sv), c2d = static_cast<double>(c2), dd_val = static_cast<double>(d);
      const double dr = dv / (2 * svd) + u * svd;
      const double dd = dr / c2d + (svd / c2d) * (e_c2 + u) + u * dd_val + u * h.eps;
      const double aupd = std::fabs(static_cast<double>(upd));
      const double step_size = static_cast<double>(lrl / bc1);
      const double dupd = aupd * (e_bc1 + 3 * u + dd / dd_val) + step_size * dm / dd_val;
      const double lwd = dec ? lr * h.weight_decay : 0.0;
      const double ap_prev = std::fabs(static_cast<double>(p_prev));
      const double dp = ep[i] * (1 - lwd) + (dec ? ap_prev * (3 * u * lwd + u) : 0.0) + dupd +
                        u * std::fabs(static_cast<double>(p[i]));
      em[i] = dm + r.store(r.s_m1) * std::fabs(static_cast<double>(m[i]));
      ev[i] = dv + r.store(r.s_m2) * static_cast<double>(v[i]);
      ep[i] = dp + r.store(r.s_param) * std::fabs(static_cast<double>(p[i]));
    }
  }
};

/// torch.optim.SGD in long double, with first-order bounds (same conventions as AdamRef):
///   g' = g * factors:               dg  = f u_f |g'|  (as for AdamRef)
///   g2 = g' + wd p (decay):         dg2 = dg + wd dp_s + u |g2| + 2u wd |p|
///   buf = g2 (t = 1) or mu buf + (1-damp) g2:  db = mu db_s + |1-damp| dg2 + 3u (mu |buf_prev| + |1-damp| |g2|)
///   g3 = buf, or g2 + mu buf (nesterov):       dg3 = dg2 + mu db + 3u (|g2| + mu |buf|)
///   p  = p - lr g3:                 dp  = dp_s + lr dg3 + u lr |g3| + u |p|
struct SgdRef {
  std::vector<long double> p, buf;
  std::vector<double> ep, eb;

  /// The buffer's initial values matter only where it is never written (outside every segment).
  template <class P, class M1>
  void init(const Tensor<P>& param, const Tensor<M1>& momentum_buffer) {
    const auto n = static_cast<std::size_t>(param.numel());
    p.resize(n), buf.assign(n, 0), ep.assign(n, 0), eb.assign(n, 0);
    for (std::size_t i = 0; i < n; ++i) p[i] = to_double(elem(param, i));
    if (momentum_buffer.defined())
      for (std::size_t i = 0; i < n; ++i) buf[i] = to_double(elem(momentum_buffer, i));
  }

  void step(const std::vector<long double>& g, const std::vector<char>& decay, double lr, std::int64_t t,
            const kernels::SgdHyper& h, const RoundingModel& r) {
    const double u = r.u, mu = h.momentum, omd = 1 - h.dampening;
    for (std::size_t i = 0; i < p.size(); ++i) {
      if (decay[i] < 0) continue;
      const bool dec = decay[i] != 0 && h.weight_decay != 0;
      const long double p_prev = p[i];
      const double ap = std::fabs(static_cast<double>(p_prev));
      long double g2 = g[i];
      double dg2 = r.factors * r.u_factor * std::fabs(static_cast<double>(g2));
      if (dec) {
        g2 += static_cast<long double>(h.weight_decay) * p_prev;
        dg2 += h.weight_decay * ep[i] + u * std::fabs(static_cast<double>(g2)) + 2 * u * h.weight_decay * ap;
      }
      long double g3 = g2;
      double dg3 = dg2;
      if (h.momentum != 0) {
        const long double b_prev = buf[i];
        double db;
        if (t == 1) {
          buf[i] = g2;
          db = dg2;
        } else {
          buf[i] = static_cast<long double>(mu) * b_prev + static_cast<long double>(omd) * g2;
          db = mu * eb[i] + std::fabs(omd) * dg2 +
               3 * u * (mu * std::fabs(static_cast<double>(b_prev)) + std::fabs(omd) * std::fabs(static_cast<double>(g2)));
        }
        if (h.nesterov) {
          g3 = g2 + static_cast<long double>(mu) * buf[i];
          dg3 = dg2 + mu * db + 3 * u * (std::fabs(static_cast<double>(g2)) + mu * std::fabs(static_cast<double>(buf[i])));
        } else {
          g3 = buf[i];
          dg3 = db;
        }
        eb[i] = db + r.store(r.s_m1) * std::fabs(static_cast<double>(buf[i]));
      }
      p[i] = p_prev - static_cast<long double>(lr) * g3;
      const double dp = ep[i] + lr * dg3 + u * lr * std::fabs(static_cast<double>(g3)) + u * std::fabs(static_cast<double>(p[i]));
      ep[i] = dp + r.store(r.s_param) * std::fabs(static_cast<double>(p[i]));
    }
  }
};

/// Checks |got[i] - ref[i]| <= 2 bound[i] (+ a floor for exact zeros) for every element, naming the
/// worst one on failure.
template <class T>
void require_within(const char* what, const Tensor<T>& got, const std::vector<long double>& ref,
                    const std::vector<double>& bound, std::uint64_t seed) {
  std::int64_t worst = -1;
  double worst_ratio = 0;
  for (std::int64_t i = 0; i < got.numel(); ++i) {
    const double err = std::fabs(to_double(elem(got, i)) - static_cast<double>(ref[i]));
    const double tol = 2 * bound[i] + 1e-300;
    if (!(err <= tol) && err / tol > worst_ratio) {
      worst_ratio = err / tol;
      worst = i;
    }
  }
  INFO(what << ": seed " << seed << ", " << got.numel() << " elements");
  if (worst >= 0) {
    INFO("worst element " << worst << ": got " << to_double(elem(got, worst)) << ", reference "
                          << static_cast<double>(ref[worst]) << ", bound " << 2 * bound[worst] << " (exceeded "
                          << worst_ratio << " times)");
    CHECK(worst < 0);
  }
}

/// The gradient values (exact) after the kernel's factors, in long double.
template <class G>
std::vector<long double> exact_grads(const Tensor<G>& g, double inv, double clip) {
  std::vector<long double> out(static_cast<std::size_t>(g.numel()));
  for (std::int64_t i = 0; i < g.numel(); ++i)
    out[i] = static_cast<long double>(to_double(elem(g, i))) * inv * clip;
  return out;
}

/// Per-element decay flags of a segment list over n elements (elements outside segments: -1).
inline std::vector<char> decay_flags(std::int64_t n, std::span<const kernels::DecaySegment> segs) {
  std::vector<char> f(static_cast<std::size_t>(n), -1);
  for (const auto& s : segs)
    for (std::int64_t i = s.begin; i < s.begin + s.length; ++i) f[i] = s.decay ? 1 : 0;
  return f;
}

/// Bitwise equality of two host tensors, reporting the first difference.
template <class T>
bool same_bits(const Tensor<T>& a, const Tensor<T>& b) {
  return a.numel() == b.numel() && ktest::first_bitwise_difference(a.data(), b.data(), a.numel()) < 0;
}

}  // namespace otest
