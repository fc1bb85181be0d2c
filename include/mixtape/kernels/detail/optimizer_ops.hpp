/// @file optimizer_ops.hpp
/// @brief The optimizer kernels' vocabulary and per-element math, shared by the host engine
///        (optimizer_host.hpp) and the CUDA engine (optimizer_cuda.cuh): the device-resident step
///        scalars' layout (`StepScalarValues`), the learning-rate schedule, the hyperparameters,
///        the chunk descriptors of a flat group, and the AdamW / SGD / unscale / scale operations.
///
/// Every function here is `MIXTAPE_HOST_DEVICE` with the same body in `.cpp` and `.cu` units, so it
/// lives outside the backend namespace. Host and device compute identically (IEEE add, multiply,
/// divide and sqrt, correctly rounded on both; integer Philox; exponentiation by squaring instead
/// of `pow`) as long as neither side contracts `a * b + c` into an fma: the tests build with
/// `-ffp-contract=off` / `--fmad=false`. A user build that contracts may differ by an ulp of the
/// update math per operation (the results stay as accurate; they are no longer bitwise equal).
///
/// An *operation* is a copyable struct with
///
///     consts_type load() const;             // per-step values from the step scalars
///     bool apply(const OptimizerChunk& c, std::int32_t j, const consts_type&) const;  // element j of c
///
/// `load` runs once per thread (device) or once per call (host) and reads the step scalars;
/// `consts.skip` true makes the whole operation a no-op (a non-finite step). `apply` returns true
/// when it saw a non-finite value (only the unscale operation reports; the others return false).
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "mixtape/config.hpp"
#include "mixtape/core/device.hpp"
#include "mixtape/core/philox.hpp"
#include "mixtape/kernels/detail/scalar.hpp"
#include "mixtape/numeric/numeric.hpp"
#include "mixtape/policy/roles.hpp"

namespace mixtape::kernels {

/// The per-step scalars of training, as they lie in device memory (host memory for a host
/// context): 64 bytes, written and read by kernels only during a step, so a step can be captured
/// in one CUDA graph and nothing syncs (design.md, "Per-step scalars live on the device").
///
/// `found_inf` is a float, 0 or 1, like torch's found_inf tensors, so data-parallel ranks can
/// all-reduce it (MAX, or SUM then compare with 0) before the optimizer reads it and every rank
/// skips the same step. `step` counts *applied* optimizer updates as an exact int64 (torch keeps a
/// float step tensor; the two agree up to 2^24 steps); AdamW's bias corrections use it after the
/// step's increment. `iteration` counts schedule evaluations, skipped steps included (torch's
/// LR schedulers advance on skipped steps too).
struct alignas(16) StepScalarValues {
  float lr = 0.0f;                 ///< learning rate of the next update
  float loss_scale = 1.0f;         ///< GradScaler's scale (1 without a scaler)
  float inv_scale = 1.0f;          ///< float(1 / double(loss_scale)), written by unscale
  float found_inf = 0.0f;          ///< 1 when this step's gradients hold a non-finite value
  float clip_coef = 1.0f;          ///< min(1, max_norm / (grad_norm + 1e-6)), torch's clip_grad_norm_
  float grad_norm = 0.0f;          ///< global L2 norm of the gradients
  float loss = 0.0f;               ///< a loss the loop recorded (progress bar)
  std::int32_t growth_tracker = 0; ///< GradScaler's count of successful steps since the last change
  std::int64_t step = 0;           ///< applied updates (AdamW's t after the increment)
  std::int64_t skipped = 0;        ///< updates skipped because found_inf was set
  std::int64_t iteration = 0;      ///< schedule evaluations (the next one uses this iteration)
  std::int64_t reserved = 0;
};
static_assert(sizeof(StepScalarValues) == 64 && std::is_trivially_copyable_v<StepScalarValues> &&
              std::is_standard_layout_v<StepScalarValues>);

/// What the kernels take: the step scalars' address (device or host memory) and its device.
/// `optim::StepScalars` converts to it implicitly.
struct StepScalarsView {
  StepScalarValues* values = nullptr;
  Device device;
};

/// How the learning rate decays after warmup.
enum class LrDecay : std::uint8_t { constant, linear, cosine };

/// A learning-rate schedule evaluated on the device from the step scalars' `iteration`, so a
/// captured graph advances it without the host (`kernels::apply_lr_schedule`).
///
/// Iteration i (0-based) gets `base_lr * min(1, (i + 1) / warmup_steps)` during warmup (the
/// reference script's formula), then with p = min(1, (i - warmup_steps) / decay_steps):
/// constant: base_lr; linear: min_lr + (base_lr - min_lr)(1 - p); cosine: min_lr + (base_lr -
/// min_lr)(1 + cos(pi p)) / 2. Computed in double, rounded once to float.
struct LrSchedule {
  double base_lr = 3e-4;
  std::int64_t warmup_steps = 0;
  LrDecay decay = LrDecay::constant;
  std::int64_t decay_steps = 0;  ///< iterations from the end of warmup to min_lr (linear, cosine)
  double min_lr = 0.0;
};

/// AdamW's hyperparameters (torch.optim.AdamW's names and defaults). The learning rate is a step
/// scalar, not a hyperparameter, so a schedule can change it on the device.
struct AdamWHyper {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;  ///< decoupled; applied only where a chunk's decay flag is set
};

/// SGD's hyperparameters (torch.optim.SGD's names and defaults).
struct SgdHyper {
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;  ///< coupled (g += wd p), as torch's SGD; only where decay is set
  bool nesterov = false;
};

/// Which step scalars multiply the gradient inside an operation, in this order: `inv_scale`
/// (a GradScaler's deferred unscale) then `clip_coef` (a deferred clip). Each product is the
/// in-place op's (UnscaleOp, ScaleByScalarOp: in the gradient's opmath, rounded to the gradient
/// type), so a deferred unscale or clip gives the update the bits the in-place pass would have.
struct GradFactors {
  bool inv_scale = false;
  bool clip = false;
};

/// The buffers of an update group, as indices into OptimizerChunk::offset.
namespace slot {
inline constexpr int param = 0;         ///< parameter storage (or the one buffer of unscale / scale)
inline constexpr int grad = 1;          ///< gradient
inline constexpr int moment1 = 2;       ///< AdamW's m, SGD's momentum buffer
inline constexpr int moment2 = 3;       ///< AdamW's v
inline constexpr int master = 4;        ///< master copy
inline constexpr int compute = 5;       ///< owned compute copy
inline constexpr int compensation = 6;  ///< Kahan compensation
}  // namespace slot
inline constexpr int kGroupSlots = 7;

/// A run of at most kOptimizerChunk elements of a group with one weight-decay flag: one CUDA block
/// (one host task) handles it. Element j of the chunk is element offset[b] + j of buffer b, so the
/// buffers of a group need not share a layout (nn::ParameterStore pads each (role, dtype) buffer
/// on its own, keeps compute copies for matrices only, and gradients for trainable parameters
/// only). offset[slot::compute] is -1 where the segment has no compute copy.
struct OptimizerChunk {
  std::int64_t offset[kGroupSlots];
  std::int32_t length;
  std::int32_t decay;  ///< 1: apply weight decay
};
static_assert(sizeof(OptimizerChunk) == 64);

/// Elements per chunk.
inline constexpr std::int32_t kOptimizerChunk = 16384;

namespace detail {

/// The compute type of a multiply on element type T: double for f64, float otherwise (torch's opmath).
template <class T>
using opmath_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

/// x * factor as torch's in-place multiply of a T tensor by a float scalar forms it: in T's
/// opmath, rounded to T.
template <class T>
MIXTAPE_HOST_DEVICE T scale_as_in_place(T x, float factor) noexcept {
  return cast<T>(to_acc<opmath_t<T>>(x) * to_acc<opmath_t<T>>(factor));
}

/// A gradient element after the factors k.use_inv / k.use_clip select (GradFactors' order).
template <class G, class K>
MIXTAPE_HOST_DEVICE G apply_grad_factors(G g, const K& k) noexcept {
  if (k.use_inv) g = scale_as_in_place(g, k.inv);
  if (k.use_clip) g = scale_as_in_place(g, k.clip);
  return g;
}

/// base^e by squaring (e >= 0): products only, so host and device give the same bits; relative
/// error at most 2 log2(e) + 1 roundings of double (1e-14 for e = 2^40), far below the update
/// math's rounding. (torch computes `beta ** step` with pow; the two agree to that error.)
MIXTAPE_HOST_DEVICE constexpr double ipow(double base, std::int64_t e) noexcept {
  double result = 1.0;
  while (e > 0) {
    if (e & 1) result *= base;
    base *= base;
    e >>= 1;
  }
  return result;
}

/// True for finite x (false for inf and NaN).
template <class A>
MIXTAPE_HOST_DEVICE constexpr bool is_finite(A x) noexcept {
  return abs_exact(x) < infinity<A>();
}

/// Square root in A (correctly rounded on host and device).
template <class A>
MIXTAPE_HOST_DEVICE inline A sqrt_exact(A x) noexcept {
  if constexpr (std::is_same_v<A, float>) {
    return ::sqrtf(x);
  } else {
    return ::sqrt(x);
  }
}

/// The learning rate of `iteration` under `s` (see LrSchedule).
MIXTAPE_HOST_DEVICE inline float lr_at(const LrSchedule& s, std::int64_t iteration) noexcept {
  double lr = s.base_lr;
  if (iteration < s.warmup_steps) {
    const double w = static_cast<double>(iteration + 1) / static_cast<double>(s.warmup_steps);
    lr = s.base_lr * (w < 1.0 ? w : 1.0);
  } else if (s.decay != LrDecay::constant) {
    const double done = static_cast<double>(iteration - s.warmup_steps);
    double p = s.decay_steps > 0 ? done / static_cast<double>(s.decay_steps) : 1.0;
    p = p < 1.0 ? p : 1.0;
    const double shape = s.decay == LrDecay::linear ? 1.0 - p : 0.5 * (1.0 + ::cos(3.141592653589793 * p));
    lr = s.min_lr + (s.base_lr - s.min_lr) * shape;
  }
  return cast<float>(lr);
}

/// The chunk `c` of a group of `n` elements: from the table, or (no table: every buffer laid out
/// alike) the c-th run of kOptimizerChunk elements, at the same offset in every buffer, decaying.
MIXTAPE_HOST_DEVICE inline OptimizerChunk chunk_at(const OptimizerChunk* chunks, std::int64_t c, std::int64_t n) noexcept {
  if (chunks != nullptr) return chunks[c];
  const std::int64_t begin = c * kOptimizerChunk;
  const std::int64_t left = n - begin;
  OptimizerChunk ch;
  for (int b = 0; b < kGroupSlots; ++b) ch.offset[b] = begin;
  ch.length = static_cast<std::int32_t>(left < kOptimizerChunk ? left : kOptimizerChunk);
  ch.decay = 1;
  return ch;
}

/// Number of implicit chunks of a group of n elements.
constexpr std::int64_t implicit_chunks(std::int64_t n) noexcept { return (n + kOptimizerChunk - 1) / kOptimizerChunk; }

/// x rounded to T: stochastically from `word` when R is stochastic, else nearest-even.
template <class T, UpdateRounding R, class A>
MIXTAPE_HOST_DEVICE inline T round_to(A x, std::uint32_t word) noexcept {
  if constexpr (R == UpdateRounding::stochastic) {
    return cast<T, Rounding::stochastic>(x, word);
  } else {
    return cast<T>(x);
  }
}

/// The four Philox words of element i (its index in the group's parameter buffer) at step t of
/// stream `stream`: counter {lo32(i), hi32(i), lo32(t), stream}, key the context's seed. Word 0
/// rounds the parameter, 1 the first moment, 2 the second, 3 the compute copy. Counters of ordinary
/// draws (core/philox.hpp) have words 2 and 3 zero and t >= 1 here, so the two never share a
/// counter; deriving the counter from the device-side step keeps the update graph-capturable (no
/// host-side offset to advance) and gives every step fresh draws.
MIXTAPE_HOST_DEVICE inline PhiloxWords update_words(std::uint64_t seed, std::int64_t i, std::int64_t t,
                                                    std::uint32_t stream) noexcept {
  const auto ui = static_cast<std::uint64_t>(i);
  return philox4x32_10(PhiloxWords{{static_cast<std::uint32_t>(ui), static_cast<std::uint32_t>(ui >> 32),
                                    static_cast<std::uint32_t>(static_cast<std::uint64_t>(t)), stream}},
                       philox_key(seed));
}

/// The buffers an update writes the new primary value into, and how.
///  - with a master (W*): master = nearest(x); param = round_R(master); compute = round_R(master);
///  - without: param = round_R(x), or with Kahan: param and its compensation as documented at
///    AdamWOp; compute = round_R(param) (nearest under Kahan).
/// Copies are rounded from the *stored* primary, so `param == round(master)` holds bit for bit and
/// a copy equals what `convert` would make of the primary.
template <class U, UpdateRounding R, class P, class W, class C>
struct PrimaryWriter {
  P* param;
  W* master;
  C* compute;
  P* compensation;

  /// The primary's current value in U (element j of chunk c).
  MIXTAPE_HOST_DEVICE U load(const OptimizerChunk& c, std::int32_t j) const noexcept {
    return master != nullptr ? to_acc<U>(master[c.offset[slot::master] + j]) : to_acc<U>(param[c.offset[slot::param] + j]);
  }

  /// Writes the new value x of element j of chunk c (p0: the value load() returned).
  MIXTAPE_HOST_DEVICE void store(const OptimizerChunk& c, std::int32_t j, U p0, U x, const PhiloxWords& w) const noexcept {
    constexpr UpdateRounding kCopy = R == UpdateRounding::kahan ? UpdateRounding::nearest : R;
    const std::int64_t ip = c.offset[slot::param] + j;
    const bool has_copy = compute != nullptr && c.offset[slot::compute] >= 0;
    if (master != nullptr) {
      const W mw = cast<W>(x);
      master[c.offset[slot::master] + j] = mw;
      param[ip] = round_to<P, kCopy>(mw, w[0]);
      if (has_copy) compute[c.offset[slot::compute] + j] = round_to<C, kCopy>(mw, w[3]);
      return;
    }
    P pw;
    if constexpr (R == UpdateRounding::kahan) {
      // Compensated summation of the increments: s is this step's change plus what earlier
      // roundings lost; whatever the rounding of p0 + s loses now is kept for the next step.
      const std::int64_t ik = c.offset[slot::compensation] + j;
      const U s = (x - p0) + to_acc<U>(compensation[ik]);
      pw = cast<P>(p0 + s);
      compensation[ik] = cast<P>(s - (to_acc<U>(pw) - p0));
    } else {
      pw = round_to<P, R>(x, w[0]);
    }
    param[ip] = pw;
    if (has_copy) compute[c.offset[slot::compute] + j] = round_to<C, kCopy>(pw, w[3]);
  }
};

/// The step-dependent values of an AdamW update, loaded once per thread.
template <class U>
struct AdamWConsts {
  bool skip;
  std::int64_t t;
  U b1, omb1, b2, omb2, eps;
  U step_size;     // lr / (1 - beta1^t)
  U bc2_sqrt;      // sqrt(1 - beta2^t)
  U decay_factor;  // 1 - lr wd
  float inv, clip;  // the step scalars' inv_scale and clip_coef
  bool use_inv, use_clip, has_decay;
};

/// One AdamW update (torch.optim.AdamW, decoupled weight decay), in update math U:
///
///     g = grad [* inv_scale] [* clip_coef]          (each product as the in-place op's: GradFactors)
///     p = p * (1 - lr wd)                       (decay chunks only: torch's param.mul_(1 - lr wd))
///     m = beta1 m + (1 - beta1) g
///     v = beta2 v + (1 - beta2) g g
///     p = p - (lr / (1 - beta1^t)) m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
///
/// with t the step after this update's increment. The moments are stored rounded (stochastically
/// from words 1 and 2 under stochastic rounding); the parameter update uses their unrounded values,
/// as torch's fused kernel does.
/// @tparam U  the update math (float or double)
/// @tparam R  how narrowing writes round
template <class U, UpdateRounding R, class P, class G, class M1, class M2, class W, class C>
struct AdamWOp {
  using consts_type = AdamWConsts<U>;
  PrimaryWriter<U, R, P, W, C> primary;
  const G* grad;
  M1* exp_avg;
  M2* exp_avg_sq;
  const StepScalarValues* scalars;
  AdamWHyper hyper;
  GradFactors factors;
  std::uint64_t seed;
  std::uint32_t stream;

  MIXTAPE_HOST_DEVICE consts_type load() const noexcept {
    const StepScalarValues& s = *scalars;
    consts_type k;
    k.skip = s.found_inf != 0.0f;
    k.t = s.step;
    const U lr = to_acc<U>(s.lr);
    k.b1 = cast<U>(hyper.beta1);
    k.omb1 = cast<U>(1.0 - hyper.beta1);
    k.b2 = cast<U>(hyper.beta2);
    k.omb2 = cast<U>(1.0 - hyper.beta2);
    k.eps = cast<U>(hyper.eps);
    k.step_size = lr / cast<U>(1.0 - ipow(hyper.beta1, k.t));
    k.bc2_sqrt = cast<U>(sqrt_exact(1.0 - ipow(hyper.beta2, k.t)));
    k.decay_factor = U(1) - lr * cast<U>(hyper.weight_decay);
    k.inv = s.inv_scale;
    k.clip = s.clip_coef;
    k.use_inv = factors.inv_scale;
    k.use_clip = factors.clip;
    k.has_decay = hyper.weight_decay != 0.0;  // torch skips the multiply when wd == 0
    return k;
  }

  MIXTAPE_HOST_DEVICE bool apply(const OptimizerChunk& c, std::int32_t j, const consts_type& k) const noexcept {
    const U g = to_acc<U>(apply_grad_factors(grad[c.offset[slot::grad] + j], k));
    const U p0 = primary.load(c, j);
    U p = p0;
    if (c.decay != 0 && k.has_decay) p = p * k.decay_factor;
    const std::int64_t i1 = c.offset[slot::moment1] + j, i2 = c.offset[slot::moment2] + j;
    const U m = k.b1 * to_acc<U>(exp_avg[i1]) + k.omb1 * g;
    const U v = k.b2 * to_acc<U>(exp_avg_sq[i2]) + k.omb2 * g * g;
    const U denom = sqrt_exact(v) / k.bc2_sqrt + k.eps;
    p = p - k.step_size * m / denom;
    PhiloxWords w{};
    if constexpr (R == UpdateRounding::stochastic) w = update_words(seed, c.offset[slot::param] + j, k.t, stream);
    constexpr UpdateRounding kState = R == UpdateRounding::stochastic ? R : UpdateRounding::nearest;
    exp_avg[i1] = round_to<M1, kState>(m, w[1]);
    exp_avg_sq[i2] = round_to<M2, kState>(v, w[2]);
    primary.store(c, j, p0, p, w);
    return false;
  }
};

/// The step-dependent values of an SGD update.
template <class U>
struct SgdConsts {
  bool skip;
  bool first;  // the first applied update: the momentum buffer starts as the gradient
  std::int64_t t;
  U lr, momentum, one_minus_dampening, weight_decay;
  float inv, clip;  // the step scalars' inv_scale and clip_coef
  bool use_inv, use_clip, has_decay;
};

/// One SGD update (torch.optim.SGD), in update math U:
///
///     g = grad [* inv_scale] [* clip_coef]                (each product as the in-place op's: GradFactors)
///     g = g + wd p                                       (decay chunks only)
///     buf = g (first update) or momentum buf + (1 - dampening) g;  g = buf or g + momentum buf (nesterov)
///     p = p - lr g
/// @tparam U  the update math (float or double)
/// @tparam R  how narrowing writes round
template <class U, UpdateRounding R, class P, class G, class M1, class W, class C>
struct SgdOp {
  using consts_type = SgdConsts<U>;
  PrimaryWriter<U, R, P, W, C> primary;
  const G* grad;
  M1* momentum_buffer;  // null when momentum == 0
  const StepScalarValues* scalars;
  SgdHyper hyper;
  GradFactors factors;
  std::uint64_t seed;
  std::uint32_t stream;

  MIXTAPE_HOST_DEVICE consts_type load() const noexcept {
    const StepScalarValues& s = *scalars;
    consts_type k;
    k.skip = s.found_inf != 0.0f;
    k.t = s.step;
    k.first = s.step == 1;
    k.lr = to_acc<U>(s.lr);
    k.momentum = cast<U>(hyper.momentum);
    k.one_minus_dampening = cast<U>(1.0 - hyper.dampening);
    k.weight_decay = cast<U>(hyper.weight_decay);
    k.inv = s.inv_scale;
    k.clip = s.clip_coef;
    k.use_inv = factors.inv_scale;
    k.use_clip = factors.clip;
    k.has_decay = hyper.weight_decay != 0.0;  // torch skips g += wd p when wd == 0
    return k;
  }

  MIXTAPE_HOST_DEVICE bool apply(const OptimizerChunk& c, std::int32_t j, const consts_type& k) const noexcept {
    U g = to_acc<U>(apply_grad_factors(grad[c.offset[slot::grad] + j], k));
    const U p0 = primary.load(c, j);
    if (c.decay != 0 && k.has_decay) g = g + k.weight_decay * p0;
    PhiloxWords w{};
    if constexpr (R == UpdateRounding::stochastic) w = update_words(seed, c.offset[slot::param] + j, k.t, stream);
    if (momentum_buffer != nullptr) {
      const std::int64_t i1 = c.offset[slot::moment1] + j;
      const U buf = k.first ? g : k.momentum * to_acc<U>(momentum_buffer[i1]) + k.one_minus_dampening * g;
      constexpr UpdateRounding kState = R == UpdateRounding::stochastic ? R : UpdateRounding::nearest;
      momentum_buffer[i1] = round_to<M1, kState>(buf, w[1]);
      g = hyper.nesterov ? g + k.momentum * buf : buf;
    }
    primary.store(c, j, p0, p0 - k.lr * g, w);
    return false;
  }
};

/// GradScaler's unscale (torch's _amp_foreach_non_finite_check_and_unscale_): reports a non-finite
/// element (checked before the multiply), and, when `write`, stores g * inv_scale (left as it is
/// when inv_scale is 1).
template <class T>
struct UnscaleOp {
  struct consts_type {
    bool skip;
    opmath_t<T> inv;
    bool write;
  };
  T* grad;
  const StepScalarValues* scalars;
  bool write;

  MIXTAPE_HOST_DEVICE consts_type load() const noexcept {
    const float inv = scalars->inv_scale;
    return consts_type{false, to_acc<opmath_t<T>>(inv), write && inv != 1.0f};
  }
  MIXTAPE_HOST_DEVICE bool apply(const OptimizerChunk& c, std::int32_t j, const consts_type& k) const noexcept {
    const std::int64_t i = c.offset[slot::param] + j;
    const opmath_t<T> x = to_acc<opmath_t<T>>(grad[i]);
    if (k.write) grad[i] = cast<T>(x * k.inv);
    return !is_finite(x);
  }
};

/// x = x * (a step scalar), rounded to T (the in-place clip, torch's _foreach_mul_ by clip_coef).
template <class T>
struct ScaleByScalarOp {
  struct consts_type {
    bool skip;
    opmath_t<T> factor;
  };
  T* data;
  const float* factor;  // a field of the step scalars

  MIXTAPE_HOST_DEVICE consts_type load() const noexcept { return consts_type{false, to_acc<opmath_t<T>>(*factor)}; }
  MIXTAPE_HOST_DEVICE bool apply(const OptimizerChunk& c, std::int32_t j, const consts_type& k) const noexcept {
    const std::int64_t i = c.offset[slot::param] + j;
    data[i] = cast<T>(to_acc<opmath_t<T>>(data[i]) * k.factor);
    return false;
  }
};

/// out = in * loss_scale, rounded to T (GradScaler.scale(loss)).
template <class T>
struct ScaleLossOp {
  struct consts_type {
    bool skip;
    float scale;
  };
  const T* in;
  T* out;
  const StepScalarValues* scalars;

  MIXTAPE_HOST_DEVICE consts_type load() const noexcept { return consts_type{false, scalars->loss_scale}; }
  MIXTAPE_HOST_DEVICE bool apply(const OptimizerChunk& c, std::int32_t j, const consts_type& k) const noexcept {
    using A = opmath_t<T>;
    const std::int64_t i = c.offset[slot::param] + j;
    out[i] = cast<T>(to_acc<A>(in[i]) * to_acc<A>(k.scale));
    return false;
  }
};

// ---- single-thread updates of the step scalars (one-thread kernels on the device) ----

/// Before an optimizer update: count the step as applied (step += 1) or skipped (skipped += 1).
MIXTAPE_HOST_DEVICE inline void advance_step(StepScalarValues& s) noexcept {
  if (s.found_inf != 0.0f) {
    s.skipped += 1;
  } else {
    s.step += 1;
  }
}

/// Before unscaling: inv_scale = float(1 / double(scale)) (torch's _unscale_grads_), found_inf = 0
/// (torch makes a fresh flag per unscale_).
MIXTAPE_HOST_DEVICE inline void begin_unscale(StepScalarValues& s) noexcept {
  s.inv_scale = cast<float>(1.0 / static_cast<double>(s.loss_scale));
  s.found_inf = 0.0f;
}

/// torch's _amp_update_scale_ (aten/src/ATen/native/cuda/AmpKernels.cu), products in double as
/// there (float times double), never growing the scale to inf.
MIXTAPE_HOST_DEVICE inline void update_loss_scale(StepScalarValues& s, double growth, double backoff,
                                                  std::int32_t interval) noexcept {
  if (s.found_inf != 0.0f) {
    s.loss_scale = cast<float>(static_cast<double>(s.loss_scale) * backoff);
    s.growth_tracker = 0;
    return;
  }
  const std::int32_t successful = s.growth_tracker + 1;
  if (successful == interval) {
    const float grown = cast<float>(static_cast<double>(s.loss_scale) * growth);
    if (is_finite(grown)) s.loss_scale = grown;
    s.growth_tracker = 0;
  } else {
    s.growth_tracker = successful;
  }
}

/// After the sum of squares of all gradients: grad_norm = float(sqrt(sum)), clip_coef =
/// min(1, max_norm / (norm + 1e-6)) in float with NaN kept (torch's clamp), and found_inf = 1
/// when `flag_nonfinite` and the norm is not finite.
MIXTAPE_HOST_DEVICE inline void finish_grad_norm(StepScalarValues& s, double sum_sq, float max_norm,
                                                 bool flag_nonfinite) noexcept {
  const float norm = cast<float>(sqrt_exact(sum_sq));
  s.grad_norm = norm;
  const float c = max_norm / (norm + 1e-6f);
  s.clip_coef = (c < 1.0f || is_nan(c)) ? c : 1.0f;
  if (flag_nonfinite && !is_finite(norm)) s.found_inf = 1.0f;
}

/// lr = schedule(iteration); iteration += 1.
MIXTAPE_HOST_DEVICE inline void apply_schedule(StepScalarValues& s, const LrSchedule& schedule) noexcept {
  s.lr = lr_at(schedule, s.iteration);
  s.iteration += 1;
}

/// The single-thread updates as functors (what the one-thread kernels and the host run).
struct AdvanceStepFn {
  MIXTAPE_HOST_DEVICE void operator()(StepScalarValues& s) const noexcept { advance_step(s); }
};
struct BeginUnscaleFn {
  MIXTAPE_HOST_DEVICE void operator()(StepScalarValues& s) const noexcept { begin_unscale(s); }
};
struct UpdateLossScaleFn {
  double growth, backoff;
  std::int32_t interval;
  MIXTAPE_HOST_DEVICE void operator()(StepScalarValues& s) const noexcept {
    update_loss_scale(s, growth, backoff, interval);
  }
};
struct ScheduleFn {
  LrSchedule schedule;
  MIXTAPE_HOST_DEVICE void operator()(StepScalarValues& s) const noexcept { apply_schedule(s, schedule); }
};

/// Square of one gradient element for the norm, in double; with use_inv, of g * inv_scale as the
/// in-place unscale stores it (so a deferred unscale gives the in-place norm's bits).
template <class T>
MIXTAPE_HOST_DEVICE inline double norm_term(T g, float inv, bool use_inv) noexcept {
  const double x = to_acc<double>(use_inv ? scale_as_in_place(g, inv) : g);
  return x * x;
}

}  // namespace detail
}  // namespace mixtape::kernels
