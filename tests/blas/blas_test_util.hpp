// Shared pieces of the GEMM tests: host buffers of a runtime dtype, fresh random problems, a plain
// reference GEMM in long double, and the error bound every result is checked against.
//
// Error model (Higham, Accuracy and Stability, ch. 3), per output element, with S = sum_k |a_ik b_kj|
// over the operands as stored (exactly widened), u_acc the unit roundoff of the accumulator
// (2^-24 for f32, 2^-53 for f64) and u_out that of the output type:
//  - the dot product of k terms: |err| <= gamma_{k+1} S ~ (k + 1) u_acc S (products of f16 / bf16
//    / f32 / f64 values are exact inside an FMA or in f32 for 16-bit formats; k additions, plus one
//    more for the sum of KC-block partials). TF32 tensor cores first round both operands to
//    10-bit mantissas (u = 2^-11): + 2 u_tf32 S. `vdpbf16ps` flushes subnormal results: + k 2^-126;
//  - alpha, beta C and the bias each add at most u_acc times their magnitude (3 roundings);
//  - v = alpha s + beta c + bias therefore has E_v = ((k + 4) u_acc + 2 u_in) |alpha| S
//    + 4 u_acc (|beta c| + |bias| + |v|) + k 2^-126 |alpha|;
//  - GELU: |gelu'| <= 1.13, so E_gelu = 1.2 E_v + e_gelu (1 + |v|), e_gelu the evaluation error
//    per unit (host: 8 u_acc; a few ulps of the tanh); GELU backward: E = |g'(x)| E_v
//    + |v| e_dgelu (1 + |x|^3), x the saved pre-activation (read identically by both sides);
//  - the stored output adds u_out |y| and, for 16-bit outputs, half the smallest subnormal;
//  - a bias gradient over r rows sums the per-element bounds plus (r + 1) u_acc sum |y| and its own
//    rounding.
// The bound is worst-case (errors do not cancel), so a correct GEMM sits far inside it, while a
// wrong index, transpose, scale or epilogue gives errors of the order of the values themselves.
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "mixtape/blas/gemm_types.hpp"
#include "mixtape/blas/detail/gemm_validate.hpp"
#include "mixtape/core/dtype.hpp"
#include "mixtape/kernels/detail/scalar.hpp"
#include "mixtape/numeric/numeric.hpp"

namespace btest {

using namespace mixtape;
using i64 = std::int64_t;
using blas::Epilogue;

inline std::uint64_t fresh_seed() {
  static std::random_device rd;
  return (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
}

inline double unit_roundoff(DType t) {
  switch (t) {
    case DType::f64: return 0x1p-53;
    case DType::f32: return 0x1p-24;
    case DType::f16: return 0x1p-11;
    case DType::bf16: return 0x1p-8;
    default: return 0;
  }
}
/// Half the smallest subnormal: the largest error of rounding a tiny value.
inline double underflow_floor(DType t) {
  switch (t) {
    case DType::f16: return 0x1p-25;
    case DType::bf16: return 0x1p-134;
    case DType::f32: return 0x1p-150;
    default: return 0;
  }
}

/// A host array of a runtime dtype (f64, f32, f16, bf16), 64-byte aligned.
class Buffer {
 public:
  Buffer() = default;
  Buffer(DType dtype, i64 count) : dtype_(dtype), count_(count), bytes_(static_cast<std::size_t>(std::max<i64>(count, 1) * elem() + 64)) {}
  // Copies the elements (the aligned start differs between allocations).
  Buffer(const Buffer& o) : Buffer(o.dtype_, o.count_) { std::memcpy(data(), o.data(), static_cast<std::size_t>(nbytes())); }
  Buffer& operator=(const Buffer& o) {
    if (this != &o) {
      Buffer t(o);
      std::swap(dtype_, t.dtype_);
      std::swap(count_, t.count_);
      std::swap(bytes_, t.bytes_);
    }
    return *this;
  }
  Buffer(Buffer&&) = default;
  Buffer& operator=(Buffer&&) = default;
  DType dtype() const { return dtype_; }
  i64 count() const { return count_; }
  i64 elem() const { return dtype_bits(dtype_) / 8; }
  i64 nbytes() const { return count_ * elem(); }
  void* data() {
    auto p = reinterpret_cast<std::uintptr_t>(bytes_.data());
    return reinterpret_cast<void*>((p + 63) / 64 * 64);
  }
  const void* data() const { return const_cast<Buffer*>(this)->data(); }
  double get(i64 i) const {
    return visit_dtype(dtype_, [&]<class T>() -> double {
      if constexpr (kernels::FloatElement<T>) return kernels::detail::to_acc<double>(static_cast<const T*>(data())[i]);
      else return 0.0;
    });
  }
  void set(i64 i, double v) {
    visit_dtype(dtype_, [&]<class T>() {
      if constexpr (kernels::FloatElement<T>) static_cast<T*>(data())[i] = convert<T>(v);
    });
  }
  void fill_uniform(std::mt19937_64& rng, double lo, double hi) {
    std::uniform_real_distribution<double> d(lo, hi);
    for (i64 i = 0; i < count_; ++i) set(i, d(rng));
  }
  void fill(double v) {
    for (i64 i = 0; i < count_; ++i) set(i, v);
  }
  bool bits_equal(const Buffer& o) const { return nbytes() == o.nbytes() && std::memcmp(data(), o.data(), nbytes()) == 0; }

 private:
  DType dtype_ = DType::f32;
  i64 count_ = 0;
  std::vector<std::byte> bytes_;
};

/// Elements a (batch, rows, cols, ld, stride) matrix spans.
inline i64 span(i64 batch, i64 rows, i64 cols, i64 ld, i64 stride) {
  if (batch == 0 || rows == 0 || cols == 0) return 0;
  return (batch - 1) * stride + (rows - 1) * ld + cols;
}

/// One test problem.
struct Case {
  i64 m = 1, n = 1, k = 1, batch = 1;
  DType ab = DType::f32, c = DType::f32;
  bool ta = false, tb = false;
  i64 pad = 0;              ///< added to every leading dimension
  bool broadcast_b = false; ///< one B for every batch item (batch stride 0)
  double alpha = 1, beta = 0;
  Epilogue epi = Epilogue::none;
  DType bias_t = DType::f32, bgrad_t = DType::f32;
  bool amax = false;
  blas::HostIsa isa = blas::HostIsa::best;
  bool fuse = true, tf32 = false;

  std::string str() const {
    std::ostringstream os;
    os << "m " << m << " n " << n << " k " << k << " batch " << batch << (broadcast_b ? " (B shared)" : "") << ", "
       << dtype_name(ab) << " -> " << dtype_name(c) << ", op " << (ta ? "T" : "N") << (tb ? "T" : "N") << ", pad " << pad
       << ", alpha " << alpha << " beta " << beta << ", epilogue " << blas::epilogue_name(epi) << " (bias "
       << dtype_name(bias_t) << ", bias_grad " << dtype_name(bgrad_t) << ")" << (amax ? ", amax" : "") << ", isa "
       << blas::host_isa_name(isa) << (fuse ? "" : ", unfused") << (tf32 ? ", tf32" : "");
    return os.str();
  }
};

/// The inputs and outputs of one case in host memory, and its descriptor.
struct Problem {
  Case cs;
  i64 lda = 0, ldb = 0, ldc = 0, sa = 0, sb = 0, sc = 0;
  Buffer a, b, c, c0, bias, bgrad, aux, aux0;
  float amax = -1;

  explicit Problem(const Case& c_, std::mt19937_64& rng) : cs(c_) {
    const Case& q = cs;
    lda = (q.ta ? q.m : q.k) + q.pad;
    ldb = (q.tb ? q.k : q.n) + q.pad;
    ldc = q.n + q.pad;
    const i64 ra = q.ta ? q.k : q.m, rb = q.tb ? q.n : q.k;
    sa = ra * lda + q.pad;
    sb = q.broadcast_b ? 0 : rb * ldb + 2 * q.pad;
    sc = q.m * ldc + q.pad;
    a = Buffer(q.ab, span(q.batch, ra, lda - q.pad, lda, sa));
    b = Buffer(q.ab, span(q.broadcast_b ? 1 : q.batch, rb, ldb - q.pad, ldb, sb));
    c = Buffer(q.c, span(q.batch, q.m, q.n, ldc, sc));
    a.fill_uniform(rng, -1, 1);
    b.fill_uniform(rng, -1, 1);
    // beta == 0: C must not be read, so it starts as NaN (a read would poison the result).
    if (q.beta != 0) c.fill_uniform(rng, -1, 1);
    else c.fill(std::numeric_limits<double>::quiet_NaN());
    c0 = c;
    if (blas::epilogue_reads_bias(q.epi)) {
      bias = Buffer(q.bias_t, q.n);
      bias.fill_uniform(rng, -1, 1);
    }
    if (blas::epilogue_writes_bias_grad(q.epi)) {
      bgrad = Buffer(q.bgrad_t, q.epi == Epilogue::bgrad_a ? q.m : q.n);
      bgrad.fill(std::numeric_limits<double>::quiet_NaN());
    }
    if (blas::epilogue_uses_aux(q.epi)) {
      aux = Buffer(q.c, span(q.batch, q.m, q.n, ldc, sc));
      if (blas::epilogue_dgelu(q.epi)) aux.fill_uniform(rng, -4, 4);
      else aux.fill(std::numeric_limits<double>::quiet_NaN());
      aux0 = aux;
    }
  }

  /// The descriptor over the given pointers (host buffers of this problem, or device copies).
  blas::GemmDesc desc(const void* pa, const void* pb, void* pc, const void* pbias, void* pbgrad, void* paux, float* pamax) const {
    const Case& q = cs;
    blas::GemmDesc d;
    d.m = q.m;
    d.n = q.n;
    d.k = q.k;
    d.batch = q.batch;
    d.a = {pa, q.ab, q.ta, lda, sa, nullptr, blas::ScaleMode::none};
    d.b = {pb, q.ab, q.tb, ldb, sb, nullptr, blas::ScaleMode::none};
    d.c.data = pc;
    d.c.dtype = q.c;
    d.c.ld = ldc;
    d.c.batch_stride = sc;
    d.c.beta = q.beta;
    d.c.amax = q.amax ? pamax : nullptr;
    d.alpha = q.alpha;
    d.epilogue.kind = q.epi;
    if (blas::epilogue_reads_bias(q.epi)) {
      d.epilogue.bias = pbias;
      d.epilogue.bias_dtype = q.bias_t;
    }
    if (blas::epilogue_writes_bias_grad(q.epi)) {
      d.epilogue.bias_grad = pbgrad;
      d.epilogue.bias_grad_dtype = q.bgrad_t;
    }
    if (blas::epilogue_uses_aux(q.epi)) {
      d.epilogue.aux = paux;
      d.epilogue.aux_ld = ldc;
      d.epilogue.aux_batch_stride = sc;
    }
    d.host_isa = q.isa;
    d.fuse_epilogue = q.fuse;
    d.allow_tf32 = q.tf32;
    return d;
  }
  blas::GemmDesc host_desc() {
    return desc(a.data(), b.data(), c.data(), bias.count() ? bias.data() : nullptr, bgrad.count() ? bgrad.data() : nullptr,
                aux.count() ? aux.data() : nullptr, &amax);
  }

  double A(i64 bi, i64 i, i64 kk) const { return a.get(bi * sa + (cs.ta ? kk * lda + i : i * lda + kk)); }
  double B(i64 bi, i64 kk, i64 j) const { return b.get(bi * sb + (cs.tb ? j * ldb + kk : kk * ldb + j)); }
};

/// Evaluation errors of the backend under test, per unit (see the file comment).
struct Tol {
  double u_acc = 0x1p-24;   ///< accumulator unit roundoff
  double u_in = 0;          ///< operand rounding before the products (TF32: 2^-11)
  double gelu = 8 * 0x1p-24;
  double dgelu = 8 * 0x1p-24;
  /// GELU backward: relative rounding of v before it is multiplied by gelu'(x) (cuBLASLt's fused
  /// DGELU with 16-bit outputs rounds the product to C's type first).
  double dgelu_pre_round = 0;
};
inline Tol host_tol(DType ab) {
  const double u = ab == DType::f64 ? 0x1p-53 : 0x1p-24;
  return Tol{u, 0, 8 * u, 8 * u};
}

inline double gelu_ref(long double x) {
  const long double t = std::tanh(0.7978845608028654L * (x + 0.044715L * x * x * x));
  return static_cast<double>(0.5L * x * (1 + t));
}
inline double gelu_grad_ref(long double x) {
  const long double s = 0.7978845608028654L, c = 0.044715L;
  const long double t = std::tanh(s * (x + c * x * x * x));
  return static_cast<double>(0.5L * (1 + t) + 0.5L * x * (1 - t * t) * s * (1 + 3 * c * x * x));
}

struct Worst {
  double ratio = 0;
  std::string where;
  void see(double got, double want, double bound, const std::string& what) {
    const double err = std::fabs(got - want);
    const double r = std::isnan(got) ? std::numeric_limits<double>::infinity() : err / std::max(bound, 1e-300);
    if (r > ratio || (std::isnan(r))) {
      ratio = std::isnan(r) ? std::numeric_limits<double>::infinity() : r;
      std::ostringstream os;
      os.precision(10);
      os << what << ": got " << got << ", want " << want << ", error " << err << ", bound " << bound;
      where = os.str();
    }
  }
};

/// Checks the outputs held in `out` (C, aux, bias_grad, amax after the GEMM; same layout as `p`)
/// against the reference of problem `p`, within the bounds derived above. Returns the worst
/// error / bound ratio (<= 1 passes).
inline double check(const Problem& p, const Problem& out, const Tol& tol, bool assert_ok = true) {
  const Case& q = p.cs;
  const double u_acc = tol.u_acc, u_out = unit_roundoff(q.c), floor_out = underflow_floor(q.c);
  const double ftz = q.ab == DType::f64 ? 0 : 0x1p-126;
  const bool gelu = blas::epilogue_gelu(q.epi), dgelu = blas::epilogue_dgelu(q.epi), wr_aux = blas::epilogue_writes_aux(q.epi);
  Worst w;
  std::vector<long double> bg_sum(static_cast<std::size_t>(q.n), 0), bg_abs(q.n, 0), bg_err(q.n, 0);
  std::vector<double> opa(static_cast<std::size_t>(q.m * q.k)), opb(static_cast<std::size_t>(q.k * q.n));
  for (i64 bi = 0; bi < q.batch; ++bi) {
    for (i64 i = 0; i < q.m; ++i)
      for (i64 kk = 0; kk < q.k; ++kk) opa[static_cast<std::size_t>(i * q.k + kk)] = p.A(bi, i, kk);
    for (i64 kk = 0; kk < q.k; ++kk)
      for (i64 j = 0; j < q.n; ++j) opb[static_cast<std::size_t>(j * q.k + kk)] = p.B(bi, kk, j);
    for (i64 i = 0; i < q.m; ++i) {
      for (i64 j = 0; j < q.n; ++j) {
        long double s = 0, S = 0;
        const double* ra = opa.data() + i * q.k;
        const double* cb = opb.data() + j * q.k;
        for (i64 kk = 0; kk < q.k; ++kk) {
          const long double x = static_cast<long double>(ra[kk]) * cb[kk];
          s += x;
          S += std::fabs(x);
        }
        const i64 ci = bi * p.sc + i * p.ldc + j;
        const double cold = q.beta != 0 ? p.c0.get(ci) : 0.0;
        const double bias = blas::epilogue_reads_bias(q.epi) ? p.bias.get(j) : 0.0;
        const long double v = q.alpha * s + q.beta * static_cast<long double>(cold) + bias;
        const double ev = (static_cast<double>(q.k + 4) * u_acc + 2 * tol.u_in) * std::fabs(q.alpha) * static_cast<double>(S) +
                          4 * u_acc * (std::fabs(q.beta * cold) + std::fabs(bias) + std::fabs(static_cast<double>(v))) +
                          static_cast<double>(q.k) * ftz * std::fabs(q.alpha);
        double y = static_cast<double>(v), ey = ev;
        if (wr_aux) w.see(out.aux.get(ci), y, ev + u_out * std::fabs(y) + floor_out, "aux[" + std::to_string(ci) + "]");
        if (gelu) {
          y = gelu_ref(v);
          ey = 1.2 * ev + tol.gelu * (1 + std::fabs(static_cast<double>(v)));
        } else if (dgelu) {
          const double x = p.aux0.get(ci), g = gelu_grad_ref(x);
          y = static_cast<double>(v) * g;
          ey = std::fabs(g) * (ev + tol.dgelu_pre_round * std::fabs(static_cast<double>(v))) +
               std::fabs(static_cast<double>(v)) * tol.dgelu * (1 + std::pow(std::fabs(x), 3));
        }
        w.see(out.c.get(ci), y, ey + u_out * std::fabs(y) + floor_out,
              "C[" + std::to_string(bi) + "][" + std::to_string(i) + "][" + std::to_string(j) + "]");
        if (q.epi == Epilogue::dgelu_bgrad) {
          bg_sum[j] += y;
          bg_abs[j] += std::fabs(y);
          bg_err[j] += ey;
        }
      }
    }
  }
  if (q.epi == Epilogue::dgelu_bgrad) {
    for (i64 j = 0; j < q.n; ++j) {
      const double want = static_cast<double>(bg_sum[j]);
      const double bound = static_cast<double>(bg_err[j]) + static_cast<double>(q.m + 1) * u_acc * static_cast<double>(bg_abs[j]) +
                           unit_roundoff(q.bgrad_t) * std::fabs(want) + underflow_floor(q.bgrad_t);
      w.see(out.bgrad.get(j), want, bound, "bias_grad[" + std::to_string(j) + "]");
    }
  } else if (q.epi == Epilogue::bgrad_a || q.epi == Epilogue::bgrad_b) {
    const bool use_a = q.epi == Epilogue::bgrad_a;
    for (i64 o = 0; o < (use_a ? q.m : q.n); ++o) {
      long double s = 0, sa = 0;
      for (i64 kk = 0; kk < q.k; ++kk) {
        const double x = use_a ? p.A(0, o, kk) : p.B(0, kk, o);
        s += x;
        sa += std::fabs(x);
      }
      const double want = static_cast<double>(s);
      const double bound = static_cast<double>(q.k + 1) * u_acc * static_cast<double>(sa) + unit_roundoff(q.bgrad_t) * std::fabs(want) +
                           underflow_floor(q.bgrad_t);
      w.see(out.bgrad.get(o), want, bound, "bias_grad[" + std::to_string(o) + "]");
    }
  }
  {  // nothing outside the views is written (padding between rows and batch items)
    std::vector<char> in_view(static_cast<std::size_t>(p.c.count()), 0);
    for (i64 bi = 0; bi < q.batch; ++bi)
      for (i64 i = 0; i < q.m; ++i)
        for (i64 j = 0; j < q.n; ++j) in_view[static_cast<std::size_t>(bi * p.sc + i * p.ldc + j)] = 1;
    const i64 e = p.c.elem();
    for (i64 x = 0; x < p.c.count(); ++x) {
      if (in_view[static_cast<std::size_t>(x)]) continue;
      const auto* got = static_cast<const unsigned char*>(out.c.data()) + x * e;
      const auto* want = static_cast<const unsigned char*>(p.c0.data()) + x * e;
      if (std::memcmp(got, want, static_cast<std::size_t>(e)) != 0) {
        w.ratio = std::numeric_limits<double>::infinity();
        w.where = "C element " + std::to_string(x) + " outside the view was written";
      }
    }
  }
  if (q.amax) {  // exact: max |C| over the stored outputs, NaN if any
    double mx = 0;
    bool nan = false;
    for (i64 bi = 0; bi < q.batch; ++bi)
      for (i64 i = 0; i < q.m; ++i)
        for (i64 j = 0; j < q.n; ++j) {
          const double x = out.c.get(bi * p.sc + i * p.ldc + j);
          nan = nan || std::isnan(x);
          mx = std::max(mx, std::fabs(x));
        }
    const float want = nan ? std::numeric_limits<float>::quiet_NaN() : static_cast<float>(mx);
    if (!(out.amax == want || (nan && std::isnan(out.amax)))) {
      w.ratio = std::numeric_limits<double>::infinity();
      w.where = "amax: got " + std::to_string(out.amax) + ", want " + std::to_string(want);
    }
  }
  if (assert_ok) {
    INFO(q.str());
    INFO("worst: " << w.where << " (error / bound " << w.ratio << ")");
    CHECK(w.ratio <= 1.0);
  }
  return w.ratio;
}

}  // namespace btest
