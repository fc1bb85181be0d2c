// The exact f64 reference of the fused causal self-attention and its derived tolerances, shared
// by the host test (attention_test.cpp) and the GPU test (attention_cuda.cpp).
//
// Tolerances (first-order error analysis, u_T = unit roundoff of the operand type, u_A of the
// compute type f32, gamma_n = n u_A / (1 - n u_A), s = 1/sqrt(D), everything below evaluated in
// f64 from the T-rounded inputs; p, dP, D, dS are the exact values):
//  - scores: an f32 dot of D products (exact for bf16, one rounding each for f32) then the scale:
//      |dz_ij| <= ez_i := s gamma_{D+1} max_j sum_d |q_id k_jd| + 2 u_A max_j |z_ij|
//    (the CUDA kernels scale by fl(s log2 e) to work in base 2: one more rounding of the scale).
//  - softmax weights: a perturbation dz of every score moves p_j by the factor
//    e^{dz_j} / sum_k p_k e^{dz_k}, so relatively by <= 2 ez; exp adds <= 4 u_A (libm and CUDA
//    expf are within 2 ulp), the row sum gamma_{T+2}; rounding P (or exp(z - m)) to T adds u_T.
//    Hence y (an f32 sum of T terms, rounded once to T):
//      err_y = (u_T + 2 ez + 8 u_A + gamma_{T+2}) sum_j p_j |v_j|,  tol_y = err_y + u_T (|y| + err_y).
//  - lse = m + log(l): |dlse| <= ez + gamma_{T+1} + 4 u_A (|lse| + 1)  (log's error included).
//  - backward: P recomputed from lse has relative error eP_i = ez_i + tol_lse_i + 4 u_A + u_A |lse_i|
//    (the last for CUDA's rounded lse log2 e). dP is an
//    f32 dot: edP_ij = gamma_{D} sum_d |dy_id v_jd|. D_i: the fused path uses the rounded y
//    (sum_d |dy_id| tol_y_id + gamma_D sum_d |dy_id y_id|), the reference path rowsum(dP * P_T)
//    (sum_j (u_T + eP_i) p_ij |dP_ij| + gamma_T sum_j p_ij |dP_ij|); eD_i = the larger. Then
//      E_ij = s p_ij ((eP_i + 2 u_T) |dP_ij - D_i| + edP_ij + eD_i)   (2 u_T: P and dS rounded to T)
//    bounds the computed dS (before the products), and for the three products (f32 sums of T terms):
//      err_dq_id = sum_j (E_ij + gamma_T (|dS_ij| + E_ij)) |k_jd|,   err_dk_jd likewise with |q_id|,
//      err_dv_jd = sum_i p_ij (eP_i + u_T + gamma_T (1 + eP_i + u_T)) |dy_id|,
//    each tol = err + u_T (|exact| + err) for the final rounding.
//  - f16 only (bf16's subnormals are below 1e-38): a value rounded into the subnormal range has an
//    absolute error of up to half the smallest subnormal, sub; P (or exp(z - m) with l >= 1) adds
//    sub sum_j |v_jd| to err_y and sub |dy_id| per term to err_dv; dS adds sub (1 + s |dP - D|) to E;
//    each final rounding adds sub.
// The fused and the reference path each satisfy these bounds against the exact values, so they
// differ by at most twice them (host fused vs device fused likewise).
#pragma once

#include "kernels_test_util.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <vector>

namespace ktest {

struct AttentionCase {
  std::int64_t b, t, h, d;
};

/// Exact values and tolerances for one problem, every array in the layout of its tensor.
struct Exact {
  std::vector<double> y, tol_y, lse, tol_lse, dqkv, tol_dqkv;
};

/// The rounding errors the bounds take: `op`, the unit roundoff of the mma operands P and dS (u_T
/// above); `out`, of the outputs' final rounding (u_T too, but f32's for TF32 kernels, whose
/// operands are TF32 and outputs f32); `sub`, the absolute error of a rounding into the subnormals;
/// `accum`, of each f32 addition (u_A).
struct Roundoffs {
  double op, out, sub, accum;
};

/// Exact values and tolerances of a problem whose q, k, v and dy are exact in the operand format.
inline Exact exact_attention(const AttentionCase& cs, const std::vector<double>& qkv, const std::vector<double>& dy,
                             const Roundoffs& ro) {
  const double uT = ro.op, uA = ro.accum, sub = ro.sub;
  const std::int64_t B = cs.b, Tn = cs.t, H = cs.h, D = cs.d, C = H * D, ld = 3 * C;
  const double s = 1.0 / std::sqrt(static_cast<double>(D));
  const double gD = ktest::gamma(static_cast<double>(D + 1), uA), gT = ktest::gamma(static_cast<double>(Tn + 2), uA);
  Exact ex;
  ex.y.assign(B * Tn * C, 0);
  ex.tol_y.assign(B * Tn * C, 0);
  ex.lse.assign(B * H * Tn, 0);
  ex.tol_lse.assign(B * H * Tn, 0);
  ex.dqkv.assign(B * Tn * ld, 0);
  ex.tol_dqkv.assign(B * Tn * ld, 0);
  std::vector<double> p(Tn * Tn), dp(Tn * Tn), ds(Tn * Tn), E(Tn * Tn), eP(Tn), Drow(Tn);
  // The final rounding to T: relative u_T (ro.out), or absolute `sub` in the subnormal range.
  auto fin = [uO = ro.out, sub](double exact, double err) { return err + uO * (std::abs(exact) + err) + sub; };
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t h = 0; h < H; ++h) {
      const std::int64_t bh = b * H + h;
      auto q = [&](std::int64_t i, std::int64_t d) { return qkv[(b * Tn + i) * ld + h * D + d]; };
      auto k = [&](std::int64_t i, std::int64_t d) { return qkv[(b * Tn + i) * ld + C + h * D + d]; };
      auto v = [&](std::int64_t i, std::int64_t d) { return qkv[(b * Tn + i) * ld + 2 * C + h * D + d]; };
      auto g = [&](std::int64_t i, std::int64_t d) { return dy[(b * Tn + i) * C + h * D + d]; };
      auto yi = [&](std::int64_t i, std::int64_t d) -> double& { return ex.y[(b * Tn + i) * C + h * D + d]; };
      for (std::int64_t i = 0; i < Tn; ++i) {
        double m = -1e300, absdot = 0, zmax = 0;
        std::vector<double> z(i + 1);
        for (std::int64_t j = 0; j <= i; ++j) {
          double acc = 0, aa = 0;
          for (std::int64_t d = 0; d < D; ++d) {
            acc += q(i, d) * k(j, d);
            aa += std::abs(q(i, d) * k(j, d));
          }
          z[j] = s * acc;
          m = std::max(m, z[j]);
          absdot = std::max(absdot, aa);
          zmax = std::max(zmax, std::abs(z[j]));
        }
        double l = 0;
        for (std::int64_t j = 0; j <= i; ++j) l += std::exp(z[j] - m);
        for (std::int64_t j = 0; j <= i; ++j) p[i * Tn + j] = std::exp(z[j] - m) / l;
        const double ez = s * gD * absdot + 2 * uA * zmax;
        const double lse = m + std::log(l);
        ex.lse[bh * Tn + i] = lse;
        ex.tol_lse[bh * Tn + i] = ez + gT + 4 * uA * (std::abs(lse) + 1);
        eP[i] = ez + ex.tol_lse[bh * Tn + i] + 4 * uA + uA * std::abs(lse);  // + fl(lse log2 e) on CUDA
        for (std::int64_t d = 0; d < D; ++d) {
          double acc = 0, apv = 0, av = 0;
          for (std::int64_t j = 0; j <= i; ++j) {
            acc += p[i * Tn + j] * v(j, d);
            apv += p[i * Tn + j] * std::abs(v(j, d));
            av += std::abs(v(j, d));
          }
          yi(i, d) = acc;
          ex.tol_y[(b * Tn + i) * C + h * D + d] = fin(acc, (uT + 2 * ez + 8 * uA + gT) * apv + sub * av);
        }
      }
      // Backward.
      for (std::int64_t i = 0; i < Tn; ++i) {
        double dd = 0, e_fused = 0;
        for (std::int64_t d = 0; d < D; ++d) {
          dd += g(i, d) * yi(i, d);
          e_fused += std::abs(g(i, d)) * ex.tol_y[(b * Tn + i) * C + h * D + d] + gD * std::abs(g(i, d) * yi(i, d));
        }
        Drow[i] = dd;
        double e_ref = 0;
        for (std::int64_t j = 0; j <= i; ++j) {
          double acc = 0, aa = 0;
          for (std::int64_t d = 0; d < D; ++d) {
            acc += g(i, d) * v(j, d);
            aa += std::abs(g(i, d) * v(j, d));
          }
          dp[i * Tn + j] = acc;
          E[i * Tn + j] = aa * gD;  // edP for now
          e_ref += (uT + eP[i] + gT) * p[i * Tn + j] * std::abs(acc);
        }
        const double eD = std::max(e_fused, e_ref);
        for (std::int64_t j = 0; j <= i; ++j) {
          const double pij = p[i * Tn + j];
          ds[i * Tn + j] = s * pij * (dp[i * Tn + j] - dd);
          E[i * Tn + j] = s * pij * ((eP[i] + 2 * uT) * std::abs(dp[i * Tn + j] - dd) + E[i * Tn + j] + eD) +
                          sub * (1 + s * std::abs(dp[i * Tn + j] - dd));  // dS and P into subnormals
        }
      }
      for (std::int64_t d = 0; d < D; ++d) {
        for (std::int64_t i = 0; i < Tn; ++i) {  // dq_i = sum_j dS_ij k_j
          double acc = 0, err = 0;
          for (std::int64_t j = 0; j <= i; ++j) {
            acc += ds[i * Tn + j] * k(j, d);
            err += (E[i * Tn + j] + gT * (std::abs(ds[i * Tn + j]) + E[i * Tn + j])) * std::abs(k(j, d));
          }
          const std::int64_t at = (b * Tn + i) * ld + h * D + d;
          ex.dqkv[at] = acc;
          ex.tol_dqkv[at] = fin(acc, err);
        }
        for (std::int64_t j = 0; j < Tn; ++j) {  // dk_j = sum_i dS_ij q_i, dv_j = sum_i P_ij dy_i
          double ak = 0, ek = 0, av = 0, evv = 0;
          for (std::int64_t i = j; i < Tn; ++i) {
            const double pij = p[i * Tn + j];
            ak += ds[i * Tn + j] * q(i, d);
            ek += (E[i * Tn + j] + gT * (std::abs(ds[i * Tn + j]) + E[i * Tn + j])) * std::abs(q(i, d));
            av += pij * g(i, d);
            evv += (pij * (eP[i] + uT + gT * (1 + eP[i] + uT)) + sub) * std::abs(g(i, d));
          }
          const std::int64_t at = (b * Tn + j) * ld + h * D + d;
          ex.dqkv[at + C] = ak;
          ex.tol_dqkv[at + C] = fin(ak, ek);
          ex.dqkv[at + 2 * C] = av;
          ex.tol_dqkv[at + 2 * C] = fin(av, evv);
        }
      }
    }
  return ex;
}

/// exact_attention for operands and outputs of type T. `accum_u`: the unit roundoff of each f32
/// addition, u_A = 2^-24 on the host; tensor cores' f32 accumulation is not specified to round to
/// nearest, so the GPU test bounds it by 2 u_A (truncation).
template <class T>
Exact exact_attention(const AttentionCase& cs, const std::vector<double>& qkv, const std::vector<double>& dy,
                      double accum_u = ktest::unit_roundoff<float>()) {
  const double uT = ktest::unit_roundoff<T>();
  return exact_attention(cs, qkv, dy, Roundoffs{uT, uT, ktest::subnormal_floor<T>() / 2, accum_u});
}

/// f32 rounded to TF32 as cvt.rna.tf32.f32 does (nearest, ties away from zero; finite inputs).
inline float round_tf32(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  u = (u + 0x1000u) & ~0x1FFFu;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

/// The TF32 kernels' roundoffs: operands (P, dS) to TF32 (u = 2^-11, nearest), outputs to f32, and
/// the subnormal floor of TF32 (f32's exponent range with 10 fraction bits: 2^-136), halved.
inline Roundoffs tf32_roundoffs(double accum_u) {
  return Roundoffs{std::ldexp(1.0, -11), ktest::unit_roundoff<float>(), std::ldexp(1.0, -137), accum_u};
}

/// |got - want| <= scale * tol elementwise; reports the worst element relative to its tolerance.
inline void require_within(const char* what, const std::vector<double>& got, const std::vector<double>& want,
                    const std::vector<double>& tol, double scale = 1.0) {
  REQUIRE(got.size() == want.size());
  std::size_t worst = 0;
  double worst_ratio = -1;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double err = std::abs(got[i] - want[i]), t = scale * tol[i] + 1e-300;
    const double r = std::isnan(err) ? 1e300 : err / t;
    if (r > worst_ratio) {
      worst_ratio = r;
      worst = i;
    }
  }
  INFO(what << ": worst element " << worst << " got " << got[worst] << " want " << want[worst] << " tolerance "
            << scale * tol[worst] << " (error / tolerance " << worst_ratio << ")");
  CHECK(worst_ratio <= 1.0);
}

}  // namespace ktest
